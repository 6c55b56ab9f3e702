//! Edits, reactions, pins and mentions.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use serde_json::json;

use super::ApiState;
use super::extract::{Caller, Json, integer};
use super::messages::path_message_id;
use super::reply::{ApiResult, no_content, ok};
use crate::im::json::{EditRequest, ReactRequest};

/// `PATCH /messages/{id} {content}`: 200 with the edited message.
pub(super) async fn edit(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(request): Json<EditRequest>,
) -> ApiResult {
    ok(state
        .im
        .edit(&caller, path_message_id(&id)?, request.content)
        .await?)
}

/// `POST /messages/{id}/reactions {emoji, on}`: 204.
pub(super) async fn react(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(request): Json<ReactRequest>,
) -> ApiResult {
    state
        .im
        .react(&caller, path_message_id(&id)?, &request.emoji, request.on)
        .await?;
    no_content()
}

/// `GET /conversations/{id}/pins`.
pub(super) async fn pins(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    ok(json!({"items": state.im.pins(&caller, &id).await?}))
}

/// `PUT /messages/{id}/pin`: the conversation's pins.
pub(super) async fn pin(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let pins = state.im.pin(&caller, path_message_id(&id)?, true).await?;
    ok(json!({"items": pins}))
}

/// `DELETE /messages/{id}/pin`: the conversation's pins.
pub(super) async fn unpin(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let pins = state.im.pin(&caller, path_message_id(&id)?, false).await?;
    ok(json!({"items": pins}))
}

/// `GET /mentions?limit&before`: the caller's recent mentions, newest first.
pub(super) async fn mentions(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = integer(&query, "limit")?.unwrap_or(20);
    let before = integer(&query, "before")?;
    let items = state.im.mentions_of(&caller.user_id, limit, before).await?;
    let next_cursor = (i64::try_from(items.len()).unwrap_or(0) == limit)
        .then(|| items.last().map(|m| m.id.clone()))
        .flatten();
    ok(json!({"items": items, "nextCursor": next_cursor}))
}
