//! The IM layer: conversations, messages, groups, read state, recall, typing, presence and
//! system notifications (contract sections 5 and 6), on top of the store and the hub.
//!
//! Every operation is a method of [`Im`] taking the caller's identity and returning the
//! contract's [`AppError`] on refusal, so the STOMP handlers ([`stomp`]) and the REST API
//! (`crate::api`, which sits above this module) share one implementation and each rule lives
//! once. Pushes go through the hub, after the store commit. This module knows no HTTP.
//!
//! Inside it, `mod.rs` holds the service and its shared helpers; the files beside it add
//! methods to [`Im`] by subject and import `mod.rs`, [`json`], [`limits`] and each other only
//! downwards (no import cycle).

pub mod admin;
pub mod announcements;
pub mod assistant;
mod attachment;
pub mod contacts;
pub mod conversations;
mod delivery;
pub mod devices;
pub mod forward;
pub mod group_settings;
pub mod groups;
pub mod inbox;
pub mod json;
pub mod limits;
pub mod limits_redis;
pub mod mentions;
pub mod message_changes;
pub mod message_view;
pub mod messages;
pub mod moderation;
pub mod notifications_queue;
pub mod notify;
pub mod presence;
pub mod presence_redis;
pub mod push;
pub mod read_counts;
pub mod replay;
pub mod reports;
pub mod retention;
pub mod safety;
pub mod search;
pub mod send;
pub mod stomp;
mod upload_quota;
pub mod uploads;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::app_error::{AppError, ErrorCode};
use crate::config::Config;
use crate::delivery::Route;
use crate::domain::{ConversationId, ConversationKind};
use crate::hub::{Hub, Publication};
use crate::ordering::PushOrder;
use crate::store::{Store, StoreError};
use schema::{ConversationRow, MemberRow};

pub use presence::Presence;

/// The IM rules from the configuration.
#[derive(Clone, Debug)]
pub struct ImSettings {
    /// How long a sender may recall.
    pub recall_window: Duration,
    /// How long a sender may edit.
    pub edit_window: Duration,
    /// Distinct emoji per message.
    pub max_reaction_kinds: usize,
    /// Pinned messages per conversation.
    pub max_pins: usize,
    /// Users one group message may mention.
    pub max_mentions: usize,
    /// What a resumed subscription gets at most.
    pub replay: ReplayBounds,
    /// Whether `/user/queue/messages` resumes from inbox positions.
    pub private_resume: bool,
    /// Members per group.
    pub max_group_members: usize,
    /// Offline push.
    pub push: push::PushSettings,
    /// Who may send a private message.
    pub private_policy: crate::config::PrivatePolicy,
    /// Characters per text message.
    pub text_max_chars: usize,
    /// Recipients of one notification request.
    pub notification_max_users: usize,
    /// Bounds of the fields pushed to every member of a group, and of cards' data.
    pub bounds: Bounds,
    /// Limits and moderation.
    pub safety: safety::SafetySettings,
    /// Uploads.
    pub files: crate::files::FilesSettings,
}

impl ImSettings {
    /// Reads the rules from the configuration.
    pub fn from_config(config: &Config) -> ImSettings {
        ImSettings {
            recall_window: Duration::from_secs(config.im.recall_window_s),
            edit_window: Duration::from_secs(config.im.edit_window_s),
            max_reaction_kinds: config.im.max_reaction_kinds,
            max_pins: config.im.max_pins,
            max_mentions: config.im.max_mentions,
            replay: ReplayBounds {
                max_messages: config.limits.max_replay,
                max_bytes: config.limits.max_replay_bytes,
            },
            private_resume: config.im.private_resume,
            max_group_members: config.im.max_group_members,
            private_policy: config.im.private_policy,
            push: push::PushSettings::from_config(&config.push),
            text_max_chars: config.limits.text_max_chars,
            notification_max_users: config.limits.notification_max_users,
            bounds: Bounds {
                group_name_max_chars: config.limits.group_name_max_chars,
                group_announcement_max_chars: config.limits.group_announcement_max_chars,
                card_data_max_bytes: config.limits.card_data_max_bytes,
            },
            safety: safety::SafetySettings::from_config(config),
            files: crate::files::FilesSettings {
                image_max_bytes: config.limits.image_max_bytes,
                file_max_bytes: config.limits.file_max_bytes,
                // Checked when the configuration was loaded.
                external_url_prefixes: crate::files::urls::ExternalPrefixes::parse(
                    &config.files.external_url_prefixes,
                )
                .unwrap_or_default(),
                image_max_pixels: config.files.image_max_pixels,
                upload_rate: config.limits.upload_rate,
                quota_bytes_per_day: config.files.quota_bytes_per_day,
            },
        }
    }
}

/// Bounds of what a user (or a backend system) writes once and the broker pushes to many
/// sessions: beyond them a request is `INVALID_ARGUMENT`, so that no such push can cut its
/// receivers as slow consumers.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// `limits.group_name_max_chars`.
    pub group_name_max_chars: usize,
    /// `limits.group_announcement_max_chars`.
    pub group_announcement_max_chars: usize,
    /// `limits.card_data_max_bytes`: a card's `data`, and a notification's.
    pub card_data_max_bytes: usize,
}

/// What one resumed subscription replays at most (see [`replay`]).
#[derive(Clone, Copy, Debug)]
pub struct ReplayBounds {
    /// `limits.max_replay`: messages.
    pub max_messages: usize,
    /// `limits.max_replay_bytes`: bytes of their bodies.
    pub max_bytes: usize,
}

/// Characters of a URL the broker pushes (a group's avatar, an attachment's `url`).
pub const URL_MAX_CHARS: usize = 2048;

/// The IM service.
#[derive(Clone)]
pub struct Im {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    hub: Hub,
    /// Where the writer registers committed seqs; pushes are released through it.
    push_order: Arc<PushOrder>,
    settings: ImSettings,
    presence: Presence,
    delivery: delivery::Recorder,
    read_counts: read_counts::ReadCounts,
    reactions: message_changes::PendingReactions,
    pusher: push::Pusher,
    safety: safety::Safety,
    files: Arc<dyn crate::files::FileStore>,
    limiter: Arc<dyn limits::RateLimiter>,
}

/// The replaceable backends the IM layer runs on: in process on one node, networked (Redis)
/// in a cluster. Which is which is decided once, when the server starts.
#[derive(Clone)]
pub struct ImBackends {
    /// Where sessions are counted for presence.
    pub presence: Arc<dyn presence::PresenceBackend>,
    /// Where rate limits are counted.
    pub limiter: Arc<dyn limits::RateLimiter>,
}

impl ImBackends {
    /// Every backend in this process: presence over this node's sessions, limits counted here.
    pub fn in_process() -> ImBackends {
        ImBackends {
            presence: Arc::new(presence::LocalPresence::new()),
            limiter: Arc::new(limits::InProcessLimiter::new()),
        }
    }
}

impl Im {
    /// The service over `store` and `hub`, keeping uploads in `files`, with presence and rate
    /// limits on `backends`. Pushes of stored messages are released through `push_order`, the
    /// one the store's writer registers its commits with.
    pub fn new(
        store: Store,
        hub: Hub,
        push_order: Arc<PushOrder>,
        settings: ImSettings,
        files: Arc<dyn crate::files::FileStore>,
        backends: ImBackends,
    ) -> Im {
        let delivery = delivery::Recorder::start(store.clone());
        let read_counts = read_counts::ReadCounts::start(store.clone(), hub.clone());
        let pusher = push::Pusher::start(&settings.push);
        let presence = Presence::new(hub.clone(), backends.presence);
        let limiter = backends.limiter;
        let im = Im {
            inner: Arc::new(Inner {
                presence,
                safety: safety::Safety::with_limiter(settings.safety.clone(), limiter.clone()),
                files,
                limiter,
                store,
                hub,
                push_order,
                settings,
                delivery,
                read_counts,
                reactions: message_changes::PendingReactions::default(),
                pusher,
            }),
        };
        im.start_safety_tasks();
        im
    }

    /// Starts what runs beside the requests: keeping the bans in force, watching the
    /// sensitive-word list. The tasks end when the service is dropped.
    fn start_safety_tasks(&self) {
        let alive = Arc::downgrade(&self.inner);
        self.inner.safety.words().watch(alive);
        self.watch_bans();
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The rules.
    pub fn settings(&self) -> &ImSettings {
        &self.inner.settings
    }

    /// Where uploaded files are kept.
    pub fn files(&self) -> &dyn crate::files::FileStore {
        self.inner.files.as_ref()
    }

    /// The upload limits.
    pub fn files_settings(&self) -> &crate::files::FilesSettings {
        &self.inner.settings.files
    }

    /// The rate limiter: in process, or cluster-wide in Redis.
    pub fn limiter(&self) -> &dyn limits::RateLimiter {
        self.inner.limiter.as_ref()
    }

    /// Presence.
    pub fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    /// The conversation, or `NOT_FOUND`.
    async fn conversation(&self, id: &ConversationId) -> Result<ConversationRow, AppError> {
        self.store()
            .conversation(id.as_str())
            .await?
            .ok_or_else(|| no_conversation(id.as_str()))
    }

    /// The caller's membership. A group the caller is not in is `NOT_MEMBER`; any other
    /// conversation the caller is not in is `NOT_FOUND`, word for word as one that does not
    /// exist: their ids are made of user ids, so anything else would tell who talks to whom
    /// (and who has written to customer service). A group's id is 128 random bits that only
    /// its members and former members know.
    async fn membership(
        &self,
        conversation: &ConversationId,
        user: &str,
    ) -> Result<(ConversationRow, MemberRow), AppError> {
        let row = self.conversation(conversation).await?;
        match self.store().member(conversation.as_str(), user).await? {
            Some(member) => Ok((row, member)),
            None if row.kind.parse() == Ok(ConversationKind::Group) => Err(AppError::new(
                ErrorCode::NotMember,
                format!("not a member of {conversation}"),
            )),
            None => Err(no_conversation(conversation.as_str())),
        }
    }

    /// Pushes an event to every session of `user` subscribed to `/user/queue/<queue>`.
    fn push_user(&self, user: &str, queue: &str, event: &'static str, body: &impl Serialize) {
        self.push_user_except(user, queue, event, body, None);
    }

    fn push_user_except(
        &self,
        user: &str,
        queue: &str,
        event: &'static str,
        body: &impl Serialize,
        exclude_session: Option<u64>,
    ) {
        let mut publication = Publication::json_event(event, to_json(body));
        publication.exclude_session = exclude_session;
        self.hub().publish(
            &Route::User {
                user: user.to_owned(),
                queue: queue.to_owned(),
            },
            publication,
        );
    }

    /// Pushes an event on a group's topic (nothing for the other kinds, which have none).
    fn push_group(
        &self,
        conversation: &ConversationId,
        event: &'static str,
        body: &impl Serialize,
    ) {
        if let Some(topic) = conversation.topic() {
            self.hub().publish(
                &Route::Topic(topic),
                Publication::json_event(event, to_json(body)),
            );
        }
    }
}

impl Im {
    /// Records a domain event for `im.events` after the change it describes committed
    /// (cluster mode only; a no-op on one node).
    async fn record(&self, event: &str, fields: serde_json::Value) {
        if !self.store().records_events() {
            return;
        }
        if let Err(error) = self.store().record_events(vec![(event, fields)]).await {
            tracing::warn!(%error, event, "could not record a domain event");
        }
    }
}

/// The answer for a conversation that does not exist, or that the caller may not know of.
fn no_conversation(id: &str) -> AppError {
    AppError::new(ErrorCode::NotFound, format!("no conversation {id}"))
}

/// The answer for a message that does not exist, or that is in a conversation the caller
/// cannot see (a group's too: message ids are time-ordered, so they can be guessed).
fn no_message() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such message")
}

/// A page size given as text: 1 to 100, 20 when absent.
///
/// # Errors
///
/// `INVALID_ARGUMENT` otherwise.
fn page_limit(text: Option<&str>) -> Result<i64, AppError> {
    match text {
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| AppError::invalid("limit must be 1 to 100")),
        None => Ok(20),
    }
}

/// A conversation id a peer sent, checked; one that is not a conversation id names no
/// conversation, and is answered as one that does not exist.
///
/// # Errors
///
/// `NOT_FOUND`, word for word as [`Im`] answers for an unknown conversation.
pub fn conversation_id(text: &str) -> Result<ConversationId, AppError> {
    ConversationId::parse(text).map_err(|_| no_conversation(text))
}

fn to_json(body: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec())
}

/// Storage failures as the contract's errors: the one place they are mapped, so that `?` on a
/// store call answers the same way on every path.
impl From<StoreError> for AppError {
    fn from(error: StoreError) -> AppError {
        match error {
            StoreError::NotFound => AppError::new(ErrorCode::NotFound, "not found"),
            StoreError::GroupFull => AppError::new(
                ErrorCode::GroupFull,
                "the group has no room for more members",
            ),
            StoreError::AlreadyRecalled => {
                AppError::new(ErrorCode::Conflict, "the message is already recalled")
            }
            StoreError::Full(what) => AppError::new(ErrorCode::Conflict, what),
            StoreError::Blocked(user) => AppError::new(
                ErrorCode::Blocked,
                format!("{user} does not accept your messages"),
            ),
            StoreError::Timeout | StoreError::Unavailable(_) => {
                tracing::warn!(%error, "storage unavailable");
                AppError::new(ErrorCode::Unavailable, "storage is unavailable; retry")
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                AppError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}
