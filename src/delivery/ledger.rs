//! A session's ledger of unacknowledged deliveries: what each client-ack subscription was sent
//! and has not settled yet by ACK or NACK, what settling each delivery acts on, and the bounds
//! past which the session is cut as a slow consumer.
//!
//! Kept per subscription, in delivery order, so that a cumulative ACK, an UNSUBSCRIBE and the
//! session's end each cost what they settle, never what the whole session holds. A delivery id
//! carries its subscription's slot in its high bits, so an ACK finds its subscription without a
//! second index. A session allocates nothing here until its first client-ack delivery.

use std::collections::VecDeque;

use super::ack::{AckTarget, settle_targets};

/// Bits of a delivery id that count the session's deliveries; the bits above hold the slot.
const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Slots wrap at 2^24: two live subscriptions of a session share a ledger only if it made
/// sixteen million SUBSCRIBEs while keeping the first one, and then only its own deliveries mix.
pub(crate) const SLOT_MASK: u32 = (1 << 24) - 1;

/// Past this many deliveries, what a ledger holds is dropped on a blocking thread rather than
/// on the runtime: hooks may be the last owners of what they point to.
const DROP_INLINE_MAX: usize = 4096;

/// The id of a session's `seq`-th delivery on the subscription in `slot`.
pub(crate) fn delivery_id(slot: u32, seq: u64) -> u64 {
    (u64::from(slot & SLOT_MASK) << SEQ_BITS) | (seq & SEQ_MASK)
}

fn slot_of(id: u64) -> u32 {
    // At most 24 bits remain after the shift.
    u32::try_from(id >> SEQ_BITS).unwrap_or(u32::MAX)
}

/// How many unsettled deliveries a session may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnackedLimits {
    /// Over all its subscriptions (`limits.max_unacked`).
    pub per_session: usize,
    /// On any one subscription (`limits.max_unacked_per_subscription`).
    pub per_subscription: usize,
}

/// A delivery would take the session over one of its [`UnackedLimits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Overflow;

/// One subscription's unsettled deliveries.
struct Unsettled {
    slot: u32,
    /// `client` mode: settling a delivery settles every earlier one of the subscription.
    cumulative: bool,
    /// Oldest first, so ids increase.
    deliveries: VecDeque<(u64, AckTarget)>,
}

impl Unsettled {
    fn position(&self, id: u64) -> Option<usize> {
        self.deliveries
            .binary_search_by_key(&id, |(own, _)| *own)
            .ok()
    }
}

/// The unsettled deliveries of one session.
#[derive(Default)]
pub(crate) struct Ledger {
    /// By slot, each subscription that has had a client-ack delivery and is still subscribed.
    subscriptions: Vec<Unsettled>,
    /// Deliveries held over all subscriptions.
    total: usize,
}

impl Ledger {
    fn find(&self, slot: u32) -> Result<usize, usize> {
        self.subscriptions
            .binary_search_by_key(&slot, |sub| sub.slot)
    }

    /// Deliveries held.
    pub(crate) fn len(&self) -> usize {
        self.total
    }

    /// Records delivery `id` of the subscription in `slot`, unless it would take the session
    /// over `limits`.
    pub(crate) fn record(
        &mut self,
        slot: u32,
        cumulative: bool,
        id: u64,
        target: AckTarget,
        limits: UnackedLimits,
    ) -> Result<(), Overflow> {
        if self.total >= limits.per_session {
            return Err(Overflow);
        }
        let at = match self.find(slot) {
            Ok(at) => at,
            Err(at) => {
                self.subscriptions.insert(
                    at,
                    Unsettled {
                        slot,
                        cumulative,
                        deliveries: VecDeque::new(),
                    },
                );
                at
            }
        };
        let deliveries = &mut self.subscriptions[at].deliveries;
        if deliveries.len() >= limits.per_subscription {
            return Err(Overflow);
        }
        deliveries.push_back((id, target));
        self.total += 1;
        Ok(())
    }

    /// Forgets delivery `id`, recorded last on its subscription, that could not be queued.
    pub(crate) fn unrecord(&mut self, id: u64) {
        if let Ok(at) = self.find(slot_of(id)) {
            let deliveries = &mut self.subscriptions[at].deliveries;
            if deliveries.back().is_some_and(|(last, _)| *last == id) {
                deliveries.pop_back();
                self.total -= 1;
            }
        }
    }

    /// Settles delivery `id` and, on a `client` subscription, every earlier one of it. Returns
    /// the targets to act on, oldest first; empty when `id` is not held (already settled, or
    /// never this session's).
    pub(crate) fn settle(&mut self, id: u64) -> Vec<AckTarget> {
        let Ok(at) = self.find(slot_of(id)) else {
            return Vec::new();
        };
        let sub = &mut self.subscriptions[at];
        let Some(position) = sub.position(id) else {
            return Vec::new();
        };
        let targets: Vec<AckTarget> = if sub.cumulative {
            sub.deliveries
                .drain(..=position)
                .map(|(_, target)| target)
                .collect()
        } else {
            sub.deliveries
                .remove(position)
                .map(|(_, target)| target)
                .into_iter()
                .collect()
        };
        self.total -= targets.len();
        // A subscription that held a burst keeps no buffer for it once it is settled.
        if sub.deliveries.is_empty() && sub.deliveries.capacity() > 64 {
            sub.deliveries = VecDeque::new();
        }
        targets
    }

    /// Takes what the subscription in `slot` holds (it is ending), oldest first.
    pub(crate) fn forget(&mut self, slot: u32) -> Unacknowledged {
        match self.find(slot) {
            Ok(at) => {
                let sub = self.subscriptions.remove(at);
                self.total -= sub.deliveries.len();
                Unacknowledged {
                    subscriptions: vec![sub],
                    total: 0,
                }
                .counted()
            }
            Err(_) => Unacknowledged::default(),
        }
    }

    /// Takes everything (the session is ending): one swap, whatever the ledger holds.
    pub(crate) fn take(&mut self) -> Unacknowledged {
        let ledger = std::mem::take(self);
        Unacknowledged {
            subscriptions: ledger.subscriptions,
            total: ledger.total,
        }
    }
}

/// Deliveries that will never be settled by the client: their subscription or session ended.
#[derive(Default)]
#[must_use = "queue messages must be given back"]
pub(crate) struct Unacknowledged {
    subscriptions: Vec<Unsettled>,
    total: usize,
}

impl Unacknowledged {
    fn counted(mut self) -> Unacknowledged {
        self.total = self.subscriptions.iter().map(|s| s.deliveries.len()).sum();
        self
    }

    /// Gives queue messages back to their queues, in the order each subscription got them, so
    /// that they are delivered again (call it once the subscriptions are no longer consumers,
    /// or they would be handed straight back); drops the rest without calling hooks. A large
    /// drop runs on a blocking thread, so that no runtime thread stalls on it.
    pub(crate) fn give_back(self) {
        for sub in &self.subscriptions {
            let lent: Vec<AckTarget> = sub
                .deliveries
                .iter()
                .filter(|(_, target)| matches!(target, AckTarget::Queue { .. }))
                .map(|(_, target)| target.clone())
                .collect();
            if !lent.is_empty() {
                settle_targets(lent, false);
            }
        }
        if self.total > DROP_INLINE_MAX
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn_blocking(move || drop(self));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: UnackedLimits = UnackedLimits {
        per_session: 100,
        per_subscription: 100,
    };

    fn ids(targets: &[AckTarget]) -> usize {
        targets.len()
    }

    fn ledger_with(slot: u32, cumulative: bool, seqs: std::ops::Range<u64>) -> Ledger {
        let mut ledger = Ledger::default();
        for seq in seqs {
            ledger
                .record(
                    slot,
                    cumulative,
                    delivery_id(slot, seq),
                    AckTarget::None,
                    ROOMY,
                )
                .unwrap();
        }
        ledger
    }

    #[test]
    fn a_delivery_id_names_its_slot() {
        let id = delivery_id(7, 12_345);
        assert_eq!(slot_of(id), 7);
        assert_eq!(id & SEQ_MASK, 12_345);
        assert_eq!(slot_of(delivery_id(SLOT_MASK + 1, 1)), 0);
    }

    #[test]
    fn a_cumulative_ack_settles_the_earlier_deliveries_of_its_subscription_only() {
        let mut ledger = ledger_with(1, true, 1..6);
        for seq in 6..9 {
            ledger
                .record(2, true, delivery_id(2, seq), AckTarget::None, ROOMY)
                .unwrap();
        }
        assert_eq!(ids(&ledger.settle(delivery_id(1, 3))), 3);
        assert_eq!(ledger.len(), 5);
        assert!(ledger.settle(delivery_id(1, 2)).is_empty());
        assert_eq!(ids(&ledger.settle(delivery_id(2, 8))), 3);
        assert_eq!(ledger.len(), 2);
    }

    #[test]
    fn an_individual_ack_settles_one_delivery() {
        let mut ledger = ledger_with(3, false, 1..5);
        assert_eq!(ids(&ledger.settle(delivery_id(3, 3))), 1);
        assert!(ledger.settle(delivery_id(3, 3)).is_empty());
        assert_eq!(ids(&ledger.settle(delivery_id(3, 1))), 1);
        assert_eq!(ledger.len(), 2);
    }

    #[test]
    fn unknown_ids_settle_nothing() {
        let mut ledger = ledger_with(1, true, 1..3);
        assert!(ledger.settle(delivery_id(9, 1)).is_empty());
        assert!(ledger.settle(delivery_id(1, 99)).is_empty());
        assert!(ledger.settle(u64::MAX).is_empty());
        assert_eq!(ledger.len(), 2);
    }

    #[test]
    fn bounds_hold_per_subscription_and_per_session() {
        let limits = UnackedLimits {
            per_session: 5,
            per_subscription: 3,
        };
        let mut ledger = Ledger::default();
        for seq in 1..=3 {
            ledger
                .record(1, false, delivery_id(1, seq), AckTarget::None, limits)
                .unwrap();
        }
        let over = ledger.record(1, false, delivery_id(1, 4), AckTarget::None, limits);
        assert_eq!(over, Err(Overflow));
        for seq in 5..=6 {
            ledger
                .record(2, false, delivery_id(2, seq), AckTarget::None, limits)
                .unwrap();
        }
        let over = ledger.record(3, false, delivery_id(3, 7), AckTarget::None, limits);
        assert_eq!(over, Err(Overflow));
    }

    #[test]
    fn forgetting_a_subscription_takes_its_deliveries_only() {
        let mut ledger = ledger_with(1, false, 1..4);
        ledger
            .record(2, false, delivery_id(2, 4), AckTarget::None, ROOMY)
            .unwrap();
        let gone = ledger.forget(1);
        assert_eq!(gone.total, 3);
        gone.give_back();
        assert_eq!(ledger.len(), 1);
        ledger.forget(9).give_back();
        let all = ledger.take();
        assert_eq!(all.total, 1);
        all.give_back();
        assert_eq!(ledger.len(), 0);
    }

    #[test]
    fn an_unqueued_delivery_is_unrecorded() {
        let mut ledger = ledger_with(1, false, 1..3);
        ledger.unrecord(delivery_id(1, 1));
        assert_eq!(ledger.len(), 2);
        ledger.unrecord(delivery_id(1, 2));
        assert_eq!(ledger.len(), 1);
    }
}
