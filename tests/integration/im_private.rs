//! Private chat end to end over WebSocket and REST, on every configured backend.

use crate::common;

use crate::common::{TestBroker, db};
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

fn body(frame: &Frame) -> Value {
    serde_json::from_slice(&frame.body).expect("JSON body")
}

async fn send_private(
    client: &mut common::Client,
    to: &str,
    client_msg_id: &str,
    content: &str,
    receipt: &str,
) {
    client
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/app/private.send")
                .header("content-type", "application/json")
                .header("receipt", receipt)
                .body(json!({"to": to, "clientMsgId": client_msg_id, "format": "text", "content": content}).to_string()),
        )
        .await;
}

#[tokio::test]
async fn private_message_is_stored_receipted_and_pushed_to_both_users() {
    for database in db::all().await {
        let broker = TestBroker::start_im(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        send_private(&mut alice, "bob", "c-1", "你好 bob", "r1").await;
        let receipt = alice.expect(Command::Receipt).await;
        assert_eq!(receipt.get("receipt-id"), Some("r1"));
        let (frame, _) = alice.message().await;
        assert_eq!(frame.get("event"), Some("message.new"));
        let (frame, _) = bob.message().await;
        assert_eq!(
            frame.get("event"),
            Some("message.new"),
            "{}",
            database.label
        );
        assert_eq!(frame.get("destination"), Some("/user/queue/messages"));
        let message = body(&frame);
        assert_eq!(message["conversationId"], "private_alice_bob");
        assert_eq!(message["conversationType"], "private");
        assert_eq!(message["seq"], 1);
        assert_eq!(message["senderId"], "alice");
        assert_eq!(message["content"], "你好 bob");
        assert!(message["id"].is_string());
        let (delivered, _) = alice.message().await;
        assert_eq!(delivered.get("event"), Some("message.delivered"));

        let (status, page) = broker
            .api(
                "GET",
                "/api/v1/conversations/private_alice_bob/messages",
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["items"][0]["content"], "你好 bob");
        let (status, list) = broker
            .api("GET", "/api/v1/conversations", "bob", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(list["items"][0]["unreadCount"], 1);
        assert_eq!(list["items"][0]["peerId"], "alice");

        bob.send(
            &Frame::new(Command::Send)
                .header("destination", "/app/message.read")
                .header("receipt", "read-1")
                .body(json!({"conversationId": "private_alice_bob", "upToSeq": 1}).to_string()),
        )
        .await;
        bob.expect(Command::Receipt).await;
        let (read, _) = alice.message().await;
        assert_eq!(
            read.get("event"),
            Some("message.read"),
            "{}",
            database.label
        );
        assert_eq!(body(&read)["readerId"], "bob");
        let (status, unread) = broker.api("GET", "/api/v1/unread", "bob", None).await;
        assert_eq!(status, 200);
        assert_eq!(unread["total"], 0);
    }
}

#[tokio::test]
async fn malformed_send_gets_invalid_argument_on_errors_and_the_session_stays_open() {
    let database = db::sqlite();
    let broker = TestBroker::start_im(&database.url, &[]).await;
    let mut alice = broker.im_user("alice").await;
    alice
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/app/private.send")
                .header("receipt", "bad")
                .body("{not json"),
        )
        .await;
    let (frame, _) = alice.message().await;
    assert_eq!(frame.get("destination"), Some("/user/queue/errors"));
    let error = body(&frame);
    assert_eq!(error["code"], "INVALID_ARGUMENT");
    assert_eq!(error["receiptId"], "bad");
    send_private(&mut alice, "bob", "c-2", "still here", "ok").await;
    alice.expect(Command::Receipt).await;
}
