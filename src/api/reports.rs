//! Abuse reports (`POST /reports`) and, for role `admin`, the reports and the bans in force
//! (`GET /admin/reports`, `GET /admin/bans`, `DELETE /admin/bans/{userId}`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::ApiState;
use super::extract::{Caller, Json};
use super::reply::{ApiResult, created, no_content, ok};
use crate::im::reports::{ReportRequest, ReportsQuery};

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
