//! What a REST handler takes from a request, refused with the contract's error body: the caller
//! ([`Caller`], from the bearer token), a JSON body ([`Json`], the one body parser of the API)
//! and integers of the query string.
//!
//! Bodies are bounded by `http_guard::guard_api` as they stream (size and deadline); reading one
//! here only adds the contract's answer when it fails, and a tighter limit where a route has one.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::ApiState;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::Identity;
use crate::metrics::Metrics;

/// The authenticated caller of a REST request.
pub struct Caller(pub Identity);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, AppError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer_token)
            .ok_or_else(|| AppError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        state.auth.verify(token).map(Caller).map_err(|error| {
            Metrics::get().auth_failures.increment(1);
            let code = match error {
                crate::auth::AuthError::InvalidUserId(_) => ErrorCode::InvalidArgument,
                _ => ErrorCode::Unauthorized,
            };
            AppError::new(code, error.to_string())
        })
    }
}

/// A JSON request body: `INVALID_ARGUMENT` when it is not JSON of the expected shape.
///
/// Put it last among a handler's arguments, so that the caller is checked before the body is
/// read. A handler that must refuse before reading the body (a role check, `POST /dev/token`)
/// takes the [`Request`] and calls [`read_json`] instead.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, _state: &S) -> Result<Json<T>, AppError> {
        read_json(request.into_body(), usize::MAX).await.map(Json)
    }
}

/// Reads a JSON body of at most `limit` bytes (on top of the API's own limit).
///
/// # Errors
///
/// `INVALID_ARGUMENT` when it is not JSON of the expected shape or was interrupted,
/// `PAYLOAD_TOO_LARGE` past `limit`, `REQUEST_TIMEOUT` past the body's deadline.
pub async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, AppError> {
    let bytes = read_body(body, limit, |limit| {
        AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    })
    .await?;
    serde_json::from_slice(&bytes).map_err(|e| AppError::invalid(format!("invalid JSON body: {e}")))
}

/// Reads a body frame by frame, refusing it with `too_large(limit)` as soon as it passes
/// `limit` bytes: nothing past the limit is kept.
///
/// # Errors
///
/// `too_large(limit)`; `INVALID_ARGUMENT` or `REQUEST_TIMEOUT` when the body could not be
/// read (see [`crate::http_guard::body_error`]).
pub async fn read_body(
    mut body: Body,
    limit: usize,
    too_large: impl Fn(usize) -> AppError,
) -> Result<Bytes, AppError> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| crate::http_guard::body_error(&e))?;
        if let Ok(chunk) = frame.into_data() {
            if buffer.len().saturating_add(chunk.len()) > limit {
                return Err(too_large(limit));
            }
            buffer.extend_from_slice(&chunk);
        }
    }
    Ok(buffer.freeze())
}

/// The integer query parameter `name`, when given.
///
/// # Errors
///
/// `INVALID_ARGUMENT` when it is not an integer.
pub fn integer(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, AppError> {
    query
        .get(name)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| AppError::invalid(format!("{name} must be an integer")))
        })
        .transpose()
}
