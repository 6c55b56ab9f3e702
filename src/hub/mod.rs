//! The hub: who is connected, who subscribes to what, and local fan-out.
//!
//! Every publication is encoded once into a [`stomp_codec::MessageTemplate`]; each subscriber's
//! session gets a reference to it and encodes only its own `subscription` / `message-id` / `ack`
//! headers. A publish takes a lock only long enough to clone an `Arc` of the route's subscriber
//! snapshot, and fans out without holding any; the snapshot is rebuilt on the first publish
//! after a change, so that a topic gaining N subscribers costs O(N), not O(N²).
//!
//! The hub owns its two seams to the rest of a cluster, and names no RabbitMQ type: other nodes
//! are reached through a [`Relay`] and generic `/queue/*` destinations live in a
//! [`QueueBackend`]; each has an in-process implementation here ([`LocalRelay`],
//! [`LocalQueues`]) and a RabbitMQ one in `crate::relay`, which depends on the hub. The hub
//! knows nothing of chats.
//!
//! Files: sessions (`sessions.rs`), subscriptions and interest (`subscriptions.rs`), routes and
//! their subscribers (`routes.rs`), publishing and fan-out (`fanout.rs`), what is published
//! (`publication.rs`), the two seams (`relay.rs`, `queue_backend.rs`) and the in-process queue
//! (`queue.rs`).

pub mod control;
mod errors;
mod fanout;
mod publication;
pub mod queue;
pub mod queue_backend;
pub mod relay;
pub mod replay;
mod routes;
mod sessions;
mod subscriptions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytestring::ByteString;
use dashmap::DashMap;

use crate::delivery::{Interest, SessionHandle};
use crate::ordering::TopicSequencer;
pub use errors::{AddSessionError, SubscribeError};
pub use publication::{Fanout, Publication};
pub use queue::{Queue, QueueFull};
pub use queue_backend::{LocalQueues, QueueBackend, QueueError, QueueFuture};
pub use relay::{LocalRelay, Relay, RelayError, RelayFuture};
use routes::RouteEntry;
pub use routes::{Subscriber, SubscriptionKey};
pub use subscriptions::{SessionSubscription, SessionSubscriptions, SubscribeOptions};

/// Settings of the hub.
#[derive(Clone, Debug)]
pub struct HubSettings {
    /// Name of this node, prefix of message ids.
    pub node_id: String,
    /// Sessions one user may have open at once on this node.
    pub max_sessions_per_user: usize,
}

/// The shared hub handle.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    settings: HubSettings,
    routes: DashMap<SubscriptionKey, RouteEntry>,
    users: DashMap<ByteString, Vec<Arc<SessionHandle>>>,
    subscriptions: DashMap<u64, SessionSubscriptions>,
    /// Generic `/queue/*` destinations: in this process, or in RabbitMQ in cluster mode.
    queues: Arc<dyn QueueBackend>,
    relay: Arc<dyn Relay>,
    next_message: AtomicU64,
    /// Serialises changes of interest so that bind and unbind of one key cannot cross.
    interest_changes: tokio::sync::Mutex<()>,
    interest_counts: Mutex<HashMap<Interest, usize>>,
    sequencer: TopicSequencer<Publication, SubscriptionKey>,
    /// Session listings this node waits for, by reply topic (see [`control`]).
    collectors: DashMap<String, tokio::sync::mpsc::UnboundedSender<bytes::Bytes>>,
    /// How many: fan-out looks at `collectors` only while there are some.
    collecting: std::sync::atomic::AtomicUsize,
}

impl Hub {
    /// A hub relaying to other nodes through `relay`, with generic queues in `queues`
    /// ([`LocalQueues`] on one node).
    pub fn new(settings: HubSettings, relay: Arc<dyn Relay>, queues: Arc<dyn QueueBackend>) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                settings,
                routes: DashMap::new(),
                users: DashMap::new(),
                subscriptions: DashMap::new(),
                queues,
                relay,
                next_message: AtomicU64::new(1),
                interest_changes: tokio::sync::Mutex::new(()),
                interest_counts: Mutex::new(HashMap::new()),
                collectors: DashMap::new(),
                collecting: std::sync::atomic::AtomicUsize::new(0),
                sequencer: TopicSequencer::default(),
            }),
        }
    }

    /// Releases sequenced publications that waited too long for an earlier one; the server
    /// calls it a few times per hold period.
    pub fn release_overdue(&self) {
        self.inner.sequencer.expire(|key, publication| {
            self.deliver_to(key, publication);
        });
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.settings.node_id
    }

    /// The relay.
    pub fn relay(&self) -> &Arc<dyn Relay> {
        &self.inner.relay
    }

    /// Whether generic queues can be used now: always on one node; in cluster mode, while
    /// RabbitMQ is reachable.
    pub fn queues_connected(&self) -> bool {
        self.inner.queues.is_connected()
    }

    /// A new message id, unique across nodes.
    pub fn next_message_id(&self) -> ByteString {
        let n = self.inner.next_message.fetch_add(1, Ordering::Relaxed);
        ByteString::from(format!("{}-{n}", self.inner.settings.node_id))
    }
}

#[cfg(test)]
mod tests;
