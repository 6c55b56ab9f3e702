//! Announcements: sent by backends, listed with the caller's read marker.

use std::collections::HashMap;

use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::json;

use stomp_codec::Headers;

use super::ApiState;
use super::extract::{Caller, Json};
use super::reply::{ApiResult, created, no_content, ok};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Announce {
    content: String,
    #[serde(default)]
    content_type: Option<String>,
}

/// `POST /announcements {content, contentType?}`: role `system`.
pub(super) async fn announce(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Json(request): Json<Announce>,
) -> ApiResult {
    let mut headers = Headers::new();
    if let Some(content_type) = request.content_type {
        headers.push("content-type", content_type);
    }
    created(
        state
            .im
            .announce(&caller, &headers, request.content.as_bytes())
            .await?,
    )
}

/// `GET /announcements?limit&cursor`.
pub(super) async fn list(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let page = state
        .im
        .announcements(
            &caller.user_id,
            query.get("limit").map(String::as_str),
            query.get("cursor").map(String::as_str),
        )
        .await?;
    ok(json!({
        "items": page.items,
        "nextCursor": page.next_cursor,
        "readUpTo": page.read_up_to,
        "unreadCount": page.unread_count,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReadUpTo {
    up_to_id: String,
}

/// `POST /announcements/read {upToId}`.
pub(super) async fn read(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Json(request): Json<ReadUpTo>,
) -> ApiResult {
    state
        .im
        .read_announcements(&caller.user_id, &request.up_to_id)
        .await?;
    no_content()
}
