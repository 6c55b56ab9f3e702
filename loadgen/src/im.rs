//! The IM scenarios, for our broker only: they go through its IM layer, so every message is
//! stored in the database before it is acknowledged and pushed.
//!
//! - `im`: N user pairs; user `a_i` sends private messages to `b_i` over `/app/private.send`,
//!   each SEND with a `receipt`; both users subscribe to `/user/queue/messages`. Open loop at a
//!   total rate, or closed loop with a window of outstanding receipts per sender.
//! - `group`: one group of M members (created over REST), all online on `/topic/group.<id>`;
//!   the owner sends at a modest rate; every member's copy is timed, and so is each message's
//!   arrival at the last member.
//!
//! A message's content starts with `<n> <send time ns> `: `n` numbers it within its sender,
//! and the time is the shared monotonic clock of [`now_ns`] (in open loop, the time the send
//! was scheduled for, so that a late generator or a backed-up broker shows as latency rather
//! than silently lowering the offered rate). `receipt:<n>` ties each RECEIPT to its SEND, so
//! `lost` counts exactly the RECEIPTed messages a recipient never got.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::BytesMut;
use stomp_codec::{Command, Frame, Version, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{Connection, Reader, Target, Writer, describe};
use crate::stats::{Flow, Latencies, Percentiles, now_ns};
use crate::{Errors, RunOptions, run_id};

/// How senders behave.
#[derive(Clone, Debug)]
pub struct ImLoad {
    /// Messages per second over all senders; 0 sends as fast as `window` allows (closed loop).
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// Characters of content (at least the `<n> <ns> ` prefix).
    pub payload: usize,
    /// Sends per sender whose RECEIPT has not come yet, at most.
    pub window: u64,
    /// After sending, how long to wait without progress for the last receipts and copies.
    pub drain: Duration,
    /// Check the stored messages in this PostgreSQL database afterwards.
    pub verify_postgres: Option<String>,
}

/// What the stored rows say about the RECEIPTed messages.
#[derive(Debug, Default, serde::Serialize)]
pub struct Verification {
    /// Rows of this run in `messages`.
    pub stored: u64,
    /// RECEIPTed messages without a row.
    pub missing: u64,
    /// clientMsgIds stored more than once.
    pub duplicated: u64,
    /// Rows whose RECEIPT never arrived (sent before the end of the drain but not confirmed).
    pub unconfirmed: u64,
}

impl Verification {
    fn ok(&self) -> bool {
        self.missing == 0 && self.duplicated == 0
    }
}

/// What an `im` or `group` run measured.
#[derive(Debug, serde::Serialize)]
pub struct ImReport {
    /// `im` or `group`.
    pub scenario: &'static str,
    /// The broker's URL.
    pub url: String,
    /// Free text naming the broker under test (and its database).
    pub label: String,
    /// Senders.
    pub senders: usize,
    /// Sessions that should receive each message (1 for a pair, the members for a group).
    pub recipients_per_message: usize,
    /// Offered rate over all senders, messages per second; 0 for closed loop.
    pub rate: f64,
    /// Outstanding receipts per sender allowed.
    pub window: u64,
    /// Characters of content.
    pub payload: usize,
    /// Seconds to connect and subscribe everyone (and create the group).
    pub setup_seconds: f64,
    /// Seconds spent sending.
    pub send_seconds: f64,
    /// SENDs written.
    pub sent: u64,
    /// RECEIPTs received: messages the broker confirmed stored.
    pub receipts: u64,
    /// Sends refused with an error on `/user/queue/errors` or an ERROR frame.
    pub refused: u64,
    /// Copies that reached their recipients (first copy of each message per recipient).
    pub delivered: u64,
    /// Copies of RECEIPTed messages that never reached a recipient.
    pub lost: u64,
    /// Copies received more than once.
    pub duplicates: u64,
    /// RECEIPTs per second over the send period.
    pub receipts_per_sec: f64,
    /// Copies delivered per second, from the first send to the last copy.
    pub deliveries_per_sec: f64,
    /// Send to arrival at a recipient, every copy.
    pub latency: Percentiles,
    /// Group: send to arrival at the last of the members, per message that reached all.
    pub all_members_latency: Option<Percentiles>,
    /// The database check, when asked for.
    pub verification: Option<Verification>,
    /// Cores busy from the first send to the end of the drain.
    pub cpu: Option<crate::cpu::Usage>,
    /// Connections that failed to open or subscribe.
    pub connect_failures: u64,
    /// ERROR frames, refusals and socket failures during the run.
    pub errors: u64,
    /// The first few of them.
    pub error_samples: Vec<String>,
}

impl ImReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let rate = if self.rate > 0.0 {
            format!("{}/s", self.rate)
        } else {
            format!("max(window={})", self.window)
        };
        let all = self.all_members_latency.map_or_else(String::new, |p| {
            format!(" all-members p50={:.3}ms p99={:.3}ms", p.p50_ms, p.p99_ms)
        });
        let verified = self.verification.as_ref().map_or_else(String::new, |v| {
            format!(
                " db(stored={} missing={} duplicated={} unconfirmed={})",
                v.stored, v.missing, v.duplicated, v.unconfirmed
            )
        });
        format!(
            "{} [{}] senders={} recipients/msg={} rate={} payload={}B setup={:.1}s sent={} \
             receipts={} refused={} delivered={} lost={} dup={} receipts/s={:.0} \
             deliveries/s={:.0} p50={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms{}{} \
             connect_failures={} errors={}{}",
            self.scenario,
            self.label,
            self.senders,
            self.recipients_per_message,
            rate,
            self.payload,
            self.setup_seconds,
            self.sent,
            self.receipts,
            self.refused,
            self.delivered,
            self.lost,
            self.duplicates,
            self.receipts_per_sec,
            self.deliveries_per_sec,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms,
            all,
            verified,
            self.connect_failures,
            self.errors,
            crate::cpu::suffix(self.cpu.as_ref()),
        )
    }

    /// Whether nothing was lost, refused or failed.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.errors == 0
            && self.refused == 0
            && self.verification.as_ref().is_none_or(Verification::ok)
    }
}

/// A growable bit set of message numbers.
#[derive(Default)]
struct Bits(Vec<u64>);

impl Bits {
    /// Sets `n`; returns whether it was set before.
    fn set(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let before = self.0[word] & (1 << bit) != 0;
        self.0[word] |= 1 << bit;
        before
    }

    fn get(&self, n: u64) -> bool {
        self.0
            .get((n / 64) as usize)
            .is_some_and(|w| w & (1 << (n % 64)) != 0)
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i as u64 * 64 + b)
        })
    }
}

/// What one session saw.
#[derive(Default)]
struct Seen {
    /// Message numbers whose RECEIPT came (senders).
    receipted: Bits,
    /// Message numbers delivered from the watched sender.
    delivered: Bits,
    delivered_count: u64,
    duplicates: u64,
    refused: u64,
}

/// Per-message arrival at the group's members: copies so far and the latest arrival.
type Arrivals = Mutex<HashMap<u64, (u32, u64)>>;

/// Timing and counters shared by all tasks of a run.
struct Shared {
    latencies: Latencies,
    errors: Errors,
    first_send: AtomicU64,
    last_delivery: AtomicU64,
    /// Copies delivered so far, over all sessions (for the drain).
    delivered: AtomicU64,
    /// Group only.
    arrivals: Option<Arrivals>,
}

/// The `<n> <ns> ` prefix of a content.
fn parse_content(content: &str) -> Option<(u64, u64)> {
    let mut fields = content.split(' ');
    let n = fields.next()?.parse().ok()?;
    let ts = fields.next()?.parse().ok()?;
    Some((n, ts))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pushed<'a> {
    #[serde(borrow)]
    sender_id: Cow<'a, str>,
    #[serde(borrow)]
    content: Cow<'a, str>,
}

/// How a session's reader treats what arrives.
#[derive(Clone)]
struct Watch {
    /// Count and time `message.new` from this sender (the peer, or the group's owner).
    from: String,
    /// This session's sender flow, for RECEIPTs (senders only).
    flow: Option<Arc<Flow>>,
}

/// Reads one session until `stop` fires or it ends: RECEIPTs, pushed messages, refusals.
async fn read_session(
    mut reader: Reader,
    who: usize,
    watch: Watch,
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
        let frame = match frame {
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
        match frame.command {
            Command::Receipt => {
                let n = frame
                    .get("receipt-id")
                    .and_then(|id| id.parse::<u64>().ok());
                match (n, &watch.flow) {
                    (Some(n), Some(flow)) => {
                        if !seen.receipted.set(n) {
                            flow.on_receipt();
                        }
                    }
                    _ => shared
                        .errors
                        .add(format!("session {who}: unexpected {}", describe(&frame))),
                }
            }
            Command::Message if frame.get("subscription") == Some("e") => {
                seen.refused += 1;
                shared
                    .errors
                    .add(format!("session {who} refused: {}", describe(&frame)));
                if let Some(flow) = &watch.flow {
                    flow.kick();
                }
            }
            Command::Message if frame.get("event") == Some("message.new") => {
                let now = now_ns();
                let Ok(pushed) = serde_json::from_slice::<Pushed<'_>>(&frame.body) else {
                    shared
                        .errors
                        .add(format!("session {who}: unparsable message.new"));
                    continue;
                };
                if pushed.sender_id != watch.from {
                    // A sender's own copy on its other subscription: not a delivery.
                    continue;
                }
                let Some((n, sent_at)) = parse_content(&pushed.content) else {
                    shared
                        .errors
                        .add(format!("session {who}: content without a timestamp"));
                    continue;
                };
                if seen.delivered.set(n) {
                    seen.duplicates += 1;
                    continue;
                }
                let latency = now.saturating_sub(sent_at);
                shared.latencies.record(who, latency);
                if let Some(arrivals) = &shared.arrivals {
                    let mut arrivals = arrivals
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let entry = arrivals.entry(n).or_insert((0, 0));
                    entry.0 += 1;
                    entry.1 = entry.1.max(latency);
                }
                seen.delivered_count += 1;
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                shared.last_delivery.fetch_max(now, Ordering::Relaxed);
            }
            // Other events (group changes, conversation updates) are not part of the measure.
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

/// What a sender sends: the destination and the JSON body around the content.
struct SendSpec {
    /// The sender's user id.
    user: String,
    destination: String,
    /// The body up to the content's opening quote.
    head: String,
    /// clientMsgIds are `<prefix><n>`.
    client_prefix: String,
}

impl SendSpec {
    fn body(&self, n: u64, ts: u64, payload: usize) -> String {
        let mut content = format!("{n} {ts} ");
        if content.len() < payload {
            content.extend(std::iter::repeat_n('x', payload - content.len()));
        }
        format!(
            "{}\"clientMsgId\":\"{}{n}\",\"format\":\"text\",\"content\":\"{content}\"}}",
            self.head, self.client_prefix
        )
    }
}

/// Sends per `load` until the duration is over; `rate` is this sender's share, `phase` when
/// its first send is due (spreading senders over the first interval).
async fn send_loop(
    writer: &mut Writer,
    spec: &SendSpec,
    flow: &Flow,
    load: &ImLoad,
    rate: f64,
    phase: Duration,
    shared: &Shared,
) -> anyhow::Result<()> {
    let mut wire = BytesMut::new();
    let window = load.window.max(1);
    let start = Instant::now() + phase;
    tokio::time::sleep_until(start.into()).await;
    let _ = shared
        .first_send
        .compare_exchange(0, now_ns(), Ordering::Relaxed, Ordering::Relaxed);
    let start_ns = now_ns();
    let mut n = 0u64;
    // A sender writes at most this many SENDs per flush, so timestamps stay close to the write.
    const BATCH: u64 = 32;
    let outstanding = |f: &Flow| {
        f.sent
            .load(Ordering::Relaxed)
            .saturating_sub(f.receipts.load(Ordering::Relaxed))
    };
    loop {
        let elapsed = start.elapsed();
        if elapsed >= load.duration {
            return Ok(());
        }
        let remaining = load.duration - elapsed;
        if tokio::time::timeout(remaining, flow.wait_until(|f| outstanding(f) < window))
            .await
            .is_err()
        {
            return Ok(());
        }
        let room = window - outstanding(flow).min(window);
        let budget = if rate > 0.0 {
            let due = (elapsed.as_secs_f64() * rate) as u64 + 1;
            due.saturating_sub(n).min(room).min(BATCH)
        } else {
            room.clamp(1, BATCH)
        };
        for _ in 0..budget {
            let ts = if rate > 0.0 {
                start_ns + (n as f64 / rate * 1e9) as u64
            } else {
                now_ns()
            };
            let mut frame = Frame::new(Command::Send)
                .header("destination", spec.destination.as_str())
                .header("content-type", "application/json")
                .header("receipt", n.to_string());
            frame.body = spec.body(n, ts, load.payload).into();
            encode(&frame, Version::V1_2, &mut wire);
            writer.feed_bytes(wire.split().freeze()).await?;
            n += 1;
            flow.sent.store(n, Ordering::Relaxed);
        }
        writer.flush().await?;
        if rate > 0.0 {
            let next = start + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

/// One sender's run: sends, then waits for the outstanding RECEIPTs. Returns the seconds spent
/// sending.
async fn sender(
    mut writer: Writer,
    spec: SendSpec,
    flow: Arc<Flow>,
    load: ImLoad,
    rate: f64,
    phase: Duration,
    shared: Arc<Shared>,
) -> (Writer, f64) {
    let started = Instant::now();
    let result = send_loop(&mut writer, &spec, &flow, &load, rate, phase, &shared).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Err(error) = &result {
        shared.errors.add(format!("sender: {error:#}"));
    }
    (writer, seconds)
}

/// Sessions of a run and what they are for.
struct Plan {
    /// Session numbers of the senders, with their spec.
    senders: Vec<(usize, SendSpec)>,
    /// For every session: whose messages it watches.
    watches: Vec<Watch>,
    /// For every session: the SUBSCRIBE destinations, with their subscription ids.
    subscriptions: Vec<Vec<(String, &'static str)>>,
    /// For every session that watches a sender: that sender's session number.
    watched_sender: Vec<Option<usize>>,
    /// For every session: a SEND body it sends once during setup, with a RECEIPT awaited.
    greetings: Vec<Option<String>>,
    /// The clientMsgId prefix of this run's messages.
    client_prefix: String,
    scenario: &'static str,
    recipients_per_message: usize,
    /// Which sessions send (they connect to --publish-url when it is given).
    is_sender: fn(usize) -> bool,
}

/// Sends one private message and waits for its RECEIPT. A recipient who has replied is no
/// longer a stranger to the sender, as in a real conversation; without it every send would
/// also go through the stranger checks, which a conversation passes once.
async fn greet(connection: &mut Connection, body: &str) -> anyhow::Result<()> {
    let mut frame = Frame::new(Command::Send)
        .header("destination", "/app/private.send")
        .header("content-type", "application/json")
        .header("receipt", "greeting");
    frame.body = body.to_owned().into();
    connection.writer.send(&frame).await?;
    loop {
        match connection.reader.next().await? {
            Some(frame) if frame.command == Command::Receipt => return Ok(()),
            Some(frame)
                if frame.command == Command::Message && frame.get("subscription") != Some("e") => {}
            Some(frame) => bail!("greeting refused: {}", describe(&frame)),
            None => bail!("connection closed before the greeting's RECEIPT"),
        }
    }
}

/// Opens every session of `plan`, runs the senders, drains, and gathers the report.
async fn run_plan(
    target: Arc<Target>,
    options: &RunOptions,
    plan: Plan,
    load: ImLoad,
    shared: Arc<Shared>,
    setup_start: Instant,
) -> anyhow::Result<ImReport> {
    let count = plan.watches.len();
    let subscriptions = Arc::new(plan.subscriptions);
    let greetings = Arc::new(plan.greetings);
    // With --publish-url, the senders (even sessions of the `im` scenario, the owner of a
    // group) connect there and everyone else to --url, so that every message crosses nodes.
    let other = options
        .publish_target
        .clone()
        .map(|publish| (publish, plan.is_sender));
    let opened = crate::open_many_split(target.clone(), other, options, count, {
        let subscriptions = subscriptions.clone();
        let greetings = greetings.clone();
        move |mut connection: Connection, number| {
            let subscriptions = subscriptions.clone();
            let greetings = greetings.clone();
            async move {
                for (destination, id) in &subscriptions[number] {
                    connection.subscribe(destination, id).await?;
                }
                if let Some(body) = &greetings[number] {
                    greet(&mut connection, body).await?;
                }
                Ok(connection)
            }
        }
    })
    .await;
    let setup_seconds = setup_start.elapsed().as_secs_f64();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut flows: HashMap<usize, Arc<Flow>> = HashMap::new();
    let mut writers: HashMap<usize, Writer> = HashMap::new();
    let mut readers = JoinSet::new();
    let mut connect_failures = 0u64;
    let sender_numbers: Vec<usize> = plan.senders.iter().map(|(n, _)| *n).collect();
    let sender_users: Vec<(usize, String)> = plan
        .senders
        .iter()
        .map(|(n, spec)| (*n, spec.user.clone()))
        .collect();
    for (number, result) in opened.into_iter().enumerate() {
        match result {
            Ok(Connection { writer, reader }) => {
                let mut watch = plan.watches[number].clone();
                if sender_numbers.contains(&number) {
                    let flow = Arc::new(Flow::new(1));
                    watch.flow = Some(flow.clone());
                    flows.insert(number, flow);
                }
                // Keeps every socket fully open while its reader runs.
                writers.insert(number, writer);
                let task = read_session(reader, number, watch, shared.clone(), stop_rx.clone());
                readers.spawn(async move { (number, task.await) });
            }
            Err(error) => {
                connect_failures += 1;
                shared.errors.add(format!("session {number}: {error:#}"));
            }
        }
    }
    if connect_failures > 0 {
        shared
            .errors
            .add(format!("{connect_failures} sessions failed to connect"));
    }

    let cpu_start = crate::cpu::Sample::take(options.broker_pid);
    let per_sender_rate = load.rate / plan.senders.len().max(1) as f64;
    let mut sending = JoinSet::new();
    let senders_total = plan.senders.len();
    for (index, (number, spec)) in plan.senders.into_iter().enumerate() {
        let (Some(writer), Some(flow)) = (writers.remove(&number), flows.get(&number).cloned())
        else {
            continue;
        };
        let phase = if per_sender_rate > 0.0 {
            Duration::from_secs_f64(index as f64 / senders_total as f64 / per_sender_rate)
        } else {
            Duration::ZERO
        };
        sending.spawn(sender(
            writer,
            spec,
            flow,
            load.clone(),
            per_sender_rate,
            phase,
            shared.clone(),
        ));
    }
    if sending.is_empty() {
        bail!(
            "no sender could connect: {}",
            shared.errors.samples().join("; ")
        );
    }
    let mut send_seconds = 0f64;
    let mut kept = Vec::new();
    while let Some(result) = sending.join_next().await {
        if let Ok((writer, seconds)) = result {
            kept.push(writer);
            send_seconds = send_seconds.max(seconds);
        }
    }
    let sent: u64 = flows.values().map(|f| f.sent.load(Ordering::Relaxed)).sum();
    let receipts = || -> u64 {
        flows
            .values()
            .map(|f| f.receipts.load(Ordering::Relaxed))
            .sum()
    };
    let receipts_at_end = receipts();
    // Drain: wait while receipts or copies keep coming, up to `drain` without progress.
    let expected = sent * plan.recipients_per_message as u64;
    let progress = || receipts() + shared.delivered.load(Ordering::Relaxed);
    let mut last = progress();
    let mut last_progress = Instant::now();
    while (receipts() < sent || shared.delivered.load(Ordering::Relaxed) < expected)
        && last_progress.elapsed() < load.drain
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = progress();
        if now != last {
            last = now;
            last_progress = Instant::now();
        }
    }
    let cpu = crate::cpu::since(cpu_start, options.broker_pid);
    let _ = stop_tx.send(true);
    let mut seen: HashMap<usize, Seen> = HashMap::new();
    while let Some(result) = readers.join_next().await {
        if let Ok((number, s)) = result {
            seen.insert(number, s);
        }
    }
    drop(kept);
    drop(writers);

    // Lost: a RECEIPTed message that a watching session never got.
    let mut lost = 0u64;
    let mut delivered = 0u64;
    let mut duplicates = 0u64;
    let mut refused = 0u64;
    for (number, s) in &seen {
        delivered += s.delivered_count;
        duplicates += s.duplicates;
        refused += s.refused;
        let Some(sender) = plan.watched_sender[*number] else {
            continue;
        };
        if let Some(sender_seen) = seen.get(&sender) {
            lost += sender_seen
                .receipted
                .iter()
                .filter(|n| !s.delivered.get(*n))
                .count() as u64;
        }
    }
    let receipts_total = receipts();
    let first = shared.first_send.load(Ordering::Relaxed);
    let last_rx = shared.last_delivery.load(Ordering::Relaxed);
    let span = last_rx.saturating_sub(first) as f64 / 1e9;
    let all_members_latency = shared.arrivals.as_ref().map(|arrivals| {
        let arrivals = arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let all = Latencies::new();
        for (count, latest) in arrivals.values() {
            if *count as usize >= plan.recipients_per_message {
                all.record(0, *latest);
            }
        }
        Percentiles::of(&all.merged())
    });

    let verification = match &load.verify_postgres {
        Some(url) => {
            let confirmed: Vec<(String, Vec<u64>)> = sender_users
                .iter()
                .filter_map(|(number, user)| {
                    let s = seen.get(number)?;
                    Some((user.clone(), s.receipted.iter().collect()))
                })
                .collect();
            Some(verify_postgres(url, &plan.client_prefix, &confirmed).await?)
        }
        None => None,
    };

    Ok(ImReport {
        scenario: plan.scenario,
        url: String::new(),
        label: String::new(),
        senders: senders_total,
        recipients_per_message: plan.recipients_per_message,
        rate: load.rate,
        window: load.window,
        payload: load.payload,
        setup_seconds,
        send_seconds,
        sent,
        receipts: receipts_total,
        refused,
        delivered,
        lost,
        duplicates,
        receipts_per_sec: receipts_at_end as f64 / send_seconds.max(1e-9),
        deliveries_per_sec: if span > 0.0 {
            delivered as f64 / span
        } else {
            0.0
        },
        latency: Percentiles::of(&shared.latencies.merged()),
        all_members_latency,
        verification,
        cpu,
        connect_failures,
        errors: shared.errors.count(),
        error_samples: shared.errors.samples(),
    })
}

/// Counts this run's rows in `messages` and checks that every RECEIPTed message is there once.
async fn verify_postgres(
    url: &str,
    client_prefix: &str,
    confirmed: &[(String, Vec<u64>)],
) -> anyhow::Result<Verification> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL for --verify-postgres")?;
    let driver = tokio::spawn(connection);
    let users: Vec<&str> = confirmed.iter().map(|(user, _)| user.as_str()).collect();
    let pattern = format!("{client_prefix}%");
    let rows = client
        .query(
            "SELECT sender_id, client_msg_id, count(*) FROM messages \
             WHERE sender_id = ANY($1) AND client_msg_id LIKE $2 \
             GROUP BY sender_id, client_msg_id",
            &[&users, &pattern],
        )
        .await
        .context("counting stored messages")?;
    driver.abort();
    let mut stored: HashMap<(String, u64), i64> = HashMap::new();
    let mut verification = Verification::default();
    for row in rows {
        let sender: String = row.try_get(0)?;
        let client_msg_id: String = row.try_get(1)?;
        let copies: i64 = row.try_get(2)?;
        verification.stored += u64::try_from(copies).unwrap_or(0);
        if copies > 1 {
            verification.duplicated += 1;
        }
        let n = client_msg_id
            .strip_prefix(client_prefix)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("unexpected clientMsgId {client_msg_id}"))?;
        stored.insert((sender, n), copies);
    }
    for (user, receipted) in confirmed {
        for &n in receipted {
            if stored.remove(&(user.clone(), n)).is_none() {
                verification.missing += 1;
            }
        }
    }
    verification.unconfirmed = stored.len() as u64;
    Ok(verification)
}

/// A JSON request to the broker's REST API with `token`; returns the status and the body.
async fn http_json(
    target: &Target,
    method: &str,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let addr = target.addr();
    let body = body.to_string();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .map_err(|_| anyhow!("{method} {path} timed out"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path}: malformed response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: no status"))?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let json = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    let value = serde_json::from_str(&json).unwrap_or(serde_json::Value::Null);
    Ok((status, value))
}

/// The payload of a chunked HTTP body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

fn new_shared(group: bool) -> Arc<Shared> {
    Arc::new(Shared {
        latencies: Latencies::new(),
        errors: Errors::default(),
        first_send: AtomicU64::new(0),
        last_delivery: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        arrivals: group.then(|| Mutex::new(HashMap::new())),
    })
}

/// The user id of session `number` (tokens minted per session).
fn user_of(target: &Target, number: usize) -> anyhow::Result<String> {
    Ok(target.credentials(number)?.0)
}

/// `pairs` user pairs: session `2i` sends private messages to session `2i + 1`.
///
/// # Errors
///
/// When tokens cannot be minted or no sender can connect.
pub async fn pairs(
    target: Arc<Target>,
    options: &RunOptions,
    pairs: usize,
    load: ImLoad,
) -> anyhow::Result<ImReport> {
    let setup_start = Instant::now();
    let client_prefix = format!("{}-", run_id());
    let mut senders = Vec::with_capacity(pairs);
    let mut watches = Vec::with_capacity(2 * pairs);
    let mut subscriptions = Vec::with_capacity(2 * pairs);
    let mut watched_sender = Vec::with_capacity(2 * pairs);
    let mut greetings = Vec::with_capacity(2 * pairs);
    for i in 0..pairs {
        let a = user_of(&target, 2 * i)?;
        let b = user_of(&target, 2 * i + 1)?;
        senders.push((
            2 * i,
            SendSpec {
                user: a.clone(),
                destination: "/app/private.send".to_owned(),
                head: format!("{{\"to\":\"{b}\","),
                client_prefix: client_prefix.clone(),
            },
        ));
        // The sender's own copies and the greeting are not deliveries.
        watches.push(Watch {
            from: String::new(),
            flow: None,
        });
        watches.push(Watch {
            from: a.clone(),
            flow: None,
        });
        subscriptions.push(vec![
            ("/user/queue/messages".to_owned(), "m"),
            ("/user/queue/errors".to_owned(), "e"),
        ]);
        subscriptions.push(vec![
            ("/user/queue/messages".to_owned(), "m"),
            ("/user/queue/errors".to_owned(), "e"),
        ]);
        greetings.push(None);
        greetings.push(Some(format!(
            "{{\"to\":\"{a}\",\"clientMsgId\":\"{client_prefix}greeting\",\"content\":\"hi\"}}"
        )));
        watched_sender.push(None);
        watched_sender.push(Some(2 * i));
    }
    let plan = Plan {
        senders,
        watches,
        subscriptions,
        watched_sender,
        greetings,
        client_prefix,
        scenario: "im",
        recipients_per_message: 1,
        is_sender: |number| number % 2 == 0,
    };
    run_plan(target, options, plan, load, new_shared(false), setup_start).await
}

/// A group of `members` sessions (session 0 its owner) created over REST; the owner sends to
/// it and every member, the owner included, should get every message.
///
/// # Errors
///
/// When the group cannot be created or the owner cannot connect.
pub async fn group(
    target: Arc<Target>,
    options: &RunOptions,
    members: usize,
    load: ImLoad,
) -> anyhow::Result<ImReport> {
    if members == 0 {
        bail!("--members must be at least 1");
    }
    let setup_start = Instant::now();
    let (owner, token) = target.credentials(0)?;
    let member_ids: Vec<String> = (1..members)
        .map(|n| user_of(&target, n))
        .collect::<anyhow::Result<_>>()?;
    let (status, created) = http_json(
        &target,
        "POST",
        "/api/v1/groups",
        &token,
        &serde_json::json!({"name": format!("loadgen {}", run_id()), "memberIds": member_ids}),
    )
    .await?;
    let id = created
        .get("id")
        .and_then(serde_json::Value::as_str)
        .filter(|_| status == 201)
        .ok_or_else(|| anyhow!("POST /api/v1/groups answered {status}: {created}"))?
        .to_owned();
    let client_prefix = format!("{}-", run_id());
    let topic = format!("/topic/group.{id}");
    let senders = vec![(
        0,
        SendSpec {
            user: owner.clone(),
            destination: "/app/group.send".to_owned(),
            head: format!("{{\"conversationId\":\"{id}\","),
            client_prefix: client_prefix.clone(),
        },
    )];
    let mut subscriptions = vec![vec![
        (topic.clone(), "g"),
        ("/user/queue/errors".to_owned(), "e"),
    ]];
    subscriptions.extend((1..members).map(|_| vec![(topic.clone(), "g")]));
    let plan = Plan {
        senders,
        watches: (0..members)
            .map(|_| Watch {
                from: owner.clone(),
                flow: None,
            })
            .collect(),
        subscriptions,
        watched_sender: (0..members).map(|_| Some(0)).collect(),
        greetings: vec![None; members],
        client_prefix,
        scenario: "group",
        recipients_per_message: members,
        is_sender: |number| number == 0,
    };
    run_plan(target, options, plan, load, new_shared(true), setup_start).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_and_pads() {
        let spec = SendSpec {
            user: "a".into(),
            destination: "/app/private.send".into(),
            head: "{\"to\":\"b\",".into(),
            client_prefix: "r-".into(),
        };
        let body = spec.body(42, 123_456, 40);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["to"], "b");
        assert_eq!(value["clientMsgId"], "r-42");
        let content = value["content"].as_str().unwrap();
        assert_eq!(content.len(), 40);
        assert_eq!(parse_content(content), Some((42, 123_456)));
    }

    #[test]
    fn bad_content_is_refused() {
        assert_eq!(parse_content("hello world"), None);
        assert_eq!(parse_content(""), None);
        assert_eq!(parse_content("12"), None);
    }

    #[test]
    fn bits_remember_what_was_set() {
        let mut bits = Bits::default();
        assert!(!bits.set(3));
        assert!(bits.set(3));
        assert!(!bits.set(200));
        assert!(bits.get(200) && !bits.get(199));
        assert_eq!(bits.iter().collect::<Vec<_>>(), vec![3, 200]);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"), "{\"a\":1}");
    }
}
