//! A user's housekeeping of their conversations (contract 6): hiding a conversation until its
//! next message, clearing its history for oneself, the list's last message after deleting for
//! oneself, one message with its reply target, and muted conversations in the unread total. On
//! every configured backend.

use crate::common::im::{self, assert_error, event_on, history};
use crate::common::{TestBroker, db};
use serde_json::{Value, json};

async fn send(broker: &TestBroker, from: &str, body: Value) -> Value {
    let (status, message) = broker
        .api("POST", "/api/v1/messages", from, Some(body))
        .await;
    assert_eq!(status, 201, "{message}");
    message
}

async fn say(broker: &TestBroker, from: &str, to: &str, client_msg_id: &str, text: &str) -> Value {
    send(
        broker,
        from,
        json!({"to": to, "clientMsgId": client_msg_id, "content": text}),
    )
    .await
}

async fn settings(broker: &TestBroker, user: &str, conversation: &str, body: Value) -> Value {
    let (status, view) = broker
        .api(
            "PATCH",
            &format!("/api/v1/conversations/{conversation}/settings"),
            user,
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    view
}

fn contents(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_hidden_conversation_leaves_the_list_until_its_next_message() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        say(&broker, "alice", "bob", "a1", "hi").await;
        say(&broker, "bob", "alice", "b1", "hello").await;
        let conversation = "private_alice_bob";
        let mut alice = broker.im_user("alice").await;

        let view = settings(&broker, "alice", conversation, json!({"hidden": true})).await;
        assert_eq!(view["hidden"], true, "{label}: {view}");
        let updated = event_on(&mut alice, "/user/queue/events", "conversation.updated").await;
        assert_eq!(updated["hidden"], true, "{label}");
        assert!(
            im::listed(&broker, "alice", conversation).await.is_none(),
            "{label}: hidden from alice's list"
        );
        assert!(
            im::listed(&broker, "bob", conversation).await.is_some(),
            "{label}: bob's list is his own"
        );
        // Hidden, not gone: history and the conversation itself are still there.
        assert_eq!(history(&broker, "alice", conversation, "").await.len(), 2);
        let unread = im::unread(&broker, "alice").await;
        assert_eq!(
            unread["total"], 0,
            "{label}: hidden ones are not counted: {unread}"
        );

        say(&broker, "bob", "alice", "b2", "are you there?").await;
        let back = im::listed(&broker, "alice", conversation)
            .await
            .unwrap_or_else(|| panic!("{label}: back with the next message"));
        assert_eq!(back["hidden"], false);
        assert_eq!(back["lastMessage"]["content"], "are you there?");
        assert_eq!(back["unreadCount"], 2, "{label}: what was unread still is");

        settings(&broker, "alice", conversation, json!({"hidden": true})).await;
        assert!(im::listed(&broker, "alice", conversation).await.is_none());
        let view = settings(&broker, "alice", conversation, json!({"hidden": false})).await;
        assert_eq!(view["hidden"], false);
        assert!(
            im::listed(&broker, "alice", conversation).await.is_some(),
            "{label}: shown again on request"
        );

        let (status, body) = broker
            .api(
                "PATCH",
                &format!("/api/v1/conversations/{conversation}/settings"),
                "carol",
                Some(json!({"hidden": true})),
            )
            .await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_error(&body, "NOT_FOUND");
    }
}

#[tokio::test]
async fn clearing_history_removes_what_is_there_for_the_caller_alone() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let conversation = "private_alice_bob";
        let first = say(&broker, "alice", "bob", "a1", "needle one").await;
        say(&broker, "bob", "alice", "b1", "needle two").await;
        say(&broker, "bob", "alice", "b2", "needle three").await;
        let mut alice = broker.im_user("alice").await;

        let (status, view) = broker
            .api(
                "POST",
                &format!("/api/v1/conversations/{conversation}/clear"),
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 200, "{label}: {view}");
        assert_eq!(view["clearedSeq"], 3, "{label}: {view}");
        assert_eq!(view["unreadCount"], 0);
        assert_eq!(view["lastMessage"], Value::Null);
        let updated = event_on(&mut alice, "/user/queue/events", "conversation.updated").await;
        assert_eq!(updated["clearedSeq"], 3, "{label}");

        assert!(history(&broker, "alice", conversation, "").await.is_empty());
        assert_eq!(history(&broker, "bob", conversation, "").await.len(), 3);
        let (_, found) = broker
            .api("GET", "/api/v1/search?q=needle", "alice", None)
            .await;
        assert_eq!(found["items"], json!([]), "{label}: search leaves them out");
        let (_, found) = broker
            .api("GET", "/api/v1/search?q=needle", "bob", None)
            .await;
        assert_eq!(found["items"].as_array().map(Vec::len), Some(3), "{label}");
        let (status, _) = broker
            .api(
                "GET",
                &format!("/api/v1/messages/{}", first["id"].as_str().unwrap()),
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 404, "{label}: a cleared message is gone for alice");
        // Clearing marks nothing read for the other side.
        let (_, bobs) = broker
            .api(
                "GET",
                &format!("/api/v1/conversations/{conversation}/messages"),
                "bob",
                None,
            )
            .await;
        let statuses: Vec<&Value> = bobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["senderId"] == "bob")
            .map(|m| &m["status"])
            .collect();
        assert!(
            statuses.iter().all(|s| *s != "read"),
            "{label}: {statuses:?}"
        );

        say(&broker, "bob", "alice", "b3", "after the clear").await;
        let items = history(&broker, "alice", conversation, "").await;
        assert_eq!(contents(&items), ["after the clear"], "{label}");
        let listed = im::listed(&broker, "alice", conversation).await.unwrap();
        assert_eq!(listed["unreadCount"], 1);
        assert_eq!(listed["lastMessage"]["content"], "after the clear");

        let (status, body) = broker
            .api(
                "POST",
                &format!("/api/v1/conversations/{conversation}/clear"),
                "carol",
                None,
            )
            .await;
        assert_eq!(status, 404, "{label}: {body}");
    }
}

#[tokio::test]
async fn the_list_shows_the_last_message_the_user_can_still_see() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let conversation = "private_alice_bob";
        say(&broker, "alice", "bob", "a1", "one").await;
        let two = say(&broker, "bob", "alice", "b1", "two").await;
        let three = say(&broker, "bob", "alice", "b2", "three").await;
        let mut alice = broker.im_user("alice").await;

        for message in [&three, &two] {
            let (status, body) = broker
                .api(
                    "DELETE",
                    &format!("/api/v1/messages/{}", message["id"].as_str().unwrap()),
                    "alice",
                    None,
                )
                .await;
            assert_eq!(status, 204, "{label}: {body}");
        }
        let updated = event_on(&mut alice, "/user/queue/events", "conversation.updated").await;
        assert_eq!(updated["id"], conversation, "{label}: {updated}");
        let listed = im::listed(&broker, "alice", conversation).await.unwrap();
        assert_eq!(listed["lastMessage"]["content"], "one", "{label}: {listed}");
        let (_, view) = broker
            .api(
                "GET",
                &format!("/api/v1/conversations/{conversation}"),
                "alice",
                None,
            )
            .await;
        assert_eq!(view["lastMessage"]["content"], "one", "{label}");
        let bobs = im::listed(&broker, "bob", conversation).await.unwrap();
        assert_eq!(bobs["lastMessage"]["content"], "three", "{label}");
    }
}

#[tokio::test]
async fn one_message_comes_with_its_reply_target_for_those_who_may_see_it() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let question = say(&broker, "alice", "bob", "a1", "lunch?").await;
        let question_id = question["id"].as_str().unwrap().to_owned();
        let answer = send(
            &broker,
            "bob",
            json!({"to": "alice", "clientMsgId": "b1", "content": "yes", "replyTo": question_id}),
        )
        .await;
        let path = format!("/api/v1/messages/{}", answer["id"].as_str().unwrap());

        let (status, detail) = broker.api("GET", &path, "alice", None).await;
        assert_eq!(status, 200, "{label}: {detail}");
        assert_eq!(detail["content"], "yes");
        assert_eq!(detail["replyTo"], question_id);
        assert_eq!(detail["replyToMessage"]["content"], "lunch?", "{label}");
        assert_eq!(detail["replyToMessage"]["senderId"], "alice");

        let (status, detail) = broker.api("GET", &path, "bob", None).await;
        assert_eq!(status, 200, "{label}: {detail}");
        assert_eq!(detail["replyToMessage"]["id"], question_id);

        // A target the caller deleted for themselves is not shown to them.
        broker
            .api(
                "DELETE",
                &format!("/api/v1/messages/{question_id}"),
                "bob",
                None,
            )
            .await;
        let (_, detail) = broker.api("GET", &path, "bob", None).await;
        assert_eq!(detail["replyToMessage"], Value::Null, "{label}: {detail}");
        let (_, detail) = broker.api("GET", &path, "alice", None).await;
        assert_eq!(detail["replyToMessage"]["content"], "lunch?");

        for (user, path) in [
            ("carol", path.clone()),
            ("bob", format!("/api/v1/messages/{question_id}")),
            ("alice", "/api/v1/messages/999999999".to_owned()),
            // As for recall and delete: an id that is no number names no message.
            ("alice", "/api/v1/messages/not-a-number".to_owned()),
        ] {
            let (status, body) = broker.api("GET", &path, user, None).await;
            assert_eq!(status, 404, "{label}: {user} {path}: {body}");
            assert_error(&body, "NOT_FOUND");
        }
    }
}

#[tokio::test]
async fn muted_conversations_count_in_the_total_only_when_asked() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        say(&broker, "bob", "alice", "b1", "one").await;
        say(&broker, "bob", "alice", "b2", "two").await;
        say(&broker, "carol", "alice", "c1", "three").await;
        settings(
            &broker,
            "alice",
            "private_alice_bob",
            json!({"muted": true}),
        )
        .await;

        let unread = im::unread(&broker, "alice").await;
        assert_eq!(unread["total"], 1, "{label}: {unread}");
        let mut listed: Vec<(String, i64, bool)> = unread["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["unreadCount"].as_i64().unwrap(),
                    c["muted"].as_bool().unwrap(),
                )
            })
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            [
                ("private_alice_bob".to_owned(), 2, true),
                ("private_alice_carol".to_owned(), 1, false)
            ],
            "{label}"
        );
        let (status, all) = broker
            .api("GET", "/api/v1/unread?includeMuted=true", "alice", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(all["total"], 3, "{label}: {all}");
        let (status, body) = broker
            .api("GET", "/api/v1/unread?includeMuted=yes", "alice", None)
            .await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_error(&body, "INVALID_ARGUMENT");
    }
}
