//! `POST /api/v1/messages/forward` over real sockets on every configured backend.

use crate::common::{TestBroker, db};
use serde_json::{Value, json};

async fn send(broker: &TestBroker, from: &str, body: Value) -> Value {
    let (status, message) = broker
        .api("POST", "/api/v1/messages", from, Some(body))
        .await;
    assert_eq!(status, 201, "{message}");
    message
}

#[tokio::test]
async fn messages_are_forwarded_to_many_conversations_with_their_origin() {
    for database in db::all().await {
        let label = database.label;
        let broker = TestBroker::start_im(&database.url, &[]).await;
        let first = send(
            &broker,
            "bob",
            json!({"to": "alice", "clientMsgId": "b1", "content": "一起吃饭吗"}),
        )
        .await;
        let card = send(
            &broker,
            "bob",
            json!({"to": "alice", "clientMsgId": "b2", "format": "card",
                   "attachment": {"bizType": "order", "bizId": "42", "title": "Order 42"}}),
        )
        .await;
        let (status, group) = broker
            .api(
                "POST",
                "/api/v1/groups",
                "alice",
                Some(json!({"name": "team", "memberIds": ["carol"]})),
            )
            .await;
        assert_eq!(status, 201, "{group}");
        let group_id = group["id"].as_str().unwrap().to_owned();
        send(
            &broker,
            "alice",
            json!({"to": "dave", "clientMsgId": "a1", "content": "hi dave"}),
        )
        .await;
        let mut carol = broker.im_user("carol").await;
        carol
            .subscribe(&format!("/topic/group.{group_id}"), "g", "auto")
            .await;

        let (status, result) = broker
            .api(
                "POST",
                "/api/v1/messages/forward",
                "alice",
                Some(json!({"messageIds": [first["id"], card["id"]],
                            "toConversationIds": [group_id, "private_alice_dave"]})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {result}");
        let items = result["items"].as_array().unwrap();
        assert_eq!(items.len(), 4, "{label}");
        assert_eq!(items[0]["conversationId"], group_id.as_str());
        assert_eq!(items[0]["senderId"], "alice");
        assert_eq!(items[0]["content"], "一起吃饭吗");
        assert_eq!(
            items[0]["forwardedFrom"],
            json!({"messageId": first["id"], "conversationId": "private_alice_bob", "senderId": "bob"})
        );
        assert_eq!(items[1]["format"], "card");
        assert_eq!(items[1]["attachment"]["bizId"], "42");
        assert_eq!(items[3]["conversationId"], "private_alice_dave");
        let (frame, body) = carol.message().await;
        assert_eq!(frame.get("event"), Some("message.new"), "{label}");
        let pushed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(pushed["forwardedFrom"]["senderId"], "bob");
        let (_, page) = broker
            .api(
                "GET",
                "/api/v1/conversations/private_alice_dave/messages",
                "dave",
                None,
            )
            .await;
        assert_eq!(page["items"][1]["forwardedFrom"]["messageId"], first["id"]);
    }
}

#[tokio::test]
async fn recalled_deleted_foreign_and_bad_forwards_are_refused() {
    for database in db::all().await {
        let label = database.label;
        let broker = TestBroker::start_im(&database.url, &[]).await;
        let mine = send(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": "a1", "content": "to recall"}),
        )
        .await;
        let other = send(
            &broker,
            "bob",
            json!({"to": "alice", "clientMsgId": "b1", "content": "to delete"}),
        )
        .await;
        let foreign = send(
            &broker,
            "carol",
            json!({"to": "dave", "clientMsgId": "c1", "content": "not alice's"}),
        )
        .await;
        send(
            &broker,
            "alice",
            json!({"to": "erin", "clientMsgId": "a2", "content": "hi"}),
        )
        .await;
        let forward = |ids: Value, to: Value| json!({"messageIds": ids, "toConversationIds": to});
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages/forward",
                "alice",
                Some(forward(
                    json!([foreign["id"]]),
                    json!(["private_alice_erin"]),
                )),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{label}"
        );
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages/forward",
                "alice",
                Some(forward(json!([other["id"]]), json!(["private_carol_dave"]))),
            )
            .await;
        // Exactly as for a conversation that does not exist (private_alice_erin above).
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{label}: not a member of the target: {body}"
        );

        let id = mine["id"].as_str().unwrap();
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/messages/{id}/recall"),
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages/forward",
                "alice",
                Some(forward(json!([id]), json!(["private_alice_erin"]))),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("CONFLICT")),
            "{label}"
        );

        let id = other["id"].as_str().unwrap();
        let (status, _) = broker
            .api("DELETE", &format!("/api/v1/messages/{id}"), "alice", None)
            .await;
        assert_eq!(status, 204);
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/messages/forward",
                "alice",
                Some(forward(json!([id]), json!(["private_alice_erin"]))),
            )
            .await;
        assert_eq!(status, 404, "{label}: deleted for the caller");
        // Bob did not delete it and may forward it.
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages/forward",
                "bob",
                Some(forward(json!([id]), json!(["private_alice_bob"]))),
            )
            .await;
        assert_eq!(status, 201, "{label}: {body}");

        for bad in [
            forward(json!([]), json!(["private_alice_erin"])),
            forward(json!([id]), json!([])),
            forward(json!(["x"]), json!(["private_alice_erin"])),
        ] {
            let (status, body) = broker
                .api("POST", "/api/v1/messages/forward", "alice", Some(bad))
                .await;
            assert_eq!(
                (status, body["code"].as_str()),
                (400, Some("INVALID_ARGUMENT"))
            );
        }
    }
}
