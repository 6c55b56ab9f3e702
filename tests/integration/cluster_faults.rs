//! A cluster riding out the loss of its services: RabbitMQ stopped and started again, and
//! Redis flushed, during traffic. In a test binary of its own, since it disturbs the shared
//! services that other cluster tests use.

use crate::common;

use std::time::Duration;

use crate::common::Client;
use crate::common::cluster::{Node, cluster_name, database, redis_url, token};
use broker::auth::Role;
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

async fn user(node: &Node, name: &str) -> Client {
    let mut client = Client::websocket(node.addr, None, &["v12.stomp"]).await;
    client.connect(&token(name, &[Role::User])).await;
    client.subscribe("/user/queue/messages", "m", "auto").await;
    client
}

/// A client with role `system`, which may use `/queue/*`, with its errors subscribed.
async fn system(node: &Node, name: &str) -> Client {
    let mut client = Client::websocket(node.addr, None, &["v12.stomp"]).await;
    client.connect(&token(name, &[Role::System])).await;
    client.subscribe("/user/queue/errors", "e", "auto").await;
    client
}

async fn send(client: &mut Client, to: &str, id: &str) {
    client
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/app/private.send")
                .header("receipt", id)
                .body(json!({"to": to, "clientMsgId": id, "content": id}).to_string()),
        )
        .await;
    loop {
        let frame = client.frame().await;
        if frame.command == Command::Receipt {
            assert_eq!(frame.get("receipt-id"), Some(id));
            return;
        }
    }
}

/// Waits for the next message.new from `id`, skipping anything else.
async fn receive(client: &mut Client, id: &str) {
    loop {
        let (frame, body) = client.message().await;
        if frame.get("event") == Some("message.new") {
            let message: Value = serde_json::from_str(&body).unwrap();
            if message["clientMsgId"] == id {
                return;
            }
        }
    }
}

async fn ready(node: &Node) -> u16 {
    common::http_get(node.addr, "/readyz").await.0
}

async fn wait_ready(node: &Node, status: u16) {
    for _ in 0..150 {
        if ready(node).await == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("node {} never answered /readyz {status}", node.id);
}

fn rabbitmqctl(command: &str) {
    let status = std::process::Command::new("rabbitmqctl")
        .arg(command)
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {command}");
}

#[tokio::test]
async fn the_cluster_rides_out_a_rabbitmq_restart_and_a_redis_flush() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let alice_name = format!("{cluster}-alice");
    let bob_name = format!("{cluster}-bob");
    let mut alice = user(&a, &alice_name).await;
    let mut bob = user(&b, &bob_name).await;
    send(&mut alice, &bob_name, "before").await;
    receive(&mut bob, "before").await;
    let queue = format!("/queue/{cluster}.faults");
    let mut worker = system(&b, "worker").await;
    worker.subscribe(&queue, "w", "client-individual").await;
    let mut backend = system(&a, "backend").await;
    backend.send_with_receipt(&queue, "q-before", "qb").await;
    let (frame, body) = worker.message().await;
    assert_eq!(body, "q-before");
    worker.ack(Command::Ack, &frame, "qb-acked").await;

    rabbitmqctl("stop_app");
    wait_ready(&a, 503).await;
    // Local delivery and storage go on while RabbitMQ is away.
    send(&mut alice, &bob_name, "during").await;
    // A queue message cannot be kept: the sender is told, and gets no RECEIPT.
    backend
        .send(
            &Frame::new(Command::Send)
                .header("destination", queue.as_str())
                .header("receipt", "qd")
                .body("q-during"),
        )
        .await;
    let (frame, _) = backend.message().await;
    assert_eq!(frame.get("event"), Some("error"));
    let error = common::app_error(&frame);
    assert_eq!(error["code"], "UNAVAILABLE", "{error}");
    rabbitmqctl("start_app");
    wait_ready(&a, 200).await;
    wait_ready(&b, 200).await;

    // The queue consumer on b is back: a message sent now reaches it.
    backend.send_with_receipt(&queue, "q-after", "qa").await;
    let (frame, body) = worker.message().await;
    assert_eq!(body, "q-after");
    worker.ack(Command::Ack, &frame, "qa-acked").await;

    // The relay is back and bound again: new messages cross nodes.
    let mut delivered = false;
    for attempt in 0..20 {
        let id = format!("after-{attempt}");
        send(&mut alice, &bob_name, &id).await;
        if let Some(common::Received::Frame(frame)) =
            bob.receive_within(Duration::from_millis(500)).await
            && frame.get("event") == Some("message.new")
        {
            delivered = true;
            break;
        }
    }
    assert!(
        delivered,
        "messages cross nodes again after RabbitMQ is back"
    );

    // What was sent during the outage is in the history, for the client to catch up by seq.
    let (status, page) = common::im::http_json(
        b.addr,
        "GET",
        &format!(
            "/api/v1/conversations/private_{}_{}/messages?afterSeq=0&limit=100",
            alice_name.as_str().min(bob_name.as_str()),
            alice_name.as_str().max(bob_name.as_str())
        ),
        Some(&token(&bob_name, &[Role::User])),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["clientMsgId"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"during"), "{ids:?}");

    // Redis loses everything: presence and sends keep working.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    send(&mut alice, &bob_name, "after-flush").await;
    let presence = format!("/api/v1/presence?userIds={alice_name}");
    let (status, _) = common::im::http_json(
        a.addr,
        "GET",
        &presence,
        Some(&token(&bob_name, &[Role::User])),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // The nodes notice the lost state at their next heartbeat and write their sessions again:
    // alice's session, opened before the flush, counts again.
    let mut online = false;
    for _ in 0..75 {
        let (_, answer) = common::im::http_json(
            a.addr,
            "GET",
            &presence,
            Some(&token(&bob_name, &[Role::User])),
            None,
        )
        .await;
        if answer[0]["online"] == true {
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(online, "presence recovers after a Redis flush");

    let connection = lapin::Connection::connect(&common::cluster::amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(
            format!("stomp.queue.{cluster}.faults").into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
}
