//! `GET /api/v1/search`: substring search over the caller's conversations, newest first, with
//! cursor paging.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::json::MessageJson;
use super::rest::{Caller, RestState};
use super::store_error;
use crate::app_error::AppError;
use crate::store::search::SearchQuery;

/// The formats a search may be narrowed to.
const FORMATS: [&str; 6] = ["text", "image", "file", "voice", "video", "card"];

fn integer(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, AppError> {
    query
        .get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| AppError::invalid(format!("{name} must be an integer")))
        })
        .transpose()
}

/// The handler.
pub(super) async fn search(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let text = query.get("q").map(|q| q.trim()).unwrap_or_default();
    if text.is_empty() || text.chars().count() > 100 {
        return Err(AppError::invalid("q must be 1 to 100 characters"));
    }
    let limit = integer(&query, "limit")?.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(AppError::invalid("limit must be 1 to 100"));
    }
    let conversation = query
        .get("conversationId")
        .filter(|c| !c.is_empty())
        .cloned();
    if let Some(id) = &conversation {
        state.im.membership(id, &caller.user_id).await?;
    }
    let format = query.get("format").filter(|f| !f.is_empty()).cloned();
    if let Some(format) = &format
        && !FORMATS.contains(&format.as_str())
    {
        return Err(AppError::invalid(format!("unknown format {format:?}")));
    }
    let cursor = query.get("cursor").filter(|c| !c.is_empty());
    let before_id = cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| AppError::invalid("cursor is not one this API returned"))
        })
        .transpose()?;
    let rows = state
        .im
        .store()
        .search(&SearchQuery {
            user: caller.user_id.clone(),
            text: text.to_owned(),
            conversation,
            format,
            from: integer(&query, "from")?,
            to: integer(&query, "to")?,
            before_id,
            limit,
        })
        .await
        .map_err(store_error)?;
    let next_cursor = (i64::try_from(rows.len()).unwrap_or(0) == limit)
        .then(|| rows.last().map(|row| row.id.to_string()))
        .flatten();
    let items: Vec<MessageJson> = rows.iter().map(MessageJson::from).collect();
    Ok(axum::Json(json!({"items": items, "nextCursor": next_cursor})).into_response())
}
