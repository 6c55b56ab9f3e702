//! What the broker asks of the operating system at start: as many open files as it may have.
//! Every connection is a descriptor, and the usual soft limit (1024) is far below
//! `server.max_connections`; past it, accepts fail and even `/healthz` stops answering. And
//! what it reads of itself for `/metrics`: memory, descriptors, CPU time.

/// The open-file limits before and after [`raise_open_file_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit found at start.
    pub was: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit, which only a privileged process may raise.
    pub hard: u64,
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit.
///
/// # Errors
///
/// The system's error when the limits cannot be read or set.
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    let (was, hard) = rlimit::Resource::NOFILE.get()?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    Ok(OpenFileLimit { was, soft, hard })
}

/// This process's resource use, as Prometheus' standard `process_*` series: read from `/proc`
/// on each scrape (Linux; elsewhere the series are absent).
pub fn process_metrics() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut series = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok());
        if let Some(kib) = rss_kib {
            series(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                kib * 1024.0,
            );
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        #[allow(clippy::cast_precision_loss)]
        let open = entries.count() as f64;
        series(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            open,
        );
    }
    if let Ok((soft, _)) = rlimit::Resource::NOFILE.get() {
        #[allow(clippy::cast_precision_loss)]
        let soft = soft as f64;
        series(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            soft,
        );
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces, in parentheses): utime and
        // stime are the 12th and 13th, in clock ticks of 1/100 s on Linux.
        let ticks: Option<f64> = stat.rsplit_once(')').and_then(|(_, rest)| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user = fields.get(11)?.parse::<f64>().ok()?;
            let system = fields.get(12)?.parse::<f64>().ok()?;
            Some(user + system)
        });
        if let Some(ticks) = ticks {
            series(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                ticks / 100.0,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        let limit = raise_open_file_limit().unwrap();
        assert!(limit.soft >= limit.was, "{limit:?}");
        assert_eq!(limit.soft, limit.hard, "{limit:?}");
        let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(soft, limit.soft);
    }

    #[test]
    fn process_metrics_read_this_process() {
        let text = process_metrics();
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_cpu_seconds_total",
        ] {
            let value = text
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse::<f64>().ok());
            assert!(value.is_some_and(|v| v >= 0.0), "{name} in {text}");
        }
    }
}
