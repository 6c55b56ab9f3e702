//! `/app/private.send`: conversation creation, receipts, fan-out to every session, idempotent
//! retries (also across a broker restart) and gapless seqs under concurrent senders, on every
//! configured backend.

use std::collections::BTreeSet;

use crate::common::db;
use crate::common::im::{self, body, drain, event_on, now_ms, private_send, quiet, receipt};
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

const MESSAGE_FIELDS: [&str; 13] = [
    "id",
    "conversationId",
    "conversationType",
    "seq",
    "senderId",
    "clientMsgId",
    "format",
    "content",
    "attachment",
    "replyTo",
    "forwardedFrom",
    "status",
    "createdAt",
];

/// A message without its status, which changes as it is delivered and read.
fn same_message(message: &Value) -> Value {
    let mut message = message.clone();
    message.as_object_mut().unwrap().remove("status");
    message
}

#[tokio::test]
async fn the_first_private_message_creates_the_conversation_named_by_byte_order() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        // 'Z' sorts before 'a' in byte order.
        let (status, _) = broker
            .api("GET", "/api/v1/conversations/private_Zed_amy", "amy", None)
            .await;
        assert_eq!(status, 404, "{}", database.label);
        let mut amy = broker.im_user("amy").await;
        private_send(&mut amy, "Zed", "c-1", "hello", "r1").await;
        receipt(&mut amy, "r1").await;
        let message = event_on(&mut amy, "/user/queue/messages", "message.new").await;
        assert_eq!(
            message["conversationId"], "private_Zed_amy",
            "{}",
            database.label
        );
        assert_eq!(message["seq"], 1);
        let (status, conversation) = broker
            .api("GET", "/api/v1/conversations/private_Zed_amy", "Zed", None)
            .await;
        assert_eq!(status, 200, "{conversation}");
        assert_eq!(conversation["type"], "private");
        assert_eq!(conversation["peerId"], "amy");
        assert_eq!(conversation["lastSeq"], 1);
        assert_eq!(conversation["memberCount"], 2);
        assert_eq!(conversation["unreadCount"], 1);
    }
}

#[tokio::test]
async fn the_receipt_comes_only_after_the_message_is_stored() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        for i in 1..=5 {
            let receipt_id = format!("r{i}");
            private_send(
                &mut alice,
                "bob",
                &format!("c-{i}"),
                &format!("m{i}"),
                &receipt_id,
            )
            .await;
            // The RECEIPT is the first frame after the SEND: before the message is pushed.
            receipt(&mut alice, &receipt_id).await;
            // Stored by then: history has it without any wait.
            let items = im::history(&broker, "bob", "private_alice_bob", "").await;
            assert_eq!(items.len(), i, "{}", database.label);
            assert_eq!(items[i - 1]["content"], format!("m{i}"));
            let pushed = event_on(&mut alice, "/user/queue/messages", "message.new").await;
            assert_eq!(pushed["seq"], i);
        }
    }
}

#[tokio::test]
async fn message_new_reaches_every_session_of_both_users_with_every_field() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut alice_phone = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let mut bob_phone = broker.im_user("bob").await;
        let before = now_ms();
        private_send(&mut alice, "bob", "c-7f3a", "hello 你好", "r1").await;
        receipt(&mut alice, "r1").await;
        let mut copies = Vec::new();
        for client in [&mut alice, &mut alice_phone, &mut bob, &mut bob_phone] {
            copies.push(event_on(client, "/user/queue/messages", "message.new").await);
        }
        let message = &copies[0];
        for copy in &copies {
            assert_eq!(copy, message, "{}", database.label);
        }
        let fields: BTreeSet<&str> = message
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, MESSAGE_FIELDS.into_iter().collect(), "{message}");
        let id = message["id"].as_str().expect("id is a string");
        assert!(id.parse::<i64>().is_ok_and(|n| n > 0), "{id}");
        assert_eq!(message["conversationId"], "private_alice_bob");
        assert_eq!(message["conversationType"], "private");
        assert_eq!(message["seq"], 1);
        assert_eq!(message["senderId"], "alice");
        assert_eq!(message["clientMsgId"], "c-7f3a");
        assert_eq!(message["format"], "text");
        assert_eq!(message["content"], "hello 你好");
        assert_eq!(message["attachment"], Value::Null);
        assert_eq!(message["replyTo"], Value::Null);
        assert_eq!(message["forwardedFrom"], Value::Null);
        assert_eq!(message["status"], "sent");
        let created = message["createdAt"].as_i64().expect("createdAt");
        assert!(
            created >= before - 1000 && created <= now_ms() + 1000,
            "{created}"
        );
        // The stored message is the pushed one.
        let stored = im::history(&broker, "alice", "private_alice_bob", "").await;
        assert_eq!(stored[0]["id"], message["id"]);
        assert_eq!(stored[0]["createdAt"], message["createdAt"]);
    }
}

#[tokio::test]
async fn a_retried_client_msg_id_is_receipted_and_pushed_again_only_to_the_sender() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut alice_phone = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        private_send(&mut alice, "bob", "same", "first", "r1").await;
        receipt(&mut alice, "r1").await;
        let first = event_on(&mut alice, "/user/queue/messages", "message.new").await;
        drain(&mut alice).await;
        drain(&mut alice_phone).await;
        drain(&mut bob).await;

        private_send(&mut alice, "bob", "same", "second try", "r2").await;
        receipt(&mut alice, "r2").await;
        let again = event_on(&mut alice, "/user/queue/messages", "message.new").await;
        // The stored message, as it is now (Bob got it meanwhile).
        assert_eq!(
            same_message(&again),
            same_message(&first),
            "{}",
            database.label
        );
        assert_eq!(again["content"], "first");
        assert!(
            ["sent", "delivered"].contains(&again["status"].as_str().unwrap()),
            "{again}"
        );
        quiet(&mut alice).await;
        let phone = event_on(&mut alice_phone, "/user/queue/messages", "message.new").await;
        assert_eq!(phone, again);
        quiet(&mut alice_phone).await;
        quiet(&mut bob).await;

        // The retry took no seq.
        private_send(&mut alice, "bob", "next", "third", "r3").await;
        receipt(&mut alice, "r3").await;
        let next = event_on(&mut alice, "/user/queue/messages", "message.new").await;
        assert_eq!(next["seq"], 2, "{}", database.label);
        assert_eq!(
            im::seqs(&im::history(&broker, "bob", "private_alice_bob", "").await),
            vec![1, 2]
        );
    }
}

#[tokio::test]
async fn a_retry_after_a_broker_restart_stores_nothing_new() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        private_send(&mut alice, "bob", "c-1", "before the restart", "r1").await;
        receipt(&mut alice, "r1").await;
        let first = event_on(&mut alice, "/user/queue/messages", "message.new").await;
        drop(alice);
        im::stop(broker).await;

        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        private_send(&mut alice, "bob", "c-1", "after the restart", "r2").await;
        receipt(&mut alice, "r2").await;
        let again = event_on(&mut alice, "/user/queue/messages", "message.new").await;
        assert_eq!(
            same_message(&again),
            same_message(&first),
            "{}",
            database.label
        );
        quiet(&mut bob).await;
        let (status, rest) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"to": "bob", "clientMsgId": "c-1", "format": "text", "content": "over REST"})),
            )
            .await;
        assert_eq!(status, 200, "{rest}");
        assert_eq!(same_message(&rest), same_message(&first));
        drain(&mut alice).await;
        private_send(&mut alice, "bob", "c-2", "new", "r3").await;
        receipt(&mut alice, "r3").await;
        let next = event_on(&mut alice, "/user/queue/messages", "message.new").await;
        assert_eq!(next["seq"], 2, "{}", database.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_get_gapless_seqs() {
    const PER_SESSION: usize = 25;
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut sessions = Vec::new();
        for user in ["alice", "alice", "bob", "bob"] {
            sessions.push((user, broker.im_user(user).await));
        }
        let total = sessions.len() * PER_SESSION;
        let tasks = sessions.into_iter().enumerate().map(|(n, (user, mut client))| {
            let to = if user == "alice" { "bob" } else { "alice" };
            tokio::spawn(async move {
                for i in 0..PER_SESSION {
                    let frame = Frame::new(Command::Send)
                        .header("destination", "/app/private.send")
                        .header("receipt", format!("{n}-{i}"))
                        .body(
                            json!({"to": to, "clientMsgId": format!("s{n}-{i}"), "format": "text", "content": format!("{n}/{i}")})
                                .to_string(),
                        );
                    client.send(&frame).await;
                }
                // Every session sees its receipts, in order, and every message of the chat.
                let mut receipts = Vec::new();
                let mut seen = BTreeSet::new();
                let mut own_seqs = Vec::new();
                while receipts.len() < PER_SESSION || seen.len() < total {
                    let frame = client.frame().await;
                    match frame.command {
                        Command::Receipt => receipts.push(frame.get("receipt-id").unwrap().to_owned()),
                        Command::Message if frame.get("event") == Some("message.new") => {
                            let message = body(&frame);
                            let seq = message["seq"].as_i64().unwrap();
                            assert!(seen.insert(seq), "seq {seq} pushed twice");
                            if message["clientMsgId"].as_str().unwrap().starts_with(&format!("s{n}-")) {
                                own_seqs.push(seq);
                            }
                        }
                        _ => assert_ne!(frame.get("event"), Some("error"), "{}", String::from_utf8_lossy(&frame.body)),
                    }
                }
                let expected: Vec<String> = (0..PER_SESSION).map(|i| format!("{n}-{i}")).collect();
                assert_eq!(receipts, expected);
                (seen, own_seqs)
            })
        });
        let results = futures_util::future::join_all(tasks).await;
        let all: BTreeSet<i64> = (1..=i64::try_from(total).unwrap()).collect();
        for result in results {
            let (seen, own_seqs) = result.expect("session task");
            assert_eq!(seen, all, "{}", database.label);
            assert!(
                own_seqs.is_sorted(),
                "a session's messages keep its order: {own_seqs:?}"
            );
        }
        let stored = im::history(
            &broker,
            "alice",
            "private_alice_bob",
            "?afterSeq=0&limit=100",
        )
        .await;
        assert_eq!(
            im::seqs(&stored),
            (1..=i64::try_from(total).unwrap()).collect::<Vec<_>>(),
            "{}",
            database.label
        );
        let ids: BTreeSet<&str> = stored.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), total);
        let (_, conversation) = broker
            .api(
                "GET",
                "/api/v1/conversations/private_alice_bob",
                "bob",
                None,
            )
            .await;
        assert_eq!(conversation["lastSeq"], total);
    }
}

#[tokio::test]
async fn metrics_count_the_writers_batches_and_the_sends_in_them() {
    for database in db::all().await {
        let label = &database.label;
        let broker = im::broker(&database.url, &[]).await;
        let before_batches = broker.metric("broker_store_batch_seconds_count").await;
        let before_sends = broker.metric("broker_store_batch_messages_sum").await;
        let mut amy = broker.im_user("amy").await;
        for i in 0..3 {
            private_send(&mut amy, "ben", &format!("m-{i}"), "hi", &format!("r{i}")).await;
            receipt(&mut amy, &format!("r{i}")).await;
            event_on(&mut amy, "/user/queue/messages", "message.new").await;
        }
        // The metrics are the process's, shared with the tests running beside this one.
        let batches = broker.metric("broker_store_batch_seconds_count").await - before_batches;
        let sends = broker.metric("broker_store_batch_messages_sum").await - before_sends;
        assert!(batches >= 1.0, "{label}: {batches} batches");
        assert!(sends >= 3.0, "{label}: {sends} sends");
        let text = broker.metrics().await;
        for series in [
            "broker_store_batch_seconds_bucket{le=\"0.005\"}",
            "broker_store_batch_messages_bucket{le=\"1\"}",
            "broker_store_batch_failures_total",
        ] {
            assert!(text.contains(series), "{label}: /metrics lacks {series}");
        }
    }
}
