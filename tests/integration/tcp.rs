//! STOMP over plain TCP, for backend systems: the same sessions over a byte stream.

use crate::common;

use std::time::Duration;

use crate::common::{TestBroker, encode_all};
use stomp_codec::{Command, Frame, Version};

#[tokio::test]
async fn tcp_client_connects_with_a_token() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp_raw().await;
    let connected = client.connect(&broker.system_token("backend")).await;
    assert_eq!(connected.get("version"), Some("1.2"));
    assert_eq!(connected.get("user-name"), Some("backend"));
}

#[tokio::test]
async fn tcp_client_without_token_is_unauthorized() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp_raw().await;
    client
        .send(&common::connect_frame(
            Command::Connect,
            &[("accept-version", "1.2")],
        ))
        .await;
    client.expect_error("unauthorized").await;
}

#[tokio::test]
async fn tcp_publisher_reaches_websocket_subscribers() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    backend
        .send_with_receipt("/topic/announcements", "over tcp", "r")
        .await;
    assert_eq!(alice.message().await.1, "over tcp");
}

#[tokio::test]
async fn websocket_publisher_reaches_tcp_subscribers() {
    let broker = TestBroker::start().await;
    let mut listener = broker.tcp(&broker.token("alice")).await;
    listener
        .subscribe("/topic/announcements", "s", "auto")
        .await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_with_receipt("/topic/announcements", "to tcp", "r")
        .await;
    let (message, body) = listener.message().await;
    assert_eq!(body, "to tcp");
    assert_eq!(message.get("subscription"), Some("s"));
}

#[tokio::test]
async fn tcp_frames_may_arrive_one_byte_at_a_time() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    let frame = encode_all(
        &[Frame::new(Command::Send)
            .header("destination", "/topic/announcements")
            .header("receipt", "slow")
            .body("drip")],
        Version::V1_2,
    );
    for byte in frame.iter() {
        backend.send_raw(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    backend.expect_receipt("slow").await;
    assert_eq!(alice.message().await.1, "drip");
}

#[tokio::test]
async fn tcp_frames_may_arrive_many_at_once() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    let mut frames: Vec<Frame> = (0..200)
        .map(|i| {
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .body(format!("m{i}"))
        })
        .collect();
    frames.push(Frame::new(Command::Disconnect).header("receipt", "bye"));
    backend.send_raw(&encode_all(&frames, Version::V1_2)).await;
    backend.expect_receipt("bye").await;
    backend.expect_closed().await;
    let expected: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(alice.bodies(200).await, expected);
}

#[tokio::test]
async fn tcp_connect_and_frames_in_one_write() {
    let broker = TestBroker::start().await;
    let token = broker.system_token("backend");
    let mut client = broker.tcp_raw().await;
    let bytes = encode_all(
        &[
            common::connect_frame(
                Command::Connect,
                &[("accept-version", "1.2"), ("passcode", &token)],
            ),
            Frame::new(Command::Subscribe)
                .header("destination", "/topic/loop")
                .header("id", "1"),
            Frame::new(Command::Send)
                .header("destination", "/topic/loop")
                .header("receipt", "r")
                .body("pipelined"),
        ],
        Version::V1_2,
    );
    client.send_raw(&bytes).await;
    client.expect(Command::Connected).await;
    assert_eq!(client.message().await.1, "pipelined");
    client.expect_receipt("r").await;
}

#[tokio::test]
async fn peer_closing_a_tcp_session_ends_it() {
    let broker = TestBroker::start().await;
    let client = broker.tcp(&broker.token("alice")).await;
    assert_eq!(broker.server.hub().sessions_of("alice").len(), 1);
    drop(client);
    for _ in 0..100 {
        if broker.server.hub().sessions_of("alice").is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the session outlived its connection");
}

#[tokio::test]
async fn peer_closing_a_websocket_session_ends_it() {
    let broker = TestBroker::start().await;
    let client = broker.ws("alice").await;
    assert_eq!(broker.server.hub().sessions_of("alice").len(), 1);
    drop(client);
    for _ in 0..100 {
        if broker.server.hub().sessions_of("alice").is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the session outlived its connection");
}
