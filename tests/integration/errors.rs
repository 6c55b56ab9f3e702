//! Protocol errors: each gets an ERROR with a `message` header (and `receipt-id` when the frame
//! had a `receipt`), then the connection closes; the broker never hangs or dies on bad input.

use std::time::Duration;

use crate::common::{Client, Received, TestBroker};
use stomp_codec::{Command, Frame};

async fn connected(broker: &TestBroker) -> Client {
    broker.ws_system("backend").await
}

#[tokio::test]
async fn unknown_command_is_an_error() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"PUBLISH\ndestination:/topic/x\n\n\0")
        .await;
    client.expect_error("unknown command").await;
}

#[tokio::test]
async fn lowercase_command_is_an_unknown_command() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client.send_raw(b"send\ndestination:/topic/x\n\n\0").await;
    client.expect_error("unknown command").await;
}

#[tokio::test]
async fn header_line_without_colon_is_malformed() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"SEND\ndestination:/topic/x\nno colon here\n\nbody\0")
        .await;
    client.expect_error("malformed frame").await;
}

#[tokio::test]
async fn invalid_content_length_is_malformed() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"SEND\ndestination:/topic/x\ncontent-length:ten\n\nbody\0")
        .await;
    client.expect_error("malformed frame").await;
}

#[tokio::test]
async fn content_length_not_followed_by_nul_is_malformed() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"SEND\ndestination:/topic/x\ncontent-length:2\n\nbody\0")
        .await;
    client.expect_error("malformed frame").await;
}

#[tokio::test]
async fn body_on_a_frame_that_takes_none_is_malformed() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"SUBSCRIBE\ndestination:/topic/x\nid:1\n\nunexpected body\0")
        .await;
    client.expect_error("malformed frame").await;
}

#[tokio::test]
async fn stray_carriage_return_between_frames_is_malformed() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client.send_raw(b"\rSEND\n\n\0").await;
    client.expect_error("malformed frame").await;
}

#[tokio::test]
async fn invalid_utf8_in_a_header_is_malformed() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"SEND\ndestination:/topic/\xff\xfe\n\nx\0")
        .await;
    client.expect_error("malformed frame").await;
}

#[tokio::test]
async fn error_frames_are_plain_text_with_a_one_line_reason() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send(
            &Frame::new(Command::Subscribe)
                .header("id", "1")
                .header("receipt", "r"),
        )
        .await;
    let error = client.expect_error("missing destination header").await;
    assert_eq!(error.get("receipt-id"), Some("r"));
    assert_eq!(error.get("content-type"), Some("text/plain"));
    let reason = String::from_utf8(error.body.to_vec()).expect("UTF-8 reason");
    assert!(!reason.is_empty());
    assert!(!reason.contains('\n'), "{reason:?}");
}

#[tokio::test]
async fn error_without_receipt_has_no_receipt_id() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send(&Frame::new(Command::Subscribe).header("id", "1"))
        .await;
    let error = client.expect_error("missing destination header").await;
    assert_eq!(error.get("receipt-id"), None);
}

#[tokio::test]
async fn frames_after_an_error_in_the_same_message_are_not_handled() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"BOGUS\n\n\0SEND\ndestination:/topic/announcements\nreceipt:r\n\nlate\0")
        .await;
    client.expect_error("unknown command").await;
    alice.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn garbage_bytes_get_an_error_or_a_close_but_never_a_hang() {
    let broker = TestBroker::start().await;
    let inputs: [&[u8]; 6] = [
        b"\x00\x01\x02\x03",
        b"\xff\xff\xff\xff\n\n\0",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"::::\n\n\0",
        b"SEND\n:\n\n\0",
        b"\0\0\0",
    ];
    for input in inputs {
        let mut client = connected(&broker).await;
        client.send_raw(input).await;
        // Whatever came before, this completes a line and a frame.
        client.send_raw(b"\n\n\0").await;
        // Either an ERROR then the close, or the close.
        match client.receive().await {
            Received::Frame(frame) => {
                assert_eq!(frame.command, Command::Error, "{input:?}: {frame:?}");
                client.expect_closed().await;
            }
            Received::Closed => {}
        }
    }
    // And the broker still serves.
    let mut alice = broker.ws("alice").await;
    alice.ping("alive").await;
}

#[tokio::test]
async fn garbage_over_tcp_gets_an_error_and_a_close() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp(&broker.system_token("backend")).await;
    client.send_raw(b"HELLO THERE\n\n\0").await;
    client.expect_error("unknown command").await;
}

#[tokio::test]
async fn error_for_an_undefined_escape_carries_the_receipt_id() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"SEND\ndestination:/topic/announcements\nx-bad:a\\tb\nreceipt:esc\n\nx\0")
        .await;
    let error = client.expect_error("malformed frame").await;
    assert_eq!(error.get("receipt-id"), Some("esc"));
}

#[tokio::test]
async fn error_for_content_length_not_followed_by_nul_carries_the_receipt_id() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"SEND\ndestination:/topic/x\nreceipt:len\ncontent-length:2\n\nbody\0")
        .await;
    let error = client.expect_error("malformed frame").await;
    assert_eq!(error.get("receipt-id"), Some("len"));
}

#[tokio::test]
async fn error_for_a_frame_over_the_limit_carries_a_receipt_read_before() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_MAX_FRAME_BYTES", "1024")]).await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"SEND\ndestination:/topic/x\nreceipt:big\ncontent-length:5000\n\n")
        .await;
    let error = client.expect_error("frame too large").await;
    assert_eq!(error.get("receipt-id"), Some("big"));
}

#[tokio::test]
async fn error_for_a_malformed_header_before_the_receipt_has_no_receipt_id() {
    let broker = TestBroker::start().await;
    let mut client = connected(&broker).await;
    client
        .send_raw(b"SEND\nno colon\nreceipt:late\n\nx\0")
        .await;
    let error = client.expect_error("malformed frame").await;
    assert_eq!(error.get("receipt-id"), None);
}
