//! The hub: who is connected, who subscribes to what, and local fan-out.
//!
//! Every publication is encoded once into a [`MessageTemplate`]; each subscriber's session gets
//! a reference to it and encodes only its own `subscription` / `message-id` / `ack` headers.
//! A publish takes a lock only long enough to clone an `Arc` of the route's subscriber snapshot,
//! and fans out without holding any; the snapshot is rebuilt on the first publish after a
//! change, so that a topic gaining N subscribers costs O(N), not O(N²). Other nodes are reached through the
//! [`Relay`]. The hub knows nothing of chats.

pub mod queue;
pub mod sequencer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use bytestring::ByteString;
use dashmap::DashMap;
use stomp_codec::{Headers, MessageTemplate};

use crate::app_error::ErrorCode;
use crate::relay::queues::SharedQueues;
use crate::relay::{Interest, Relay, RelayError, Route};
use crate::session::handle::{AckHook, AckMode, AckTarget, SessionHandle};
use crate::util::lock;
pub use queue::{Queue, QueueFull};

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
}

/// The subscribers of one route.
#[derive(Default)]
struct RouteEntry {
    /// Edited in place by SUBSCRIBE and UNSUBSCRIBE.
    list: Vec<Subscriber>,
    /// What fan-out iterates; empty after a change until the next publish builds it.
    snapshot: OnceLock<Arc<[Subscriber]>>,
}

impl RouteEntry {
    fn snapshot(&self) -> Arc<[Subscriber]> {
        self.snapshot
            .get_or_init(|| Arc::from(self.list.as_slice()))
            .clone()
    }

    fn changed(&mut self) {
        self.snapshot = OnceLock::new();
    }
}

/// A message to publish: its headers (beyond the destination, which the route gives) and body.
#[derive(Clone, Default)]
pub struct Publication {
    /// Headers such as `content-type` and `event`.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
    /// Called when a client-ack subscriber ACKs or NACKs it.
    pub ack_hook: Option<Arc<dyn AckHook>>,
    /// A session that must not get it (the one whose action caused it).
    pub exclude_session: Option<u64>,
    /// The publication's place in its topic's sequence (a group message's seq): subscribers
    /// get sequenced publications in this order even when they arrive from several nodes.
    pub sequence: Option<i64>,
}

/// How many local sessions a publication was queued to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Subscriptions with `ack:auto`: delivered once queued.
    pub auto: usize,
    /// Client-ack subscriptions: delivered when ACKed.
    pub client: usize,
}

impl Fanout {
    /// All sessions it was queued to.
    pub fn total(&self) -> usize {
        self.auto + self.client
    }
}

impl Publication {
    /// A JSON publication with an `event` header, as the IM layer sends.
    pub fn json_event(event: &str, body: impl Into<Bytes>) -> Publication {
        let mut headers = Headers::with_capacity(2);
        headers.push("content-type", "application/json");
        headers.push("event", event.to_owned());
        Publication {
            headers,
            body: body.into(),
            ..Publication::default()
        }
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

    fn of_route(route: &Route) -> SubscriptionKey {
        match route {
            Route::Topic(name) => SubscriptionKey::Topic(name.as_str().into()),
            Route::User { user, queue } => SubscriptionKey::User {
                user: user.as_str().into(),
                queue: queue.as_str().into(),
            },
        }
    }
}

/// A session's registered subscription.
#[derive(Clone, Debug)]
pub struct SessionSubscription {
    /// Where it is registered.
    pub key: SubscriptionKey,
    /// Its ack mode.
    pub ack: AckMode,
    /// Its slot in the session's ledger of unacknowledged deliveries.
    pub slot: u32,
}

/// Up to this many subscriptions, a session's vector holds no spare slot.
const EXACT_SUBSCRIPTION_SLOTS: usize = 8;

/// One session's subscriptions by id. A short vector rather than a map: sessions hold a few
/// subscriptions, and an idle one then costs one small allocation instead of a hash table.
#[derive(Default)]
pub struct SessionSubscriptions {
    entries: Vec<(ByteString, SessionSubscription)>,
}

impl SessionSubscriptions {
    fn position(&self, id: &str) -> Option<usize> {
        self.entries.iter().position(|(own, _)| own == id)
    }

    /// Whether `id` is in use.
    pub fn contains_key(&self, id: &str) -> bool {
        self.position(id).is_some()
    }

    /// The subscription with this id.
    pub fn get(&self, id: &str) -> Option<&SessionSubscription> {
        self.position(id).map(|at| &self.entries[at].1)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, id: ByteString, subscription: SessionSubscription) {
        // Grown one slot at a time while small: most sessions hold a handful, and this lives
        // as long as the session. Past that, the usual doubling, so that a session filling up
        // to `stomp.max_subscriptions` does not copy the vector on every SUBSCRIBE.
        if self.entries.len() < EXACT_SUBSCRIPTION_SLOTS {
            self.entries.reserve_exact(1);
        }
        self.entries.push((id, subscription));
    }

    fn remove(&mut self, id: &str) -> Option<SessionSubscription> {
        self.position(id).map(|at| self.entries.swap_remove(at).1)
    }

    /// Every subscription with its id.
    pub fn iter(&self) -> impl Iterator<Item = (&ByteString, &SessionSubscription)> {
        self.entries.iter().map(|(id, sub)| (id, sub))
    }
}

impl IntoIterator for SessionSubscriptions {
    type Item = (ByteString, SessionSubscription);
    type IntoIter = std::vec::IntoIter<(ByteString, SessionSubscription)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// Settings of the hub.
#[derive(Clone, Debug)]
pub struct HubSettings {
    /// Name of this node, prefix of message ids.
    pub node_id: String,
    /// Waiting messages per generic queue.
    pub queue_max_messages: usize,
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
    queues: DashMap<ByteString, Arc<Queue>>,
    /// Cluster mode: generic queues live in RabbitMQ instead of `queues`.
    shared_queues: Option<Arc<SharedQueues>>,
    relay: Arc<dyn Relay>,
    next_message: AtomicU64,
    /// Serialises changes of interest so that bind and unbind of one key cannot cross.
    interest_changes: tokio::sync::Mutex<()>,
    interest_counts: Mutex<HashMap<Interest, usize>>,
    sequencer: sequencer::Sequencer<Publication>,
}

/// Why a subscription could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The session already has a subscription with this id.
    #[error("subscription id {0} is already in use")]
    IdInUse(String),
    /// The session holds its maximum of subscriptions.
    #[error("too many subscriptions")]
    TooMany,
    /// The relay could not declare the interest.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The queue cannot be consumed (cluster mode: RabbitMQ refused or is away).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Why a session could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum AddSessionError {
    /// The user has `max_sessions_per_user` sessions open on this node already.
    #[error("user {user} already has {max} sessions open")]
    TooMany {
        /// The user id.
        user: String,
        /// The configured limit.
        max: usize,
    },
    /// The relay could not declare the user's interest.
    #[error(transparent)]
    Relay(#[from] RelayError),
}

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

impl Hub {
    /// A hub relaying through `relay`, with generic queues in RabbitMQ when `shared_queues`
    /// is given and in this process otherwise.
    pub fn new(
        settings: HubSettings,
        relay: Arc<dyn Relay>,
        shared_queues: Option<Arc<SharedQueues>>,
    ) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                settings,
                routes: DashMap::new(),
                users: DashMap::new(),
                subscriptions: DashMap::new(),
                queues: DashMap::new(),
                shared_queues,
                relay,
                next_message: AtomicU64::new(1),
                interest_changes: tokio::sync::Mutex::new(()),
                interest_counts: Mutex::new(HashMap::new()),
                sequencer: sequencer::Sequencer::default(),
            }),
        }
    }

    /// Releases sequenced publications that waited too long for an earlier one; the server
    /// calls it a few times per hold period.
    pub fn release_overdue(&self) {
        self.inner.sequencer.expire(|topic, publication| {
            self.deliver_now(&Route::Topic(topic.to_owned()), publication);
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
        self.inner
            .shared_queues
            .as_ref()
            .is_none_or(|queues| queues.is_connected())
    }

    /// Registers an open session. Returns true when it is the user's first on this node.
    ///
    /// # Errors
    ///
    /// [`AddSessionError::TooMany`] when the user has `max_sessions_per_user` sessions on this
    /// node already (nothing is registered then); [`AddSessionError::Relay`] when the relay
    /// cannot declare the user's interest.
    pub async fn add_session(&self, session: &Arc<SessionHandle>) -> Result<bool, AddSessionError> {
        let user: ByteString = session.user_id().into();
        let first = {
            // Checked and counted under the entry's lock, so that concurrent CONNECTs of one
            // user cannot all pass the check.
            let mut sessions = self.inner.users.entry(user.clone()).or_default();
            let max = self.inner.settings.max_sessions_per_user;
            if sessions.len() >= max {
                return Err(AddSessionError::TooMany {
                    user: user.to_string(),
                    max,
                });
            }
            sessions.push(session.clone());
            sessions.len() == 1
        };
        self.inner
            .subscriptions
            .insert(session.id, SessionSubscriptions::default());
        self.add_interest(Interest::User(user.to_string())).await?;
        Ok(first)
    }

    /// Removes a session and all its subscriptions. Returns true when it was the user's last
    /// on this node.
    pub async fn remove_session(&self, session: &Arc<SessionHandle>) -> bool {
        let subscriptions = self
            .inner
            .subscriptions
            .remove(&session.id)
            .map(|(_, subs)| subs)
            .unwrap_or_default();
        // One swap for the whole ledger, however much it holds: forgetting it subscription by
        // subscription would lock it once per subscription. The session is closed, so nothing
        // is recorded after this.
        let unacknowledged = session.take_unacknowledged();
        for (id, sub) in subscriptions {
            self.unregister(session, &id, &sub).await;
        }
        // Now that none of them is a consumer any more (see `unregister`).
        unacknowledged.give_back();
        let user: ByteString = session.user_id().into();
        let last = match self.inner.users.get_mut(&user) {
            Some(mut sessions) => {
                sessions.retain(|s| s.id != session.id);
                sessions.is_empty()
            }
            None => false,
        };
        if last {
            self.inner.users.remove_if(&user, |_, s| s.is_empty());
        }
        self.remove_interest(Interest::User(user.to_string())).await;
        last
    }

    /// The sessions a user has open on this node.
    pub fn sessions_of(&self, user: &str) -> Vec<Arc<SessionHandle>> {
        self.inner
            .users
            .get(user)
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Every user with sessions on this node, and how many.
    pub fn user_session_counts(&self) -> Vec<(String, usize)> {
        self.inner
            .users
            .iter()
            .filter(|entry| !entry.value().is_empty())
            .map(|entry| (entry.key().to_string(), entry.value().len()))
            .collect()
    }

    /// Whether the user has a session open on this node.
    pub fn is_online(&self, user: &str) -> bool {
        self.inner.users.get(user).is_some_and(|s| !s.is_empty())
    }

    /// Number of open sessions on this node.
    pub fn session_count(&self) -> usize {
        self.inner.subscriptions.len()
    }

    /// Registers a subscription. For a queue, `prefetch` bounds its unacknowledged messages.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] when the id is in use, the session holds `max` subscriptions, or the
    /// relay cannot declare the interest.
    pub async fn subscribe(
        &self,
        session: &Arc<SessionHandle>,
        id: ByteString,
        key: SubscriptionKey,
        ack: AckMode,
        prefetch: usize,
        max: usize,
    ) -> Result<(), SubscribeError> {
        let slot = {
            let mut subs = self.inner.subscriptions.entry(session.id).or_default();
            if subs.contains_key(&id) {
                return Err(SubscribeError::IdInUse(id.to_string()));
            }
            if subs.len() >= max {
                return Err(SubscribeError::TooMany);
            }
            let slot = session.new_slot();
            subs.insert(
                id.clone(),
                SessionSubscription {
                    key: key.clone(),
                    ack,
                    slot,
                },
            );
            slot
        };
        if let SubscriptionKey::Topic(name) = &key
            && let Err(error) = self.add_interest(Interest::Topic(name.to_string())).await
        {
            if let Some(mut subs) = self.inner.subscriptions.get_mut(&session.id) {
                subs.remove(&id);
            }
            return Err(error.into());
        }
        let subscriber = Subscriber {
            session: session.clone(),
            subscription: id,
            slot,
            ack,
        };
        match &key {
            SubscriptionKey::Queue(name) => {
                if let Some(shared) = &self.inner.shared_queues {
                    if let Err(error) = shared
                        .subscribe(
                            &subscriber.session,
                            &subscriber.subscription,
                            slot,
                            name,
                            ack,
                            prefetch,
                        )
                        .await
                    {
                        if let Some(mut subs) = self.inner.subscriptions.get_mut(&session.id) {
                            subs.remove(&subscriber.subscription);
                        }
                        return Err(error.into());
                    }
                    return Ok(());
                }
                self.queue(name).subscribe(
                    subscriber.session,
                    subscriber.subscription,
                    slot,
                    ack,
                    prefetch,
                );
            }
            _ => {
                let mut entry = self.inner.routes.entry(key).or_default();
                entry.list.push(subscriber);
                entry.changed();
            }
        }
        Ok(())
    }

    /// Removes a subscription by id. Returns false when the session had no such id.
    pub async fn unsubscribe(&self, session: &Arc<SessionHandle>, id: &str) -> bool {
        let removed = self
            .inner
            .subscriptions
            .get_mut(&session.id)
            .and_then(|mut subs| subs.remove(id));
        match removed {
            Some(sub) => {
                self.unregister(session, id, &sub).await;
                session.forget_subscription(sub.slot).give_back();
                true
            }
            None => false,
        }
    }

    /// The ack mode of one of a session's subscriptions.
    pub fn subscription(&self, session_id: u64, id: &str) -> Option<SessionSubscription> {
        self.inner
            .subscriptions
            .get(&session_id)
            .and_then(|subs| subs.get(id).cloned())
    }

    /// Ends every subscription of `user`'s sessions on this node to `key`: a member removed
    /// from a group stops receiving it at once.
    pub async fn unsubscribe_user(&self, user: &str, key: &SubscriptionKey) {
        for session in self.sessions_of(user) {
            let ids: Vec<ByteString> = self
                .inner
                .subscriptions
                .get(&session.id)
                .map(|subs| {
                    subs.iter()
                        .filter(|(_, s)| &s.key == key)
                        .map(|(id, _)| id.clone())
                        .collect()
                })
                .unwrap_or_default();
            for id in ids {
                self.unsubscribe(&session, &id).await;
            }
        }
    }

    /// Takes a subscription out of its route or queue. Its queue takes back, in order, what the
    /// subscription had not acknowledged; only once this is done may the caller give back what
    /// the session's ledger still holds for it: a NACK while it was still a consumer would hand
    /// those messages straight back to it.
    async fn unregister(&self, session: &Arc<SessionHandle>, id: &str, sub: &SessionSubscription) {
        let key = &sub.key;
        match key {
            SubscriptionKey::Queue(_) if self.inner.shared_queues.is_some() => {
                if let Some(shared) = &self.inner.shared_queues {
                    shared.unsubscribe(session.id, id).await;
                }
            }
            SubscriptionKey::Queue(name) => {
                if let Some(queue) = self.inner.queues.get(name).map(|q| q.clone()) {
                    queue.unsubscribe(session.id, id);
                    self.inner.queues.remove_if(name, |_, q| q.is_idle());
                }
            }
            _ => {
                if let Some(mut entry) = self.inner.routes.get_mut(key) {
                    entry
                        .list
                        .retain(|s| !(s.session.id == session.id && s.subscription == id));
                    entry.changed();
                }
                let emptied = self
                    .inner
                    .routes
                    .remove_if(key, |_, entry| entry.list.is_empty());
                if let (Some(_), SubscriptionKey::Topic(name)) = (emptied, key) {
                    self.inner.sequencer.forget(name);
                }
                if let SubscriptionKey::Topic(name) = key {
                    self.remove_interest(Interest::Topic(name.to_string()))
                        .await;
                }
            }
        }
    }

    async fn add_interest(&self, interest: Interest) -> Result<(), RelayError> {
        let _serial = self.inner.interest_changes.lock().await;
        let first = {
            let mut counts = lock(&self.inner.interest_counts);
            let count = counts.entry(interest.clone()).or_default();
            *count += 1;
            *count == 1
        };
        if first && let Err(error) = self.inner.relay.bind(interest.clone()).await {
            let mut counts = lock(&self.inner.interest_counts);
            if let Some(count) = counts.get_mut(&interest) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&interest);
                }
            }
            return Err(error);
        }
        Ok(())
    }

    async fn remove_interest(&self, interest: Interest) {
        let _serial = self.inner.interest_changes.lock().await;
        let last = {
            let mut counts = lock(&self.inner.interest_counts);
            match counts.get_mut(&interest) {
                Some(count) => {
                    *count -= 1;
                    if *count == 0 {
                        counts.remove(&interest);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if last && let Err(error) = self.inner.relay.unbind(interest.clone()).await {
            tracing::warn!(?interest, %error, "relay could not drop interest");
        }
    }

    /// The queue called `name`, created on first use.
    pub fn queue(&self, name: &ByteString) -> Arc<Queue> {
        self.inner
            .queues
            .entry(name.clone())
            .or_insert_with(|| Queue::new(name.to_string(), self.inner.settings.queue_max_messages))
            .clone()
    }

    /// A new message id, unique across nodes.
    pub fn next_message_id(&self) -> ByteString {
        let n = self.inner.next_message.fetch_add(1, Ordering::Relaxed);
        ByteString::from(format!("{}-{n}", self.inner.settings.node_id))
    }

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
    /// and is not ordered yet (see [`sequencer`]). Call it after the subscription is registered,
    /// with a seq read after that, so that no publication between the two is awaited in vain.
    pub fn order_topic_from(&self, topic: &str, next: i64) {
        if self.has_topic_subscribers(topic) {
            self.inner.sequencer.start_at(topic, next);
        }
    }

    /// Whether any session on this node subscribes to `/topic/<topic>`.
    fn has_topic_subscribers(&self, topic: &str) -> bool {
        self.inner
            .routes
            .contains_key(&SubscriptionKey::Topic(topic.into()))
    }

    /// Whether sequenced publications of `topic` are being ordered here.
    pub fn orders_topic(&self, topic: &str) -> bool {
        self.inner.sequencer.tracks(topic)
    }

    /// Delivers to local subscribers only: for publications that arrive from other nodes.
    /// A sequenced topic publication may wait for earlier ones (see [`sequencer`]).
    pub fn deliver_local(&self, route: &Route, publication: Publication) -> Fanout {
        if let (Route::Topic(topic), Some(seq)) = (route, publication.sequence) {
            // Nobody here to order for: a stream started now would outlive its use (streams
            // are forgotten when a topic's last subscriber leaves) and, missing the seqs that
            // only reach this node while it has subscribers, hold the next ones for nothing.
            if !self.inner.sequencer.tracks(topic) && !self.has_topic_subscribers(topic) {
                return Fanout::default();
            }
            let mut total = Fanout::default();
            self.inner
                .sequencer
                .offer(topic, seq, publication, |ready| {
                    let fanout = self.deliver_now(route, ready);
                    total.auto += fanout.auto;
                    total.client += fanout.client;
                });
            return total;
        }
        self.deliver_now(route, publication)
    }

    fn deliver_now(&self, route: &Route, publication: Publication) -> Fanout {
        let key = SubscriptionKey::of_route(route);
        let Some(subscribers) = self.inner.routes.get(&key).map(|entry| entry.snapshot()) else {
            return Fanout::default();
        };
        let (template, message_id) = self.template(&key, publication.headers, publication.body);
        fan_out(
            &subscribers,
            &template,
            &message_id,
            publication.ack_hook.as_ref(),
            publication.exclude_session,
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
        mut headers: Headers,
        body: Bytes,
    ) -> Result<(), QueueError> {
        if let Some(shared) = &self.inner.shared_queues {
            if headers.get("content-type").is_none() {
                headers.push("content-type", "text/plain;charset=utf-8");
            }
            let message_id = self.next_message_id();
            return shared.send(name, &headers, body, &message_id).await;
        }
        let key = SubscriptionKey::Queue(name.clone());
        let (template, message_id) = self.template(&key, headers, body);
        Ok(self.queue(name).send(template, message_id)?)
    }

    fn template(
        &self,
        key: &SubscriptionKey,
        mut headers: Headers,
        body: Bytes,
    ) -> (Arc<MessageTemplate>, ByteString) {
        headers.set("destination", key.destination());
        if headers.get("content-type").is_none() {
            headers.push("content-type", "text/plain;charset=utf-8");
        }
        (
            Arc::new(MessageTemplate::new(headers, body)),
            self.next_message_id(),
        )
    }
}

fn fan_out(
    subscribers: &[Subscriber],
    template: &Arc<MessageTemplate>,
    message_id: &ByteString,
    hook: Option<&Arc<dyn AckHook>>,
    exclude_session: Option<u64>,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use stomp_codec::Version;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::auth::{Identity, Role};
    use crate::relay::LocalRelay;
    use crate::session::handle::SessionLimits;
    use crate::session::ledger::UnackedLimits;

    fn hub() -> Hub {
        Hub::new(
            HubSettings {
                node_id: "n".into(),
                queue_max_messages: 16,
                max_sessions_per_user: 4,
            },
            Arc::new(LocalRelay),
            None,
        )
    }

    fn session(id: u64) -> Arc<SessionHandle> {
        let identity = Identity {
            user_id: format!("u{id}"),
            roles: vec![Role::User],
            name: None,
            expires_at: SystemTime::now() + Duration::from_secs(60),
        };
        SessionHandle::new(
            id,
            format!("s{id}").into(),
            identity,
            Version::V1_2,
            SessionLimits {
                max_outbound_bytes: 1 << 20,
                unacked: UnackedLimits {
                    per_session: 100,
                    per_subscription: 100,
                },
            },
            CancellationToken::new(),
        )
    }

    /// A session subscribed to `/topic/<topic>` as `sub`.
    async fn subscriber(hub: &Hub, topic: &str) -> Arc<SessionHandle> {
        let member = session(1);
        hub.subscribe(
            &member,
            "sub".into(),
            SubscriptionKey::Topic(topic.into()),
            AckMode::Auto,
            1,
            8,
        )
        .await
        .unwrap();
        member
    }

    fn sequenced(seq: i64) -> Publication {
        let mut publication = Publication::json_event("message.new", "{}");
        publication.sequence = Some(seq);
        publication
    }

    #[tokio::test]
    async fn a_topic_without_subscribers_keeps_no_order_that_would_hold_later_seqs() {
        let hub = hub();
        let route = Route::Topic("group.g".into());
        // Seen while nobody here subscribes (seqs 2-4 then go only to other nodes).
        assert_eq!(hub.deliver_local(&route, sequenced(1)).total(), 0);
        assert!(!hub.inner.sequencer.tracks("group.g"));

        let member = subscriber(&hub, "group.g").await;
        // The first seq seen with a subscriber passes at once, and the order starts there.
        assert_eq!(hub.deliver_local(&route, sequenced(5)).auto, 1);
        assert_eq!(hub.deliver_local(&route, sequenced(7)).total(), 0);
        assert_eq!(hub.deliver_local(&route, sequenced(6)).auto, 2);

        hub.unsubscribe(&member, "sub").await;
        assert!(!hub.inner.sequencer.tracks("group.g"));
    }

    #[tokio::test]
    async fn a_topic_ordered_from_a_stored_seq_waits_for_that_seq() {
        let hub = hub();
        let route = Route::Topic("group.g".into());
        // Without local subscribers there is nothing to order.
        hub.order_topic_from("group.g", 11);
        assert!(!hub.inner.sequencer.tracks("group.g"));

        let _member = subscriber(&hub, "group.g").await;
        hub.order_topic_from("group.g", 11);
        // 12, stored on another node right after 11, arrives first: it waits for 11.
        assert_eq!(hub.deliver_local(&route, sequenced(12)).total(), 0);
        assert_eq!(hub.deliver_local(&route, sequenced(11)).auto, 2);
        // Once ordered, a later start is ignored.
        hub.order_topic_from("group.g", 3);
        assert_eq!(hub.deliver_local(&route, sequenced(13)).auto, 1);
    }
}
