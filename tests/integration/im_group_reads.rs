//! Read receipts in groups (contract 5.3): read counts derived from the members' read
//! positions, who read a message for its sender and the group's managers, and the coalesced
//! `message.read_count` events. On every configured backend.

use std::time::{Duration, Instant};

use crate::common::im::{self, assert_error, history};
use crate::common::{TestBroker, db};
use serde_json::{Value, json};

async fn group_message(broker: &TestBroker, from: &str, group: &str, n: usize) -> Value {
    let (status, message) = broker
        .api(
            "POST",
            "/api/v1/messages",
            from,
            Some(json!({"conversationId": group, "clientMsgId": format!("{from}-{n}"), "content": format!("m{n}")})),
        )
        .await;
    assert_eq!(status, 201, "{message}");
    message
}

async fn read(broker: &TestBroker, user: &str, group: &str, up_to: i64) {
    let (status, body) = broker
        .api(
            "POST",
            &format!("/api/v1/conversations/{group}/read"),
            user,
            Some(json!({"upToSeq": up_to})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

fn counts(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|m| m["readCount"].as_i64().expect("readCount"))
        .collect()
}

#[tokio::test]
async fn group_messages_carry_read_counts_and_their_readers() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "reads", &["bob", "carol", "dave"]).await;
        let mut sent = Vec::new();
        for n in 1..=3 {
            sent.push(group_message(&broker, "alice", &group, n).await);
        }
        let seq = |i: usize| sent[i]["seq"].as_i64().unwrap();
        read(&broker, "bob", &group, seq(1)).await;
        read(&broker, "carol", &group, seq(2)).await;

        for viewer in ["alice", "bob", "dave"] {
            let items = history(&broker, viewer, &group, "").await;
            assert_eq!(counts(&items), [2, 2, 1], "{label}: as {viewer} sees it");
        }
        let path = |i: usize| format!("/api/v1/messages/{}", sent[i]["id"].as_str().unwrap());
        let (status, one) = broker.api("GET", &path(2), "dave", None).await;
        assert_eq!(status, 200, "{label}: {one}");
        assert_eq!(one["readCount"], 1);

        let (status, readers) = broker
            .api("GET", &format!("{}/readers", path(2)), "alice", None)
            .await;
        assert_eq!(status, 200, "{label}: {readers}");
        assert_eq!(readers["readCount"], 1);
        assert_eq!(readers["readers"], json!(["carol"]));
        assert_eq!(readers["unread"], json!(["bob", "dave"]));

        // A plain member may not ask about someone else's message; an admin may.
        let (status, body) = broker
            .api("GET", &format!("{}/readers", path(0)), "bob", None)
            .await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "FORBIDDEN");
        let (status, _) = broker
            .api(
                "PUT",
                &format!("/api/v1/groups/{group}/members/bob/role"),
                "alice",
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(status, 204);
        let (status, readers) = broker
            .api("GET", &format!("{}/readers", path(0)), "bob", None)
            .await;
        assert_eq!(status, 200, "{label}: {readers}");
        assert_eq!(readers["readers"], json!(["bob", "carol"]));
        let (status, body) = broker
            .api("GET", &format!("{}/readers", path(0)), "erin", None)
            .await;
        assert_eq!(status, 404, "{label}: {body}");

        // A member who joins later is not in the audience of what came before.
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/groups/{group}/members"),
                "alice",
                Some(json!({"userIds": ["erin"]})),
            )
            .await;
        assert_eq!(status, 200);
        read(&broker, "erin", &group, seq(2)).await;
        let (_, readers) = broker
            .api("GET", &format!("{}/readers", path(2)), "alice", None)
            .await;
        assert_eq!(readers["unread"], json!(["bob", "dave"]), "{label}");
    }
}

/// Every `message.read_count` event `client` gets within `window`.
async fn read_count_events(client: &mut crate::common::Client, window: Duration) -> Vec<Value> {
    let mut events = Vec::new();
    let end = Instant::now() + window;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Some(crate::common::Received::Frame(frame)) = client.receive_within(left).await else {
            break;
        };
        if frame.get("event") == Some("message.read_count") {
            events.push(im::body(&frame));
        }
    }
    events
}

#[tokio::test]
async fn senders_hear_of_reads_coalesced_not_once_per_read() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let members: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
        let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
        let group = im::create_group(&broker, "alice", "burst", &member_refs).await;
        let mut last = 0;
        for n in 1..=5 {
            last = group_message(&broker, "alice", &group, n).await["seq"]
                .as_i64()
                .unwrap();
        }
        let mut alice = broker.im_user("alice").await;
        // 8 members each read the 5 messages one at a time: 40 reads.
        for up_to in (last - 4)..=last {
            for member in &members {
                read(&broker, member, &group, up_to).await;
            }
        }
        let events = read_count_events(&mut alice, Duration::from_millis(3500)).await;
        assert!(
            !events.is_empty() && events.len() <= 5,
            "{label}: 40 reads within about a second make a few events, not 40: {}",
            events.len()
        );
        // Each event carries the messages read since the one before: the newest count of
        // every message, across the events, is every member's read.
        let mut newest = std::collections::BTreeMap::new();
        for event in &events {
            for count in event["counts"].as_array().unwrap() {
                newest.insert(
                    count["seq"].as_i64().unwrap(),
                    count["readCount"].as_i64().unwrap(),
                );
            }
        }
        let counts: Vec<(i64, i64)> = newest.into_iter().collect();
        assert_eq!(
            counts,
            ((last - 4)..=last).map(|s| (s, 8)).collect::<Vec<_>>(),
            "{label}: the events end with every member's read: {events:?}"
        );
        assert_eq!(events.last().unwrap()["conversationId"], group);
    }
}
