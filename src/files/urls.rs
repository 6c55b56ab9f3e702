//! Which URLs a media attachment may name (contract sections 5 and 7): a file of this broker,
//! `/api/v1/files/<id>` (its thumbnail `/api/v1/files/<id>/thumbnail`), or an absolute
//! `https://` URL under one of `files.external_url_prefixes`.
//!
//! Clients fetch this broker's files with the viewer's token, so a message must not be able to
//! name anything else that a client could mistake for one, nor any other server the operator has
//! not listed. External URLs are compared parsed and normalised, and the normalised form is what
//! gets stored, so what a client reads is exactly what was checked.

use url::Url;

use super::rest::FILE_URL_PREFIX;

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

/// The parsed `files.external_url_prefixes`; empty (the default) admits no external URL.
#[derive(Clone, Debug, Default)]
pub struct ExternalPrefixes(Vec<Url>);

impl ExternalPrefixes {
    /// Parses the configured prefixes.
    ///
    /// # Errors
    ///
    /// A one-line reason naming the first prefix that is not an `https://` URL with a host and
    /// without user info, query, fragment, `..` or encoded dots and slashes.
    pub fn parse(prefixes: &[String]) -> Result<ExternalPrefixes, String> {
        prefixes
            .iter()
            .map(|text| {
                parse_strict(text)
                    .filter(|url| url.query().is_none() && url.fragment().is_none())
                    .ok_or_else(|| {
                        format!(
                            "{text:?} is not an https:// URL with a host and without user info, \
                             query, fragment, `..` or encoded dots and slashes"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ExternalPrefixes)
    }

    /// Whether no external URL is admitted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The normalised form of `text` when it is an `https://` URL under one of the prefixes:
    /// the same scheme, host and port, and a path equal to the prefix's or continuing it after
    /// a `/` (so `https://cdn.example/media` admits `/media/a.png` but not `/media-evil/a.png`).
    pub fn admit(&self, text: &str) -> Option<String> {
        let url = parse_strict(text)?;
        self.0
            .iter()
            .any(|prefix| is_under(&url, prefix))
            .then(|| url.into())
    }
}

/// Parses an absolute `https://` URL, refusing outright what a lenient parser would repair or a
/// server might decode into another path: anything but printable ASCII (the URL standard drops
/// tabs and newlines), backslashes (read as slashes), `..` and `.` segments (resolved away), and
/// percent-encoded dots, slashes and backslashes (which some servers decode after routing).
fn parse_strict(text: &str) -> Option<Url> {
    let printable = !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
    let lower = text.to_ascii_lowercase();
    let sneaky = text.contains('\\')
        || text.contains("..")
        || text.contains("/./")
        || text.ends_with("/.")
        || ["%2e", "%2f", "%5c"]
            .iter()
            .any(|code| lower.contains(code));
    if !printable || sneaky {
        return None;
    }
    let url = Url::parse(text).ok()?;
    let plain = url.scheme() == "https"
        && url.username().is_empty()
        && url.password().is_none()
        && url.host().is_some();
    plain.then_some(url)
}

fn is_under(url: &Url, prefix: &Url) -> bool {
    let (path, base) = (url.path(), prefix.path());
    url.scheme() == prefix.scheme()
        && url.host() == prefix.host()
        && url.port_or_known_default() == prefix.port_or_known_default()
        && (path == base
            || path
                .strip_prefix(base)
                .is_some_and(|rest| base.ends_with('/') || rest.starts_with('/')))
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
