//! The seam between this node and the others, owned by the hub that uses it. The hub delivers
//! to local sessions itself and hands every publication to the [`Relay`], which carries it to
//! the nodes that have interest. On one node the relay is [`LocalRelay`], which has nowhere to
//! carry anything; the RabbitMQ implementation lives in `crate::relay::amqp`, above the hub, so
//! that the hub names no RabbitMQ type.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use stomp_codec::Headers;

use crate::delivery::{Interest, Route};

/// Why the relay could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The message broker is unreachable.
    #[error("relay unavailable: {0}")]
    Unavailable(String),
}

/// A boxed future, so that the trait can be used as `dyn Relay`.
pub type RelayFuture = Pin<Box<dyn Future<Output = Result<(), RelayError>> + Send>>;

/// Carries publications to the other nodes of a cluster.
pub trait Relay: Send + Sync + 'static {
    /// Starts receiving publications for `interest` from other nodes. The hub awaits it before
    /// it confirms a subscription, so that nothing published after the RECEIPT is missed.
    fn bind(&self, interest: Interest) -> RelayFuture;

    /// Stops receiving publications for `interest`.
    fn unbind(&self, interest: Interest) -> RelayFuture;

    /// Hands a publication (with its place in its topic's sequence, if any) to the other
    /// nodes. Local sessions are served by the hub.
    fn forward(&self, route: &Route, headers: &Headers, body: &Bytes, sequence: Option<i64>);

    /// Whether the relay can reach the other nodes now (for `/readyz`).
    fn is_connected(&self) -> bool;

    /// Whether there are no other nodes: then whatever is published is delivered here at once.
    fn is_local(&self) -> bool {
        false
    }
}

/// The single-node relay: there are no other nodes.
#[derive(Debug, Default)]
pub struct LocalRelay;

impl Relay for LocalRelay {
    fn bind(&self, _interest: Interest) -> RelayFuture {
        Box::pin(std::future::ready(Ok(())))
    }

    fn unbind(&self, _interest: Interest) -> RelayFuture {
        Box::pin(std::future::ready(Ok(())))
    }

    fn forward(&self, _route: &Route, _headers: &Headers, _body: &Bytes, _sequence: Option<i64>) {}

    fn is_connected(&self) -> bool {
        true
    }

    fn is_local(&self) -> bool {
        true
    }
}
