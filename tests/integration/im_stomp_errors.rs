//! Bad input over STOMP (contract sections 3 and 7) on every configured backend: the contract's
//! error on the sender's `/user/queue/errors`, with `receiptId` and `clientMsgId` where the
//! frame had them, no RECEIPT, nothing stored, and the connection stays open.

use crate::common::im::{self, assert_error, error, quiet, receipt, send_text};
use crate::common::{Client, TestBroker, db};
use serde_json::json;

/// Sends `body` to `destination` with receipt `r`; expects exactly the error `code` with
/// `clientMsgId` (when given), then a quiet, open session.
async fn refused(
    client: &mut Client,
    destination: &str,
    body: &str,
    code: &str,
    client_msg_id: Option<&str>,
) {
    send_text(client, destination, body, Some("r")).await;
    let answer = error(client).await;
    assert_error(&answer, code);
    assert_eq!(answer["receiptId"], "r", "{destination} {body}: {answer}");
    assert_eq!(
        answer.get("clientMsgId").and_then(|v| v.as_str()),
        client_msg_id,
        "{destination} {body}: {answer}"
    );
    // No RECEIPT for the refused frame, and the session still answers.
    quiet(client).await;
}

async fn setup(broker: &TestBroker) -> String {
    let (status, _) = broker
        .api(
            "POST",
            "/api/v1/conversations/private",
            "alice",
            Some(json!({"peerId": "bob"})),
        )
        .await;
    assert_eq!(status, 200);
    im::create_group(broker, "alice", "team", &["bob"]).await
}

#[tokio::test]
async fn bad_private_sends_are_refused_on_errors() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        setup(&broker).await;
        let mut alice = broker.im_user("alice").await;
        let dest = "/app/private.send";
        let cases = [
            ("{not json", "INVALID_ARGUMENT", None),
            ("", "INVALID_ARGUMENT", None),
            (
                r#"{"to": "bob", "format": "text", "content": "no id"}"#,
                "INVALID_ARGUMENT",
                None,
            ),
            (
                r#"{"clientMsgId": "c1", "format": "text", "content": "no to"}"#,
                "INVALID_ARGUMENT",
                Some("c1"),
            ),
            (
                r#"{"to": "bob", "clientMsgId": "c2", "format": "text", "content": 5}"#,
                "INVALID_ARGUMENT",
                Some("c2"),
            ),
            (
                r#"{"to": "bob", "clientMsgId": "c3", "format": "gif", "content": "x"}"#,
                "INVALID_ARGUMENT",
                Some("c3"),
            ),
            (
                r#"{"to": "bob", "clientMsgId": "c4", "format": "image", "content": ""}"#,
                "INVALID_ARGUMENT",
                Some("c4"),
            ),
            (
                r#"{"to": "bob", "clientMsgId": "c5", "format": "text", "content": ""}"#,
                "INVALID_ARGUMENT",
                Some("c5"),
            ),
            (
                r#"{"to": "alice", "clientMsgId": "c6", "format": "text", "content": "me"}"#,
                "INVALID_ARGUMENT",
                Some("c6"),
            ),
            (
                r#"{"to": "not valid", "clientMsgId": "c7", "format": "text", "content": "x"}"#,
                "INVALID_ARGUMENT",
                Some("c7"),
            ),
            (
                r#"{"to": "bob", "clientMsgId": "c8", "format": "text", "content": "x", "replyTo": "1"}"#,
                "INVALID_ARGUMENT",
                Some("c8"),
            ),
        ];
        for (body, code, client_msg_id) in cases {
            refused(&mut alice, dest, body, code, client_msg_id).await;
        }
        let long =
            json!({"to": "bob", "clientMsgId": "c9", "format": "text", "content": "x".repeat(501)});
        refused(
            &mut alice,
            dest,
            &long.to_string(),
            "CONTENT_TOO_LONG",
            Some("c9"),
        )
        .await;
        assert!(
            im::history(&broker, "bob", "private_alice_bob", "")
                .await
                .is_empty(),
            "{}",
            database.label
        );
        // Still usable.
        im::private_send(&mut alice, "bob", "ok", "fine", "ok").await;
        receipt(&mut alice, "ok").await;
    }
}

#[tokio::test]
async fn bad_group_sends_are_refused_on_errors() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = setup(&broker).await;
        let mut alice = broker.im_user("alice").await;
        let mut mallory = broker.im_user("mallory").await;
        let dest = "/app/group.send";
        let body = |conversation: &str, id: &str| {
            json!({"conversationId": conversation, "clientMsgId": id, "format": "text", "content": "x"}).to_string()
        };
        refused(
            &mut alice,
            dest,
            &body("group_00000000000000000000000000000000", "g1"),
            "NOT_FOUND",
            Some("g1"),
        )
        .await;
        refused(
            &mut alice,
            dest,
            &body("private_alice_bob", "g2"),
            "INVALID_ARGUMENT",
            Some("g2"),
        )
        .await;
        refused(
            &mut alice,
            dest,
            r#"{"clientMsgId": "g3", "format": "text", "content": "x"}"#,
            "INVALID_ARGUMENT",
            Some("g3"),
        )
        .await;
        refused(&mut alice, dest, "[]", "INVALID_ARGUMENT", None).await;
        refused(
            &mut mallory,
            dest,
            &body(&group, "g4"),
            "NOT_MEMBER",
            Some("g4"),
        )
        .await;
        refused(
            &mut mallory,
            &format!("/topic/group.{group}"),
            &body(&group, "g5"),
            "NOT_MEMBER",
            Some("g5"),
        )
        .await;
        assert!(
            im::history(&broker, "alice", &group, "").await.is_empty(),
            "{}",
            database.label
        );
    }
}

#[tokio::test]
async fn bad_reads_recalls_and_typing_are_refused_on_errors() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = setup(&broker).await;
        let mut mallory = broker.im_user("mallory").await;
        let read = "/app/message.read";
        refused(
            &mut mallory,
            read,
            r#"{"conversationId": "private_x_y", "upToSeq": 1}"#,
            "NOT_FOUND",
            None,
        )
        .await;
        refused(
            &mut mallory,
            read,
            &json!({"conversationId": group, "upToSeq": 1}).to_string(),
            "NOT_MEMBER",
            None,
        )
        .await;
        refused(
            &mut mallory,
            read,
            r#"{"conversationId": "private_alice_bob"}"#,
            "INVALID_ARGUMENT",
            None,
        )
        .await;
        refused(
            &mut mallory,
            read,
            r#"{"upToSeq": 1}"#,
            "INVALID_ARGUMENT",
            None,
        )
        .await;
        refused(&mut mallory, read, "{", "INVALID_ARGUMENT", None).await;
        let recall = "/app/message.recall";
        refused(
            &mut mallory,
            recall,
            r#"{"messageId": "abc"}"#,
            "INVALID_ARGUMENT",
            None,
        )
        .await;
        refused(&mut mallory, recall, r#"{}"#, "INVALID_ARGUMENT", None).await;
        refused(
            &mut mallory,
            recall,
            r#"{"messageId": "12345"}"#,
            "NOT_FOUND",
            None,
        )
        .await;
        let typing = "/app/typing";
        refused(&mut mallory, typing, r#"{}"#, "INVALID_ARGUMENT", None).await;
        refused(
            &mut mallory,
            typing,
            r#"{"conversationId": "private_alice_bob"}"#,
            "NOT_FOUND",
            None,
        )
        .await;
    }
}

#[tokio::test]
async fn an_error_goes_to_the_failing_session_only() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut alice_phone = broker.im_user("alice").await;
        refused(
            &mut alice,
            "/app/private.send",
            "{oops",
            "INVALID_ARGUMENT",
            None,
        )
        .await;
        quiet(&mut alice_phone).await;
    }
}

#[tokio::test]
async fn an_error_without_a_receipt_has_no_receipt_id() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        send_text(
            &mut alice,
            "/app/private.send",
            r#"{"clientMsgId": "c1", "format": "text", "content": "no to"}"#,
            None,
        )
        .await;
        let answer = error(&mut alice).await;
        assert_error(&answer, "INVALID_ARGUMENT");
        assert!(
            answer.get("receiptId").is_none(),
            "{answer} {}",
            database.label
        );
        assert_eq!(answer["clientMsgId"], "c1");
        quiet(&mut alice).await;
    }
}

#[tokio::test]
async fn an_unknown_app_destination_is_a_stomp_error() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[]).await;
    let mut alice = broker.im_user("alice").await;
    send_text(&mut alice, "/app/no.such.handler", "{}", Some("r")).await;
    let frame = alice.expect(stomp_codec::Command::Error).await;
    assert_eq!(frame.get("message"), Some("forbidden"));
    assert_eq!(frame.get("receipt-id"), Some("r"));
    alice.expect_closed().await;
}
