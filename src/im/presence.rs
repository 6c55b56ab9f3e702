//! Presence: who has a session open, and when each user was last seen. A user's first session
//! opening and last session closing publish `event:presence` on `/topic/presence.<userId>`.
//!
//! On one node the hub's sessions are the whole truth. With `presence.redis_url` the counts
//! live in Redis ([`RedisPresence`]), so "first" and "last" are cluster-wide and any node can
//! answer `GET /api/v1/presence`; when Redis does not answer, this node's own view is used.
//! Who may see whose presence is decided here too ([`super::Im::presence_of`]) and, for
//! subscriptions, by the guard of `/topic/presence.*`.

use std::sync::Arc;

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::mpsc;

use super::presence_redis::{NODE_TTL, RedisPresence};
use crate::app_error::AppError;
use crate::hub::{Hub, Publication};
use crate::relay::Route;
use crate::router::SessionObserver;
use crate::session::handle::SessionHandle;
use crate::store::now_ms;

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

/// A session opening or closing, with this node's own view of first/last.
enum Change {
    Opened { user: String, first_here: bool },
    Closed { user: String, last_here: bool },
}

/// Presence state.
#[derive(Clone)]
pub struct Presence {
    hub: Hub,
    last_seen: Arc<DashMap<String, i64>>,
    redis: Option<RedisPresence>,
    changes: Option<mpsc::UnboundedSender<Change>>,
}

impl Presence {
    /// Presence over this node's sessions only.
    pub fn new(hub: Hub) -> Presence {
        Presence {
            hub,
            last_seen: Arc::new(DashMap::new()),
            redis: None,
            changes: None,
        }
    }

    /// Cluster-wide presence in Redis. Changes are applied in order by one task, which also
    /// keeps this node's heartbeat alive.
    pub fn with_redis(hub: Hub, redis: RedisPresence) -> Presence {
        let (changes, queue) = mpsc::unbounded_channel();
        let presence = Presence {
            hub,
            last_seen: Arc::new(DashMap::new()),
            redis: Some(redis),
            changes: Some(changes),
        };
        tokio::spawn(presence.clone().apply(queue));
        presence
    }

    async fn apply(self, mut queue: mpsc::UnboundedReceiver<Change>) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let mut heartbeat = tokio::time::interval(NODE_TTL / 3);
        loop {
            tokio::select! {
                change = queue.recv() => match change {
                    Some(change) => self.apply_one(&redis, change).await,
                    None => return,
                },
                _ = heartbeat.tick() => match redis.heartbeat().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!("presence state missing in Redis; writing this node's sessions again");
                        if let Err(error) = redis.resync(&self.hub.user_session_counts()).await {
                            tracing::warn!(%error, "presence resync failed");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "presence heartbeat failed; using this node's view");
                    }
                },
            }
        }
    }

    async fn apply_one(&self, redis: &RedisPresence, change: Change) {
        match change {
            Change::Opened { user, first_here } => {
                let first = match redis.opened(&user).await {
                    Ok(total) => total == 1,
                    Err(error) => {
                        tracing::warn!(%error, "presence in Redis unavailable; using this node's view");
                        first_here
                    }
                };
                if first {
                    self.publish_online(&user);
                }
            }
            Change::Closed { user, last_here } => {
                let last = match redis.closed(&user).await {
                    Ok(total) => total == 0,
                    Err(error) => {
                        tracing::warn!(%error, "presence in Redis unavailable; using this node's view");
                        last_here
                    }
                };
                if last {
                    self.publish_offline(&user);
                }
            }
        }
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

    /// The presence of users, cluster-wide when Redis is configured and answers.
    pub async fn lookup(&self, users: &[&str]) -> Vec<PresenceJson> {
        let mut answers = Vec::with_capacity(users.len());
        for user in users {
            let answer = match &self.redis {
                Some(redis) => match redis.lookup(user).await {
                    Ok((online, seen)) => PresenceJson {
                        user_id: (*user).to_owned(),
                        online,
                        last_seen_at: if online { None } else { seen },
                    },
                    Err(error) => {
                        tracing::warn!(%error, "presence lookup in Redis failed; using this node's view");
                        self.local(user)
                    }
                },
                None => self.local(user),
            };
            answers.push(answer);
        }
        answers
    }

    fn publish_online(&self, user: &str) {
        self.publish(&PresenceJson {
            user_id: user.to_owned(),
            online: true,
            last_seen_at: None,
        });
    }

    fn publish_offline(&self, user: &str) {
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
        let user = session.user_id().to_owned();
        match &self.changes {
            Some(changes) => {
                let _ = changes.send(Change::Opened {
                    user,
                    first_here: first,
                });
            }
            None if first => self.publish_online(&user),
            None => {}
        }
    }

    fn closed(&self, session: &Arc<SessionHandle>, last: bool) {
        let user = session.user_id().to_owned();
        match &self.changes {
            Some(changes) => {
                let _ = changes.send(Change::Closed {
                    user,
                    last_here: last,
                });
            }
            None if last => self.publish_offline(&user),
            None => {}
        }
    }
}
