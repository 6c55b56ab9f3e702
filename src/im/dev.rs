//! `POST /api/v1/dev/token` (contract section 2): tokens for the demo client's "try as" button
//! when `auth.dev_login` is on. The configuration refuses the flag unless the HTTP listener is on
//! a loopback address, so only someone on this machine can mint.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::rest::RestState;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{AuthError, Role, is_valid_user_id};

/// How long a dev token lasts: a working day of trying the demo.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevTokenRequest {
    sub: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// The route, to be merged into `/api/v1`.
pub(super) fn routes() -> Router<RestState> {
    Router::new().route("/dev/token", post(dev_token))
}

async fn dev_token(State(state): State<RestState>, body: Bytes) -> Result<Response, AppError> {
    // Off means absent, not forbidden: the endpoint must not even be discoverable.
    if !state.dev_login {
        return Err(AppError::new(ErrorCode::NotFound, "no such endpoint"));
    }
    let request: DevTokenRequest = serde_json::from_slice(&body)
        .map_err(|e| AppError::invalid(format!("invalid JSON body: {e}")))?;
    if !is_valid_user_id(&request.sub) {
        return Err(AppError::invalid(
            "sub must be 1 to 64 of A-Z a-z 0-9 - . @ :",
        ));
    }
    let mut roles = Vec::new();
    for name in request.roles.unwrap_or_default() {
        let role = Role::parse(&name).ok_or_else(|| {
            AppError::invalid(format!(
                "unknown role {name:?}: use user, system, admin or staff"
            ))
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        roles.push(Role::User);
    }
    match state.auth.mint(&request.sub, &roles, DEV_TOKEN_TTL) {
        Ok(token) => Ok(axum::Json(json!({ "token": token })).into_response()),
        Err(AuthError::InvalidUserId(sub)) => {
            Err(AppError::invalid(format!("invalid user id {sub:?}")))
        }
        Err(error) => Err(AppError::new(ErrorCode::Internal, error.to_string())),
    }
}
