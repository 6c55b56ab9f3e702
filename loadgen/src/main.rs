//! `loadgen`: the broker's load generator. Scenarios over STOMP 1.2 on WebSocket, each
//! printing a one-line summary (and JSON with `--json`):
//!
//! - `fanout`: one publisher, N subscribers on one topic: deliveries per second, loss, latency;
//! - `pairs`: N publishers each feeding its own subscriber through its own destination;
//! - `idle`: N connected, subscribed, silent sessions: how many hold, and their memory;
//! - `im` and `group`: private messages between user pairs and messages to a large group
//!   through our broker's IM layer, stored before they are confirmed (see `im/`);
//! - `notify`: system notifications to many users per REST call (see `im/notify.rs`);
//!
//! `floor`, the same kind of fan-out over bare loopback TCP sockets with no broker at all: the
//! latency and CPU per delivery that the machine itself allows, to read the others against;
//! and `report`, which prints the markdown table of a `loadgen/run.sh` run.
//!
//! The command line is in `cli.rs`; this file runs the chosen scenario and writes its result.
//!
//! It speaks to our broker (`--token` or `--jwt-secret`) and to RabbitMQ Web-STOMP
//! (`--login guest --passcode guest`) alike, so the two can be compared with the same client.

mod cli;
mod client;
mod commits;
mod cpu;
mod floor;
mod http;
mod idle;
mod im;
mod load;
mod machine;
mod report;
mod stats;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tokio::task::JoinSet;

use cli::{Cli, Common, Scenario, seconds};
use client::{Auth, Connection, Target};

/// What every scenario needs beyond its own arguments.
pub struct RunOptions {
    /// Connections opened at once.
    pub concurrency: usize,
    /// The broker's process id, for its CPU time and memory.
    pub broker_pid: Option<u32>,
    /// Where publishers connect, when not where subscribers do.
    pub publish_target: Option<Arc<Target>>,
    /// The broker's `/metrics`, read before and after a run for its group commits.
    pub metrics: Option<commits::MetricsUrl>,
}

/// Failures seen during a run: a count and the first few messages.
#[derive(Default)]
pub struct Errors {
    count: AtomicU64,
    samples: Mutex<Vec<String>>,
}

const ERROR_SAMPLES: usize = 5;

impl Errors {
    /// Counts a failure, keeping its message if it is among the first few.
    pub fn add(&self, message: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() < ERROR_SAMPLES {
            samples.push(message);
        }
    }

    /// Failures counted.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The first few messages.
    pub fn samples(&self) -> Vec<String> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A name unique to this run, so that runs never share a topic or queue on a broker that keeps
/// them (RabbitMQ).
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// Opens `count` sessions, at most `options.concurrency` at a time, and runs `setup` on each
/// (e.g. SUBSCRIBE). Results come back in connection-number order.
pub async fn open_many<F, Fut>(
    target: Arc<Target>,
    options: &RunOptions,
    count: usize,
    setup: F,
) -> Vec<anyhow::Result<Connection>>
where
    F: Fn(Connection, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Connection>> + Send + 'static,
{
    open_many_split(target, None, options, count, setup).await
}

/// Another target, and which session numbers connect to it.
pub type OtherTarget = (Arc<Target>, Arc<dyn Fn(usize) -> bool + Send + Sync>);

/// As [`open_many`], but the sessions that `other` picks connect to its target: senders on
/// one cluster node, their recipients on another.
pub async fn open_many_split<F, Fut>(
    target: Arc<Target>,
    other: Option<OtherTarget>,
    options: &RunOptions,
    count: usize,
    setup: F,
) -> Vec<anyhow::Result<Connection>>
where
    F: Fn(Connection, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Connection>> + Send + 'static,
{
    let setup = Arc::new(setup);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for number in 0..count {
        let target = match &other {
            Some((other, on_other)) if on_other(number) => other.clone(),
            _ => target.clone(),
        };
        let setup = setup.clone();
        let semaphore = semaphore.clone();
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let result = match target.connect(number).await {
                Ok(connection) => setup(connection, number).await,
                Err(error) => Err(error),
            };
            (number, result)
        });
    }
    let mut results: Vec<Option<anyhow::Result<Connection>>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((number, result)) = joined {
            results[number] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("connection task panicked"))))
        .collect()
}

fn auth(common: &Common) -> anyhow::Result<Auth> {
    Ok(match (&common.jwt_secret, &common.token, &common.login) {
        (Some(secret), _, _) => Auth::Mint {
            secret: secret.clone(),
            role: common.jwt_role.clone(),
            prefix: common.user_prefix.clone(),
        },
        (None, Some(token), _) => Auth::Token(token.clone()),
        (None, None, Some(login)) => Auth::Login {
            login: login.clone(),
            passcode: common.passcode.clone().unwrap_or_default(),
        },
        (None, None, None) => {
            bail!("give --login/--passcode, --token or --jwt-secret")
        }
    })
}

/// Writes `value`, with the command line and the machine added, as one line of JSON.
fn write_json(path: &PathBuf, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string(&machine::annotate(serde_json::to_value(value)?))?;
    if path.as_os_str() == "-" {
        println!("{text}");
    } else {
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Prints a scenario's summary line and, with `--json`, writes its report.
fn emit(common: &Common, summary: &str, report: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{summary}");
    if let Some(path) = &common.json {
        write_json(path, report)?;
    }
    Ok(())
}

/// Runs the chosen scenario; `Ok(false)` when it completed but lost messages or saw errors.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let common = &cli.common;
    match &cli.scenario {
        Scenario::Report { columns } => {
            print!("{}", report::table(columns));
            Ok(true)
        }
        Scenario::Floor {
            sockets,
            writers,
            readers,
            rate,
            duration,
            payload,
        } => {
            let floor = floor::Floor {
                sockets: *sockets,
                writers: *writers,
                readers: *readers,
                rate: *rate,
                duration: seconds(*duration, "--duration")?,
                payload: *payload,
            };
            let mut report = tokio::task::spawn_blocking(move || floor::run(&floor)).await??;
            report.label.clone_from(&common.label);
            emit(common, &report.summary(), &report)?;
            Ok(report.lost == 0 && report.errors == 0)
        }
        scenario => run_against_broker(common, scenario).await,
    }
}

/// Where the scenario's sessions connect: `--url`, and `--publish-url` when given.
async fn targets(common: &Common) -> anyhow::Result<(Arc<Target>, Option<Arc<Target>>)> {
    let target_at = |url: &str| {
        let url = url.to_owned();
        async move {
            anyhow::Ok(Arc::new(
                Target::new(
                    &url,
                    auth(common)?,
                    common.vhost.clone(),
                    common.source_ips.clone(),
                    seconds(common.connect_timeout, "--connect-timeout")?,
                    (common.heartbeat_ms > 0).then(|| Duration::from_millis(common.heartbeat_ms)),
                )
                .await?,
            ))
        }
    };
    let target = target_at(&common.url).await?;
    let publish_target = match &common.publish_url {
        Some(url) => Some(target_at(url).await?),
        None => None,
    };
    Ok((target, publish_target))
}

/// The scenarios that talk to a broker.
async fn run_against_broker(common: &Common, scenario: &Scenario) -> anyhow::Result<bool> {
    let (target, publish_target) = targets(common).await?;
    let metrics = commits::MetricsUrl::new(common.metrics_url.as_deref(), target.addr()).await?;
    let options = RunOptions {
        concurrency: common.connect_concurrency,
        broker_pid: common.broker_pid,
        publish_target,
        metrics: Some(metrics),
    };
    match scenario {
        Scenario::Fanout {
            subscribers,
            topic,
            flow,
        } => {
            let mut report =
                load::fanout(target, &options, *subscribers, topic.clone(), flow.load()?).await?;
            report.url.clone_from(&common.url);
            report.label.clone_from(&common.label);
            emit(common, &report.summary(), &report)?;
            Ok(report.lost == 0 && report.errors == 0)
        }
        Scenario::Pairs { pairs, kind, flow } => {
            let mut report = load::pairs(target, &options, *pairs, kind, flow.load()?).await?;
            report.url.clone_from(&common.url);
            report.label.clone_from(&common.label);
            emit(common, &report.summary(), &report)?;
            Ok(report.lost == 0 && report.errors == 0)
        }
        Scenario::Idle {
            connections,
            hold,
            settle,
        } => {
            let mut report = idle::idle(
                target,
                &options,
                *connections,
                seconds(*hold, "--hold")?,
                seconds(*settle, "--settle")?,
            )
            .await;
            report.url.clone_from(&common.url);
            report.label.clone_from(&common.label);
            emit(common, &report.summary(), &report)?;
            Ok(report.connected == *connections && report.errors == 0)
        }
        Scenario::Im {
            pairs,
            conversations,
            flow,
        } => {
            need_secret(common)?;
            let report = im::pairs(target, &options, *pairs, *conversations, flow.load()?).await?;
            emit_im(common, report)
        }
        Scenario::Group { members, flow } => {
            need_secret(common)?;
            let report = im::group(target, &options, *members, flow.load()?).await?;
            emit_im(common, report)
        }
        Scenario::Notify {
            users,
            calls,
            online,
            payload,
            timeout,
            drain,
            system_user,
            verify_postgres,
        } => {
            need_secret(common)?;
            let load = im::NotifyLoad {
                users: *users,
                calls: *calls,
                online: *online,
                payload: *payload,
                timeout: seconds(*timeout, "--timeout")?,
                drain: seconds(*drain, "--drain")?,
                verify_postgres: verify_postgres.clone(),
                system_user: system_user.clone(),
            };
            let mut report = im::notify(target, &options, load).await?;
            report.url.clone_from(&common.url);
            report.label.clone_from(&common.label);
            emit(common, &report.summary(), &report)?;
            Ok(report.ok())
        }
        Scenario::Report { .. } | Scenario::Floor { .. } => Ok(true),
    }
}

/// The IM scenarios (and `notify`) mint a token per session: each session is its own user.
fn need_secret(common: &Common) -> anyhow::Result<()> {
    if common.jwt_secret.is_none() {
        bail!("the IM scenarios need --jwt-secret: each session is its own user");
    }
    Ok(())
}

/// Prints and writes an IM report; whether nothing was lost or refused.
fn emit_im(common: &Common, mut report: im::ImReport) -> anyhow::Result<bool> {
    report.url.clone_from(&common.url);
    report.label.clone_from(&common.label);
    emit(common, &report.summary(), &report)?;
    Ok(report.ok())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stats::now_ns();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.common.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        // The numbers were printed; a non-zero status tells scripts that something was lost.
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::from(2)
        }
    }
}
