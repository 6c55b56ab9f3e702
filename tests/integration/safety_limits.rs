//! Send limits and abuse rules over real sockets, on every configured backend: the per-user
//! send rate, the stranger rules, blocks, sensitive words (reject, mask, reload), reports and
//! automatic bans with the admin endpoints.

use crate::common;

use std::time::Duration;

use crate::common::{Client, TestBroker, db};
use broker::auth::Role;
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

/// Sends a private message over STOMP with a receipt; `Ok` on the RECEIPT, `Err(error body)`
/// on the application error answering it. Other frames in between are skipped.
async fn send_ws(client: &mut Client, to: &str, id: &str, content: &str) -> Result<(), Value> {
    let receipt = format!("r-{id}");
    client
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/app/private.send")
                .header("content-type", "application/json")
                .header("receipt", receipt.as_str())
                .body(
                    json!({"to": to, "clientMsgId": id, "format": "text", "content": content})
                        .to_string(),
                ),
        )
        .await;
    loop {
        let frame = client.frame().await;
        match frame.command {
            Command::Receipt if frame.get("receipt-id") == Some(receipt.as_str()) => {
                return Ok(());
            }
            Command::Message if frame.get("event") == Some("error") => {
                let body: Value = serde_json::from_slice(&frame.body).expect("error JSON");
                if body["receiptId"] == receipt.as_str() {
                    return Err(body);
                }
            }
            Command::Error => panic!("STOMP ERROR: {frame:?}"),
            _ => {}
        }
    }
}

async fn send_rest(
    broker: &TestBroker,
    from: &str,
    to: &str,
    id: &str,
    content: &str,
) -> (u16, Value) {
    broker
        .api(
            "POST",
            "/api/v1/messages",
            from,
            Some(json!({"to": to, "clientMsgId": id, "content": content})),
        )
        .await
}

/// Limits loose enough not to interfere with the rule under test.
const LOOSE: [(&str, &str); 3] = [
    ("BROKER_LIMITS_SEND_RATE", "1000/1s"),
    ("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "1000"),
    ("BROKER_LIMITS_STRANGER_RATE", "1000/1s"),
];

fn with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut all: Vec<_> = LOOSE
        .iter()
        .copied()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .collect();
    all.extend_from_slice(overrides);
    all
}

#[tokio::test]
async fn send_rate_is_per_user_over_stomp_and_rest_and_the_session_stays_open() {
    for database in db::all().await {
        let label = database.label;
        let broker = TestBroker::start_im(
            &database.url,
            &with(&[("BROKER_LIMITS_SEND_RATE", "3/10s")]),
        )
        .await;
        let mut alice = broker.im_user("alice").await;
        for i in 0..3 {
            send_ws(&mut alice, "bob", &format!("c{i}"), "hi")
                .await
                .unwrap_or_else(|e| panic!("{label}: send {i}: {e}"));
        }
        let error = send_ws(&mut alice, "bob", "c3", "one too many")
            .await
            .expect_err("fourth send is limited");
        assert_eq!(error["code"], "RATE_LIMITED", "{label}");
        assert_eq!(error["clientMsgId"], "c3");
        let (status, body) = send_rest(&broker, "alice", "bob", "c4", "rest too").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("RATE_LIMITED")),
            "{label}"
        );
        // A retry of a stored message is not refused: it returns the stored one.
        send_ws(&mut alice, "bob", "c0", "hi")
            .await
            .unwrap_or_else(|e| panic!("{label}: retry: {e}"));
        // Another user has a budget of their own, and alice's session is still usable.
        let (status, _) = send_rest(&broker, "bob", "alice", "b1", "hello").await;
        assert_eq!(status, 201, "{label}");
        alice
            .send(
                &Frame::new(Command::Unsubscribe)
                    .header("id", "none")
                    .header("receipt", "still-open"),
            )
            .await;
        alice.expect_receipt_after_messages("still-open").await;
    }
}

#[tokio::test]
async fn strangers_get_one_message_until_they_reply_and_a_rate_across_strangers() {
    for database in db::all().await {
        let label = database.label;
        let broker = TestBroker::start_im(
            &database.url,
            &[
                ("BROKER_LIMITS_SEND_RATE", "1000/1s"),
                ("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "1"),
                ("BROKER_LIMITS_STRANGER_RATE", "2/1m"),
            ],
        )
        .await;
        let mut alice = broker.im_user("alice").await;
        send_ws(&mut alice, "bob", "a1", "hello bob").await.unwrap();
        let error = send_ws(&mut alice, "bob", "a2", "are you there?")
            .await
            .expect_err("second message to a stranger");
        assert_eq!(error["code"], "STRANGER_LIMIT", "{label}");
        let (status, body) = send_rest(&broker, "alice", "bob", "a3", "hello??").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("STRANGER_LIMIT"))
        );
        // The first message retried is still answered.
        let (status, body) = send_rest(&broker, "alice", "bob", "a1", "hello bob").await;
        assert_eq!(status, 200, "{label}: retry {body}");
        // Bob replies: alice may write freely.
        let (status, _) = send_rest(&broker, "bob", "alice", "b1", "hi alice").await;
        assert_eq!(status, 201, "{label}");
        for i in 0..3 {
            send_ws(&mut alice, "bob", &format!("a-after-{i}"), "so")
                .await
                .unwrap_or_else(|e| panic!("{label}: after reply: {e}"));
        }
        // The rate across strangers: bob's first message counted one, carol's counts the second.
        send_ws(&mut alice, "carol", "a-carol", "hi carol")
            .await
            .unwrap_or_else(|e| panic!("{label}: carol: {e}"));
        let error = send_ws(&mut alice, "dave", "a-dave", "hi dave")
            .await
            .expect_err("third stranger within the minute");
        assert_eq!(error["code"], "STRANGER_LIMIT", "{label}");
    }
}

#[tokio::test]
async fn a_blocked_sender_gets_blocked_until_unblocked() {
    for database in db::all().await {
        let label = database.label;
        let broker = TestBroker::start_im(&database.url, &with(&[])).await;
        let (status, _) = broker
            .api("POST", "/api/v1/blocks/alice", "bob", None)
            .await;
        assert_eq!(status, 204, "{label}");
        let (status, _) = broker
            .api("POST", "/api/v1/blocks/alice", "bob", None)
            .await;
        assert_eq!(status, 204, "blocking twice is fine");
        let mut alice = broker.im_user("alice").await;
        let error = send_ws(&mut alice, "bob", "x1", "hi").await.unwrap_err();
        assert_eq!(error["code"], "BLOCKED", "{label}");
        let (status, body) = send_rest(&broker, "alice", "bob", "x2", "hi").await;
        assert_eq!((status, body["code"].as_str()), (403, Some("BLOCKED")));
        // Refused in the transaction that would have stored them: a send that goes in the same
        // batch is stored, and the refused ones created no conversation.
        let (blocked, other) = tokio::join!(
            send_rest(&broker, "alice", "bob", "x2b", "hi again"),
            send_rest(&broker, "carol", "bob", "c1", "hello bob"),
        );
        assert_eq!(
            (blocked.0, blocked.1["code"].as_str()),
            (403, Some("BLOCKED"))
        );
        assert_eq!(other.0, 201, "{label}: {}", other.1);
        let (_, list) = broker
            .api("GET", "/api/v1/conversations", "alice", None)
            .await;
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            Some(0),
            "{label}: {list}"
        );
        // Bob may still write to alice; blocks are one way.
        let (status, _) = send_rest(&broker, "bob", "alice", "y1", "I can write").await;
        assert_eq!(status, 201, "{label}");
        let (status, _) = broker
            .api("DELETE", "/api/v1/blocks/alice", "bob", None)
            .await;
        assert_eq!(status, 204);
        send_ws(&mut alice, "bob", "x3", "thanks").await.unwrap();
        let (status, body) = broker.api("POST", "/api/v1/blocks/bob", "bob", None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
    }
}

fn words_file(dir: &tempfile::TempDir, words: &str) -> String {
    let path = dir.path().join("words.txt");
    std::fs::write(&path, words).expect("write words");
    path.display().to_string()
}

#[tokio::test]
async fn sensitive_words_reject_case_and_width_insensitively_and_reload() {
    for database in db::all().await {
        let label = database.label;
        let dir = tempfile::tempdir().unwrap();
        let path: &'static str =
            Box::leak(words_file(&dir, "# comment\nbadword\n敏感词\n").into_boxed_str());
        let broker = TestBroker::start_im(
            &database.url,
            &with(&[("BROKER_MODERATION_WORDS_FILE", path)]),
        )
        .await;
        let mut alice = broker.im_user("alice").await;
        let error = send_ws(&mut alice, "bob", "s1", "this is a ＢＡＤword!")
            .await
            .expect_err("sensitive");
        assert_eq!(error["code"], "SENSITIVE_CONTENT", "{label}");
        let (status, body) = send_rest(&broker, "alice", "bob", "s2", "这里有敏感词").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("SENSITIVE_CONTENT"))
        );
        send_ws(&mut alice, "bob", "s3", "a clean message 你好")
            .await
            .unwrap();
        // A changed file is picked up without a restart.
        std::fs::write(dir.path().join("words.txt"), "badword\nnewword\n").unwrap();
        let mut refused = false;
        for attempt in 0..40 {
            let (status, body) = send_rest(
                &broker,
                "alice",
                "bob",
                &format!("s-new-{attempt}"),
                "NewWord here",
            )
            .await;
            if status == 400 {
                assert_eq!(body["code"], "SENSITIVE_CONTENT");
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(refused, "{label}: the reloaded list applies");
        let (status, _) = send_rest(&broker, "alice", "bob", "s4", "敏感词 is allowed now").await;
        assert_eq!(
            status, 201,
            "{label}: a word removed from the file no longer matches"
        );
    }
}

#[tokio::test]
async fn sensitive_words_are_masked_with_mask_action() {
    for database in db::all().await {
        let label = database.label;
        let dir = tempfile::tempdir().unwrap();
        let path: &'static str = Box::leak(words_file(&dir, "敏感词\nbad\n").into_boxed_str());
        let broker = TestBroker::start_im(
            &database.url,
            &with(&[
                ("BROKER_MODERATION_WORDS_FILE", path),
                ("BROKER_MODERATION_ACTION", "mask"),
            ]),
        )
        .await;
        let (status, body) = send_rest(&broker, "alice", "bob", "m1", "有敏感词吗? BAD!").await;
        assert_eq!(status, 201, "{label}: {body}");
        assert_eq!(body["content"], "有***吗? ***!", "{label}");
        let (_, page) = broker
            .api(
                "GET",
                "/api/v1/conversations/private_alice_bob/messages",
                "bob",
                None,
            )
            .await;
        assert_eq!(page["items"][0]["content"], "有***吗? ***!", "{label}");
    }
}

#[tokio::test]
async fn rejected_messages_and_reports_ban_a_user_and_an_admin_lifts_it() {
    for database in db::all().await {
        let label = database.label;
        let dir = tempfile::tempdir().unwrap();
        let path: &'static str = Box::leak(words_file(&dir, "spam\n").into_boxed_str());
        let broker = TestBroker::start_im(
            &database.url,
            &with(&[
                ("BROKER_MODERATION_WORDS_FILE", path),
                ("BROKER_MODERATION_BAN_THRESHOLD", "2"),
            ]),
        )
        .await;
        let (status, message) = send_rest(&broker, "alice", "bob", "r0", "hello").await;
        assert_eq!(status, 201);
        // One rejected message and two reports: three offences, more than two.
        let (status, _) = send_rest(&broker, "alice", "bob", "r1", "buy SPAM").await;
        assert_eq!(status, 400);
        let (status, report) = broker
            .api(
                "POST",
                "/api/v1/reports",
                "bob",
                Some(json!({"userId": "alice", "messageId": message["id"], "reason": "rude"})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {report}");
        assert_eq!(report["messageId"], message["id"]);
        let (status, _) = send_rest(&broker, "alice", "bob", "r2", "still here").await;
        assert_eq!(status, 201, "{label}: two offences are not more than two");
        // Carol's report counts once she has received a message from alice.
        let (status, _) = send_rest(&broker, "alice", "carol", "r2c", "hi carol").await;
        assert_eq!(status, 201);
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/reports",
                "carol",
                Some(json!({"userId": "alice", "reason": "spammer"})),
            )
            .await;
        assert_eq!(status, 201);
        let mut alice = broker.im_user("alice").await;
        let error = send_ws(&mut alice, "bob", "r3", "let me in")
            .await
            .unwrap_err();
        assert_eq!(error["code"], "BANNED", "{label}");
        let (status, body) = send_rest(&broker, "alice", "bob", "r4", "hello?").await;
        assert_eq!((status, body["code"].as_str()), (403, Some("BANNED")));

        let (status, _) = broker.api("GET", "/api/v1/admin/bans", "bob", None).await;
        assert_eq!(status, 403, "{label}: admins only");
        let admin = broker.token_with("root", &[Role::Admin], Duration::from_secs(60));
        let (status, bans) = common::im::http_json(
            broker.http_addr(),
            "GET",
            "/api/v1/admin/bans",
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(bans["items"][0]["userId"], "alice", "{label}: {bans}");
        let (status, _) = common::im::http_json(
            broker.http_addr(),
            "DELETE",
            "/api/v1/admin/bans/alice",
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 204);
        send_ws(&mut alice, "bob", "r5", "thanks").await.unwrap();
        let (_, bans) = common::im::http_json(
            broker.http_addr(),
            "GET",
            "/api/v1/admin/bans",
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(bans["items"], json!([]));
        // Bad reports are refused.
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/reports",
                "bob",
                Some(json!({"userId": "bob", "reason": "x"})),
            )
            .await;
        assert_eq!(status, 400);
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/reports",
                "bob",
                Some(json!({"userId": "alice", "reason": ""})),
            )
            .await;
        assert_eq!(status, 400);
    }
}
