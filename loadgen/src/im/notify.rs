//! `notify`: system notifications sent by a backend over REST (`POST /api/v1/notifications`,
//! role `system`), each call to N recipients, K calls one after the other. Each recipient's copy
//! is stored in its `system_<user>` conversation; M of the recipients are online on
//! `/user/queue/notifications` and time the `notification.new` they get.
//!
//! The broker stores a call's recipients in the order given, so the online users are spread
//! evenly over the list (online user `j` at position `j × N / M`): their latencies then sample
//! the whole call, not its first recipients only.
//!
//! Each call's content is `<call> <start ns> ` (padded to `--payload`), pushed as
//! `title\ncontent`; its clientMsgId is `<run>-<call>`, which the broker stores per recipient
//! as `<run>-<call>:<user>`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use stomp_codec::{Command, Frame};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::report::Verification;
use super::rest::http_json;
use super::session::{Bits, parse_content};
use super::user_of;
use crate::client::{Reader, Target, describe};
use crate::cpu::CpuPer;
use crate::stats::{Latencies, Percentiles, now_ns};
use crate::{Errors, RunOptions, run_id};

/// The title of every notification; the pushed content is `title\ncontent`.
const TITLE: &str = "loadgen";

/// What a `notify` run does.
#[derive(Clone, Debug)]
pub struct NotifyLoad {
    /// Recipients per call.
    pub users: usize,
    /// Calls, one after the other.
    pub calls: usize,
    /// Recipients connected and subscribed to their notifications.
    pub online: usize,
    /// Characters of content (at least the `<call> <ns> ` prefix).
    pub payload: usize,
    /// How long one call may take.
    pub timeout: Duration,
    /// After the calls, how long to wait without progress for the last pushes.
    pub drain: Duration,
    /// Check the stored notifications in this PostgreSQL database afterwards.
    pub verify_postgres: Option<String>,
    /// The user id of the calls' token (role `system`) when tokens are minted.
    pub system_user: String,
}

/// What a `notify` run measured. Serialised as is for `--json`.
#[derive(Debug, serde::Serialize)]
pub struct NotifyReport {
    /// `notify`.
    pub scenario: &'static str,
    /// The broker's URL.
    pub url: String,
    /// Free text naming the broker under test (and its database).
    pub label: String,
    /// Recipients per call.
    pub users: usize,
    /// Calls made.
    pub calls: usize,
    /// Recipients online.
    pub online: usize,
    /// Characters of content.
    pub payload: usize,
    /// Seconds to connect and subscribe the online recipients.
    pub setup_seconds: f64,
    /// Calls answered 201.
    pub calls_ok: u64,
    /// Calls refused or failed.
    pub calls_failed: u64,
    /// Notifications the successful calls returned as stored.
    pub stored: u64,
    /// From the start of the first call to the end of the last.
    pub wall_seconds: f64,
    /// Stored notifications per second of `wall_seconds`.
    pub notifications_per_sec: f64,
    /// Each call's time, request to complete response.
    pub call_latency: Percentiles,
    /// Online recipients × successful calls: the pushes expected.
    pub expected_deliveries: u64,
    /// Pushes received (first copy of each call per recipient).
    pub delivered: u64,
    /// Expected pushes that never came.
    pub lost: u64,
    /// Pushes received more than once.
    pub duplicates: u64,
    /// From the start of a call to its push reaching an online recipient.
    pub delivery_latency: Percentiles,
    /// The database check, when asked for.
    pub verification: Option<Verification>,
    /// The CPU time of the broker, loadgen and PostgreSQL per stored notification, in
    /// microseconds.
    pub cpu_us_per_message: Option<CpuPer>,
    /// The broker's group commits during the calls and the drain (from its `/metrics`).
    pub group_commits: Option<crate::commits::GroupCommits>,
    /// Cores busy from the first call to the end of the drain.
    pub cpu: Option<crate::cpu::Usage>,
    /// Online recipients that failed to connect or subscribe.
    pub connect_failures: u64,
    /// Failed calls, ERROR frames and socket failures.
    pub errors: u64,
    /// The first few of them.
    pub error_samples: Vec<String>,
}

impl NotifyReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let verified = self.verification.as_ref().map_or_else(String::new, |v| {
            format!(
                " db(stored={} missing={} duplicated={} unconfirmed={})",
                v.stored, v.missing, v.duplicated, v.unconfirmed
            )
        });
        let c = &self.call_latency;
        let d = &self.delivery_latency;
        format!(
            "notify [{}] users={} calls={} online={} payload={}B setup={:.1}s calls_ok={} \
             failed={} stored={} wall={:.3}s notifications/s={:.0} call p50={:.1}ms \
             max={:.1}ms delivered={}/{} lost={} dup={} delivery p50={:.3}ms p99={:.3}ms \
             max={:.3}ms{} connect_failures={} errors={}{}{}{}",
            self.label,
            self.users,
            self.calls,
            self.online,
            self.payload,
            self.setup_seconds,
            self.calls_ok,
            self.calls_failed,
            self.stored,
            self.wall_seconds,
            self.notifications_per_sec,
            c.p50_ms,
            c.max_ms,
            self.delivered,
            self.expected_deliveries,
            self.lost,
            self.duplicates,
            d.p50_ms,
            d.p99_ms,
            d.max_ms,
            verified,
            self.connect_failures,
            self.errors,
            crate::commits::suffix(self.group_commits.as_ref()),
            CpuPer::suffix(self.cpu_us_per_message.as_ref(), "msg"),
            crate::cpu::suffix(self.cpu.as_ref()),
        )
    }

    /// Whether every call succeeded and every push and row is there once.
    pub fn ok(&self) -> bool {
        self.calls_failed == 0
            && self.lost == 0
            && self.duplicates == 0
            && self.errors == 0
            && self
                .verification
                .as_ref()
                .is_none_or(|v| v.missing == 0 && v.duplicated == 0)
    }
}

/// What the online recipients' readers share.
struct Shared {
    latencies: Latencies,
    errors: Errors,
    delivered: AtomicU64,
}

/// What one online recipient saw.
#[derive(Default)]
struct Seen {
    calls: Bits,
    duplicates: u64,
}

/// The `<call> <ns>` of a pushed notification of this run, from its body.
fn parse_push(body: &[u8], client_prefix: &str) -> Option<(u64, u64)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Pushed {
        client_msg_id: String,
        content: String,
    }
    let pushed: Pushed = serde_json::from_slice(body).ok()?;
    if !pushed.client_msg_id.starts_with(client_prefix) {
        return None;
    }
    let (_, content) = pushed.content.split_once('\n')?;
    parse_content(content)
}

/// Reads one online recipient's session until `stop` fires, counting and timing this run's
/// `notification.new`.
async fn read_notifications(
    mut reader: Reader,
    who: usize,
    client_prefix: Arc<str>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = reader.next() => frame,
        };
        let frame: Frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                shared
                    .errors
                    .add(format!("session {who}: closed by the broker"));
                break;
            }
            Err(error) => {
                shared.errors.add(format!("session {who}: {error:#}"));
                break;
            }
        };
        let now = now_ns();
        match frame.command {
            Command::Message if frame.get("event") == Some("notification.new") => {
                let Some((call, sent_at)) = parse_push(&frame.body, &client_prefix) else {
                    // Another run's notification, or one without our stamp.
                    continue;
                };
                if seen.calls.set(call) {
                    seen.duplicates += 1;
                } else {
                    shared.latencies.record(who, now.saturating_sub(sent_at));
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Command::Message => {}
            _ => {
                shared
                    .errors
                    .add(format!("session {who} got {}", describe(&frame)));
                if frame.command == Command::Error {
                    break;
                }
            }
        }
    }
    seen
}

/// The recipients in the order of the calls' `userIds`, as session numbers: online users
/// (numbers `0..online`) spread evenly, the others (`online..users`) in between.
fn recipient_order(users: usize, online: usize) -> Vec<usize> {
    let mut order = vec![usize::MAX; users];
    for j in 0..online {
        order[j * users / online] = j;
    }
    let mut next = online;
    for slot in &mut order {
        if *slot == usize::MAX {
            *slot = next;
            next += 1;
        }
    }
    order
}

/// The JSON content of call `call`, stamped with `ts` and padded to `payload`.
fn content(call: u64, ts: u64, payload: usize) -> String {
    let mut content = format!("{call} {ts} ");
    if content.len() < payload {
        content.extend(std::iter::repeat_n('x', payload - content.len()));
    }
    content
}

/// Runs the scenario.
///
/// # Errors
///
/// When the options do not fit, tokens cannot be minted or the database check fails.
pub async fn notify(
    target: Arc<Target>,
    options: &RunOptions,
    load: NotifyLoad,
) -> anyhow::Result<NotifyReport> {
    if load.users == 0 || load.online > load.users {
        bail!("--users must be at least 1 and --online at most --users");
    }
    let setup_start = Instant::now();
    let client_prefix: Arc<str> = format!("{}-", run_id()).into();
    let order = recipient_order(load.users, load.online);
    let user_ids: Vec<String> = order
        .iter()
        .map(|&n| user_of(&target, n))
        .collect::<anyhow::Result<_>>()?;
    let token = target.token_as(&load.system_user, "system")?;

    let shared = Arc::new(Shared {
        latencies: Latencies::new(),
        errors: Errors::default(),
        delivered: AtomicU64::new(0),
    });
    let opened = crate::open_many(target.clone(), options, load.online, |mut c, _| async {
        c.subscribe("/user/queue/notifications", "n").await?;
        c.subscribe("/user/queue/errors", "e").await?;
        Ok(c)
    })
    .await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut writers = Vec::new();
    let mut readers = JoinSet::new();
    let mut connect_failures = 0u64;
    for (number, result) in opened.into_iter().enumerate() {
        match result {
            Ok(connection) => {
                writers.push(connection.writer);
                let task = read_notifications(
                    connection.reader,
                    number,
                    client_prefix.clone(),
                    shared.clone(),
                    stop_rx.clone(),
                );
                readers.spawn(task);
            }
            Err(error) => {
                connect_failures += 1;
                shared.errors.add(format!("session {number}: {error:#}"));
            }
        }
    }
    let setup_seconds = setup_start.elapsed().as_secs_f64();

    let commits_start = crate::commits::totals(options.metrics.as_ref()).await;
    let cpu_start = crate::cpu::Sample::take(options.broker_pid);
    let calls = make_calls(&target, &token, &user_ids, &client_prefix, &load, &shared).await;
    let expected = calls.ok.len() as u64 * (load.online as u64 - connect_failures);
    drain(&shared, expected, load.drain).await;
    let cpu = crate::cpu::since(cpu_start, options.broker_pid);
    let commits = crate::commits::between(
        commits_start,
        crate::commits::totals(options.metrics.as_ref()).await,
    );
    let _ = stop_tx.send(true);
    let mut delivered = 0;
    let mut lost = 0;
    let mut duplicates = 0;
    while let Some(joined) = readers.join_next().await {
        if let Ok(seen) = joined {
            let got = calls.ok.iter().filter(|&&c| seen.calls.get(c)).count() as u64;
            delivered += got;
            lost += calls.ok.len() as u64 - got;
            duplicates += seen.duplicates;
        }
    }
    drop(writers);

    let verification = match &load.verify_postgres {
        Some(url) => Some(verify(url, &client_prefix, &user_ids, &calls.ok).await?),
        None => None,
    };
    Ok(NotifyReport {
        scenario: "notify",
        url: String::new(),
        label: String::new(),
        users: load.users,
        calls: load.calls,
        online: load.online,
        payload: load.payload,
        setup_seconds,
        calls_ok: calls.ok.len() as u64,
        calls_failed: (load.calls - calls.ok.len()) as u64,
        stored: calls.stored,
        wall_seconds: calls.wall_seconds,
        notifications_per_sec: calls.stored as f64 / calls.wall_seconds.max(1e-9),
        call_latency: Percentiles::of(&calls.latencies.merged()),
        expected_deliveries: expected,
        delivered,
        lost,
        duplicates,
        delivery_latency: Percentiles::of(&shared.latencies.merged()),
        verification,
        cpu_us_per_message: cpu.as_ref().and_then(|c| c.per(calls.stored)),
        group_commits: commits,
        cpu,
        connect_failures,
        errors: shared.errors.count(),
        error_samples: shared.errors.samples(),
    })
}

/// What the calls did.
struct Calls {
    /// The numbers of the calls answered 201.
    ok: Vec<u64>,
    /// Notifications they returned.
    stored: u64,
    wall_seconds: f64,
    latencies: Latencies,
}

/// Makes the calls one after the other, each with a fresh clientMsgId.
async fn make_calls(
    target: &Target,
    token: &str,
    user_ids: &[String],
    client_prefix: &str,
    load: &NotifyLoad,
    shared: &Shared,
) -> Calls {
    let mut calls = Calls {
        ok: Vec::new(),
        stored: 0,
        wall_seconds: 0.0,
        latencies: Latencies::new(),
    };
    let started = Instant::now();
    for call in 0..load.calls as u64 {
        let ts = now_ns();
        let body = serde_json::json!({
            "userIds": user_ids,
            "title": TITLE,
            "content": content(call, ts, load.payload),
            "clientMsgId": format!("{client_prefix}{call}"),
        });
        let result = http_json(
            target,
            "POST",
            "/api/v1/notifications",
            token,
            &body,
            load.timeout,
        )
        .await;
        calls.latencies.record(0, now_ns().saturating_sub(ts));
        match result {
            Ok((201, value)) => {
                let items = value
                    .get("items")
                    .and_then(serde_json::Value::as_array)
                    .map_or(0, Vec::len);
                if items != user_ids.len() {
                    shared.errors.add(format!(
                        "call {call}: {items} items for {} users",
                        user_ids.len()
                    ));
                }
                calls.stored += items as u64;
                calls.ok.push(call);
            }
            Ok((status, value)) => {
                let mut text = value.to_string();
                text.truncate(300);
                shared
                    .errors
                    .add(format!("call {call}: answered {status}: {text}"));
            }
            Err(error) => shared.errors.add(format!("call {call}: {error:#}")),
        }
    }
    calls.wall_seconds = started.elapsed().as_secs_f64();
    calls
}

/// Waits while pushes keep coming, up to `drain` without progress.
async fn drain(shared: &Shared, expected: u64, drain: Duration) {
    let mut last = shared.delivered.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while last < expected && last_progress.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = shared.delivered.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_progress = Instant::now();
        }
    }
}

/// Counts this run's rows in the users' `system_<user>` conversations: every user should have
/// one per successful call (`missing` otherwise), none twice (`duplicated`); rows of failed
/// calls are `unconfirmed`.
async fn verify(
    url: &str,
    client_prefix: &str,
    user_ids: &[String],
    ok_calls: &[u64],
) -> anyhow::Result<Verification> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL for --verify-postgres")?;
    let driver = tokio::spawn(connection);
    let conversations: Vec<String> = user_ids.iter().map(|u| format!("system_{u}")).collect();
    let pattern = format!("{client_prefix}%");
    let rows = client
        .query(
            "SELECT client_msg_id, count(*) FROM messages \
             WHERE conversation_id = ANY($1) AND client_msg_id LIKE $2 \
             GROUP BY client_msg_id",
            &[&conversations, &pattern],
        )
        .await
        .context("counting stored notifications")?;
    driver.abort();
    let mut stored: HashMap<(u64, String), i64> = HashMap::new();
    let mut verification = Verification::default();
    for row in rows {
        let client_msg_id: String = row.try_get(0)?;
        let copies: i64 = row.try_get(1)?;
        verification.stored += u64::try_from(copies).unwrap_or(0);
        if copies > 1 {
            verification.duplicated += 1;
        }
        let (call, user) = client_msg_id
            .strip_prefix(client_prefix)
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(call, user)| Some((call.parse().ok()?, user.to_owned())))
            .ok_or_else(|| anyhow!("unexpected clientMsgId {client_msg_id}"))?;
        stored.insert((call, user), copies);
    }
    for &call in ok_calls {
        for user in user_ids {
            if stored.remove(&(call, user.clone())).is_none() {
                verification.missing += 1;
            }
        }
    }
    verification.unconfirmed = stored.len() as u64;
    Ok(verification)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_users_are_spread_over_the_list() {
        assert_eq!(recipient_order(6, 2), vec![0, 2, 3, 1, 4, 5]);
        assert_eq!(recipient_order(3, 0), vec![0, 1, 2]);
        assert_eq!(recipient_order(3, 3), vec![0, 1, 2]);
        let mut all = recipient_order(1000, 7);
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn pushes_of_this_run_are_parsed() {
        let body = serde_json::json!({
            "clientMsgId": "r-3:lg-1",
            "content": format!("{TITLE}\n{}", content(3, 99, 40)),
        })
        .to_string();
        assert_eq!(parse_push(body.as_bytes(), "r-"), Some((3, 99)));
        assert_eq!(parse_push(body.as_bytes(), "other-"), None);
    }
}
