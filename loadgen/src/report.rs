//! `loadgen report`: turns the JSON results of `loadgen/run.sh` into one markdown table with a
//! column per broker, so that the figures in `docs/benchmarks.md` are printed, not retyped.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The result files `loadgen/run.sh` writes into each broker's directory, and how to show them.
const ROWS: [(&str, &str); 6] = [
    ("fanout-100", "fan-out 1→100, max rate"),
    ("fanout-1000", "fan-out 1→1000, max rate"),
    ("fanout-1000-10", "fan-out 1→1000 at 10 msg/s"),
    ("pairs-topic", "100 pairs via /topic, max rate"),
    ("pairs-queue", "100 pairs via /queue, max rate"),
    ("idle", "idle connections"),
];

/// One broker's column: a heading and the directory holding its JSON files.
#[derive(Clone, Debug)]
pub struct Column {
    /// The heading.
    pub name: String,
    /// Where its `<scenario>.json` files are.
    pub dir: PathBuf,
}

/// Parses `NAME=DIR`.
///
/// # Errors
///
/// When there is no `=`.
pub fn parse_column(text: &str) -> Result<Column, String> {
    let (name, dir) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=DIR, got {text:?}"))?;
    Ok(Column {
        name: name.to_owned(),
        dir: PathBuf::from(dir),
    })
}

fn load(dir: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn number(value: &Value, key: &str) -> Option<f64> {
    value.get(key).and_then(Value::as_f64)
}

/// 1234567 as `1,234,567`.
fn grouped(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(n: f64) -> String {
    if n >= 100.0 {
        format!("{n:.0}")
    } else if n >= 10.0 {
        format!("{n:.1}")
    } else {
        format!("{n:.2}")
    }
}

/// The cells of one scenario for one broker: (measure, text) pairs.
fn cells(name: &str, value: Option<&Value>) -> Vec<(&'static str, String)> {
    let Some(v) = value else {
        return vec![("result", "not run".to_owned())];
    };
    let get = |key: &str| number(v, key).unwrap_or(0.0);
    let latency = |key: &str| v.get("latency").and_then(|l| number(l, key)).unwrap_or(0.0);
    let failures = {
        let errors = get("errors");
        if errors > 0.0 {
            let first = v
                .get("error_samples")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .unwrap_or("");
            format!("{} ({first})", grouped(errors))
        } else {
            "0".to_owned()
        }
    };
    if name == "idle" {
        let mut rows = vec![
            (
                "sessions open / alive after hold",
                format!(
                    "{} / {} of {}",
                    grouped(get("connected")),
                    grouped(get("alive_after_hold")),
                    grouped(get("connections"))
                ),
            ),
            (
                "time to open all",
                format!("{:.1} s", get("connect_seconds")),
            ),
        ];
        if let (Some(before), Some(after)) =
            (number(v, "rss_before_kib"), number(v, "rss_after_kib"))
        {
            rows.push((
                "broker RSS before → after",
                format!("{:.1} → {:.1} MiB", before / 1024.0, after / 1024.0),
            ));
            rows.push((
                "RSS per connection",
                format!("{:.2} KiB", get("rss_bytes_per_connection") / 1024.0),
            ));
        }
        rows.push(("errors", failures));
        rows.extend(cores(v));
        return rows;
    }
    let throughput = if name.starts_with("fanout") {
        ("deliveries/s", grouped(get("deliveries_per_sec")))
    } else {
        ("messages/s", grouped(get("deliveries_per_sec")))
    };
    let mut rows = Vec::new();
    if name == "fanout-1000-10" {
        rows.push((
            "latency p50 / p99 / max",
            format!(
                "{} / {} / {} ms",
                ms(latency("p50_ms")),
                ms(latency("p99_ms")),
                ms(latency("max_ms"))
            ),
        ));
    } else {
        rows.push(throughput);
        rows.push((
            "latency p50 / p99",
            format!("{} / {} ms", ms(latency("p50_ms")), ms(latency("p99_ms"))),
        ));
    }
    rows.push((
        "lost",
        format!("{} of {}", grouped(get("lost")), grouped(get("expected"))),
    ));
    rows.push(("errors", failures));
    rows.extend(cores(v));
    rows
}

/// Cores busy (broker, loadgen, others) and threads waiting for a CPU, when recorded.
fn cores(v: &Value) -> Option<(&'static str, String)> {
    let cpu = v.get("cpu")?;
    let get = |key: &str| cpu.get(key).and_then(Value::as_f64);
    let broker = get("broker_cores").map_or_else(|| "?".to_owned(), |c| format!("{c:.2}"));
    let waiting = match (get("broker_run_queue"), get("loadgen_run_queue")) {
        (Some(b), Some(l)) => format!("; {b:.2} / {l:.2}"),
        _ => String::new(),
    };
    Some((
        "cores busy (broker / loadgen / others); waiting for a CPU (broker / loadgen)",
        format!(
            "{broker} / {:.2} / {:.2}{waiting}",
            get("loadgen_cores").unwrap_or(0.0),
            get("other_cores").unwrap_or(0.0)
        ),
    ))
}

/// The markdown table, one column per broker.
pub fn table(columns: &[Column]) -> String {
    let mut out = String::from("| scenario | measure |");
    for column in columns {
        out.push_str(&format!(" {} |", column.name));
    }
    out.push_str("\n|---|---|");
    for _ in columns {
        out.push_str("---:|");
    }
    out.push('\n');
    for (file, title) in ROWS {
        let per_column: Vec<Vec<(&str, String)>> = columns
            .iter()
            .map(|c| cells(file, load(&c.dir, file).as_ref()))
            .collect();
        // Measures are the same for every broker that ran; take the longest list as the guide.
        let guide = per_column
            .iter()
            .max_by_key(|c| c.len())
            .cloned()
            .unwrap_or_default();
        for (index, (measure, _)) in guide.iter().enumerate() {
            let heading = if index == 0 { title } else { "" };
            out.push_str(&format!("| {heading} | {measure} |"));
            for cells in &per_column {
                let text = cells
                    .iter()
                    .find(|(m, _)| m == measure)
                    .map_or("–", |(_, t)| t.as_str());
                out.push_str(&format!(" {text} |"));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(1000.0), "1,000");
        assert_eq!(grouped(1234567.4), "1,234,567");
    }

    #[test]
    fn missing_results_say_so() {
        assert_eq!(
            cells("fanout-100", None),
            vec![("result", "not run".to_owned())]
        );
    }
}
