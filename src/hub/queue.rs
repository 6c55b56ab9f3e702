//! A generic point-to-point queue (`/queue/<name>`) on one node: messages wait (bounded) while
//! nobody consumes, each goes to one consumer, round-robin; a client-ack consumer holds at most
//! its prefetch of unacknowledged messages, and what it NACKs or leaves unacked when it goes is
//! delivered again, to another consumer when there is one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use bytestring::ByteString;
use stomp_codec::MessageTemplate;

use crate::delivery::{AckMode, AckTarget, Lender, SessionHandle};
use crate::util::lock;

/// A message held by the queue.
#[derive(Clone)]
struct Held {
    template: Arc<MessageTemplate>,
    message_id: ByteString,
    /// The consumer that last refused or dropped it, to prefer another one next time.
    avoid: Option<(u64, ByteString)>,
}

struct Consumer {
    session: Arc<SessionHandle>,
    subscription: ByteString,
    /// The subscription's slot in the session's ledger.
    slot: u32,
    ack: AckMode,
    prefetch: usize,
    unacked: usize,
}

impl Consumer {
    fn key(&self) -> (u64, &ByteString) {
        (self.session.id, &self.subscription)
    }

    fn has_room(&self) -> bool {
        self.ack == AckMode::Auto || self.unacked < self.prefetch
    }
}

struct Lent {
    held: Held,
    consumer: (u64, ByteString),
}

#[derive(Default)]
struct State {
    ready: VecDeque<Held>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    lent: HashMap<u64, Lent>,
    next_tag: u64,
}

/// One queue.
pub struct Queue {
    /// Itself, for the ack targets it hands out from `&self`.
    me: Weak<Queue>,
    name: String,
    max_ready: usize,
    state: Mutex<State>,
}

/// The queue holds `queue_max_messages` already.
#[derive(Debug, thiserror::Error)]
#[error("queue {0} is full")]
pub struct QueueFull(pub String);

impl Queue {
    /// An empty queue that keeps at most `max_ready` waiting messages.
    pub fn new(name: String, max_ready: usize) -> Arc<Queue> {
        Arc::new_cyclic(|me| Queue {
            me: me.clone(),
            name,
            max_ready,
            state: Mutex::new(State::default()),
        })
    }

    /// The queue's name (after `/queue/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of messages waiting for a consumer.
    pub fn ready_len(&self) -> usize {
        lock(&self.state).ready.len()
    }

    /// Whether the queue holds nothing and has no consumer, so that it can be dropped.
    pub fn is_idle(&self) -> bool {
        let state = lock(&self.state);
        state.ready.is_empty() && state.consumers.is_empty() && state.lent.is_empty()
    }

    /// Adds a message and hands it to a consumer if one has room.
    ///
    /// # Errors
    ///
    /// [`QueueFull`] when `max_ready` messages are already waiting.
    pub fn send(
        self: &Arc<Queue>,
        template: Arc<MessageTemplate>,
        message_id: ByteString,
    ) -> Result<(), QueueFull> {
        let mut state = lock(&self.state);
        if state.ready.len() >= self.max_ready {
            return Err(QueueFull(self.name.clone()));
        }
        state.ready.push_back(Held {
            template,
            message_id,
            avoid: None,
        });
        self.dispatch(&mut state);
        Ok(())
    }

    /// Adds a consumer (`slot` is its subscription's in the session's ledger) and hands it what
    /// is waiting.
    pub fn subscribe(
        self: &Arc<Queue>,
        session: Arc<SessionHandle>,
        subscription: ByteString,
        slot: u32,
        ack: AckMode,
        prefetch: usize,
    ) {
        let mut state = lock(&self.state);
        state.consumers.push(Consumer {
            session,
            subscription,
            slot,
            ack,
            prefetch: prefetch.max(1),
            unacked: 0,
        });
        self.dispatch(&mut state);
    }

    /// Removes a consumer; what it had not acknowledged is delivered again.
    pub fn unsubscribe(self: &Arc<Queue>, session_id: u64, subscription: &str) {
        let mut state = lock(&self.state);
        state
            .consumers
            .retain(|c| !(c.session.id == session_id && c.subscription == subscription));
        let mut returned: Vec<(u64, Held)> = Vec::new();
        state.lent.retain(|tag, lent| {
            if lent.consumer.0 == session_id && lent.consumer.1 == subscription {
                let mut held = lent.held.clone();
                held.avoid = Some(lent.consumer.clone());
                returned.push((*tag, held));
                false
            } else {
                true
            }
        });
        // Back at the front in the order they were first sent.
        returned.sort_by_key(|(tag, _)| *tag);
        for (_, held) in returned.into_iter().rev() {
            state.ready.push_front(held);
        }
        self.dispatch(&mut state);
    }

    /// The consumer acknowledged a delivery.
    pub fn ack(self: &Arc<Queue>, tag: u64) {
        let mut state = lock(&self.state);
        if let Some(lent) = state.lent.remove(&tag) {
            release(&mut state, &lent.consumer);
            self.dispatch(&mut state);
        }
    }

    /// The consumer refused a delivery: it goes back to the front, for another consumer.
    pub fn nack(self: &Arc<Queue>, tag: u64) {
        let mut state = lock(&self.state);
        if let Some(lent) = state.lent.remove(&tag) {
            release(&mut state, &lent.consumer);
            let mut held = lent.held;
            held.avoid = Some(lent.consumer);
            state.ready.push_front(held);
            self.dispatch(&mut state);
        }
    }

    /// Hands waiting messages to consumers with room, round-robin.
    fn dispatch(self: &Arc<Queue>, state: &mut State) {
        loop {
            // Drop consumers whose session has ended; their lent messages come back when the
            // session unsubscribes on its way out. Checked before the emptiness test, so that
            // `pick` never sees an empty list.
            state.consumers.retain(|c| !c.session.is_closed());
            if state.consumers.is_empty() {
                return;
            }
            let Some(held) = state.ready.front() else {
                return;
            };
            let Some(index) = pick(state, held.avoid.as_ref()) else {
                return;
            };
            let Some(held) = state.ready.pop_front() else {
                return;
            };
            state.next_consumer = index + 1;
            let tag = state.next_tag;
            state.next_tag += 1;
            let consumer = &mut state.consumers[index];
            let target = if consumer.ack == AckMode::Auto {
                AckTarget::None
            } else {
                consumer.unacked += 1;
                AckTarget::Queue {
                    queue: self.clone(),
                    tag,
                }
            };
            let template = if held.avoid.is_some() {
                redelivered(&held.template)
            } else {
                held.template.clone()
            };
            let delivered = consumer.session.deliver(
                &consumer.subscription,
                consumer.slot,
                consumer.ack,
                &template,
                &held.message_id,
                target,
            );
            if !delivered {
                // The session is gone or was just cut; keep the message for someone else.
                let session_id = consumer.session.id;
                state.consumers.retain(|c| c.session.id != session_id);
                state.ready.push_front(held);
                continue;
            }
            if consumer.ack != AckMode::Auto {
                let key = (consumer.session.id, consumer.subscription.clone());
                state.lent.insert(
                    tag,
                    Lent {
                        held,
                        consumer: key,
                    },
                );
            }
        }
    }
}

impl Lender for Queue {
    fn ack(&self, tags: &[u64]) {
        if let Some(queue) = self.me.upgrade() {
            for tag in tags {
                Queue::ack(&queue, *tag);
            }
        }
    }

    fn nack(&self, tags: &[u64]) {
        if let Some(queue) = self.me.upgrade() {
            for tag in tags {
                Queue::nack(&queue, *tag);
            }
        }
    }
}

/// The next consumer with room after the last one served, preferring one other than `avoid`.
fn pick(state: &State, avoid: Option<&(u64, ByteString)>) -> Option<usize> {
    let count = state.consumers.len();
    let start = state.next_consumer % count;
    let order = (0..count).map(|i| (start + i) % count);
    let is_avoided = |c: &Consumer| avoid.is_some_and(|(s, sub)| c.key() == (*s, sub));
    order
        .clone()
        .find(|&i| state.consumers[i].has_room() && !is_avoided(&state.consumers[i]))
        .or_else(|| order.into_iter().find(|&i| state.consumers[i].has_room()))
}

fn release(state: &mut State, consumer: &(u64, ByteString)) {
    if let Some(c) = state
        .consumers
        .iter_mut()
        .find(|c| c.key() == (consumer.0, &consumer.1))
    {
        c.unacked = c.unacked.saturating_sub(1);
    }
}

/// The same message marked `redelivered:true`, as RabbitMQ and ActiveMQ do.
fn redelivered(template: &MessageTemplate) -> Arc<MessageTemplate> {
    let mut headers = template.headers().clone();
    headers.set("redelivered", "true");
    Arc::new(MessageTemplate::new(headers, template.body().clone()))
}
