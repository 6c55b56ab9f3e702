//! Which URLs a media attachment may name (contract sections 5 and 7): a file of this broker,
//! `/api/v1/files/<id>` (its thumbnail `/api/v1/files/<id>/thumbnail`), or an absolute
//! `https://` URL under one of `files.external_url_prefixes`.
//!
//! Clients fetch this broker's files with the viewer's token, so a message must not be able to
//! name anything else that a client could mistake for one, nor any other server the operator has
//! not listed. External URLs are compared parsed and normalised, and the normalised form is what
//! gets stored, so what a client reads is exactly what was checked.

use serde_json::{Value, json};

use crate::store::safety::FileRow;

pub use crate::config::ExternalPrefixes;

/// The URL path of a stored file; attachments naming it are recognised on send.
pub const FILE_URL_PREFIX: &str = "/api/v1/files/";

/// The attachment object of a stored file: its URLs and what its upload recorded.
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
        object["thumbnailUrl"] = json!(thumbnail_url(&row.id));
    }
    object
}

/// The id of the file of this broker that `url` names: `/api/v1/files/<id>` exactly, the id
/// being 1 to 64 ASCII letters and digits (uploads get 32 hex digits).
pub fn file_id(url: &str) -> Option<&str> {
    let id = url.strip_prefix(FILE_URL_PREFIX)?;
    (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(id)
}

/// The thumbnail URL of the file `id`.
pub fn thumbnail_url(id: &str) -> String {
    format!("{FILE_URL_PREFIX}{id}/thumbnail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(list: &[&str]) -> ExternalPrefixes {
        ExternalPrefixes::parse(&list.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_broker_file_is_its_path_exactly() {
        assert_eq!(file_id("/api/v1/files/abc123"), Some("abc123"));
        for url in [
            "/api/v1/files/",
            "/api/v1/files/abc/thumbnail",
            "/api/v1/files/abc?x=1",
            "/api/v1/files/../secret",
            "//evil.example/api/v1/files/abc",
            "https://evil.example/api/v1/files/abc",
        ] {
            assert_eq!(file_id(url), None, "{url}");
        }
    }

    #[test]
    fn urls_under_a_prefix_are_admitted_normalised() {
        let media = prefixes(&["https://cdn.example/media"]);
        assert_eq!(
            media
                .admit("https://CDN.example:443/media/a.png")
                .as_deref(),
            Some("https://cdn.example/media/a.png")
        );
        assert!(media.admit("https://cdn.example/media").is_some());
        assert!(
            media
                .admit("https://cdn.example/media/x/y.png?size=2")
                .is_some()
        );
        for refused in [
            "https://cdn.example/media-evil/a.png",
            "https://cdn.example/other/a.png",
            "https://cdn.example/media/../other/a.png",
            "https://cdn.example/media/%2e%2e/other",
            "https://cdn.example/media/..%2fother",
            "https://cdn.example/media\\..\\other",
            "https://user:pw@cdn.example/media/a.png",
            "https://cdn.example@evil.example/media/a.png",
            "https://cdn.example:8443/media/a.png",
            "http://cdn.example/media/a.png",
            "https://cdn.example.evil.example/media/a.png",
            "https://cdn.example/med\tia/a.png",
            "/media/a.png",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(media.admit(refused), None, "{refused}");
        }
        let slash = prefixes(&["https://cdn.example/media/"]);
        assert!(slash.admit("https://cdn.example/media/a.png").is_some());
        assert!(slash.admit("https://cdn.example/media").is_none());
        assert!(
            ExternalPrefixes::default()
                .admit("https://cdn.example/a.png")
                .is_none()
        );
    }

    #[test]
    fn prefixes_that_are_not_plain_https_urls_are_refused() {
        for bad in [
            "http://cdn.example/",
            "https://u@cdn.example/",
            "https://cdn.example/a?b",
            "https://cdn.example/#x",
            "cdn.example/media",
            "https://cdn.example/a/../b",
        ] {
            assert!(ExternalPrefixes::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
