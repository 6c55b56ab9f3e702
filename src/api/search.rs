//! `GET /search?q&conversationId&format&from&to&limit&cursor`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use serde_json::json;

use super::ApiState;
use super::extract::Caller;
use super::reply::{ApiResult, ok};
use crate::im::search::SearchParams;

/// The handler.
pub(super) async fn search(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let param = |name: &str| query.get(name).map(String::as_str);
    let page = state
        .im
        .search(
            &caller,
            SearchParams {
                q: param("q"),
                limit: param("limit"),
                conversation_id: param("conversationId"),
                format: param("format"),
                cursor: param("cursor"),
                from: param("from"),
                to: param("to"),
            },
        )
        .await?;
    ok(json!({"items": page.items, "nextCursor": page.next_cursor}))
}
