//! `GET /presence?userIds=a,b`: who is online, as the caller may see it.

use std::collections::HashMap;

use axum::extract::{Query, State};

use super::ApiState;
use super::extract::Caller;
use super::reply::{ApiResult, ok};
use crate::app_error::AppError;

/// Users asked about in one request.
const MAX_USERS: usize = 200;

/// The handler. Users whose presence the caller may not see (see
/// [`crate::im::Im::presence_of`]) answer as a user who never connected.
pub(super) async fn presence(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let users: Vec<&str> = query
        .get("userIds")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if users.len() > MAX_USERS {
        return Err(AppError::invalid(format!("at most {MAX_USERS} userIds")));
    }
    ok(state.im.presence_of(&caller.user_id, &users).await?)
}
