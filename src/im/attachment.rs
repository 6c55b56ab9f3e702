//! The shape of attachments (contract section 5): media formats carry
//! `{url, name, size, mime, width?, height?, durationMs?, thumbnailUrl?}`, cards
//! `{bizType, bizId, title, summary?, url?}`. Unknown keys are refused so that clients cannot
//! smuggle data into other users' messages.

use serde_json::{Map, Value};

use crate::app_error::AppError;

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

/// Checks a media attachment (`image`, `file`, `voice`, `video`).
///
/// # Errors
///
/// `INVALID_ARGUMENT` naming the offending field.
pub(super) fn check_media(object: &Map<String, Value>) -> Result<(), AppError> {
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

/// The file id of an attachment URL naming a file uploaded here.
pub(super) fn uploaded_file_id(attachment: &str) -> Option<String> {
    let value: Value = serde_json::from_str(attachment).ok()?;
    let url = value.get("url")?.as_str()?;
    let id = url.strip_prefix(crate::files::rest::FILE_URL_PREFIX)?;
    Some(id.split('/').next().unwrap_or_default().to_owned())
}
