//! Devices: push tokens for offline push.

use axum::extract::{Path, State};

use super::ApiState;
use super::extract::{Caller, Json};
use super::reply::{ApiResult, created, no_content};
use crate::im::devices::DeviceRequest;

/// `POST /devices {token, platform}`.
pub(super) async fn register(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Json(request): Json<DeviceRequest>,
) -> ApiResult {
    created(state.im.register_device(&caller, request).await?)
}

/// `DELETE /devices/{token}`.
pub(super) async fn remove(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(token): Path<String>,
) -> ApiResult {
    state.im.remove_device(&caller, &token).await?;
    no_content()
}
