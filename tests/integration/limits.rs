//! Size limits on incoming frames and on connections; a client over a limit is refused without
//! disturbing the others.

use crate::common;

use std::time::Duration;

use crate::common::{Client, TestBroker, encode_all};
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

const QUICK_FRAMES: (&str, &str) = ("BROKER_LIMITS_FRAME_TIMEOUT_MS", "300");

#[tokio::test]
async fn a_partial_frame_over_tcp_is_refused_after_the_frame_timeout() {
    let broker = TestBroker::start_env(&[QUICK_FRAMES]).await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\n")
        .await;
    backend.expect_error("frame timeout").await;
}

#[tokio::test]
async fn a_partial_frame_over_websocket_is_refused_after_the_frame_timeout() {
    let broker = TestBroker::start_env(&[QUICK_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\n\nbody")
        .await;
    backend.expect_error("frame timeout").await;
}

#[tokio::test]
async fn a_frame_trickled_a_byte_at_a_time_is_refused_at_the_frame_timeout() {
    let broker = TestBroker::start_env(&[QUICK_FRAMES]).await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    let frame = encode_all(
        &[Frame::new(Command::Send)
            .header("destination", "/topic/announcements")
            .body(vec![b'x'; 200])],
        Version::V1_2,
    );
    // Bytes keep coming, so the connection is never silent; the frame still may not take
    // longer than the timeout from its first byte.
    for byte in frame.chunks(1) {
        backend.send_raw(byte).await;
        if let Some(received) = backend.receive_within(Duration::from_millis(40)).await {
            match received {
                common::Received::Frame(error) => {
                    assert_eq!(error.get("message"), Some("frame timeout"), "{error:?}");
                    backend.expect_closed().await;
                    return;
                }
                common::Received::Closed => panic!("closed without an ERROR"),
            }
        }
    }
    panic!("the whole frame was accepted at a byte per 40 ms");
}

#[tokio::test]
async fn an_idle_session_between_frames_is_not_timed_out() {
    let broker = TestBroker::start_env(&[QUICK_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    backend.ping("before").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    backend.ping("after").await;
}

#[tokio::test]
async fn frames_completed_in_time_are_accepted_however_they_are_split() {
    let broker = TestBroker::start_env(&[QUICK_FRAMES]).await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    for round in 0..5 {
        let frame = encode_all(
            &[Frame::new(Command::Unsubscribe)
                .header("id", "none")
                .header("receipt", format!("r{round}"))],
            Version::V1_2,
        );
        let (head, tail) = frame.split_at(frame.len() / 2);
        backend.send_raw(head).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        backend.send_raw(tail).await;
        backend.expect_receipt(&format!("r{round}")).await;
    }
}

/// The first bytes of a masked WebSocket text frame announcing `len` (< 126) payload bytes, and
/// `sent` of them.
fn partial_websocket_frame(len: u8, sent: usize) -> Vec<u8> {
    let mut bytes = vec![0x81, 0x80 | len, 1, 2, 3, 4];
    bytes.extend(std::iter::repeat_n(b'x' ^ 1, sent));
    bytes
}

#[tokio::test]
async fn a_websocket_message_that_never_completes_is_refused_after_the_frame_timeout() {
    let broker = TestBroker::start_env(&[QUICK_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_socket_bytes(&partial_websocket_frame(100, 10))
        .await;
    backend.expect_error("frame timeout").await;
}

#[tokio::test]
async fn websocket_pings_while_idle_are_no_frame_under_way() {
    let broker = TestBroker::start_env(&[QUICK_FRAMES]).await;
    let mut backend = broker.ws_system("backend").await;
    for _ in 0..10 {
        backend.send_ws_ping(b"still here").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    backend.ping("alive").await;
}

#[tokio::test]
async fn frame_timeouts_are_counted_in_metrics() {
    let broker = TestBroker::start_env(&[QUICK_FRAMES]).await;
    let series = r#"broker_stomp_errors_total{reason="frame_timeout"}"#;
    let before = broker.metric(series).await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    backend.send_raw(b"SEND\n").await;
    backend.expect_error("frame timeout").await;
    assert!(broker.metric(series).await > before);
}

#[tokio::test]
async fn a_connect_beyond_max_sessions_per_user_is_refused() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_MAX_SESSIONS_PER_USER", "2")]).await;
    let mut first = broker.ws("alice").await;
    let _second = broker.tcp(&broker.token("alice")).await;
    let mut third = broker.ws_raw().await;
    third
        .send(
            &common::connect_frame(
                Command::Connect,
                &[
                    ("accept-version", "1.2"),
                    ("passcode", &broker.token("alice")),
                ],
            )
            .header("receipt", "hello"),
        )
        .await;
    let error = third.expect_error("too many sessions").await;
    assert_eq!(error.get("receipt-id"), Some("hello"));
    // Other users are not affected, and a place freed is taken again.
    broker.ws("bob").await.ping("bob").await;
    first.disconnect().await;
    for _ in 0..100 {
        let mut again = broker.ws_raw().await;
        let answer = again
            .connect_with(
                Command::Connect,
                &[
                    ("accept-version", "1.2"),
                    ("passcode", &broker.token("alice")),
                ],
            )
            .await;
        if answer.command == Command::Connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("alice could not connect again after closing a session");
}

const TWO_PER_ADDRESS: (&str, &str) = ("BROKER_SERVER_MAX_CONNECTIONS_PER_IP", "2");

#[tokio::test]
async fn websocket_connections_beyond_the_per_address_cap_are_refused_at_accept() {
    let broker = TestBroker::start_env(&[TWO_PER_ADDRESS]).await;
    let mut alice = broker.ws("alice").await;
    let _bob = broker.ws("bob").await;
    assert!(closed_unanswered(broker.http_addr()).await);
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

#[tokio::test]
async fn tcp_connections_beyond_the_per_address_cap_are_closed_at_accept() {
    let broker = TestBroker::start_env(&[TWO_PER_ADDRESS]).await;
    // The cap counts both listeners together.
    let _alice = broker.ws("alice").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    let mut third = Client::tcp(broker.stomp_addr()).await;
    third.expect_closed().await;
    backend.ping("open").await;
    // An HTTP request is a third connection too, until the backend's place is free.
    assert!(closed_unanswered(broker.http_addr()).await);
    backend.disconnect().await;
    for _ in 0..50 {
        if !closed_unanswered(broker.http_addr()).await {
            let refused = broker
                .metric("broker_connections_refused_per_ip_total")
                .await;
            assert!(refused >= 2.0, "{refused}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the backend's place was not freed");
}

/// Whether an HTTP request to `addr` is closed without an answer (refused at accept).
async fn closed_unanswered(addr: std::net::SocketAddr) -> bool {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    // A write may already fail if the broker closed first.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    match tokio::time::timeout(common::WAIT, stream.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => answer.is_empty(),
        Ok(Err(_)) => true,
        Err(_) => panic!("neither answered nor closed"),
    }
}

#[tokio::test]
async fn without_a_per_address_cap_one_address_may_open_many_connections() {
    let broker = TestBroker::start().await;
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(broker.ws(&format!("user-{i}")).await);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.ping(&format!("p{i}")).await;
    }
}
