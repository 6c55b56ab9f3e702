//! Reports and automatic bans over real sockets, on every configured backend: a ban needs
//! enough distinct reporters who have received a message from the reported user, reports are
//! rate-limited per reporter, and admins list reports and list and lift bans.

use std::time::Duration;

use crate::common::im::{self, assert_error, http_json};
use crate::common::{TestBroker, db};
use broker::auth::Role;
use serde_json::{Value, json};

/// Sends a private text message over REST; the status.
async fn send(broker: &TestBroker, from: &str, to: &str, id: &str) -> u16 {
    let (status, body) = broker
        .api(
            "POST",
            "/api/v1/messages",
            from,
            Some(json!({"to": to, "clientMsgId": id, "content": "hello"})),
        )
        .await;
    assert!(matches!(status, 201 | 403), "{status} {body}");
    status
}

async fn report(broker: &TestBroker, reporter: &str, body: Value) -> (u16, Value) {
    broker
        .api("POST", "/api/v1/reports", reporter, Some(body))
        .await
}

async fn report_user(broker: &TestBroker, reporter: &str, user: &str) -> u16 {
    let (status, body) = report(
        broker,
        reporter,
        json!({"userId": user, "reason": "abusive"}),
    )
    .await;
    assert_eq!(status, 201, "{reporter} reports {user}: {body}");
    status
}

/// An admin's REST call.
async fn admin(broker: &TestBroker, method: &str, path: &str) -> (u16, Value) {
    let token = broker.token_with("root", &[Role::Admin], Duration::from_secs(60));
    http_json(broker.http_addr(), method, path, Some(&token), None).await
}

async fn banned(broker: &TestBroker) -> Vec<String> {
    let (status, bans) = admin(broker, "GET", "/api/v1/admin/bans").await;
    assert_eq!(status, 200, "{bans}");
    bans["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|ban| ban["userId"].as_str().expect("userId").to_owned())
        .collect()
}

/// The ban rule with a small threshold, and room for as many reports as a test makes.
const RULES: [(&str, &str); 2] = [
    ("BROKER_MODERATION_BAN_THRESHOLD", "3"),
    ("BROKER_LIMITS_REPORT_RATE", "1000/1h"),
];

#[tokio::test]
async fn reports_from_one_account_ban_nobody() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[("BROKER_LIMITS_REPORT_RATE", "1000/1h")]).await;
        // Mallory has received a message from alice, so her reports count: once.
        assert_eq!(send(&broker, "alice", "mallory", "a1").await, 201);
        for _ in 0..15 {
            report_user(&broker, "mallory", "alice").await;
        }
        assert_eq!(send(&broker, "alice", "bob", "a2").await, 201, "{label}");
        assert!(banned(&broker).await.is_empty(), "{label}");
    }
}

#[tokio::test]
async fn distinct_reporters_who_received_a_message_ban_the_reported_user() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &RULES).await;
        let reporters = ["r1", "r2", "r3", "r4"];
        for (i, reporter) in reporters.iter().enumerate() {
            assert_eq!(
                send(&broker, "alice", reporter, &format!("a{i}")).await,
                201
            );
        }
        // Three reporters are not more than the threshold of three, however often they report.
        for reporter in &reporters[..3] {
            report_user(&broker, reporter, "alice").await;
            report_user(&broker, reporter, "alice").await;
        }
        assert_eq!(send(&broker, "alice", "r1", "b1").await, 201, "{label}");
        // One that names the message it received counts as well.
        let (_, page) = broker
            .api(
                "GET",
                "/api/v1/conversations/private_alice_r4/messages",
                "r4",
                None,
            )
            .await;
        let message = page["items"][0]["id"].clone();
        let (status, body) = report(
            &broker,
            "r4",
            json!({"userId": "alice", "messageId": message, "reason": "spam"}),
        )
        .await;
        assert_eq!(status, 201, "{label}: {body}");
        assert_eq!(banned(&broker).await, vec!["alice".to_owned()], "{label}");
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"to": "r1", "clientMsgId": "b2", "content": "hi"})),
            )
            .await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "BANNED");
    }
}

#[tokio::test]
async fn reporters_who_never_received_a_message_from_the_user_do_not_count() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &RULES).await;
        // Strangers; one who wrote to alice without an answer; and members of a group who
        // joined after alice last spoke in it: none of them received anything from her.
        assert_eq!(send(&broker, "s3", "alice", "s3-1").await, 201);
        let group = im::create_group(&broker, "alice", "club", &[]).await;
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "alice",
                Some(json!({"conversationId": group, "clientMsgId": "g1", "content": "hi"})),
            )
            .await;
        assert_eq!(status, 201);
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/groups/{group}/members"),
                "alice",
                Some(json!({"userIds": ["g4", "g5"]})),
            )
            .await;
        assert_eq!(status, 200);
        for reporter in ["s1", "s2", "s3", "g4", "g5"] {
            report_user(&broker, reporter, "alice").await;
        }
        assert!(banned(&broker).await.is_empty(), "{label}");
        let (status, page) = admin(&broker, "GET", "/api/v1/admin/reports?userId=alice").await;
        assert_eq!(status, 200, "{page}");
        let counted: Vec<&Value> = page["items"].as_array().unwrap().iter().collect();
        assert_eq!(counted.len(), 5, "{label}: {page}");
        assert!(counted.iter().all(|r| r["counted"] == false), "{page}");
        // A message naming another user's message, or one the reporter cannot see, is refused.
        let (_, history) = broker
            .api(
                "GET",
                "/api/v1/conversations/private_alice_s3/messages",
                "s3",
                None,
            )
            .await;
        let own = history["items"][0]["id"].clone();
        let (status, body) = report(
            &broker,
            "s3",
            json!({"userId": "alice", "messageId": own, "reason": "x"}),
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
        let (status, body) = report(
            &broker,
            "s1",
            json!({"userId": "s3", "messageId": own, "reason": "x"}),
        )
        .await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_error(&body, "NOT_FOUND");
    }
}

#[tokio::test]
async fn reports_beyond_the_report_rate_are_rate_limited() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[("BROKER_LIMITS_REPORT_RATE", "2/1h")]).await;
        report_user(&broker, "mallory", "alice").await;
        report_user(&broker, "mallory", "bob").await;
        let (status, body) = report(
            &broker,
            "mallory",
            json!({"userId": "carol", "reason": "third"}),
        )
        .await;
        assert_eq!(status, 429, "{label}: {body}");
        assert_error(&body, "RATE_LIMITED");
        // Per reporter: another user still may.
        report_user(&broker, "dave", "alice").await;
        let (status, page) = admin(&broker, "GET", "/api/v1/admin/reports").await;
        assert_eq!(status, 200);
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            3,
            "{label}: {page}"
        );
    }
}

#[tokio::test]
async fn a_report_reason_is_one_to_500_characters() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let (status, body) = report(
            &broker,
            "bob",
            json!({"userId": "alice", "reason": "x".repeat(501)}),
        )
        .await;
        assert_eq!(status, 400, "{}: {body}", database.label);
        assert_error(&body, "INVALID_ARGUMENT");
        let (status, _) = report(
            &broker,
            "bob",
            json!({"userId": "alice", "reason": "字".repeat(500)}),
        )
        .await;
        assert_eq!(status, 201);
    }
}

#[tokio::test]
async fn admins_page_through_reports_newest_first_and_by_user() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        assert_eq!(send(&broker, "alice", "bob", "a1").await, 201);
        let (status, first) = report(
            &broker,
            "bob",
            json!({"userId": "alice", "reason": "first"}),
        )
        .await;
        assert_eq!(status, 201, "{first}");
        for (reporter, user) in [("carol", "alice"), ("bob", "dave"), ("erin", "alice")] {
            report_user(&broker, reporter, user).await;
        }
        let (status, page) = admin(&broker, "GET", "/api/v1/admin/reports?limit=3").await;
        assert_eq!(status, 200, "{label}: {page}");
        let reporters: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["reporterId"].as_str().unwrap())
            .collect();
        assert_eq!(reporters, ["erin", "bob", "carol"], "{label}: {page}");
        let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
        let (_, rest) = admin(
            &broker,
            "GET",
            &format!("/api/v1/admin/reports?limit=3&cursor={cursor}"),
        )
        .await;
        assert_eq!(
            rest["items"],
            json!([{
                "id": first["id"], "reporterId": "bob", "userId": "alice", "messageId": null,
                "reason": "first", "createdAt": first["createdAt"], "counted": true,
            }]),
            "{label}"
        );
        assert_eq!(rest["nextCursor"], Value::Null);
        let (_, dave) = admin(&broker, "GET", "/api/v1/admin/reports?userId=dave").await;
        assert_eq!(dave["items"].as_array().unwrap().len(), 1, "{dave}");
        assert_eq!(dave["items"][0]["counted"], false, "{dave}");
        for bad in ["limit=0", "limit=101", "cursor=x", "userId=a_b"] {
            let (status, body) =
                admin(&broker, "GET", &format!("/api/v1/admin/reports?{bad}")).await;
            assert_eq!(status, 400, "{bad}: {body}");
            assert_error(&body, "INVALID_ARGUMENT");
        }
        let (status, body) = broker
            .api("GET", "/api/v1/admin/reports", "bob", None)
            .await;
        assert_eq!(status, 403, "{body}");
        assert_error(&body, "FORBIDDEN");
    }
}

#[tokio::test]
async fn only_admins_lift_bans_and_only_bans_in_force() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[("BROKER_MODERATION_BAN_THRESHOLD", "1")]).await;
        for reporter in ["bob", "carol"] {
            assert_eq!(send(&broker, "alice", reporter, reporter).await, 201);
            report_user(&broker, reporter, "alice").await;
        }
        assert_eq!(banned(&broker).await, vec!["alice".to_owned()], "{label}");
        let (status, bans) = admin(&broker, "GET", "/api/v1/admin/bans").await;
        assert_eq!(status, 200);
        let ban = &bans["items"][0];
        assert!(
            ban["until"].as_i64().unwrap() > ban["bannedAt"].as_i64().unwrap(),
            "{bans}"
        );
        assert_eq!(ban["reason"], "2 reporters or rejected messages", "{bans}");
        for user in ["bob", "alice"] {
            let (status, body) = broker
                .api("DELETE", "/api/v1/admin/bans/alice", user, None)
                .await;
            assert_eq!(status, 403, "{user}: {body}");
            assert_error(&body, "FORBIDDEN");
            let (status, _) = broker.api("GET", "/api/v1/admin/bans", user, None).await;
            assert_eq!(status, 403);
        }
        assert_eq!(send(&broker, "alice", "bob", "still").await, 403, "{label}");
        let (status, _) = admin(&broker, "DELETE", "/api/v1/admin/bans/alice").await;
        assert_eq!(status, 204);
        assert_eq!(send(&broker, "alice", "bob", "free").await, 201, "{label}");
        assert!(banned(&broker).await.is_empty());
        let (status, body) = admin(&broker, "DELETE", "/api/v1/admin/bans/alice").await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_error(&body, "NOT_FOUND");
        // Offences before the lift do not count again: one more reporter is one offence.
        assert_eq!(send(&broker, "alice", "dave", "d").await, 201);
        report_user(&broker, "dave", "alice").await;
        assert_eq!(send(&broker, "alice", "bob", "after").await, 201, "{label}");
    }
}
