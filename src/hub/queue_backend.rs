//! The seam of generic `/queue/<name>` destinations: point-to-point queues whose messages wait
//! for a consumer and each go to one. On one node they live in this process ([`LocalQueues`],
//! built on [`super::queue::Queue`]); in cluster mode in RabbitMQ
//! (`crate::relay::queues::AmqpQueues`), so that they outlive any node. The hub holds one
//! `Arc<dyn QueueBackend>` and never asks which it is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use dashmap::DashMap;
use stomp_codec::Headers;

use super::queue::{Queue, QueueFull};
use super::routes::{Subscriber, SubscriptionKey};
use crate::app_error::ErrorCode;

/// Why a message could not be put on a generic queue, or a queue not consumed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds its maximum of waiting messages.
    #[error(transparent)]
    Full(#[from] QueueFull),
    /// The name or a header cannot be carried by RabbitMQ.
    #[error("{0}")]
    Invalid(String),
    /// RabbitMQ is unreachable, or did not confirm the message.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

impl QueueError {
    /// The contract's error code for it.
    pub fn code(&self) -> ErrorCode {
        match self {
            QueueError::Invalid(_) => ErrorCode::InvalidArgument,
            QueueError::Full(_) | QueueError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

/// A boxed future, so that the trait can be used as `dyn QueueBackend`.
pub type QueueFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where generic queues live.
pub trait QueueBackend: Send + Sync + 'static {
    /// Puts a message (the SEND's `headers` and `body`, under `message_id`) on the queue
    /// `name`. Resolves once the message is stored, so that a RECEIPT can say so.
    ///
    /// # Errors
    ///
    /// [`QueueError`] when the queue is full, or the backend cannot take the message.
    fn send<'a>(
        &'a self,
        name: &'a ByteString,
        headers: Headers,
        body: Bytes,
        message_id: ByteString,
    ) -> QueueFuture<'a, Result<(), QueueError>>;

    /// Makes `subscriber` a consumer of the queue `name`, holding at most `prefetch`
    /// unacknowledged messages.
    ///
    /// # Errors
    ///
    /// [`QueueError`] when the backend cannot open the consumer.
    fn subscribe<'a>(
        &'a self,
        name: &'a ByteString,
        subscriber: Subscriber,
        prefetch: usize,
    ) -> QueueFuture<'a, Result<(), QueueError>>;

    /// Ends the consumer of subscription `subscription` of session `session_id` on the queue
    /// `name`; what it had not acknowledged goes back to the queue, in order.
    fn unsubscribe<'a>(
        &'a self,
        name: &'a ByteString,
        session_id: u64,
        subscription: &'a str,
    ) -> QueueFuture<'a, ()>;

    /// Whether the queues can be used now (for `/readyz`).
    fn is_connected(&self) -> bool;
}

/// Generic queues in this process: one [`Queue`] per name, created on first use and dropped
/// when idle.
pub struct LocalQueues {
    queues: DashMap<ByteString, Arc<Queue>>,
    /// Waiting messages per queue (`limits.queue_max_messages`).
    max_messages: usize,
}

impl LocalQueues {
    /// Queues that each hold at most `max_messages` waiting messages.
    pub fn new(max_messages: usize) -> LocalQueues {
        LocalQueues {
            queues: DashMap::new(),
            max_messages,
        }
    }

    /// The queue called `name`, created on first use.
    pub fn queue(&self, name: &ByteString) -> Arc<Queue> {
        self.queues
            .entry(name.clone())
            .or_insert_with(|| Queue::new(name.to_string(), self.max_messages))
            .clone()
    }

    fn put(
        &self,
        name: &ByteString,
        headers: Headers,
        body: Bytes,
        message_id: ByteString,
    ) -> Result<(), QueueFull> {
        let template = SubscriptionKey::Queue(name.clone()).message_template(headers, body);
        self.queue(name).send(template, message_id)
    }
}

impl QueueBackend for LocalQueues {
    fn send<'a>(
        &'a self,
        name: &'a ByteString,
        headers: Headers,
        body: Bytes,
        message_id: ByteString,
    ) -> QueueFuture<'a, Result<(), QueueError>> {
        let sent = self.put(name, headers, body, message_id);
        Box::pin(std::future::ready(sent.map_err(QueueError::from)))
    }

    fn subscribe<'a>(
        &'a self,
        name: &'a ByteString,
        subscriber: Subscriber,
        prefetch: usize,
    ) -> QueueFuture<'a, Result<(), QueueError>> {
        self.queue(name).subscribe(
            subscriber.session,
            subscriber.subscription,
            subscriber.slot,
            subscriber.ack,
            prefetch,
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn unsubscribe<'a>(
        &'a self,
        name: &'a ByteString,
        session_id: u64,
        subscription: &'a str,
    ) -> QueueFuture<'a, ()> {
        if let Some(queue) = self.queues.get(name).map(|q| q.clone()) {
            queue.unsubscribe(session_id, subscription);
            self.queues.remove_if(name, |_, q| q.is_idle());
        }
        Box::pin(std::future::ready(()))
    }

    fn is_connected(&self) -> bool {
        true
    }
}
