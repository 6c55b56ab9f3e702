//! No existence oracle, on every configured backend: a private, assistant or system
//! conversation the caller is not in is answered exactly as one that does not exist, over REST
//! and STOMP, and a message of a conversation the caller cannot see exactly as a message that
//! does not exist. Each test records the answers while the conversation (or message) does not
//! exist, makes it exist, and compares the full answers.

use crate::common::im::{self, assert_error, error, send_json};
use crate::common::{Client, TestBroker, db};
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

/// Every REST route that takes a conversation id, with a body where it needs one.
fn rest_routes(id: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let send = json!({"conversationId": id, "clientMsgId": "probe", "content": "hi"});
    vec![
        ("GET", format!("/api/v1/conversations/{id}"), None),
        ("GET", format!("/api/v1/conversations/{id}/messages"), None),
        (
            "PATCH",
            format!("/api/v1/conversations/{id}/settings"),
            Some(json!({"pinned": true})),
        ),
        (
            "PATCH",
            format!("/api/v1/conversations/{id}/settings"),
            Some(json!({"messageRetentionDays": 7})),
        ),
        (
            "POST",
            format!("/api/v1/conversations/{id}/read"),
            Some(json!({"upToSeq": 1})),
        ),
        ("POST", "/api/v1/messages".to_owned(), Some(send)),
        (
            "GET",
            format!("/api/v1/search?q=hello&conversationId={id}"),
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/groups/{id}"),
            Some(json!({"name": "mine now"})),
        ),
        (
            "POST",
            format!("/api/v1/groups/{id}/members"),
            Some(json!({"userIds": ["mallory"]})),
        ),
        ("POST", format!("/api/v1/groups/{id}/exit"), None),
        ("DELETE", format!("/api/v1/groups/{id}"), None),
    ]
}

/// Mallory's answers on every REST route for conversation `id`, and on forwarding her own
/// message `own` there.
async fn rest_answers(broker: &TestBroker, id: &str, own: &Value) -> Vec<(String, u16, Value)> {
    let mut answers = Vec::new();
    let mut routes = rest_routes(id);
    routes.push((
        "POST",
        "/api/v1/messages/forward".to_owned(),
        Some(json!({"messageIds": [own], "toConversationIds": [id]})),
    ));
    for (method, path, body) in routes {
        let (status, answer) = broker.api(method, &path, "mallory", body).await;
        answers.push((format!("{method} {path}"), status, answer));
    }
    answers
}

/// Every STOMP command that takes a conversation id, as Mallory; the error bodies.
async fn stomp_answers(mallory: &mut Client, id: &str) -> Vec<Value> {
    let mut answers = Vec::new();
    let commands = [
        (
            "/app/message.read",
            json!({"conversationId": id, "upToSeq": 1}),
        ),
        ("/app/typing", json!({"conversationId": id})),
        (
            "/app/group.send",
            json!({"conversationId": id, "clientMsgId": "p1", "content": "hi"}),
        ),
        (
            "/app/assistant.send",
            json!({"conversationId": id, "clientMsgId": "p2", "content": "hi"}),
        ),
    ];
    for (destination, body) in commands {
        send_json(mallory, destination, &body, Some("probe")).await;
        answers.push(error(mallory).await);
    }
    send_json(
        mallory,
        &format!("/topic/group.{id}"),
        &json!({"clientMsgId": "p3", "content": "hi"}),
        Some("probe"),
    )
    .await;
    answers.push(error(mallory).await);
    mallory
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", format!("/topic/group.{id}").as_str())
                .header("id", "probe")
                .header("receipt", "probe"),
        )
        .await;
    answers.push(error(mallory).await);
    answers
}

/// Mallory's own message (to Zed), to forward.
async fn own_message(broker: &TestBroker) -> Value {
    let (status, message) = broker
        .api(
            "POST",
            "/api/v1/messages",
            "mallory",
            Some(json!({"to": "zed", "clientMsgId": "own", "content": "mine"})),
        )
        .await;
    assert_eq!(status, 201, "{message}");
    message["id"].clone()
}

fn assert_same<T: PartialEq + std::fmt::Debug>(label: &str, before: &[T], after: &[T]) {
    assert_eq!(before.len(), after.len());
    for (before, after) in before.iter().zip(after) {
        assert_eq!(before, after, "{label}: the answer changed once it existed");
    }
}

#[tokio::test]
async fn a_private_conversation_of_others_is_answered_as_one_that_does_not_exist() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let own = own_message(&broker).await;
        let mut mallory = broker.im_user("mallory").await;
        let id = "private_alice_bob";
        let rest_before = rest_answers(&broker, id, &own).await;
        let stomp_before = stomp_answers(&mut mallory, id).await;
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"to": "bob", "clientMsgId": "a1", "content": "hello"})),
            )
            .await;
        assert_eq!(status, 201);
        let rest_after = rest_answers(&broker, id, &own).await;
        let stomp_after = stomp_answers(&mut mallory, id).await;
        assert_same(label, &rest_before, &rest_after);
        assert_same(label, &stomp_before, &stomp_after);
        for (route, status, answer) in &rest_after {
            assert!(
                matches!(*status, 400 | 404),
                "{label}: {route}: {status} {answer}"
            );
            assert_ne!(answer["code"], "NOT_MEMBER", "{route}");
        }
        assert_error(&rest_after[0].2, "NOT_FOUND");
    }
}

#[tokio::test]
async fn an_assistant_conversation_of_another_user_is_answered_as_one_that_does_not_exist() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let own = own_message(&broker).await;
        let mut mallory = broker.im_user("mallory").await;
        let id = "assistant_alice";
        let rest_before = rest_answers(&broker, id, &own).await;
        let stomp_before = stomp_answers(&mut mallory, id).await;
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"conversationId": id, "clientMsgId": "a1", "content": "help"})),
            )
            .await;
        assert_eq!(status, 201);
        assert_same(label, &rest_before, &rest_answers(&broker, id, &own).await);
        assert_same(label, &stomp_before, &stomp_answers(&mut mallory, id).await);
        assert_error(&stomp_before[3], "NOT_FOUND");
    }
}

#[tokio::test]
async fn a_system_conversation_of_another_user_is_answered_as_one_that_does_not_exist() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let own = own_message(&broker).await;
        let id = "system_alice";
        let before = rest_answers(&broker, id, &own).await;
        let (status, body) = broker
            .api_system(
                "POST",
                "/api/v1/notifications",
                "billing",
                Some(json!({"userIds": ["alice"], "title": "Invoice", "content": "due"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_same(label, &before, &rest_answers(&broker, id, &own).await);
    }
}

/// Mallory's answers on every route that takes a message id, with the id spelled `{id}`.
async fn message_answers(broker: &TestBroker, mallory: &mut Client, id: &str) -> Vec<Value> {
    let mut answers = Vec::new();
    let routes = [
        ("POST", format!("/api/v1/messages/{id}/recall"), None),
        ("DELETE", format!("/api/v1/messages/{id}"), None),
        (
            "POST",
            "/api/v1/reports".to_owned(),
            Some(json!({"userId": "alice", "messageId": id, "reason": "x"})),
        ),
        (
            "POST",
            "/api/v1/messages/forward".to_owned(),
            Some(json!({"messageIds": [id], "toConversationIds": ["private_mallory_zed"]})),
        ),
    ];
    for (method, path, body) in routes {
        let (status, answer) = broker.api(method, &path, "mallory", body).await;
        answers.push(json!({"status": status, "answer": answer}));
    }
    send_json(
        mallory,
        "/app/message.recall",
        &json!({"messageId": id}),
        Some("probe"),
    )
    .await;
    answers.push(error(mallory).await);
    // Compared with the id itself left out: it is the caller's own input.
    answers
        .into_iter()
        .map(|answer| serde_json::from_str(&answer.to_string().replace(id, "{id}")).unwrap())
        .collect()
}

#[tokio::test]
async fn a_message_of_a_conversation_one_is_not_in_is_answered_as_no_message() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        own_message(&broker).await;
        let group = im::create_group(&broker, "alice", "club", &["bob"]).await;
        let mut mallory = broker.im_user("mallory").await;
        let nothing = message_answers(&broker, &mut mallory, "4242").await;
        for (to, key) in [
            (json!({"to": "bob"}), "p"),
            (json!({"conversationId": group}), "g"),
        ] {
            let mut body = to.clone();
            body["clientMsgId"] = json!(key);
            body["content"] = json!("hello");
            let (status, message) = broker
                .api("POST", "/api/v1/messages", "alice", Some(body))
                .await;
            assert_eq!(status, 201, "{message}");
            let id = message["id"].as_str().unwrap();
            let answers = message_answers(&broker, &mut mallory, id).await;
            assert_eq!(answers, nothing, "{label}: {to}");
        }
        assert_eq!(nothing[0]["status"], 404, "{nothing:?}");
        assert_error(&nothing[0]["answer"], "NOT_FOUND");
    }
}

#[tokio::test]
async fn a_group_of_others_is_not_member_and_an_unknown_group_is_not_found() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "club", &["bob"]).await;
        let unknown = format!("group_{}", "0".repeat(32));
        let history = |id: &str| format!("/api/v1/conversations/{id}/messages");
        let (status, body) = broker.api("GET", &history(&group), "mallory", None).await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "NOT_MEMBER");
        let (status, body) = broker.api("GET", &history(&unknown), "mallory", None).await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_error(&body, "NOT_FOUND");
    }
}
