//! Groups over REST and STOMP (contract sections 4, 5 and 6) on every configured backend:
//! creation, updates, invitations, removal, roles, exit, dissolution, their events, the topic's
//! membership rule, and group messages.

use std::collections::BTreeSet;

use crate::common::im::{
    self, assert_error, body, drain, error, event_on, quiet, receipt, send_json,
};
use crate::common::{Client, TestBroker, db};
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

fn topic(group: &str) -> String {
    format!("/topic/group.{group}")
}

/// A session of `user` subscribed to its user queues and to the group's topic.
async fn member(broker: &TestBroker, user: &str, group: &str) -> Client {
    let mut client = broker.im_user(user).await;
    client.subscribe(&topic(group), "group", "auto").await;
    client
}

async fn set_role(
    broker: &TestBroker,
    caller: &str,
    group: &str,
    user: &str,
    role: &str,
) -> (u16, Value) {
    broker
        .api(
            "PUT",
            &format!("/api/v1/groups/{group}/members/{user}/role"),
            caller,
            Some(json!({"role": role})),
        )
        .await
}

async fn remove(broker: &TestBroker, caller: &str, group: &str, user: &str) -> (u16, Value) {
    broker
        .api(
            "DELETE",
            &format!("/api/v1/groups/{group}/members/{user}"),
            caller,
            None,
        )
        .await
}

async fn invite(broker: &TestBroker, caller: &str, group: &str, users: &[&str]) -> (u16, Value) {
    broker
        .api(
            "POST",
            &format!("/api/v1/groups/{group}/members"),
            caller,
            Some(json!({"userIds": users})),
        )
        .await
}

async fn roles(broker: &TestBroker, group: &str) -> Vec<(String, String)> {
    roles_as(broker, "alice", group).await
}

async fn roles_as(broker: &TestBroker, viewer: &str, group: &str) -> Vec<(String, String)> {
    let (status, view) = broker
        .api(
            "GET",
            &format!("/api/v1/conversations/{group}"),
            viewer,
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let mut roles: Vec<(String, String)> = view["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["userId"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    roles.sort();
    roles
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn creating_a_group_makes_the_caller_owner_and_tells_every_member() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut bob = broker.im_user("bob").await;
        let (status, view) = broker
            .api(
                "POST",
                "/api/v1/groups",
                "alice",
                Some(json!({"name": "team", "avatar": "https://example.com/t.png", "memberIds": ["bob", "carol", "bob", "alice"]})),
            )
            .await;
        assert_eq!(status, 201, "{view} {}", database.label);
        let group = view["id"].as_str().unwrap().to_owned();
        assert!(
            group
                .strip_prefix("group_")
                .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())),
            "{group}"
        );
        assert_eq!(view["type"], "group");
        assert_eq!(view["name"], "team");
        assert_eq!(view["avatar"], "https://example.com/t.png");
        assert_eq!(view["ownerId"], "alice");
        assert_eq!(view["memberCount"], 3);
        assert_eq!(view["lastSeq"], 0);
        assert_eq!(view["unreadCount"], 0);
        let members = view["members"].as_array().expect("members");
        assert_eq!(members.len(), 3);
        assert!(members.iter().all(|m| m["joinedAt"].as_i64().is_some()));
        assert_eq!(
            roles(&broker, &group).await,
            pairs(&[("alice", "owner"), ("bob", "member"), ("carol", "member")])
        );
        let updated = event_on(&mut bob, "/user/queue/events", "conversation.updated").await;
        assert_eq!(updated["id"], group);
        assert_eq!(updated["memberCount"], 3);
        // The member sees the group in its list, with the members on the single view.
        assert_eq!(
            im::listed(&broker, "bob", &group).await.unwrap()["name"],
            "team"
        );
        let (status, one) = broker
            .api(
                "GET",
                &format!("/api/v1/conversations/{group}"),
                "carol",
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(one["members"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn a_group_over_the_member_limit_is_group_full() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[("BROKER_IM_MAX_GROUP_MEMBERS", "3")]).await;
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/groups",
                "alice",
                Some(json!({"name": "big", "memberIds": ["b", "c", "d"]})),
            )
            .await;
        assert_eq!(status, 409, "{body} {}", database.label);
        assert_error(&body, "GROUP_FULL");
        let group = im::create_group(&broker, "alice", "small", &["b", "c"]).await;
        let (status, body) = invite(&broker, "alice", &group, &["d"]).await;
        assert_eq!(status, 409, "{body}");
        assert_error(&body, "GROUP_FULL");
        assert_eq!(roles(&broker, &group).await.len(), 3);
    }
}

#[tokio::test]
async fn only_the_owner_and_admins_update_a_group() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob", "carol"]).await;
        let mut bob = member(&broker, "bob", &group).await;
        drain(&mut bob).await;
        let (status, body) = broker
            .api(
                "PATCH",
                &format!("/api/v1/groups/{group}"),
                "carol",
                Some(json!({"name": "mine"})),
            )
            .await;
        assert_eq!(status, 403, "{body} {}", database.label);
        assert_error(&body, "FORBIDDEN");
        quiet(&mut bob).await;

        let (status, view) = broker
            .api(
                "PATCH",
                &format!("/api/v1/groups/{group}"),
                "alice",
                Some(json!({"name": "renamed", "announcement": "hello all", "allowInvite": true})),
            )
            .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["name"], "renamed");
        assert_eq!(view["announcement"], "hello all");
        assert_eq!(view["allowInvite"], true);
        let updated = event_on(&mut bob, &topic(&group), "group.updated").await;
        assert_eq!(
            updated,
            json!({"conversationId": group, "name": "renamed", "avatar": null,
                   "announcement": "hello all", "allowInvite": true,
                   "messageRetentionDays": null, "allowMemberExit": true,
                   "enableMessageHistory": false, "maxMembers": null, "allMuted": false,
                   "by": "alice"})
        );
        let changed = event_on(&mut bob, "/user/queue/events", "conversation.updated").await;
        assert_eq!(changed["id"], group);
        assert_eq!(changed["name"], "renamed");

        assert_eq!(
            set_role(&broker, "alice", &group, "carol", "admin").await.0,
            204
        );
        drain(&mut bob).await;
        let (status, view) = broker
            .api(
                "PATCH",
                &format!("/api/v1/groups/{group}"),
                "carol",
                Some(json!({"avatar": "a.png"})),
            )
            .await;
        assert_eq!(status, 200, "admin may update: {view}");
        assert_eq!(
            event_on(&mut bob, &topic(&group), "group.updated").await["by"],
            "carol"
        );
    }
}

#[tokio::test]
async fn inviting_needs_the_owner_or_an_admin_unless_the_group_allows_it() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        let mut alice = member(&broker, "alice", &group).await;
        let mut dave = broker.im_user("dave").await;
        let (status, body) = invite(&broker, "bob", &group, &["dave"]).await;
        assert_eq!(status, 403, "{body} {}", database.label);
        assert_error(&body, "FORBIDDEN");
        let (status, body) = invite(&broker, "mallory", &group, &["dave"]).await;
        assert_eq!(status, 403);
        assert_error(&body, "NOT_MEMBER");
        quiet(&mut alice).await;
        quiet(&mut dave).await;

        // An earlier message is not visible to a later member.
        im::group_send(&mut alice, &group, "before", "before dave", "b").await;
        receipt(&mut alice, "b").await;
        drain(&mut alice).await;
        let (status, _) = broker
            .api(
                "PATCH",
                &format!("/api/v1/groups/{group}"),
                "alice",
                Some(json!({"allowInvite": true})),
            )
            .await;
        assert_eq!(status, 200);
        drain(&mut alice).await;
        let (status, body) = invite(&broker, "bob", &group, &["dave", "bob"]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"added": ["dave"]}));
        let added = event_on(&mut alice, &topic(&group), "member.added").await;
        assert_eq!(
            added,
            json!({"conversationId": group, "userIds": ["dave"], "by": "bob"})
        );
        let updated = event_on(&mut dave, "/user/queue/events", "conversation.updated").await;
        assert_eq!(updated["id"], group);
        assert_eq!(updated["unreadCount"], 0);
        assert!(im::history(&broker, "dave", &group, "").await.is_empty());
        dave.subscribe(&topic(&group), "group", "auto").await;
        im::group_send(&mut alice, &group, "after", "welcome", "a").await;
        receipt(&mut alice, "a").await;
        assert_eq!(
            event_on(&mut dave, &topic(&group), "message.new").await["seq"],
            2
        );
    }
}

#[tokio::test]
async fn the_owner_removes_anyone_and_an_admin_only_plain_members() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group =
            im::create_group(&broker, "alice", "team", &["bob", "carol", "dave", "eve"]).await;
        assert_eq!(
            set_role(&broker, "alice", &group, "bob", "admin").await.0,
            204
        );
        assert_eq!(
            set_role(&broker, "alice", &group, "eve", "admin").await.0,
            204
        );
        let mut alice = member(&broker, "alice", &group).await;
        let mut carol = broker.im_user("carol").await;

        for (caller, target, status, code) in [
            ("bob", "alice", 403, "FORBIDDEN"),
            ("bob", "eve", 403, "FORBIDDEN"),
            ("dave", "carol", 403, "FORBIDDEN"),
            ("alice", "mallory", 404, "NOT_FOUND"),
        ] {
            let (got, body) = remove(&broker, caller, &group, target).await;
            assert_eq!(
                got, status,
                "{caller} removes {target}: {body} {}",
                database.label
            );
            assert_error(&body, code);
        }
        quiet(&mut alice).await;

        let (status, body) = remove(&broker, "bob", &group, "carol").await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(
            event_on(&mut alice, &topic(&group), "member.removed").await,
            json!({"conversationId": group, "userId": "carol", "by": "bob"})
        );
        assert_eq!(
            event_on(&mut carol, "/user/queue/events", "conversation.updated").await,
            json!({"id": group, "removed": true})
        );
        let (status, _) = remove(&broker, "alice", &group, "bob").await;
        assert_eq!(status, 204, "the owner removes an admin");
        assert_eq!(
            event_on(&mut alice, &topic(&group), "member.removed").await["userId"],
            "bob"
        );
        assert_eq!(
            roles(&broker, &group).await,
            pairs(&[("alice", "owner"), ("dave", "member"), ("eve", "admin")])
        );
        assert!(im::listed(&broker, "carol", &group).await.is_none());
        let (status, body) = broker
            .api(
                "GET",
                &format!("/api/v1/conversations/{group}/messages"),
                "carol",
                None,
            )
            .await;
        assert_eq!(status, 403);
        assert_error(&body, "NOT_MEMBER");
    }
}

#[tokio::test]
async fn a_removed_member_stops_receiving_the_group_topic_at_once() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob", "carol"]).await;
        let mut alice = member(&broker, "alice", &group).await;
        let mut bob = member(&broker, "bob", &group).await;
        let mut carol = member(&broker, "carol", &group).await;
        let mut carol_phone = member(&broker, "carol", &group).await;
        let (status, _) = remove(&broker, "alice", &group, "carol").await;
        assert_eq!(status, 204);
        for client in [&mut carol, &mut carol_phone] {
            // The removal itself is the last thing the topic tells them.
            assert_eq!(
                event_on(client, &topic(&group), "member.removed").await["userId"],
                "carol"
            );
            event_on(client, "/user/queue/events", "conversation.updated").await;
        }
        drain(&mut bob).await;
        drain(&mut alice).await;
        im::group_send(&mut alice, &group, "g-1", "carol is gone", "r").await;
        receipt(&mut alice, "r").await;
        assert_eq!(
            event_on(&mut bob, &topic(&group), "message.new").await["seq"],
            1
        );
        drain(&mut alice).await;
        quiet(&mut carol).await;
        quiet(&mut carol_phone).await;
        // She can neither send nor subscribe again; her stale UNSUBSCRIBE is harmless.
        im::group_send(&mut carol, &group, "c-1", "let me in", "c").await;
        let body = error(&mut carol).await;
        assert_error(&body, "NOT_MEMBER");
        assert_eq!(body["clientMsgId"], "c-1", "{}", database.label);
        carol
            .send(
                &Frame::new(Command::Unsubscribe)
                    .header("id", "group")
                    .header("receipt", "u"),
            )
            .await;
        receipt(&mut carol, "u").await;
        carol
            .send(
                &Frame::new(Command::Subscribe)
                    .header("destination", topic(&group))
                    .header("id", "again")
                    .header("receipt", "s"),
            )
            .await;
        assert_error(&error(&mut carol).await, "FORBIDDEN");
        quiet(&mut bob).await;
    }
}

#[tokio::test]
async fn roles_change_and_ownership_transfers() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob", "carol"]).await;
        let mut carol = member(&broker, "carol", &group).await;
        drain(&mut carol).await;
        let (status, _) = set_role(&broker, "alice", &group, "bob", "admin").await;
        assert_eq!(status, 204, "{}", database.label);
        assert_eq!(
            event_on(&mut carol, &topic(&group), "member.role").await,
            json!({"conversationId": group, "userId": "bob", "role": "admin", "by": "alice"})
        );
        let updated = event_on(&mut carol, "/user/queue/events", "conversation.updated").await;
        assert_eq!(updated["id"], group);
        // Only the owner sets roles; roles are owner, admin or member.
        let (status, body) = set_role(&broker, "bob", &group, "carol", "admin").await;
        assert_eq!(status, 403, "{body}");
        assert_error(&body, "FORBIDDEN");
        let (status, body) = set_role(&broker, "alice", &group, "carol", "king").await;
        assert_eq!(status, 400, "{body}");
        assert_error(&body, "INVALID_ARGUMENT");
        let (status, body) = set_role(&broker, "alice", &group, "mallory", "admin").await;
        assert_eq!(status, 404, "{body}");
        assert_error(&body, "NOT_FOUND");
        drain(&mut carol).await;

        let (status, _) = set_role(&broker, "alice", &group, "carol", "owner").await;
        assert_eq!(status, 204);
        let mut changes = [
            event_on(&mut carol, &topic(&group), "member.role").await,
            event_on(&mut carol, &topic(&group), "member.role").await,
        ];
        changes.sort_by_key(|c| c["userId"].as_str().unwrap().to_owned());
        assert_eq!(changes[0]["userId"], "alice");
        assert_eq!(changes[0]["role"], "admin");
        assert_eq!(changes[1]["userId"], "carol");
        assert_eq!(changes[1]["role"], "owner");
        assert_eq!(
            roles(&broker, &group).await,
            pairs(&[("alice", "admin"), ("bob", "admin"), ("carol", "owner")])
        );
        let (_, view) = broker
            .api(
                "GET",
                &format!("/api/v1/conversations/{group}"),
                "bob",
                None,
            )
            .await;
        assert_eq!(view["ownerId"], "carol");
        // The old owner lost the right to set roles; the new one has it.
        assert_eq!(
            set_role(&broker, "alice", &group, "bob", "member").await.0,
            403
        );
        assert_eq!(
            set_role(&broker, "carol", &group, "bob", "member").await.0,
            204
        );
    }
}

#[tokio::test]
async fn the_owner_must_transfer_ownership_before_leaving() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob", "carol"]).await;
        let mut bob = member(&broker, "bob", &group).await;
        let mut carol = member(&broker, "carol", &group).await;
        let exit = format!("/api/v1/groups/{group}/exit");
        let (status, body) = broker.api("POST", &exit, "alice", None).await;
        assert_eq!(status, 409, "{body} {}", database.label);
        assert_error(&body, "CONFLICT");

        let (status, _) = broker.api("POST", &exit, "bob", None).await;
        assert_eq!(status, 204);
        assert_eq!(
            event_on(&mut carol, &topic(&group), "member.removed").await,
            json!({"conversationId": group, "userId": "bob", "by": "bob"})
        );
        assert_eq!(
            event_on(&mut bob, &topic(&group), "member.removed").await["userId"],
            "bob"
        );
        assert_eq!(
            event_on(&mut bob, "/user/queue/events", "conversation.updated").await,
            json!({"id": group, "removed": true})
        );
        let (status, body) = broker.api("POST", &exit, "bob", None).await;
        assert_eq!(status, 403);
        assert_error(&body, "NOT_MEMBER");

        assert_eq!(
            set_role(&broker, "alice", &group, "carol", "owner").await.0,
            204
        );
        let (status, _) = broker.api("POST", &exit, "alice", None).await;
        assert_eq!(status, 204);
        let (status, body) = broker
            .api(
                "GET",
                &format!("/api/v1/conversations/{group}"),
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 403, "alice is no longer a member: {body}");
        assert_eq!(
            roles_as(&broker, "carol", &group).await,
            pairs(&[("carol", "owner")])
        );
        drain(&mut carol).await;
        quiet(&mut bob).await;
    }
}

#[tokio::test]
async fn dissolving_tells_every_member_and_ends_sending() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        let mut alice = member(&broker, "alice", &group).await;
        let mut bob = member(&broker, "bob", &group).await;
        im::group_send(&mut alice, &group, "g-1", "last words", "r").await;
        receipt(&mut alice, "r").await;
        drain(&mut alice).await;
        drain(&mut bob).await;
        let path = format!("/api/v1/groups/{group}");
        let (status, body) = broker.api("DELETE", &path, "bob", None).await;
        assert_eq!(status, 403, "{body} {}", database.label);
        assert_error(&body, "FORBIDDEN");

        let (status, _) = broker.api("DELETE", &path, "alice", None).await;
        assert_eq!(status, 204);
        for client in [&mut alice, &mut bob] {
            assert_eq!(
                event_on(client, &topic(&group), "group.dissolved").await,
                json!({"conversationId": group, "by": "alice"})
            );
            let updated = event_on(client, "/user/queue/events", "conversation.updated").await;
            assert_eq!(updated["id"], group);
            assert_eq!(updated["status"], "dissolved");
        }
        im::group_send(&mut bob, &group, "g-2", "hello?", "s").await;
        let body = error(&mut bob).await;
        assert_error(&body, "CONFLICT");
        assert_eq!(body["clientMsgId"], "g-2");
        let (status, body) = broker
            .api("POST", "/api/v1/messages", "alice", Some(json!({"conversationId": group, "clientMsgId": "g-3", "content": "x", "format": "text"})))
            .await;
        assert_eq!(status, 409, "{body}");
        assert_error(&body, "CONFLICT");
        // History stays readable; the topic is silent.
        assert_eq!(
            im::seqs(&im::history(&broker, "bob", &group, "").await),
            vec![1]
        );
        let (status, body) = broker.api("DELETE", &path, "alice", None).await;
        assert_eq!(status, 409, "{body}");
        quiet(&mut alice).await;
        quiet(&mut bob).await;
    }
}

#[tokio::test]
async fn only_members_may_subscribe_to_the_group_topic() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        let mut mallory = broker.im_user("mallory").await;
        for (destination, receipt_id) in [
            (topic(&group), "s1"),
            (topic("group_00000000000000000000000000000000"), "s2"),
        ] {
            mallory
                .send(
                    &Frame::new(Command::Subscribe)
                        .header("destination", destination)
                        .header("id", receipt_id)
                        .header("receipt", receipt_id),
                )
                .await;
            let body = error(&mut mallory).await;
            assert_error(&body, "FORBIDDEN");
            assert_eq!(body["receiptId"], receipt_id, "{}", database.label);
        }
        quiet(&mut mallory).await;
        let mut alice = member(&broker, "alice", &group).await;
        im::group_send(&mut alice, &group, "g", "members only", "r").await;
        receipt(&mut alice, "r").await;
        quiet(&mut mallory).await;
    }
}

#[tokio::test]
async fn group_sends_over_app_and_topic_are_stored_and_pushed_in_seq_order() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        let mut alice = member(&broker, "alice", &group).await;
        let mut bob = member(&broker, "bob", &group).await;
        for i in 0..10 {
            let (destination, value) = if i % 2 == 0 {
                (
                    "/app/group.send".to_owned(),
                    json!({"conversationId": group, "clientMsgId": format!("m{i}"), "format": "text", "content": format!("{i}")}),
                )
            } else {
                (
                    topic(&group),
                    json!({"clientMsgId": format!("m{i}"), "format": "text", "content": format!("{i}")}),
                )
            };
            send_json(&mut alice, &destination, &value, Some(&format!("r{i}"))).await;
        }
        let mut receipts = 0;
        let mut alice_seqs = Vec::new();
        while receipts < 10 || alice_seqs.len() < 10 {
            let frame = alice.frame().await;
            match frame.command {
                Command::Receipt => receipts += 1,
                _ => {
                    assert_eq!(frame.get("event"), Some("message.new"));
                    assert_eq!(frame.get("destination"), Some(topic(&group).as_str()));
                    alice_seqs.push(body(&frame)["seq"].as_i64().unwrap());
                }
            }
        }
        let mut bob_messages = Vec::new();
        for _ in 0..10 {
            bob_messages.push(event_on(&mut bob, &topic(&group), "message.new").await);
        }
        let expected: Vec<i64> = (1..=10).collect();
        assert_eq!(alice_seqs, expected, "{}", database.label);
        assert_eq!(
            bob_messages
                .iter()
                .map(|m| m["seq"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            expected
        );
        for (i, message) in bob_messages.iter().enumerate() {
            assert_eq!(message["content"], i.to_string());
            assert_eq!(message["conversationType"], "group");
            assert_eq!(message["conversationId"], group);
            assert_eq!(message["senderId"], "alice");
        }
        // Group messages go to the topic only, not to the members' user queues.
        quiet(&mut bob).await;
        let stored = im::history(&broker, "bob", &group, "").await;
        assert_eq!(im::seqs(&stored), expected);
        // History adds the read count, which a live push does not carry.
        let mut from_history = stored[3].clone();
        assert_eq!(from_history["readCount"], 0);
        from_history.as_object_mut().unwrap().remove("readCount");
        assert_eq!(from_history, bob_messages[3]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_group_senders_are_pushed_in_seq_order() {
    const PER_SENDER: usize = 20;
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob", "carol", "dave"]).await;
        let mut watcher = member(&broker, "dave", &group).await;
        let mut senders = Vec::new();
        for user in ["alice", "bob", "carol"] {
            senders.push(member(&broker, user, &group).await);
        }
        let tasks = senders.into_iter().enumerate().map(|(n, mut client)| {
            let group = group.clone();
            tokio::spawn(async move {
                for i in 0..PER_SENDER {
                    im::group_send(
                        &mut client,
                        &group,
                        &format!("{n}-{i}"),
                        "x",
                        &format!("{n}-{i}"),
                    )
                    .await;
                }
                let mut receipts = 0;
                while receipts < PER_SENDER {
                    if client.frame().await.command == Command::Receipt {
                        receipts += 1;
                    }
                }
            })
        });
        for task in futures_util::future::join_all(tasks).await {
            task.expect("sender");
        }
        let total = 3 * PER_SENDER;
        let mut seqs = Vec::new();
        while seqs.len() < total {
            seqs.push(
                event_on(&mut watcher, &topic(&group), "message.new").await["seq"]
                    .as_i64()
                    .unwrap(),
            );
        }
        let expected: Vec<i64> = (1..=i64::try_from(total).unwrap()).collect();
        assert_eq!(
            seqs.iter().copied().collect::<BTreeSet<_>>().len(),
            total,
            "{}",
            database.label
        );
        assert_eq!(seqs, expected, "{}", database.label);
    }
}

#[tokio::test]
async fn a_topic_send_naming_another_conversation_is_invalid() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        let other = im::create_group(&broker, "alice", "other", &["bob"]).await;
        let mut alice = broker.im_user("alice").await;
        send_json(
            &mut alice,
            &topic(&group),
            &json!({"conversationId": other, "clientMsgId": "x", "format": "text", "content": "hi"}),
            Some("r"),
        )
        .await;
        let body = error(&mut alice).await;
        assert_error(&body, "INVALID_ARGUMENT");
        assert_eq!(body["receiptId"], "r", "{}", database.label);
        assert_eq!(body["clientMsgId"], "x");
        quiet(&mut alice).await;
        assert!(im::history(&broker, "alice", &group, "").await.is_empty());
        assert!(im::history(&broker, "alice", &other, "").await.is_empty());
    }
}
