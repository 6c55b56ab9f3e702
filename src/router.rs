//! Destinations: parsing, access control, and dispatch of SEND and SUBSCRIBE to the hub or to
//! the handlers an application layer registers (`/app/*`, topic guards, user-queue sends).
//!
//! The router owns the extension traits; the IM layer implements them, so the broker core
//! builds and is tested without any chat code.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use stomp_codec::Headers;

use crate::app_error::AppError;
use crate::auth::{Identity, Role};
use crate::config::AclConfig;
use crate::delivery::{Route, SessionHandle};
use crate::hub::{Hub, Publication};
use crate::ordering::Turn;

/// A boxed future returned by extension handlers.
pub type HandlerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A parsed destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination<'a> {
    /// `/app/<name>`: an application handler.
    App(&'a str),
    /// `/topic/<name>`: publish-subscribe.
    Topic(&'a str),
    /// `/queue/<name>`: point-to-point.
    Queue(&'a str),
    /// `/user/queue/<name>`: the subscriber's own user queue.
    OwnUserQueue(&'a str),
    /// `/user/<id>/queue/<name>`: another user's queue (sending, role `system`).
    UserQueue {
        /// The user id.
        user: &'a str,
        /// The queue name.
        queue: &'a str,
    },
}

/// Longest destination name accepted.
const MAX_NAME: usize = 200;

impl<'a> Destination<'a> {
    /// Parses a destination header; `None` for unknown prefixes and malformed names.
    pub fn parse(text: &'a str) -> Option<Destination<'a>> {
        let valid = |name: &str| {
            !name.is_empty()
                && name.len() <= MAX_NAME
                && name
                    .chars()
                    .all(|c| !c.is_control() && !c.is_whitespace() && c != '/')
        };
        let named =
            |name: &'a str, make: fn(&'a str) -> Destination<'a>| valid(name).then(|| make(name));
        if let Some(name) = text.strip_prefix("/app/") {
            return named(name, Destination::App);
        }
        if let Some(name) = text.strip_prefix("/topic/") {
            return named(name, Destination::Topic);
        }
        if let Some(name) = text.strip_prefix("/queue/") {
            return named(name, Destination::Queue);
        }
        let rest = text.strip_prefix("/user/")?;
        if let Some(name) = rest.strip_prefix("queue/") {
            return named(name, Destination::OwnUserQueue);
        }
        let (user, queue) = rest.split_once("/queue/")?;
        (crate::auth::is_valid_user_id(user) && valid(queue))
            .then_some(Destination::UserQueue { user, queue })
    }
}

/// Who may use generic `/topic/*` and `/queue/*` destinations.
#[derive(Clone, Debug)]
pub struct Acl {
    config: AclConfig,
}

/// What a client wants to do with a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// SUBSCRIBE.
    Subscribe,
    /// SEND.
    Send,
}

impl Acl {
    /// Rules from `[acl]`.
    pub fn new(config: AclConfig) -> Acl {
        Acl { config }
    }

    /// Whether `identity` may perform `access` on `destination` (the full destination text).
    pub fn allows(&self, identity: &Identity, destination: &str, access: Access) -> bool {
        let rule = self
            .config
            .rules
            .iter()
            .find(|rule| match rule.pattern.strip_suffix('*') {
                Some(prefix) => destination.starts_with(prefix),
                None => destination == rule.pattern,
            });
        let roles = match (rule, access) {
            (Some(rule), Access::Subscribe) => &rule.subscribe,
            (Some(rule), Access::Send) => &rule.send,
            (None, Access::Subscribe) => &self.config.default_subscribe,
            (None, Access::Send) => &self.config.default_send,
        };
        roles
            .iter()
            .filter_map(|r| Role::parse(r))
            .any(|r| identity.has_role(r))
    }
}

/// A SEND handed to an application handler.
pub struct AppRequest<'a> {
    /// The sending session.
    pub session: &'a Arc<SessionHandle>,
    /// The destination, parsed: handlers read the topic name or the user from it rather than
    /// from the text.
    pub destination: Destination<'a>,
    /// The frame's headers.
    pub headers: &'a Headers,
    /// The frame's body.
    pub body: &'a Bytes,
    /// The frame's place in its session's line: a handler that [pipelines](AppHandler::pipelines)
    /// waits for it before its ordered step (queueing the message) and drops it right after.
    pub turn: Turn,
}

/// Work a handler wants done right after the RECEIPT is queued, such as pushing the stored
/// message: the sender then sees the RECEIPT before its own copy of the message.
pub type AfterReceipt = Box<dyn FnOnce() + Send>;

/// Handles SENDs to an `/app/<name>` destination, or to a topic or user queue the application
/// layer claims. The RECEIPT is sent when the returned future completes without error, then the
/// returned [`AfterReceipt`] runs.
pub trait AppHandler: Send + Sync + 'static {
    /// Handles one SEND.
    fn handle<'a>(
        &'a self,
        request: AppRequest<'a>,
    ) -> HandlerFuture<'a, Result<Option<AfterReceipt>, AppError>>;

    /// Whether a session may go on reading while this handler works: true for handlers whose
    /// one ordered effect waits for [`AppRequest::turn`] and which need nothing that earlier
    /// frames of the session have not yet done. A session runs other handlers (false, the
    /// default) only once everything before them is done.
    fn pipelines(&self) -> bool {
        false
    }
}

/// Decides whether a user may SUBSCRIBE to topics under a prefix the application layer claims.
pub trait SubscribeGuard: Send + Sync + 'static {
    /// Ok when `identity` may subscribe to `/topic/<name>`.
    fn authorize<'a>(
        &'a self,
        identity: &'a Identity,
        name: &'a str,
    ) -> HandlerFuture<'a, Result<(), AppError>>;

    /// Called once a subscription to `/topic/<name>` that [`SubscribeGuard::authorize`] allowed
    /// is registered, before its RECEIPT; e.g. to tell the hub where the topic's order starts.
    fn subscribed<'a>(&'a self, _identity: &'a Identity, _name: &'a str) -> HandlerFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// What a subscription missed, as a [`ReplaySource`] reads it.
#[derive(Default)]
pub struct Replay {
    /// Stored publications, oldest first (each sequenced with its seq).
    pub publications: Vec<crate::hub::Publication>,
    /// Live publications with a seq up to this one are not delivered: the replay has them, or
    /// the subscriber said it had them.
    pub up_to: Option<i64>,
}

/// Replays to a SUBSCRIBE with a cursor (`since-seq`, or the header the source names) what was
/// stored after it.
pub trait ReplaySource: Send + Sync + 'static {
    /// What `identity` missed on `/topic/<name>` or `/user/queue/<name>` after `since`.
    fn replay<'a>(
        &'a self,
        identity: &'a Identity,
        name: &'a str,
        since: i64,
    ) -> HandlerFuture<'a, Replay>;

    /// The SUBSCRIBE header that carries the cursor.
    fn cursor_header(&self) -> &'static str {
        CURSOR_HEADERS[0]
    }
}

/// The SUBSCRIBE headers a [`ReplaySource`] may take its cursor from: a seq of one
/// conversation, or a position in the user's inbox.
pub const CURSOR_HEADERS: [&str; 2] = ["since-seq", "since-position"];

/// Told when sessions open and close, e.g. for presence.
pub trait SessionObserver: Send + Sync + 'static {
    /// A session opened; `first` when the user had none open on this node.
    fn opened(&self, session: &Arc<SessionHandle>, first: bool);
    /// A session closed; `last` when the user has none left on this node.
    fn closed(&self, session: &Arc<SessionHandle>, last: bool);
}

/// Topics under a prefix that the application layer guards and handles.
#[derive(Clone)]
struct ClaimedTopics {
    prefix: String,
    guard: Arc<dyn SubscribeGuard>,
    send: Option<Arc<dyn AppHandler>>,
}

/// What an application layer plugs into the router.
#[derive(Default, Clone)]
pub struct Extensions {
    app: HashMap<String, Arc<dyn AppHandler>>,
    topics: Vec<ClaimedTopics>,
    user_queue_send: HashMap<String, Arc<dyn AppHandler>>,
    observers: Vec<Arc<dyn SessionObserver>>,
    replay_topics: Vec<(String, Arc<dyn ReplaySource>)>,
    replay_user_queues: HashMap<String, Arc<dyn ReplaySource>>,
}

impl Extensions {
    /// No extensions: the bare broker.
    pub fn new() -> Extensions {
        Extensions::default()
    }

    /// Handles SEND to `/app/<name>`.
    #[must_use]
    pub fn app(mut self, name: &str, handler: Arc<dyn AppHandler>) -> Extensions {
        self.app.insert(name.to_owned(), handler);
        self
    }

    /// Claims topics whose name starts with `prefix`: SUBSCRIBE asks `guard`, SEND goes to
    /// `send` (refused when `None`). Claimed topics bypass `[acl]`.
    #[must_use]
    pub fn topics(
        mut self,
        prefix: &str,
        guard: Arc<dyn SubscribeGuard>,
        send: Option<Arc<dyn AppHandler>>,
    ) -> Extensions {
        self.topics.push(ClaimedTopics {
            prefix: prefix.to_owned(),
            guard,
            send,
        });
        self
    }

    /// Handles SEND to `/user/<id>/queue/<queue>` instead of plain delivery.
    #[must_use]
    pub fn user_queue_send(mut self, queue: &str, handler: Arc<dyn AppHandler>) -> Extensions {
        self.user_queue_send.insert(queue.to_owned(), handler);
        self
    }

    /// Replays to subscriptions with `since-seq` of topics whose name starts with `prefix`.
    #[must_use]
    pub fn replay_topics(mut self, prefix: &str, source: Arc<dyn ReplaySource>) -> Extensions {
        self.replay_topics.push((prefix.to_owned(), source));
        self
    }

    /// Replays to subscriptions with `since-seq` of `/user/queue/<queue>`.
    #[must_use]
    pub fn replay_user_queue(mut self, queue: &str, source: Arc<dyn ReplaySource>) -> Extensions {
        self.replay_user_queues.insert(queue.to_owned(), source);
        self
    }

    /// Adds a session observer.
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn SessionObserver>) -> Extensions {
        self.observers.push(observer);
        self
    }
}

/// Why the router refused a frame.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A STOMP-level refusal: ERROR `message:forbidden`, then close.
    #[error("{0}")]
    Forbidden(String),
    /// An application-level refusal: an error on `/user/queue/errors`, the session stays open.
    #[error(transparent)]
    App(#[from] AppError),
}

/// The built-in topic any user may read and only role `system` may write.
const ANNOUNCEMENTS: &str = "announcements";

/// Routes SEND and checks SUBSCRIBE.
#[derive(Clone)]
pub struct Router {
    hub: Hub,
    acl: Arc<Acl>,
    extensions: Arc<Extensions>,
}

/// Headers of a client SEND that are about the frame, not the message, and so are not passed on.
const FRAME_ONLY_HEADERS: [&str; 5] = [
    "destination",
    "receipt",
    "transaction",
    "content-length",
    "ack",
];

impl Router {
    /// A router over `hub`.
    pub fn new(hub: Hub, acl: Acl, extensions: Extensions) -> Router {
        Router {
            hub,
            acl: Arc::new(acl),
            extensions: Arc::new(extensions),
        }
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Session observers.
    pub fn observers(&self) -> &[Arc<dyn SessionObserver>] {
        &self.extensions.observers
    }

    fn claimed_topic(&self, name: &str) -> Option<&ClaimedTopics> {
        self.extensions
            .topics
            .iter()
            .find(|claimed| name.starts_with(claimed.prefix.as_str()))
    }

    /// What replays to a subscription of `destination` that asks for it, and the name to ask
    /// with; `None` when the destination does not replay.
    pub fn replay_source(&self, destination: &str) -> Option<(Arc<dyn ReplaySource>, String)> {
        match Destination::parse(destination)? {
            Destination::Topic(name) => self
                .extensions
                .replay_topics
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix.as_str()))
                .map(|(_, source)| (source.clone(), name.to_owned())),
            Destination::OwnUserQueue(queue) => self
                .extensions
                .replay_user_queues
                .get(queue)
                .map(|source| (source.clone(), queue.to_owned())),
            _ => None,
        }
    }

    /// Tells the application layer that a subscription to `destination` is registered.
    pub async fn subscribed(&self, session: &Arc<SessionHandle>, destination: &str) {
        if let Some(Destination::Topic(name)) = Destination::parse(destination)
            && let Some(claimed) = self.claimed_topic(name)
        {
            claimed.guard.subscribed(&session.identity, name).await;
        }
    }

    /// Checks that the session may subscribe to `destination` and says where to register it.
    ///
    /// # Errors
    ///
    /// [`RouteError::Forbidden`] for unknown prefixes and ACL refusals;
    /// [`RouteError::App`] when an application guard refuses.
    pub async fn authorize_subscribe(
        &self,
        session: &Arc<SessionHandle>,
        destination: &str,
    ) -> Result<crate::hub::SubscriptionKey, RouteError> {
        use crate::hub::SubscriptionKey;
        let identity = &session.identity;
        match Destination::parse(destination) {
            Some(Destination::Topic(name)) => {
                if let Some(claimed) = self.claimed_topic(name) {
                    claimed.guard.authorize(identity, name).await?;
                } else if name != ANNOUNCEMENTS
                    && !self.acl.allows(identity, destination, Access::Subscribe)
                {
                    return Err(RouteError::Forbidden(format!(
                        "not allowed to subscribe to {destination}"
                    )));
                }
                Ok(SubscriptionKey::Topic(name.into()))
            }
            Some(Destination::Queue(name)) => {
                if !self.acl.allows(identity, destination, Access::Subscribe) {
                    return Err(RouteError::Forbidden(format!(
                        "not allowed to subscribe to {destination}"
                    )));
                }
                Ok(SubscriptionKey::Queue(name.into()))
            }
            Some(Destination::OwnUserQueue(queue)) => Ok(SubscriptionKey::User {
                user: session.user_id().into(),
                queue: queue.into(),
            }),
            Some(Destination::UserQueue { .. }) => Err(RouteError::App(AppError::forbidden(
                "subscribe to /user/queue/<name>; other users' queues are not readable",
            ))),
            Some(Destination::App(_)) => Err(RouteError::App(AppError::forbidden(
                "/app destinations take SEND only",
            ))),
            None => Err(RouteError::Forbidden(format!(
                "unknown destination {destination}"
            ))),
        }
    }

    /// The application handler a SEND to `destination` would reach, if one does.
    fn handler_for(&self, destination: &str) -> Option<&Arc<dyn AppHandler>> {
        match Destination::parse(destination)? {
            Destination::App(name) => self.extensions.app.get(name),
            Destination::Topic(name) => self.claimed_topic(name)?.send.as_ref(),
            Destination::UserQueue { queue, .. } => self.extensions.user_queue_send.get(queue),
            Destination::Queue(_) | Destination::OwnUserQueue(_) => None,
        }
    }

    /// Whether a SEND to `destination` may be pipelined: handled while the session reads on,
    /// with its place in line kept by a [`Turn`] (see [`AppHandler::pipelines`]).
    pub fn pipelines(&self, destination: &str) -> bool {
        self.handler_for(destination)
            .is_some_and(|handler| handler.pipelines())
    }

    /// Carries out a SEND. Resolves when its effect is done (for `/app/*`, when the handler
    /// has finished, e.g. stored the message), so the caller can send the RECEIPT.
    ///
    /// # Errors
    ///
    /// [`RouteError`] when the destination is unknown or refused, or the handler fails.
    pub async fn send<'a>(
        &self,
        session: &'a Arc<SessionHandle>,
        destination: &'a str,
        headers: &'a Headers,
        body: &'a Bytes,
        turn: Turn,
    ) -> Result<Option<AfterReceipt>, RouteError> {
        let identity = &session.identity;
        let parsed = Destination::parse(destination);
        let request = |destination: Destination<'a>| AppRequest {
            session,
            destination,
            headers,
            body,
            turn,
        };
        match parsed {
            Some(app @ Destination::App(name)) => match self.extensions.app.get(name) {
                Some(handler) => Ok(handler.handle(request(app)).await?),
                None => Err(RouteError::Forbidden(format!(
                    "unknown destination {destination}"
                ))),
            },
            Some(topic @ Destination::Topic(name)) => {
                // The built-in announcements topic: only role system writes to it, whichever
                // layer handles it; anyone else's SEND is refused like any forbidden one.
                if name == ANNOUNCEMENTS && !identity.has_role(Role::System) {
                    return Err(RouteError::Forbidden(format!(
                        "not allowed to send to {destination}"
                    )));
                }
                if let Some(claimed) = self.claimed_topic(name) {
                    return match &claimed.send {
                        Some(handler) => Ok(handler.handle(request(topic)).await?),
                        None => Err(RouteError::App(AppError::forbidden(format!(
                            "{destination} takes SUBSCRIBE only"
                        )))),
                    };
                }
                let allowed = if name == ANNOUNCEMENTS {
                    identity.has_role(Role::System)
                } else {
                    self.acl.allows(identity, destination, Access::Send)
                };
                if !allowed {
                    return Err(RouteError::Forbidden(format!(
                        "not allowed to send to {destination}"
                    )));
                }
                self.hub.publish(
                    &Route::Topic(name.to_owned()),
                    Publication {
                        headers: message_headers(headers),
                        body: body.clone(),
                        ..Publication::default()
                    },
                );
                Ok(None)
            }
            Some(Destination::Queue(name)) => {
                if !self.acl.allows(identity, destination, Access::Send) {
                    return Err(RouteError::Forbidden(format!(
                        "not allowed to send to {destination}"
                    )));
                }
                self.hub
                    .send_to_queue(
                        &ByteString::from(name),
                        message_headers(headers),
                        body.clone(),
                    )
                    .await
                    .map(|()| None)
                    .map_err(|error| {
                        RouteError::App(AppError::new(error.code(), error.to_string()))
                    })
            }
            Some(user_queue @ Destination::UserQueue { user, queue }) => {
                if !identity.has_role(Role::System) {
                    return Err(RouteError::App(AppError::forbidden(
                        "only role system may send to another user's queue",
                    )));
                }
                if let Some(handler) = self.extensions.user_queue_send.get(queue) {
                    return Ok(handler.handle(request(user_queue)).await?);
                }
                self.hub.publish(
                    &Route::User {
                        user: user.to_owned(),
                        queue: queue.to_owned(),
                    },
                    Publication {
                        headers: message_headers(headers),
                        body: body.clone(),
                        ..Publication::default()
                    },
                );
                Ok(None)
            }
            Some(Destination::OwnUserQueue(_)) => Err(RouteError::App(AppError::forbidden(
                "/user/queue destinations take SUBSCRIBE only",
            ))),
            None => Err(RouteError::Forbidden(format!(
                "unknown destination {destination}"
            ))),
        }
    }
}

/// The headers of a SEND that travel with the message.
pub fn message_headers(headers: &Headers) -> Headers {
    headers
        .iter()
        .filter(|(name, _)| !FRAME_ONLY_HEADERS.contains(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(
            Destination::parse("/app/private.send"),
            Some(Destination::App("private.send"))
        );
        assert_eq!(
            Destination::parse("/topic/group.abc"),
            Some(Destination::Topic("group.abc"))
        );
        assert_eq!(
            Destination::parse("/user/queue/messages"),
            Some(Destination::OwnUserQueue("messages"))
        );
        assert_eq!(
            Destination::parse("/user/bob/queue/notifications"),
            Some(Destination::UserQueue {
                user: "bob",
                queue: "notifications"
            })
        );
        assert_eq!(Destination::parse("/exchange/x"), None);
        assert_eq!(Destination::parse("/topic/"), None);
        assert_eq!(Destination::parse("/topic/a b"), None);
        assert_eq!(Destination::parse("/topic/a/b"), None);
        assert_eq!(Destination::parse("/user/a_b/queue/x"), None);
    }
}
