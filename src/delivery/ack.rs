//! The vocabulary of acknowledgement that sessions, the hub and the queues share: ack modes, what
//! an ACK or NACK acts on (a hook, or the lender of a queue message), and how settled deliveries
//! are acted on.

use std::sync::Arc;

/// How a subscription acknowledges messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// Acknowledged by being sent.
    Auto,
    /// An ACK acknowledges this message and every earlier one of the subscription.
    Client,
    /// An ACK acknowledges exactly one message.
    ClientIndividual,
}

impl AckMode {
    /// Parses the SUBSCRIBE `ack` header; missing means `auto`.
    pub fn parse(value: Option<&str>) -> Option<AckMode> {
        match value {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            Some(_) => None,
        }
    }
}

/// Told when a client acknowledges (or refuses) a message it received on a client-ack
/// subscription; the IM layer uses it to mark messages delivered.
pub trait AckHook: Send + Sync {
    /// The client ACKed the message.
    fn acked(&self);
    /// The client NACKed the message.
    fn nacked(&self) {}
}

/// What lent a queue subscriber the messages it has not settled yet: the node's own queue, or a
/// RabbitMQ consumer in cluster mode. Sessions settle through it without knowing which.
pub trait Lender: Send + Sync {
    /// The client acknowledged the deliveries `tags` (oldest first; one ACK frame's worth).
    fn ack(&self, tags: &[u64]);
    /// The client refused the deliveries `tags` (oldest first), or left them unsettled when
    /// it went: they are delivered again.
    fn nack(&self, tags: &[u64]);
}

/// What an ACK or NACK of a delivery acts on.
#[derive(Clone)]
pub enum AckTarget {
    /// Nothing beyond forgetting the delivery.
    None,
    /// A message lent by a generic queue: ACK removes it, NACK gives it back.
    Queue {
        /// The queue (or its consumer) that lent it.
        queue: Arc<dyn Lender>,
        /// The lender's delivery tag.
        tag: u64,
    },
    /// A hook to call.
    Hook(Arc<dyn AckHook>),
}

/// Acts on settled deliveries, oldest first: hooks one by one, and each run of deliveries from
/// the same lender in one call, so that a cumulative ACK reaches RabbitMQ as one `multiple` ack.
pub(crate) fn settle_targets(targets: Vec<AckTarget>, positive: bool) {
    let mut run: Option<(Arc<dyn Lender>, Vec<u64>)> = None;
    let flush = |run: &mut Option<(Arc<dyn Lender>, Vec<u64>)>| {
        if let Some((lender, tags)) = run.take() {
            if positive {
                lender.ack(&tags);
            } else {
                lender.nack(&tags);
            }
        }
    };
    for target in targets {
        match target {
            AckTarget::None => {}
            AckTarget::Hook(hook) if positive => hook.acked(),
            AckTarget::Hook(hook) => hook.nacked(),
            AckTarget::Queue { queue, tag } => {
                if let Some((lender, tags)) = &mut run
                    && same_lender(lender, &queue)
                {
                    tags.push(tag);
                    continue;
                }
                flush(&mut run);
                run = Some((queue, vec![tag]));
            }
        }
    }
    flush(&mut run);
}

/// Whether two lenders are the same object (by address, not by vtable).
fn same_lender(a: &Arc<dyn Lender>, b: &Arc<dyn Lender>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}
