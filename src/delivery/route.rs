//! Where a publication goes ([`Route`]) and what a node listens for ([`Interest`]): the words
//! the router, the hub and the relay share, kept here so that none of them imports another for
//! them.

/// What a node can express interest in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Interest {
    /// Every user destination of a user (`/user/queue/*`).
    User(String),
    /// A topic by its name without the `/topic/` prefix (`group.<id>`, `announcements`, ...).
    Topic(String),
}

/// Where a publication goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/topic/<name>`: every subscriber.
    Topic(String),
    /// `/user/queue/<queue>` of `user`: every session of that user subscribed to it.
    User {
        /// The user id.
        user: String,
        /// The queue name after `/user/queue/`.
        queue: String,
    },
}

impl Route {
    /// The interest that a node must have declared to receive this route.
    pub fn interest(&self) -> Interest {
        match self {
            Route::Topic(name) => Interest::Topic(name.clone()),
            Route::User { user, .. } => Interest::User(user.clone()),
        }
    }
}
