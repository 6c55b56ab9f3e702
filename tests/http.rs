//! The HTTP side of the listener: health, readiness, metrics, and the WebSocket endpoint's
//! answers to requests that are not upgrades.

mod common;

use common::{TestBroker, metric_value};
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
