//! Generic `/queue/<name>` in cluster mode: the durable RabbitMQ queue `stomp.queue.<name>`,
//! consumed by subscribers on every node, surviving the loss of a node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::cluster::{Node, amqp_url, cluster_name, database, token};
use crate::common::db::TestDatabase;
use crate::common::{Client, Received};
use broker::auth::Role;
use stomp_codec::{Command, Frame};

/// A client with role `system`, which the default ACL lets use `/queue/*`.
async fn system(node: &Node, name: &str) -> Client {
    let mut client = Client::websocket(node.addr, None, &["v12.stomp"]).await;
    client.connect(&token(name, &[Role::System])).await;
    client
}

/// A queue name unique to the test, and its RabbitMQ queue deleted when the test ends.
struct TestQueue {
    destination: String,
    amqp: String,
}

impl TestQueue {
    fn new(cluster: &str, name: &str) -> TestQueue {
        TestQueue {
            destination: format!("/queue/{cluster}.{name}"),
            amqp: format!("stomp.queue.{cluster}.{name}"),
        }
    }

    /// Deletes the RabbitMQ queue; the test fails if it was never created.
    async fn delete(self) {
        use lapin::options::QueueDeleteOptions;
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                .await
                .expect("RabbitMQ reachable");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .queue_delete(self.amqp.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("the test queue exists in RabbitMQ");
        let _ = connection.close(200, "done".into()).await;
    }
}

/// Two nodes of a fresh cluster sharing a fresh database (kept alive by the first value), and
/// a queue named `name` unique to the test.
async fn two_nodes(name: &str) -> (TestDatabase, Node, Node, TestQueue) {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let queue = TestQueue::new(&cluster, name);
    (db, a, b, queue)
}

/// A fresh subscriber on `node` finds nothing: every message was acknowledged for good.
async fn expect_empty(node: &Node, queue: &TestQueue) {
    let mut other = system(node, "other").await;
    other.subscribe(&queue.destination, "o", "auto").await;
    other.expect_nothing(Duration::from_millis(800)).await;
}

/// Sends `count` messages `<prefix>-<i>`, each waiting for its RECEIPT.
async fn produce(client: &mut Client, destination: &str, prefix: &str, count: usize) {
    for i in 0..count {
        client
            .send_with_receipt(
                destination,
                &format!("{prefix}-{i}"),
                &format!("{prefix}-r{i}"),
            )
            .await;
    }
}

/// Bodies of the MESSAGEs that arrive until `quiet` passes without one, ACKing each with the
/// message's `ack` header when `ack` is set.
async fn drain(client: &mut Client, quiet: Duration, ack: bool) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(received) = client.receive_within(quiet).await {
        let Received::Frame(frame) = received else {
            panic!("connection closed while consuming");
        };
        assert_eq!(frame.command, Command::Message, "{frame:?}");
        bodies.push(String::from_utf8_lossy(&frame.body).into_owned());
        if ack {
            let id = frame.get("ack").expect("ack header").to_owned();
            client
                .send(&Frame::new(Command::Ack).header("id", id))
                .await;
        }
    }
    bodies
}

#[tokio::test]
async fn consumers_on_both_nodes_compete_and_each_message_goes_to_exactly_one() {
    let (_db, a, b, queue) = two_nodes("jobs").await;
    let prefetch_one = [("ack", "client-individual"), ("prefetch-count", "1")];
    let mut worker_a = system(&a, "worker-a").await;
    worker_a
        .subscribe_with(&queue.destination, "w", &prefetch_one)
        .await;
    let mut worker_b = system(&b, "worker-b").await;
    worker_b
        .subscribe_with(&queue.destination, "w", &prefetch_one)
        .await;

    let mut producer = system(&a, "producer").await;
    produce(&mut producer, &queue.destination, "job", 40).await;

    let quiet = Duration::from_millis(1500);
    let (got_a, got_b) = tokio::join!(
        drain(&mut worker_a, quiet, true),
        drain(&mut worker_b, quiet, true)
    );
    assert!(
        !got_a.is_empty(),
        "worker on a got nothing; b got {got_b:?}"
    );
    assert!(
        !got_b.is_empty(),
        "worker on b got nothing; a got {got_a:?}"
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for body in got_a.iter().chain(&got_b) {
        *counts.entry(body.as_str()).or_default() += 1;
    }
    let expected: BTreeSet<String> = (0..40).map(|i| format!("job-{i}")).collect();
    let seen: BTreeSet<String> = counts.keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(seen, expected);
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
    queue.delete().await;
}

#[tokio::test]
async fn a_nacked_message_is_delivered_again_marked_redelivered() {
    let (_db, a, b, queue) = two_nodes("retry").await;
    let mut worker = system(&b, "worker").await;
    worker
        .subscribe(&queue.destination, "w", "client-individual")
        .await;
    let mut producer = system(&a, "producer").await;
    producer
        .send_with_receipt(&queue.destination, "flaky", "p")
        .await;

    let (first, body) = worker.message().await;
    assert_eq!(body, "flaky");
    assert_eq!(first.get("redelivered"), None);
    let id = first.get("ack").unwrap().to_owned();
    worker
        .send(&Frame::new(Command::Nack).header("id", id.as_str()))
        .await;
    let (again, body) = worker.message().await;
    assert_eq!(body, "flaky");
    assert_eq!(again.get("redelivered"), Some("true"));
    assert_ne!(again.get("ack"), Some(id.as_str()));
    worker.ack(Command::Ack, &again, "acked").await;
    worker.expect_nothing(Duration::from_millis(800)).await;

    // Acknowledged for good: a fresh subscriber finds nothing.
    worker
        .request(Frame::new(Command::Unsubscribe).header("id", "w"), "unsub")
        .await;
    expect_empty(&a, &queue).await;
    queue.delete().await;
}

#[tokio::test]
async fn a_message_sent_with_nobody_subscribed_waits_for_a_subscriber_on_the_other_node() {
    let (_db, a, b, queue) = two_nodes("later").await;
    let mut producer = system(&a, "producer").await;
    producer
        .request(
            Frame::new(Command::Send)
                .header("destination", queue.destination.as_str())
                .header("content-type", "application/json")
                .header("x-trace", "t-7")
                .body(r#"{"job":1}"#),
            "sent",
        )
        .await;

    let mut worker = system(&b, "worker").await;
    worker.subscribe(&queue.destination, "late", "auto").await;
    let (frame, body) = worker.message().await;
    assert_eq!(body, r#"{"job":1}"#);
    assert_eq!(frame.get("destination"), Some(queue.destination.as_str()));
    assert_eq!(frame.get("subscription"), Some("late"));
    assert_eq!(frame.get("content-type"), Some("application/json"));
    assert_eq!(frame.get("x-trace"), Some("t-7"));
    assert!(
        frame
            .get("message-id")
            .is_some_and(|id| id.starts_with(&a.id)),
        "{frame:?}"
    );
    assert_eq!(frame.get("ack"), None);
    worker.expect_nothing(Duration::from_millis(800)).await;
    queue.delete().await;
}

#[tokio::test]
async fn what_a_killed_node_left_unacknowledged_goes_to_a_consumer_on_the_other_node() {
    let (_db, mut a, b, queue) = two_nodes("orphans").await;
    let mut worker_a = system(&a, "worker-a").await;
    worker_a
        .subscribe_with(
            &queue.destination,
            "w",
            &[("ack", "client-individual"), ("prefetch-count", "10")],
        )
        .await;
    let mut producer = system(&b, "producer").await;
    produce(&mut producer, &queue.destination, "held", 5).await;
    let held: BTreeSet<String> = worker_a.bodies(5).await.into_iter().collect();
    assert_eq!(held.len(), 5);

    a.kill().await;
    let mut worker_b = system(&b, "worker-b").await;
    worker_b
        .subscribe(&queue.destination, "w", "client-individual")
        .await;
    let mut again = BTreeSet::new();
    for _ in 0..5 {
        let (frame, body) = worker_b.message().await;
        assert_eq!(frame.get("redelivered"), Some("true"), "{frame:?}");
        assert!(again.insert(body.clone()), "{body} twice");
        let id = frame.get("ack").unwrap().to_owned();
        worker_b
            .send(&Frame::new(Command::Ack).header("id", id))
            .await;
    }
    assert_eq!(again, held);
    worker_b.expect_nothing(Duration::from_millis(800)).await;
    queue.delete().await;
}

#[tokio::test]
async fn receipted_sends_survive_the_death_of_the_sending_node() {
    let (_db, mut a, b, queue) = two_nodes("durable").await;
    let mut producer = system(&a, "producer").await;
    // Pipelined: every SEND goes out before the first RECEIPT is read.
    for i in 0..20 {
        producer
            .send(
                &Frame::new(Command::Send)
                    .header("destination", queue.destination.as_str())
                    .header("receipt", format!("r{i}"))
                    .body(format!("m-{i}")),
            )
            .await;
    }
    for i in 0..20 {
        producer.expect_receipt(&format!("r{i}")).await;
    }
    a.kill().await;

    let mut worker = system(&b, "worker").await;
    worker.subscribe(&queue.destination, "w", "auto").await;
    let bodies = drain(&mut worker, Duration::from_millis(1000), false).await;
    assert_eq!(
        bodies,
        (0..20).map(|i| format!("m-{i}")).collect::<Vec<_>>()
    );
    queue.delete().await;
}

#[tokio::test]
async fn client_acks_are_cumulative_and_follow_transactions() {
    let (_db, a, b, queue) = two_nodes("batch").await;
    let mut producer = system(&a, "producer").await;
    produce(&mut producer, &queue.destination, "b", 3).await;
    let mut worker = system(&b, "worker").await;
    worker.subscribe(&queue.destination, "w", "client").await;
    let mut last = None;
    for i in 0..3 {
        let (frame, body) = worker.message().await;
        assert_eq!(body, format!("b-{i}"));
        last = Some(frame);
    }
    let last = last.unwrap();
    let ack = last.get("ack").unwrap().to_owned();

    // An ACK in an aborted transaction settles nothing: leaving hands all three back.
    worker
        .request(Frame::new(Command::Begin).header("transaction", "t1"), "b1")
        .await;
    worker
        .request(
            Frame::new(Command::Ack)
                .header("id", ack.as_str())
                .header("transaction", "t1"),
            "a1",
        )
        .await;
    worker
        .request(Frame::new(Command::Abort).header("transaction", "t1"), "x1")
        .await;
    worker
        .request(Frame::new(Command::Unsubscribe).header("id", "w"), "u1")
        .await;
    worker.subscribe(&queue.destination, "w", "client").await;
    let mut last = None;
    for i in 0..3 {
        let (frame, body) = worker.message().await;
        assert_eq!(body, format!("b-{i}"));
        assert_eq!(frame.get("redelivered"), Some("true"));
        last = Some(frame);
    }
    let ack = last.unwrap().get("ack").unwrap().to_owned();

    // One committed ACK of the last settles all three.
    worker
        .request(Frame::new(Command::Begin).header("transaction", "t2"), "b2")
        .await;
    worker
        .request(
            Frame::new(Command::Ack)
                .header("id", ack.as_str())
                .header("transaction", "t2"),
            "a2",
        )
        .await;
    worker
        .request(
            Frame::new(Command::Commit).header("transaction", "t2"),
            "c2",
        )
        .await;
    worker
        .request(Frame::new(Command::Unsubscribe).header("id", "w"), "u2")
        .await;
    expect_empty(&a, &queue).await;
    queue.delete().await;
}

#[tokio::test]
async fn a_queue_subscriber_that_disconnects_hands_its_unacknowledged_messages_on() {
    let (_db, a, b, queue) = two_nodes("handover").await;
    let mut producer = system(&a, "producer").await;
    produce(&mut producer, &queue.destination, "h", 4).await;
    let mut first = system(&a, "first").await;
    first
        .subscribe(&queue.destination, "w", "client-individual")
        .await;
    let (frame, body) = first.message().await;
    assert_eq!(body, "h-0");
    assert_eq!(first.bodies(3).await, vec!["h-1", "h-2", "h-3"]);
    // One acknowledged, three left unacknowledged at DISCONNECT.
    first.ack(Command::Ack, &frame, "one").await;
    first.disconnect().await;

    let mut second = system(&b, "second").await;
    second.subscribe(&queue.destination, "w", "auto").await;
    let bodies = drain(&mut second, Duration::from_millis(1000), false).await;
    assert_eq!(bodies, vec!["h-1", "h-2", "h-3"]);
    queue.delete().await;
}

#[tokio::test]
async fn a_header_with_nul_published_to_rabbitmq_directly_never_reaches_a_subscriber() {
    use lapin::options::BasicPublishOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let (_db, a, _b, queue) = two_nodes("nul-header").await;
    let mut worker = system(&a, "worker").await;
    worker.subscribe(&queue.destination, "s", "auto").await;
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("RabbitMQ reachable");
    let channel = connection.create_channel().await.expect("channel");
    let mut headers = FieldTable::default();
    headers.insert("x-good".into(), AMQPValue::LongString("ok".into()));
    headers.insert("x-bad".into(), AMQPValue::LongString("a\0b".into()));
    channel
        .basic_publish(
            "".into(),
            queue.amqp.as_str().into(),
            BasicPublishOptions::default(),
            b"from outside",
            lapin::BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("published");
    let (message, body) = worker.message().await;
    assert_eq!(body, "from outside");
    assert_eq!(message.get("x-good"), Some("ok"));
    assert_eq!(message.get("x-bad"), None);
    let _ = connection.close(200, "done".into()).await;
    queue.delete().await;
}
