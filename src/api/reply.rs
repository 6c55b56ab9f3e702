//! How the API answers: an [`AppError`] becomes its code's status with the contract's JSON
//! error body; a success is a status and a JSON body.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app_error::AppError;

/// What a handler answers.
pub type ApiResult = Result<Response, AppError>;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.to_json(),
        )
            .into_response()
    }
}

/// 200 with `body` as JSON.
pub fn ok(body: impl Serialize) -> ApiResult {
    with_status(StatusCode::OK, body)
}

/// 201 with `body` as JSON.
pub fn created(body: impl Serialize) -> ApiResult {
    with_status(StatusCode::CREATED, body)
}

/// `status` with `body` as JSON.
pub fn with_status(status: StatusCode, body: impl Serialize) -> ApiResult {
    Ok((status, axum::Json(body)).into_response())
}

/// 204 without a body.
pub fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}
