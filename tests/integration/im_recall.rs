//! Recall and delete (contract 5.4) on every configured backend.

use crate::common::im::{
    self, assert_error, drain, error, event_on, private_send, quiet, receipt, send_json,
};
use crate::common::{Client, TestBroker, db};
use serde_json::{Value, json};

const CHAT: &str = "private_alice_bob";

async fn send(client: &mut Client, to: &str, client_msg_id: &str) -> Value {
    private_send(client, to, client_msg_id, "oops", client_msg_id).await;
    receipt(client, client_msg_id).await;
    let message = event_on(client, "/user/queue/messages", "message.new").await;
    drain(client).await;
    message
}

async fn recall_over_stomp(client: &mut Client, id: &Value, receipt_id: &str) {
    send_json(
        client,
        "/app/message.recall",
        &json!({"messageId": id}),
        Some(receipt_id),
    )
    .await;
}

async fn recall_over_rest(broker: &TestBroker, user: &str, id: &Value) -> (u16, Value) {
    broker
        .api(
            "POST",
            &format!("/api/v1/messages/{}/recall", id.as_str().unwrap()),
            user,
            None,
        )
        .await
}

#[tokio::test]
async fn the_sender_recalls_within_the_window_and_both_users_are_told() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut alice_phone = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        send(&mut alice, "bob", "c-0").await;
        let message = send(&mut alice, "bob", "c-1").await;
        drain(&mut alice_phone).await;
        drain(&mut bob).await;
        recall_over_stomp(&mut alice, &message["id"], "recall").await;
        let expected = json!({"conversationId": CHAT, "messageId": message["id"], "seq": 2});
        // The recalling session gets its RECEIPT and the event, in either order.
        let (recalled, others) = im::wait_event(&mut alice, "message.recalled").await;
        assert_eq!(recalled, expected, "{}", database.label);
        let receipted = others.iter().any(|f| f.get("receipt-id") == Some("recall"));
        if !receipted {
            receipt(&mut alice, "recall").await;
        }
        quiet(&mut alice).await;
        for client in [&mut alice_phone, &mut bob] {
            let recalled = event_on(client, "/user/queue/messages", "message.recalled").await;
            assert_eq!(recalled, expected, "{}", database.label);
        }
        // It keeps its id and seq; its content is gone.
        for user in ["alice", "bob"] {
            let items = im::history(&broker, user, CHAT, "").await;
            assert_eq!(im::seqs(&items), vec![1, 2]);
            assert_eq!(items[1]["id"], message["id"]);
            assert_eq!(items[1]["status"], "recalled");
            assert_eq!(items[1]["content"], "");
            assert_eq!(items[1]["attachment"], Value::Null);
            assert_eq!(items[0]["content"], "oops");
        }
    }
}

#[tokio::test]
async fn a_recalled_attachment_is_emptied_too() {
    for database in db::all().await {
        let broker = im::broker(
            &database.url,
            &[(
                "BROKER_FILES_EXTERNAL_URL_PREFIXES",
                r#"["https://example.com/"]"#,
            )],
        )
        .await;
        let (status, message) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"to": "bob", "clientMsgId": "img", "format": "image", "content": "",
                    "attachment": {"url": "https://example.com/a.png", "name": "a.png", "size": 10, "mime": "image/png"}})),
            )
            .await;
        assert_eq!(status, 201, "{message}");
        assert_eq!(message["attachment"]["url"], "https://example.com/a.png");
        let (status, recalled) = recall_over_rest(&broker, "alice", &message["id"]).await;
        assert_eq!(status, 200, "{recalled} {}", database.label);
        assert_eq!(recalled["status"], "recalled");
        assert_eq!(recalled["attachment"], Value::Null);
        let items = im::history(&broker, "bob", CHAT, "").await;
        assert_eq!(items[0]["attachment"], Value::Null);
        assert_eq!(items[0]["format"], "image");
    }
}

#[tokio::test]
async fn recalling_after_the_window_is_recall_window_expired() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[("BROKER_IM_RECALL_WINDOW_S", "1")]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let message = send(&mut alice, "bob", "c-1").await;
        drain(&mut bob).await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (status, body) = recall_over_rest(&broker, "alice", &message["id"]).await;
        assert_eq!(status, 409, "{body} {}", database.label);
        assert_error(&body, "RECALL_WINDOW_EXPIRED");
        recall_over_stomp(&mut alice, &message["id"], "late").await;
        let body = error(&mut alice).await;
        assert_error(&body, "RECALL_WINDOW_EXPIRED");
        assert_eq!(body["receiptId"], "late");
        quiet(&mut alice).await;
        quiet(&mut bob).await;
        assert_eq!(
            im::history(&broker, "bob", CHAT, "").await[0]["content"],
            "oops"
        );
    }
}

#[tokio::test]
async fn only_the_sender_may_recall_a_private_message() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let message = send(&mut alice, "bob", "c-1").await;
        drain(&mut bob).await;
        let (status, body) = recall_over_rest(&broker, "bob", &message["id"]).await;
        assert_eq!(status, 403, "{body} {}", database.label);
        assert_error(&body, "FORBIDDEN");
        recall_over_stomp(&mut bob, &message["id"], "nope").await;
        let body = error(&mut bob).await;
        assert_error(&body, "FORBIDDEN");
        assert_eq!(body["receiptId"], "nope");
        // For someone outside the chat the message does not exist.
        let (status, body) = recall_over_rest(&broker, "mallory", &message["id"]).await;
        assert_eq!(status, 404);
        assert_error(&body, "NOT_FOUND");
        quiet(&mut alice).await;
    }
}

#[tokio::test]
async fn recalling_twice_is_conflict() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let message = send(&mut alice, "bob", "c-1").await;
        let (status, _) = recall_over_rest(&broker, "alice", &message["id"]).await;
        assert_eq!(status, 200);
        let (status, body) = recall_over_rest(&broker, "alice", &message["id"]).await;
        assert_eq!(status, 409, "{body} {}", database.label);
        assert_error(&body, "CONFLICT");
        let (status, body) = broker
            .api("POST", "/api/v1/messages/123456789/recall", "alice", None)
            .await;
        assert_eq!(status, 404, "{body}");
        assert_error(&body, "NOT_FOUND");
    }
}

#[tokio::test]
async fn group_owner_and_admin_recall_any_message_at_any_time_on_the_topic() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[("BROKER_IM_RECALL_WINDOW_S", "1")]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob", "carol", "dave"]).await;
        let (status, _) = broker
            .api(
                "PUT",
                &format!("/api/v1/groups/{group}/members/bob/role"),
                "alice",
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(status, 204);
        let topic = format!("/topic/group.{group}");
        let mut carol = broker.im_user("carol").await;
        let mut dave = broker.im_user("dave").await;
        carol.subscribe(&topic, "g", "auto").await;
        dave.subscribe(&topic, "g", "auto").await;
        let mut ids = Vec::new();
        for i in 0..3 {
            let cmid = format!("c-{i}");
            im::group_send(&mut carol, &group, &cmid, "spam", &cmid).await;
            receipt(&mut carol, &cmid).await;
            ids.push(event_on(&mut carol, &topic, "message.new").await["id"].clone());
        }
        drain(&mut dave).await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

        let (status, body) = recall_over_rest(&broker, "alice", &ids[0]).await;
        assert_eq!(status, 200, "owner: {body} {}", database.label);
        let (status, body) = recall_over_rest(&broker, "bob", &ids[1]).await;
        assert_eq!(status, 200, "admin: {body}");
        for (seq, id) in [(1, &ids[0]), (2, &ids[1])] {
            let expected = json!({"conversationId": group, "messageId": id, "seq": seq});
            assert_eq!(
                event_on(&mut dave, &topic, "message.recalled").await,
                expected
            );
            assert_eq!(
                event_on(&mut carol, &topic, "message.recalled").await,
                expected
            );
        }
        // The sender is past the window; a plain member may not recall others' messages.
        let (status, body) = recall_over_rest(&broker, "carol", &ids[2]).await;
        assert_eq!(status, 409, "{body}");
        assert_error(&body, "RECALL_WINDOW_EXPIRED");
        let (status, body) = recall_over_rest(&broker, "dave", &ids[2]).await;
        assert_eq!(status, 403, "{body}");
        assert_error(&body, "FORBIDDEN");
        quiet(&mut dave).await;
        let items = im::history(&broker, "dave", &group, "").await;
        let statuses: Vec<&str> = items
            .iter()
            .map(|m| m["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["recalled", "recalled", "sent"]);
    }
}

#[tokio::test]
async fn deleting_hides_a_message_from_the_callers_history_only() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let first = send(&mut alice, "bob", "c-1").await;
        send(&mut alice, "bob", "c-2").await;
        drain(&mut bob).await;
        let (status, body) = broker
            .api(
                "DELETE",
                &format!("/api/v1/messages/{}", first["id"].as_str().unwrap()),
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 204, "{body} {}", database.label);
        assert_eq!(
            im::seqs(&im::history(&broker, "bob", CHAT, "").await),
            vec![2]
        );
        assert_eq!(
            im::seqs(&im::history(&broker, "alice", CHAT, "").await),
            vec![1, 2]
        );
        // The deleter's sessions hear of their changed conversation; nobody else hears a thing.
        let changed = event_on(&mut bob, "/user/queue/events", "conversation.updated").await;
        assert_eq!(changed["id"], CHAT);
        quiet(&mut alice).await;
        quiet(&mut bob).await;
        // Deleting again is harmless; outsiders and unknown ids are refused.
        let path = format!("/api/v1/messages/{}", first["id"].as_str().unwrap());
        assert_eq!(broker.api("DELETE", &path, "bob", None).await.0, 204);
        let (status, body) = broker.api("DELETE", &path, "mallory", None).await;
        assert_eq!(status, 404);
        assert_error(&body, "NOT_FOUND");
        let (status, body) = broker
            .api("DELETE", "/api/v1/messages/42", "bob", None)
            .await;
        assert_eq!(status, 404);
        assert_error(&body, "NOT_FOUND");
    }
}
