//! Messages: send, forward, recall, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;

use super::ApiState;
use super::extract::{Caller, Json};
use super::reply::{ApiResult, created, no_content, ok, with_status};
use crate::app_error::{AppError, ErrorCode};
use crate::im::forward::ForwardRequest;
use crate::im::json::{MessageJson, SendRequest};
use crate::metrics::{Metrics, SendSource};

/// A message id in a path; anything else names no message.
pub(super) fn path_message_id(id: &str) -> Result<i64, AppError> {
    id.parse()
        .map_err(|_| AppError::new(ErrorCode::NotFound, "no such message"))
}

/// `POST /messages`: 201 with the stored message, 200 for a retry of one already stored.
pub(super) async fn send(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Json(request): Json<SendRequest>,
) -> ApiResult {
    let sent = state.im.send(&caller, request).await;
    Metrics::get().send(
        SendSource::Rest,
        sent.as_ref().map(drop).map_err(|e| e.code),
    );
    let sent = sent?;
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let answer = MessageJson::from(&sent.message);
    // No RECEIPT to wait for, unlike STOMP: pushed at once.
    state.im.push_sent(sent);
    with_status(status, answer)
}

/// `POST /messages/forward {messageIds, toConversationIds}`.
pub(super) async fn forward(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Json(request): Json<ForwardRequest>,
) -> ApiResult {
    let rows = state.im.forward(&caller, request).await?;
    let items: Vec<MessageJson> = rows.iter().map(MessageJson::from).collect();
    created(json!({"items": items}))
}

/// `POST /messages/{id}/recall`.
pub(super) async fn recall(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let recalled = state.im.recall(&caller, path_message_id(&id)?).await?;
    ok(MessageJson::from(&recalled))
}

/// `DELETE /messages/{id}`: hidden for the caller.
pub(super) async fn delete(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    state.im.delete(&caller, path_message_id(&id)?).await?;
    no_content()
}

/// `GET /messages/{id}`: one message, with the message it replies to.
pub(super) async fn one(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    ok(state
        .im
        .message_view(&caller, path_message_id(&id)?)
        .await?)
}

/// `GET /messages/{id}/readers`: who of the message's audience read it.
pub(super) async fn readers(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    ok(state.im.readers(&caller, path_message_id(&id)?).await?)
}
