//! Offline push (contract 5.11) against a small HTTP receiver started here: who gets a push
//! (offline, with a device, not muted), the webhook's signature, Gorush's format, retries, the
//! per-user rate and the device list.

use std::time::Duration;

use crate::common::im;
use crate::common::{TestBroker, db};
use broker::auth::Role;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request the receiver got: its path, headers (lowercase names) and JSON body.
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    raw: Vec<u8>,
    body: Value,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 receiver on a free port that answers 500 to its first `failures` requests and
/// 200 to the rest; returns its base URL and the requests as they come.
async fn receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(failures));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let mut headers = Vec::new();
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).await.unwrap_or(0);
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            headers
                                .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                        }
                    }
                    let length: usize = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).await.expect("body");
                    let fail = failures
                        .fetch_update(
                            std::sync::atomic::Ordering::SeqCst,
                            std::sync::atomic::Ordering::SeqCst,
                            |n| n.checked_sub(1),
                        )
                        .is_ok();
                    let status = if fail {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let _ = tx.send(Request {
                        path,
                        headers,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        raw: body,
                    });
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if reader.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

async fn device(broker: &TestBroker, user: &str, token: &str, platform: &str) -> u16 {
    broker
        .api(
            "POST",
            "/api/v1/devices",
            user,
            Some(json!({"token": token, "platform": platform})),
        )
        .await
        .0
}

async fn say(broker: &TestBroker, from: &str, body: Value) {
    let (status, answer) = broker
        .api("POST", "/api/v1/messages", from, Some(body))
        .await;
    assert_eq!(status, 201, "{answer}");
}

/// The next request within `wait`, if any.
async fn next(requests: &mut mpsc::UnboundedReceiver<Request>, wait: Duration) -> Option<Request> {
    tokio::time::timeout(wait, requests.recv())
        .await
        .ok()
        .flatten()
}

/// Every push of the requests that come within `wait`.
async fn pushes(requests: &mut mpsc::UnboundedReceiver<Request>, wait: Duration) -> Vec<Value> {
    let mut all = Vec::new();
    while let Some(request) = next(requests, wait).await {
        all.extend(
            request.body["pushes"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    all
}

#[tokio::test]
async fn offline_users_with_devices_get_signed_pushes_unless_muted() {
    for database in db::all().await {
        let (url, mut requests) = receiver(0).await;
        let broker = im::broker(
            &database.url,
            &[
                ("BROKER_PUSH_PROVIDER", "webhook"),
                ("BROKER_PUSH_URL", &format!("{url}/hook")),
                ("BROKER_PUSH_SECRET", "s3cret"),
            ],
        )
        .await;
        let label = &database.label;
        assert_eq!(device(&broker, "bob", "tok-bob", "web").await, 201);
        say(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": "m1", "content": "are you there?"}),
        )
        .await;
        let request = next(&mut requests, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{label}: no push for offline bob"));
        assert_eq!(request.path, "/hook");
        let expected = format!(
            "sha256={}",
            broker::im::push::hmac_hex(b"s3cret", &request.raw)
        );
        assert_eq!(
            request.header("x-broker-signature"),
            Some(expected.as_str()),
            "{label}"
        );
        let push = &request.body["pushes"][0];
        assert_eq!(push["userId"], "bob", "{label}: {push}");
        assert_eq!(push["devices"][0]["token"], "tok-bob");
        assert_eq!(push["body"], "are you there?");
        assert_eq!(push["title"], "alice");

        // Online: no push.
        let _bob = broker.im_user("bob").await;
        say(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": "m2", "content": "hi"}),
        )
        .await;
        drop(_bob);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Muted: no push.
        broker
            .api(
                "PATCH",
                "/api/v1/conversations/private_alice_bob/settings",
                "bob",
                Some(json!({"muted": true})),
            )
            .await;
        say(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": "m3", "content": "hello?"}),
        )
        .await;
        // A group message and a notification reach offline carol and dave.
        assert_eq!(device(&broker, "carol", "tok-carol", "android").await, 201);
        assert_eq!(device(&broker, "dave", "tok-dave", "ios").await, 201);
        let group = im::create_group(&broker, "alice", "g", &["carol"]).await;
        say(
            &broker,
            "alice",
            json!({"conversationId": group, "clientMsgId": "g1", "content": "lunch"}),
        )
        .await;
        let (status, _) = broker
            .api_system(
                "POST",
                "/api/v1/notifications",
                "ops",
                Some(json!({"userIds": ["dave"], "title": "Order", "content": "shipped"})),
            )
            .await;
        assert_eq!(status, 201, "{label}");
        let pushed = pushes(&mut requests, Duration::from_millis(1500)).await;
        let mut who: Vec<(String, String)> = pushed
            .iter()
            .map(|p| {
                (
                    p["userId"].as_str().unwrap().to_owned(),
                    p["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        who.sort();
        assert_eq!(
            who,
            [
                ("carol".to_owned(), "lunch".to_owned()),
                ("dave".to_owned(), "Order\nshipped".to_owned())
            ],
            "{label}: no push to bob while online or muted"
        );
        let (_, metrics) = crate::common::http_get(broker.http_addr(), "/metrics").await;
        assert!(
            crate::common::metric_value(&metrics, "broker_push_sent_total").unwrap_or(0.0) >= 3.0,
            "{label}"
        );
    }
}

#[tokio::test]
async fn gorush_gets_its_format_and_failed_requests_are_retried() {
    let database = db::sqlite();
    let (url, mut requests) = receiver(2).await;
    let broker = im::broker(
        &database.url,
        &[
            ("BROKER_PUSH_PROVIDER", "gorush"),
            ("BROKER_PUSH_URL", &url),
            ("BROKER_PUSH_ATTEMPTS", "3"),
        ],
    )
    .await;
    device(&broker, "bob", "ios-token", "ios").await;
    device(&broker, "bob", "web-token", "web").await;
    say(
        &broker,
        "alice",
        json!({"to": "bob", "clientMsgId": "m1", "content": "ping"}),
    )
    .await;
    let mut seen = Vec::new();
    while let Some(request) = next(&mut requests, Duration::from_secs(3)).await {
        seen.push(request);
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "two refusals, then the third try");
    let last = &seen[2];
    assert_eq!(last.path, "/api/push");
    let notification = &last.body["notifications"][0];
    assert_eq!(
        notification["tokens"],
        json!(["ios-token"]),
        "web tokens do not go to Gorush"
    );
    assert_eq!(notification["platform"], 1);
    assert_eq!(notification["message"], "ping");
    assert_eq!(last.body["notifications"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_busy_conversation_pushes_each_user_at_most_their_rate() {
    let database = db::sqlite();
    let (url, mut requests) = receiver(0).await;
    let broker = im::broker(
        &database.url,
        &[
            ("BROKER_PUSH_PROVIDER", "webhook"),
            ("BROKER_PUSH_URL", &url),
            ("BROKER_PUSH_USER_RATE", "2/1m"),
        ],
    )
    .await;
    device(&broker, "bob", "t", "android").await;
    for n in 0..6 {
        say(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": format!("m{n}"), "content": "x"}),
        )
        .await;
    }
    assert_eq!(
        pushes(&mut requests, Duration::from_millis(1500))
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn devices_are_checked_bounded_and_removed() {
    let database = db::sqlite();
    let (url, mut requests) = receiver(0).await;
    let broker = im::broker(
        &database.url,
        &[
            ("BROKER_PUSH_PROVIDER", "webhook"),
            ("BROKER_PUSH_URL", &url),
            ("BROKER_PUSH_MAX_DEVICES", "2"),
        ],
    )
    .await;
    assert_eq!(device(&broker, "bob", "t", "fax").await, 400);
    assert_eq!(device(&broker, "bob", "", "ios").await, 400);
    for token in ["t1", "t2", "t3"] {
        assert_eq!(device(&broker, "bob", token, "ios").await, 201);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, _) = broker
        .api("DELETE", "/api/v1/devices/t3", "bob", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = broker
        .api("DELETE", "/api/v1/devices/t1", "bob", None)
        .await;
    assert_eq!(status, 404, "t1 was forgotten when t3 came");
    say(
        &broker,
        "alice",
        json!({"to": "bob", "clientMsgId": "m", "content": "x"}),
    )
    .await;
    let pushed = pushes(&mut requests, Duration::from_millis(1500)).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        pushed[0]["devices"],
        json!([{"platform": "ios", "token": "t2"}])
    );
    // A system identity's device is its own too.
    let token = broker.token_with("ops", &[Role::System], Duration::from_secs(60));
    let (status, _) = im::api_in_process(
        &broker.server,
        "POST",
        "/api/v1/devices",
        Some(&token),
        Some(json!({"token": "x", "platform": "web"})),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_mention_reaches_a_member_who_muted_the_group() {
    for database in db::all().await {
        let (url, mut requests) = receiver(0).await;
        let broker = im::broker(
            &database.url,
            &[
                ("BROKER_PUSH_PROVIDER", "webhook"),
                ("BROKER_PUSH_URL", &format!("{url}/hook")),
                ("BROKER_PUSH_SECRET", "s3cret"),
            ],
        )
        .await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "g", &["carol", "dave"]).await;
        for user in ["carol", "dave"] {
            assert_eq!(
                device(&broker, user, &format!("tok-{user}"), "web").await,
                201
            );
            let (status, _) = broker
                .api(
                    "PATCH",
                    &format!("/api/v1/conversations/{group}/settings"),
                    user,
                    Some(json!({"muted": true})),
                )
                .await;
            assert_eq!(status, 200, "{label}");
        }
        for (id, extra) in [
            ("plain", json!({})),
            ("named", json!({"mentions": ["carol"]})),
            ("all", json!({"mentionAll": true})),
        ] {
            let mut body = json!({"conversationId": group, "clientMsgId": id, "content": id});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            say(&broker, "alice", body).await;
        }
        let pushed = pushes(&mut requests, Duration::from_millis(1500)).await;
        let mut who: Vec<(String, String)> = pushed
            .iter()
            .map(|p| {
                (
                    p["userId"].as_str().unwrap().to_owned(),
                    p["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        who.sort();
        let pair = |u: &str, b: &str| (u.to_owned(), b.to_owned());
        assert_eq!(
            who,
            [
                pair("carol", "all"),
                pair("carol", "named"),
                pair("dave", "all")
            ],
            "{label}: muted members get only what mentions them"
        );
    }
}
