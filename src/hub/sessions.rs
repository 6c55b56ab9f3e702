//! Who is connected to this node: sessions by user, the per-user session limit, and the
//! user's interest declared to the relay while any of their sessions is open.

use std::sync::Arc;

use bytestring::ByteString;

use super::Hub;
use super::errors::AddSessionError;
use super::subscriptions::SessionSubscriptions;
use crate::delivery::{Interest, SessionHandle};

impl Hub {
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
        self.count_users();
        self.inner
            .subscriptions
            .insert(session.id, SessionSubscriptions::default());
        self.add_interest(Interest::User(user.to_string())).await?;
        Ok(first)
    }

    fn count_users(&self) {
        #[allow(clippy::cast_precision_loss)]
        let users = self.inner.users.len() as f64;
        crate::metrics::Metrics::get().users_online.set(users);
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
            self.count_users();
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
}
