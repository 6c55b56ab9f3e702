//! Presence: who has a session open, and when each user was last seen. A user's first session
//! opening and last session closing publish `event:presence` on `/topic/presence.<userId>`.
//!
//! Where sessions are counted is a [`PresenceBackend`]: on one node the hub's sessions are the
//! whole truth ([`LocalPresence`]); with `presence.redis_url` the counts live in Redis
//! ([`super::presence_redis::RedisPresence`]), so "first" and "last" are cluster-wide and any
//! node can answer `GET /api/v1/presence`; when Redis does not answer, this node's own view is
//! used. Who may see whose presence is decided here too ([`super::Im::presence_of`]) and, for
//! subscriptions, by the guard of `/topic/presence.*`.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::app_error::AppError;
use crate::delivery::{Route, SessionHandle};
use crate::hub::{Hub, Publication};
use crate::router::SessionObserver;
use crate::util::now_ms;

/// A user's presence, as pushed and as returned by `GET /api/v1/presence`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PresenceJson {
    /// The user.
    pub user_id: String,
    /// Whether a session is open.
    pub online: bool,
    /// When the last session closed; null while online or never seen.
    pub last_seen_at: Option<i64>,
}

/// Where sessions are counted: this node alone, or the whole cluster.
pub trait PresenceBackend: Send + Sync + 'static {
    /// Starts counting this node's sessions: from now on the backend announces on `announcer`
    /// each user's first session opening and last session closing.
    fn start(&self, announcer: Announcer);

    /// A session of `user` opened; `first_here` when it is the user's first on this node.
    fn opened(&self, user: &str, first_here: bool);

    /// A session of `user` closed; `last_here` when it was the user's last on this node.
    fn closed(&self, user: &str, last_here: bool);

    /// Whether `user` has a session anywhere and when they were last seen; `None` when only
    /// this node's view can answer.
    fn lookup<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Option<(bool, Option<i64>)>>;
}

/// Publishes presence changes and remembers this node's view of them.
#[derive(Clone)]
pub struct Announcer {
    hub: Hub,
    last_seen: Arc<DashMap<String, i64>>,
}

impl Announcer {
    fn new(hub: Hub) -> Announcer {
        Announcer {
            hub,
            last_seen: Arc::new(DashMap::new()),
        }
    }

    /// The hub whose sessions are counted.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The presence of one user as this node sees it.
    fn local(&self, user: &str) -> PresenceJson {
        let online = self.hub.is_online(user);
        PresenceJson {
            user_id: user.to_owned(),
            online,
            last_seen_at: if online {
                None
            } else {
                self.last_seen.get(user).map(|t| *t)
            },
        }
    }

    /// Announces that `user` opened their first session.
    pub fn online(&self, user: &str) {
        self.publish(&PresenceJson {
            user_id: user.to_owned(),
            online: true,
            last_seen_at: None,
        });
    }

    /// Announces that `user` closed their last session, and remembers when.
    pub fn offline(&self, user: &str) {
        let now = now_ms();
        self.last_seen.insert(user.to_owned(), now);
        self.publish(&PresenceJson {
            user_id: user.to_owned(),
            online: false,
            last_seen_at: Some(now),
        });
    }

    fn publish(&self, presence: &PresenceJson) {
        let body = serde_json::to_vec(presence).unwrap_or_default();
        self.hub.publish(
            &Route::Topic(format!("presence.{}", presence.user_id)),
            Publication::json_event("presence", body),
        );
    }
}

/// One node: its own sessions are every session, and changes are announced at once.
#[derive(Default)]
pub struct LocalPresence {
    announcer: OnceLock<Announcer>,
}

impl LocalPresence {
    /// Presence over this node's sessions only.
    pub fn new() -> LocalPresence {
        LocalPresence::default()
    }
}

impl PresenceBackend for LocalPresence {
    fn start(&self, announcer: Announcer) {
        let _ = self.announcer.set(announcer);
    }

    fn opened(&self, user: &str, first_here: bool) {
        if first_here && let Some(announcer) = self.announcer.get() {
            announcer.online(user);
        }
    }

    fn closed(&self, user: &str, last_here: bool) {
        if last_here && let Some(announcer) = self.announcer.get() {
            announcer.offline(user);
        }
    }

    fn lookup<'a>(&'a self, _user: &'a str) -> BoxFuture<'a, Option<(bool, Option<i64>)>> {
        Box::pin(std::future::ready(None))
    }
}

/// Presence state.
#[derive(Clone)]
pub struct Presence {
    announcer: Announcer,
    backend: Arc<dyn PresenceBackend>,
}

impl Presence {
    /// Presence of `hub`'s sessions, counted by `backend`.
    pub fn new(hub: Hub, backend: Arc<dyn PresenceBackend>) -> Presence {
        let announcer = Announcer::new(hub);
        backend.start(announcer.clone());
        Presence { announcer, backend }
    }

    /// The presence of users, cluster-wide when the backend can answer.
    pub async fn lookup(&self, users: &[&str]) -> Vec<PresenceJson> {
        let mut answers = Vec::with_capacity(users.len());
        for user in users {
            let answer = match self.backend.lookup(user).await {
                Some((online, seen)) => PresenceJson {
                    user_id: (*user).to_owned(),
                    online,
                    last_seen_at: if online { None } else { seen },
                },
                None => self.announcer.local(user),
            };
            answers.push(answer);
        }
        answers
    }
}

impl super::Im {
    /// The presence of `users` as `viewer` may see it: users who share no conversation with
    /// `viewer`, or who blocked them, answer exactly as a user who never connected (offline,
    /// never seen), so the answer tells nothing about them.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the database does not answer.
    pub async fn presence_of(
        &self,
        viewer: &str,
        users: &[&str],
    ) -> Result<Vec<PresenceJson>, AppError> {
        let visible = self.store().presence_visible_to(viewer, users).await?;
        let shown: Vec<&str> = users
            .iter()
            .copied()
            .filter(|user| visible.contains(*user))
            .collect();
        let mut known = self.presence().lookup(&shown).await.into_iter();
        Ok(users
            .iter()
            .map(|user| {
                if visible.contains(*user) {
                    known.next()
                } else {
                    None
                }
                .unwrap_or_else(|| PresenceJson {
                    user_id: (*user).to_owned(),
                    online: false,
                    last_seen_at: None,
                })
            })
            .collect())
    }
}

impl SessionObserver for Presence {
    fn opened(&self, session: &Arc<SessionHandle>, first: bool) {
        self.backend.opened(session.user_id(), first);
    }

    fn closed(&self, session: &Arc<SessionHandle>, last: bool) {
        self.backend.closed(session.user_id(), last);
    }
}
