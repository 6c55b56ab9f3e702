//! Assistant (customer-service) conversations on every configured backend: a user writes to
//! `assistant_<userId>` over STOMP and REST, every role `staff` identity receives it on
//! `/topic/assistant`, lists the conversations, reads the history and answers, and the user gets
//! the answers as `message.new`; nobody else may read or write them.

use std::time::Duration;

use crate::common::im::{
    self, assert_error, drain, error, event_on, http_json, quiet, receipt, send_json,
};
use crate::common::{Client, TestBroker, db};
use broker::auth::Role;
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

const ALICE: &str = "assistant_alice";

fn staff_token(broker: &TestBroker, user: &str) -> String {
    broker.token_with(user, &[Role::Staff], Duration::from_secs(600))
}

/// A staff session subscribed to `/topic/assistant` and its own error queue.
async fn staff(broker: &TestBroker, user: &str) -> Client {
    let mut client = broker.ws_token(&staff_token(broker, user)).await;
    client.subscribe("/topic/assistant", "desk", "auto").await;
    client
        .subscribe("/user/queue/errors", "errors", "auto")
        .await;
    client
}

async fn staff_api(
    broker: &TestBroker,
    user: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let token = staff_token(broker, user);
    http_json(broker.http_addr(), method, path, Some(&token), body).await
}

async fn assistant_send(client: &mut Client, body: Value, receipt_id: &str) {
    send_json(client, "/app/assistant.send", &body, Some(receipt_id)).await;
}

#[tokio::test]
async fn a_user_writes_to_the_assistant_and_staff_answer() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut desk = staff(&broker, "agent1").await;

        assistant_send(
            &mut alice,
            json!({"clientMsgId": "a1", "content": "我的订单还没到"}),
            "r1",
        )
        .await;
        receipt(&mut alice, "r1").await;
        let own = event_on(&mut alice, "/user/queue/messages", "message.new").await;
        assert_eq!(
            (
                &own["conversationId"],
                &own["conversationType"],
                &own["seq"]
            ),
            (&json!(ALICE), &json!("assistant"), &json!(1)),
            "{label}: {own}"
        );
        let seen = event_on(&mut desk, "/topic/assistant", "message.new").await;
        assert_eq!(seen, own, "{label}");

        // The user's conversation list has it.
        let listed = im::listed(&broker, "alice", ALICE).await.expect("listed");
        assert_eq!(
            (&listed["type"], &listed["unreadCount"], &listed["lastSeq"]),
            (&json!("assistant"), &json!(0), &json!(1)),
            "{label}"
        );

        // Staff list the assistant conversations and read the history.
        let (status, list) = staff_api(
            &broker,
            "agent2",
            "GET",
            "/api/v1/assistant/conversations",
            None,
        )
        .await;
        assert_eq!(status, 200, "{label}: {list}");
        assert_eq!(list["items"][0]["id"], ALICE, "{list}");
        assert_eq!(list["items"][0]["userId"], "alice");
        assert_eq!(list["items"][0]["lastMessage"]["content"], "我的订单还没到");
        let (status, page) = staff_api(
            &broker,
            "agent2",
            "GET",
            &format!("/api/v1/conversations/{ALICE}/messages"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{label}: {page}");
        assert_eq!(im::seqs(page["items"].as_array().expect("items")), [1]);

        // A staff answer over STOMP reaches the user and every staff session.
        assistant_send(
            &mut desk,
            json!({"conversationId": ALICE, "clientMsgId": "s1", "content": "正在查询"}),
            "r2",
        )
        .await;
        receipt(&mut desk, "r2").await;
        let answer = event_on(&mut alice, "/user/queue/messages", "message.new").await;
        assert_eq!(
            (&answer["senderId"], &answer["seq"], &answer["content"]),
            (&json!("agent1"), &json!(2), &json!("正在查询")),
            "{label}"
        );
        assert_eq!(
            event_on(&mut desk, "/topic/assistant", "message.new").await,
            answer
        );
        let listed = im::listed(&broker, "alice", ALICE).await.expect("listed");
        assert_eq!(listed["unreadCount"], 1, "{label}");

        // Another agent answers over REST.
        let (status, message) = staff_api(
            &broker,
            "agent2",
            "POST",
            "/api/v1/messages",
            Some(json!({"conversationId": ALICE, "clientMsgId": "s2", "content": "明天送达"})),
        )
        .await;
        assert_eq!(status, 201, "{label}: {message}");
        assert_eq!(
            event_on(&mut alice, "/user/queue/messages", "message.new").await,
            message
        );
        assert_eq!(
            event_on(&mut desk, "/topic/assistant", "message.new").await,
            message
        );

        // The user over REST, and the user's recall reaches staff.
        let (status, mine) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"conversationId": ALICE, "clientMsgId": "a2", "content": "谢谢"})),
            )
            .await;
        assert_eq!((status, &mine["seq"]), (201, &json!(4)), "{label}: {mine}");
        assert_eq!(
            event_on(&mut desk, "/topic/assistant", "message.new").await,
            mine
        );
        drain(&mut alice).await;
        let id = mine["id"].as_str().expect("id");
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/messages/{id}/recall"),
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 200, "{label}");
        let recalled = event_on(&mut desk, "/topic/assistant", "message.recalled").await;
        assert_eq!(
            recalled,
            json!({"conversationId": ALICE, "messageId": id, "seq": 4})
        );
        let recalled = event_on(&mut alice, "/user/queue/messages", "message.recalled").await;
        assert_eq!(recalled["seq"], 4);
        // Staff recall their own answers.
        let staff_id = answer["id"].as_str().expect("id");
        let (status, body) = staff_api(
            &broker,
            "agent1",
            "POST",
            &format!("/api/v1/messages/{staff_id}/recall"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{label}: {body}");
        let recalled = event_on(&mut alice, "/user/queue/messages", "message.recalled").await;
        assert_eq!(recalled["seq"], 2, "{label}");
    }
}

#[tokio::test]
async fn nobody_else_reads_or_writes_an_assistant_conversation() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"conversationId": ALICE, "clientMsgId": "a1", "content": "hi"})),
            )
            .await;
        assert_eq!(status, 201);

        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(json!({"conversationId": ALICE, "clientMsgId": "b1", "content": "hi"})),
            )
            .await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_error(&body, "NOT_FOUND");
        let (status, body) = broker
            .api(
                "GET",
                &format!("/api/v1/conversations/{ALICE}/messages"),
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_error(&body, "NOT_FOUND");
        let (status, body) = broker
            .api("GET", "/api/v1/assistant/conversations", "bob", None)
            .await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "FORBIDDEN");

        let mut bob = broker.im_user("bob").await;
        assistant_send(
            &mut bob,
            json!({"conversationId": ALICE, "clientMsgId": "b2", "content": "hi"}),
            "r1",
        )
        .await;
        let body = error(&mut bob).await;
        assert_error(&body, "NOT_FOUND");
        assert_eq!(body["clientMsgId"], "b2");
        assistant_send(
            &mut bob,
            json!({"conversationId": "private_alice_bob", "clientMsgId": "b3", "content": "x"}),
            "r2",
        )
        .await;
        assert_error(&error(&mut bob).await, "INVALID_ARGUMENT");
        assistant_send(&mut bob, json!({"content": "no id"}), "r3").await;
        assert_error(&error(&mut bob).await, "INVALID_ARGUMENT");
        bob.send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/topic/assistant")
                .header("id", "desk")
                .header("receipt", "watch"),
        )
        .await;
        let body = error(&mut bob).await;
        assert_error(&body, "FORBIDDEN");
        send_json(
            &mut bob,
            "/topic/assistant",
            &json!({"content": "x"}),
            Some("r4"),
        )
        .await;
        assert_error(&error(&mut bob).await, "FORBIDDEN");
        // Still connected, and nothing reached Bob.
        quiet(&mut bob).await;

        // Staff cannot open an assistant conversation that does not exist, nor the topic's
        // other names.
        let (status, body) = staff_api(
            &broker,
            "agent1",
            "POST",
            "/api/v1/messages",
            Some(
                json!({"conversationId": "assistant_nobody", "clientMsgId": "s1", "content": "hi"}),
            ),
        )
        .await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_error(&body, "NOT_FOUND");
        let mut desk = broker.ws_token(&staff_token(&broker, "agent1")).await;
        desk.subscribe("/user/queue/errors", "errors", "auto").await;
        desk.send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/topic/assistant.vip")
                .header("id", "vip"),
        )
        .await;
        assert_error(&error(&mut desk).await, "FORBIDDEN");
        // Staff are not members of other conversations for all that.
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"to": "bob", "clientMsgId": "p1", "content": "hi"})),
            )
            .await;
        assert_eq!(status, 201);
        let (status, body) = staff_api(
            &broker,
            "agent1",
            "GET",
            "/api/v1/conversations/private_alice_bob/messages",
            None,
        )
        .await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_error(&body, "NOT_FOUND");
        let (status, body) = staff_api(
            &broker,
            "agent1",
            "GET",
            "/api/v1/assistant/conversations?limit=0",
            None,
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_error(&body, "INVALID_ARGUMENT");
    }
}

#[tokio::test]
async fn staff_page_through_assistant_conversations_newest_first() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        for user in ["u1", "u2", "u3"] {
            let (status, _) = broker
                .api(
                    "POST",
                    "/api/v1/messages",
                    user,
                    Some(json!({"conversationId": format!("assistant_{user}"), "clientMsgId": "m", "content": "help"})),
                )
                .await;
            assert_eq!(status, 201);
            // Distinct activity times, so the order is the sending order.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (status, first) = staff_api(
            &broker,
            "agent",
            "GET",
            "/api/v1/assistant/conversations?limit=2",
            None,
        )
        .await;
        assert_eq!(status, 200, "{label}: {first}");
        let ids = |page: &Value| -> Vec<String> {
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|c| c["id"].as_str().expect("id").to_owned())
                .collect()
        };
        assert_eq!(ids(&first), ["assistant_u3", "assistant_u2"], "{label}");
        let cursor = first["nextCursor"].as_str().expect("a next page");
        let (_, second) = staff_api(
            &broker,
            "agent",
            "GET",
            &format!("/api/v1/assistant/conversations?limit=2&cursor={cursor}"),
            None,
        )
        .await;
        assert_eq!(ids(&second), ["assistant_u1"], "{label}: {second}");
        assert_eq!(second["nextCursor"], Value::Null);
    }
}
