//! Pipelined SENDs over real sockets: one connection with many sends in flight is answered in
//! frame order and stores its messages in frame order, across conversations, beside frames
//! that wait (a transaction's COMMIT), with refusals in their place; a backend pipelines
//! notifications over STOMP/TCP; a bulk notification to thousands of users is stored once
//! each, and its retry stores nothing new.

use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

use crate::common::im::{self, send_json};
use crate::common::{Client, db};

/// What a session was answered, in order: `Ok(receipt id)` for a RECEIPT, `Err(receiptId)` for
/// an error on `/user/queue/errors`. Other frames (echoes, events) are skipped.
async fn answers(client: &mut Client, count: usize) -> Vec<Result<String, String>> {
    let mut answers = Vec::with_capacity(count);
    while answers.len() < count {
        let frame = client.frame().await;
        match frame.command {
            Command::Receipt => {
                answers.push(Ok(frame.get("receipt-id").unwrap_or_default().to_owned()))
            }
            Command::Message if frame.get("destination") == Some("/user/queue/errors") => {
                let body: Value = serde_json::from_slice(&frame.body).expect("JSON error");
                answers.push(Err(body["receiptId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()));
            }
            Command::Message => {}
            other => panic!("unexpected {other}: {frame:?}"),
        }
    }
    answers
}

/// The contents of a conversation's history in seq order, its seqs checked to be 1..=n.
async fn contents(
    broker: &crate::common::TestBroker,
    user: &str,
    conversation: &str,
) -> Vec<String> {
    im::contents_in_seq_order(im::history(broker, user, conversation, "?limit=100").await)
}

#[tokio::test]
async fn one_connection_pipelines_sends_and_stores_them_in_frame_order() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let peers = ["bob", "carol", "dave", "erin", "frank"];
        // 150 sends written back to back, none awaited; the 75th is refused (to oneself).
        let mut expected = Vec::new();
        for n in 0..150 {
            let to = if n == 75 {
                "alice"
            } else {
                peers[n % peers.len()]
            };
            send_json(
                &mut alice,
                "/app/private.send",
                &json!({"to": to, "clientMsgId": format!("c{n}"), "content": format!("m{n}")}),
                Some(&format!("r{n}")),
            )
            .await;
            let id = format!("r{n}");
            expected.push(if n == 75 { Err(id) } else { Ok(id) });
        }
        assert_eq!(answers(&mut alice, 150).await, expected, "{label}");
        for (index, peer) in peers.iter().enumerate() {
            let conversation = format!("private_alice_{peer}");
            let wanted: Vec<String> = (0..150)
                .filter(|n| *n != 75 && n % peers.len() == index)
                .map(|n| format!("m{n}"))
                .collect();
            assert_eq!(
                contents(&broker, "alice", &conversation).await,
                wanted,
                "{label}: {conversation}"
            );
        }
    }
}

#[tokio::test]
async fn a_commit_waits_for_the_sends_before_it_and_the_sends_after_it_wait_for_the_commit() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let send = |n: usize, transaction: Option<&str>| {
            let mut frame = Frame::new(Command::Send)
                .header("destination", "/app/private.send")
                .header("content-type", "application/json")
                .header("receipt", format!("r{n}"));
            if let Some(transaction) = transaction {
                frame = frame.header("transaction", transaction);
            }
            frame.body(
                json!({"to": "bob", "clientMsgId": format!("c{n}"), "content": format!("m{n}")})
                    .to_string(),
            )
        };
        let mut receipts = Vec::new();
        for n in 0..20 {
            alice.send(&send(n, None)).await;
            receipts.push(Ok(format!("r{n}")));
        }
        alice
            .send(
                &Frame::new(Command::Begin)
                    .header("transaction", "t1")
                    .header("receipt", "begin"),
            )
            .await;
        receipts.push(Ok("begin".to_owned()));
        for n in 20..30 {
            alice.send(&send(n, Some("t1"))).await;
            receipts.push(Ok(format!("r{n}")));
        }
        alice
            .send(
                &Frame::new(Command::Commit)
                    .header("transaction", "t1")
                    .header("receipt", "commit"),
            )
            .await;
        receipts.push(Ok("commit".to_owned()));
        for n in 30..50 {
            alice.send(&send(n, None)).await;
            receipts.push(Ok(format!("r{n}")));
        }
        assert_eq!(
            answers(&mut alice, receipts.len()).await,
            receipts,
            "{label}"
        );
        let wanted: Vec<String> = (0..50).map(|n| format!("m{n}")).collect();
        assert_eq!(
            contents(&broker, "bob", "private_alice_bob").await,
            wanted,
            "{label}"
        );
    }
}

#[tokio::test]
async fn a_backend_pipelines_notifications_over_tcp_in_frame_order() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let mut bob = broker.im_user("bob").await;
        let mut backend = broker.tcp(&broker.system_token("backend")).await;
        for n in 0..200 {
            send_json(
                &mut backend,
                "/user/bob/queue/notifications",
                &json!({"title": format!("t{n}")}),
                Some(&format!("n{n}")),
            )
            .await;
        }
        let expected: Vec<Result<String, String>> = (0..200).map(|n| Ok(format!("n{n}"))).collect();
        assert_eq!(answers(&mut backend, 200).await, expected, "{label}");
        let mut seen = Vec::new();
        while seen.len() < 200 {
            let pushed =
                im::event_on(&mut bob, "/user/queue/notifications", "notification.new").await;
            seen.push(pushed["content"].as_str().unwrap_or_default().to_owned());
        }
        let wanted: Vec<String> = (0..200).map(|n| format!("t{n}")).collect();
        assert_eq!(seen, wanted, "{label}: pushed in order");
        let mut stored = Vec::new();
        let mut after = 0;
        loop {
            let page = im::history(
                &broker,
                "bob",
                "system_bob",
                &format!("?afterSeq={after}&limit=100"),
            )
            .await;
            if page.is_empty() {
                break;
            }
            let mut page = page;
            page.sort_by_key(|m| m["seq"].as_i64());
            after = page.last().and_then(|m| m["seq"].as_i64()).unwrap_or(after);
            stored.extend(page);
        }
        assert_eq!(im::seqs(&stored), (1..=200).collect::<Vec<_>>(), "{label}");
        let stored: Vec<&str> = stored
            .iter()
            .map(|m| m["content"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(stored, wanted, "{label}: stored in frame order");
    }
}

#[tokio::test]
async fn a_bulk_notification_is_stored_once_per_user_and_its_retry_stores_nothing() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let mut online = broker.im_user("u17").await;
        let users: Vec<String> = (0..3000).map(|i| format!("u{i}")).collect();
        let request = json!({"userIds": users, "title": "Maintenance", "clientMsgId": "bulk-1"});
        let (status, first) = broker
            .api_system(
                "POST",
                "/api/v1/notifications",
                "backend",
                Some(request.clone()),
            )
            .await;
        assert_eq!(status, 201, "{label}");
        let items = first["items"].as_array().expect("items");
        assert_eq!(items.len(), 3000, "{label}");
        for (item, user) in items.iter().zip(&users) {
            assert_eq!(item["conversationId"], format!("system_{user}"), "{label}");
            assert_eq!(item["seq"], 1, "{label}");
        }
        let pushed =
            im::event_on(&mut online, "/user/queue/notifications", "notification.new").await;
        assert_eq!(pushed, items[17], "{label}");
        // The retry answers the same messages and stores nothing.
        let (status, again) = broker
            .api_system("POST", "/api/v1/notifications", "backend", Some(request))
            .await;
        assert_eq!(status, 201, "{label}");
        assert_eq!(again, first, "{label}");
        for user in ["u0", "u1500", "u2999"] {
            let stored = im::history(&broker, user, &format!("system_{user}"), "").await;
            assert_eq!(stored.len(), 1, "{label}: {user}");
        }
        im::quiet(&mut online).await;
        // Beyond the limit nothing is stored.
        let too_many: Vec<String> = (0..10_001).map(|i| format!("v{i}")).collect();
        let (status, refused) = broker
            .api_system(
                "POST",
                "/api/v1/notifications",
                "backend",
                Some(json!({"userIds": too_many, "title": "x"})),
            )
            .await;
        assert_eq!(status, 400, "{label}: {refused}");
        im::assert_error(&refused, "INVALID_ARGUMENT");
    }
}

#[tokio::test]
async fn a_burst_on_the_notifications_queue_is_stored_once_each_in_batches() {
    use lapin::{Connection, ConnectionProperties};

    for database in db::all().await {
        let label = database.label;
        let run = format!("burst-{:08x}", rand::random::<u32>());
        let queue = format!("{run}.notifications");
        let amqp = crate::common::cluster::amqp_url();
        let connection = Connection::connect(&amqp, ConnectionProperties::default())
            .await
            .expect("RabbitMQ");
        let channel = connection.create_channel().await.expect("channel");
        // 300 messages waiting before the broker starts: it takes them in batches.
        for n in 0..300 {
            let body = json!({"userIds": [format!("{run}-q{}", n % 20)], "title": format!("t{n}")});
            crate::common::cluster::publish_notification(
                &channel,
                &queue,
                &format!("{run}-{n}"),
                &body,
            )
            .await;
        }
        let broker = im::broker(
            &database.url,
            &[
                ("BROKER_RELAY_AMQP_URL", amqp.as_str()),
                ("BROKER_RELAY_NOTIFICATIONS_QUEUE", queue.as_str()),
                ("BROKER_CLUSTER_NODE_ID", run.as_str()),
            ],
        )
        .await;
        for user in 0..20 {
            let user = format!("{run}-q{user}");
            let conversation = format!("system_{user}");
            let path = format!("/api/v1/conversations/{conversation}/messages?limit=100");
            let stored = im::eventually("15 notifications each", || async {
                let (status, page) = broker.api("GET", &path, &user, None).await;
                let items = page["items"].as_array().cloned().unwrap_or_default();
                (status == 200 && items.len() >= 15).then_some(items)
            })
            .await;
            let wanted: Vec<String> = (0..300)
                .filter(|n| n % 20 == user[run.len() + 2..].parse::<usize>().unwrap_or(99))
                .map(|n| format!("t{n}"))
                .collect();
            assert_eq!(im::contents_in_seq_order(stored), wanted, "{label}: {user}");
        }
        im::stop(broker).await;
        let _ = channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
    }
}
