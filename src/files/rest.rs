//! `POST /api/v1/files` (raw body, `Content-Type`, `?name=`), `GET /api/v1/files/{id}` and
//! `GET /api/v1/files/{id}/thumbnail`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::ImageRefusal;
use super::decode::DecodeError;
use crate::app_error::{AppError, ErrorCode};
use crate::im::rest::{Caller, RestState};
use crate::store::safety::FileRow;
use crate::util::now_ms;

/// The URL path of a stored file; attachments naming it are recognised on send.
pub const FILE_URL_PREFIX: &str = "/api/v1/files/";

/// The routes, to be merged into `/api/v1`.
pub fn routes() -> Router<RestState> {
    Router::new()
        .route("/files", post(upload))
        .route("/files/{id}", get(download))
        .route("/files/{id}/thumbnail", get(thumbnail))
}

fn too_large(limit: u64) -> AppError {
    AppError::new(
        ErrorCode::PayloadTooLarge,
        format!("the file is larger than {limit} bytes"),
    )
}

/// A store that fails is treated as away for now (a full disk, an object store that does not
/// answer): the client may retry, and nothing was recorded.
fn unavailable(error: &dyn std::fmt::Display) -> AppError {
    tracing::error!(%error, "file store failure");
    AppError::new(ErrorCode::Unavailable, "file storage unavailable")
}

/// The attachment object of a stored file.
pub fn attachment(row: &FileRow) -> Value {
    let mut object = json!({
        "url": format!("{FILE_URL_PREFIX}{}", row.id),
        "name": row.name,
        "size": row.size,
        "mime": row.mime,
    });
    if let (Some(width), Some(height)) = (row.width, row.height) {
        object["width"] = json!(width);
        object["height"] = json!(height);
    }
    if row.has_thumbnail {
        object["thumbnailUrl"] = json!(format!("{FILE_URL_PREFIX}{}/thumbnail", row.id));
    }
    object
}

async fn upload(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let settings = state.im.files_settings();
    let declared = headers
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
    let name = query
        .get("name")
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "file".to_owned());
    if name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name must be 1 to 255 printable characters",
        ));
    }
    let is_image = declared.starts_with("image/");
    let limit = if is_image {
        settings.image_max_bytes
    } else {
        settings.file_max_bytes
    };
    let announced = crate::http_guard::content_length(&headers);
    if announced.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    super::quota::admit(state.im.limiter(), settings, &caller.user_id, announced).await?;
    // Read frame by frame and stop at the limit: nothing is written until the whole body is
    // in and within it, so a refused upload leaves nothing behind.
    let mut body = body;
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| crate::http_guard::body_error(&e))?;
        if let Ok(chunk) = frame.into_data() {
            if buffer.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large(limit));
            }
            buffer.extend_from_slice(&chunk);
        }
    }
    if buffer.is_empty() {
        return Err(AppError::invalid("the file is empty"));
    }
    if announced.is_none() {
        let read = u64::try_from(buffer.len()).unwrap_or(u64::MAX);
        super::quota::charge(state.im.limiter(), settings, &caller.user_id, read).await?;
    }
    let bytes = buffer.freeze();
    let (mime, width, height, thumb) = if is_image {
        let info = super::decode::inspect(bytes.clone(), settings.image_max_pixels)
            .await
            .map_err(|error| match error {
                DecodeError::Refused(refusal @ ImageRefusal::TooManyPixels { .. }) => {
                    AppError::new(ErrorCode::PayloadTooLarge, refusal.to_string())
                }
                DecodeError::Refused(refusal) => AppError::invalid(refusal.to_string()),
                DecodeError::Failed(reason) => {
                    tracing::warn!(%reason, "an uploaded image made its decoder fail");
                    AppError::invalid("the image could not be decoded")
                }
            })?;
        (
            info.mime.to_owned(),
            Some(i64::from(info.width)),
            Some(i64::from(info.height)),
            info.thumbnail,
        )
    } else {
        (declared, None, None, None)
    };
    let id = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let store = state.im.files();
    store
        .put(&id, bytes.clone())
        .await
        .map_err(|e| unavailable(&e))?;
    let has_thumbnail = match thumb {
        Some(thumb) => store
            .put(&format!("{id}.thumb"), Bytes::from(thumb))
            .await
            .map_err(|e| unavailable(&e))
            .map(|()| true)?,
        None => false,
    };
    let row = FileRow {
        id,
        owner_id: caller.user_id.clone(),
        name,
        mime,
        size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        width,
        height,
        has_thumbnail,
        created_at: now_ms(),
    };
    state
        .im
        .store()
        .add_file(&row)
        .await
        .map_err(crate::im::store_error)?;
    Ok((StatusCode::CREATED, axum::Json(attachment(&row))).into_response())
}

/// The file row when the caller uploaded it or is in a conversation it was sent in; else
/// `NOT_FOUND` (the same answer as for no file, so ids cannot be probed).
async fn visible(state: &RestState, user: &str, id: &str) -> Result<FileRow, AppError> {
    let not_found = || AppError::new(ErrorCode::NotFound, "no such file");
    let store = state.im.store();
    let row = store
        .file(id)
        .await
        .map_err(crate::im::store_error)?
        .ok_or_else(not_found)?;
    if row.owner_id == user
        || store
            .file_shared_with(id, user)
            .await
            .map_err(crate::im::store_error)?
    {
        Ok(row)
    } else {
        Err(not_found())
    }
}

/// The bytes under `key` as a download (see [`super::disposition`]): nothing served here may
/// be sniffed into another type, and a file opened directly runs in a sandbox, never with the
/// broker's origin.
async fn serve(state: &RestState, key: &str, mime: &str, name: &str) -> Result<Response, AppError> {
    let bytes = state
        .im
        .files()
        .get(key)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "no such file"))?;
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::CACHE_CONTROL, "private, max-age=86400".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                super::disposition::content_disposition(mime, name),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn download(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let row = visible(&state, &caller.user_id, &id).await?;
    serve(&state, &row.id, &row.mime, &row.name).await
}

async fn thumbnail(
    State(state): State<RestState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let row = visible(&state, &caller.user_id, &id).await?;
    if !row.has_thumbnail {
        return Err(AppError::new(ErrorCode::NotFound, "no thumbnail"));
    }
    let name = format!("{}.thumbnail.jpg", row.name);
    serve(&state, &format!("{}.thumb", row.id), "image/jpeg", &name).await
}
