//! Two broker nodes as separate processes sharing PostgreSQL and RabbitMQ: cross-node
//! delivery, groups split across nodes, topics, and the loss of a node.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use crate::common::cluster::{Node, cluster_name, database, token};
use crate::common::{Client, Received};
use broker::auth::Role;
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

async fn user(node: &Node, name: &str, queues: &[&str]) -> Client {
    let mut client = Client::websocket(node.addr, None, &["v12.stomp"]).await;
    client.connect(&token(name, &[Role::User])).await;
    for queue in queues {
        client
            .subscribe(&format!("/user/queue/{queue}"), queue, "auto")
            .await;
    }
    client
}

fn json_body(frame: &Frame) -> Value {
    serde_json::from_slice(&frame.body).expect("JSON body")
}

async fn send_private(client: &mut Client, to: &str, id: &str, receipt: &str) {
    client
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/app/private.send")
                .header("receipt", receipt)
                .body(json!({"to": to, "clientMsgId": id, "content": id}).to_string()),
        )
        .await;
}

/// Every `message.new` a client receives within `wait`, by clientMsgId, counting repeats.
async fn collect_new(client: &mut Client, wait: Duration) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    while let Some(received) = client.receive_within(wait).await {
        let Received::Frame(frame) = received else {
            break;
        };
        if frame.get("event") == Some("message.new") {
            let id = json_body(&frame)["clientMsgId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test]
async fn a_private_message_crosses_nodes_once_to_every_session() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    // Users of their own: the tests of this file share RabbitMQ's `im.route` exchange.
    let (alice, bob) = (format!("{cluster}-alice"), format!("{cluster}-bob"));
    let mut alice_a = user(&a, &alice, &["messages"]).await;
    let mut alice_b = user(&b, &alice, &["messages"]).await;
    let mut bob_b = user(&b, &bob, &["messages"]).await;

    send_private(&mut alice_a, &bob, "x-1", "r1").await;
    alice_a.expect(Command::Receipt).await;

    let wait = Duration::from_millis(700);
    for (who, client) in [
        ("alice on a", &mut alice_a),
        ("alice on b", &mut alice_b),
        ("bob on b", &mut bob_b),
    ] {
        let seen = collect_new(client, wait).await;
        assert_eq!(seen.get("x-1"), Some(&1), "{who} got {seen:?}");
    }
}

#[tokio::test]
async fn a_group_split_across_nodes_gets_each_message_once_in_seq_order() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let names = ["alice", "bob", "carol"].map(|name| format!("{cluster}-{name}"));
    let (status, group) = common::im::http_json(
        a.addr,
        "POST",
        "/api/v1/groups",
        Some(&token(&names[0], &[Role::User])),
        Some(json!({"name": "split", "memberIds": [names[1], names[2]]})),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let id = group["id"].as_str().unwrap().to_owned();
    let topic = format!("/topic/group.{id}");
    let mut members = Vec::new();
    for (node, name) in [(&a, &names[0]), (&b, &names[1]), (&b, &names[2])] {
        let mut client = user(node, name, &[]).await;
        client.subscribe(&topic, "g", "auto").await;
        members.push(client);
    }
    // Each node orders the group from the last seq stored when its first member subscribed
    // (see `hub::sequencer`), so the race starts at the group's very first message.
    for i in 0..20 {
        let sender = if i % 2 == 0 { 0 } else { 1 };
        members[sender]
            .send(
                &Frame::new(Command::Send)
                    .header("destination", topic.as_str())
                    .header("receipt", format!("s{i}"))
                    .body(
                        json!({"clientMsgId": format!("g-{i}"), "content": format!("{i}")})
                            .to_string(),
                    ),
            )
            .await;
    }
    for (index, member) in members.iter_mut().enumerate() {
        let mut seqs = Vec::new();
        while let Some(Received::Frame(frame)) =
            member.receive_within(Duration::from_millis(700)).await
        {
            if frame.get("event") == Some("message.new") {
                seqs.push(json_body(&frame)["seq"].as_i64().unwrap());
            }
        }
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "member {index}");
    }
}

#[tokio::test]
async fn a_topic_publication_reaches_subscribers_on_the_other_node() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let mut listener = user(&b, "dave", &[]).await;
    listener
        .subscribe("/topic/announcements", "ann", "auto")
        .await;
    let mut backend = Client::websocket(a.addr, None, &["v12.stomp"]).await;
    backend.connect(&token("backend", &[Role::System])).await;
    backend
        .send_with_receipt("/topic/announcements", "hello cluster", "p")
        .await;
    let (_, body) = listener.message().await;
    assert_eq!(body, "hello cluster");
    listener.expect_nothing(Duration::from_millis(400)).await;
}

#[tokio::test]
async fn after_a_node_is_killed_its_users_find_every_receipted_message_on_the_other_node() {
    let cluster = cluster_name();
    let db = database().await;
    let mut a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let (alice_id, bob) = (format!("{cluster}-alice"), format!("{cluster}-bob"));
    let history =
        format!("/api/v1/conversations/private_{alice_id}_{bob}/messages?afterSeq=0&limit=100");
    let mut alice = user(&a, &alice_id, &[]).await;
    let mut receipted = Vec::new();
    for i in 0..30 {
        let id = format!("k-{i}");
        send_private(&mut alice, &bob, &id, &id).await;
        if i < 25 {
            let frame = alice.expect(Command::Receipt).await;
            receipted.push(frame.get("receipt-id").unwrap().to_owned());
        }
    }
    // Whatever was in flight when the node dies may or may not be stored; what had a RECEIPT
    // must be.
    let _ = alice.receive_within(Duration::from_millis(50)).await;
    a.kill().await;
    drop(alice);

    let (status, page) = common::im::http_json(
        b.addr,
        "GET",
        &history,
        Some(&token(&alice_id, &[Role::User])),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    let ids: Vec<&str> = items
        .iter()
        .map(|m| m["clientMsgId"].as_str().unwrap())
        .collect();
    for receipt in &receipted {
        assert_eq!(
            ids.iter().filter(|id| *id == receipt).count(),
            1,
            "{receipt} in {ids:?}"
        );
    }
    let seqs: Vec<i64> = items.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>()
    );

    // Retrying the unconfirmed sends on the surviving node stores each once.
    let mut alice = user(&b, &alice_id, &[]).await;
    for i in 25..30 {
        let id = format!("k-{i}");
        send_private(&mut alice, &bob, &id, &id).await;
        alice.expect(Command::Receipt).await;
    }
    let (_, page) = common::im::http_json(
        b.addr,
        "GET",
        &history,
        Some(&token(&alice_id, &[Role::User])),
        None,
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 30, "{page}");
}

#[tokio::test]
async fn presence_is_cluster_wide() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let alice = format!("{cluster}-alice");
    let bob = format!("{cluster}-bob");
    let (status, _) = common::im::http_json(
        a.addr,
        "POST",
        "/api/v1/messages",
        Some(&token(&alice, &[Role::User])),
        Some(json!({"to": bob, "clientMsgId": "hello", "content": "hi"})),
    )
    .await;
    assert_eq!(status, 201);
    let mut watcher = user(&b, &bob, &[]).await;
    watcher
        .subscribe(&format!("/topic/presence.{alice}"), "p", "auto")
        .await;

    let mut alice_a = user(&a, &alice, &[]).await;
    let (frame, body) = watcher.message().await;
    assert_eq!(frame.get("event"), Some("presence"));
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["online"], true);

    let presence = format!("/api/v1/presence?userIds={alice}");
    let (status, answer) = common::im::http_json(
        b.addr,
        "GET",
        &presence,
        Some(&token(&bob, &[Role::User])),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer[0]["online"], true, "{answer}");

    alice_a.disconnect_quietly().await;
    let (_, body) = watcher.message().await;
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["online"], false, "{event}");
    assert!(event["lastSeenAt"].is_i64());
    let (_, answer) = common::im::http_json(
        b.addr,
        "GET",
        &presence,
        Some(&token(&bob, &[Role::User])),
        None,
    )
    .await;
    assert_eq!(answer[0]["online"], false, "{answer}");
}

#[tokio::test]
async fn notifications_published_to_rabbitmq_are_stored_and_pushed_once() {
    use lapin::{Connection, ConnectionProperties};

    let cluster = cluster_name();
    let db = database().await;
    // A queue of this test's own, so that nodes of other tests running now cannot take it.
    let queue = format!("{cluster}.notifications");
    let settings = [("BROKER_RELAY_NOTIFICATIONS_QUEUE", queue.as_str())];
    let a = Node::start(&cluster, "a", &db.url, &settings).await;
    let b = Node::start(&cluster, "b", &db.url, &settings).await;
    let carol = format!("{cluster}-carol");
    let mut carol_b = user(&b, &carol, &["notifications"]).await;

    let connection = Connection::connect(
        &common::cluster::amqp_url(),
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ");
    let channel = connection.create_channel().await.unwrap();
    let body = json!({"userIds": [carol], "title": "Order shipped", "content": "#42 is on its way", "bizType": "order", "bizId": "42"});
    common::cluster::publish_notification(&channel, &queue, &format!("{cluster}-n1"), &body).await;
    let (frame, text) = carol_b.message().await;
    assert_eq!(frame.get("event"), Some("notification.new"));
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(message["format"], "card");
    assert_eq!(message["conversationId"], format!("system_{carol}"));
    carol_b.expect_nothing(Duration::from_millis(500)).await;

    let (status, page) = common::im::http_json(
        a.addr,
        "GET",
        &format!("/api/v1/conversations/system_{carol}/messages"),
        Some(&token(&carol, &[Role::User])),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn domain_events_reach_im_events_after_the_commit() {
    use futures_util::StreamExt;
    use lapin::options::{
        BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{Connection, ConnectionProperties, ExchangeKind};

    let connection = Connection::connect(
        &common::cluster::amqp_url(),
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ");
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            "im.events".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            "im.events".into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut events = channel
        .basic_consume(
            queue.name().clone(),
            "events-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let alice = format!("{cluster}-alice");
    let bob = format!("{cluster}-bob");
    let (status, _) = common::im::http_json(
        a.addr,
        "POST",
        "/api/v1/messages",
        Some(&token(&alice, &[Role::User])),
        Some(json!({"to": bob, "clientMsgId": "ev-1", "content": "are you there?"})),
    )
    .await;
    assert_eq!(status, 201);

    let mut seen: HashMap<String, Value> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.len() < 3 {
        let delivery = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("events within 5 s")
            .expect("stream open")
            .expect("delivery");
        let body: Value = serde_json::from_slice(&delivery.data).unwrap();
        if body["nodeId"]
            .as_str()
            .is_some_and(|n| n.starts_with(&cluster))
        {
            assert_eq!(
                delivery.routing_key.as_str(),
                body["event"].as_str().unwrap()
            );
            assert_eq!(
                delivery.properties.kind().as_ref().map(|k| k.as_str()),
                body["event"].as_str()
            );
            seen.insert(body["event"].as_str().unwrap().to_owned(), body);
        }
    }
    assert_eq!(seen["message.sent"]["clientMsgId"], "ev-1");
    assert_eq!(seen["message.sent"]["senderId"], alice.as_str());
    assert_eq!(
        seen["conversation.created"]["conversationId"],
        seen["message.sent"]["conversationId"]
    );
    assert_eq!(seen["message.offline"]["userIds"][0], bob.as_str());
}

#[tokio::test]
async fn assistant_messages_reach_staff_and_the_user_across_nodes() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let alice_id = format!("{cluster}-alice");
    let mut alice = user(&a, &alice_id, &["messages"]).await;
    let mut desk = Client::websocket(b.addr, None, &["v12.stomp"]).await;
    desk.connect(&token("agent", &[Role::Staff])).await;
    desk.subscribe("/topic/assistant", "desk", "auto").await;

    alice
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/app/assistant.send")
                .header("receipt", "q")
                .body(json!({"clientMsgId": "q1", "content": "help"}).to_string()),
        )
        .await;
    let asked = collect_new(&mut desk, Duration::from_millis(1500)).await;
    assert_eq!(asked, HashMap::from([("q1".to_owned(), 1)]));

    desk.send(
        &Frame::new(Command::Send)
            .header("destination", "/app/assistant.send")
            .header("receipt", "r")
            .body(
                json!({"conversationId": format!("assistant_{alice_id}"), "clientMsgId": "r1", "content": "on it"})
                    .to_string(),
            ),
    )
    .await;
    let answered = collect_new(&mut alice, Duration::from_millis(1500)).await;
    assert_eq!(
        answered,
        HashMap::from([("q1".to_owned(), 1), ("r1".to_owned(), 1)])
    );
}

#[tokio::test]
async fn group_read_counts_and_housekeeping_events_cross_nodes() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let names = ["alice", "bob", "carol"].map(|name| format!("{cluster}-{name}"));
    let tokens = names.clone().map(|name| token(&name, &[Role::User]));
    let (status, group) = common::im::http_json(
        a.addr,
        "POST",
        "/api/v1/groups",
        Some(&tokens[0]),
        Some(json!({"name": "reads", "memberIds": [names[1], names[2]]})),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let id = group["id"].as_str().unwrap().to_owned();
    // Alice is on node b; she sends over REST on node a, bob and carol read on node a.
    let mut alice = user(&b, &names[0], &["events"]).await;
    let (status, sent) = common::im::http_json(
        a.addr,
        "POST",
        "/api/v1/messages",
        Some(&tokens[0]),
        Some(json!({"conversationId": id, "clientMsgId": "r1", "content": "read me"})),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    let seq = sent["seq"].as_i64().unwrap();
    for reader in [&tokens[1], &tokens[2]] {
        let (status, body) = common::im::http_json(
            a.addr,
            "POST",
            &format!("/api/v1/conversations/{id}/read"),
            Some(reader),
            Some(json!({"upToSeq": seq})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut best = 0;
    while let Some(Received::Frame(frame)) = alice.receive_within(Duration::from_secs(3)).await {
        if frame.get("event") == Some("message.read_count") {
            let body = json_body(&frame);
            assert_eq!(body["conversationId"], id.as_str());
            best = best.max(body["counts"][0]["readCount"].as_i64().unwrap_or(0));
            if best == 2 {
                break;
            }
        }
    }
    assert_eq!(best, 2, "both reads on node a reach the sender on node b");

    // Clearing on node a reaches alice's session on node b.
    let (status, view) = common::im::http_json(
        a.addr,
        "POST",
        &format!("/api/v1/conversations/{id}/clear"),
        Some(&tokens[0]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{view}");
    loop {
        let Some(Received::Frame(frame)) = alice.receive_within(Duration::from_secs(5)).await
        else {
            panic!("no conversation.updated on node b");
        };
        if frame.get("event") == Some("conversation.updated") {
            assert_eq!(json_body(&frame)["clearedSeq"], seq);
            break;
        }
    }
}

#[tokio::test]
async fn offline_push_asks_the_whole_cluster_and_goes_out_once() {
    let cluster = cluster_name();
    let db = database().await;
    let (url, mut hook) = push_receiver().await;
    let settings = [
        ("BROKER_PUSH_PROVIDER", "webhook"),
        ("BROKER_PUSH_URL", url.as_str()),
    ];
    let a = Node::start(&cluster, "a", &db.url, &settings).await;
    let b = Node::start(&cluster, "b", &db.url, &settings).await;
    let [alice, bob] = ["alice", "bob"].map(|name| format!("{cluster}-{name}"));
    let [alice_token, bob_token] = [&alice, &bob].map(|name| token(name, &[Role::User]));
    let (status, body) = common::im::http_json(
        b.addr,
        "POST",
        "/api/v1/devices",
        Some(&bob_token),
        Some(json!({"token": "bob-phone", "platform": "android"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let send = |id: &'static str| {
        let alice_token = alice_token.clone();
        let bob = bob.clone();
        async move {
            let (status, body) = common::im::http_json(
                a.addr,
                "POST",
                "/api/v1/messages",
                Some(&alice_token),
                Some(json!({"to": bob, "clientMsgId": id, "content": id})),
            )
            .await;
            assert_eq!(status, 201, "{body}");
        }
    };
    // Bob is online on node b: node a, which stores the message, finds him there.
    let mut bob_session = user(&b, &bob, &["messages"]).await;
    send("while-online").await;
    let pushed = tokio::time::timeout(Duration::from_secs(1), hook.recv()).await;
    assert!(
        pushed.is_err(),
        "no push while bob is online on the other node"
    );
    bob_session.disconnect_quietly().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    send("while-offline").await;
    let body = tokio::time::timeout(Duration::from_secs(5), hook.recv())
        .await
        .expect("a push")
        .expect("the receiver runs");
    assert_eq!(body["pushes"][0]["body"], "while-offline");
    assert!(
        tokio::time::timeout(Duration::from_secs(1), hook.recv())
            .await
            .is_err(),
        "one push, not one per node"
    );
}

/// An HTTP receiver that answers 200 and hands over each request's JSON body.
async fn push_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).await.unwrap_or(0);
                        let header = header.trim_end().to_ascii_lowercase();
                        if header.is_empty() {
                            break;
                        }
                        if let Some(value) = header.strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).await.unwrap();
                    let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if reader.get_mut().write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn contact_events_reach_both_users_on_either_node() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let [alice, bob] = ["alice", "bob"].map(|name| format!("{cluster}-{name}"));
    let [alice_token, bob_token] = [&alice, &bob].map(|name| token(name, &[Role::User]));
    let mut alice_session = user(&a, &alice, &["events"]).await;
    let mut bob_session = user(&b, &bob, &["events"]).await;
    async fn event(client: &mut Client, name: &str) -> Value {
        loop {
            let Some(Received::Frame(frame)) = client.receive_within(Duration::from_secs(5)).await
            else {
                panic!("no {name}");
            };
            if frame.get("event") == Some(name) {
                return json_body(&frame);
            }
        }
    }
    // Asked on node a, bob hears of it on node b; accepted on node b, alice hears on node a.
    let (status, request) = common::im::http_json(
        a.addr,
        "POST",
        "/api/v1/contact-requests",
        Some(&alice_token),
        Some(json!({"userId": bob, "note": "hi"})),
    )
    .await;
    assert_eq!(status, 200, "{request}");
    assert_eq!(
        event(&mut bob_session, "contact.request").await["fromUserId"],
        alice.as_str()
    );
    let id = request["id"].as_str().unwrap();
    let (status, body) = common::im::http_json(
        b.addr,
        "POST",
        &format!("/api/v1/contact-requests/{id}/accept"),
        Some(&bob_token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        event(&mut alice_session, "contact.accepted").await["userId"],
        bob.as_str()
    );
    assert_eq!(
        event(&mut bob_session, "contact.accepted").await["userId"],
        alice.as_str()
    );
}
