//! `GET /api/v1/search` over real sockets on every configured backend: CJK substrings of any
//! length, only the caller's conversations, deleted and recalled messages left out, filters,
//! newest first with cursor paging.

use crate::common::{TestBroker, db};
use serde_json::{Value, json};

const LOOSE: [(&str, &str); 3] = [
    ("BROKER_LIMITS_SEND_RATE", "1000/1s"),
    ("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "1000"),
    ("BROKER_LIMITS_STRANGER_RATE", "1000/1s"),
];

async fn send(broker: &TestBroker, from: &str, to: &str, id: &str, content: &str) -> Value {
    let (status, body) = broker
        .api(
            "POST",
            "/api/v1/messages",
            from,
            Some(json!({"to": to, "clientMsgId": id, "content": content})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Every configured backend, and SQLite once more with its trigram index forced: for histories
/// as small as these it would scan them instead.
async fn backends() -> Vec<(db::TestDatabase, bool)> {
    let mut all: Vec<_> = db::all().await.into_iter().map(|d| (d, false)).collect();
    all.push((db::sqlite(), true));
    all
}

async fn search(broker: &TestBroker, user: &str, query: &str) -> (u16, Value) {
    broker
        .api("GET", &format!("/api/v1/search?{query}"), user, None)
        .await
}

fn contents(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn q(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn search_finds_cjk_substrings_in_the_callers_conversations_only() {
    for (database, trigram) in backends().await {
        let label = if trigram {
            "sqlite (trigram)"
        } else {
            database.label
        };
        let broker = TestBroker::start_im(&database.url, &LOOSE).await;
        if trigram {
            broker
                .server
                .im()
                .expect("the IM layer")
                .store()
                .set_search_scan_limit(-1);
        }
        let dinner = send(&broker, "alice", "bob", "m1", "今天晚上一起吃饭吗").await;
        send(&broker, "bob", "alice", "m2", "好的，一起吃饭").await;
        send(&broker, "alice", "carol", "m3", "明天一起吃饭").await;
        send(&broker, "dave", "erin", "m4", "我们一起吃饭吧").await;
        send(&broker, "alice", "bob", "m5", "Hello World 100%").await;

        // Four characters: the trigram path.
        let (status, page) = search(&broker, "alice", &format!("q={}", q("一起吃饭"))).await;
        assert_eq!(status, 200, "{label}: {page}");
        assert_eq!(
            contents(&page),
            vec!["明天一起吃饭", "好的，一起吃饭", "今天晚上一起吃饭吗"],
            "{label}: newest first, dave's conversation is not alice's"
        );
        // One and two characters: the fallback scan.
        let (_, page) = search(&broker, "alice", &format!("q={}", q("吃饭"))).await;
        assert_eq!(contents(&page).len(), 3, "{label}: {page}");
        let (_, page) = search(&broker, "bob", &format!("q={}", q("饭"))).await;
        assert_eq!(contents(&page).len(), 2, "{label}: {page}");
        // Case-insensitive ASCII, and LIKE wildcards are literal.
        let (_, page) = search(&broker, "bob", "q=hello%20world").await;
        assert_eq!(contents(&page), vec!["Hello World 100%"], "{label}");
        let (_, page) = search(&broker, "bob", &format!("q={}", q("0%"))).await;
        assert_eq!(contents(&page).len(), 1, "{label}");
        let (_, page) = search(&broker, "bob", &format!("q={}", q("%"))).await;
        assert_eq!(contents(&page).len(), 1, "{label}: % matches itself only");

        // One conversation.
        let (_, page) = search(
            &broker,
            "alice",
            &format!("q={}&conversationId=private_alice_carol", q("一起")),
        )
        .await;
        assert_eq!(contents(&page), vec!["明天一起吃饭"], "{label}");
        let (status, _) = search(
            &broker,
            "alice",
            &format!("q={}&conversationId=private_dave_erin", q("一起")),
        )
        .await;
        assert_eq!(status, 404, "{label}: not a member, as if it did not exist");

        // Deleted for the caller, and recalled.
        let id = dinner["id"].as_str().unwrap();
        let (status, _) = broker
            .api("DELETE", &format!("/api/v1/messages/{id}"), "bob", None)
            .await;
        assert_eq!(status, 204);
        let (_, page) = search(&broker, "bob", &format!("q={}", q("一起吃饭"))).await;
        assert_eq!(contents(&page), vec!["好的，一起吃饭"], "{label}");
        let (_, page) = search(&broker, "alice", &format!("q={}", q("一起吃饭"))).await;
        assert_eq!(contents(&page).len(), 3, "{label}: deleted for bob only");
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/messages/{id}/recall"),
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (_, page) = search(&broker, "alice", &format!("q={}", q("一起吃饭"))).await;
        assert_eq!(contents(&page).len(), 2, "{label}: recalled is gone");

        // Bad input.
        let (status, _) = search(&broker, "alice", "q=").await;
        assert_eq!(status, 400);
        let (status, _) = search(&broker, "alice", "q=a&limit=0").await;
        assert_eq!(status, 400);
        let (status, _) = search(&broker, "alice", "q=a&format=gif").await;
        assert_eq!(status, 400);
        let (status, _) = search(&broker, "alice", "q=a&cursor=x").await;
        assert_eq!(status, 400);
    }
}

#[tokio::test]
async fn search_pages_newest_first_and_filters_by_time() {
    for (database, trigram) in backends().await {
        let label = if trigram {
            "sqlite (trigram)"
        } else {
            database.label
        };
        let broker = TestBroker::start_im(&database.url, &LOOSE).await;
        if trigram {
            broker
                .server
                .im()
                .expect("the IM layer")
                .store()
                .set_search_scan_limit(-1);
        }
        let mut created = Vec::new();
        for i in 0..7 {
            let message = send(
                &broker,
                "alice",
                "bob",
                &format!("p{i}"),
                &format!("第{i}条消息 note"),
            )
            .await;
            created.push(message["createdAt"].as_i64().unwrap());
        }
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = search(
                &broker,
                "bob",
                &format!("q={}&limit=3&cursor={cursor}", q("条消息")),
            )
            .await;
            assert_eq!(status, 200, "{label}: {page}");
            seen.extend(contents(&page));
            match page["nextCursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
        }
        let expected: Vec<String> = (0..7).rev().map(|i| format!("第{i}条消息 note")).collect();
        assert_eq!(seen, expected, "{label}");
        let (_, page) = search(
            &broker,
            "bob",
            &format!("q=note&from={}&to={}", created[2], created[4] + 1),
        )
        .await;
        let found = contents(&page);
        assert!(
            found.contains(&"第2条消息 note".to_owned()),
            "{label}: {found:?}"
        );
        assert!(
            found.contains(&"第4条消息 note".to_owned()),
            "{label}: {found:?}"
        );
        assert!(
            !found.contains(&"第6条消息 note".to_owned()),
            "{label}: {found:?}"
        );
        let (_, page) = search(&broker, "bob", "q=note&format=image").await;
        assert_eq!(contents(&page).len(), 0);
        let (_, page) = search(&broker, "bob", "q=note&format=text&limit=100").await;
        assert_eq!(contents(&page).len(), 7);
    }
}
