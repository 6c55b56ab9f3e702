//! `POST /blocks/{userId}` and `DELETE /blocks/{userId}`.

use axum::extract::{Path, State};

use super::ApiState;
use super::extract::Caller;
use super::reply::{ApiResult, no_content};

/// The caller blocks a user.
pub(super) async fn block(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
) -> ApiResult {
    state.im.block(&caller, &user).await?;
    no_content()
}

/// The caller unblocks a user.
pub(super) async fn unblock(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
) -> ApiResult {
    state.im.unblock(&caller, &user).await?;
    no_content()
}
