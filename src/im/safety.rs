//! Limits and abuse on the send path (contract section 7): bans, the per-user send rate, blocks,
//! sensitive words, and the stranger rules of private chats; and the REST endpoints for blocks,
//! reports and (role admin) bans.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dashmap::{DashMap, DashSet};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::json::{conversation_type, message_id, peer_of};
use super::limits::{Decision, InProcessLimiter, Rate, RateLimiter};
use super::moderation::Words;
use super::rest::{Caller, RestState};
use super::{Im, store_error};
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{Identity, Role, is_valid_user_id};
use crate::config::{Config, ModerationAction};
use crate::store::safety::{BanRow, HitRow, ReportRow, row_id};
use crate::store::{NewMessage, Target, now_ms};

/// The safety rules from the configuration.
#[derive(Clone, Debug)]
pub struct SafetySettings {
    /// Messages per user.
    pub send_rate: Rate,
    /// Messages per user to users who never replied.
    pub stranger_rate: Rate,
    /// Messages to a user who never replied, until they reply.
    pub stranger_before_reply: u32,
    /// The sensitive-word list file.
    pub words_file: Option<std::path::PathBuf>,
    /// Reject or mask.
    pub action: ModerationAction,
    /// Offences tolerated within the window.
    pub ban_threshold: u32,
    /// The window offences are counted in.
    pub ban_window: Duration,
    /// How long a ban lasts.
    pub ban_duration: Duration,
}

impl SafetySettings {
    /// Reads the rules from the configuration.
    pub fn from_config(config: &Config) -> SafetySettings {
        SafetySettings {
            send_rate: config.limits.send_rate,
            stranger_rate: config.limits.stranger_rate,
            stranger_before_reply: config.limits.stranger_before_reply,
            words_file: config.moderation.words_file.clone(),
            action: config.moderation.action,
            ban_threshold: config.moderation.ban_threshold,
            ban_window: Duration::from_secs(config.moderation.ban_window_s),
            ban_duration: Duration::from_secs(config.moderation.ban_duration_s),
        }
    }
}

/// The safety state of the IM service.
pub struct Safety {
    settings: SafetySettings,
    limiter: Arc<dyn RateLimiter>,
    words: Words,
    /// `(conversation, user)` pairs known to have sent in a private chat: a reply never
    /// un-happens, so these need no second look at the database.
    replied: DashSet<(String, String)>,
    /// Bans in force, by user, until when (epoch ms); the database holds the same, this keeps
    /// a query off every send.
    bans: DashMap<String, i64>,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Safety {
    /// The state for `settings`, with the in-process rate limiter.
    pub fn new(settings: SafetySettings) -> Safety {
        Safety::with_limiter(settings, Arc::new(InProcessLimiter::new()))
    }

    /// The state for `settings`, counting rates with `limiter`.
    pub fn with_limiter(settings: SafetySettings, limiter: Arc<dyn RateLimiter>) -> Safety {
        Safety {
            words: Words::open(settings.words_file.clone()),
            settings,
            limiter,
            replied: DashSet::new(),
            bans: DashMap::new(),
        }
    }

    /// The sensitive-word list.
    pub fn words(&self) -> &Words {
        &self.words
    }
}

impl Im {
    fn safety(&self) -> &Safety {
        &self.inner.safety
    }

    /// Loads the bans in force into memory; run once at start.
    pub(super) async fn load_bans(&self) {
        match self.store().active_bans(now_ms()).await {
            Ok(rows) => {
                for row in rows {
                    self.safety().bans.insert(row.user_id, row.until);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot load bans"),
        }
    }

    /// Applies bans, the send rate, blocks, sensitive words and the stranger rules to a
    /// message about to be stored; masking rewrites its content.
    ///
    /// # Errors
    ///
    /// `BANNED`, `RATE_LIMITED`, `BLOCKED`, `SENSITIVE_CONTENT`, `STRANGER_LIMIT`,
    /// `UNAVAILABLE`.
    pub(super) async fn check_send(
        &self,
        sender: &Identity,
        message: &mut NewMessage,
    ) -> Result<(), AppError> {
        let me = sender.user_id.as_str();
        let safety = self.safety();
        let settings = &safety.settings;
        if let Some(until) = safety.bans.get(me).map(|u| *u) {
            if until > now_ms() {
                return Err(AppError::new(
                    ErrorCode::Banned,
                    format!("you are banned from sending until {until}"),
                ));
            }
            safety.bans.remove(me);
        }
        // A retry of a stored message passes the limits: it stores nothing and must get the
        // stored message back.
        let is_retry = || async {
            self.store()
                .has_client_msg(me, &message.client_msg_id)
                .await
                .map_err(store_error)
        };
        if let Decision::Deny { retry_after } = safety
            .limiter
            .check(&format!("send:{me}"), settings.send_rate)
            .await
            && !is_retry().await?
        {
            return Err(AppError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages in {:?}; retry in {} ms",
                    settings.send_rate.count,
                    settings.send_rate.per,
                    retry_after.as_millis()
                ),
            ));
        }
        let conversation = message.target.conversation_id();
        let peer = match &message.target {
            Target::Private { .. } => peer_of(&conversation, me),
            Target::Conversation(id) if conversation_type(id) == "private" => peer_of(id, me),
            _ => None,
        };
        // The writer refuses the message with BLOCKED if the peer has blocked the sender.
        message.unless_blocked_by.clone_from(&peer);
        self.moderate(me, &conversation, message).await?;
        if let Some(peer) = &peer {
            self.check_stranger(me, peer, &conversation, message)
                .await?;
        }
        Ok(())
    }

    async fn moderate(
        &self,
        me: &str,
        conversation: &str,
        message: &mut NewMessage,
    ) -> Result<(), AppError> {
        let action = self.safety().settings.action;
        let list = self.safety().words.get();
        if list.is_empty() {
            return Ok(());
        }
        let Some(scan) = list.scan(&message.content) else {
            return Ok(());
        };
        let action_name = match action {
            ModerationAction::Reject => "reject",
            ModerationAction::Mask => "mask",
        };
        let now = now_ms();
        let rows: Vec<HitRow> = scan
            .rules
            .iter()
            .map(|rule| HitRow {
                id: row_id(),
                user_id: me.to_owned(),
                conversation_id: Some(conversation.to_owned()),
                rule: rule.clone(),
                action: action_name.to_owned(),
                created_at: now,
            })
            .collect();
        tracing::info!(user = me, conversation, rules = ?scan.rules, action = action_name, "sensitive words");
        self.store().record_hits(&rows).await.map_err(store_error)?;
        match action {
            ModerationAction::Mask => {
                message.content = scan.masked;
                Ok(())
            }
            ModerationAction::Reject => {
                self.consider_ban(me).await?;
                Err(AppError::new(
                    ErrorCode::SensitiveContent,
                    "the message contains words that are not allowed",
                ))
            }
        }
    }

    async fn check_stranger(
        &self,
        me: &str,
        peer: &str,
        conversation: &str,
        message: &NewMessage,
    ) -> Result<(), AppError> {
        let safety = self.safety();
        let key = (conversation.to_owned(), peer.to_owned());
        if safety.replied.contains(&key) {
            return Ok(());
        }
        let store = self.store();
        if store
            .sent_count(conversation, peer, 1)
            .await
            .map_err(store_error)?
            > 0
        {
            safety.replied.insert(key);
            return Ok(());
        }
        let settings = &safety.settings;
        let before_reply = i64::from(settings.stranger_before_reply);
        let sent = store
            .sent_count(conversation, me, before_reply)
            .await
            .map_err(store_error)?;
        let retry = || async {
            store
                .has_client_msg(me, &message.client_msg_id)
                .await
                .map_err(store_error)
        };
        if sent >= before_reply {
            if retry().await? {
                return Ok(());
            }
            return Err(AppError::new(
                ErrorCode::StrangerLimit,
                format!(
                    "{peer} has not replied yet: at most {before_reply} message(s) until they do"
                ),
            ));
        }
        if let Decision::Deny { .. } = safety
            .limiter
            .check(&format!("stranger:{me}"), settings.stranger_rate)
            .await
            && !retry().await?
        {
            return Err(AppError::new(
                ErrorCode::StrangerLimit,
                format!(
                    "at most {} messages in {:?} to users who have not replied",
                    settings.stranger_rate.count, settings.stranger_rate.per
                ),
            ));
        }
        Ok(())
    }

    /// Bans `user` when their offences (reports against them, rejected messages) since the
    /// window started, or since their last ban ended if later, exceed the threshold.
    async fn consider_ban(&self, user: &str) -> Result<(), AppError> {
        let settings = &self.safety().settings;
        let now = now_ms();
        let previous = self.store().ban_of(user).await.map_err(store_error)?;
        if previous.as_ref().is_some_and(|ban| ban.until > now) {
            return Ok(());
        }
        let since =
            (now - millis(settings.ban_window)).max(previous.map_or(i64::MIN, |ban| ban.until));
        let offences = self
            .store()
            .offences_since(user, since)
            .await
            .map_err(store_error)?;
        if offences <= i64::from(settings.ban_threshold) {
            return Ok(());
        }
        let until = now.saturating_add(millis(settings.ban_duration));
        self.store()
            .set_ban(&BanRow {
                user_id: user.to_owned(),
                reason: format!("{offences} reports or rejected messages"),
                banned_at: now,
                until,
            })
            .await
            .map_err(store_error)?;
        self.safety().bans.insert(user.to_owned(), until);
        tracing::warn!(user, offences, until, "user banned");
        Ok(())
    }

    /// Stores a report against a user and bans them when they pass the threshold.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT`, `NOT_FOUND` (a message the caller cannot see), `UNAVAILABLE`.
    pub async fn report(
        &self,
        caller: &Identity,
        request: ReportRequest,
    ) -> Result<ReportRow, AppError> {
        if !is_valid_user_id(&request.user_id) || request.user_id == caller.user_id {
            return Err(AppError::invalid("userId must be another user's id"));
        }
        let reason = request.reason.trim();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Err(AppError::invalid("reason must be 1 to 1000 characters"));
        }
        let message = match &request.message_id {
            None | Some(Value::Null) => None,
            Some(value) => {
                let id = message_id(value)
                    .ok_or_else(|| AppError::invalid("messageId is not a message id"))?;
                let row = self
                    .store()
                    .message(id)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| AppError::new(ErrorCode::NotFound, "no such message"))?;
                self.membership(&row.conversation_id, &caller.user_id)
                    .await
                    .map_err(|_| AppError::new(ErrorCode::NotFound, "no such message"))?;
                if row.sender_id != request.user_id {
                    return Err(AppError::invalid("the message was not sent by userId"));
                }
                Some(id)
            }
        };
        let row = ReportRow {
            id: row_id(),
            reporter_id: caller.user_id.clone(),
            user_id: request.user_id.clone(),
            message_id: message,
            reason: reason.to_owned(),
            created_at: now_ms(),
        };
        self.store().add_report(&row).await.map_err(store_error)?;
        self.consider_ban(&request.user_id).await?;
        Ok(row)
    }
}

/// `POST /api/v1/reports` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequest {
    /// The reported user.
    pub user_id: String,
    /// The offending message.
    #[serde(default)]
    pub message_id: Option<Value>,
    /// Why.
    pub reason: String,
}

/// Parses a JSON body, `INVALID_ARGUMENT` when malformed.
pub(super) fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| AppError::invalid(format!("invalid JSON body: {e}")))
}

/// The routes of this module, to be merged into `/api/v1`.
pub(super) fn routes() -> Router<RestState> {
    Router::new()
        .route("/blocks/{user}", post(block).delete(unblock))
        .route("/reports", post(report))
        .route("/admin/bans", get(list_bans))
        .route("/admin/bans/{user}", axum::routing::delete(lift_ban))
        .route("/search", get(super::search::search))
        .route("/messages/forward", post(super::forward::forward))
        .merge(crate::files::rest::routes())
}

fn check_user(user: &str, caller: &Identity) -> Result<(), AppError> {
    if !is_valid_user_id(user) || user == caller.user_id {
        return Err(AppError::invalid("userId must be another user's id"));
    }
    Ok(())
}

async fn block(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
) -> Result<Response, AppError> {
    check_user(&user, &caller)?;
    state
        .im
        .store()
        .block(&caller.user_id, &user)
        .await
        .map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn unblock(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
) -> Result<Response, AppError> {
    check_user(&user, &caller)?;
    state
        .im
        .store()
        .unblock(&caller.user_id, &user)
        .await
        .map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn report(
    State(state): State<RestState>,
    Caller(caller): Caller,
    body: Bytes,
) -> Result<Response, AppError> {
    let request: ReportRequest = json_body(&body)?;
    let row = state.im.report(&caller, request).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": row.id.to_string(),
            "userId": row.user_id,
            "messageId": row.message_id.map(|id| id.to_string()),
            "reason": row.reason,
            "createdAt": row.created_at,
        })),
    )
        .into_response())
}

fn admin(caller: &Identity) -> Result<(), AppError> {
    if caller.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(AppError::forbidden("role admin required"))
    }
}

async fn list_bans(
    State(state): State<RestState>,
    Caller(caller): Caller,
) -> Result<Response, AppError> {
    admin(&caller)?;
    let rows = state
        .im
        .store()
        .active_bans(now_ms())
        .await
        .map_err(store_error)?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|ban| {
            json!({"userId": ban.user_id, "reason": ban.reason, "bannedAt": ban.banned_at, "until": ban.until})
        })
        .collect();
    Ok(axum::Json(json!({"items": items})).into_response())
}

async fn lift_ban(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
) -> Result<Response, AppError> {
    admin(&caller)?;
    let lifted = state
        .im
        .store()
        .lift_ban(&user, now_ms())
        .await
        .map_err(store_error)?;
    state.im.safety().bans.remove(&user);
    if !lifted {
        return Err(AppError::new(
            ErrorCode::NotFound,
            format!("{user} is not banned"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
