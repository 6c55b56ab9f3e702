//! Who used the CPUs during a run: the broker, this load generator, PostgreSQL and everything
//! else; and how long the broker's and loadgen's threads were ready to run but waited for a CPU.
//!
//! Broker and load generator share the machine, and a busy neighbour (a compiler, a fuzzer)
//! skews every figure; recording the split next to each result makes that visible instead of
//! silently folding it into the numbers. Read from `/proc`; `None` elsewhere.

use std::collections::HashMap;
use std::time::Instant;

/// Kernel clock ticks per second for `/proc` CPU times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU counters at one instant.
#[derive(Clone, Debug)]
pub struct Sample {
    at: Instant,
    busy_all: u64,
    broker: Option<u64>,
    own: u64,
    /// Ticks of every process named `postgres`, by pid: a server's backends come and go, so
    /// the difference is taken per process (one that exits during the run loses its share).
    postgres: HashMap<u32, u64>,
    broker_wait_ns: Option<u64>,
    own_wait_ns: Option<u64>,
}

/// Average cores busy between two samples.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Usage {
    /// The broker process (when its pid was given).
    pub broker_cores: Option<f64>,
    /// This process.
    pub loadgen_cores: f64,
    /// Every process named `postgres` (the server and its backends), when any runs here.
    pub postgres_cores: Option<f64>,
    /// Every other process on the machine.
    pub other_cores: f64,
    /// The broker's threads' time spent runnable but not running, in seconds per second: the
    /// average number of its threads waiting for a CPU (from schedstat).
    pub broker_run_queue: Option<f64>,
    /// The same for loadgen.
    pub loadgen_run_queue: Option<f64>,
    /// Seconds between the two samples.
    pub seconds: f64,
}

impl Usage {
    /// The broker's CPU time per event, in microseconds, over `count` events (copies delivered,
    /// say); `None` without the broker's pid or when nothing happened.
    pub fn broker_us_per(&self, count: u64) -> Option<f64> {
        let cores = self.broker_cores?;
        (count > 0).then(|| cores * self.seconds * 1e6 / count as f64)
    }

    /// The CPU time per event of the broker, loadgen and PostgreSQL, in microseconds, over
    /// `count` events; `None` when nothing happened.
    pub fn per(&self, count: u64) -> Option<CpuPer> {
        if count == 0 {
            return None;
        }
        let us = |cores: f64| cores * self.seconds * 1e6 / count as f64;
        Some(CpuPer {
            broker_us: self.broker_cores.map(us),
            loadgen_us: us(self.loadgen_cores),
            postgres_us: self.postgres_cores.map(us),
        })
    }

    /// `broker/loadgen/postgres/other` cores, e.g. `1.21/0.70/0.30/0.05`, then the threads
    /// waiting for a CPU.
    pub fn summary(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |c| format!("{c:.2}"));
        format!(
            "{}/{:.2}/{}/{:.2} waiting(broker/loadgen)={}/{}",
            opt(self.broker_cores),
            self.loadgen_cores,
            opt(self.postgres_cores),
            self.other_cores,
            opt(self.broker_run_queue),
            opt(self.loadgen_run_queue),
        )
    }
}

/// ` cores(broker/loadgen/postgres/other)=...` for a summary line, or nothing.
pub fn suffix(usage: Option<&Usage>) -> String {
    usage.map_or_else(String::new, |u| {
        format!(" cores(broker/loadgen/postgres/other)={}", u.summary())
    })
}

/// CPU time per message (or per copy delivered; the report says which), in microseconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct CpuPer {
    /// The broker (with `--broker-pid`).
    pub broker_us: Option<f64>,
    /// This process.
    pub loadgen_us: f64,
    /// Every process named `postgres`, when any runs on this machine.
    pub postgres_us: Option<f64>,
}

impl CpuPer {
    /// ` us/msg(broker/loadgen/postgres)=12.3/4.5/6.7` for a summary line, or nothing.
    pub fn suffix(per: Option<&CpuPer>, unit: &str) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |c| format!("{c:.1}"));
        per.map_or_else(String::new, |p| {
            format!(
                " us/{unit}(broker/loadgen/postgres)={}/{:.1}/{}",
                opt(p.broker_us),
                p.loadgen_us,
                opt(p.postgres_us)
            )
        })
    }
}

/// Ticks of every process whose `comm` is `postgres`, by pid. Other users' processes are
/// readable in `/proc` too; a process that vanishes between listing and reading is skipped.
fn postgres_ticks() -> HashMap<u32, u64> {
    let mut ticks = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let is_postgres = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == "postgres");
        if let Some(t) = is_postgres
            .then(|| process_ticks(&format!("/proc/{pid}/stat")))
            .flatten()
        {
            ticks.insert(pid, t);
        }
    }
    ticks
}

fn busy_all() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// Nanoseconds the threads of a process spent waiting on a run queue (second field of each
/// `/proc/<pid>/task/<tid>/schedstat`). Threads that already exited are not counted, which is
/// fine for tokio's long-lived workers.
fn run_queue_wait(pid: &str) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .nth(1)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(total)
}

fn process_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

impl Sample {
    /// Reads the counters now; `broker` is the broker's process id, when known.
    pub fn take(broker: Option<u32>) -> Option<Sample> {
        Some(Sample {
            at: Instant::now(),
            busy_all: busy_all()?,
            broker: broker.and_then(|pid| process_ticks(&format!("/proc/{pid}/stat"))),
            own: process_ticks("/proc/self/stat")?,
            postgres: postgres_ticks(),
            broker_wait_ns: broker.and_then(|pid| run_queue_wait(&pid.to_string())),
            own_wait_ns: run_queue_wait("self"),
        })
    }

    /// The usage from `self` to `later`.
    pub fn usage_until(&self, later: &Sample) -> Usage {
        let seconds = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / seconds;
        let all = later.busy_all.saturating_sub(self.busy_all);
        let own = later.own.saturating_sub(self.own);
        let broker = match (self.broker, later.broker) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        // A backend that started during the run counts from zero, which is all of its time.
        let postgres: u64 = later
            .postgres
            .iter()
            .map(|(pid, &t)| t.saturating_sub(self.postgres.get(pid).copied().unwrap_or(0)))
            .sum();
        let has_postgres = !later.postgres.is_empty();
        let waiting = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9 / seconds),
            _ => None,
        };
        Usage {
            broker_cores: broker.map(cores),
            loadgen_cores: cores(own),
            postgres_cores: has_postgres.then(|| cores(postgres)),
            other_cores: cores(all.saturating_sub(own + broker.unwrap_or(0) + postgres)),
            broker_run_queue: waiting(self.broker_wait_ns, later.broker_wait_ns),
            loadgen_run_queue: waiting(self.own_wait_ns, later.own_wait_ns),
            seconds,
        }
    }
}

/// Usage between `start` and now, when both samples could be read.
pub fn since(start: Option<Sample>, broker: Option<u32>) -> Option<Usage> {
    let start = start?;
    let end = Sample::take(broker)?;
    Some(start.usage_until(&end))
}

/// CPU time of the calling thread in nanoseconds (first field of its `schedstat`).
///
/// The kernel brings this figure up to date when the thread leaves the CPU, so it is exact
/// right after a blocking call and may lag by up to a scheduler tick otherwise.
pub fn thread_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
