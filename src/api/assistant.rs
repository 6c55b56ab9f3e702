//! `GET /assistant/conversations?limit&cursor`: every assistant conversation, role `staff`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use serde_json::json;

use super::ApiState;
use super::extract::Caller;
use super::reply::{ApiResult, ok};

/// The handler.
pub(super) async fn list(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let page = state
        .im
        .assistant_conversations(
            &caller,
            query.get("limit").map(String::as_str),
            query.get("cursor").map(String::as_str),
        )
        .await?;
    ok(json!({"items": page.items, "nextCursor": page.next_cursor}))
}
