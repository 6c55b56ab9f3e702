//! Routes and who listens on them: the key a subscription is registered under, the hub's view
//! of a subscriber, and the per-route list that fan-out reads through a snapshot.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use bytestring::ByteString;
use stomp_codec::{Headers, MessageTemplate};

use crate::delivery::{AckMode, AckTarget, Route, SessionHandle};
use crate::util::lock;

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
    pub gate: Option<Arc<ReplayGate>>,
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
        headers.set_static("destination", self.destination());
        if headers.get("content-type").is_none() {
            headers.push(
                ByteString::from_static("content-type"),
                ByteString::from_static("text/plain;charset=utf-8"),
            );
        }
        Arc::new(MessageTemplate::new(headers, body))
    }
}

/// Live deliveries one gate holds at most; a session that would need more is cut as a slow
/// consumer, as it would be with that much queued.
const MAX_HELD: usize = 10_000;

/// One live delivery held while the replay is read.
pub(super) struct Held {
    pub(super) subscriber: Subscriber,
    pub(super) sequence: Option<i64>,
    pub(super) template: Arc<MessageTemplate>,
    pub(super) message_id: ByteString,
    pub(super) target: AckTarget,
}

/// The gate in front of one subscription while it replays, and after: a message is published
/// some time after its commit, so one the replay read may still arrive live once the gate is
/// open.
pub struct ReplayGate {
    /// Set once the replay is delivered: fan-out then delivers directly.
    pub(super) open: AtomicBool,
    /// The newest seq the replay covered (set before `open`): a live publication at or below
    /// it was delivered by the replay and is dropped.
    pub(super) covered: AtomicI64,
    pub(super) held: Mutex<Vec<Held>>,
}

impl ReplayGate {
    /// A closed gate.
    pub fn new() -> Arc<ReplayGate> {
        Arc::new(ReplayGate {
            open: AtomicBool::new(false),
            covered: AtomicI64::new(i64::MIN),
            held: Mutex::new(Vec::new()),
        })
    }

    /// Whether a live publication of this seq was delivered by the replay.
    fn covers(&self, sequence: Option<i64>) -> bool {
        sequence.is_some_and(|seq| seq <= self.covered.load(Ordering::Acquire))
    }

    /// Holds a live delivery while the gate is closed, and drops one the replay delivered once
    /// it is open; returns whether fan-out must not deliver it.
    pub(super) fn hold(
        &self,
        subscriber: &Subscriber,
        sequence: Option<i64>,
        template: &Arc<MessageTemplate>,
        message_id: &ByteString,
        target: &AckTarget,
    ) -> bool {
        if self.open.load(Ordering::Acquire) {
            return self.covers(sequence);
        }
        let mut held = lock(&self.held);
        // The opener sets `open` under this lock: checked again, it is final.
        if self.open.load(Ordering::Acquire) {
            return self.covers(sequence);
        }
        if held.len() >= MAX_HELD {
            subscriber.session.cut_slow();
            return true;
        }
        held.push(Held {
            subscriber: subscriber.clone(),
            sequence,
            template: template.clone(),
            message_id: message_id.clone(),
            target: target.clone(),
        });
        true
    }
}
