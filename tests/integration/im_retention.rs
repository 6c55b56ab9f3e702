//! Message retention on every configured backend: setting `messageRetentionDays` (REST, who may,
//! validation, events), and the purge of older messages with what hangs on them: history starts
//! later without gaps, unread counts and search leave the purged messages out, per-user deletion
//! marks go, and the server runs the purge on its own at `im.retention_purge_interval_s`.

use crate::common::db::{self, TestDatabase};
use crate::common::im::{self, assert_error, drain, event_on, seqs};
use crate::common::{TestBroker, metric_value};
use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::{Value, json};

const CHAT: &str = "private_alice_bob";
const DAY_MS: i64 = 86_400_000;

/// Sends a text message over REST; returns the stored message.
async fn send(broker: &TestBroker, from: &str, target: Value, id: &str, content: &str) -> Value {
    let mut body = target;
    body["clientMsgId"] = json!(id);
    body["content"] = json!(content);
    let (status, message) = broker
        .api("POST", "/api/v1/messages", from, Some(body))
        .await;
    assert_eq!(status, 201, "{message}");
    message
}

/// Moves the storage time of the given messages of `conversation` `days` into the past, as if
/// they had been sent then.
async fn age(database: &TestDatabase, conversation: &str, seqs: &[i64], days: i64) {
    let list: Vec<String> = seqs.iter().map(i64::to_string).collect();
    let sql = format!(
        "UPDATE messages SET created_at = created_at - {} WHERE conversation_id = '{conversation}' \
         AND seq IN ({})",
        days * DAY_MS,
        list.join(", ")
    );
    if let Some(path) = database.url.strip_prefix("sqlite://") {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = diesel::SqliteConnection::establish(&path).expect("sqlite");
            conn.batch_execute(&format!("PRAGMA busy_timeout = 5000; {sql}"))
                .expect("age messages");
        })
        .await
        .expect("age task");
    } else {
        let mut conn = AsyncPgConnection::establish(&database.url)
            .await
            .expect("postgres");
        conn.batch_execute(&sql).await.expect("age messages");
    }
}

async fn patch_settings(broker: &TestBroker, user: &str, id: &str, body: Value) -> (u16, Value) {
    broker
        .api(
            "PATCH",
            &format!("/api/v1/conversations/{id}/settings"),
            user,
            Some(body),
        )
        .await
}

async fn purge(broker: &TestBroker) -> usize {
    broker
        .server
        .im()
        .expect("the IM layer")
        .purge_expired(broker::util::now_ms())
        .await
        .expect("purge")
}

fn unread_count(unread: &Value, conversation: &str) -> i64 {
    unread["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .find(|c| c["id"] == conversation)
        .map_or(0, |c| c["unreadCount"].as_i64().expect("unreadCount"))
}

#[tokio::test]
async fn either_member_of_a_private_chat_sets_the_retention_for_both() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        send(&broker, "alice", json!({"to": "bob"}), "m1", "hi").await;
        let mut alice = broker.im_user("alice").await;
        drain(&mut alice).await;

        let (status, view) =
            patch_settings(&broker, "bob", CHAT, json!({"messageRetentionDays": 30})).await;
        assert_eq!(status, 200, "{label}: {view}");
        assert_eq!(view["messageRetentionDays"], 30, "{label}");
        // Conversation-wide: the other member is told and sees it too.
        let updated = event_on(&mut alice, "/user/queue/events", "conversation.updated").await;
        assert_eq!(
            (&updated["id"], &updated["messageRetentionDays"]),
            (&json!(CHAT), &json!(30)),
            "{label}"
        );
        let listed = im::listed(&broker, "alice", CHAT).await.expect("listed");
        assert_eq!(listed["messageRetentionDays"], 30, "{label}");

        for bad in [json!(0), json!(3651), json!(-1), json!("30"), json!(1.5)] {
            let (status, body) =
                patch_settings(&broker, "alice", CHAT, json!({"messageRetentionDays": bad})).await;
            assert_eq!(status, 400, "{label}: {bad} -> {body}");
            assert_error(&body, "INVALID_ARGUMENT");
        }
        // A refused change leaves everything as it was, per-user settings included.
        let (status, _) = patch_settings(
            &broker,
            "alice",
            CHAT,
            json!({"pinned": true, "messageRetentionDays": 0}),
        )
        .await;
        assert_eq!(status, 400, "{label}");
        let listed = im::listed(&broker, "alice", CHAT).await.expect("listed");
        assert_eq!(
            (&listed["pinned"], &listed["messageRetentionDays"]),
            (&json!(false), &json!(30)),
            "{label}"
        );

        let (status, view) = patch_settings(
            &broker,
            "alice",
            CHAT,
            json!({"messageRetentionDays": 3650}),
        )
        .await;
        assert_eq!((status, &view["messageRetentionDays"]), (200, &json!(3650)));
        let (status, view) = patch_settings(
            &broker,
            "alice",
            CHAT,
            json!({"messageRetentionDays": null}),
        )
        .await;
        assert_eq!(status, 200, "{label}: {view}");
        assert_eq!(view["messageRetentionDays"], Value::Null, "{label}");
        // Leaving the field out changes nothing.
        patch_settings(&broker, "alice", CHAT, json!({"messageRetentionDays": 7})).await;
        let (_, view) = patch_settings(&broker, "alice", CHAT, json!({"muted": true})).await;
        assert_eq!(
            (&view["muted"], &view["messageRetentionDays"]),
            (&json!(true), &json!(7))
        );

        let (status, body) =
            patch_settings(&broker, "carol", CHAT, json!({"messageRetentionDays": 7})).await;
        assert_eq!(status, 404, "{label}");
        assert_error(&body, "NOT_FOUND");
    }
}

#[tokio::test]
async fn only_a_groups_owner_or_admin_sets_its_retention_and_system_chats_refuse_it() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob", "carol"]).await;
        let path = format!("/api/v1/groups/{group}");

        let (status, body) = broker
            .api(
                "PATCH",
                &path,
                "bob",
                Some(json!({"messageRetentionDays": 7})),
            )
            .await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "FORBIDDEN");
        let (status, body) =
            patch_settings(&broker, "bob", &group, json!({"messageRetentionDays": 7})).await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "FORBIDDEN");

        let mut bob = broker.im_user("bob").await;
        bob.subscribe(&format!("/topic/group.{group}"), "group", "auto")
            .await;
        drain(&mut bob).await;
        let (status, view) = broker
            .api(
                "PATCH",
                &path,
                "alice",
                Some(json!({"messageRetentionDays": 7})),
            )
            .await;
        assert_eq!(status, 200, "{label}: {view}");
        assert_eq!(view["messageRetentionDays"], 7);
        let (updated, _) = im::wait_event(&mut bob, "group.updated").await;
        assert_eq!(updated["messageRetentionDays"], 7, "{label}");

        let (status, body) = broker
            .api(
                "PATCH",
                &path,
                "alice",
                Some(json!({"messageRetentionDays": 4000})),
            )
            .await;
        assert_eq!(status, 400, "{label}");
        assert_error(&body, "INVALID_ARGUMENT");

        // An admin may, through either endpoint.
        let (status, _) = broker
            .api(
                "PUT",
                &format!("{path}/members/bob/role"),
                "alice",
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(status, 204);
        let (status, view) = patch_settings(
            &broker,
            "bob",
            &group,
            json!({"messageRetentionDays": null}),
        )
        .await;
        assert_eq!(status, 200, "{label}: {view}");
        assert_eq!(view["messageRetentionDays"], Value::Null);

        let (status, _) = broker
            .api_system(
                "POST",
                "/api/v1/notifications",
                "ops",
                Some(json!({"userIds": ["bob"], "title": "hello"})),
            )
            .await;
        assert_eq!(status, 201);
        let (status, body) = patch_settings(
            &broker,
            "bob",
            "system_bob",
            json!({"messageRetentionDays": 7}),
        )
        .await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "FORBIDDEN");
    }
}

#[tokio::test]
async fn the_purge_removes_a_prefix_of_old_messages_and_what_hangs_on_them() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let mut ids = Vec::new();
        for i in 1..=5 {
            let message = send(
                &broker,
                "alice",
                json!({"to": "bob"}),
                &format!("a{i}"),
                &format!("今天晚上一起吃饭吗 {i}"),
            )
            .await;
            ids.push(message["id"].as_str().expect("id").to_owned());
        }
        // Bob hides message 2 for himself; a purge must take that mark with the message.
        let (status, _) = broker
            .api(
                "DELETE",
                &format!("/api/v1/messages/{}", ids[1]),
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 204);
        // The same old messages in a conversation without retention stay.
        for i in 1..=2 {
            send(
                &broker,
                "alice",
                json!({"to": "carol"}),
                &format!("c{i}"),
                "一起吃饭",
            )
            .await;
        }
        age(&database, "private_alice_carol", &[1, 2], 400).await;
        let (status, _) =
            patch_settings(&broker, "bob", CHAT, json!({"messageRetentionDays": 30})).await;
        assert_eq!(status, 200);
        // 1-3 and 5 are older than 30 days; 4 is not, so the purge stops before it.
        age(&database, CHAT, &[1, 2, 3, 5], 31).await;
        age(&database, CHAT, &[4], 29).await;
        assert_eq!(unread_count(&im::unread(&broker, "bob").await, CHAT), 5);
        let before =
            metric_value(&broker.metrics().await, "broker_messages_purged_total").unwrap_or(0.0);

        assert_eq!(purge(&broker).await, 3, "{label}");
        assert_eq!(
            purge(&broker).await,
            0,
            "{label}: a second run finds nothing"
        );
        let after = broker.metric("broker_messages_purged_total").await;
        assert!(after >= before + 3.0, "{label}: {before} -> {after}");

        // History starts later and stays gapless from there, in every paging direction.
        assert_eq!(seqs(&im::history(&broker, "bob", CHAT, "").await), [4, 5]);
        assert_eq!(
            seqs(&im::history(&broker, "alice", CHAT, "?afterSeq=0&limit=1").await),
            [4]
        );
        assert_eq!(
            seqs(&im::history(&broker, "alice", CHAT, "?beforeSeq=5").await),
            [4]
        );
        assert!(
            im::history(&broker, "alice", CHAT, "?beforeSeq=4")
                .await
                .is_empty()
        );
        let (status, body) = broker
            .api(
                "POST",
                &format!("/api/v1/messages/{}/recall", ids[2]),
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 404, "{label}: a purged message is gone: {body}");

        // Unread counts leave the purged messages out.
        let unread = im::unread(&broker, "bob").await;
        assert_eq!(unread_count(&unread, CHAT), 2, "{label}: {unread}");
        let listed = im::listed(&broker, "bob", CHAT).await.expect("listed");
        assert_eq!(
            (
                &listed["unreadCount"],
                &listed["readSeq"],
                &listed["lastSeq"]
            ),
            (&json!(2), &json!(3), &json!(5)),
            "{label}"
        );
        assert_eq!(unread_count(&im::unread(&broker, "alice").await, CHAT), 0);

        // Search no longer finds them.
        let (status, page) = broker
            .api(
                "GET",
                "/api/v1/search?q=%E4%B8%80%E8%B5%B7%E5%90%83%E9%A5%AD&limit=100",
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let found: Vec<i64> = seqs(page["items"].as_array().expect("items"));
        assert_eq!(found, [5, 4], "{label}: {page}");
        let (_, page) = broker
            .api(
                "GET",
                "/api/v1/search?q=%E4%B8%80%E8%B5%B7%E5%90%83%E9%A5%AD&limit=100",
                "alice",
                None,
            )
            .await;
        assert_eq!(page["items"].as_array().expect("items").len(), 4, "{page}");

        // The conversation goes on where it was.
        let next = send(&broker, "bob", json!({"to": "alice"}), "b1", "ok").await;
        assert_eq!(next["seq"], 6, "{label}");
        assert_eq!(
            seqs(&im::history(&broker, "alice", CHAT, "").await),
            [4, 5, 6]
        );
        assert_eq!(
            seqs(&im::history(&broker, "alice", "private_alice_carol", "").await),
            [1, 2]
        );
    }
}

#[tokio::test]
async fn the_server_purges_on_its_interval() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(
            &database.url,
            &[("BROKER_IM_RETENTION_PURGE_INTERVAL_S", "1")],
        )
        .await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        let (status, _) = broker
            .api(
                "PATCH",
                &format!("/api/v1/groups/{group}"),
                "alice",
                Some(json!({"messageRetentionDays": 1})),
            )
            .await;
        assert_eq!(status, 200);
        for i in 1..=3 {
            send(
                &broker,
                "alice",
                json!({"conversationId": group}),
                &format!("g{i}"),
                "hello",
            )
            .await;
        }
        age(&database, &group, &[1, 2], 2).await;
        let kept = im::eventually("the purge job", || async {
            let kept = seqs(&im::history(&broker, "bob", &group, "").await);
            (kept.len() == 1).then_some(kept)
        })
        .await;
        assert_eq!(kept, [3], "{label}");
        assert_eq!(unread_count(&im::unread(&broker, "bob").await, &group), 1);
    }
}
