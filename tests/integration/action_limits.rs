//! Per-user rates of actions other than sends, on one node and every configured backend:
//! typing signals (extra ones dropped without an error), group creation, invitations and new
//! private conversations (`RATE_LIMITED`), each counted under a key of its own. Reports have
//! theirs too (tests/reports.rs); the cluster-wide count is in tests/cluster_limits.rs.

use crate::common::im::{self, assert_error, event_on, quiet, receipt, send_json};
use crate::common::{TestBroker, db};
use serde_json::{Value, json};

async fn create_group(broker: &TestBroker, owner: &str, name: &str) -> (u16, Value) {
    broker
        .api(
            "POST",
            "/api/v1/groups",
            owner,
            Some(json!({"name": name, "memberIds": []})),
        )
        .await
}

async fn invite(broker: &TestBroker, group: &str, users: Value) -> (u16, Value) {
    broker
        .api(
            "POST",
            &format!("/api/v1/groups/{group}/members"),
            "alice",
            Some(json!({"userIds": users})),
        )
        .await
}

async fn open_private(broker: &TestBroker, user: &str, peer: &str) -> (u16, Value) {
    broker
        .api(
            "POST",
            "/api/v1/conversations/private",
            user,
            Some(json!({"peerId": peer})),
        )
        .await
}

#[tokio::test]
async fn typing_beyond_its_rate_is_dropped_without_an_error() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[("BROKER_LIMITS_TYPING_RATE", "2/1h")]).await;
        let (status, _) = open_private(&broker, "alice", "bob").await;
        assert_eq!(status, 200);
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        for i in 0..5 {
            let id = format!("t{i}");
            send_json(
                &mut alice,
                "/app/typing",
                &json!({"conversationId": "private_alice_bob"}),
                Some(&id),
            )
            .await;
            // Every signal is answered, none with an error.
            receipt(&mut alice, &id).await;
        }
        for _ in 0..2 {
            event_on(&mut bob, "/user/queue/events", "typing").await;
        }
        quiet(&mut bob).await;
        quiet(&mut alice).await;
        // Per user: Bob's own signals are not held back by Alice's.
        send_json(
            &mut bob,
            "/app/typing",
            &json!({"conversationId": "private_alice_bob"}),
            Some("b"),
        )
        .await;
        receipt(&mut bob, "b").await;
        assert_eq!(
            event_on(&mut alice, "/user/queue/events", "typing").await["userId"],
            "bob",
            "{label}"
        );
    }
}

#[tokio::test]
async fn group_creation_beyond_its_rate_is_rate_limited() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(
            &database.url,
            &[("BROKER_LIMITS_GROUP_CREATE_RATE", "2/1h")],
        )
        .await;
        for name in ["one", "two"] {
            assert_eq!(create_group(&broker, "alice", name).await.0, 201, "{label}");
        }
        let (status, body) = create_group(&broker, "alice", "three").await;
        assert_eq!(status, 429, "{label}: {body}");
        assert_error(&body, "RATE_LIMITED");
        let (_, list) = broker
            .api("GET", "/api/v1/conversations", "alice", None)
            .await;
        assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
        assert_eq!(create_group(&broker, "bob", "bobs").await.0, 201);
    }
}

#[tokio::test]
async fn invitations_beyond_their_rate_are_rate_limited_and_have_their_own_budget() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(
            &database.url,
            &[
                ("BROKER_LIMITS_INVITE_RATE", "2/1h"),
                ("BROKER_LIMITS_GROUP_CREATE_RATE", "1/1h"),
            ],
        )
        .await;
        let (_, group) = create_group(&broker, "alice", "team").await;
        let group = group["id"].as_str().unwrap().to_owned();
        // Many users in one request are one invitation.
        assert_eq!(
            invite(&broker, &group, json!(["bob", "carol", "dave"]))
                .await
                .0,
            200,
            "{label}"
        );
        assert_eq!(invite(&broker, &group, json!(["erin"])).await.0, 200);
        let (status, body) = invite(&broker, &group, json!(["frank"])).await;
        assert_eq!(status, 429, "{label}: {body}");
        assert_error(&body, "RATE_LIMITED");
        let (_, view) = broker
            .api(
                "GET",
                &format!("/api/v1/conversations/{group}"),
                "alice",
                None,
            )
            .await;
        assert_eq!(view["memberCount"], 5, "{view}");
        // Creating a group used up its own budget, not the invitations' (and the other way).
        assert_eq!(create_group(&broker, "alice", "second").await.0, 429);
    }
}

#[tokio::test]
async fn new_private_conversations_beyond_their_rate_are_rate_limited_but_known_ones_open() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(
            &database.url,
            &[("BROKER_LIMITS_CONVERSATION_CREATE_RATE", "2/1h")],
        )
        .await;
        for peer in ["bob", "carol"] {
            assert_eq!(open_private(&broker, "alice", peer).await.0, 200, "{label}");
        }
        let (status, body) = open_private(&broker, "alice", "dave").await;
        assert_eq!(status, 429, "{label}: {body}");
        assert_error(&body, "RATE_LIMITED");
        assert!(
            im::listed(&broker, "dave", "private_alice_dave")
                .await
                .is_none()
        );
        // Opening one that exists creates nothing and is not counted.
        let (status, view) = open_private(&broker, "alice", "bob").await;
        assert_eq!((status, &view["id"]), (200, &json!("private_alice_bob")));
        // Nor is one the other user created.
        assert_eq!(open_private(&broker, "erin", "alice").await.0, 200);
        assert_eq!(
            open_private(&broker, "alice", "erin").await.0,
            200,
            "{label}"
        );
        // A first message creates one under the stranger rules instead.
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"to": "frank", "clientMsgId": "f1", "content": "hi"})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {body}");
    }
}
