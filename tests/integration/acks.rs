//! Acknowledgement modes and the generic point-to-point queues: buffering, round-robin,
//! prefetch, NACK and redelivery of what a consumer left unacknowledged.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{Client, TestBroker, app_error};
use stomp_codec::{Command, Frame, Version};

const QUEUE: &str = "/queue/jobs";

async fn consumer(broker: &TestBroker, ack: &str, extra: &[(&str, &str)]) -> Client {
    let mut client = broker.ws_system("worker").await;
    let mut headers = vec![("ack", ack)];
    headers.extend_from_slice(extra);
    client.subscribe_with(QUEUE, "s", &headers).await;
    client
}

async fn produce(producer: &mut Client, bodies: &[&str]) {
    for (i, body) in bodies.iter().enumerate() {
        producer
            .send_with_receipt(QUEUE, body, &format!("p-{i}-{body}"))
            .await;
    }
}

fn assert_redelivered(message: &Frame) {
    assert_eq!(message.get("redelivered"), Some("true"), "{message:?}");
}

#[tokio::test]
async fn auto_ack_messages_carry_no_ack_header_and_are_not_redelivered() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut first = consumer(&broker, "auto", &[]).await;
    produce(&mut producer, &["m1"]).await;
    let (message, body) = first.message().await;
    assert_eq!(body, "m1");
    assert_eq!(message.get("ack"), None);
    first.disconnect().await;
    let mut second = consumer(&broker, "auto", &[]).await;
    produce(&mut producer, &["m2"]).await;
    assert_eq!(second.message().await.1, "m2");
    second.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn client_ack_is_cumulative() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut first = consumer(&broker, "client", &[]).await;
    produce(&mut producer, &["m1", "m2", "m3", "m4", "m5"]).await;
    let mut messages = Vec::new();
    for _ in 0..5 {
        messages.push(first.message().await.0);
    }
    // ACK of the third acknowledges the first three.
    first.ack(Command::Ack, &messages[2], "a3").await;
    first.disconnect().await;
    let mut second = consumer(&broker, "client-individual", &[]).await;
    let (m4, body4) = second.message().await;
    let (m5, body5) = second.message().await;
    assert_eq!((body4.as_str(), body5.as_str()), ("m4", "m5"));
    assert_redelivered(&m4);
    assert_redelivered(&m5);
    second.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn client_nack_is_cumulative() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut first = consumer(&broker, "client", &[]).await;
    produce(&mut producer, &["m1", "m2", "m3"]).await;
    let mut messages = Vec::new();
    for _ in 0..3 {
        messages.push(first.message().await.0);
    }
    let mut second = consumer(&broker, "client-individual", &[]).await;
    // NACK of the second refuses the first two; they go to the other consumer, in order.
    first.ack(Command::Nack, &messages[1], "n2").await;
    assert_eq!(second.bodies(2).await, ["m1", "m2"]);
    first.expect_nothing(Duration::from_millis(100)).await;
    second.expect_nothing(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn client_individual_ack_acknowledges_only_that_message() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut first = consumer(&broker, "client-individual", &[]).await;
    produce(&mut producer, &["m1", "m2", "m3"]).await;
    let mut messages = Vec::new();
    for _ in 0..3 {
        messages.push(first.message().await.0);
    }
    first.ack(Command::Ack, &messages[1], "a2").await;
    first.disconnect().await;
    let mut second = consumer(&broker, "client-individual", &[]).await;
    assert_eq!(second.bodies(2).await, ["m1", "m3"]);
    second.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn acknowledged_messages_are_not_redelivered() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut first = consumer(&broker, "client-individual", &[]).await;
    produce(&mut producer, &["m1", "m2"]).await;
    let (m1, _) = first.message().await;
    let (m2, _) = first.message().await;
    first.ack(Command::Ack, &m1, "a1").await;
    first.ack(Command::Ack, &m2, "a2").await;
    first.disconnect().await;
    let mut second = consumer(&broker, "client-individual", &[]).await;
    second.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn nacked_message_goes_to_another_consumer_marked_redelivered() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut first = consumer(&broker, "client-individual", &[]).await;
    produce(&mut producer, &["m1"]).await;
    let (message, _) = first.message().await;
    assert_eq!(message.get("redelivered"), None);
    let mut second = consumer(&broker, "client-individual", &[]).await;
    first.ack(Command::Nack, &message, "n").await;
    let (again, body) = second.message().await;
    assert_eq!(body, "m1");
    assert_redelivered(&again);
    first.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn nacked_message_comes_back_to_a_lone_consumer() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut only = consumer(&broker, "client-individual", &[]).await;
    produce(&mut producer, &["m1"]).await;
    let (message, _) = only.message().await;
    only.send(
        &Frame::new(Command::Nack)
            .header("id", message.get("ack").unwrap())
            .header("receipt", "n"),
    )
    .await;
    let (again, body) = only.message().await;
    assert_eq!(body, "m1");
    assert_redelivered(&again);
    only.expect_receipt("n").await;
}

#[tokio::test]
async fn unacked_messages_are_redelivered_when_their_subscriber_disconnects() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut first = consumer(&broker, "client-individual", &[]).await;
    produce(&mut producer, &["m1", "m2", "m3"]).await;
    first.bodies(3).await;
    let mut second = consumer(&broker, "client-individual", &[]).await;
    // Gone without DISCONNECT.
    drop(first);
    let mut redelivered = Vec::new();
    for _ in 0..3 {
        let (message, body) = second.message().await;
        assert_redelivered(&message);
        redelivered.push(body);
    }
    assert_eq!(redelivered, ["m1", "m2", "m3"]);
}

#[tokio::test]
async fn unsubscribe_returns_unacked_messages_to_the_queue_without_redelivering_them_to_it() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut first = consumer(&broker, "client-individual", &[]).await;
    produce(&mut producer, &["m1", "m2"]).await;
    first.bodies(2).await;
    first
        .request(Frame::new(Command::Unsubscribe).header("id", "s"), "u")
        .await;
    first.expect_nothing(Duration::from_millis(150)).await;
    let mut second = consumer(&broker, "client-individual", &[]).await;
    assert_eq!(second.bodies(2).await, ["m1", "m2"]);
}

#[tokio::test]
async fn prefetch_count_bounds_unacked_deliveries() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut worker = consumer(&broker, "client-individual", &[("prefetch-count", "2")]).await;
    produce(&mut producer, &["m1", "m2", "m3", "m4", "m5"]).await;
    let (m1, _) = worker.message().await;
    let (m2, _) = worker.message().await;
    worker.expect_nothing(Duration::from_millis(200)).await;
    worker
        .send(&Frame::new(Command::Ack).header("id", m1.get("ack").unwrap()))
        .await;
    let (m3, body) = worker.message().await;
    assert_eq!(body, "m3");
    worker.expect_nothing(Duration::from_millis(100)).await;
    for message in [&m2, &m3] {
        worker
            .send(&Frame::new(Command::Ack).header("id", message.get("ack").unwrap()))
            .await;
    }
    assert_eq!(worker.bodies(2).await, ["m4", "m5"]);
}

#[tokio::test]
async fn configured_queue_prefetch_caps_the_prefetch_count() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_QUEUE_PREFETCH", "1")]).await;
    let mut producer = broker.ws_system("producer").await;
    let mut worker = consumer(&broker, "client-individual", &[("prefetch-count", "10")]).await;
    produce(&mut producer, &["m1", "m2"]).await;
    assert_eq!(worker.message().await.1, "m1");
    worker.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn prefetch_does_not_hold_back_auto_consumers() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_QUEUE_PREFETCH", "1")]).await;
    let mut producer = broker.ws_system("producer").await;
    let mut worker = consumer(&broker, "auto", &[("prefetch-count", "1")]).await;
    produce(&mut producer, &["m1", "m2", "m3"]).await;
    assert_eq!(worker.bodies(3).await, ["m1", "m2", "m3"]);
}

#[tokio::test]
async fn queue_buffers_while_nobody_listens_and_delivers_in_order_on_subscribe() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let sent: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
    for body in &sent {
        producer.send_with_receipt(QUEUE, body, body).await;
    }
    let mut worker = broker.ws_system("worker").await;
    worker
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", QUEUE)
                .header("id", "s")
                .header("receipt", "sub"),
        )
        .await;
    let mut received = Vec::new();
    let mut receipt = false;
    while received.len() < sent.len() || !receipt {
        let frame = worker.frame().await;
        match frame.command {
            Command::Message => received.push(String::from_utf8_lossy(&frame.body).into_owned()),
            Command::Receipt => receipt = true,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(received, sent);
    worker.expect_nothing(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn queue_delivers_round_robin_over_its_consumers() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(consumer(&broker, "auto", &[]).await);
    }
    produce(&mut producer, &["m1", "m2", "m3", "m4", "m5", "m6"]).await;
    let mut seen = HashSet::new();
    for worker in &mut workers {
        let (_, a) = worker.message().await;
        let (_, b) = worker.message().await;
        let a: u32 = a[1..].parse().unwrap();
        let b: u32 = b[1..].parse().unwrap();
        // Each consumer gets every third message.
        assert_eq!(b, a + 3, "one consumer got m{a} and m{b}");
        seen.insert(a);
        seen.insert(b);
        worker.expect_nothing(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, (1..=6).collect());
}

#[tokio::test]
async fn queue_full_is_an_unavailable_error_on_the_errors_queue() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_QUEUE_MAX_MESSAGES", "2")]).await;
    let mut producer = broker.ws_system("producer").await;
    producer
        .subscribe("/user/queue/errors", "errors", "auto")
        .await;
    produce(&mut producer, &["m1", "m2"]).await;
    producer
        .send(
            &Frame::new(Command::Send)
                .header("destination", QUEUE)
                .header("receipt", "third")
                .body("m3"),
        )
        .await;
    let body = app_error(&producer.frame().await);
    assert_eq!(body["code"], "UNAVAILABLE");
    assert_eq!(body["receiptId"], "third");
    producer.ping("still-open").await;
    let mut worker = consumer(&broker, "auto", &[]).await;
    assert_eq!(worker.bodies(2).await, ["m1", "m2"]);
    worker.expect_nothing(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn ack_of_an_unknown_delivery_is_ignored() {
    let broker = TestBroker::start().await;
    let mut worker = consumer(&broker, "client-individual", &[]).await;
    worker
        .request(Frame::new(Command::Ack).header("id", "424242"), "a")
        .await;
    worker
        .request(Frame::new(Command::Nack).header("id", "not-a-number"), "n")
        .await;
}

#[tokio::test]
async fn ack_without_id_is_an_error() {
    let broker = TestBroker::start().await;
    let mut worker = consumer(&broker, "client-individual", &[]).await;
    worker
        .send(&Frame::new(Command::Ack).header("receipt", "a"))
        .await;
    let error = worker.expect_error("missing id header").await;
    assert_eq!(error.get("receipt-id"), Some("a"));
}

#[tokio::test]
async fn a_1_1_client_acks_by_message_id() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let token = broker.system_token("old");
    let mut old = broker.ws_raw().await;
    let connected = old
        .connect_with(
            Command::Connect,
            &[("accept-version", "1.1"), ("passcode", &token)],
        )
        .await;
    assert_eq!(connected.get("version"), Some("1.1"));
    old.set_version(Version::V1_1);
    old.subscribe(QUEUE, "s", "client-individual").await;
    produce(&mut producer, &["m1"]).await;
    let (message, _) = old.message().await;
    let id = message.get("message-id").unwrap();
    old.request(
        Frame::new(Command::Ack)
            .header("subscription", "s")
            .header("message-id", id),
        "a",
    )
    .await;
    old.disconnect().await;
    let mut next = consumer(&broker, "client-individual", &[]).await;
    next.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn client_ack_topic_messages_carry_an_ack_header_that_can_be_acked() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .subscribe("/topic/announcements", "s", "client-individual")
        .await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_with_receipt("/topic/announcements", "ack me", "p")
        .await;
    let (message, _) = alice.message().await;
    assert!(message.get("ack").is_some());
    alice.ack(Command::Ack, &message, "a").await;
}
