//! Runs a [`Plan`]: opens every session, starts the readers and the senders, drains, and
//! tallies what each session saw into an [`ImReport`]. Each phase is its own function, in the
//! order a run goes through them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::ImLoad;
use super::report::{ImReport, Verification};
use super::send::{SendSpec, greet, sender};
use super::session::{Seen, Shared, Watch, read_session};
use super::verify::verify_postgres;
use crate::RunOptions;
use crate::client::{Connection, Target, Writer};
use crate::stats::{Flow, Latencies, Percentiles};

/// Sessions of a run and what they are for.
pub(super) struct Plan {
    /// Session numbers of the senders, with their spec.
    pub(super) senders: Vec<(usize, SendSpec)>,
    /// For every session: whose messages it watches.
    pub(super) watches: Vec<Watch>,
    /// For every session: the SUBSCRIBE destinations, with their subscription ids.
    pub(super) subscriptions: Vec<Vec<(String, &'static str)>>,
    /// For every session that watches a sender: that sender and which of its messages.
    pub(super) watched_sender: Vec<Option<Watched>>,
    /// For every session: a SEND body it sends once during setup, with a RECEIPT awaited.
    pub(super) greetings: Vec<Option<String>>,
    /// The clientMsgId prefix of this run's messages.
    pub(super) client_prefix: String,
    /// `im` or `group`, copied into the report.
    pub(super) scenario: &'static str,
    /// Sessions that should receive each message.
    pub(super) recipients_per_message: usize,
    /// Recipients per sender, each its own conversation (1 for a group).
    pub(super) conversations: usize,
    /// Which sessions send (they connect to --publish-url when it is given).
    pub(super) is_sender: Arc<dyn Fn(usize) -> bool + Send + Sync>,
}

/// A sender watched by a session, and the share of its messages meant for that session: the
/// numbers `n` with `n mod stride == offset` (a sender with K conversations goes round-robin).
#[derive(Clone, Copy)]
pub(super) struct Watched {
    /// The sender's session number.
    pub(super) sender: usize,
    pub(super) stride: u64,
    pub(super) offset: u64,
}

impl Watched {
    /// Whether message `n` of the sender is meant for the watching session.
    fn expects(&self, n: u64) -> bool {
        n % self.stride.max(1) == self.offset
    }
}

/// The open sessions of a run once their readers are started.
struct Live {
    /// Each sender's window and counters, by session number.
    flows: HashMap<usize, Arc<Flow>>,
    /// Write halves, by session number; senders take theirs, the rest are held so that every
    /// socket stays fully open while its reader runs.
    writers: HashMap<usize, Writer>,
    /// One reader task per session, returning what it saw.
    readers: JoinSet<(usize, Seen)>,
    connect_failures: u64,
}

/// What the senders did.
struct Sent {
    /// The write halves of the senders, held until the readers are done.
    writers: Vec<Writer>,
    /// The longest time a sender spent sending.
    seconds: f64,
}

/// Totals over every session's [`Seen`].
#[derive(Default)]
struct Tally {
    lost: u64,
    delivered: u64,
    duplicates: u64,
    refused: u64,
}

/// Opens every session of `plan`, runs the senders, drains, and gathers the report.
pub(super) async fn run_plan(
    target: Arc<Target>,
    options: &RunOptions,
    plan: Plan,
    load: ImLoad,
    shared: Arc<Shared>,
    setup_start: Instant,
) -> anyhow::Result<ImReport> {
    let Plan {
        senders,
        watches,
        subscriptions,
        watched_sender,
        greetings,
        client_prefix,
        scenario,
        recipients_per_message,
        conversations,
        is_sender,
    } = plan;
    let opened = open_sessions(target, options, subscriptions, greetings, is_sender).await;
    let setup_seconds = setup_start.elapsed().as_secs_f64();

    let (stop_tx, stop_rx) = watch::channel(false);
    let sender_users: Vec<(usize, String)> = senders
        .iter()
        .map(|(n, spec)| (*n, spec.user.clone()))
        .collect();
    let sender_numbers: Vec<usize> = senders.iter().map(|(n, _)| *n).collect();
    let mut live = start_readers(
        opened,
        &watches,
        &watched_sender,
        &sender_numbers,
        recipients_per_message,
        &shared,
        &stop_rx,
    );

    let commits_start = crate::commits::totals(options.metrics.as_ref()).await;
    let cpu_start = crate::cpu::Sample::take(options.broker_pid);
    let senders_total = senders.len();
    let sent_by = run_senders(senders, &mut live, &load, &shared).await?;
    let sent: u64 = live
        .flows
        .values()
        .map(|f| f.sent.load(Ordering::Relaxed))
        .sum();
    let receipts_at_end = receipts(&live.flows);
    let expected = sent * recipients_per_message as u64;
    drain(&live.flows, &shared, sent, expected, load.drain).await;
    let cpu = crate::cpu::since(cpu_start, options.broker_pid);
    let commits = crate::commits::between(
        commits_start,
        crate::commits::totals(options.metrics.as_ref()).await,
    );
    let _ = stop_tx.send(true);
    let mut seen: HashMap<usize, Seen> = HashMap::new();
    while let Some(result) = live.readers.join_next().await {
        if let Ok((number, s)) = result {
            seen.insert(number, s);
        }
    }
    drop(sent_by.writers);
    drop(live.writers);

    let tally = tally(&seen, &watched_sender);
    let first = shared.first_send.load(Ordering::Relaxed);
    let last_rx = shared.last_delivery.load(Ordering::Relaxed);
    let span = last_rx.saturating_sub(first) as f64 / 1e9;
    let verification = match &load.verify_postgres {
        Some(url) => Some(verify(url, &client_prefix, &sender_users, &seen).await?),
        None => None,
    };

    Ok(ImReport {
        scenario,
        url: String::new(),
        label: String::new(),
        senders: senders_total,
        recipients_per_message,
        conversations,
        rate: load.rate,
        window: load.window,
        close_on: load.close_on,
        payload: load.payload,
        duration_seconds: load.duration.as_secs_f64(),
        setup_seconds,
        send_seconds: sent_by.seconds,
        sent,
        receipts: receipts(&live.flows),
        refused: tally.refused,
        delivered: tally.delivered,
        lost: tally.lost,
        duplicates: tally.duplicates,
        receipts_per_sec: receipts_at_end as f64 / sent_by.seconds.max(1e-9),
        deliveries_per_sec: if span > 0.0 {
            tally.delivered as f64 / span
        } else {
            0.0
        },
        latency: Percentiles::of(&shared.latencies.merged()),
        all_members_latency: all_members_latency(&shared, recipients_per_message),
        verification,
        broker_cpu_us_per_delivery: cpu.as_ref().and_then(|c| c.broker_us_per(tally.delivered)),
        cpu_us_per_delivery: cpu.as_ref().and_then(|c| c.per(tally.delivered)),
        group_commits: commits,
        cpu,
        connect_failures: live.connect_failures,
        errors: shared.errors.count(),
        error_samples: shared.errors.samples(),
    })
}

/// Connects every session, subscribes it and sends its greeting, if any. With
/// --publish-url, the senders (even sessions of the `im` scenario, the owner of a group)
/// connect there and everyone else to --url, so that every message crosses nodes.
async fn open_sessions(
    target: Arc<Target>,
    options: &RunOptions,
    subscriptions: Vec<Vec<(String, &'static str)>>,
    greetings: Vec<Option<String>>,
    is_sender: Arc<dyn Fn(usize) -> bool + Send + Sync>,
) -> Vec<anyhow::Result<Connection>> {
    let count = subscriptions.len();
    let subscriptions = Arc::new(subscriptions);
    let greetings = Arc::new(greetings);
    let other = options
        .publish_target
        .clone()
        .map(|publish| (publish, is_sender));
    crate::open_many_split(
        target,
        other,
        options,
        count,
        move |mut connection, number| {
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
        },
    )
    .await
}

/// Starts a reader per open session (senders get a [`Flow`] their reader ticks on each
/// RECEIPT, and the readers of their recipients on each delivery) and counts the sessions
/// that failed to open.
fn start_readers(
    opened: Vec<anyhow::Result<Connection>>,
    watches: &[Watch],
    watched_sender: &[Option<Watched>],
    sender_numbers: &[usize],
    recipients_per_message: usize,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> Live {
    let mut live = Live {
        flows: HashMap::new(),
        writers: HashMap::new(),
        readers: JoinSet::new(),
        connect_failures: 0,
    };
    // Every sender's flow exists before any reader starts, so that a recipient can tick it.
    for (number, result) in opened.iter().enumerate() {
        if result.is_ok() && sender_numbers.contains(&number) {
            let flow = Arc::new(Flow::new(recipients_per_message as u64));
            live.flows.insert(number, flow);
        }
    }
    for (number, result) in opened.into_iter().enumerate() {
        match result {
            Ok(Connection { writer, reader }) => {
                let mut watch = watches[number].clone();
                watch.flow = live.flows.get(&number).cloned();
                watch.delivered_to = watched_sender[number]
                    .and_then(|w| live.flows.get(&w.sender))
                    .cloned();
                live.writers.insert(number, writer);
                let task = read_session(reader, number, watch, shared.clone(), stop.clone());
                live.readers.spawn(async move { (number, task.await) });
            }
            Err(error) => {
                live.connect_failures += 1;
                shared.errors.add(format!("session {number}: {error:#}"));
            }
        }
    }
    if live.connect_failures > 0 {
        shared.errors.add(format!(
            "{} sessions failed to connect",
            live.connect_failures
        ));
    }
    live
}

/// Runs every sender that connected, each at its share of the rate and phased over the first
/// interval, until the duration is over.
///
/// # Errors
///
/// When no sender could connect.
async fn run_senders(
    senders: Vec<(usize, SendSpec)>,
    live: &mut Live,
    load: &ImLoad,
    shared: &Arc<Shared>,
) -> anyhow::Result<Sent> {
    let per_sender_rate = load.rate / senders.len().max(1) as f64;
    let senders_total = senders.len();
    let mut sending = JoinSet::new();
    for (index, (number, spec)) in senders.into_iter().enumerate() {
        let (Some(writer), Some(flow)) = (
            live.writers.remove(&number),
            live.flows.get(&number).cloned(),
        ) else {
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
    let mut sent = Sent {
        writers: Vec::new(),
        seconds: 0.0,
    };
    while let Some(result) = sending.join_next().await {
        if let Ok((writer, seconds)) = result {
            sent.writers.push(writer);
            sent.seconds = sent.seconds.max(seconds);
        }
    }
    Ok(sent)
}

/// RECEIPTs received so far over every sender.
fn receipts(flows: &HashMap<usize, Arc<Flow>>) -> u64 {
    flows
        .values()
        .map(|f| f.receipts.load(Ordering::Relaxed))
        .sum()
}

/// Waits while receipts or copies keep coming, up to `drain` without progress.
async fn drain(
    flows: &HashMap<usize, Arc<Flow>>,
    shared: &Shared,
    sent: u64,
    expected: u64,
    drain: Duration,
) {
    let progress = || receipts(flows) + shared.delivered.load(Ordering::Relaxed);
    let mut last = progress();
    let mut last_progress = Instant::now();
    while (receipts(flows) < sent || shared.delivered.load(Ordering::Relaxed) < expected)
        && last_progress.elapsed() < drain
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = progress();
        if now != last {
            last = now;
            last_progress = Instant::now();
        }
    }
}

/// Sums what the sessions saw. Lost: a RECEIPTed message meant for a watching session that it
/// never got.
fn tally(seen: &HashMap<usize, Seen>, watched_sender: &[Option<Watched>]) -> Tally {
    let mut tally = Tally::default();
    for (number, s) in seen {
        tally.delivered += s.delivered_count;
        tally.duplicates += s.duplicates;
        tally.refused += s.refused;
        let Some(watched) = watched_sender[*number] else {
            continue;
        };
        if let Some(sender_seen) = seen.get(&watched.sender) {
            tally.lost += sender_seen
                .receipted
                .iter()
                .filter(|&n| watched.expects(n) && !s.delivered.get(n))
                .count() as u64;
        }
    }
    tally
}

/// Checks the stored rows against the RECEIPTs each sender got.
async fn verify(
    url: &str,
    client_prefix: &str,
    sender_users: &[(usize, String)],
    seen: &HashMap<usize, Seen>,
) -> anyhow::Result<Verification> {
    let confirmed: Vec<(String, Vec<u64>)> = sender_users
        .iter()
        .filter_map(|(number, user)| {
            let s = seen.get(number)?;
            Some((user.clone(), s.receipted.iter().collect()))
        })
        .collect();
    verify_postgres(url, client_prefix, &confirmed).await
}

/// Group runs: per message that reached every member, the latency of its last arrival.
fn all_members_latency(shared: &Shared, recipients_per_message: usize) -> Option<Percentiles> {
    shared.arrivals.as_ref().map(|arrivals| {
        let arrivals = arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let all = Latencies::new();
        for (count, latest) in arrivals.values() {
            if *count as usize >= recipients_per_message {
                all.record(0, *latest);
            }
        }
        Percentiles::of(&all.merged())
    })
}
