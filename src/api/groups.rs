//! Groups: create, update, dissolve, invite, remove a member, set a role, exit.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::extract::{Caller, Json};
use super::reply::{ApiResult, created, no_content, ok};
use crate::im::groups::{CreateGroup, Mute, SetNickname, UpdateGroup};

/// `POST /groups {name, avatar?, memberIds}`.
pub(super) async fn create(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Json(request): Json<CreateGroup>,
) -> ApiResult {
    created(state.im.create_group(&caller, request).await?)
}

/// `PATCH /groups/{id}`.
pub(super) async fn update(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(request): Json<UpdateGroup>,
) -> ApiResult {
    ok(state.im.update_group(&caller, &id, request).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Invite {
    user_ids: Vec<String>,
}

/// `POST /groups/{id}/members {userIds}`.
pub(super) async fn invite(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(request): Json<Invite>,
) -> ApiResult {
    let added = state.im.invite(&caller, &id, &request.user_ids).await?;
    ok(json!({"added": added}))
}

/// `DELETE /groups/{id}/members/{user}`.
pub(super) async fn remove_member(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult {
    state.im.remove(&caller, &id, &user).await?;
    no_content()
}

#[derive(Deserialize)]
pub(super) struct RoleChange {
    role: String,
}

/// `PUT /groups/{id}/members/{user}/role {role}`.
pub(super) async fn set_role(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path((id, user)): Path<(String, String)>,
    Json(request): Json<RoleChange>,
) -> ApiResult {
    state
        .im
        .set_role(&caller, &id, &user, &request.role)
        .await?;
    no_content()
}

/// `POST /groups/{id}/exit`.
pub(super) async fn exit(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    state.im.exit(&caller, &id).await?;
    no_content()
}

/// `DELETE /groups/{id}`: the owner dissolves the group.
pub(super) async fn dissolve(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    state.im.dissolve(&caller, &id).await?;
    no_content()
}

/// `PUT /groups/{id}/nickname {nickname}`: the caller's own.
pub(super) async fn nickname(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(request): Json<SetNickname>,
) -> ApiResult {
    state.im.set_nickname(&caller, &id, request).await?;
    no_content()
}

/// `PUT /groups/{id}/members/{userId}/mute {minutes?}`.
pub(super) async fn mute(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path((id, user)): Path<(String, String)>,
    Json(request): Json<Mute>,
) -> ApiResult {
    state
        .im
        .mute_member(&caller, &id, &user, Some(request))
        .await?;
    no_content()
}

/// `DELETE /groups/{id}/members/{userId}/mute`.
pub(super) async fn unmute(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult {
    state.im.mute_member(&caller, &id, &user, None).await?;
    no_content()
}
