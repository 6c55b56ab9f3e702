//! Uploaded files as users see them: what an upload may be (type, name, size, the per-user
//! rate and quota of [`super::upload_quota`]), storing it with its image checks and thumbnail,
//! and who may read a file (its uploader, and the members of a conversation a message carrying
//! it was sent in). The bytes are kept by [`crate::files::FileStore`]; the HTTP side (streaming
//! the body, the download headers) is `crate::api`'s.

use bytes::Bytes;

use super::Im;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::Identity;
use crate::files::ImageRefusal;
use crate::files::decode::DecodeError;
use crate::store::safety::FileRow;
use crate::util::now_ms;

/// An upload as its head announces it.
#[derive(Clone, Copy, Debug)]
pub struct UploadHead<'a> {
    /// The declared media type, lower case, without parameters.
    pub mime: &'a str,
    /// The `name` the client gave, when it gave one.
    pub name: Option<&'a str>,
    /// The `Content-Length`, when the request has one.
    pub length: Option<u64>,
}

/// An upload admitted on its head: what its body may be.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The file's name.
    pub name: String,
    /// The most bytes its body may have.
    pub limit: u64,
}

/// The bytes of a file to serve, with what they are.
pub struct Download {
    /// The bytes.
    pub bytes: Bytes,
    /// Their media type.
    pub mime: String,
    /// The name to save them under.
    pub name: String,
}

/// `PAYLOAD_TOO_LARGE` for a file over `limit` bytes.
pub fn file_too_large(limit: u64) -> AppError {
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

fn no_file() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such file")
}

impl Im {
    /// Admits or refuses an upload on its head, before its body is read: its name, its
    /// announced size against the limit of its type, and the caller's upload rate and quota.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for a bad name, `PAYLOAD_TOO_LARGE`, `RATE_LIMITED`.
    pub async fn admit_upload(
        &self,
        caller: &Identity,
        head: UploadHead<'_>,
    ) -> Result<Admitted, AppError> {
        let settings = self.files_settings();
        let name = head
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "file".to_owned());
        if name.chars().count() > 255 || name.chars().any(char::is_control) {
            return Err(AppError::invalid(
                "name must be 1 to 255 printable characters",
            ));
        }
        let limit = if head.mime.starts_with("image/") {
            settings.image_max_bytes
        } else {
            settings.file_max_bytes
        };
        if head.length.is_some_and(|length| length > limit) {
            return Err(file_too_large(limit));
        }
        super::upload_quota::admit(self.limiter(), settings, &caller.user_id, head.length).await?;
        Ok(Admitted { name, limit })
    }

    /// Stores the body of an admitted upload: images are checked and measured and get a
    /// thumbnail; a body that came without a `Content-Length` is counted against the quota now.
    /// Returns the file's row.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` (empty, or not a readable image), `PAYLOAD_TOO_LARGE` (too many
    /// pixels), `RATE_LIMITED`, `UNAVAILABLE`.
    pub async fn store_upload(
        &self,
        caller: &Identity,
        head: UploadHead<'_>,
        admitted: Admitted,
        bytes: Bytes,
    ) -> Result<FileRow, AppError> {
        let settings = self.files_settings();
        if bytes.is_empty() {
            return Err(AppError::invalid("the file is empty"));
        }
        if head.length.is_none() {
            let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            super::upload_quota::charge(self.limiter(), settings, &caller.user_id, read).await?;
        }
        let (mime, width, height, thumb) = if head.mime.starts_with("image/") {
            let info = crate::files::decode::inspect(bytes.clone(), settings.image_max_pixels)
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
            (head.mime.to_owned(), None, None, None)
        };
        let id = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let store = self.files();
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
            name: admitted.name,
            mime,
            size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            width,
            height,
            has_thumbnail,
            created_at: now_ms(),
        };
        self.store().add_file(&row).await?;
        Ok(row)
    }

    /// The file `id` (its thumbnail when `thumbnail`) for `user`: when they uploaded it or are
    /// in a conversation it was sent in.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` otherwise, the same answer as for no file (so ids cannot be probed), and
    /// for a file without a thumbnail; `UNAVAILABLE`.
    pub async fn download(
        &self,
        user: &str,
        id: &str,
        thumbnail: bool,
    ) -> Result<Download, AppError> {
        let row = self.visible_file(user, id).await?;
        let (key, mime, name) = if thumbnail {
            if !row.has_thumbnail {
                return Err(AppError::new(ErrorCode::NotFound, "no thumbnail"));
            }
            (
                format!("{}.thumb", row.id),
                "image/jpeg".to_owned(),
                format!("{}.thumbnail.jpg", row.name),
            )
        } else {
            (row.id, row.mime, row.name)
        };
        let bytes = self
            .files()
            .get(&key)
            .await
            .map_err(|e| unavailable(&e))?
            .ok_or_else(no_file)?;
        Ok(Download { bytes, mime, name })
    }

    async fn visible_file(&self, user: &str, id: &str) -> Result<FileRow, AppError> {
        let store = self.store();
        let row = store.file(id).await?.ok_or_else(no_file)?;
        if row.owner_id == user || store.file_shared_with(id, user).await? {
            Ok(row)
        } else {
            Err(no_file())
        }
    }
}
