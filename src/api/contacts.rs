//! Contacts and contact requests.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use serde_json::json;

use super::ApiState;
use super::extract::{Caller, Json};
use super::reply::{ApiResult, no_content, ok};
use crate::app_error::AppError;
use crate::im::contacts::{ContactRequest, Decision};

/// A request id from the path; one that is no number names no request.
fn request_id(text: &str) -> Result<i64, AppError> {
    text.parse().map_err(|_| {
        AppError::new(
            crate::app_error::ErrorCode::NotFound,
            "no such contact request",
        )
    })
}

/// `GET /contacts?online&limit&cursor`.
pub(super) async fn list(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let online = match query.get("online").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(AppError::invalid("online must be true or false")),
    };
    let page = state
        .im
        .contacts(
            &caller.user_id,
            online,
            query.get("limit").map(String::as_str),
            query.get("cursor").map(String::as_str),
        )
        .await?;
    ok(json!({"items": page.items, "nextCursor": page.next_cursor}))
}

/// `DELETE /contacts/{userId}`.
pub(super) async fn remove(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(user): Path<String>,
) -> ApiResult {
    state.im.remove_contact(&caller, &user).await?;
    no_content()
}

/// `POST /contact-requests {userId, note?}`.
pub(super) async fn request(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Json(request): Json<ContactRequest>,
) -> ApiResult {
    ok(state.im.request_contact(&caller, request).await?)
}

/// `GET /contact-requests?direction=in|out&limit&cursor`: pending requests.
pub(super) async fn pending(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let incoming = match query.get("direction").map(String::as_str) {
        None | Some("in") => true,
        Some("out") => false,
        Some(_) => return Err(AppError::invalid("direction must be in or out")),
    };
    let page = state
        .im
        .contact_requests(
            &caller.user_id,
            incoming,
            query.get("limit").map(String::as_str),
            query.get("cursor").map(String::as_str),
        )
        .await?;
    ok(json!({"items": page.items, "nextCursor": page.next_cursor}))
}

/// `POST /contact-requests/{id}/accept`.
pub(super) async fn accept(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    ok(state
        .im
        .decide_contact(&caller, request_id(&id)?, Decision::Accept)
        .await?)
}

/// `POST /contact-requests/{id}/decline`.
pub(super) async fn decline(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    ok(state
        .im
        .decide_contact(&caller, request_id(&id)?, Decision::Decline)
        .await?)
}

/// `DELETE /contact-requests/{id}`: the sender cancels.
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    ok(state
        .im
        .decide_contact(&caller, request_id(&id)?, Decision::Cancel)
        .await?)
}
