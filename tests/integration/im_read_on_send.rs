//! Replying marks read, on every configured backend: a user who sends into a conversation has
//! read everything before their message, so their unread count drops to 0 and the events of an
//! explicit read follow (`conversation.updated` to their sessions, `message.read` to the other
//! user of a private chat, whose messages become `read`); a send with nothing unread before it
//! tells nobody anything more.

use crate::common::im::{self, drain, private_send, receipt, unread_of, wait_event};
use crate::common::{Client, db};
use serde_json::json;
use stomp_codec::Frame;

const CHAT: &str = "private_alice_bob";

fn events(frames: &[Frame], name: &str) -> usize {
    frames
        .iter()
        .filter(|f| f.get("event") == Some(name))
        .count()
}

async fn send_and_wait(client: &mut Client, to: &str, id: &str) {
    drain(client).await;
    private_send(client, to, id, "reply", id).await;
    receipt(client, id).await;
}

#[tokio::test]
async fn replying_in_a_private_chat_reads_what_came_before() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let mut bob_phone = broker.im_user("bob").await;
        for i in 1..=3 {
            send_and_wait(&mut alice, "bob", &format!("a{i}")).await;
        }
        drain(&mut bob).await;
        drain(&mut bob_phone).await;
        assert_eq!(unread_of(&broker, "bob", CHAT).await, 3, "{label}");

        send_and_wait(&mut bob, "alice", "b1").await;
        let (read, _) = wait_event(&mut alice, "message.read").await;
        assert_eq!(
            read,
            json!({"conversationId": CHAT, "readerId": "bob", "upToSeq": 4}),
            "{label}"
        );
        let (updated, _) = wait_event(&mut bob_phone, "conversation.updated").await;
        assert_eq!(
            updated,
            json!({"conversationId": CHAT, "readSeq": 4, "unreadCount": 0}),
            "{label}"
        );
        assert_eq!(unread_of(&broker, "bob", CHAT).await, 0, "{label}");
        assert_eq!(im::unread(&broker, "bob").await["total"], 0);
        let statuses = im::eventually("alice's messages marked read", || async {
            let history = im::history(&broker, "alice", CHAT, "").await;
            let statuses: Vec<String> = history
                .iter()
                .map(|m| m["status"].as_str().unwrap_or_default().to_owned())
                .collect();
            (statuses[..3] == ["read", "read", "read"]).then_some(statuses)
        })
        .await;
        assert_ne!(
            statuses[3], "read",
            "{label}: bob's own message is not read by him"
        );

        // Nothing was unread before this one: no read events.
        send_and_wait(&mut bob, "alice", "b2").await;
        wait_event(&mut alice, "message.new").await;
        // The read events would be on their way by now.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let to_alice = drain(&mut alice).await;
        assert_eq!(events(&to_alice, "message.read"), 0, "{label}");
        assert_eq!(
            events(&drain(&mut bob_phone).await, "conversation.updated"),
            0
        );

        // Over REST too.
        send_and_wait(&mut alice, "bob", "a4").await;
        drain(&mut alice).await;
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(json!({"to": "alice", "clientMsgId": "b3", "content": "ok"})),
            )
            .await;
        assert_eq!(status, 201);
        let (read, _) = wait_event(&mut alice, "message.read").await;
        assert_eq!(read["upToSeq"], 7, "{label}");
        assert_eq!(unread_of(&broker, "bob", CHAT).await, 0);
    }
}

#[tokio::test]
async fn replying_in_a_group_reads_what_came_before() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        for i in 1..=2 {
            let (status, _) = broker
                .api(
                    "POST",
                    "/api/v1/messages",
                    "alice",
                    Some(json!({"conversationId": group, "clientMsgId": format!("a{i}"), "content": "hi"})),
                )
                .await;
            assert_eq!(status, 201);
        }
        assert_eq!(unread_of(&broker, "bob", &group).await, 2, "{label}");
        let mut bob_phone = broker.im_user("bob").await;
        let mut bob = broker.im_user("bob").await;
        im::group_send(&mut bob, &group, "b1", "ok", "r1").await;
        receipt(&mut bob, "r1").await;
        let (updated, _) = wait_event(&mut bob_phone, "conversation.updated").await;
        assert_eq!(
            updated,
            json!({"conversationId": group, "readSeq": 3, "unreadCount": 0}),
            "{label}"
        );
        assert_eq!(unread_of(&broker, "bob", &group).await, 0, "{label}");
        assert_eq!(unread_of(&broker, "alice", &group).await, 1, "{label}");
    }
}
