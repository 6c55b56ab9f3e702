//! Conversations: the list, one conversation, the private conversation with a peer, settings,
//! history, read position and unread counts.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::extract::{Caller, Json, integer};
use super::reply::{ApiResult, ok};
use crate::app_error::AppError;
use crate::im::conversations::SettingsRequest;
use crate::im::json::ReadRequest;
use crate::im::messages::Origin;
use crate::store::HistoryQuery;

/// `GET /conversations?limit&cursor`.
pub(super) async fn list(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = integer(&query, "limit")?.unwrap_or(20);
    let page = state
        .im
        .conversations(
            &caller.user_id,
            limit,
            query.get("cursor").map(String::as_str),
        )
        .await?;
    ok(json!({"items": page.items, "nextCursor": page.next_cursor}))
}

/// `GET /conversations/{id}`.
pub(super) async fn one(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    ok(state.im.conversation_view(&caller.user_id, &id).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PeerRequest {
    peer_id: String,
}

/// `POST /conversations/private {peerId}`.
pub(super) async fn private(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Json(request): Json<PeerRequest>,
) -> ApiResult {
    ok(state
        .im
        .private_conversation(&caller, &request.peer_id)
        .await?)
}

/// `PATCH /conversations/{id}/settings`.
pub(super) async fn settings(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(change): Json<SettingsRequest>,
) -> ApiResult {
    ok(state.im.update_settings(&caller, &id, change).await?)
}

/// `GET /conversations/{id}/messages?beforeSeq&afterSeq&limit`.
pub(super) async fn history(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = integer(&query, "limit")?.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(AppError::invalid("limit must be 1 to 100"));
    }
    let request = HistoryQuery {
        before_seq: integer(&query, "beforeSeq")?,
        after_seq: integer(&query, "afterSeq")?,
        limit,
    };
    let items = state.im.history(&caller, &id, request).await?;
    ok(json!({"items": items}))
}

/// `POST /conversations/{id}/read {upToSeq}`.
pub(super) async fn read(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(request): Json<ReadRequest>,
) -> ApiResult {
    let read_seq = state
        .im
        .read(&caller, &id, request.up_to_seq, Origin::Rest)
        .await?;
    ok(json!({"conversationId": id, "readSeq": read_seq}))
}

/// `POST /conversations/{id}/clear`.
pub(super) async fn clear(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    ok(state.im.clear_history(&caller, &id).await?)
}

/// `GET /unread?includeMuted`.
pub(super) async fn unread(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let include_muted = match query.get("includeMuted").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(AppError::invalid("includeMuted must be true or false")),
    };
    let unread = state.im.unread(&caller.user_id, include_muted).await?;
    let conversations: Vec<_> = unread
        .conversations
        .iter()
        .map(|c| json!({"id": c.id, "unreadCount": c.count, "muted": c.muted, "mentioned": c.mentioned}))
        .collect();
    ok(json!({"total": unread.total, "conversations": conversations}))
}
