//! The idle scenario: many connected sessions, each with one subscription, doing nothing.
//! It answers "how many can the broker hold, and what does each cost in memory".

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{Connection, Target};
use crate::{Errors, RunOptions, run_id};

/// What an idle run measured.
#[derive(Debug, serde::Serialize)]
pub struct IdleReport {
    /// Always `idle`.
    pub scenario: &'static str,
    /// The broker's URL.
    pub url: String,
    /// Free text naming the broker under test.
    pub label: String,
    /// Sessions asked for.
    pub connections: usize,
    /// Sessions that connected and subscribed.
    pub connected: usize,
    /// Of those, sessions that still answered UNSUBSCRIBE with a RECEIPT after the hold.
    pub alive_after_hold: usize,
    /// Seconds the sessions were held once all were open (`--hold`).
    pub hold_seconds: f64,
    /// Seconds taken to open them all.
    pub connect_seconds: f64,
    /// The broker process's VmRSS before connecting, in KiB (when `--rss-pid` was given).
    pub rss_before_kib: Option<u64>,
    /// VmRSS with every session open and settled, in KiB.
    pub rss_after_kib: Option<u64>,
    /// (after - before) / connected, in bytes.
    pub rss_bytes_per_connection: Option<f64>,
    /// Cores busy while connecting and settling.
    pub cpu: Option<crate::cpu::Usage>,
    /// Failures to connect, subscribe or probe.
    pub errors: u64,
    /// The first few of them.
    pub error_samples: Vec<String>,
}

impl IdleReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let rss = match (
            self.rss_before_kib,
            self.rss_after_kib,
            self.rss_bytes_per_connection,
        ) {
            (Some(before), Some(after), Some(per)) => format!(
                " rss_before={before}KiB rss_after={after}KiB per_connection={per:.0}B \
                 ({:.2}KiB)",
                per / 1024.0
            ),
            _ => String::new(),
        };
        format!(
            "idle [{}] connected={}/{} alive_after_hold={} connect_time={:.1}s{rss} errors={}{}",
            self.label,
            self.connected,
            self.connections,
            self.alive_after_hold,
            self.connect_seconds,
            self.errors,
            crate::cpu::suffix(self.cpu.as_ref()),
        )
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Opens `connections` sessions, each subscribed to its own topic, holds them for `hold`, then
/// checks each is still alive with a receipted UNSUBSCRIBE.
pub async fn idle(
    target: Arc<Target>,
    options: &RunOptions,
    connections: usize,
    hold: Duration,
    settle: Duration,
) -> IdleReport {
    let errors = Arc::new(Errors::default());
    let rss_pid = options.broker_pid;
    let rss_before = rss_pid.and_then(rss_kib);
    let cpu_start = crate::cpu::Sample::take(rss_pid);
    let run = run_id();
    let started = Instant::now();
    let opened = crate::open_many(target, options, connections, move |mut connection, n| {
        let destination = format!("/topic/lg-idle-{run}-{n}");
        async move {
            connection.subscribe(&destination, "0").await?;
            Ok(connection)
        }
    })
    .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let mut open: Vec<Connection> = Vec::with_capacity(connections);
    for (n, result) in opened.into_iter().enumerate() {
        match result {
            Ok(connection) => open.push(connection),
            Err(error) => errors.add(format!("connection {n}: {error:#}")),
        }
    }
    let connected = open.len();
    // Let the broker finish whatever it does after a SUBSCRIBE before its memory is read.
    tokio::time::sleep(settle).await;
    let rss_after = rss_pid.and_then(rss_kib);
    let cpu = crate::cpu::since(cpu_start, rss_pid);
    tokio::time::sleep(hold.saturating_sub(settle)).await;

    let mut closing = JoinSet::new();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    for mut connection in open {
        let semaphore = semaphore.clone();
        closing.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            tokio::time::timeout(Duration::from_secs(30), connection.probe("0")).await
        });
    }
    let mut alive = 0;
    while let Some(result) = closing.join_next().await {
        match result {
            Ok(Ok(Ok(()))) => alive += 1,
            Ok(Ok(Err(error))) => errors.add(format!("after hold: {error:#}")),
            Ok(Err(_)) => errors.add("after hold: UNSUBSCRIBE receipt timed out".to_owned()),
            Err(error) => errors.add(format!("after hold: {error}")),
        }
    }
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if connected > 0 => {
            Some(after.saturating_sub(before) as f64 * 1024.0 / connected as f64)
        }
        _ => None,
    };
    IdleReport {
        scenario: "idle",
        url: String::new(),
        label: String::new(),
        connections,
        connected,
        alive_after_hold: alive,
        hold_seconds: hold.as_secs_f64(),
        connect_seconds,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_bytes_per_connection: per_connection,
        cpu,
        errors: errors.count(),
        error_samples: errors.samples(),
    }
}
