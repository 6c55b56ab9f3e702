//! Abuse reports (`POST /reports`) and, for role `admin`, the reports and the bans in force
//! (`GET /admin/reports`, `GET /admin/bans`, `DELETE /admin/bans/{userId}`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::ApiState;
use super::extract::{Caller, Json, read_body};
use super::reply::{ApiResult, created, no_content, ok};
use crate::im::admin::CloseRequest;
use crate::im::reports::{ReportRequest, ReportsQuery};
use axum::extract::Request;

/// `POST /reports {userId, messageId?, reason}`.
pub(super) async fn report(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Json(request): Json<ReportRequest>,
) -> ApiResult {
    let row = state.im.report(&caller, request).await?;
    created(json!({
        "id": row.id.to_string(),
        "userId": row.user_id,
        "messageId": row.message_id.map(|id| id.to_string()),
        "reason": row.reason,
        "createdAt": row.created_at,
    }))
}

/// `GET /admin/reports?userId&limit&cursor`.
pub(super) async fn list_reports(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let param = |name: &str| query.get(name).map(String::as_str);
    let page = state
        .im
        .reports(
            &caller,
            ReportsQuery {
                user_id: param("userId"),
                limit: param("limit"),
                cursor: param("cursor"),
            },
        )
        .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|row| {
            json!({
                "id": row.id.to_string(),
                "reporterId": row.reporter_id,
                "userId": row.user_id,
                "messageId": row.message_id.map(|id| id.to_string()),
                "reason": row.reason,
                "createdAt": row.created_at,
                "counted": row.counted,
            })
        })
        .collect();
    ok(json!({"items": items, "nextCursor": page.next_cursor}))
}

/// `GET /admin/bans`.
pub(super) async fn list_bans(State(state): State<ApiState>, Caller(caller): Caller) -> ApiResult {
    let items: Vec<Value> = state
        .im
        .bans(&caller)
        .await?
        .into_iter()
        .map(|ban| {
            json!({"userId": ban.user_id, "reason": ban.reason, "bannedAt": ban.banned_at, "until": ban.until})
        })
        .collect();
    ok(json!({"items": items}))
}

/// `DELETE /admin/bans/{userId}`.
pub(super) async fn lift_ban(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
) -> ApiResult {
    state.im.lift_ban(&caller, &user).await?;
    no_content()
}

/// `GET /admin/users/{userId}/sessions`: the user's sessions on every node.
pub(super) async fn user_sessions(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
) -> ApiResult {
    ok(json!({"items": state.im.user_sessions(&caller, &user).await?}))
}

/// `DELETE /admin/users/{userId}/sessions {reason?}`: closes them all; the ones closed.
pub(super) async fn close_user_sessions(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
    request: Request,
) -> ApiResult {
    let request = close_request(request).await?;
    let closed = state
        .im
        .close_user_sessions(&caller, &user, None, request)
        .await?;
    ok(json!({"items": closed}))
}

/// `DELETE /admin/users/{userId}/sessions/{session} {reason?}`: closes one.
pub(super) async fn close_session(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path((user, session)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let request = close_request(request).await?;
    let closed = state
        .im
        .close_user_sessions(&caller, &user, Some(&session), request)
        .await?;
    ok(json!({"items": closed}))
}

/// The optional `{reason}` body of a close: none, or JSON.
async fn close_request(request: Request) -> Result<CloseRequest, crate::app_error::AppError> {
    let bytes = read_body(request.into_body(), 4096, |limit| {
        crate::app_error::AppError::invalid(format!("the body is larger than {limit} bytes"))
    })
    .await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(CloseRequest::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| crate::app_error::AppError::invalid(format!("invalid JSON body: {e}")))
}
