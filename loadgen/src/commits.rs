//! Messages per group commit: the broker's writer records how many messages each batch it
//! commits holds (the histogram `broker_store_batch_messages` on `/metrics`); read before and
//! after a run, the difference of its `_sum` over that of its `_count` is the mean batch of
//! the run.

use std::net::SocketAddr;
use std::time::Duration;

/// The series the broker's writer records each committed batch's size in.
const SERIES: &str = "broker_store_batch_messages";

/// Where the broker's `/metrics` is.
#[derive(Clone, Debug)]
pub struct MetricsUrl {
    addr: SocketAddr,
    path: String,
}

impl MetricsUrl {
    /// `url` (`http://host:port/path`), or `/metrics` at the broker's own address.
    ///
    /// # Errors
    ///
    /// When `url` is given but is not an `http://` URL that resolves.
    pub async fn new(url: Option<&str>, broker: SocketAddr) -> anyhow::Result<MetricsUrl> {
        Ok(match url {
            Some(url) => {
                let (addr, path) = crate::http::resolve(url).await?;
                MetricsUrl { addr, path }
            }
            None => MetricsUrl {
                addr: broker,
                path: "/metrics".to_owned(),
            },
        })
    }
}

/// The batch histogram's totals at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    messages: f64,
    batches: f64,
}

/// Reads the totals; `None` when `/metrics` cannot be read or has no such series (another
/// broker, a broker without the writer, or one that has committed nothing yet counts as 0).
pub async fn totals(url: Option<&MetricsUrl>) -> Option<Totals> {
    let url = url?;
    let (status, text) =
        crate::http::request(url.addr, "GET", &url.path, &[], "", Duration::from_secs(10))
            .await
            .ok()?;
    (status == 200).then(|| parse(&text))
}

/// Sums the series' `_sum` and `_count` over every label set.
fn parse(text: &str) -> Totals {
    let mut totals = Totals::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(SERIES) else {
            continue;
        };
        let (field, value) = if let Some(v) = rest.strip_prefix("_sum") {
            (&mut totals.messages, v)
        } else if let Some(v) = rest.strip_prefix("_count") {
            (&mut totals.batches, v)
        } else {
            continue;
        };
        // After the name: optional `{labels}`, then the value (and maybe a timestamp).
        let value = match value.rfind('}') {
            Some(i) if value.starts_with('{') => &value[i + 1..],
            _ if value.starts_with(' ') => value,
            _ => continue,
        };
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *field += v;
        }
    }
    totals
}

/// What the writer committed during a run.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct GroupCommits {
    /// Batches committed.
    pub batches: u64,
    /// Messages in them.
    pub messages: u64,
    /// Messages per batch; 0 when nothing was committed.
    pub per_commit: f64,
}

/// The commits between two readings.
pub fn between(before: Option<Totals>, after: Option<Totals>) -> Option<GroupCommits> {
    let (before, after) = (before?, after?);
    let batches = (after.batches - before.batches).max(0.0);
    let messages = (after.messages - before.messages).max(0.0);
    Some(GroupCommits {
        batches: batches as u64,
        messages: messages as u64,
        per_commit: if batches > 0.0 {
            messages / batches
        } else {
            0.0
        },
    })
}

/// ` msgs/commit=12.3 (commits=456)` for a summary line, or nothing.
pub fn suffix(commits: Option<&GroupCommits>) -> String {
    commits.map_or_else(String::new, |c| {
        format!(" msgs/commit={:.2} (commits={})", c.per_commit, c.batches)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_counts_are_read_with_and_without_labels() {
        let text = "# TYPE broker_store_batch_messages summary\n\
                    broker_store_batch_messages{quantile=\"0.5\"} 3\n\
                    broker_store_batch_messages_sum 120\n\
                    broker_store_batch_messages_count 10\n\
                    broker_store_batch_messages_sum{node=\"b\"} 30\n\
                    broker_store_batch_messages_count{node=\"b\"} 5\n\
                    broker_store_batch_seconds_sum 2\n";
        let t = parse(text);
        assert_eq!((t.messages, t.batches), (150.0, 15.0));
        let c = between(
            Some(Totals {
                messages: 50.0,
                batches: 5.0,
            }),
            Some(t),
        )
        .unwrap();
        assert_eq!((c.messages, c.batches), (100, 10));
        assert!((c.per_commit - 10.0).abs() < 1e-9);
    }
}
