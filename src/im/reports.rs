//! Abuse reports and what admins do about them: `POST /api/v1/reports`, and for role `admin`
//! the reports (`GET /api/v1/admin/reports`) and the bans in force (`GET /api/v1/admin/bans`,
//! `DELETE /api/v1/admin/bans/{userId}`).
//!
//! Reports alone cannot ban whom a reporter pleases: a report counts toward an automatic ban
//! only when its reporter has received a message from the reported user (one the reported user
//! sent in a conversation the reporter is or was a member of, after the reporter joined it, or
//! the message the report names), each reporter counts once per window however often they
//! report, and each user may file at most `limits.report_rate` reports.

use serde::Deserialize;
use serde_json::Value;

use super::Im;
use super::json::message_id;
use super::limits::Action;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{Identity, Role, is_valid_user_id};
use crate::store::safety::{BanRow, ReportRow, row_id};
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
                .await?;
        let row = ReportRow {
            id: row_id(),
            reporter_id: caller.user_id.clone(),
            user_id: request.user_id.clone(),
            message_id: message,
            reason: reason.to_owned(),
            created_at: now_ms(),
            counted,
        };
        self.store().add_report(&row).await?;
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
        let row = self.store().message(id).await?.ok_or_else(not_found)?;
        let conversation = super::conversation_id(&row.conversation_id).map_err(|_| not_found())?;
        let (_, member) = self
            .access(&conversation, caller)
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

/// One page of reports, newest first.
pub struct ReportPage {
    /// The reports.
    pub items: Vec<ReportRow>,
    /// Where the next page starts (`<createdAt>.<id>` of the last report), when it may have
    /// more.
    pub next_cursor: Option<String>,
}

/// Which reports an admin lists, as the request gave them (checked in this order after the
/// caller's role).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReportsQuery<'a> {
    /// Only reports against this user.
    pub user_id: Option<&'a str>,
    /// Reports per page, 1 to 100 (20 when absent).
    pub limit: Option<&'a str>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<&'a str>,
}

pub(super) fn admin(caller: &Identity) -> Result<(), AppError> {
    if caller.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(AppError::forbidden("role admin required"))
    }
}

impl Im {
    /// The reports, for role `admin`, newest first.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `admin`; `INVALID_ARGUMENT` for a bad query; `UNAVAILABLE`.
    pub async fn reports(
        &self,
        caller: &Identity,
        query: ReportsQuery<'_>,
    ) -> Result<ReportPage, AppError> {
        admin(caller)?;
        let user = query.user_id.filter(|u| !u.is_empty());
        if user.is_some_and(|u| !is_valid_user_id(u)) {
            return Err(AppError::invalid("userId is not a user id"));
        }
        let limit = super::page_limit(query.limit)?;
        // A cursor is `<createdAt>.<id>` of the last report of the previous page.
        let after = query
            .cursor
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.split_once('.')
                    .and_then(|(time, id)| Some((time.parse().ok()?, id.parse().ok()?)))
                    .ok_or_else(|| AppError::invalid("cursor is not one this API returned"))
            })
            .transpose()?;
        let items = self.store().reports_page(user, after, limit).await?;
        let next_cursor = (i64::try_from(items.len()).unwrap_or(0) == limit)
            .then(|| {
                items
                    .last()
                    .map(|row| format!("{}.{}", row.created_at, row.id))
            })
            .flatten();
        Ok(ReportPage { items, next_cursor })
    }

    /// The bans in force, for role `admin`.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `admin`; `UNAVAILABLE`.
    pub async fn bans(&self, caller: &Identity) -> Result<Vec<BanRow>, AppError> {
        admin(caller)?;
        Ok(self.store().active_bans(now_ms()).await?)
    }

    /// Lifts the ban of `user`, for role `admin`.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `admin`; `NOT_FOUND` when no ban is in force; `UNAVAILABLE`.
    pub async fn lift_ban(&self, caller: &Identity, user: &str) -> Result<(), AppError> {
        admin(caller)?;
        let lifted = self.store().lift_ban(user, now_ms()).await?;
        self.forget_ban(user);
        if !lifted {
            return Err(AppError::new(
                ErrorCode::NotFound,
                format!("{user} is not banned"),
            ));
        }
        Ok(())
    }
}
