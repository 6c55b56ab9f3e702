//! Typing and presence (contract 5.5) on every configured backend.

use crate::common::im::{
    self, assert_error, drain, error, event_on, now_ms, quiet, receipt, send_json,
};
use crate::common::{Client, TestBroker, db};
use serde_json::{Value, json};

/// Gives Alice and Bob a private conversation.
async fn chat(broker: &TestBroker) {
    let (status, _) = broker
        .api(
            "POST",
            "/api/v1/conversations/private",
            "alice",
            Some(json!({"peerId": "bob"})),
        )
        .await;
    assert_eq!(status, 200);
}

async fn typing(client: &mut Client, conversation: &str, receipt_id: &str) {
    send_json(
        client,
        "/app/typing",
        &json!({"conversationId": conversation}),
        Some(receipt_id),
    )
    .await;
}

async fn presence(broker: &TestBroker, ids: &str) -> Value {
    let (status, body) = broker
        .api(
            "GET",
            &format!("/api/v1/presence?userIds={ids}"),
            "alice",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn typing_in_a_private_chat_reaches_the_other_user_on_events() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        chat(&broker).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let mut bob_phone = broker.im_user("bob").await;
        typing(&mut alice, "private_alice_bob", "t").await;
        receipt(&mut alice, "t").await;
        let expected = json!({"conversationId": "private_alice_bob", "userId": "alice"});
        assert_eq!(
            event_on(&mut bob, "/user/queue/events", "typing").await,
            expected,
            "{}",
            database.label
        );
        assert_eq!(
            event_on(&mut bob_phone, "/user/queue/events", "typing").await,
            expected
        );
        quiet(&mut alice).await;
        // Nothing is stored.
        assert!(
            im::history(&broker, "bob", "private_alice_bob", "")
                .await
                .is_empty()
        );
    }
}

#[tokio::test]
async fn typing_in_a_group_goes_to_the_group_topic_but_not_back_to_the_typing_session() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        let topic = format!("/topic/group.{group}");
        let mut alice = broker.im_user("alice").await;
        alice.subscribe(&topic, "g", "auto").await;
        let mut bob = broker.im_user("bob").await;
        bob.subscribe(&topic, "g", "auto").await;
        typing(&mut alice, &group, "t").await;
        receipt(&mut alice, "t").await;
        // The typing session is not told about itself.
        quiet(&mut alice).await;
        assert_eq!(
            event_on(&mut bob, &topic, "typing").await,
            json!({"conversationId": group, "userId": "alice"}),
            "{}",
            database.label
        );
        quiet(&mut bob).await;
        assert!(im::history(&broker, "bob", &group, "").await.is_empty());
    }
}

#[tokio::test]
async fn typing_where_one_is_not_a_member_is_refused_on_errors() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        chat(&broker).await;
        let mut mallory = broker.im_user("mallory").await;
        let mut bob = broker.im_user("bob").await;
        typing(&mut mallory, "private_alice_bob", "t1").await;
        let body = error(&mut mallory).await;
        assert_error(&body, "NOT_FOUND");
        assert_eq!(body["receiptId"], "t1", "{}", database.label);
        typing(&mut mallory, "private_mallory_nobody", "t2").await;
        let body = error(&mut mallory).await;
        assert_error(&body, "NOT_FOUND");
        // The connection stays open, and Bob heard nothing.
        quiet(&mut mallory).await;
        quiet(&mut bob).await;
    }
}

#[tokio::test]
async fn presence_is_published_when_the_first_session_opens_and_the_last_closes() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        chat(&broker).await;
        let mut alice = broker.im_user("alice").await;
        let topic = "/topic/presence.bob";
        alice.subscribe(topic, "p", "auto").await;
        let bob = broker.ws("bob").await;
        let online = event_on(&mut alice, topic, "presence").await;
        assert_eq!(
            online,
            json!({"userId": "bob", "online": true, "lastSeenAt": null}),
            "{}",
            database.label
        );
        let bob_phone = broker.ws("bob").await;
        quiet(&mut alice).await;
        drop(bob);
        // The phone is still open: no change. Prove the first close was handled by waiting until
        // the broker counts one session less.
        let phone_only = im::eventually("the first session to close", || async {
            (broker.server.hub().sessions_of("bob").len() == 1).then_some(())
        });
        phone_only.await;
        quiet(&mut alice).await;
        let before = now_ms();
        drop(bob_phone);
        let offline = event_on(&mut alice, topic, "presence").await;
        assert_eq!(offline["userId"], "bob");
        assert_eq!(offline["online"], false);
        let seen = offline["lastSeenAt"].as_i64().expect("lastSeenAt");
        assert!(seen >= before - 1000 && seen <= now_ms() + 1000);
        assert_eq!(offline.as_object().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn presence_may_be_watched_only_by_users_sharing_a_conversation() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        chat(&broker).await;
        let mut mallory = broker.im_user("mallory").await;
        mallory
            .send(
                &stomp_codec::Frame::new(stomp_codec::Command::Subscribe)
                    .header("destination", "/topic/presence.bob")
                    .header("id", "p")
                    .header("receipt", "watch"),
            )
            .await;
        let body = error(&mut mallory).await;
        assert_error(&body, "FORBIDDEN");
        assert_eq!(body["receiptId"], "watch", "{}", database.label);
        // Still connected, and not subscribed: Bob coming online is not told to Mallory.
        quiet(&mut mallory).await;
        let _bob = broker.ws("bob").await;
        quiet(&mut mallory).await;
        // Sharing a group is enough.
        im::create_group(&broker, "bob", "club", &["mallory"]).await;
        drain(&mut mallory).await;
        mallory.subscribe("/topic/presence.bob", "p2", "auto").await;
        // One may always watch oneself.
        mallory
            .subscribe("/topic/presence.mallory", "p3", "auto")
            .await;
    }
}

#[tokio::test]
async fn presence_over_rest_reports_online_and_last_seen() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        chat(&broker).await;
        let bob = broker.ws("bob").await;
        let answer = presence(&broker, "bob,carol").await;
        assert_eq!(
            answer,
            json!([
                {"userId": "bob", "online": true, "lastSeenAt": null},
                {"userId": "carol", "online": false, "lastSeenAt": null},
            ]),
            "{}",
            database.label
        );
        drop(bob);
        let gone = im::eventually("bob offline", || async {
            let answer = presence(&broker, "bob").await;
            (answer[0]["online"] == false).then_some(answer)
        })
        .await;
        assert!(gone[0]["lastSeenAt"].as_i64().is_some(), "{gone}");
        let (status, body) = im::http_json(
            broker.http_addr(),
            "GET",
            "/api/v1/presence?userIds=bob",
            None,
            None,
        )
        .await;
        assert_eq!(status, 401, "{body}");
        assert_error(&body, "UNAUTHORIZED");
    }
}

async fn block(broker: &TestBroker, blocker: &str, blocked: &str) {
    let (status, body) = broker
        .api("POST", &format!("/api/v1/blocks/{blocked}"), blocker, None)
        .await;
    assert_eq!(status, 204, "{body}");
}

async fn presence_as(broker: &TestBroker, viewer: &str, ids: &str) -> Value {
    let (status, body) = broker
        .api(
            "GET",
            &format!("/api/v1/presence?userIds={ids}"),
            viewer,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn subscribe_refused(client: &mut Client, destination: &str) {
    client
        .send(
            &stomp_codec::Frame::new(stomp_codec::Command::Subscribe)
                .header("destination", destination)
                .header("id", "refused")
                .header("receipt", "refused"),
        )
        .await;
    let body = error(client).await;
    assert_error(&body, "FORBIDDEN");
}

#[tokio::test]
async fn presence_over_rest_answers_as_for_an_unknown_user_without_a_shared_conversation() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        chat(&broker).await;
        let _bob = broker.ws("bob").await;
        let _alice = broker.ws("alice").await;
        // Bob and Alice are online; Mallory shares nothing with them.
        let answer = presence_as(&broker, "mallory", "bob,alice,nobody").await;
        assert_eq!(
            answer,
            json!([
                {"userId": "bob", "online": false, "lastSeenAt": null},
                {"userId": "alice", "online": false, "lastSeenAt": null},
                {"userId": "nobody", "online": false, "lastSeenAt": null},
            ]),
            "{}",
            database.label
        );
        assert_eq!(
            presence_as(&broker, "alice", "bob,mallory").await,
            json!([
                {"userId": "bob", "online": true, "lastSeenAt": null},
                {"userId": "mallory", "online": false, "lastSeenAt": null},
            ])
        );
    }
}

#[tokio::test]
async fn a_blocked_user_gets_no_presence_of_the_blocker_over_rest_or_stomp() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        chat(&broker).await;
        let _bob = broker.ws("bob").await;
        block(&broker, "bob", "alice").await;
        assert_eq!(
            presence_as(&broker, "alice", "bob").await,
            json!([{"userId": "bob", "online": false, "lastSeenAt": null}]),
            "{}",
            database.label
        );
        let mut alice = broker.im_user("alice").await;
        subscribe_refused(&mut alice, "/topic/presence.bob").await;
        quiet(&mut alice).await;
        // One way: Bob still sees Alice.
        let mut bob = broker.im_user("bob").await;
        bob.subscribe("/topic/presence.alice", "p", "auto").await;
        assert_eq!(
            presence_as(&broker, "bob", "alice").await[0]["online"],
            true
        );
        // Unblocked, Alice may watch again.
        let (status, _) = broker
            .api("DELETE", "/api/v1/blocks/alice", "bob", None)
            .await;
        assert_eq!(status, 204);
        alice.subscribe("/topic/presence.bob", "p", "auto").await;
        assert_eq!(
            presence_as(&broker, "alice", "bob").await[0]["online"],
            true
        );
    }
}

#[tokio::test]
async fn blocking_ends_the_blocked_users_subscription_to_the_blockers_presence() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        chat(&broker).await;
        im::create_group(&broker, "bob", "club", &["carol"]).await;
        let topic = "/topic/presence.bob";
        let mut alice = broker.im_user("alice").await;
        let mut alice_phone = broker.im_user("alice").await;
        let mut carol = broker.im_user("carol").await;
        for client in [&mut alice, &mut alice_phone, &mut carol] {
            client.subscribe(topic, "p", "auto").await;
            drain(client).await;
        }
        block(&broker, "bob", "alice").await;
        let bob = broker.ws("bob").await;
        // Carol, whom Bob did not block, is told; Alice's sessions are not.
        assert_eq!(
            event_on(&mut carol, topic, "presence").await["online"],
            true,
            "{}",
            database.label
        );
        quiet(&mut alice).await;
        quiet(&mut alice_phone).await;
        drop(bob);
        assert_eq!(
            event_on(&mut carol, topic, "presence").await["online"],
            false
        );
        quiet(&mut alice).await;
    }
}

#[tokio::test]
async fn typing_between_a_blocker_and_the_blocked_user_reaches_neither() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        chat(&broker).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        block(&broker, "bob", "alice").await;
        typing(&mut alice, "private_alice_bob", "t1").await;
        receipt(&mut alice, "t1").await;
        typing(&mut bob, "private_alice_bob", "t2").await;
        receipt(&mut bob, "t2").await;
        quiet(&mut bob).await;
        quiet(&mut alice).await;
        // Unblocked, typing flows again.
        let (status, _) = broker
            .api("DELETE", "/api/v1/blocks/alice", "bob", None)
            .await;
        assert_eq!(status, 204);
        typing(&mut alice, "private_alice_bob", "t3").await;
        receipt(&mut alice, "t3").await;
        assert_eq!(
            event_on(&mut bob, "/user/queue/events", "typing").await["userId"],
            "alice",
            "{}",
            database.label
        );
    }
}

#[tokio::test]
async fn a_blocked_user_cannot_open_a_private_conversation_with_the_blocker() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        block(&broker, "bob", "mallory").await;
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/conversations/private",
                "mallory",
                Some(json!({"peerId": "bob"})),
            )
            .await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "BLOCKED");
        assert!(
            im::listed(&broker, "mallory", "private_bob_mallory")
                .await
                .is_none()
        );
        assert!(
            im::listed(&broker, "bob", "private_bob_mallory")
                .await
                .is_none()
        );
        // Blocks are one way: Bob may open it, and then it is Mallory's too.
        let (status, view) = broker
            .api(
                "POST",
                "/api/v1/conversations/private",
                "bob",
                Some(json!({"peerId": "mallory"})),
            )
            .await;
        assert_eq!(status, 200, "{label}: {view}");
        let (status, view) = broker
            .api(
                "POST",
                "/api/v1/conversations/private",
                "mallory",
                Some(json!({"peerId": "bob"})),
            )
            .await;
        assert_eq!((status, &view["id"]), (200, &json!("private_bob_mallory")));
    }
}
