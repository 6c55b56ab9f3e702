//! Mentions in group messages (contract 5.12): who may mention whom, the conversation list's
//! marker, `GET /api/v1/mentions`. On every configured backend.

use crate::common::im::{self, assert_error, send_json};
use crate::common::{TestBroker, db};
use serde_json::{Value, json};

async fn post(broker: &TestBroker, user: &str, body: Value) -> (u16, Value) {
    broker
        .api("POST", "/api/v1/messages", user, Some(body))
        .await
}

#[tokio::test]
async fn members_are_mentioned_and_see_it_until_they_read() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "mentions", &["bob", "carol"]).await;
        let mut carol = broker.im_user("carol").await;
        carol
            .subscribe(&format!("/topic/group.{group}"), "g", "auto")
            .await;

        // Over STOMP: bob mentions carol; the pushed message says so.
        let mut bob = broker.im_user("bob").await;
        send_json(
            &mut bob,
            "/app/group.send",
            &json!({"conversationId": group, "clientMsgId": "m-1", "content": "@carol look",
                "mentions": ["carol", "carol", "bob"]}),
            Some("m-1"),
        )
        .await;
        let (pushed, _) = im::wait_event(&mut carol, "message.new").await;
        assert_eq!(pushed["mentions"], json!(["carol"]), "{label}: {pushed}");
        assert!(pushed.get("mentionAll").is_none(), "{label}: {pushed}");

        let entry = im::listed(&broker, "carol", &group).await.expect("listed");
        assert_eq!(entry["mentioned"], true, "{label}: {entry}");
        let entry = im::listed(&broker, "alice", &group).await.expect("listed");
        assert_eq!(entry["mentioned"], false, "{label}: {entry}");
        let unread = im::unread(&broker, "carol").await;
        assert_eq!(
            unread["conversations"][0]["mentioned"], true,
            "{label}: {unread}"
        );

        // Only the owner and admins mention everybody.
        let (status, body) = post(
            &broker,
            "bob",
            json!({"conversationId": group, "clientMsgId": "m-2", "content": "all", "mentionAll": true}),
        )
        .await;
        assert_eq!(status, 403, "{label}: {body}");
        let (status, all) = post(
            &broker,
            "alice",
            json!({"conversationId": group, "clientMsgId": "m-3", "content": "everyone", "mentionAll": true}),
        )
        .await;
        assert_eq!(
            (status, &all["mentionAll"]),
            (201, &json!(true)),
            "{label}: {all}"
        );

        // Non-members, private chats and too many are refused.
        let (status, body) = post(
            &broker,
            "bob",
            json!({"conversationId": group, "clientMsgId": "m-4", "content": "x", "mentions": ["mallory"]}),
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_error(&body, "INVALID_ARGUMENT");
        send_json(
            &mut bob,
            "/app/private.send",
            &json!({"to": "carol", "clientMsgId": "m-5", "content": "x", "mentions": ["carol"]}),
            None,
        )
        .await;
        let (refused, _) = im::wait_event(&mut bob, "error").await;
        assert_eq!(refused["code"], "INVALID_ARGUMENT", "{label}: {refused}");
        assert_eq!(refused["clientMsgId"], "m-5", "{label}");

        // Carol's mentions, newest first; bob's own message does not mention him.
        let (status, page) = broker.api("GET", "/api/v1/mentions", "carol", None).await;
        assert_eq!(status, 200, "{label}: {page}");
        let contents: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(contents, vec!["everyone", "@carol look"], "{label}");
        let (_, page) = broker.api("GET", "/api/v1/mentions", "bob", None).await;
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            1,
            "{label}: {page}"
        );
        let (status, _) = broker
            .api("GET", "/api/v1/mentions?limit=0", "bob", None)
            .await;
        assert_eq!(status, 400, "{label}");

        // Reading clears the marker.
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/conversations/{group}/read"),
                "carol",
                Some(json!({"upToSeq": 2})),
            )
            .await;
        assert_eq!(status, 200, "{label}");
        let entry = im::listed(&broker, "carol", &group).await.expect("listed");
        assert_eq!(entry["mentioned"], false, "{label}: {entry}");
    }
}

#[tokio::test]
async fn mentions_are_bounded() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[("BROKER_IM_MAX_MENTIONS", "1")]).await;
    let group = im::create_group(&broker, "alice", "bounded", &["bob", "carol"]).await;
    let (status, body) = post(
        &broker,
        "alice",
        json!({"conversationId": group, "clientMsgId": "m", "content": "x", "mentions": ["bob", "carol"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(
        &broker,
        "alice",
        json!({"conversationId": group, "clientMsgId": "m", "content": "x", "mentions": ["bob"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}
