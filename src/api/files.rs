//! `POST /files` (raw body, `Content-Type`, `?name=`), `GET /files/{id}` and
//! `GET /files/{id}/thumbnail`.
//!
//! The upload's body is streamed here and stops at its limit (it is the one body
//! `http_guard::guard_api` does not bound): nothing is stored until the whole body is in and
//! within it, so a refused upload leaves nothing behind.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::extract::{Caller, read_body};
use super::reply::{ApiResult, created};
use crate::app_error::AppError;
use crate::files::urls::attachment;
use crate::im::uploads::{Download, UploadHead, file_too_large};

/// The upload. 201 with the attachment object of the stored file.
pub(super) async fn upload(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty() && v.contains('/'))
        .ok_or_else(|| AppError::invalid("Content-Type is required"))?;
    let head = UploadHead {
        mime: &mime,
        name: query.get("name").map(String::as_str),
        length: crate::http_guard::content_length(&headers),
    };
    let admitted = state.im.admit_upload(&caller, head).await?;
    let limit = usize::try_from(admitted.limit).unwrap_or(usize::MAX);
    let bytes = read_body(body, limit, |_| file_too_large(admitted.limit)).await?;
    let row = state
        .im
        .store_upload(&caller, head, admitted, bytes)
        .await?;
    created(attachment(&row))
}

/// The file's bytes.
pub(super) async fn download(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(serve(state.im.download(&caller.user_id, &id, false).await?))
}

/// The file's thumbnail, a JPEG.
pub(super) async fn thumbnail(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(serve(state.im.download(&caller.user_id, &id, true).await?))
}

/// The bytes as a download (see [`crate::files::disposition`]): nothing served here may be
/// sniffed into another type, and a file opened directly runs in a sandbox, never with the
/// broker's origin.
fn serve(file: Download) -> Response {
    (
        [
            (header::CONTENT_TYPE, file.mime.clone()),
            (header::CACHE_CONTROL, "private, max-age=86400".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                crate::files::disposition::content_disposition(&file.mime, &file.name),
            ),
        ],
        file.bytes,
    )
        .into_response()
}
