//! Operator controls over users' sessions (role `admin`): list them, close them with a reason.
//! The hub reaches every node (see [`crate::hub::control`]).

use serde::Deserialize;

use super::Im;
use super::reports::admin;
use crate::app_error::AppError;
use crate::auth::Identity;
use crate::domain::is_valid_user_id;
use crate::hub::control::SessionView;

/// Characters of the reason an administrator gives.
const REASON_MAX_CHARS: usize = 200;

/// `DELETE /api/v1/admin/users/{userId}/sessions[/{session}]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseRequest {
    /// Why, for the ERROR the sessions get.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Im {
    /// The sessions of `user` in the cluster, for role `admin`.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `admin`, `INVALID_ARGUMENT` for a malformed user id.
    pub async fn user_sessions(
        &self,
        caller: &Identity,
        user: &str,
    ) -> Result<Vec<SessionView>, AppError> {
        admin(caller)?;
        if !is_valid_user_id(user) {
            return Err(AppError::invalid("not a user id"));
        }
        Ok(self.hub().list_sessions(user).await)
    }

    /// Closes the sessions of `user` in the cluster, or only `session`, each with an ERROR
    /// that gives `reason`; returns those that were open.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `admin`, `INVALID_ARGUMENT`, `NOT_FOUND` for a session that
    /// is not open.
    pub async fn close_user_sessions(
        &self,
        caller: &Identity,
        user: &str,
        session: Option<&str>,
        request: CloseRequest,
    ) -> Result<Vec<SessionView>, AppError> {
        let open = self.user_sessions(caller, user).await?;
        let reason = request
            .reason
            .unwrap_or_else(|| "closed by an administrator".to_owned());
        if reason.chars().count() > REASON_MAX_CHARS || reason.contains(['\n', '\r']) {
            return Err(AppError::invalid(format!(
                "reason is one line of at most {REASON_MAX_CHARS} characters"
            )));
        }
        let closing: Vec<SessionView> = open
            .into_iter()
            .filter(|view| session.is_none_or(|name| view.session == name))
            .collect();
        if session.is_some() && closing.is_empty() {
            return Err(AppError::new(
                crate::app_error::ErrorCode::NotFound,
                "no such session",
            ));
        }
        tracing::info!(admin = %caller.user_id, user, session, reason, "closing sessions");
        self.hub().close_sessions(user, session, &reason);
        Ok(closing)
    }
}
