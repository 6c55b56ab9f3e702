//! Routes and who listens on them: the key a subscription is registered under, the hub's view
//! of a subscriber, and the per-route list that fan-out reads through a snapshot.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use bytestring::ByteString;
use stomp_codec::{Headers, MessageTemplate};

use crate::delivery::{AckMode, Route, SessionHandle};

/// A subscription as the hub sees it.
#[derive(Clone)]
pub struct Subscriber {
    /// The subscribing session.
    pub session: Arc<SessionHandle>,
    /// The SUBSCRIBE `id`.
    pub subscription: ByteString,
    /// Its slot in the session's ledger of unacknowledged deliveries.
    pub slot: u32,
    /// Its ack mode.
    pub ack: AckMode,
    /// While it replays what it missed: where live publications wait (see [`super::replay`]).
    pub gate: Option<Arc<super::replay::ReplayGate>>,
}

/// The subscribers of one route.
#[derive(Default)]
pub(super) struct RouteEntry {
    /// Edited in place by SUBSCRIBE and UNSUBSCRIBE.
    pub(super) list: Vec<Subscriber>,
    /// What fan-out iterates; empty after a change until the next publish builds it.
    snapshot: OnceLock<Arc<[Subscriber]>>,
}

impl RouteEntry {
    pub(super) fn snapshot(&self) -> Arc<[Subscriber]> {
        self.snapshot
            .get_or_init(|| Arc::from(self.list.as_slice()))
            .clone()
    }

    pub(super) fn changed(&mut self) {
        self.snapshot = OnceLock::new();
    }
}

/// Where a subscription is registered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionKey {
    /// `/topic/<name>` (or any broadcast destination); the name after `/topic/`.
    Topic(ByteString),
    /// `/user/queue/<queue>` of a user.
    User {
        /// The user id.
        user: ByteString,
        /// The queue name.
        queue: ByteString,
    },
    /// `/queue/<name>`: a point-to-point queue.
    Queue(ByteString),
}

impl SubscriptionKey {
    /// The `destination` header of the MESSAGE frames it receives.
    pub fn destination(&self) -> String {
        match self {
            SubscriptionKey::Topic(name) => format!("/topic/{name}"),
            SubscriptionKey::User { queue, .. } => format!("/user/queue/{queue}"),
            SubscriptionKey::Queue(name) => format!("/queue/{name}"),
        }
    }

    pub(super) fn of_route(route: &Route) -> SubscriptionKey {
        match route {
            Route::Topic(name) => SubscriptionKey::Topic(name.as_str().into()),
            Route::User { user, queue } => SubscriptionKey::User {
                user: user.as_str().into(),
                queue: queue.as_str().into(),
            },
        }
    }

    /// The MESSAGE template of a publication to this key: `headers` with its `destination`
    /// and, when missing, the default `content-type`.
    pub(super) fn message_template(
        &self,
        mut headers: Headers,
        body: Bytes,
    ) -> Arc<MessageTemplate> {
        headers.set("destination", self.destination());
        if headers.get("content-type").is_none() {
            headers.push("content-type", "text/plain;charset=utf-8");
        }
        Arc::new(MessageTemplate::new(headers, body))
    }
}
