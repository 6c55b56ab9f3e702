//! SUBSCRIBE, UNSUBSCRIBE and SEND on topics: required headers, ids, what MESSAGE frames carry.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{Received, TestBroker, app_error};
use stomp_codec::{Command, Frame};

#[tokio::test]
async fn subscribe_without_id_is_an_error_with_receipt_id() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/topic/announcements")
                .header("receipt", "s-1"),
        )
        .await;
    let error = alice.expect_error("missing id header").await;
    assert_eq!(error.get("receipt-id"), Some("s-1"));
}

#[tokio::test]
async fn subscribe_without_destination_is_an_error_with_receipt_id() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("id", "1")
                .header("receipt", "s-2"),
        )
        .await;
    let error = alice.expect_error("missing destination header").await;
    assert_eq!(error.get("receipt-id"), Some("s-2"));
}

#[tokio::test]
async fn subscription_id_reused_is_an_error() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .subscribe("/topic/announcements", "same", "auto")
        .await;
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/user/queue/events")
                .header("id", "same")
                .header("receipt", "dup"),
        )
        .await;
    let error = alice.expect_error("subscription id reused").await;
    assert_eq!(error.get("receipt-id"), Some("dup"));
}

#[tokio::test]
async fn subscription_id_may_be_used_again_after_unsubscribe() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    alice
        .request(Frame::new(Command::Unsubscribe).header("id", "s"), "u")
        .await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
}

#[tokio::test]
async fn invalid_ack_mode_is_an_error() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/topic/announcements")
                .header("id", "1")
                .header("ack", "sometimes"),
        )
        .await;
    alice.expect_error("invalid ack header").await;
}

#[tokio::test]
async fn nothing_arrives_after_unsubscribe() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut backend = broker.ws_system("backend").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    backend
        .send_with_receipt("/topic/announcements", "one", "p1")
        .await;
    assert_eq!(alice.message().await.1, "one");
    alice
        .request(Frame::new(Command::Unsubscribe).header("id", "s"), "u")
        .await;
    backend
        .send_with_receipt("/topic/announcements", "two", "p2")
        .await;
    alice.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn unsubscribe_leaves_the_other_subscriptions_of_the_session() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut backend = broker.ws_system("backend").await;
    alice.subscribe("/topic/announcements", "a", "auto").await;
    alice.subscribe("/topic/announcements", "b", "auto").await;
    alice
        .request(Frame::new(Command::Unsubscribe).header("id", "a"), "u")
        .await;
    backend
        .send_with_receipt("/topic/announcements", "x", "p")
        .await;
    let (message, _) = alice.message().await;
    assert_eq!(message.get("subscription"), Some("b"));
    alice.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn unsubscribe_without_id_is_an_error() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .send(&Frame::new(Command::Unsubscribe).header("receipt", "u"))
        .await;
    let error = alice.expect_error("missing id header").await;
    assert_eq!(error.get("receipt-id"), Some("u"));
}

#[tokio::test]
async fn unsubscribe_of_an_unknown_id_is_harmless() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .request(Frame::new(Command::Unsubscribe).header("id", "never"), "u")
        .await;
    alice.ping("open").await;
}

#[tokio::test]
async fn two_subscriptions_to_one_topic_each_get_the_message() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut backend = broker.ws_system("backend").await;
    alice
        .subscribe("/topic/announcements", "first", "auto")
        .await;
    alice
        .subscribe("/topic/announcements", "second", "auto")
        .await;
    backend
        .send_with_receipt("/topic/announcements", "twice", "p")
        .await;
    let mut subscriptions = HashSet::new();
    for _ in 0..2 {
        let (message, body) = alice.message().await;
        assert_eq!(body, "twice");
        subscriptions.insert(message.get("subscription").unwrap().to_owned());
    }
    assert_eq!(
        subscriptions,
        HashSet::from(["first".to_owned(), "second".to_owned()])
    );
}

#[tokio::test]
async fn topic_messages_arrive_in_publish_order() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    let sent: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    for body in &sent {
        backend.publish("/topic/announcements", body).await;
    }
    assert_eq!(alice.bodies(sent.len()).await, sent);
}

#[tokio::test]
async fn message_ids_are_unique() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut backend = broker.ws_system("backend").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    for i in 0..20 {
        backend
            .publish("/topic/announcements", &i.to_string())
            .await;
    }
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let (message, _) = alice.message().await;
        assert!(ids.insert(message.get("message-id").unwrap().to_owned()));
    }
}

#[tokio::test]
async fn send_without_destination_is_an_error() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send(
            &Frame::new(Command::Send)
                .header("receipt", "nowhere")
                .body("lost"),
        )
        .await;
    let error = backend.expect_error("missing destination header").await;
    assert_eq!(error.get("receipt-id"), Some("nowhere"));
}

#[tokio::test]
async fn send_headers_travel_with_the_message_but_frame_headers_do_not() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut backend = broker.ws_system("backend").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    backend
        .request(
            Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("x-trace", "abc-123")
                .header("priority", "9")
                .body("with headers"),
            "p",
        )
        .await;
    let (message, _) = alice.message().await;
    assert_eq!(message.get("x-trace"), Some("abc-123"));
    assert_eq!(message.get("priority"), Some("9"));
    assert_eq!(message.get("receipt"), None);
    assert_eq!(message.get("transaction"), None);
    assert_eq!(message.get("destination"), Some("/topic/announcements"));
    assert_eq!(message.get("subscription"), Some("s"));
}

#[tokio::test]
async fn message_has_a_default_content_type() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut backend = broker.ws_system("backend").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    backend.publish("/topic/announcements", "plain").await;
    let (message, _) = alice.message().await;
    assert_eq!(
        message.get("content-type"),
        Some("text/plain;charset=utf-8")
    );
}

#[tokio::test]
async fn message_keeps_the_publishers_content_type() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut backend = broker.ws_system("backend").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    backend
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("content-type", "application/json")
                .body(r#"{"a":1}"#),
        )
        .await;
    let (message, body) = alice.message().await;
    assert_eq!(message.get("content-type"), Some("application/json"));
    assert_eq!(body, r#"{"a":1}"#);
}

#[tokio::test]
async fn too_many_subscriptions_is_an_error() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_MAX_SUBSCRIPTIONS", "2")]).await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "1", "auto").await;
    alice.subscribe("/user/queue/events", "2", "auto").await;
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/user/queue/errors")
                .header("id", "3"),
        )
        .await;
    alice.expect_error("too many subscriptions").await;
}

#[tokio::test]
async fn subscribe_to_an_unknown_prefix_is_forbidden() {
    let broker = TestBroker::start().await;
    for destination in ["/exchange/x", "/topic/", "/topic/a b", "/topic/a/b", "news"] {
        let mut alice = broker.ws("alice").await;
        alice
            .send(
                &Frame::new(Command::Subscribe)
                    .header("destination", destination)
                    .header("id", "1"),
            )
            .await;
        let error = alice.expect_error("forbidden").await;
        assert!(!error.body.is_empty(), "{destination}");
    }
}

#[tokio::test]
async fn send_to_an_unknown_app_destination_is_forbidden() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.publish("/app/nothing.here", "{}").await;
    alice.expect_error("forbidden").await;
}

#[tokio::test]
async fn subscribe_to_an_app_destination_is_a_forbidden_app_error() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/user/queue/errors", "e", "auto").await;
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/app/private.send")
                .header("id", "1"),
        )
        .await;
    let body = app_error(&alice.frame().await);
    assert_eq!(body["code"], "FORBIDDEN");
    alice.ping("open").await;
}

#[tokio::test]
async fn own_user_queue_gets_only_this_users_messages() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut bob = broker.ws("bob").await;
    alice
        .subscribe("/user/queue/notifications", "n", "auto")
        .await;
    bob.subscribe("/user/queue/notifications", "n", "auto")
        .await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_with_receipt("/user/alice/queue/notifications", "for alice", "p")
        .await;
    assert_eq!(alice.message().await.1, "for alice");
    bob.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn a_session_with_many_subscriptions_keeps_each_apart() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    for i in 0..40 {
        alice
            .subscribe(&format!("/user/queue/q{i}"), &format!("s{i}"), "auto")
            .await;
    }
    for i in [0, 7, 8, 39] {
        alice
            .request(
                Frame::new(Command::Unsubscribe).header("id", format!("s{i}")),
                &format!("u{i}"),
            )
            .await;
    }
    let mut backend = broker.ws_system("backend").await;
    for i in 0..40 {
        backend
            .send_with_receipt(&format!("/user/alice/queue/q{i}"), &format!("m{i}"), "p")
            .await;
    }
    let mut got = Vec::new();
    while let Some(received) = alice.receive_within(Duration::from_millis(300)).await {
        let Received::Frame(frame) = received else {
            panic!("the connection closed");
        };
        let subscription = frame.get("subscription").unwrap().to_owned();
        let body = String::from_utf8(frame.body.to_vec()).unwrap();
        assert_eq!(subscription[1..], body[1..], "{subscription} got {body}");
        got.push(body);
    }
    let expected: Vec<String> = (0..40)
        .filter(|i| ![0, 7, 8, 39].contains(i))
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(got, expected);
}
