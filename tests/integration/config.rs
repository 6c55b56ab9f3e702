//! Configuration errors, and the `broker` binary: bad configurations, `broker token`, and the
//! log line per listener.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::TestBroker;
use broker::config::Config;
use stomp_codec::Frame;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    common::env(pairs)
}

fn config_error(text: &str, pairs: &[(&str, &str)]) -> String {
    Config::from_toml("test.toml", text, env(pairs))
        .expect_err("the configuration is refused")
        .to_string()
}

fn assert_one_line(message: &str) {
    assert!(!message.is_empty());
    assert!(!message.contains('\n'), "{message:?}");
}

#[test]
fn toml_syntax_error_is_one_line_naming_the_file() {
    let message = config_error("[server\nhttp_addr = \n", &[]);
    assert_one_line(&message);
    assert!(message.starts_with("test.toml"), "{message}");
}

#[test]
fn wrong_type_is_one_line_naming_the_key() {
    let message = config_error("[limits]\nmax_frame_bytes = \"big\"\n", &[]);
    assert_one_line(&message);
    assert!(message.contains("max_frame_bytes"), "{message}");
}

#[test]
fn unknown_section_is_refused_on_one_line() {
    let message = config_error("[serverr]\nhttp_addr = \"127.0.0.1:1\"\n", &[]);
    assert_one_line(&message);
    assert!(message.contains("serverr"), "{message}");
}

#[test]
fn unknown_key_is_refused_on_one_line() {
    let message = config_error("[limits]\nmax_frames = 3\n", &[]);
    assert_one_line(&message);
    assert!(message.contains("max_frames"), "{message}");
}

#[test]
fn invalid_address_is_refused_on_one_line() {
    let message = config_error("", &[("BROKER_SERVER_HTTP_ADDR", "localhost-ish")]);
    assert_one_line(&message);
}

#[test]
fn override_of_a_section_the_broker_lacks_is_left_to_other_tools() {
    // Other tools (test harnesses, deployment scripts) share the BROKER_ prefix.
    let config = Config::from_toml("test.toml", "", env(&[("BROKER_NOPE_KEY", "1")]))
        .expect("the variable is ignored");
    assert_eq!(config.limits.max_frame_bytes, 65536);
}

#[test]
fn kubernetes_service_variables_are_ignored_and_named() {
    // A Service named `broker` gives every pod of its namespace these.
    let config = Config::from_toml(
        "test.toml",
        "",
        env(&[
            ("BROKER_PORT", "tcp://10.0.0.1:8080"),
            ("BROKER_SERVICE_HOST", "10.0.0.1"),
            ("BROKER_SERVICE_PORT", "8080"),
            ("BROKER_PORT_8080_TCP_ADDR", "10.0.0.1"),
        ]),
    )
    .expect("the variables are ignored");
    assert_eq!(
        config.ignored_env,
        [
            "BROKER_PORT",
            "BROKER_PORT_8080_TCP_ADDR",
            "BROKER_SERVICE_HOST",
            "BROKER_SERVICE_PORT"
        ]
    );
}

#[test]
fn check_config_prints_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = broker_command(dir.path());
    command
        .arg("check-config")
        .env("BROKER_AUTH_JWT_SECRET", "topsecret")
        .env(
            "BROKER_STORAGE_URL",
            "postgres://app:hunter2@db.internal/chat",
        )
        .env("BROKER_LIMITS_MAX_HEADERS", "9")
        .env("BROKER_PORT", "tcp://10.0.0.1:8080");
    let output = run_to_end(command);
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    let effective: toml::Table = printed.parse().expect("TOML");
    assert_eq!(effective["limits"]["max_headers"].as_integer(), Some(9));
    assert_eq!(effective["auth"]["jwt_secret"].as_str(), Some("<redacted>"));
    assert!(
        !printed.contains("topsecret") && !printed.contains("hunter2"),
        "{printed}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BROKER_PORT"), "{stderr}");

    let mut command = broker_command(dir.path());
    command
        .arg("check-config")
        .env("BROKER_LIMITS_MAX_HEADERS", "0");
    assert_fails_with_one_line(&run_to_end(command), "max_headers");
}

#[test]
fn version_names_the_package_version() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = broker_command(dir.path());
    command.arg("--version");
    let output = run_to_end(command);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("broker {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn override_of_an_unknown_key_is_refused() {
    let message = config_error("", &[("BROKER_SERVER_NOPE", "1")]);
    assert_one_line(&message);
    assert!(message.contains("nope"), "{message}");
}

#[test]
fn zero_limit_is_refused_on_one_line() {
    let message = config_error("", &[("BROKER_LIMITS_MAX_FRAME_BYTES", "0")]);
    assert_one_line(&message);
    assert!(message.contains("limits.max_frame_bytes"), "{message}");
}

#[test]
fn malformed_heartbeat_is_refused_on_one_line() {
    let message = config_error("[stomp]\nheartbeat_ms = \"1,2,3\"\n", &[]);
    assert_one_line(&message);
}

#[test]
fn dev_login_on_a_public_address_is_refused_on_one_line() {
    let message = config_error(
        "[server]\nhttp_addr = \"0.0.0.0:8080\"\n[auth]\ndev_login = true\n",
        &[],
    );
    assert_one_line(&message);
    assert!(message.contains("auth.dev_login"), "{message}");
}

#[test]
fn an_external_url_prefix_that_is_not_a_plain_https_url_is_refused_on_one_line() {
    for prefix in [
        "http://cdn.example/",
        "https://user@cdn.example/",
        "https://cdn.example/a/../b",
        "cdn.example",
    ] {
        let text = format!("[files]\nexternal_url_prefixes = [\"{prefix}\"]\n");
        let message = config_error(&text, &[]);
        assert_one_line(&message);
        assert!(message.contains("files.external_url_prefixes"), "{message}");
    }
    let pairs = env(&[(
        "BROKER_FILES_EXTERNAL_URL_PREFIXES",
        r#"["https://cdn.example/media/"]"#,
    )]);
    let config = Config::from_toml("test", "", pairs).expect("a plain prefix");
    assert_eq!(
        config.files.external_url_prefixes,
        ["https://cdn.example/media/"]
    );
}

#[test]
fn a_leeway_over_five_minutes_is_refused_on_one_line() {
    let message = config_error("[auth]\nleeway_s = 301\n", &[]);
    assert_one_line(&message);
    assert!(message.contains("auth.leeway_s"), "{message}");
    let config = Config::from_toml("test", "[auth]\nleeway_s = 300\n", env(&[])).unwrap();
    assert_eq!(config.auth.leeway_s, 300);
}

#[test]
fn invalid_node_id_is_refused_on_one_line() {
    let message = config_error("", &[("BROKER_CLUSTER_NODE_ID", "has space")]);
    assert_one_line(&message);
}

#[test]
fn missing_config_file_is_refused_on_one_line() {
    let message = Config::load(Some(Path::new("/nonexistent/broker.toml")), Vec::new())
        .expect_err("refused")
        .to_string();
    assert_one_line(&message);
    assert!(message.contains("/nonexistent/broker.toml"), "{message}");
}

#[test]
fn partial_file_keeps_the_other_defaults() {
    let config = Config::from_toml("t", "[limits]\nmax_headers = 7\n", Vec::new()).expect("ok");
    assert_eq!(config.limits.max_headers, 7);
    assert_eq!(config.limits.max_frame_bytes, 65536);
    assert_eq!(config.server.shutdown_grace_ms, 5000);
}

#[test]
fn environment_override_beats_the_file() {
    let config = Config::from_toml(
        "t",
        "[limits]\nmax_headers = 7\n",
        env(&[("BROKER_LIMITS_MAX_HEADERS", "9")]),
    )
    .expect("ok");
    assert_eq!(config.limits.max_headers, 9);
}

/// The binary with a clean environment (no BROKER_* from outside) in `dir`.
fn broker_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_broker"));
    command.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("BROKER_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

/// Runs the binary to completion, at most 20 s.
fn run_to_end(mut command: Command) -> std::process::Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn broker");
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    wait.recv_timeout(Duration::from_secs(20))
        .expect("the broker exits")
        .expect("output")
}

fn assert_fails_with_one_line(output: &std::process::Output, contains: &str) {
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    assert!(lines[0].starts_with("broker: "), "{stderr:?}");
    assert!(lines[0].contains(contains), "{stderr:?}");
}

#[test]
fn binary_with_a_bad_config_file_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nhttp_addr = 8080\n[[[\n",
    )
    .expect("write");
    let mut command = broker_command(dir.path());
    command.args(["--config", "bad.toml"]);
    let output = run_to_end(command);
    assert_fails_with_one_line(&output, "bad.toml");
}

#[test]
fn binary_with_a_bad_implicit_broker_toml_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("broker.toml"),
        "[limits]\nmax_frame_bytes = -1\n",
    )
    .expect("write");
    let output = run_to_end(broker_command(dir.path()));
    assert_fails_with_one_line(&output, "broker.toml");
}

#[test]
fn binary_with_a_missing_config_file_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = broker_command(dir.path());
    command.args(["--config", "missing.toml"]);
    let output = run_to_end(command);
    assert_fails_with_one_line(&output, "missing.toml");
}

#[test]
fn binary_with_a_bad_environment_override_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = broker_command(dir.path());
    command.env("BROKER_LIMITS_MAX_OUTBOUND_BYTES", "0");
    let output = run_to_end(command);
    assert_fails_with_one_line(&output, "limits.max_outbound_bytes");
}

#[test]
fn binary_that_cannot_bind_exits_non_zero_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("dir");
    let mut command = broker_command(dir.path());
    command
        .env("BROKER_SERVER_HTTP_ADDR", &addr)
        .env("BROKER_AUTH_JWT_SECRET", "s");
    let output = run_to_end(command);
    assert_fails_with_one_line(&output, &addr);
}

fn mint_with_binary(dir: &Path, secret_file: &Path, args: &[&str]) -> std::process::Output {
    let mut command = broker_command(dir);
    command
        .arg("token")
        .args(args)
        .env("BROKER_AUTH_GENERATED_SECRET_FILE", secret_file);
    run_to_end(command)
}

#[tokio::test]
async fn token_command_prints_a_token_the_server_accepts() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secrets").join("jwt-secret");
    let output = mint_with_binary(
        dir.path(),
        &secret,
        &["--sub", "alice", "--role", "system", "--ttl", "1h"],
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let token = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let broker = TestBroker::start_with_secret_file(&secret, &[]).await;
    let mut client = broker.ws_raw().await;
    let connected = client.connect(token).await;
    assert_eq!(connected.get("user-name"), Some("alice"));
    // Role system: may publish announcements.
    client
        .send_with_receipt("/topic/announcements", "from the CLI", "r")
        .await;
}

#[tokio::test]
async fn token_command_uses_the_secret_a_server_generated() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("jwt-secret");
    let broker = TestBroker::start_with_secret_file(&secret, &[]).await;
    assert!(secret.exists(), "the server generated its secret");
    let output = mint_with_binary(dir.path(), &secret, &["--sub", "bob"]);
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("UTF-8");
    let mut client = broker.ws_raw().await;
    let connected = client.connect(token.trim()).await;
    assert_eq!(connected.get("user-name"), Some("bob"));
    // The default role is user: announcements are read-only.
    client.publish("/topic/announcements", "x").await;
    client.expect_error("forbidden").await;
}

#[tokio::test]
async fn token_command_ttl_sets_the_expiry() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("jwt-secret");
    let output = mint_with_binary(dir.path(), &secret, &["--sub", "carol", "--ttl", "2h"]);
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("UTF-8");
    let broker = TestBroker::start_with_secret_file(&secret, &[]).await;
    let identity = broker.server.auth().verify(token.trim()).expect("valid");
    let left = identity
        .expires_at
        .duration_since(std::time::SystemTime::now())
        .expect("in the future");
    assert!(left > Duration::from_secs(7200 - 60), "{left:?}");
    assert!(left <= Duration::from_secs(7200), "{left:?}");
}

#[test]
fn token_command_refuses_an_unknown_role_with_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("jwt-secret");
    let output = mint_with_binary(dir.path(), &secret, &["--sub", "alice", "--role", "root"]);
    assert_fails_with_one_line(&output, "root");
}

#[test]
fn token_command_refuses_a_bad_ttl_with_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("jwt-secret");
    let output = mint_with_binary(dir.path(), &secret, &["--sub", "alice", "--ttl", "soon"]);
    assert_fails_with_one_line(&output, "soon");
}

#[test]
fn token_command_refuses_an_invalid_sub_with_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("jwt-secret");
    let output = mint_with_binary(dir.path(), &secret, &["--sub", "a_b"]);
    assert_fails_with_one_line(&output, "a_b");
}

/// Kills the child when dropped, so that a failing test leaves no broker behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address after `addr=` in a log line.
fn logged_addr(line: &str) -> SocketAddr {
    let rest = &line[line.find("addr=").expect("addr= in the line") + 5..];
    rest.split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an address in {line:?}"))
}

#[tokio::test]
async fn binary_logs_one_line_per_listener_with_the_real_address() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = broker_command(dir.path());
    command
        .env("BROKER_SERVER_HTTP_ADDR", "127.0.0.1:0")
        .env("BROKER_SERVER_STOMP_TCP_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Running(command.spawn().expect("spawn broker"));
    let (lines, received) = mpsc::channel::<String>();
    let stdout = child.0.stdout.take().expect("stdout");
    let stderr = child.0.stderr.take().expect("stderr");
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if lines.send(plain(&line)).is_err() {
                    return;
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut http = Vec::new();
    let mut stomp = Vec::new();
    let mut seen = Vec::new();
    while http.is_empty() || stomp.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = received
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no listener lines; saw {seen:?}"));
        if line.contains("listening for HTTP") {
            http.push(logged_addr(&line));
        } else if line.contains("listening for STOMP over TCP") {
            stomp.push(logged_addr(&line));
        }
        seen.push(line);
    }
    // A moment for any duplicate line to show up.
    while let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
        assert!(
            !line.contains("listening for"),
            "one line per listener: {line}"
        );
    }
    let (http, stomp) = (http[0], stomp[0]);
    assert_ne!(http.port(), 0);
    assert_ne!(stomp.port(), 0);
    let (status, _) = common::http_get(http, "/healthz").await;
    assert_eq!(status, 200);
    // The logged STOMP address speaks STOMP (a CONNECT without a token is refused).
    let mut client = common::Client::tcp(stomp).await;
    client
        .send(&Frame::new(stomp_codec::Command::Connect).header("accept-version", "1.2"))
        .await;
    client.expect_error("unauthorized").await;
    drop(child);
}

#[cfg(unix)]
#[tokio::test]
async fn a_generated_secret_and_its_new_directory_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secrets/jwt-secret");
    let _broker = TestBroker::start_with_secret_file(&secret, &[]).await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(mode(&dir.path().join("secrets")), 0o700);
}

/// Runs the binary with `vars`; everything it printed, on both streams.
fn printed(args: &[&str], vars: &[(&str, &str)]) -> (std::process::Output, String) {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = broker_command(dir.path());
    command
        .args(args)
        .env("BROKER_SERVER_HTTP_ADDR", "127.0.0.1:0")
        .env("BROKER_AUTH_JWT_SECRET", "s")
        .env("RUST_LOG", "debug");
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = run_to_end(command);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

#[test]
fn a_start_that_cannot_reach_its_services_never_prints_their_passwords() {
    for (name, url, password) in [
        (
            "BROKER_STORAGE_URL",
            "postgres://broker:pg-s3cret-pw@127.0.0.1:1/broker",
            "pg-s3cret-pw",
        ),
        (
            "BROKER_PRESENCE_REDIS_URL",
            "redis://:redis-s3cret-pw@127.0.0.1:1/0",
            "redis-s3cret-pw",
        ),
        // Not a URL lapin can parse: its error quotes it whole.
        (
            "BROKER_RELAY_AMQP_URL",
            "amqp:guest:rabbit-s3cret-pw@127.0.0.1:1",
            "rabbit-s3cret-pw",
        ),
        (
            "BROKER_RELAY_AMQP_URL",
            "amqp://guest:rabbit-s3cret-pw@127.0.0.1:1/%2f",
            "rabbit-s3cret-pw",
        ),
    ] {
        let (output, text) = printed(&[], &[(name, url)]);
        assert!(!output.status.success(), "{name}: {text}");
        assert!(
            !text.contains(password),
            "{name} printed its password: {text}"
        );
    }
}

#[test]
fn migrate_never_prints_the_storage_password() {
    let (output, text) = printed(
        &["migrate"],
        &[(
            "BROKER_STORAGE_URL",
            "postgres://broker:pg-s3cret-pw@127.0.0.1:1/broker",
        )],
    );
    assert!(!output.status.success(), "{text}");
    assert!(!text.contains("pg-s3cret-pw"), "{text}");
}

#[test]
fn a_config_file_error_never_prints_a_password_it_quotes() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("bad.toml"),
        "[storage]\nurl = \"postgres://broker:pg-s3cret-pw@db/broker\n",
    )
    .expect("write");
    let mut command = broker_command(dir.path());
    command.args(["--config", "bad.toml"]);
    let output = run_to_end(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("pg-s3cret-pw"), "{stderr}");
}

#[test]
fn zero_http_upload_and_image_limits_are_refused_on_one_line() {
    for (key, variable) in [
        (
            "server.max_http_connections",
            "BROKER_SERVER_MAX_HTTP_CONNECTIONS",
        ),
        (
            "server.request_timeout_ms",
            "BROKER_SERVER_REQUEST_TIMEOUT_MS",
        ),
        ("limits.json_max_bytes", "BROKER_LIMITS_JSON_MAX_BYTES"),
        ("files.image_max_pixels", "BROKER_FILES_IMAGE_MAX_PIXELS"),
        (
            "files.quota_bytes_per_day",
            "BROKER_FILES_QUOTA_BYTES_PER_DAY",
        ),
    ] {
        let message = config_error("", &[(variable, "0")]);
        assert_one_line(&message);
        assert!(message.contains(key), "{key}: {message}");
    }
    let message = config_error("", &[("BROKER_LIMITS_UPLOAD_RATE", "often")]);
    assert!(message.contains("often"), "{message}");
}

#[test]
fn the_hardening_keys_have_their_shipped_defaults() {
    let config = Config::from_toml("test", "", env(&[])).expect("defaults");
    assert_eq!(config.server.max_http_connections, 10_000);
    assert_eq!(config.server.request_timeout_ms, 60_000);
    assert_eq!(config.server.metrics_addr, None);
    assert_eq!(config.limits.json_max_bytes, 65_536);
    assert_eq!(
        (
            config.limits.upload_rate.count,
            config.limits.upload_rate.per
        ),
        (60, Duration::from_secs(600))
    );
    assert_eq!(config.files.image_max_pixels, 40_000_000);
    assert_eq!(config.files.quota_bytes_per_day, 1_073_741_824);
}
