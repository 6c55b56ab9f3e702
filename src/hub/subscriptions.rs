//! A session's subscriptions, their registration on routes and queues, and the interest in
//! routes that the hub declares to the [`super::Relay`] while any local session listens.

use std::sync::Arc;

use bytestring::ByteString;

use super::Hub;
use super::errors::SubscribeError;
use super::relay::RelayError;
use super::routes::{Subscriber, SubscriptionKey};
use crate::delivery::{AckMode, Interest, SessionHandle};
use crate::util::lock;

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

/// How a subscription takes its messages.
pub struct SubscribeOptions {
    /// Its ack mode.
    pub ack: AckMode,
    /// For a queue: unacknowledged messages it may hold.
    pub prefetch: usize,
    /// Replaying: live publications wait behind it until [`Hub::open_gate`].
    pub gate: Option<Arc<super::replay::ReplayGate>>,
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

impl Hub {
    /// Registers a subscription (see [`SubscribeOptions`]).
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
        options: SubscribeOptions,
        max: usize,
    ) -> Result<(), SubscribeError> {
        let SubscribeOptions {
            ack,
            prefetch,
            gate,
        } = options;
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
            subscription: id.clone(),
            slot,
            ack,
            gate,
        };
        match &key {
            SubscriptionKey::Queue(name) => {
                if let Err(error) = self
                    .inner
                    .queues
                    .subscribe(name, subscriber, prefetch)
                    .await
                {
                    if let Some(mut subs) = self.inner.subscriptions.get_mut(&session.id) {
                        subs.remove(&id);
                    }
                    return Err(error.into());
                }
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
    pub(super) async fn unregister(
        &self,
        session: &Arc<SessionHandle>,
        id: &str,
        sub: &SessionSubscription,
    ) {
        let key = &sub.key;
        match key {
            SubscriptionKey::Queue(name) => {
                self.inner.queues.unsubscribe(name, session.id, id).await;
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
                if emptied.is_some() {
                    self.inner.sequencer.forget(key);
                }
                if let SubscriptionKey::Topic(name) = key {
                    self.remove_interest(Interest::Topic(name.to_string()))
                        .await;
                }
            }
        }
    }

    pub(super) async fn add_interest(&self, interest: Interest) -> Result<(), RelayError> {
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

    pub(super) async fn remove_interest(&self, interest: Interest) {
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
}
