//! Edits, reactions and pinned messages (contract 5.12), over STOMP and REST, on every
//! configured backend.

use crate::common::im::{
    self, assert_error, drain, error, event_on, private_send, receipt, send_json,
};
use crate::common::{Client, TestBroker, db};
use serde_json::{Value, json};

const CHAT: &str = "private_alice_bob";

async fn sent(client: &mut Client, to: &str, id: &str, content: &str) -> Value {
    private_send(client, to, id, content, id).await;
    receipt(client, id).await;
    let message = event_on(client, "/user/queue/messages", "message.new").await;
    drain(client).await;
    message
}

async fn rest(
    broker: &TestBroker,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    broker.api(method, path, user, body).await
}

fn id_of(message: &Value) -> &str {
    message["id"].as_str().expect("message id")
}

#[tokio::test]
async fn the_sender_edits_and_everybody_sees_the_new_text() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let mut alice = broker.im_user("alice").await;
        let mut alice_phone = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let message = sent(&mut alice, "bob", "c-1", "helo wrold").await;
        drain(&mut alice_phone).await;
        drain(&mut bob).await;

        send_json(
            &mut alice,
            "/app/message.edit",
            &json!({"messageId": message["id"], "content": "hello world"}),
            Some("edit"),
        )
        .await;
        let (edited, _) = im::wait_event(&mut alice, "message.edited").await;
        assert_eq!(edited["content"], "hello world", "{label}");
        assert_eq!(edited["messageId"], message["id"], "{label}");
        assert_eq!(edited["seq"], 1, "{label}");
        assert!(edited["editedAt"].as_i64().is_some(), "{label}: {edited}");
        for client in [&mut alice_phone, &mut bob] {
            let seen = event_on(client, "/user/queue/messages", "message.edited").await;
            assert_eq!(seen, edited, "{label}");
        }
        // History and search show the new text.
        let items = im::history(&broker, "bob", CHAT, "").await;
        assert_eq!(items[0]["content"], "hello world", "{label}");
        assert_eq!(items[0]["editedAt"], edited["editedAt"], "{label}");
        let (status, found) = rest(&broker, "GET", "/api/v1/search?q=hello", "bob", None).await;
        assert_eq!(status, 200, "{label}: {found}");
        assert_eq!(
            found["items"].as_array().unwrap().len(),
            1,
            "{label}: {found}"
        );
        let (_, found) = rest(&broker, "GET", "/api/v1/search?q=wrold", "bob", None).await;
        assert!(
            found["items"].as_array().unwrap().is_empty(),
            "{label}: {found}"
        );

        // Over REST too; only the sender; not beyond the length limit.
        let path = format!("/api/v1/messages/{}", id_of(&message));
        let (status, body) = rest(
            &broker,
            "PATCH",
            &path,
            "alice",
            Some(json!({"content": "third"})),
        )
        .await;
        assert_eq!(
            (status, &body["content"]),
            (200, &json!("third")),
            "{label}: {body}"
        );
        let (status, body) = rest(
            &broker,
            "PATCH",
            &path,
            "bob",
            Some(json!({"content": "mine"})),
        )
        .await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "FORBIDDEN");
        let long = "x".repeat(5001);
        let (status, body) = rest(
            &broker,
            "PATCH",
            &path,
            "alice",
            Some(json!({"content": long})),
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_error(&body, "CONTENT_TOO_LONG");
        let (status, body) = rest(
            &broker,
            "PATCH",
            &path,
            "alice",
            Some(json!({"content": "  "})),
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
        // Someone outside the chat learns nothing of it.
        let (status, body) = rest(
            &broker,
            "PATCH",
            &path,
            "mallory",
            Some(json!({"content": "x"})),
        )
        .await;
        assert_eq!(status, 404, "{label}: {body}");

        // A recalled message cannot be edited.
        let (status, _) = rest(&broker, "POST", &format!("{path}/recall"), "alice", None).await;
        assert_eq!(status, 200, "{label}");
        drain(&mut alice).await;
        send_json(
            &mut alice,
            "/app/message.edit",
            &json!({"messageId": message["id"], "content": "again"}),
            None,
        )
        .await;
        let refused = error(&mut alice).await;
        assert_eq!(refused["code"], "CONFLICT", "{label}: {refused}");
    }
}

#[tokio::test]
async fn edits_end_with_the_window_and_only_text_is_edited() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[("BROKER_IM_EDIT_WINDOW_S", "1")]).await;
        let label = &database.label;
        let mut alice = broker.im_user("alice").await;
        let message = sent(&mut alice, "bob", "c-1", "soon stale").await;
        let (status, card) = rest(
            &broker,
            "POST",
            "/api/v1/messages",
            "alice",
            Some(json!({"to": "bob", "clientMsgId": "card", "format": "card",
                "attachment": {"bizType": "order", "bizId": "1", "title": "Order 1"}})),
        )
        .await;
        assert_eq!(status, 201, "{label}: {card}");
        let (status, body) = rest(
            &broker,
            "PATCH",
            &format!("/api/v1/messages/{}", id_of(&card)),
            "alice",
            Some(json!({"content": "text"})),
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (status, body) = rest(
            &broker,
            "PATCH",
            &format!("/api/v1/messages/{}", id_of(&message)),
            "alice",
            Some(json!({"content": "late"})),
        )
        .await;
        assert_eq!(status, 409, "{label}: {body}");
        assert_error(&body, "EDIT_WINDOW_EXPIRED");
    }
}

#[tokio::test]
async fn group_edits_go_to_the_topic() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "edits", &["bob"]).await;
        let mut bob = broker.im_user("bob").await;
        bob.subscribe(&format!("/topic/group.{group}"), "g", "auto")
            .await;
        drain(&mut bob).await;
        let (status, message) = rest(
            &broker,
            "POST",
            "/api/v1/messages",
            "alice",
            Some(json!({"conversationId": group, "clientMsgId": "g-1", "content": "draft"})),
        )
        .await;
        assert_eq!(status, 201, "{label}: {message}");
        let (status, _) = rest(
            &broker,
            "PATCH",
            &format!("/api/v1/messages/{}", id_of(&message)),
            "alice",
            Some(json!({"content": "final"})),
        )
        .await;
        assert_eq!(status, 200, "{label}");
        let (edited, _) = im::wait_event(&mut bob, "message.edited").await;
        assert_eq!(edited["content"], "final", "{label}");
        assert_eq!(edited["conversationId"], group.as_str(), "{label}");
    }
}

async fn react(
    broker: &TestBroker,
    user: &str,
    message: &Value,
    emoji: &str,
    on: bool,
) -> (u16, Value) {
    rest(
        broker,
        "POST",
        &format!("/api/v1/messages/{}/reactions", id_of(message)),
        user,
        Some(json!({"emoji": emoji, "on": on})),
    )
    .await
}

#[tokio::test]
async fn reactions_are_counted_once_per_user_and_kind_and_pushed_coalesced() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[("BROKER_IM_MAX_REACTION_KINDS", "2")]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "reacts", &["bob", "carol"]).await;
        let mut alice = broker.im_user("alice").await;
        alice
            .subscribe(&format!("/topic/group.{group}"), "g", "auto")
            .await;
        drain(&mut alice).await;
        let (_, message) = rest(
            &broker,
            "POST",
            "/api/v1/messages",
            "alice",
            Some(json!({"conversationId": group, "clientMsgId": "g-1", "content": "lunch?"})),
        )
        .await;
        im::wait_event(&mut alice, "message.new").await;

        // Over STOMP and REST, the same reaction twice counts once.
        let mut bob = broker.im_user("bob").await;
        send_json(
            &mut bob,
            "/app/message.react",
            &json!({"messageId": message["id"], "emoji": "👍"}),
            Some("r"),
        )
        .await;
        receipt(&mut bob, "r").await;
        for (user, emoji) in [("carol", "👍"), ("carol", "👍"), ("carol", "🍕")] {
            let (status, body) = react(&broker, user, &message, emoji, true).await;
            assert_eq!(status, 204, "{label}: {body}");
        }
        // A third kind is refused; a known kind is not.
        let (status, body) = react(&broker, "alice", &message, "🎉", true).await;
        assert_eq!(status, 409, "{label}: {body}");
        assert_error(&body, "CONFLICT");
        let (status, _) = react(&broker, "alice", &message, "🍕", true).await;
        assert_eq!(status, 204, "{label}");

        // The events carry the counts as they stand; the last one has all of them.
        let expected = json!([{"emoji": "👍", "count": 2}, {"emoji": "🍕", "count": 2}]);
        let mut events = 0;
        loop {
            let (event, _) = im::wait_event(&mut alice, "message.reactions").await;
            events += 1;
            assert_eq!(event["messageId"], message["id"], "{label}");
            if event["reactions"] == expected {
                break;
            }
        }
        assert!(
            events <= 3,
            "{label}: {events} events for 4 changes in a burst"
        );

        let items = im::history(&broker, "carol", &group, "").await;
        assert_eq!(
            items[0]["reactions"],
            json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "🍕", "count": 2, "me": true}]),
            "{label}"
        );
        let items = im::history(&broker, "bob", &group, "").await;
        assert_eq!(items[0]["reactions"][0]["me"], true, "{label}");
        assert_eq!(items[0]["reactions"][1]["me"], false, "{label}");

        // Taken back.
        react(&broker, "carol", &message, "👍", false).await;
        let (status, view) = rest(
            &broker,
            "GET",
            &format!("/api/v1/messages/{}", id_of(&message)),
            "bob",
            None,
        )
        .await;
        assert_eq!(status, 200, "{label}");
        assert_eq!(
            view["reactions"][0],
            json!({"emoji": "👍", "count": 1, "me": true}),
            "{label}"
        );

        // Outsiders and bad emoji.
        let (status, _) = react(&broker, "mallory", &message, "👍", true).await;
        assert_eq!(status, 404, "{label}");
        for emoji in ["", "a b", "xxxxxxxxxxxxxxxxx"] {
            let (status, body) = react(&broker, "bob", &message, emoji, true).await;
            assert_eq!(status, 400, "{label}: {emoji:?} {body}");
        }
    }
}

#[tokio::test]
async fn reactions_are_rate_limited() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[("BROKER_LIMITS_REACTION_RATE", "3/1h")]).await;
    let mut alice = broker.im_user("alice").await;
    let message = sent(&mut alice, "bob", "c-1", "hi").await;
    for on in [true, false, true] {
        let (status, _) = react(&broker, "bob", &message, "👍", on).await;
        assert_eq!(status, 204);
    }
    let (status, body) = react(&broker, "bob", &message, "👍", false).await;
    assert_eq!(status, 429, "{body}");
    assert_error(&body, "RATE_LIMITED");
}

#[tokio::test]
async fn pins_are_kept_per_conversation_within_the_bound() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[("BROKER_IM_MAX_PINS", "1")]).await;
        let label = &database.label;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let first = sent(&mut alice, "bob", "c-1", "the address").await;
        let second = sent(&mut alice, "bob", "c-2", "the time").await;
        drain(&mut bob).await;

        // Either user of a private chat pins; both are told.
        send_json(
            &mut bob,
            "/app/message.pin",
            &json!({"messageId": first["id"]}),
            None,
        )
        .await;
        let (updated, _) = im::wait_event(&mut bob, "conversation.updated").await;
        assert_eq!(updated["conversationId"], CHAT, "{label}");
        assert_eq!(
            updated["pins"][0]["message"]["id"], first["id"],
            "{label}: {updated}"
        );
        assert_eq!(updated["pins"][0]["pinnedBy"], "bob", "{label}");
        let (status, pins) = rest(
            &broker,
            "GET",
            &format!("/api/v1/conversations/{CHAT}/pins"),
            "alice",
            None,
        )
        .await;
        assert_eq!(status, 200, "{label}: {pins}");
        assert_eq!(pins["items"].as_array().unwrap().len(), 1, "{label}");

        // The bound; unpinning makes room.
        let pin = |m: &Value| format!("/api/v1/messages/{}/pin", id_of(m));
        let (status, body) = rest(&broker, "PUT", &pin(&second), "alice", None).await;
        assert_eq!(status, 409, "{label}: {body}");
        let (status, body) = rest(&broker, "DELETE", &pin(&first), "alice", None).await;
        assert_eq!(
            (status, body["items"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{label}"
        );
        let (status, body) = rest(&broker, "PUT", &pin(&second), "alice", None).await;
        assert_eq!(status, 200, "{label}: {body}");
        let (status, _) = rest(&broker, "PUT", &pin(&second), "mallory", None).await;
        assert_eq!(status, 404, "{label}");

        drain(&mut bob).await;
        // In a group only the owner and admins pin, and the members hear of it on the topic.
        let group = im::create_group(&broker, "alice", "pins", &["bob"]).await;
        bob.subscribe(&format!("/topic/group.{group}"), "g", "auto")
            .await;
        let (_, message) = rest(
            &broker,
            "POST",
            "/api/v1/messages",
            "bob",
            Some(json!({"conversationId": group, "clientMsgId": "g-1", "content": "rules"})),
        )
        .await;
        let (status, body) = rest(&broker, "PUT", &pin(&message), "bob", None).await;
        assert_eq!(status, 403, "{label}: {body}");
        let (status, _) = rest(&broker, "PUT", &pin(&message), "alice", None).await;
        assert_eq!(status, 200, "{label}");
        // Group creation told bob of the group too: the pins come in their own event.
        let updated = loop {
            let (updated, _) = im::wait_event(&mut bob, "conversation.updated").await;
            if updated.get("pins").is_some() {
                break updated;
            }
        };
        assert_eq!(
            updated["conversationId"],
            group.as_str(),
            "{label}: {updated}"
        );
        assert_eq!(updated["pins"][0]["message"]["content"], "rules", "{label}");
    }
}

#[tokio::test]
async fn nothing_changes_in_a_dissolved_group() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "over", &["bob"]).await;
        let (_, message) = rest(
            &broker,
            "POST",
            "/api/v1/messages",
            "alice",
            Some(json!({"conversationId": group, "clientMsgId": "g-1", "content": "last"})),
        )
        .await;
        let (status, _) = rest(
            &broker,
            "DELETE",
            &format!("/api/v1/groups/{group}"),
            "alice",
            None,
        )
        .await;
        assert_eq!(status, 204, "{label}");
        let path = format!("/api/v1/messages/{}", id_of(&message));
        for (method, path, body) in [
            ("PATCH", path.clone(), Some(json!({"content": "edited"}))),
            (
                "POST",
                format!("{path}/reactions"),
                Some(json!({"emoji": "👍"})),
            ),
            ("PUT", format!("{path}/pin"), None),
        ] {
            let (status, answer) = rest(&broker, method, &path, "alice", body).await;
            assert_eq!(status, 409, "{label}: {method} {path}: {answer}");
            assert_error(&answer, "CONFLICT");
        }
        // Its history still reads as it was.
        let items = im::history(&broker, "bob", &group, "").await;
        assert_eq!(items[0]["content"], "last", "{label}");
    }
}
