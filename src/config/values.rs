//! The value types of the configuration that parse from text: rates (`30/10s`), heart-beat pairs
//! (`10000,10000`) and the external URL prefixes media attachments may point under. Each is
//! parsed once, when the configuration is read, so that a bad value stops the broker at start.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// A rate such as `30/10s`: at most `count` events per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed in the window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(value: &str) -> Result<Rate, String> {
        let bad = || format!("expected <count>/<n><ms|s|m|h|d>, e.g. \"30/10s\", got {value:?}");
        let (count, window) = value.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let split = window.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = window.split_at(split);
        let number: u64 = if number.is_empty() {
            1
        } else {
            number.parse().map_err(|_| bad())?
        };
        let millis = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        if count == 0 || number == 0 {
            return Err(format!("{value:?}: count and window must be at least 1"));
        }
        Ok(Rate {
            count,
            per: Duration::from_millis(number.saturating_mul(millis)),
        })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A STOMP heart-beat pair in milliseconds: how often we send, how often we expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartBeat {
    /// The smallest interval at which this side can send heart-beats; 0 for never.
    pub send_ms: u64,
    /// The interval at which this side wants to receive them; 0 for never.
    pub expect_ms: u64,
}

impl FromStr for HeartBeat {
    type Err = String;

    fn from_str(value: &str) -> Result<HeartBeat, String> {
        let (send, expect) = value
            .split_once(',')
            .ok_or_else(|| format!("expected \"send,expect\" in milliseconds, got {value:?}"))?;
        let number = |text: &str| {
            text.trim()
                .parse::<u64>()
                .map_err(|_| format!("{text:?} is not a number of milliseconds"))
        };
        Ok(HeartBeat {
            send_ms: number(send)?,
            expect_ms: number(expect)?,
        })
    }
}

impl<'de> Deserialize<'de> for HeartBeat {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<HeartBeat, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
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
