//! The broker core over real sockets: connect, subscribe, send, receipts, errors.

use std::time::Duration;

use crate::common::{Client, TestBroker};
use broker::auth::Role;
use stomp_codec::{Command, Frame};

#[tokio::test]
async fn healthz_answers_ok() {
    let broker = TestBroker::start().await;
    let (status, body) = broker.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body.trim(), "ok");
}

#[tokio::test]
async fn connected_carries_the_contract_headers() {
    let broker = TestBroker::start().await;
    let mut client = broker.ws_raw().await;
    assert_eq!(client.subprotocol.as_deref(), Some("v12.stomp"));
    let connected = client.connect(&broker.token("alice")).await;
    assert_eq!(connected.get("version"), Some("1.2"));
    assert_eq!(connected.get("heart-beat"), Some("10000,10000"));
    assert!(connected.get("server").unwrap().starts_with("broker/"));
    assert!(connected.get("session").is_some());
    assert_eq!(connected.get("user-name"), Some("alice"));
}

#[tokio::test]
async fn topic_message_reaches_every_subscriber_with_contract_headers() {
    let broker = TestBroker::start().await;
    let mut system = broker.tcp(&broker.system_token("backend")).await;
    let mut alice = broker.ws("alice").await;
    let mut bob = broker.ws("bob").await;
    alice.subscribe("/topic/announcements", "a1", "auto").await;
    bob.subscribe("/topic/announcements", "b1", "auto").await;
    system
        .send_with_receipt("/topic/announcements", "maintenance at noon", "r1")
        .await;
    for (client, sub) in [(&mut alice, "a1"), (&mut bob, "b1")] {
        let (frame, body) = client.message().await;
        assert_eq!(body, "maintenance at noon");
        assert_eq!(frame.get("destination"), Some("/topic/announcements"));
        assert_eq!(frame.get("subscription"), Some(sub));
        assert!(frame.get("message-id").is_some());
        assert!(frame.get("content-type").is_some());
    }
}

#[tokio::test]
async fn user_without_token_is_refused_as_unauthorized() {
    let broker = TestBroker::start().await;
    let mut client = broker.ws_raw().await;
    client
        .send(&Frame::new(Command::Connect).header("accept-version", "1.2"))
        .await;
    client.expect_error("unauthorized").await;
}

#[tokio::test]
async fn receipt_follows_send_to_a_topic() {
    let broker = TestBroker::start().await;
    let mut system = broker.ws_raw().await;
    system.connect(&broker.system_token("backend")).await;
    system.send_with_receipt("/topic/news", "x", "77").await;
}

#[tokio::test]
async fn unknown_prefix_is_forbidden_with_receipt_id() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/exchange/amq.topic")
                .header("id", "1")
                .header("receipt", "r-9"),
        )
        .await;
    let error = alice.expect_error("forbidden").await;
    assert_eq!(error.get("receipt-id"), Some("r-9"));
}

#[tokio::test]
async fn queue_delivers_round_robin_and_redelivers_on_nack() {
    let broker = TestBroker::start().await;
    let token = broker.token_with("worker", &[Role::System], Duration::from_secs(600));
    let mut one = broker.tcp(&token).await;
    let mut two = broker.tcp(&token).await;
    one.subscribe("/queue/jobs", "s", "client-individual").await;
    two.subscribe("/queue/jobs", "s", "client-individual").await;
    let mut producer = broker.ws_raw().await;
    producer.connect(&token).await;
    producer
        .send_with_receipt("/queue/jobs", "job-1", "p1")
        .await;
    producer
        .send_with_receipt("/queue/jobs", "job-2", "p2")
        .await;
    let (first, first_body) = one.message().await;
    let (_, second_body) = two.message().await;
    assert_eq!(first_body, "job-1");
    assert_eq!(second_body, "job-2");
    one.send(
        &Frame::new(Command::Nack)
            .header("id", first.get("ack").unwrap())
            .header("receipt", "n1"),
    )
    .await;
    one.expect(Command::Receipt).await;
    let (again, body) = two.message().await;
    assert_eq!(body, "job-1");
    assert_eq!(again.get("redelivered"), Some("true"));
}

#[tokio::test]
async fn malformed_frame_gets_error_then_close() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.send_raw(b"BOGUS\n\n\0").await;
    alice.expect_error("unknown command").await;
}

#[tokio::test]
async fn disconnect_receipt_comes_before_close() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .send(&Frame::new(Command::Disconnect).header("receipt", "bye"))
        .await;
    let receipt = alice.expect(Command::Receipt).await;
    assert_eq!(receipt.get("receipt-id"), Some("bye"));
    alice.expect_closed().await;
}

#[tokio::test]
async fn frames_split_across_websocket_messages_are_reassembled() {
    let broker = TestBroker::start().await;
    let mut client = Client::websocket(broker.http_addr(), None, &[]).await;
    assert_eq!(client.subprotocol, None);
    let token = broker.token("alice");
    let connect = format!("CONNECT\naccept-version:1.2\npasscode:{token}\n\n\0");
    let (a, b) = connect.as_bytes().split_at(10);
    client.send_raw(a).await;
    client.send_binary(b).await;
    client.expect(Command::Connected).await;
}
