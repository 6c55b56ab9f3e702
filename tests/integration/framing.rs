//! Framing over WebSocket: frames and messages need not line up; text and binary messages;
//! bodies with NUL; header escaping; which kind of WebSocket message the broker sends.

use std::time::Duration;

use crate::common::{Client, Event, TestBroker, encode_all};
use stomp_codec::{Command, Frame, Version};

async fn listener(broker: &TestBroker) -> Client {
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    alice
}

#[tokio::test]
async fn several_frames_in_one_websocket_message() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    let frames = encode_all(
        &[
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .body("first"),
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .body("second"),
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("receipt", "third")
                .body("third"),
        ],
        Version::V1_2,
    );
    backend.send_raw(&frames).await;
    backend.expect_receipt("third").await;
    assert_eq!(alice.bodies(3).await, ["first", "second", "third"]);
}

#[tokio::test]
async fn a_frame_split_across_websocket_messages_is_reassembled() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    let frame = encode_all(
        &[Frame::new(Command::Send)
            .header("destination", "/topic/announcements")
            .header("receipt", "split")
            .body("in pieces")],
        Version::V1_2,
    );
    for piece in frame.chunks(7) {
        backend.send_raw(piece).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    backend.expect_receipt("split").await;
    assert_eq!(alice.message().await.1, "in pieces");
}

#[tokio::test]
async fn frame_boundaries_may_fall_anywhere_in_a_message() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    let frames = encode_all(
        &[
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .body("a"),
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("receipt", "b")
                .body("b"),
        ],
        Version::V1_2,
    );
    // The first message ends in the middle of the second frame.
    let (head, tail) = frames.split_at(frames.len() - 10);
    backend.send_raw(head).await;
    backend.send_binary(tail).await;
    backend.expect_receipt("b").await;
    assert_eq!(alice.bodies(2).await, ["a", "b"]);
}

#[tokio::test]
async fn binary_websocket_messages_are_accepted() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    let frame = encode_all(
        &[Frame::new(Command::Send)
            .header("destination", "/topic/announcements")
            .header("receipt", "bin")
            .body("as binary")],
        Version::V1_2,
    );
    backend.send_binary(&frame).await;
    backend.expect_receipt("bin").await;
    assert_eq!(alice.message().await.1, "as binary");
}

#[tokio::test]
async fn body_with_nul_octets_round_trips_via_content_length() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    let body = b"before\0middle\0\0after\0".to_vec();
    backend
        .request(
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .body(body.clone()),
            "nul",
        )
        .await;
    let (message, _) = alice.message().await;
    assert_eq!(&message.body[..], &body[..]);
    assert_eq!(
        message.get("content-length"),
        Some(body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn body_without_content_length_ends_at_the_first_nul() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\nreceipt:r\n\nno length\0")
        .await;
    backend.expect_receipt("r").await;
    assert_eq!(alice.message().await.1, "no length");
}

#[tokio::test]
async fn escaped_header_values_round_trip_through_a_topic() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    let value = "colon:here\nnew line\\back slash\rreturn";
    backend
        .request(
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("x-tricky", value)
                .header("x:key", "name with colon")
                .body("escaped"),
            "esc",
        )
        .await;
    let (message, _) = alice.message().await;
    assert_eq!(message.get("x-tricky"), Some(value));
    assert_eq!(message.get("x:key"), Some("name with colon"));
    // On the wire the value was escaped.
    let raw = alice.raw_messages.last().expect("a message");
    let text = String::from_utf8_lossy(raw);
    assert!(
        text.contains("x-tricky:colon\\chere\\nnew line\\\\back slash\\rreturn\n"),
        "{text}"
    );
}

#[tokio::test]
async fn header_escaping_follows_each_sessions_version() {
    let broker = TestBroker::start().await;
    let token = broker.system_token("old");
    let mut old = broker.ws_raw().await;
    old.connect_with(Command::Connect, &[("passcode", &token)])
        .await;
    old.set_version(Version::V1_0);
    let mut alice = listener(&broker).await;
    // 1.0 has no escaping: a backslash is just a backslash.
    old.request(
        Frame::new(Command::Send)
            .header("destination", "/topic/announcements")
            .header("x-path", "C:\\temp\\n")
            .body("from 1.0"),
        "old",
    )
    .await;
    let (message, _) = alice.message().await;
    assert_eq!(message.get("x-path"), Some("C:\\temp\\n"));
}

#[tokio::test]
async fn undefined_escape_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\nx-bad:tab\\there\n\nx\0")
        .await;
    backend.expect_error("malformed frame").await;
}

#[tokio::test]
async fn repeated_header_keeps_its_first_value() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(
            b"SEND\ndestination:/topic/announcements\nx-dup:first\nx-dup:second\n\
              destination:/topic/elsewhere\nreceipt:r\n\nrepeat\0",
        )
        .await;
    backend.expect_receipt("r").await;
    let (message, body) = alice.message().await;
    assert_eq!(body, "repeat");
    assert_eq!(message.get("x-dup"), Some("first"));
    assert_eq!(message.get("destination"), Some("/topic/announcements"));
}

#[tokio::test]
async fn crlf_line_endings_are_accepted() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(b"SEND\r\ndestination:/topic/announcements\r\nreceipt:crlf\r\n\r\nwindows\0\r\n")
        .await;
    backend.expect_receipt("crlf").await;
    assert_eq!(alice.message().await.1, "windows");
}

#[tokio::test]
async fn utf8_headers_and_bodies_round_trip() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .request(
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("x-title", "公告：维护")
                .body("服务器今晚维护 🚧"),
            "utf8",
        )
        .await;
    let (message, body) = alice.message().await;
    assert_eq!(message.get("x-title"), Some("公告：维护"));
    assert_eq!(body, "服务器今晚维护 🚧");
}

#[tokio::test]
async fn broker_sends_text_messages_for_utf8_frames() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_with_receipt("/topic/announcements", "ünïcödé text", "t")
        .await;
    alice.message().await;
    assert!(!alice.text_messages.is_empty());
    assert!(
        alice.text_messages.iter().all(|text| *text),
        "CONNECTED, RECEIPT and MESSAGE are text: {:?}",
        alice.text_messages
    );
}

#[tokio::test]
async fn broker_sends_binary_messages_for_non_utf8_bodies() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    let body = vec![0xff, 0xfe, 0x00, 0x80, b'x'];
    backend
        .request(
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("content-type", "application/octet-stream")
                .body(body.clone()),
            "bin",
        )
        .await;
    let (message, _) = alice.message().await;
    assert_eq!(&message.body[..], &body[..]);
    assert_eq!(alice.text_messages.last(), Some(&false));
    // A later UTF-8 frame is text again.
    backend
        .send_with_receipt("/topic/announcements", "text again", "t")
        .await;
    alice.message().await;
    assert_eq!(alice.text_messages.last(), Some(&true));
}

#[tokio::test]
async fn each_frame_the_broker_sends_is_one_websocket_message() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    for i in 0..5 {
        backend
            .publish("/topic/announcements", &format!("m{i}"))
            .await;
    }
    alice.bodies(5).await;
    for raw in &alice.raw_messages {
        assert_eq!(raw.last(), Some(&0), "a message ends with its frame's NUL");
        assert_eq!(
            raw.iter().filter(|b| **b == 0).count(),
            1,
            "one frame per message"
        );
    }
}

#[tokio::test]
async fn a_lone_eol_heart_beat_is_its_own_message() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "100,0")]).await;
    let mut alice = broker.ws_raw().await;
    alice
        .connect_heartbeat(&broker.token("alice"), "0,100")
        .await;
    match alice.next_event().await {
        Event::HeartBeat => {}
        other => panic!("expected a heart-beat, got {other:?}"),
    }
    let last = alice.raw_messages.last().expect("a message");
    assert_eq!(&last[..], b"\n");
    assert_eq!(alice.text_messages.last(), Some(&true));
}

#[tokio::test]
async fn client_heart_beats_between_frames_are_accepted() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    backend.send_raw(b"\n").await;
    backend.send_raw(b"\r\n\n").await;
    backend
        .send_raw(b"\nSEND\ndestination:/topic/announcements\nreceipt:r\n\nafter eols\0\n\n")
        .await;
    backend.expect_receipt("r").await;
    assert_eq!(alice.message().await.1, "after eols");
}

#[tokio::test]
async fn frames_the_broker_sends_carry_content_length_when_they_have_a_body() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_with_receipt("/topic/announcements", "12345", "r")
        .await;
    let (message, _) = alice.message().await;
    assert_eq!(message.get("content-length"), Some("5"));
}

#[tokio::test]
async fn nul_in_a_header_value_is_refused_and_never_relayed() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\nreceipt:nul\nx-evil:a\0b\n\nx\0")
        .await;
    let error = backend.expect_error("malformed frame").await;
    assert_eq!(error.get("receipt-id"), Some("nul"));
    alice.expect_nothing(Duration::from_millis(200)).await;
    alice.ping("alive").await;
}

#[tokio::test]
async fn nul_in_a_header_value_over_tcp_is_refused_and_never_relayed() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\ncontent-length:1\nx-evil:\0\n\nx\0")
        .await;
    backend.expect_error("malformed frame").await;
    alice.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn nul_in_a_header_name_is_refused() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\nx\0y:1\n\nx\0")
        .await;
    backend.expect_error("malformed frame").await;
}

#[tokio::test]
async fn raw_carriage_return_inside_a_1_2_header_value_is_refused() {
    let broker = TestBroker::start().await;
    let mut alice = listener(&broker).await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_raw(b"SEND\ndestination:/topic/announcements\nreceipt:cr\nx-cr:a\rb\n\nx\0")
        .await;
    let error = backend.expect_error("malformed frame").await;
    assert_eq!(error.get("receipt-id"), Some("cr"));
    alice.expect_nothing(Duration::from_millis(200)).await;
}
