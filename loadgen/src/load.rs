//! The message-flow scenarios: fan-out (one publisher, N subscribers on one topic) and pairs
//! (N publishers, each to its own destination with its own subscriber). Both are built from the
//! same two tasks, [`publish`] and [`consume`], tied together by a [`Flow`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::{BufMut, Bytes, BytesMut};
use stomp_codec::{Command, Frame, Version, encode};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{Connection, Reader, Target, Writer, describe};
use crate::stats::{Flow, Latencies, Percentiles, now_ns};
use crate::{Errors, RunOptions, run_id};

/// How publishers behave.
#[derive(Clone, Debug)]
pub struct Load {
    /// Messages per second per publisher; 0 publishes as fast as the window allows.
    pub rate: f64,
    /// How long to publish.
    pub duration: Duration,
    /// Body size in bytes (at least the timestamp header the body starts with).
    pub payload: usize,
    /// At rate 0: messages a publisher may have in flight (sent, not yet received by every
    /// subscriber).
    pub window: u64,
    /// Ask for a RECEIPT every this many messages.
    pub receipt_every: u64,
    /// After publishing, how long to wait without progress for the last messages.
    pub drain: Duration,
}

/// What a fan-out or pairs run measured.
#[derive(Debug, serde::Serialize)]
pub struct FlowReport {
    /// `fanout` or `pairs`.
    pub scenario: &'static str,
    /// The broker's URL.
    pub url: String,
    /// Free text naming the broker under test.
    pub label: String,
    /// Publishers.
    pub publishers: usize,
    /// Subscribers, over all publishers.
    pub subscribers: usize,
    /// Destination kind.
    pub destination: String,
    /// Target rate per publisher, messages per second; 0 for "as fast as possible".
    pub rate: f64,
    /// Body size.
    pub payload: usize,
    /// Seconds of publishing asked for (`--duration`).
    pub duration_seconds: f64,
    /// At rate 0, messages a publisher may have in flight.
    pub window: u64,
    /// A RECEIPT is asked for every this many messages.
    pub receipt_every: u64,
    /// Seconds taken to connect and subscribe every subscriber.
    pub setup_seconds: f64,
    /// Seconds spent publishing.
    pub publish_seconds: f64,
    /// Messages published, over all publishers.
    pub sent: u64,
    /// Copies that should have arrived.
    pub expected: u64,
    /// Copies that arrived.
    pub received: u64,
    /// `expected - received`, never negative.
    pub lost: u64,
    /// Copies that arrived with a sequence number lower than one seen before.
    pub out_of_order: u64,
    /// Published messages per second.
    pub publish_rate: f64,
    /// Copies received per second, from the first send to the last receipt of a copy.
    pub deliveries_per_sec: f64,
    /// End-to-end latency.
    pub latency: Percentiles,
    /// The broker's CPU time per copy received, in microseconds (with `--broker-pid`).
    pub broker_cpu_us_per_delivery: Option<f64>,
    /// Cores busy from the first publish to the end of the drain.
    pub cpu: Option<crate::cpu::Usage>,
    /// Connections that failed to open or subscribe.
    pub connect_failures: u64,
    /// ERROR frames and socket failures during the run.
    pub errors: u64,
    /// The first few of them.
    pub error_samples: Vec<String>,
}

impl FlowReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let rate = if self.rate > 0.0 {
            format!("{}/s", self.rate)
        } else {
            "max".to_owned()
        };
        format!(
            "{} [{}] publishers={} subscribers={} dest={} rate={} payload={}B setup={:.1}s sent={} \
             received={}/{} lost={} ooo={} publish/s={:.0} deliveries/s={:.0} \
             p50={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms connect_failures={} errors={}{}",
            self.scenario,
            self.label,
            self.publishers,
            self.subscribers,
            self.destination,
            rate,
            self.payload,
            self.setup_seconds,
            self.sent,
            self.received,
            self.expected,
            self.lost,
            self.out_of_order,
            self.publish_rate,
            self.deliveries_per_sec,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms,
            self.connect_failures,
            self.errors,
            crate::cpu::suffix(self.cpu.as_ref()),
        )
    }
}

/// Timing shared by all tasks of a run.
struct Clock {
    first_send: AtomicU64,
}

/// The body: `<seq> <send time ns> ` padded with `x` to the payload size. Text, so that both
/// brokers relay it in WebSocket text messages as they would chat messages.
fn body(seq: u64, payload: usize, scratch: &mut BytesMut) -> Bytes {
    let mut seq_text = itoa_buf();
    let mut ts_text = itoa_buf();
    scratch.put_slice(fmt_u64(&mut seq_text, seq));
    scratch.put_u8(b' ');
    scratch.put_slice(fmt_u64(&mut ts_text, now_ns()));
    scratch.put_u8(b' ');
    if scratch.len() < payload {
        scratch.put_bytes(b'x', payload - scratch.len());
    }
    scratch.split().freeze()
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Reads `<seq> <ns> ` back from a body.
fn parse_body(body: &[u8]) -> Option<(u64, u64)> {
    let mut fields = body.split(|b| *b == b' ');
    let number = |field: &[u8]| -> Option<u64> {
        if field.is_empty() || field.len() > 20 {
            return None;
        }
        field.iter().try_fold(0u64, |acc, digit| {
            digit
                .is_ascii_digit()
                .then(|| acc.wrapping_mul(10).wrapping_add(u64::from(digit - b'0')))
        })
    };
    let seq = number(fields.next()?)?;
    let ts = number(fields.next()?)?;
    Some((seq, ts))
}

/// Publishes to `destination` per `load` until the duration is over; returns the number of
/// messages sent and the seconds spent publishing. The RECEIPTs are read by a task of their own.
async fn publish(
    connection: Connection,
    destination: String,
    flow: Arc<Flow>,
    load: Load,
    clock: Arc<Clock>,
    errors: Arc<Errors>,
) -> (u64, f64) {
    let Connection { mut writer, reader } = connection;
    let receipts = tokio::spawn(read_receipts(reader, flow.clone(), errors.clone()));
    let started = Instant::now();
    let result = publish_loop(&mut writer, &destination, &flow, &load, &clock).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Err(error) = &result {
        errors.add(format!("publisher: {error:#}"));
    }
    let sent = flow.sent.load(Ordering::Relaxed);
    // Every SEND that asked for a receipt has been processed once its RECEIPT is back; after
    // that, whatever is missing at the subscribers is in the broker's outbound queues or lost.
    let requested = sent / load.receipt_every.max(1);
    let deadline = tokio::time::sleep(load.drain.max(Duration::from_secs(1)));
    tokio::select! {
        () = flow.wait_until(|f| f.receipts.load(Ordering::Relaxed) >= requested) => {}
        () = deadline => errors.add(format!(
            "publisher: {} of {requested} receipts missing",
            requested.saturating_sub(flow.receipts.load(Ordering::Relaxed))
        )),
    }
    receipts.abort();
    drop(writer);
    (sent, seconds)
}

async fn publish_loop(
    writer: &mut Writer,
    destination: &str,
    flow: &Flow,
    load: &Load,
    clock: &Clock,
) -> anyhow::Result<()> {
    let mut scratch = BytesMut::with_capacity(load.payload + 64);
    let mut wire = BytesMut::new();
    let every = load.receipt_every.max(1);
    let start = Instant::now();
    let _ = clock
        .first_send
        .compare_exchange(0, now_ns(), Ordering::Relaxed, Ordering::Relaxed);
    let mut seq = 0u64;
    // Bounded batches keep timestamps honest: a message is stamped right before it is written.
    const BATCH: u64 = 32;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= load.duration {
            return Ok(());
        }
        let budget = if load.rate > 0.0 {
            let due = (elapsed.as_secs_f64() * load.rate) as u64 + 1;
            due.saturating_sub(seq).min(BATCH)
        } else {
            let window = load.window.max(1);
            let receipt_window = (window / every).max(2);
            let ready = |f: &Flow| {
                let sent = f.sent.load(Ordering::Relaxed);
                f.in_flight() < window
                    && (sent / every).saturating_sub(f.receipts.load(Ordering::Relaxed))
                        < receipt_window
            };
            let remaining = load.duration - elapsed;
            if tokio::time::timeout(remaining, flow.wait_until(ready))
                .await
                .is_err()
            {
                return Ok(());
            }
            (window - flow.in_flight().min(window)).clamp(1, BATCH)
        };
        for _ in 0..budget {
            let mut frame = Frame::new(Command::Send)
                .header("destination", destination)
                .header("content-type", "text/plain");
            if (seq + 1).is_multiple_of(every) {
                frame = frame.header("receipt", "r");
            }
            frame.body = body(seq, load.payload, &mut scratch);
            encode(&frame, Version::V1_2, &mut wire);
            writer.feed_bytes(wire.split().freeze()).await?;
            seq += 1;
            flow.sent.store(seq, Ordering::Relaxed);
        }
        writer.flush().await?;
        if load.rate > 0.0 {
            let next = start + Duration::from_secs_f64(seq as f64 / load.rate);
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

async fn read_receipts(mut reader: Reader, flow: Arc<Flow>, errors: Arc<Errors>) {
    loop {
        match reader.next().await {
            Ok(Some(frame)) if frame.command == Command::Receipt => flow.on_receipt(),
            Ok(Some(frame)) => {
                errors.add(format!("publisher got {}", describe(&frame)));
                if frame.command == Command::Error {
                    flow.kick();
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                errors.add(format!("publisher read: {error:#}"));
                return;
            }
        }
    }
}

/// What one subscriber received.
#[derive(Default)]
struct Tally {
    received: u64,
    out_of_order: u64,
    /// When the last copy arrived ([`now_ns`]); 0 when none did.
    last_receive: u64,
}

/// Frames a subscriber may count before it tells the flow, even while more keep arriving.
const REPORT_EVERY: u64 = 32;

/// Counts and times what one subscriber receives until `stop` fires or the connection ends.
///
/// A thousand subscribers on a couple of threads share the flow's counter, the latency
/// histograms and the stop signal, so per frame this task only updates its own state: it tells
/// the flow what arrived when it has nothing left to read (or every [`REPORT_EVERY`] frames),
/// records latencies in batches, and looks at the stop signal only when it would wait.
async fn consume(
    connection: Connection,
    who: usize,
    flow: Arc<Flow>,
    latencies: Arc<Latencies>,
    errors: Arc<Errors>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    // The writer is kept so the socket stays fully open while we read.
    let Connection { writer, mut reader } = connection;
    let mut tally = Tally::default();
    let mut unreported = 0u64;
    // Latencies are only read once every subscriber has stopped, so they can wait here.
    let mut samples = [0u64; 32];
    let mut sampled = 0;
    let mut next_seq = 0u64;
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let next = reader.next();
        tokio::pin!(next);
        let frame = std::future::poll_fn(|cx| {
            if let Poll::Ready(frame) = next.as_mut().poll(cx) {
                return Poll::Ready(Some(frame));
            }
            if unreported > 0 {
                flow.on_received(unreported);
                unreported = 0;
            }
            stopped.as_mut().poll(cx).map(|_| None)
        })
        .await;
        let Some(frame) = frame else { break };
        match frame {
            Ok(Some(frame)) if frame.command == Command::Message => {
                let now = now_ns();
                match parse_body(&frame.body) {
                    Some((seq, sent_at)) => {
                        samples[sampled] = now.saturating_sub(sent_at);
                        sampled += 1;
                        if sampled == samples.len() {
                            latencies.record_all(who, &samples);
                            sampled = 0;
                        }
                        if seq < next_seq {
                            tally.out_of_order += 1;
                        }
                        next_seq = next_seq.max(seq + 1);
                    }
                    None => errors.add(format!("subscriber {who}: unparsable body")),
                }
                tally.received += 1;
                tally.last_receive = now;
                unreported += 1;
                if unreported == REPORT_EVERY {
                    flow.on_received(unreported);
                    unreported = 0;
                }
            }
            Ok(Some(frame)) => {
                errors.add(format!("subscriber {who} got {}", describe(&frame)));
                if frame.command == Command::Error {
                    break;
                }
            }
            Ok(None) => {
                errors.add(format!("subscriber {who}: connection closed by the broker"));
                break;
            }
            Err(error) => {
                errors.add(format!("subscriber {who}: {error:#}"));
                break;
            }
        }
    }
    if unreported > 0 {
        flow.on_received(unreported);
    }
    latencies.record_all(who, &samples[..sampled]);
    drop(writer);
    tally
}

/// One publisher's destination and the subscribers it feeds.
struct Group {
    destination: String,
    subscribers: usize,
}

/// What the tasks of one run share: counters, histograms and the first send's time.
struct Shared {
    errors: Arc<Errors>,
    latencies: Arc<Latencies>,
    clock: Arc<Clock>,
    /// One per group, in the order of `groups`.
    flows: Vec<Arc<Flow>>,
}

/// The subscribers once subscribed and consuming.
struct Subscribers {
    tasks: JoinSet<Tally>,
    count: usize,
    setup_seconds: f64,
    connect_failures: u64,
}

/// Runs publishers and subscribers over `groups`; the common body of fan-out and pairs.
async fn run_groups(
    scenario: &'static str,
    target: Arc<Target>,
    options: &RunOptions,
    groups: Vec<Group>,
    kind: &str,
    load: Load,
) -> anyhow::Result<FlowReport> {
    let shared = Shared {
        errors: Arc::new(Errors::default()),
        latencies: Arc::new(Latencies::new()),
        clock: Arc::new(Clock {
            first_send: AtomicU64::new(0),
        }),
        flows: groups
            .iter()
            .map(|g| Arc::new(Flow::new(g.subscribers as u64)))
            .collect(),
    };
    let destinations: Vec<String> = groups.iter().map(|g| g.destination.clone()).collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subscribers =
        open_subscribers(target.clone(), options, &groups, &shared, &stop_rx).await;

    let cpu_start = crate::cpu::Sample::take(options.broker_pid);
    let publish_target = options.publish_target.clone().unwrap_or(target);
    let (sent, publish_seconds, publisher_failures) =
        run_publishers(publish_target, options, &destinations, &shared, &load).await?;
    let expected: u64 = shared
        .flows
        .iter()
        .map(|f| f.sent.load(Ordering::Relaxed) * f.fanout)
        .sum();
    drain(&shared.flows, expected, load.drain).await;
    let cpu = crate::cpu::since(cpu_start, options.broker_pid);
    let _ = stop_tx.send(true);
    let mut received = 0u64;
    let mut out_of_order = 0u64;
    let mut last_rx = 0u64;
    while let Some(result) = subscribers.tasks.join_next().await {
        if let Ok(tally) = result {
            received += tally.received;
            out_of_order += tally.out_of_order;
            last_rx = last_rx.max(tally.last_receive);
        }
    }
    let first = shared.clock.first_send.load(Ordering::Relaxed);
    let span = (last_rx.saturating_sub(first)) as f64 / 1e9;
    let deliveries_per_sec = if span > 0.0 {
        received as f64 / span
    } else {
        0.0
    };
    Ok(FlowReport {
        scenario,
        url: String::new(),
        label: String::new(),
        publishers: groups.len(),
        subscribers: subscribers.count,
        destination: kind.to_owned(),
        rate: load.rate,
        payload: load.payload,
        duration_seconds: load.duration.as_secs_f64(),
        window: load.window,
        receipt_every: load.receipt_every,
        setup_seconds: subscribers.setup_seconds,
        publish_seconds,
        sent,
        expected,
        received,
        lost: expected.saturating_sub(received),
        out_of_order,
        publish_rate: sent as f64 / publish_seconds.max(1e-9),
        deliveries_per_sec,
        latency: Percentiles::of(&shared.latencies.merged()),
        broker_cpu_us_per_delivery: cpu.as_ref().and_then(|c| c.broker_us_per(received)),
        cpu,
        connect_failures: subscribers.connect_failures + publisher_failures,
        errors: shared.errors.count(),
        error_samples: shared.errors.samples(),
    })
}

/// Connects and subscribes every subscriber of every group, each confirmed by a RECEIPT so
/// that nothing is published into the void, and starts its [`consume`] task.
async fn open_subscribers(
    target: Arc<Target>,
    options: &RunOptions,
    groups: &[Group],
    shared: &Shared,
    stop: &watch::Receiver<bool>,
) -> Subscribers {
    // For every subscriber, the index of its group.
    let mut plan = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        for _ in 0..group.subscribers {
            plan.push(index);
        }
    }
    let plan = Arc::new(plan);
    let setup_start = Instant::now();
    let destinations: Arc<Vec<String>> =
        Arc::new(groups.iter().map(|g| g.destination.clone()).collect());
    let opened = crate::open_many(target, options, plan.len(), {
        let plan = plan.clone();
        move |mut connection: Connection, number| {
            let destination = destinations[plan[number]].clone();
            async move {
                connection.subscribe(&destination, "0").await?;
                Ok(connection)
            }
        }
    })
    .await;
    let mut subscribers = Subscribers {
        tasks: JoinSet::new(),
        count: plan.len(),
        setup_seconds: setup_start.elapsed().as_secs_f64(),
        connect_failures: 0,
    };
    for (number, result) in opened.into_iter().enumerate() {
        match result {
            Ok(connection) => {
                subscribers.tasks.spawn(consume(
                    connection,
                    number,
                    shared.flows[plan[number]].clone(),
                    shared.latencies.clone(),
                    shared.errors.clone(),
                    stop.clone(),
                ));
            }
            Err(error) => {
                subscribers.connect_failures += 1;
                shared.errors.add(format!("subscriber {number}: {error:#}"));
            }
        }
    }
    if subscribers.connect_failures > 0 {
        shared.errors.add(format!(
            "{} subscribers failed to connect",
            subscribers.connect_failures
        ));
    }
    subscribers
}

/// Connects one publisher per destination and publishes until the duration is over. Returns
/// the messages sent, the longest publishing time and the publishers that failed to connect.
///
/// # Errors
///
/// When no publisher could connect.
async fn run_publishers(
    target: Arc<Target>,
    options: &RunOptions,
    destinations: &[String],
    shared: &Shared,
    load: &Load,
) -> anyhow::Result<(u64, f64, u64)> {
    let publishers = crate::open_many(
        target,
        options,
        destinations.len(),
        |connection, _| async move { Ok(connection) },
    )
    .await;
    let mut failures = 0u64;
    let mut publishing = JoinSet::new();
    for (index, result) in publishers.into_iter().enumerate() {
        match result {
            Ok(connection) => {
                publishing.spawn(publish(
                    connection,
                    destinations[index].clone(),
                    shared.flows[index].clone(),
                    load.clone(),
                    shared.clock.clone(),
                    shared.errors.clone(),
                ));
            }
            Err(error) => {
                failures += 1;
                shared.errors.add(format!("publisher {index}: {error:#}"));
            }
        }
    }
    if publishing.is_empty() {
        bail!(
            "no publisher could connect: {}",
            shared.errors.samples().join("; ")
        );
    }
    let mut sent = 0u64;
    let mut publish_seconds = 0f64;
    while let Some(result) = publishing.join_next().await {
        let (count, seconds) = result.unwrap_or((0, 0.0));
        sent += count;
        publish_seconds = publish_seconds.max(seconds);
    }
    Ok((sent, publish_seconds, failures))
}

/// Waits while copies keep arriving, up to `drain` without progress.
async fn drain(flows: &[Arc<Flow>], expected: u64, drain: Duration) {
    let total = || -> u64 {
        flows
            .iter()
            .map(|f| f.received.load(Ordering::Relaxed))
            .sum()
    };
    let mut last = total();
    let mut last_progress = Instant::now();
    while last < expected && last_progress.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = total();
        if now != last {
            last = now;
            last_progress = Instant::now();
        }
    }
}

/// One publisher, `subscribers` subscribers on one topic.
///
/// # Errors
///
/// When the publisher cannot connect.
pub async fn fanout(
    target: Arc<Target>,
    options: &RunOptions,
    subscribers: usize,
    topic: Option<String>,
    load: Load,
) -> anyhow::Result<FlowReport> {
    let name = topic.unwrap_or_else(|| format!("lg-fanout-{}", run_id()));
    let groups = vec![Group {
        destination: format!("/topic/{name}"),
        subscribers,
    }];
    run_groups("fanout", target, options, groups, "topic", load).await
}

/// `pairs` publishers, each with its own destination (`/topic/...` or `/queue/...`) and one
/// subscriber.
///
/// # Errors
///
/// When no publisher can connect.
pub async fn pairs(
    target: Arc<Target>,
    options: &RunOptions,
    pairs: usize,
    kind: &str,
    load: Load,
) -> anyhow::Result<FlowReport> {
    let run = run_id();
    let groups = (0..pairs)
        .map(|i| Group {
            destination: format!("/{kind}/lg-pair-{run}-{i}"),
            subscribers: 1,
        })
        .collect();
    run_groups("pairs", target, options, groups, kind, load).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips_and_pads() {
        let mut scratch = BytesMut::new();
        let body = body(42, 100, &mut scratch);
        assert_eq!(body.len(), 100);
        let (seq, ts) = parse_body(&body).unwrap();
        assert_eq!(seq, 42);
        assert!(ts <= now_ns());
    }

    #[test]
    fn short_payload_keeps_the_header() {
        let mut scratch = BytesMut::new();
        let body = body(7, 1, &mut scratch);
        assert_eq!(parse_body(&body).map(|(s, _)| s), Some(7));
    }

    #[test]
    fn garbage_body_is_refused() {
        assert_eq!(parse_body(b"hello world"), None);
        assert_eq!(parse_body(b""), None);
    }
}
