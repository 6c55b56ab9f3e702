//! The REST API under `/api/v1` (contract section 6). Every response that is not 2xx carries
//! the contract's JSON error body; bodies are parsed here so that malformed JSON gets
//! `INVALID_ARGUMENT` rather than a framework's plain-text rejection.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Im;
use super::groups::{CreateGroup, UpdateGroup};
use super::json::{ConversationJson, MessageJson, NotificationRequest, SendRequest};
use super::messages::Origin;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{Authenticator, Identity, Role};
use crate::metrics::Metrics;
use crate::store::{HistoryQuery, SettingsChange};

/// What the REST handlers share.
#[derive(Clone)]
pub struct RestState {
    /// The IM service.
    pub im: Im,
    /// Token verification.
    pub auth: Arc<Authenticator>,
    /// Whether `POST /dev/token` mints tokens (`auth.dev_login`); 404 otherwise.
    pub dev_login: bool,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.to_json(),
        )
            .into_response()
    }
}

/// The authenticated caller of a REST request.
pub struct Caller(pub Identity);

impl FromRequestParts<RestState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &RestState) -> Result<Caller, AppError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer_token)
            .ok_or_else(|| AppError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        state.auth.verify(token).map(Caller).map_err(|error| {
            Metrics::get().auth_failures.increment(1);
            let code = match error {
                crate::auth::AuthError::InvalidUserId(_) => ErrorCode::InvalidArgument,
                _ => ErrorCode::Unauthorized,
            };
            AppError::new(code, error.to_string())
        })
    }
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| AppError::invalid(format!("invalid JSON body: {e}")))
}

fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, AppError> {
    query
        .get(name)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| AppError::invalid(format!("{name} must be an integer")))
        })
        .transpose()
}

fn path_message_id(id: &str) -> Result<i64, AppError> {
    id.parse()
        .map_err(|_| AppError::new(ErrorCode::NotFound, "no such message"))
}

type ApiResult = Result<Response, AppError>;

fn ok(body: Value) -> ApiResult {
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// The routes, to be nested under `/api/v1`.
pub fn routes(state: RestState) -> Router {
    Router::new()
        .route("/conversations", get(list_conversations))
        .route("/conversations/private", post(private_conversation))
        .route("/conversations/{id}", get(get_conversation))
        .route(
            "/conversations/{id}/settings",
            axum::routing::patch(settings),
        )
        .route("/conversations/{id}/messages", get(history))
        .route("/conversations/{id}/read", post(read))
        .route("/messages", post(send))
        .route("/messages/{id}/recall", post(recall))
        .route("/messages/{id}", delete(delete_message))
        .route("/unread", get(unread))
        .route("/groups", post(create_group))
        .route(
            "/groups/{id}",
            axum::routing::patch(update_group).delete(dissolve),
        )
        .route("/groups/{id}/members", post(invite))
        .route("/groups/{id}/members/{user}", delete(remove_member))
        .route("/groups/{id}/members/{user}/role", put(set_role))
        .route("/groups/{id}/exit", post(exit))
        .route("/notifications", post(notify))
        .route("/presence", get(presence))
        .merge(super::safety::routes())
        .merge(super::dev::routes())
        .merge(super::assistant::routes())
        .fallback(|| async { AppError::new(ErrorCode::NotFound, "no such endpoint") })
        .with_state(state)
}

async fn list_conversations(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = number(&query, "limit")?.unwrap_or(20);
    let page = state
        .im
        .store()
        .conversations_of(
            &caller.user_id,
            limit,
            query.get("cursor").map(String::as_str),
        )
        .await
        .map_err(super::store_error)?;
    let items: Vec<ConversationJson> = page
        .items
        .iter()
        .map(|s| ConversationJson::from_summary(s, &caller.user_id))
        .collect();
    ok(json!({"items": items, "nextCursor": page.next_cursor}))
}

async fn get_conversation(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let view = state.im.conversation_view(&caller.user_id, &id).await?;
    ok(serde_json::to_value(view).unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerRequest {
    peer_id: String,
}

async fn private_conversation(
    State(state): State<RestState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult {
    let request: PeerRequest = parse_body(&body)?;
    if !crate::auth::is_valid_user_id(&request.peer_id) || request.peer_id == caller.user_id {
        return Err(AppError::invalid("peerId must be another user's id"));
    }
    let id = state
        .im
        .open_private(&caller.user_id, &request.peer_id)
        .await?;
    let view = state.im.conversation_view(&caller.user_id, &id).await?;
    ok(serde_json::to_value(view).unwrap_or_default())
}

async fn settings(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Change {
        pinned: Option<bool>,
        muted: Option<bool>,
        archived: Option<bool>,
        #[serde(default, deserialize_with = "super::retention::present")]
        message_retention_days: Option<Option<i64>>,
    }
    let change: Change = parse_body(&body)?;
    state.im.membership(&id, &caller.user_id).await?;
    // Conversation-wide, unlike the rest: checked and stored first, so a refusal changes
    // nothing, and every member hears of it.
    let everyone = match change.message_retention_days {
        Some(days) => Some(state.im.set_retention(&caller, &id, days).await?),
        None => None,
    };
    state
        .im
        .store()
        .update_settings(
            &id,
            &caller.user_id,
            &SettingsChange {
                pinned: change.pinned,
                muted: change.muted,
                archived: change.archived,
            },
        )
        .await
        .map_err(super::store_error)?;
    let view = state.im.conversation_view(&caller.user_id, &id).await?;
    match everyone {
        Some(members) => state.im.conversation_updated(&id, &members).await,
        None => state
            .im
            .push_user(&caller.user_id, "events", "conversation.updated", &view),
    }
    ok(serde_json::to_value(view).unwrap_or_default())
}

async fn history(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = number(&query, "limit")?.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(AppError::invalid("limit must be 1 to 100"));
    }
    let request = HistoryQuery {
        before_seq: number(&query, "beforeSeq")?,
        after_seq: number(&query, "afterSeq")?,
        limit,
    };
    // Staff read assistant conversations without being members: from the first message.
    let (_, member) = state.im.access(&id, &caller).await?;
    let floor = member.map_or(0, |m| m.joined_seq.max(m.cleared_seq));
    let rows = state
        .im
        .store()
        .history(&id, &caller.user_id, floor, request)
        .await
        .map_err(super::store_error)?;
    let items: Vec<MessageJson> = rows.iter().map(MessageJson::from).collect();
    ok(json!({"items": items}))
}

async fn read(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: super::json::ReadRequest = parse_body(&body)?;
    let read_seq = state
        .im
        .read(&caller, &id, request.up_to_seq, Origin::Rest)
        .await?;
    ok(json!({"conversationId": id, "readSeq": read_seq}))
}

async fn send(State(state): State<RestState>, Caller(caller): Caller, body: Bytes) -> ApiResult {
    let request: SendRequest = parse_body(&body)?;
    let sent = state.im.send(&caller, request).await?;
    state.im.push_sent(&sent);
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(MessageJson::from(&sent.message))).into_response())
}

async fn recall(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let recalled = state.im.recall(&caller, path_message_id(&id)?).await?;
    ok(serde_json::to_value(MessageJson::from(&recalled)).unwrap_or_default())
}

async fn delete_message(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    state.im.delete(&caller, path_message_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn unread(State(state): State<RestState>, Caller(caller): Caller) -> ApiResult {
    let mut total = 0;
    let mut conversations = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = state
            .im
            .store()
            .conversations_of(&caller.user_id, 100, cursor.as_deref())
            .await
            .map_err(super::store_error)?;
        for summary in &page.items {
            let count = summary.unread();
            if count > 0 {
                total += count;
                conversations.push(json!({"id": summary.conversation.id, "unreadCount": count}));
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ok(json!({"total": total, "conversations": conversations}))
}

async fn create_group(
    State(state): State<RestState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult {
    let request: CreateGroup = parse_body(&body)?;
    let view = state.im.create_group(&caller, request).await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

async fn update_group(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: UpdateGroup = parse_body(&body)?;
    let view = state.im.update_group(&caller, &id, request).await?;
    ok(serde_json::to_value(view).unwrap_or_default())
}

async fn invite(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Invite {
        user_ids: Vec<String>,
    }
    let request: Invite = parse_body(&body)?;
    let added = state.im.invite(&caller, &id, &request.user_ids).await?;
    ok(json!({"added": added}))
}

async fn remove_member(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult {
    state.im.remove(&caller, &id, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_role(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path((id, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    #[derive(Deserialize)]
    struct RoleChange {
        role: String,
    }
    let request: RoleChange = parse_body(&body)?;
    state
        .im
        .set_role(&caller, &id, &user, &request.role)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn exit(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    state.im.exit(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn dissolve(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    state.im.dissolve(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn notify(State(state): State<RestState>, Caller(caller): Caller, body: Bytes) -> ApiResult {
    if !caller.has_role(Role::System) {
        return Err(AppError::forbidden("notifications need role system"));
    }
    let request: NotificationRequest = parse_body(&body)?;
    super::notify::check_recipients(&request)?;
    let mut items = Vec::with_capacity(request.user_ids.len());
    for user in &request.user_ids {
        let message = state.im.notify(&caller, user, &request).await?;
        items.push(MessageJson::from(&message));
    }
    Ok((StatusCode::CREATED, axum::Json(json!({"items": items}))).into_response())
}

/// Users whose presence the caller may not see (see [`Im::presence_of`]) answer as a user who
/// never connected.
async fn presence(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let users: Vec<&str> = query
        .get("userIds")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if users.len() > 200 {
        return Err(AppError::invalid("at most 200 userIds"));
    }
    let presence = state.im.presence_of(&caller.user_id, &users).await?;
    ok(serde_json::to_value(presence).unwrap_or_default())
}
