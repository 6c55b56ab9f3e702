//! The common body of fan-out and pairs: subscribers first, then publishers, then the drain,
//! each phase its own function.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::consume::{Tally, consume};
use super::publish::{Clock, publish};
use super::report::FlowReport;
use super::{Group, Load};
use crate::client::{Connection, Target};
use crate::stats::{Flow, Latencies, Percentiles};
use crate::{Errors, RunOptions};

/// What the tasks of one run share: counters, histograms and the first send's time.
pub(super) struct Shared {
    pub(super) errors: Arc<Errors>,
    pub(super) latencies: Arc<Latencies>,
    pub(super) clock: Arc<Clock>,
    /// One per group, in the order of `groups`.
    pub(super) flows: Vec<Arc<Flow>>,
}

/// The subscribers once subscribed and consuming.
pub(super) struct Subscribers {
    pub(super) tasks: JoinSet<Tally>,
    pub(super) count: usize,
    pub(super) setup_seconds: f64,
    pub(super) connect_failures: u64,
}

/// Runs publishers and subscribers over `groups`; the common body of fan-out and pairs.
pub(super) async fn run_groups(
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
pub(super) async fn open_subscribers(
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
pub(super) async fn run_publishers(
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
pub(super) async fn drain(flows: &[Arc<Flow>], expected: u64, drain: Duration) {
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
