//! How a stored file is handed to a browser: shown in place only when it is a raster image,
//! audio or video, which a browser renders without running anything; every other type (HTML,
//! XML, SVG, PDF, anything declared by the uploader) is a download under its file name. Every
//! answer also carries `X-Content-Type-Options: nosniff` and `Content-Security-Policy: sandbox`
//! (see `api::files`), so that even a file opened directly runs no script with the broker's
//! origin.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The raster image types a browser shows in place.
const INLINE_IMAGES: [&str; 5] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
];

/// Whether a file of type `mime` may be shown in place: raster images, audio and video.
pub fn is_inline(mime: &str) -> bool {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    INLINE_IMAGES.contains(&essence.as_str())
        || essence.starts_with("audio/")
        || essence.starts_with("video/")
}

/// RFC 5987 `attr-char`s go through `filename*` as they are; everything else is encoded.
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The `Content-Disposition` of a file of type `mime` named `name` (RFC 6266): `inline` or
/// `attachment`, with the name as a plain ASCII `filename` (other characters, quotes and
/// backslashes become `_`) for old clients and exactly as `filename*=UTF-8''…`.
pub fn content_disposition(mime: &str, name: &str) -> String {
    let kind = if is_inline(mime) {
        "inline"
    } else {
        "attachment"
    };
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = utf8_percent_encode(name, ATTR_CHAR_ESCAPES);
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raster_images_audio_and_video_are_inline() {
        for mime in [
            "image/png",
            "image/jpeg",
            "IMAGE/WEBP",
            "audio/mpeg",
            "video/mp4",
        ] {
            assert!(is_inline(mime), "{mime}");
        }
    }

    #[test]
    fn markup_and_everything_else_is_an_attachment() {
        for mime in [
            "text/html",
            "text/html; charset=utf-8",
            "application/xhtml+xml",
            "image/svg+xml",
            "text/xml",
            "application/xml",
            "application/pdf",
            "text/plain",
            "application/octet-stream",
            "",
        ] {
            assert!(!is_inline(mime), "{mime}");
            assert!(content_disposition(mime, "x").starts_with("attachment;"));
        }
    }

    #[test]
    fn names_are_quoted_safely_and_given_exactly_in_utf8() {
        assert_eq!(
            content_disposition("application/pdf", "報告 \"q1\".pdf"),
            "attachment; filename=\"__ _q1_.pdf\"; \
             filename*=UTF-8''%E5%A0%B1%E5%91%8A%20%22q1%22.pdf"
        );
        assert_eq!(
            content_disposition("image/png", "cat.png"),
            "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
        );
        assert!(!content_disposition("text/plain", "a\r\nb").contains('\n'));
    }
}
