//! Presence on one node: who has a session open, and when each user was last seen. A user's
//! first session opening and last session closing publish `event:presence` on
//! `/topic/presence.<userId>`.

use std::sync::Arc;

use dashmap::DashMap;
use serde::Serialize;

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

/// Presence state.
#[derive(Clone)]
pub struct Presence {
    hub: Hub,
    last_seen: Arc<DashMap<String, i64>>,
}

impl Presence {
    /// Presence over the hub's sessions.
    pub fn new(hub: Hub) -> Presence {
        Presence {
            hub,
            last_seen: Arc::new(DashMap::new()),
        }
    }

    /// The presence of one user.
    pub fn of(&self, user: &str) -> PresenceJson {
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

    fn publish(&self, presence: &PresenceJson) {
        let body = serde_json::to_vec(presence).unwrap_or_default();
        self.hub.publish(
            &Route::Topic(format!("presence.{}", presence.user_id)),
            Publication::json_event("presence", body),
        );
    }
}

impl SessionObserver for Presence {
    fn opened(&self, session: &Arc<SessionHandle>, first: bool) {
        if first {
            self.publish(&PresenceJson {
                user_id: session.user_id().to_owned(),
                online: true,
                last_seen_at: None,
            });
        }
    }

    fn closed(&self, session: &Arc<SessionHandle>, last: bool) {
        if last {
            let now = now_ms();
            self.last_seen.insert(session.user_id().to_owned(), now);
            self.publish(&PresenceJson {
                user_id: session.user_id().to_owned(),
                online: false,
                last_seen_at: Some(now),
            });
        }
    }
}
