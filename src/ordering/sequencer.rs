//! Per-topic reordering of sequenced publications arriving from other nodes (group messages
//! carry their conversation seq). Messages of one group can be stored by two nodes at once; each node serves its own
//! sessions directly and the other node's copy arrives through RabbitMQ a moment later, so
//! without this a member could see seq 15 before 14. A publication ahead of the next expected
//! seq waits (briefly, and boundedly) for the gap to fill; a gap that does not fill in time is
//! skipped, since clients can fetch any missing seq from history. A node orders a topic while
//! it has subscribers there. The application layer tells where the order starts once the first
//! of them is registered (a group's stored last seq, read after this node's binding exists, so
//! every later seq reaches it); until then, or without that, the order starts at the first
//! publication seen, and an earlier seq arriving after it is delivered as it comes.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::util::lock;

/// How long a publication waits for an earlier seq. Only a real gap waits: in a healthy cluster
/// the earlier copy crosses RabbitMQ within milliseconds, but on a loaded node its hop can take
/// a few hundred, and a member seeing seq 12 before 11 is worse than seeing both a little late.
pub const HOLD: Duration = Duration::from_secs(1);

/// Publications held per topic before the gap is given up.
const MAX_HELD: usize = 256;

struct Stream<T> {
    next: i64,
    held: BTreeMap<i64, (Instant, T)>,
}

/// Reorders items by seq per key (the hub's route: a group's topic, a user's queue of inbox
/// positions), and hands them on in that order.
///
/// Items are handed on while their stream's lock is held: released under the lock and handed
/// on after it, two items released one after the other by two threads could still overtake each
/// other on their way to the sessions.
pub struct TopicSequencer<T, K = String> {
    streams: DashMap<K, Arc<Mutex<Stream<T>>>>,
}

impl<T, K: Eq + Hash> Default for TopicSequencer<T, K> {
    fn default() -> Self {
        TopicSequencer {
            streams: DashMap::new(),
        }
    }
}

impl<T, K: Eq + Hash + Clone> TopicSequencer<T, K> {
    /// The stream of `key`, created at `next` if there is none; the map's shard is not kept
    /// locked while the stream is used.
    fn stream(&self, key: &K, next: i64) -> Arc<Mutex<Stream<T>>> {
        if let Some(stream) = self.streams.get(key) {
            return stream.clone();
        }
        self.streams
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Stream {
                    next,
                    held: BTreeMap::new(),
                }))
            })
            .clone()
    }

    /// Offers an item; hands `deliver` every item now ready, in seq order.
    pub fn offer(&self, key: &K, seq: i64, item: T, mut deliver: impl FnMut(T)) {
        let stream = self.stream(key, seq);
        let mut guard = lock(&stream);
        let Stream { next, held } = &mut *guard;
        if seq < *next {
            // Late (after a skipped gap) or a repeat: deliver as it comes.
            deliver(item);
            return;
        }
        if seq == *next && held.is_empty() {
            // The common case, in order: nothing to hold, nothing held to release.
            *next = seq + 1;
            deliver(item);
            return;
        }
        held.insert(seq, (Instant::now(), item));
        while let Some(first) = held.first_key_value().map(|(seq, _)| *seq) {
            if first != *next && held.len() <= MAX_HELD {
                break;
            }
            if let Some((_, item)) = held.remove(&first) {
                *next = first + 1;
                deliver(item);
            }
        }
    }

    /// Hands `deliver`, per key, what has waited longer than [`HOLD`] (skipping the gaps
    /// before it).
    pub fn expire(&self, mut deliver: impl FnMut(&K, T)) {
        let now = Instant::now();
        let streams: Vec<(K, Arc<Mutex<Stream<T>>>)> = self
            .streams
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
            .collect();
        for (key, stream) in streams {
            let mut guard = lock(&stream);
            let Stream { next, held } = &mut *guard;
            let overdue = held
                .values()
                .next()
                .is_some_and(|(since, _)| now.duration_since(*since) >= HOLD);
            if !overdue {
                continue;
            }
            while let Some((first, since)) = held
                .first_key_value()
                .map(|(seq, (since, _))| (*seq, *since))
            {
                if first != *next && now.duration_since(since) < HOLD {
                    break;
                }
                if let Some((_, item)) = held.remove(&first) {
                    *next = first + 1;
                    deliver(&key, item);
                }
            }
        }
    }

    /// Starts ordering `key` at `next` unless it is already ordered.
    pub fn start_at(&self, key: &K, next: i64) {
        self.stream(key, next);
    }

    /// Whether a stream is kept for `key`.
    pub fn tracks(&self, key: &K) -> bool {
        self.streams.contains_key(key)
    }

    /// Forgets a key (its route has no subscribers left).
    pub fn forget(&self, key: &K) {
        self.streams.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "g";

    fn offer(sequencer: &TopicSequencer<i64>, seq: i64) -> Vec<i64> {
        let mut out = Vec::new();
        sequencer.offer(&G.to_owned(), seq, seq, |item| out.push(item));
        out
    }

    #[test]
    fn in_order_items_pass_at_once() {
        let sequencer = TopicSequencer::default();
        assert_eq!(offer(&sequencer, 5), vec![5]);
        assert_eq!(offer(&sequencer, 6), vec![6]);
    }

    #[test]
    fn an_early_item_waits_for_the_gap() {
        let sequencer = TopicSequencer::default();
        assert_eq!(offer(&sequencer, 1), vec![1]);
        assert!(offer(&sequencer, 3).is_empty());
        assert_eq!(offer(&sequencer, 2), vec![2, 3]);
    }

    #[test]
    fn a_stream_started_at_a_seq_waits_for_it() {
        let sequencer = TopicSequencer::default();
        sequencer.start_at(&G.to_owned(), 4);
        assert!(offer(&sequencer, 5).is_empty());
        assert_eq!(offer(&sequencer, 4), vec![4, 5]);
        sequencer.start_at(&G.to_owned(), 1);
        assert_eq!(offer(&sequencer, 6), vec![6]);
    }

    #[test]
    fn a_gap_that_does_not_fill_is_skipped_after_the_hold() {
        let sequencer = TopicSequencer::default();
        offer(&sequencer, 1);
        assert!(offer(&sequencer, 3).is_empty());
        std::thread::sleep(HOLD + Duration::from_millis(10));
        let mut released = Vec::new();
        sequencer.expire(|key, item| released.push((key.to_owned(), item)));
        assert_eq!(released, vec![("g".to_owned(), 3)]);
        assert_eq!(offer(&sequencer, 2), vec![2]);
        assert_eq!(offer(&sequencer, 4), vec![4]);
    }

    #[test]
    fn items_reach_the_receiver_in_seq_order_from_many_threads() {
        let sequencer = Arc::new(TopicSequencer::default());
        let received = Arc::new(Mutex::new(Vec::new()));
        sequencer.start_at(&G.to_owned(), 0);
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let sequencer = sequencer.clone();
                let received = received.clone();
                scope.spawn(move || {
                    // Fewer than MAX_HELD in all, so that none is released early.
                    for seq in (thread..200).step_by(4) {
                        sequencer.offer(&G.to_owned(), seq, seq, |item| lock(&received).push(item));
                    }
                });
            }
        });
        let received = lock(&received).clone();
        assert_eq!(received, (0..200).collect::<Vec<_>>());
    }
}
