//! Abuse reports and what admins do about them: `POST /api/v1/reports`, and for role `admin`
//! the reports (`GET /api/v1/admin/reports`) and the bans in force (`GET /api/v1/admin/bans`,
//! `DELETE /api/v1/admin/bans/{userId}`).
//!
//! Reports alone cannot ban whom a reporter pleases: a report counts toward an automatic ban
//! only when its reporter has received a message from the reported user (one the reported user
//! sent in a conversation the reporter is or was a member of, after the reporter joined it, or
//! the message the report names), each reporter counts once per window however often they
//! report, and each user may file at most `limits.report_rate` reports.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::message_id;
use super::limits::Action;
use super::rest::{Caller, RestState};
use super::safety::json_body;
use super::{Im, store_error};
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{Identity, Role, is_valid_user_id};
use crate::store::safety::{ReportRow, row_id};
use crate::util::now_ms;

/// Characters of a report's reason: it is stored and shown to admins.
pub const MAX_REASON_CHARS: usize = 500;

/// `POST /api/v1/reports` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequest {
    /// The reported user.
    pub user_id: String,
    /// The offending message.
    #[serde(default)]
    pub message_id: Option<Value>,
    /// Why.
    pub reason: String,
}

impl Im {
    /// Stores a report against a user; when it counts (see the module's documentation), bans
    /// the user if they pass the threshold.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT`, `RATE_LIMITED`, `NOT_FOUND` (a message the caller cannot see),
    /// `UNAVAILABLE`.
    pub async fn report(
        &self,
        caller: &Identity,
        request: ReportRequest,
    ) -> Result<ReportRow, AppError> {
        if !is_valid_user_id(&request.user_id) || request.user_id == caller.user_id {
            return Err(AppError::invalid("userId must be another user's id"));
        }
        let reason = request.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(AppError::invalid(format!(
                "reason must be 1 to {MAX_REASON_CHARS} characters"
            )));
        }
        self.limit(Action::Report, &caller.user_id).await?;
        let message = match &request.message_id {
            None | Some(Value::Null) => None,
            Some(value) => {
                let id = message_id(value)
                    .ok_or_else(|| AppError::invalid("messageId is not a message id"))?;
                Some(self.reported_message(caller, id, &request.user_id).await?)
            }
        };
        // A named message was received by the caller (it is checked to be visible to them).
        let counted = message.is_some()
            || self
                .store()
                .has_received_from(&caller.user_id, &request.user_id)
                .await
                .map_err(store_error)?;
        let row = ReportRow {
            id: row_id(),
            reporter_id: caller.user_id.clone(),
            user_id: request.user_id.clone(),
            message_id: message,
            reason: reason.to_owned(),
            created_at: now_ms(),
            counted,
        };
        self.store().add_report(&row).await.map_err(store_error)?;
        if counted {
            self.consider_ban(&request.user_id).await?;
        }
        Ok(row)
    }

    /// A message of `sender` that the caller can see, for a report.
    async fn reported_message(
        &self,
        caller: &Identity,
        id: i64,
        sender: &str,
    ) -> Result<i64, AppError> {
        let not_found = || AppError::new(ErrorCode::NotFound, "no such message");
        let row = self
            .store()
            .message(id)
            .await
            .map_err(store_error)?
            .ok_or_else(not_found)?;
        let (_, member) = self
            .access(&row.conversation_id, caller)
            .await
            .map_err(|_| not_found())?;
        if member.is_some_and(|m| row.seq <= m.joined_seq) {
            return Err(not_found());
        }
        if row.sender_id != sender {
            return Err(AppError::invalid("the message was not sent by userId"));
        }
        Ok(id)
    }
}

/// The routes of this module, to be merged into `/api/v1`.
pub(super) fn routes() -> Router<RestState> {
    Router::new()
        .route("/reports", post(report))
        .route("/admin/reports", get(list_reports))
        .route("/admin/bans", get(list_bans))
        .route("/admin/bans/{user}", axum::routing::delete(lift_ban))
}

async fn report(
    State(state): State<RestState>,
    Caller(caller): Caller,
    body: Bytes,
) -> Result<Response, AppError> {
    let request: ReportRequest = json_body(&body)?;
    let row = state.im.report(&caller, request).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": row.id.to_string(),
            "userId": row.user_id,
            "messageId": row.message_id.map(|id| id.to_string()),
            "reason": row.reason,
            "createdAt": row.created_at,
        })),
    )
        .into_response())
}

fn admin(caller: &Identity) -> Result<(), AppError> {
    if caller.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(AppError::forbidden("role admin required"))
    }
}

async fn list_reports(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    admin(&caller)?;
    let user = query.get("userId").filter(|u| !u.is_empty());
    if user.is_some_and(|u| !is_valid_user_id(u)) {
        return Err(AppError::invalid("userId is not a user id"));
    }
    let limit = match query.get("limit") {
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| AppError::invalid("limit must be 1 to 100"))?,
        None => 20,
    };
    // A cursor is `<createdAt>.<id>` of the last report of the previous page.
    let after = query
        .get("cursor")
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.split_once('.')
                .and_then(|(time, id)| Some((time.parse().ok()?, id.parse().ok()?)))
                .ok_or_else(|| AppError::invalid("cursor is not one this API returned"))
        })
        .transpose()?;
    let rows = state
        .im
        .store()
        .reports_page(user.map(String::as_str), after, limit)
        .await
        .map_err(store_error)?;
    let next_cursor = (i64::try_from(rows.len()).unwrap_or(0) == limit)
        .then(|| {
            rows.last()
                .map(|row| format!("{}.{}", row.created_at, row.id))
        })
        .flatten();
    let items: Vec<Value> = rows
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
    Ok(axum::Json(json!({"items": items, "nextCursor": next_cursor})).into_response())
}

async fn list_bans(
    State(state): State<RestState>,
    Caller(caller): Caller,
) -> Result<Response, AppError> {
    admin(&caller)?;
    let rows = state
        .im
        .store()
        .active_bans(now_ms())
        .await
        .map_err(store_error)?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|ban| {
            json!({"userId": ban.user_id, "reason": ban.reason, "bannedAt": ban.banned_at, "until": ban.until})
        })
        .collect();
    Ok(axum::Json(json!({"items": items})).into_response())
}

async fn lift_ban(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
) -> Result<Response, AppError> {
    admin(&caller)?;
    let lifted = state
        .im
        .store()
        .lift_ban(&user, now_ms())
        .await
        .map_err(store_error)?;
    state.im.forget_ban(&user);
    if !lifted {
        return Err(AppError::new(
            ErrorCode::NotFound,
            format!("{user} is not banned"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
