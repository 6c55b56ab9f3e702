//! Replay at subscribe: a subscription that asks for what it missed (a SUBSCRIBE with
//! `since-seq`) is registered closed, behind a [`ReplayGate`]. Live publications for it are held
//! while the application reads the stored ones; then [`Hub::open_gate`] delivers the stored
//! ones, then the held ones whose seq the stored ones did not reach, and opens the gate.
//!
//! Registering before reading is what makes the switch exact: whatever commits before the read
//! is in it, whatever commits after is published after the registration and so is held. What is
//! both (committed between the two) is told apart by its seq and delivered once, also when its
//! publication comes only after the gate is open (a push follows its commit by a little).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytestring::ByteString;

use super::Hub;
use super::publication::Publication;
pub use super::routes::ReplayGate;
use crate::delivery::{AckTarget, SessionHandle};
use crate::util::lock;

impl Hub {
    /// Delivers a replay on the subscription `id` of `session`, which was registered behind
    /// `gate`: first `replayed` (stored publications, oldest first), then the live publications
    /// held meanwhile, without those whose seq is at most `replayed_up_to`; then opens the gate.
    pub fn open_gate(
        &self,
        session: &Arc<SessionHandle>,
        id: &str,
        gate: &ReplayGate,
        replayed: Vec<Publication>,
        replayed_up_to: Option<i64>,
    ) {
        let mut held = lock(&gate.held);
        if let Some(subscription) = self.subscription(session.id, id) {
            let name = ByteString::from(id);
            for publication in replayed {
                let (template, message_id) =
                    self.template(&subscription.key, publication.headers, publication.body);
                session.deliver(
                    &name,
                    subscription.slot,
                    subscription.ack,
                    &template,
                    &message_id,
                    AckTarget::None,
                );
            }
        }
        for item in held.drain(..) {
            if item
                .sequence
                .zip(replayed_up_to)
                .is_some_and(|(seq, up_to)| seq <= up_to)
            {
                continue;
            }
            let subscriber = &item.subscriber;
            subscriber.session.deliver(
                &subscriber.subscription,
                subscriber.slot,
                subscriber.ack,
                &item.template,
                &item.message_id,
                item.target,
            );
        }
        if let Some(up_to) = replayed_up_to {
            gate.covered.store(up_to, Ordering::Release);
        }
        gate.open.store(true, Ordering::Release);
    }
}
