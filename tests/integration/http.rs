//! The HTTP side of the listener: health, readiness, metrics, and the WebSocket endpoint's
//! answers to requests that are not upgrades.

use crate::common;

use crate::common::{TestBroker, metric_value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw_request(broker: &TestBroker, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(broker.http_addr())
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn healthz_answers_200() {
    let broker = TestBroker::start().await;
    let (status, body) = broker.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body.trim(), "ok");
}

#[tokio::test]
async fn readyz_answers_200_on_a_single_node() {
    let broker = TestBroker::start().await;
    let (status, _) = broker.get("/readyz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn metrics_name_the_core_series() {
    let broker = TestBroker::start().await;
    // Some traffic, so that every series has been touched.
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    let text = broker.metrics().await;
    for name in [
        "broker_connections",
        "broker_frames_in_total{command=\"SEND\"}",
        "broker_frames_in_total{command=\"SUBSCRIBE\"}",
        "broker_stomp_errors_total",
        "broker_slow_consumer_cuts_total",
        "broker_deliveries_total",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
}

#[tokio::test]
async fn metrics_count_frames_in_by_command() {
    let broker = TestBroker::start().await;
    let series = r#"broker_frames_in_total{command="SEND"}"#;
    let before = broker.metric(series).await;
    let mut backend = broker.ws_system("backend").await;
    for i in 0..3 {
        backend
            .send_with_receipt("/topic/news", "x", &format!("r{i}"))
            .await;
    }
    let after = broker.metric(series).await;
    assert!(after >= before + 3.0, "{before} -> {after}");
}

#[tokio::test]
async fn metrics_gauge_open_connections() {
    let broker = TestBroker::start().await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut client = broker.ws(&format!("user{i}")).await;
        client.ping("open").await;
        clients.push(client);
    }
    let text = broker.metrics().await;
    let open = metric_value(&text, "broker_connections").expect("gauge present");
    assert!(open >= 3.0, "{open}");
}

#[tokio::test]
async fn metrics_count_stomp_errors_by_reason() {
    let broker = TestBroker::start().await;
    let series = r#"broker_stomp_errors_total{reason="malformed"}"#;
    let before = broker.metric(series).await;
    let mut client = broker.ws("alice").await;
    client.send_raw(b"NOPE\n\n\0").await;
    client.expect_error("unknown command").await;
    let after = broker.metric(series).await;
    assert!(after > before, "{before} -> {after}");
}

#[tokio::test]
async fn metrics_count_auth_failures() {
    let broker = TestBroker::start().await;
    let before = broker.metric("broker_auth_failures_total").await;
    let mut client = broker.ws_raw().await;
    client
        .send(&common::connect_frame(
            stomp_codec::Command::Connect,
            &[("accept-version", "1.2"), ("passcode", "bad")],
        ))
        .await;
    client.expect_error("unauthorized").await;
    let after = broker.metric("broker_auth_failures_total").await;
    assert!(after > before, "{before} -> {after}");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let broker = TestBroker::start().await;
    let (status, text) = raw_request(
        &broker,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
}

#[tokio::test]
async fn plain_get_of_the_websocket_endpoint_is_426() {
    let broker = TestBroker::start().await;
    let (status, body) = broker.get("/ws/im").await;
    assert_eq!(status, 426);
    assert!(body.contains("WebSocket"), "{body}");
}

#[tokio::test]
async fn upgrade_without_connection_upgrade_is_426() {
    let broker = TestBroker::start().await;
    let (status, _) = raw_request(
        &broker,
        "GET /ws/im HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 426);
}

#[tokio::test]
async fn upgrade_with_an_unsupported_websocket_version_is_400() {
    let broker = TestBroker::start().await;
    let (status, _) = raw_request(
        &broker,
        "GET /ws/im HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
         Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn upgrade_answers_101_with_the_accept_key() {
    let broker = TestBroker::start().await;
    let mut stream = tokio::net::TcpStream::connect(broker.http_addr())
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /ws/im HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Protocol: v11.stomp\r\n\r\n",
        )
        .await
        .expect("write");
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(common::WAIT, stream.read(&mut head))
        .await
        .expect("in time")
        .expect("read");
    let text = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 101"), "{text}");
    // The RFC 6455 example key and its accept value.
    assert!(
        text.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{text}"
    );
    assert!(text.contains("sec-websocket-protocol: v11.stomp"), "{text}");
}

#[tokio::test]
async fn root_serves_a_page() {
    let broker = TestBroker::start().await;
    let (status, body) = broker.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("/ws/im"), "{body}");
}

#[tokio::test]
async fn unknown_path_is_404() {
    let broker = TestBroker::start().await;
    let (status, _) = broker.get("/nope").await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------------------------
// Hostile HTTP clients: connection cap, request timeout, body limits (section 1 of the
// contract's hardening).
// ---------------------------------------------------------------------------------------------

/// Sends `head` (a whole request head) and what follows of the body, then reads until the
/// server closes; the time the close took, and what was read.
async fn stall_then_read(
    mut stream: tokio::net::TcpStream,
    wait: std::time::Duration,
) -> (std::time::Duration, String) {
    let started = std::time::Instant::now();
    let mut response = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut response))
        .await
        .expect("the server closes the stalled connection")
        .expect("read");
    (
        started.elapsed(),
        String::from_utf8_lossy(&response).into_owned(),
    )
}

async fn send_head(addr: std::net::SocketAddr, head: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

#[tokio::test]
async fn stalled_uploads_do_not_stop_healthz_and_are_closed_after_the_request_timeout() {
    let database = common::db::sqlite();
    let timeout_ms = 2000;
    let broker = TestBroker::start_im(
        &database.url,
        &[("BROKER_SERVER_REQUEST_TIMEOUT_MS", &timeout_ms.to_string())],
    )
    .await;
    let token = broker.token("mallory");
    let head = format!(
        "POST /api/v1/files?name=x.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\nfirst bytes"
    );
    let mut stalled = Vec::new();
    for _ in 0..60 {
        stalled.push(send_head(broker.http_addr(), &head).await);
    }
    let (status, _) = broker.get("/healthz").await;
    assert_eq!(status, 200, "/healthz answers beside 60 stalled uploads");

    let bound = std::time::Duration::from_millis(2 * timeout_ms);
    let closes = stalled
        .into_iter()
        .map(|stream| tokio::spawn(stall_then_read(stream, common::WAIT + bound)));
    for close in closes {
        let (took, response) = close.await.unwrap();
        assert!(took <= bound, "closed after {took:?}, over {bound:?}");
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("\"REQUEST_TIMEOUT\""), "{response}");
    }
}

#[tokio::test]
async fn http_connections_beyond_the_cap_are_refused_at_accept() {
    let broker = TestBroker::start_env(&[("BROKER_SERVER_MAX_HTTP_CONNECTIONS", "4")]).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(send_head(broker.http_addr(), "GET /healthz HTTP/1.1\r\nHost").await);
    }
    let refused = send_head(broker.http_addr(), "").await;
    let (_, response) = stall_then_read(refused, common::WAIT).await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("\"UNAVAILABLE\""), "{response}");

    // A slot given back is free for the next connection.
    held.pop();
    let mut answered = false;
    for _ in 0..50 {
        let stream = send_head(
            broker.http_addr(),
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (_, response) = stall_then_read(stream, common::WAIT).await;
        if response.starts_with("HTTP/1.1 200") {
            answered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(answered, "a freed slot takes a new connection");
}

#[tokio::test]
async fn websocket_sessions_do_not_hold_http_connection_slots() {
    let broker = TestBroker::start_env(&[("BROKER_SERVER_MAX_HTTP_CONNECTIONS", "2")]).await;
    let mut sessions = Vec::new();
    for i in 0..4 {
        let mut session = broker.ws(&format!("user{i}")).await;
        session.ping("open").await;
        sessions.push(session);
    }
    let (status, _) = broker.get("/healthz").await;
    assert_eq!(
        status, 200,
        "four sessions open on a budget of two HTTP connections"
    );
}

#[tokio::test]
async fn a_rest_body_over_the_json_limit_is_refused_by_its_content_length() {
    let database = common::db::sqlite();
    let broker =
        TestBroker::start_im(&database.url, &[("BROKER_LIMITS_JSON_MAX_BYTES", "1000")]).await;
    let token = broker.token("mallory");
    // The head alone: the answer must come without the body being sent.
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    );
    let stream = send_head(broker.http_addr(), &head).await;
    let (_, response) = stall_then_read(stream, common::WAIT).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"PAYLOAD_TOO_LARGE\""), "{response}");
}

#[tokio::test]
async fn a_chunked_rest_body_over_the_json_limit_is_refused() {
    let database = common::db::sqlite();
    let broker =
        TestBroker::start_im(&database.url, &[("BROKER_LIMITS_JSON_MAX_BYTES", "1000")]).await;
    let token = broker.token("mallory");
    let padding = "x".repeat(3000);
    let body = format!(r#"{{"to":"bob","clientMsgId":"c1","content":"{padding}"}}"#);
    let request = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let stream = send_head(broker.http_addr(), &request).await;
    let (_, response) = stall_then_read(stream, common::WAIT).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"PAYLOAD_TOO_LARGE\""), "{response}");
}

/// Uploads `size` zero bytes `times` times, one after the other, with Node's `fetch` (undici,
/// as in a browser); a JSON report of each: `{status, body}` or `{error}`. `None` when Node is
/// not installed (outside CI).
async fn node_fetch_uploads(
    url: &str,
    token: &str,
    size: usize,
    times: usize,
) -> Option<Vec<serde_json::Value>> {
    const SCRIPT: &str = r#"
const [url, token, size, times] = process.argv.slice(1);
(async () => {
  const reports = [];
  for (let i = 0; i < Number(times); i++) {
    try {
      const r = await fetch(url, {method: "POST", body: new Uint8Array(Number(size)),
        headers: {authorization: "Bearer " + token, "content-type": "application/octet-stream"}});
      reports.push({status: r.status, body: await r.text()});
    } catch (e) {
      reports.push({error: String((e.cause && e.cause.code) || e)});
    }
  }
  console.log(JSON.stringify(reports));
})();
"#;
    let output = match tokio::process::Command::new("node")
        .args([
            "-e",
            SCRIPT,
            url,
            token,
            &size.to_string(),
            &times.to_string(),
        ])
        .output()
        .await
    {
        Ok(output) => output,
        Err(error) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but node cannot run: {error}"
            );
            eprintln!("skipped: node cannot run: {error}");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    Some(serde_json::from_str(stdout.trim()).expect("node printed JSON"))
}

#[tokio::test]
async fn an_upload_over_the_limit_gets_its_413_in_node_fetch() {
    let database = common::db::sqlite();
    let broker =
        TestBroker::start_im(&database.url, &[("BROKER_LIMITS_FILE_MAX_BYTES", "1000")]).await;
    let url = format!("http://{}/api/v1/files?name=big.bin", broker.http_addr());
    let token = broker.token("bob");
    // Far over the limit and over the socket buffers, so that the client is still sending when
    // the answer comes; several times, as a reset races with the answer.
    let Some(reports) = node_fetch_uploads(&url, &token, 20 * 1024 * 1024, 10).await else {
        return;
    };
    for report in reports {
        assert_eq!(report["status"], 413, "{report}");
        let body: serde_json::Value =
            serde_json::from_str(report["body"].as_str().unwrap_or("")).expect("JSON error body");
        assert_eq!(body["code"], "PAYLOAD_TOO_LARGE", "{report}");
    }
}

#[tokio::test]
async fn metrics_addr_serves_metrics_and_the_main_listener_no_longer_does() {
    let broker = TestBroker::start_env(&[("BROKER_SERVER_METRICS_ADDR", "127.0.0.1:0")]).await;
    let metrics_addr = broker.server.metrics_addr().expect("a metrics listener");
    assert_ne!(metrics_addr, broker.http_addr());
    let (status, text) = common::http_get(metrics_addr, "/metrics").await;
    assert_eq!(status, 200);
    // This very request is an open HTTP connection.
    assert!(text.contains("broker_http_connections"), "{text}");
    let (status, _) = broker.get("/metrics").await;
    assert_eq!(status, 404, "/metrics is only on metrics_addr");
    let (status, _) = common::http_get(metrics_addr, "/healthz").await;
    assert_eq!(status, 404, "the metrics listener serves /metrics alone");
}

#[tokio::test]
async fn without_metrics_addr_metrics_stay_on_the_main_listener() {
    let broker = TestBroker::start().await;
    assert_eq!(broker.server.metrics_addr(), None);
    let (status, _) = broker.get("/metrics").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_stalled_rest_body_is_answered_408_and_closed() {
    let database = common::db::sqlite();
    let broker = TestBroker::start_im(
        &database.url,
        &[("BROKER_SERVER_REQUEST_TIMEOUT_MS", "1000")],
    )
    .await;
    let token = broker.token("mallory");
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"to\":"
    );
    let stream = send_head(broker.http_addr(), &head).await;
    let (took, response) = stall_then_read(stream, common::WAIT).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"REQUEST_TIMEOUT\""), "{response}");
    assert!(took <= std::time::Duration::from_millis(2000), "{took:?}");
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_closed_after_the_connect_timeout() {
    let timeout_ms = 1000;
    let broker =
        TestBroker::start_env(&[("BROKER_SERVER_CONNECT_TIMEOUT_MS", &timeout_ms.to_string())])
            .await;
    let stream = send_head(broker.http_addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    let (took, _) = stall_then_read(stream, common::WAIT).await;
    let bound = std::time::Duration::from_millis(2 * timeout_ms);
    assert!(took <= bound, "closed after {took:?}, over {bound:?}");
}
