//! A group's own rules (contract 5.7 and 6): leaving, history for new members, its member
//! limit, muting one member or the whole group, and nicknames. On every configured backend.

use crate::common::im::{self, assert_error, event_on, history};
use crate::common::{TestBroker, db};
use serde_json::{Value, json};

async fn patch(broker: &TestBroker, user: &str, group: &str, body: Value) -> (u16, Value) {
    broker
        .api(
            "PATCH",
            &format!("/api/v1/groups/{group}"),
            user,
            Some(body),
        )
        .await
}

async fn post_to(broker: &TestBroker, user: &str, group: &str, id: &str) -> (u16, Value) {
    broker
        .api(
            "POST",
            "/api/v1/messages",
            user,
            Some(json!({"conversationId": group, "clientMsgId": id, "content": id})),
        )
        .await
}

async fn member(broker: &TestBroker, viewer: &str, group: &str, user: &str) -> Value {
    let (status, view) = broker
        .api(
            "GET",
            &format!("/api/v1/conversations/{group}"),
            viewer,
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    view["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["userId"] == user)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_owner_sets_the_rules_and_they_hold() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "rules", &["bob", "carol"]).await;
        let mut bob = broker.im_user("bob").await;
        bob.subscribe(&format!("/topic/group.{group}"), "g", "auto")
            .await;
        post_to(&broker, "alice", &group, "before").await;

        let (status, view) = patch(
            &broker,
            "alice",
            &group,
            json!({"allowMemberExit": false, "maxMembers": 4, "enableMessageHistory": true}),
        )
        .await;
        assert_eq!(status, 200, "{label}: {view}");
        assert_eq!(
            (
                &view["allowMemberExit"],
                &view["maxMembers"],
                &view["enableMessageHistory"],
                &view["allMuted"]
            ),
            (&json!(false), &json!(4), &json!(true), &json!(false)),
            "{label}"
        );
        let (updated, _) = im::wait_event(&mut bob, "group.updated").await;
        assert_eq!(updated["maxMembers"], 4, "{label}: {updated}");

        for (user, body, code) in [
            ("bob", json!({"allMuted": true}), 403),
            ("alice", json!({"maxMembers": 2}), 400),
            ("alice", json!({"maxMembers": 100000}), 400),
        ] {
            let (status, answer) = patch(&broker, user, &group, body).await;
            assert_eq!(status, code, "{label}: {answer}");
        }

        // History for new members: dave sees what came before he joined.
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/groups/{group}/members"),
                "alice",
                Some(json!({"userIds": ["dave"]})),
            )
            .await;
        assert_eq!(status, 200, "{label}");
        let seen = history(&broker, "dave", &group, "").await;
        assert_eq!(seen.len(), 1, "{label}: {seen:?}");
        assert_eq!(im::unread_of(&broker, "dave", &group).await, 0, "{label}");
        // The limit: four members now.
        let (status, body) = broker
            .api(
                "POST",
                &format!("/api/v1/groups/{group}/members"),
                "alice",
                Some(json!({"userIds": ["erin"]})),
            )
            .await;
        assert_eq!(status, 409, "{label}: {body}");
        assert_error(&body, "GROUP_FULL");
        // Members may not leave.
        let (status, body) = broker
            .api(
                "POST",
                &format!("/api/v1/groups/{group}/exit"),
                "carol",
                None,
            )
            .await;
        assert_eq!(status, 403, "{label}: {body}");

        // Without history (the default), a new member sees nothing from before.
        patch(
            &broker,
            "alice",
            &group,
            json!({"enableMessageHistory": false, "maxMembers": null}),
        )
        .await;
        broker
            .api(
                "POST",
                &format!("/api/v1/groups/{group}/members"),
                "alice",
                Some(json!({"userIds": ["erin"]})),
            )
            .await;
        assert!(
            history(&broker, "erin", &group, "").await.is_empty(),
            "{label}"
        );
    }
}

#[tokio::test]
async fn muted_members_and_muted_groups_refuse_sends() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "quiet", &["bob", "carol"]).await;
        broker
            .api(
                "PUT",
                &format!("/api/v1/groups/{group}/members/carol/role"),
                "alice",
                Some(json!({"role": "admin"})),
            )
            .await;
        let mut watcher = broker.im_user("carol").await;
        watcher
            .subscribe(&format!("/topic/group.{group}"), "g", "auto")
            .await;
        let mute = |user: &str| format!("/api/v1/groups/{group}/members/{user}/mute");

        let (status, _) = broker
            .api("PUT", &mute("bob"), "alice", Some(json!({"minutes": 10})))
            .await;
        assert_eq!(status, 204, "{label}");
        let muted = event_on(
            &mut watcher,
            &format!("/topic/group.{group}"),
            "member.muted",
        )
        .await;
        assert_eq!(muted["userId"], "bob", "{label}");
        assert!(muted["until"].as_i64().unwrap() > im::now_ms());
        let (status, body) = post_to(&broker, "bob", &group, "b1").await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "FORBIDDEN");
        // Over STOMP, to the group topic, the same.
        let mut bob = broker.im_user("bob").await;
        im::group_send(&mut bob, &group, "b2", "hello?", "rb2").await;
        assert_eq!(im::error(&mut bob).await["code"], "FORBIDDEN", "{label}");
        assert_eq!(member(&broker, "alice", &group, "bob").await["muted"], true);

        // Only those who outrank: bob cannot mute, carol (admin) cannot mute alice (owner).
        let (status, _) = broker
            .api("PUT", &mute("carol"), "bob", Some(json!({})))
            .await;
        assert_eq!(status, 403, "{label}");
        let (status, _) = broker
            .api("PUT", &mute("alice"), "carol", Some(json!({})))
            .await;
        assert_eq!(status, 403, "{label}");
        let (status, body) = broker
            .api("PUT", &mute("bob"), "alice", Some(json!({"minutes": 0})))
            .await;
        assert_eq!(status, 400, "{label}: {body}");

        let (status, _) = broker.api("DELETE", &mute("bob"), "carol", None).await;
        assert_eq!(status, 204, "{label}");
        event_on(
            &mut watcher,
            &format!("/topic/group.{group}"),
            "member.unmuted",
        )
        .await;
        let (status, body) = post_to(&broker, "bob", &group, "b3").await;
        assert_eq!(status, 201, "{label}: {body}");

        // The whole group: only the owner and admins speak.
        patch(&broker, "alice", &group, json!({"allMuted": true})).await;
        let (status, _) = post_to(&broker, "bob", &group, "b4").await;
        assert_eq!(status, 403, "{label}");
        for (user, id) in [("alice", "a1"), ("carol", "c1")] {
            let (status, body) = post_to(&broker, user, &group, id).await;
            assert_eq!(status, 201, "{label}: {user}: {body}");
        }
    }
}

#[tokio::test]
async fn members_set_their_nickname_in_a_group() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "names", &["bob"]).await;
        let mut alice = broker.im_user("alice").await;
        alice
            .subscribe(&format!("/topic/group.{group}"), "g", "auto")
            .await;
        let path = format!("/api/v1/groups/{group}/nickname");
        let (status, _) = broker
            .api("PUT", &path, "bob", Some(json!({"nickname": "Bobby"})))
            .await;
        assert_eq!(status, 204, "{label}");
        let event = event_on(
            &mut alice,
            &format!("/topic/group.{group}"),
            "member.updated",
        )
        .await;
        assert_eq!(event["nickname"], "Bobby", "{label}");
        assert_eq!(
            member(&broker, "alice", &group, "bob").await["nickname"],
            "Bobby"
        );
        for bad in [json!({"nickname": ""}), json!({"nickname": "x".repeat(33)})] {
            let (status, _) = broker.api("PUT", &path, "bob", Some(bad)).await;
            assert_eq!(status, 400, "{label}");
        }
        broker
            .api("PUT", &path, "bob", Some(json!({"nickname": null})))
            .await;
        assert_eq!(
            member(&broker, "alice", &group, "bob").await["nickname"],
            Value::Null
        );
        let (status, _) = broker
            .api("PUT", &path, "carol", Some(json!({"nickname": "c"})))
            .await;
        assert_eq!(status, 403, "{label}: not a member");
    }
}

#[tokio::test]
async fn nickname_changes_and_mutes_are_rate_limited() {
    // Each is pushed to the whole group: one member must not flood it.
    let database = db::sqlite();
    let broker = im::broker(
        &database.url,
        &[("BROKER_LIMITS_MEMBER_UPDATE_RATE", "2/1h")],
    )
    .await;
    let group = im::create_group(&broker, "alice", "calm", &["bob"]).await;
    let path = format!("/api/v1/groups/{group}/nickname");
    for name in ["one", "two"] {
        let (status, _) = broker
            .api("PUT", &path, "bob", Some(json!({"nickname": name})))
            .await;
        assert_eq!(status, 204);
    }
    let (status, body) = broker
        .api("PUT", &path, "bob", Some(json!({"nickname": "three"})))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_error(&body, "RATE_LIMITED");
}
