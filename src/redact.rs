//! Passwords out of logs and error messages. The service URLs of the configuration
//! (`storage.url`, `relay.amqp_url`, `presence.redis_url`, `files.s3_endpoint`) may carry a
//! password (`postgres://broker:secret@db/broker`), and so may the errors of the clients that
//! connect with them: lapin echoes a URL it cannot parse, a TOML error quotes the line it
//! stopped at. Every URL the broker prints goes through [`redact_url`], and every error made
//! from connecting with one through [`redact_secrets`]; [`redact_all`] is the last pass over
//! what the command line prints.

use percent_encoding::percent_decode_str;

/// What replaces a secret.
const HIDDEN: &str = "***";

/// Query parameters whose value is a secret (`?password=`, `sslpassword`, `token`...).
fn secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
}

/// The byte range of the password in `url` (`scheme:[//]user:password@host...`), if any.
fn password_range(url: &str) -> Option<std::ops::Range<usize>> {
    let scheme_end = url.find(':')?;
    let scheme = &url[..scheme_end];
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let mut start = scheme_end + 1;
    if url[start..].starts_with("//") {
        start += 2;
    }
    let rest = &url[start..];
    // The user information ends at the last '@' before the query, so that a password holding
    // an unencoded '/' is still found.
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    let at = rest[..before_query].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some(start + colon + 1..start + at)
}

/// `url` with its password and any secret query parameter replaced by `***`; anything else,
/// including text that is not a URL, is kept as it is.
pub fn redact_url(url: &str) -> String {
    let mut out = match password_range(url) {
        Some(range) if !range.is_empty() => {
            format!("{}{HIDDEN}{}", &url[..range.start], &url[range.end..])
        }
        _ => url.to_owned(),
    };
    if let Some(query_start) = out.find('?') {
        let (base, query) = out.split_at(query_start + 1);
        let (query, fragment) = match query.find('#') {
            Some(hash) => query.split_at(hash),
            None => (query, ""),
        };
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if secret_parameter(name) => format!("{name}={HIDDEN}"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{base}{}{fragment}", query.join("&"));
    }
    out
}

/// `text` with every `scheme://user:password@` in it redacted, and every trace of `url`'s
/// password: the URL itself, its password as written and percent-decoded.
pub fn redact_secrets(text: &str, url: &str) -> String {
    let mut out = redact_embedded_urls(text);
    if url.is_empty() {
        return out;
    }
    out = out.replace(url, &redact_url(url));
    if let Some(range) = password_range(url) {
        let raw = &url[range];
        let decoded = percent_decode_str(raw).decode_utf8_lossy().into_owned();
        for password in [raw, decoded.as_str()] {
            // Very short passwords would blot out ordinary letters; they are still removed where
            // they stand in a URL.
            if password.len() >= 4 {
                out = out.replace(password, HIDDEN);
            } else if !password.is_empty() {
                out = out.replace(&format!(":{password}@"), &format!(":{HIDDEN}@"));
            }
        }
    }
    out
}

/// [`redact_secrets`] for each of `urls`.
pub fn redact_all<'a>(text: &str, urls: impl IntoIterator<Item = &'a str>) -> String {
    urls.into_iter()
        .fold(redact_embedded_urls(text), |text, url| {
            redact_secrets(&text, url)
        })
}

/// Every `scheme://...` in `text`, redacted by [`redact_url`].
fn redact_embedded_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        // Back to the start of the scheme.
        let scheme_start = rest[..found]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        // Forward to the end of the URL: whitespace or a quote.
        let end = rest[found..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .map_or(rest.len(), |i| found + i);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_url(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        for (url, redacted) in [
            (
                "postgres://broker:s3cret@db:5432/broker",
                "postgres://broker:***@db:5432/broker",
            ),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
            ("redis://redis:6379", "redis://redis:6379"),
            ("sqlite://./data/broker.db", "sqlite://./data/broker.db"),
            (
                "postgres://u:pa/ss@db/x?sslmode=require&password=p2#f",
                "postgres://u:***@db/x?sslmode=require&password=***#f",
            ),
            ("amqp:guest:s3cret@host", "amqp:guest:***@host"),
            ("http://minio:9000", "http://minio:9000"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }

    #[test]
    fn a_urls_password_is_removed_from_any_text() {
        let url = "postgres://broker:s%40cret@db/broker";
        let text = "cannot connect to postgres://broker:s%40cret@db/broker: auth failed for \
                    password s@cret";
        let clean = redact_secrets(text, url);
        assert!(
            !clean.contains("s%40cret") && !clean.contains("s@cret"),
            "{clean}"
        );
        assert!(clean.contains("postgres://broker:***@db/broker"), "{clean}");
        // An unknown URL embedded in a message is caught by its shape.
        let clean = redact_secrets("Invalid URL: 'amqp://g:topsecret@h/%2f'", "");
        assert!(!clean.contains("topsecret"), "{clean}");
        assert_eq!(
            redact_secrets("no secrets here", "redis://r:6379"),
            "no secrets here"
        );
    }

    #[test]
    fn every_configured_url_is_redacted() {
        let text = "a amqp:guest:rabbitpw@h b redis://:redispw@r c";
        let clean = redact_all(text, ["amqp:guest:rabbitpw@h", "redis://:redispw@r"]);
        assert!(
            !clean.contains("rabbitpw") && !clean.contains("redispw"),
            "{clean}"
        );
    }
}
