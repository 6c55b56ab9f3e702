//! The shape of attachments (contract section 5): media formats carry
//! `{url, name, size, mime, width?, height?, durationMs?, thumbnailUrl?}`, cards
//! `{bizType, bizId, title, summary?, url?}`. Unknown keys are refused so that clients cannot
//! smuggle data into other users' messages.
//!
//! A media attachment names a file of this broker that its sender may use, or an external
//! `https://` URL the operator allows (see [`crate::files::urls`]); for a file of this broker
//! the message stores what the upload recorded (size, type, image size, thumbnail), not what the
//! client declared, and the upload limits hold.

use serde_json::{Map, Value};

use super::Im;
use crate::app_error::AppError;
use crate::files::urls;
use crate::store::safety::FileRow;

fn text(
    object: &Map<String, Value>,
    key: &str,
    required: bool,
    max: usize,
) -> Result<(), AppError> {
    match object.get(key) {
        None | Some(Value::Null) if !required => Ok(()),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => Ok(()),
        _ => Err(AppError::invalid(format!(
            "attachment.{key} must be a string of 1 to {max} characters{}",
            if required { "" } else { " when given" }
        ))),
    }
}

fn count(object: &Map<String, Value>, key: &str, required: bool) -> Result<(), AppError> {
    match object.get(key) {
        None | Some(Value::Null) if !required => Ok(()),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(()),
        _ => Err(AppError::invalid(format!(
            "attachment.{key} must be a non-negative integer"
        ))),
    }
}

fn only(object: &Map<String, Value>, allowed: &[&str]) -> Result<(), AppError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(AppError::invalid(format!(
            "attachment.{key} is not allowed"
        ))),
        None => Ok(()),
    }
}

/// Checks the shape of a media attachment (`image`, `file`, `voice`, `video`).
///
/// # Errors
///
/// `INVALID_ARGUMENT` naming the offending field.
fn check_media(object: &Map<String, Value>) -> Result<(), AppError> {
    only(
        object,
        &[
            "url",
            "name",
            "size",
            "mime",
            "width",
            "height",
            "durationMs",
            "thumbnailUrl",
        ],
    )?;
    text(object, "url", true, 2048)?;
    text(object, "name", true, 255)?;
    count(object, "size", true)?;
    text(object, "mime", true, 255)?;
    for key in ["width", "height", "durationMs"] {
        count(object, key, false)?;
    }
    text(object, "thumbnailUrl", false, 2048)
}

/// A checked media attachment: the JSON to store, and the uploaded file the message shares
/// with its conversation once stored.
pub(super) struct Media {
    /// The attachment as stored.
    pub(super) stored: String,
    /// The id of the file of this broker it names.
    pub(super) file: Option<String>,
}

impl Im {
    /// Checks a media attachment of a message `sender` sends in `format`: its shape, its URLs,
    /// and for a file of this broker the sender's right to it and the upload limits. Only
    /// messages with an attachment pay for the lookup of the file.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` naming what is wrong; `UNAVAILABLE` when the database does not answer.
    pub(super) async fn media_attachment(
        &self,
        sender: &str,
        format: &str,
        object: &Map<String, Value>,
    ) -> Result<Media, AppError> {
        check_media(object)?;
        let url = object
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let thumbnail = object.get("thumbnailUrl").and_then(Value::as_str);
        if let Some(id) = urls::file_id(url) {
            if thumbnail.is_some_and(|t| t != urls::thumbnail_url(id)) {
                return Err(AppError::invalid(
                    "attachment.thumbnailUrl must be the thumbnail of attachment.url's file",
                ));
            }
            let row = self.usable_file(sender, id).await?;
            self.check_upload_limits(format, &row)?;
            // What the upload recorded wins over what the client declared; the name and the
            // duration are the sender's to give.
            let mut stored = urls::attachment(&row);
            stored["name"] = object.get("name").cloned().unwrap_or(Value::Null);
            if let Some(duration) = object.get("durationMs").filter(|d| !d.is_null()) {
                stored["durationMs"] = duration.clone();
            }
            return Ok(Media {
                stored: stored.to_string(),
                file: Some(row.id),
            });
        }
        let external = &self.files_settings().external_url_prefixes;
        let refused = |key: &str| {
            AppError::invalid(if external.is_empty() {
                format!(
                    "attachment.{key} must name a file uploaded here ({}<id>)",
                    urls::FILE_URL_PREFIX
                )
            } else {
                format!(
                    "attachment.{key} must name a file uploaded here ({}<id>) or an https URL \
                     under files.external_url_prefixes",
                    urls::FILE_URL_PREFIX
                )
            })
        };
        let mut stored = object.clone();
        let admitted = external.admit(url).ok_or_else(|| refused("url"))?;
        stored.insert("url".into(), Value::String(admitted));
        if let Some(thumbnail) = thumbnail {
            let admitted = external
                .admit(thumbnail)
                .ok_or_else(|| refused("thumbnailUrl"))?;
            stored.insert("thumbnailUrl".into(), Value::String(admitted));
        }
        Ok(Media {
            stored: Value::Object(stored).to_string(),
            file: None,
        })
    }

    /// The file `id` when `sender` uploaded it or it is shared with them; the same refusal
    /// otherwise as for no file, so ids cannot be probed.
    async fn usable_file(&self, sender: &str, id: &str) -> Result<FileRow, AppError> {
        let refused = || AppError::invalid(format!("attachment.url names no file of yours: {id}"));
        let store = self.store();
        let row = store.file(id).await?.ok_or_else(refused)?;
        if row.owner_id == sender || store.file_shared_with(id, sender).await? {
            Ok(row)
        } else {
            Err(refused())
        }
    }

    /// The upload limits hold for messages too (they may be lower than when the file was
    /// uploaded), and an image message needs an image upload.
    fn check_upload_limits(&self, format: &str, row: &FileRow) -> Result<(), AppError> {
        let settings = self.files_settings();
        let image = format == "image";
        if image && !(row.mime.starts_with("image/") && row.width.is_some()) {
            return Err(AppError::invalid(
                "an image message needs an uploaded JPEG, PNG, GIF or WebP image",
            ));
        }
        let limit = if image {
            settings.image_max_bytes
        } else {
            settings.file_max_bytes
        };
        if u64::try_from(row.size).map_or(true, |size| size > limit) {
            return Err(AppError::invalid(format!(
                "the file is larger than {limit} bytes, the limit of {format} messages"
            )));
        }
        Ok(())
    }
}

/// Checks a card attachment; its free-form `data` may take at most `data_max_bytes` bytes of
/// JSON.
///
/// # Errors
///
/// `INVALID_ARGUMENT` naming the offending field.
pub(super) fn check_card(
    object: &Map<String, Value>,
    data_max_bytes: usize,
) -> Result<(), AppError> {
    // `data` is what system notifications carry in their cards (section 5.6).
    only(
        object,
        &["bizType", "bizId", "title", "summary", "url", "data"],
    )?;
    text(object, "bizType", true, 64)?;
    text(object, "bizId", true, 128)?;
    text(object, "title", true, 200)?;
    text(object, "summary", false, 1000)?;
    text(object, "url", false, 2048)?;
    check_data(object.get("data"), data_max_bytes)
}

/// Bounds free-form `data` (of a card, or of a system notification) by the size of its JSON.
///
/// # Errors
///
/// `INVALID_ARGUMENT` when it is larger.
pub(super) fn check_data(data: Option<&Value>, max_bytes: usize) -> Result<(), AppError> {
    let Some(data) = data else {
        return Ok(());
    };
    // Serialized into a counter that gives up past the bound: nothing large is built.
    let mut room = Room { left: max_bytes };
    if serde_json::to_writer(&mut room, data).is_err() {
        return Err(AppError::invalid(format!(
            "data must take at most {max_bytes} bytes of JSON"
        )));
    }
    Ok(())
}

/// A writer that keeps nothing and fails once more than `left` bytes were written.
struct Room {
    left: usize,
}

impl std::io::Write for Room {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.left = self
            .left
            .checked_sub(bytes.len())
            .ok_or_else(|| std::io::Error::other("over the bound"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
