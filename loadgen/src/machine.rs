//! What every JSON result records besides its figures: the command line that produced it (so
//! a figure in the docs can be reproduced exactly) and the machine it ran on (cores, CPU
//! model, kernel, load average at the end of the run), since figures from different machines,
//! or from one machine under different load, do not compare.

use serde_json::{Value, json};

/// Options whose value is a credential: written as `***` in the recorded command line.
const SECRET_OPTIONS: [&str; 3] = ["--jwt-secret", "--token", "--passcode"];

/// The command line, with credentials masked.
pub fn command_line(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut mask_next = false;
    for arg in args {
        if mask_next {
            out.push("***".to_owned());
            mask_next = false;
            continue;
        }
        if let Some((name, _)) = arg.split_once('=')
            && SECRET_OPTIONS.contains(&name)
        {
            out.push(format!("{name}=***"));
            continue;
        }
        mask_next = SECRET_OPTIONS.contains(&arg.as_str());
        out.push(arg);
    }
    out
}

/// The machine, read from `/proc` (fields missing elsewhere are null).
pub fn describe() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cpu_model = read("/proc/cpuinfo").and_then(|info| {
        info.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, model)| model.trim().to_owned())
    });
    let load_average: Option<Vec<f64>> = read("/proc/loadavg").map(|text| {
        text.split_whitespace()
            .take(3)
            .filter_map(|f| f.parse().ok())
            .collect()
    });
    let finished_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "cpu_model": cpu_model,
        "kernel": read("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()),
        "load_average": load_average,
        "finished_unix": finished_unix,
    })
}

/// `value` (a report) with `command` and `machine` added when it is a JSON object.
pub fn annotate(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.insert("command".to_owned(), json!(command_line(std::env::args())));
        object.insert("machine".to_owned(), describe());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_in_the_command_line() {
        let args = [
            "loadgen",
            "--jwt-secret",
            "s3",
            "--token=abc",
            "im",
            "--pairs",
            "10",
        ];
        assert_eq!(
            command_line(args.map(str::to_owned)),
            vec![
                "loadgen",
                "--jwt-secret",
                "***",
                "--token=***",
                "im",
                "--pairs",
                "10"
            ]
        );
    }
}
