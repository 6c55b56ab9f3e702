//! Publishing: local fan-out of a publication to the subscribers of its route (in seq order
//! for sequenced topics, see [`crate::ordering::sequencer`]), relaying to the other nodes, delivery to
//! one session, and SEND to a generic queue.

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use stomp_codec::{Headers, MessageTemplate};

use super::Hub;
use super::publication::{Fanout, Publication};
use super::queue_backend::QueueError;
use super::routes::{Subscriber, SubscriptionKey};
use crate::delivery::{AckHook, AckMode, AckTarget, Route, SessionHandle};

impl Hub {
    /// Delivers to every local subscriber of `route` and relays to the other nodes. Returns the
    /// local sessions it was queued to.
    pub fn publish(&self, route: &Route, publication: Publication) -> Fanout {
        self.inner.relay.forward(
            route,
            &publication.headers,
            &publication.body,
            publication.sequence,
        );
        self.deliver_local(route, publication)
    }

    /// Orders the sequenced publications of `topic` from `next` on, if it has local subscribers
    /// and is not ordered yet (see [`crate::ordering::sequencer`]). Call it after the subscription is registered,
    /// with a seq read after that, so that no publication between the two is awaited in vain.
    pub fn order_topic_from(&self, topic: &str, next: i64) {
        self.order_from(&Route::Topic(topic.to_owned()), next);
    }

    /// [`Hub::order_topic_from`] for any route: a user's queue is sequenced by the user's inbox
    /// positions.
    pub fn order_from(&self, route: &Route, next: i64) {
        let key = SubscriptionKey::of_route(route);
        if self.inner.routes.contains_key(&key) {
            self.inner.sequencer.start_at(&key, next);
        }
    }

    /// Whether sequenced publications of `topic` are being ordered here.
    pub fn orders_topic(&self, topic: &str) -> bool {
        self.inner
            .sequencer
            .tracks(&SubscriptionKey::Topic(topic.into()))
    }

    /// Delivers to local subscribers only: for publications that arrive from other nodes.
    /// A sequenced topic publication may wait for earlier ones (see [`crate::ordering::sequencer`]).
    pub fn deliver_local(&self, route: &Route, publication: Publication) -> Fanout {
        match route {
            Route::User { user, queue } if queue == super::control::CONTROL_QUEUE => {
                self.on_control(user, &publication.body);
                return Fanout::default();
            }
            Route::Topic(topic) if self.collect(topic, &publication.body) => {
                return Fanout::default();
            }
            _ => {}
        }
        if let (Route::Topic(_) | Route::User { .. }, Some(seq)) = (route, publication.sequence) {
            let key = SubscriptionKey::of_route(route);
            // Nobody here to order for: a stream started now would outlive its use (streams
            // are forgotten when a route's last subscriber leaves) and, missing the seqs that
            // only reach this node while it has subscribers, hold the next ones for nothing.
            if !self.inner.sequencer.tracks(&key) && !self.inner.routes.contains_key(&key) {
                return Fanout::default();
            }
            let mut total = Fanout::default();
            self.inner.sequencer.offer(&key, seq, publication, |ready| {
                let fanout = self.deliver_to(&key, ready);
                total.auto += fanout.auto;
                total.client += fanout.client;
            });
            return total;
        }
        self.deliver_to(&SubscriptionKey::of_route(route), publication)
    }

    /// Delivers to the local subscribers of `key` at once.
    pub(super) fn deliver_to(&self, key: &SubscriptionKey, publication: Publication) -> Fanout {
        let Some(subscribers) = self.inner.routes.get(key).map(|entry| entry.snapshot()) else {
            return Fanout::default();
        };
        let (template, message_id) = self.template(key, publication.headers, publication.body);
        fan_out(
            &subscribers,
            &template,
            &message_id,
            publication.ack_hook.as_ref(),
            publication.exclude_session,
            publication.sequence,
        )
    }

    /// Delivers to one session's subscriptions of `/user/queue/<queue>` only: errors go to the
    /// session that caused them, not to the user's other devices.
    pub fn deliver_to_session(
        &self,
        session: &Arc<SessionHandle>,
        queue: &str,
        publication: Publication,
    ) -> Fanout {
        let key = SubscriptionKey::User {
            user: session.user_id().into(),
            queue: queue.into(),
        };
        let Some(subscribers) = self.inner.routes.get(&key).map(|entry| entry.snapshot()) else {
            return Fanout::default();
        };
        let own: Vec<Subscriber> = subscribers
            .iter()
            .filter(|s| s.session.id == session.id)
            .cloned()
            .collect();
        if own.is_empty() {
            return Fanout::default();
        }
        let (template, message_id) = self.template(&key, publication.headers, publication.body);
        fan_out(
            &own,
            &template,
            &message_id,
            publication.ack_hook.as_ref(),
            None,
            publication.sequence,
        )
    }

    /// Puts a message on a generic queue. In cluster mode it resolves once RabbitMQ has
    /// confirmed the message, so that a RECEIPT means it is stored.
    ///
    /// # Errors
    ///
    /// [`QueueError`] when the queue is full, or (cluster mode) RabbitMQ cannot take it.
    pub async fn send_to_queue(
        &self,
        name: &ByteString,
        headers: Headers,
        body: Bytes,
    ) -> Result<(), QueueError> {
        let message_id = self.next_message_id();
        self.inner
            .queues
            .send(name, headers, body, message_id)
            .await
    }

    pub(super) fn template(
        &self,
        key: &SubscriptionKey,
        headers: Headers,
        body: Bytes,
    ) -> (Arc<MessageTemplate>, ByteString) {
        (key.message_template(headers, body), self.next_message_id())
    }
}

fn fan_out(
    subscribers: &[Subscriber],
    template: &Arc<MessageTemplate>,
    message_id: &ByteString,
    hook: Option<&Arc<dyn AckHook>>,
    exclude_session: Option<u64>,
    sequence: Option<i64>,
) -> Fanout {
    let mut fanout = Fanout::default();
    for subscriber in subscribers {
        if exclude_session == Some(subscriber.session.id) {
            continue;
        }
        let target = match (subscriber.ack, hook) {
            (AckMode::Auto, _) | (_, None) => AckTarget::None,
            (_, Some(hook)) => AckTarget::Hook(hook.clone()),
        };
        if let Some(gate) = &subscriber.gate
            && gate.hold(subscriber, sequence, template, message_id, &target)
        {
            continue;
        }
        if subscriber.session.deliver(
            &subscriber.subscription,
            subscriber.slot,
            subscriber.ack,
            template,
            message_id,
            target,
        ) {
            if subscriber.ack == AckMode::Auto {
                fanout.auto += 1;
            } else {
                fanout.client += 1;
            }
        }
    }
    fanout
}
