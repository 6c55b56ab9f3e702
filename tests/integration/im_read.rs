//! Read positions (contract 5.3) over STOMP and REST on every configured backend: forward only,
//! `conversation.updated` to the reader's other sessions, `message.read` to the other user, and
//! the unread counts of the conversation list and `/unread`.

use crate::common::im::{
    self, drain, event_on, private_send, quiet, receipt, send_json, unread_of,
};
use crate::common::{Client, db};
use serde_json::json;

const CHAT: &str = "private_alice_bob";

/// Alice sends `n` messages to Bob.
async fn alice_sends(alice: &mut Client, n: usize, tag: &str) {
    drain(alice).await;
    for i in 0..n {
        let receipt_id = format!("{tag}-{i}");
        private_send(alice, "bob", &format!("{tag}-{i}"), "hi", &receipt_id).await;
        receipt(alice, &receipt_id).await;
        drain(alice).await;
    }
}

async fn read_over_stomp(client: &mut Client, conversation: &str, up_to: i64, receipt_id: &str) {
    drain(client).await;
    send_json(
        client,
        "/app/message.read",
        &json!({"conversationId": conversation, "upToSeq": up_to}),
        Some(receipt_id),
    )
    .await;
    receipt(client, receipt_id).await;
}

#[tokio::test]
async fn reading_over_stomp_tells_the_other_user_and_lowers_the_unread_count() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        alice_sends(&mut alice, 3, "m").await;
        drain(&mut bob).await;
        assert_eq!(
            unread_of(&broker, "bob", CHAT).await,
            3,
            "{}",
            database.label
        );
        read_over_stomp(&mut bob, CHAT, 2, "read").await;
        let read = event_on(&mut alice, "/user/queue/events", "message.read").await;
        assert_eq!(
            read,
            json!({"conversationId": CHAT, "readerId": "bob", "upToSeq": 2}),
            "{}",
            database.label
        );
        assert_eq!(unread_of(&broker, "bob", CHAT).await, 1);
        let unread = im::unread(&broker, "bob").await;
        assert_eq!(
            unread,
            json!({"total": 1, "conversations": [{"id": CHAT, "unreadCount": 1, "muted": false, "mentioned": false}]})
        );
        // The sender's own messages are never unread for her.
        assert_eq!(unread_of(&broker, "alice", CHAT).await, 0);
    }
}

#[tokio::test]
async fn the_read_position_only_moves_forward() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        alice_sends(&mut alice, 3, "m").await;
        read_over_stomp(&mut bob, CHAT, 3, "r1").await;
        event_on(&mut alice, "/user/queue/events", "message.read").await;
        drain(&mut bob).await;

        read_over_stomp(&mut bob, CHAT, 1, "r2").await;
        let (status, answer) = broker
            .api(
                "POST",
                &format!("/api/v1/conversations/{CHAT}/read"),
                "bob",
                Some(json!({"upToSeq": 2})),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer,
            json!({"conversationId": CHAT, "readSeq": 3}),
            "{}",
            database.label
        );
        // Nothing moved, so nobody is told.
        quiet(&mut alice).await;
        quiet(&mut bob).await;
        assert_eq!(unread_of(&broker, "bob", CHAT).await, 0);
        assert_eq!(
            im::listed(&broker, "bob", CHAT).await.unwrap()["readSeq"],
            3
        );
    }
}

#[tokio::test]
async fn reading_past_the_last_message_stops_at_the_last() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        alice_sends(&mut alice, 2, "m").await;
        read_over_stomp(&mut bob, CHAT, 99, "r").await;
        let read = event_on(&mut alice, "/user/queue/events", "message.read").await;
        assert_eq!(read["upToSeq"], 2, "{}", database.label);
        // A new message is unread again.
        alice_sends(&mut alice, 1, "late").await;
        assert_eq!(unread_of(&broker, "bob", CHAT).await, 1);
    }
}

#[tokio::test]
async fn conversation_updated_goes_to_the_readers_other_sessions_not_the_reading_one() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let mut bob_phone = broker.im_user("bob").await;
        alice_sends(&mut alice, 3, "m").await;
        drain(&mut bob).await;
        drain(&mut bob_phone).await;
        read_over_stomp(&mut bob, CHAT, 2, "read").await;
        let updated = event_on(&mut bob_phone, "/user/queue/events", "conversation.updated").await;
        assert_eq!(
            updated,
            json!({"conversationId": CHAT, "readSeq": 2, "unreadCount": 1}),
            "{}",
            database.label
        );
        quiet(&mut bob).await;
        quiet(&mut bob_phone).await;
    }
}

#[tokio::test]
async fn reading_over_rest_tells_every_session_of_the_reader_and_the_other_user() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let mut bob_phone = broker.im_user("bob").await;
        alice_sends(&mut alice, 3, "m").await;
        drain(&mut bob).await;
        drain(&mut bob_phone).await;
        let (status, answer) = broker
            .api(
                "POST",
                &format!("/api/v1/conversations/{CHAT}/read"),
                "bob",
                Some(json!({"upToSeq": 3})),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, json!({"conversationId": CHAT, "readSeq": 3}));
        for session in [&mut bob, &mut bob_phone] {
            let updated = event_on(session, "/user/queue/events", "conversation.updated").await;
            assert_eq!(
                updated,
                json!({"conversationId": CHAT, "readSeq": 3, "unreadCount": 0}),
                "{}",
                database.label
            );
        }
        let read = event_on(&mut alice, "/user/queue/events", "message.read").await;
        assert_eq!(
            read,
            json!({"conversationId": CHAT, "readerId": "bob", "upToSeq": 3})
        );
    }
}

#[tokio::test]
async fn read_messages_show_status_read_to_their_sender() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        private_send(&mut bob, "alice", "b-1", "first", "b").await;
        receipt(&mut bob, "b").await;
        alice_sends(&mut alice, 3, "m").await;
        read_over_stomp(&mut bob, CHAT, 3, "read").await;
        let items = im::history(&broker, "alice", CHAT, "").await;
        let statuses: Vec<&str> = items
            .iter()
            .map(|m| m["status"].as_str().unwrap())
            .collect();
        // Alice's reply read Bob's message (sending marks read); Bob's reading read hers up to
        // 3, not the fourth.
        assert_eq!(statuses[0], "read", "{}", database.label);
        assert_eq!(statuses[1..3], ["read", "read"], "{}", database.label);
        assert_ne!(statuses[3], "read");
    }
}

#[tokio::test]
async fn unread_totals_add_up_over_every_conversation() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut carol = broker.im_user("carol").await;
        alice_sends(&mut alice, 2, "a").await;
        private_send(&mut carol, "bob", "c-1", "hey", "c").await;
        receipt(&mut carol, "c").await;
        drain(&mut carol).await;
        let group = im::create_group(&broker, "carol", "team", &["bob", "alice"]).await;
        drain(&mut carol).await;
        im::group_send(&mut carol, &group, "g-1", "all", "g1").await;
        receipt(&mut carol, "g1").await;
        drain(&mut alice).await;
        im::group_send(&mut alice, &group, "g-2", "all", "g2").await;
        receipt(&mut alice, "g2").await;
        let unread = im::unread(&broker, "bob").await;
        assert_eq!(unread["total"], 5, "{unread} {}", database.label);
        let mut per: Vec<(String, i64)> = unread["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["unreadCount"].as_i64().unwrap(),
                )
            })
            .collect();
        per.sort();
        let mut expected = vec![
            (group.clone(), 2),
            ("private_alice_bob".to_owned(), 2),
            ("private_bob_carol".to_owned(), 1),
        ];
        expected.sort();
        assert_eq!(per, expected);
        // Alice wrote the last group message: only carol's is unread for her.
        assert_eq!(unread_of(&broker, "alice", &group).await, 0);
        assert_eq!(unread_of(&broker, "carol", &group).await, 1);
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/conversations/{group}/read"),
                "bob",
                Some(json!({"upToSeq": 1})),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(im::unread(&broker, "bob").await["total"], 4);
    }
}
