//! Size limits on incoming frames and on connections; a client over a limit is refused without
//! disturbing the others.

mod common;

use std::time::Duration;

use common::{Client, TestBroker, encode_all};
use stomp_codec::{Command, Frame, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SMALL_FRAMES: (&str, &str) = ("BROKER_LIMITS_MAX_FRAME_BYTES", "1024");

fn send_of_size(total: usize) -> Vec<u8> {
    let frame = |body_len: usize| {
        encode_all(
            &[Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("receipt", "sized")
                .body(vec![b'x'; body_len])],
            Version::V1_2,
        )
    };
    let overhead = frame(0).len();
    (total.saturating_sub(overhead + 40)..total)
        .map(frame)
        .find(|encoded| encoded.len() == total)
        .expect("a body length that makes the frame this size")
        .to_vec()
}

#[tokio::test]
async fn frame_over_max_frame_bytes_is_refused_and_closed() {
    let broker = TestBroker::start_env(&[SMALL_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    backend.send_raw(&send_of_size(2000)).await;
    let error = backend.expect_error("frame too large").await;
    assert!(!error.body.is_empty());
}

#[tokio::test]
async fn frame_of_exactly_max_frame_bytes_is_accepted() {
    let broker = TestBroker::start_env(&[SMALL_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    backend.send_raw(&send_of_size(1024)).await;
    backend.expect_receipt("sized").await;
}

#[tokio::test]
async fn frame_one_byte_over_max_frame_bytes_is_refused() {
    let broker = TestBroker::start_env(&[SMALL_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    backend.send_raw(&send_of_size(1025)).await;
    backend.expect_error("frame too large").await;
}

#[tokio::test]
async fn oversized_content_length_is_refused_before_the_body_arrives() {
    let broker = TestBroker::start_env(&[SMALL_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\ncontent-length:1000000\n\n")
        .await;
    backend.expect_error("frame too large").await;
}

#[tokio::test]
async fn oversized_frame_in_small_messages_is_refused() {
    let broker = TestBroker::start_env(&[SMALL_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\n\n")
        .await;
    let chunk = vec![b'y'; 200];
    for _ in 0..6 {
        backend.send_raw(&chunk).await;
    }
    backend.expect_error("frame too large").await;
}

#[tokio::test]
async fn oversized_frame_over_tcp_is_refused() {
    let broker = TestBroker::start_env(&[SMALL_FRAMES]).await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    backend.send_raw(&send_of_size(5000)).await;
    backend.expect_error("frame too large").await;
}

#[tokio::test]
async fn websocket_message_far_over_the_frame_limit_gets_frame_too_large() {
    let broker = TestBroker::start_env(&[SMALL_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    backend.send_raw(&send_of_size(200_000)).await;
    backend.expect_error("frame too large").await;
}

#[tokio::test]
async fn too_many_headers_is_refused() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_MAX_HEADERS", "5")]).await;
    let mut backend = broker.ws_system("backend").await;
    let frame = (0..6).fold(
        Frame::new(Command::Send).header("destination", "/topic/announcements"),
        |frame, i| frame.header(format!("x-{i}"), "v"),
    );
    backend.send(&frame).await;
    backend.expect_error("too many headers").await;
}

#[tokio::test]
async fn frame_with_the_maximum_number_of_headers_is_accepted() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_MAX_HEADERS", "5")]).await;
    let mut backend = broker.ws_system("backend").await;
    let frame = (0..3).fold(
        Frame::new(Command::Send).header("destination", "/topic/announcements"),
        |frame, i| frame.header(format!("x-{i}"), "v"),
    );
    // destination, three more, receipt: five.
    backend.request(frame, "five").await;
}

/// A session connected with its token on the upgrade URL, so that CONNECT itself has only
/// short header lines.
async fn connected_by_query(broker: &TestBroker) -> Client {
    let token = broker.system_token("backend");
    let mut client = broker.ws_query(&format!("access_token={token}")).await;
    let connected = client
        .connect_with(Command::Connect, &[("accept-version", "1.2")])
        .await;
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    client
}

#[tokio::test]
async fn header_line_too_long_is_refused() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_MAX_HEADER_LINE_BYTES", "100")]).await;
    let mut backend = connected_by_query(&broker).await;
    backend
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("x-long", "z".repeat(150)),
        )
        .await;
    backend.expect_error("header too long").await;
}

#[tokio::test]
async fn unterminated_header_line_over_the_limit_is_refused_at_once() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_MAX_HEADER_LINE_BYTES", "100")]).await;
    let mut backend = connected_by_query(&broker).await;
    let mut partial = b"SEND\nx-endless:".to_vec();
    partial.extend(std::iter::repeat_n(b'q', 300));
    backend.send_raw(&partial).await;
    backend.expect_error("header too long").await;
}

#[tokio::test]
async fn oversized_connect_is_refused() {
    let broker = TestBroker::start_env(&[SMALL_FRAMES]).await;
    let mut client = broker.ws_raw().await;
    let padding = "p".repeat(2000);
    client
        .send(&common::connect_frame(
            Command::Connect,
            &[("accept-version", "1.2"), ("x-padding", &padding)],
        ))
        .await;
    client.expect_error("frame too large").await;
}

#[tokio::test]
async fn a_refused_client_does_not_disturb_the_others() {
    let broker = TestBroker::start_env(&[SMALL_FRAMES]).await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    let mut offenders = Vec::new();
    for _ in 0..5 {
        let mut offender = broker.ws_system("offender").await;
        offender.send_raw(&send_of_size(3000)).await;
        offenders.push(offender);
    }
    for i in 0..20 {
        backend
            .publish("/topic/announcements", &format!("m{i}"))
            .await;
    }
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(alice.bodies(20).await, expected);
    for mut offender in offenders {
        offender.expect_error("frame too large").await;
    }
    backend.ping("backend-alive").await;
    alice.ping("alice-alive").await;
}

async fn upgrade_status(addr: std::net::SocketAddr) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws/im HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = vec![0u8; 256];
    let n = tokio::time::timeout(common::WAIT, stream.read(&mut head))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused() {
    let broker = TestBroker::start_env(&[("BROKER_SERVER_MAX_CONNECTIONS", "1")]).await;
    let mut alice = broker.ws("alice").await;
    assert_eq!(upgrade_status(broker.http_addr()).await, 503);
    // A TCP connection is closed at accept.
    let mut tcp = Client::tcp(broker.stomp_addr()).await;
    tcp.expect_closed().await;
    // Once the session is gone, its slot is free again.
    alice.disconnect().await;
    let mut status = 0;
    for _ in 0..50 {
        status = upgrade_status(broker.http_addr()).await;
        if status == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 101);
}
