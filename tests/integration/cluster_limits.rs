//! The send and stranger rates of a cluster counted in Redis, so that a user cannot double them
//! by spreading sends over nodes, and so are the rates of other actions; and each node's own
//! limiter when its Redis stops answering.

use crate::common;

use std::net::SocketAddr;

use crate::common::cluster::{Node, cluster_name, database, redis_url, token};
use broker::auth::Role;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Sends a private message over REST; the status and the answer.
async fn send(node: &Node, from: &str, to: &str, id: &str) -> (u16, Value) {
    common::im::http_json(
        node.addr,
        "POST",
        "/api/v1/messages",
        Some(&token(from, &[Role::User])),
        Some(json!({"to": to, "clientMsgId": id, "content": id})),
    )
    .await
}

async fn fallbacks(node: &Node) -> f64 {
    let (status, text) = common::http_get(node.addr, "/metrics").await;
    assert_eq!(status, 200);
    common::metric_value(&text, "broker_rate_limit_fallbacks_total").unwrap_or(0.0)
}

#[tokio::test]
async fn the_send_rate_counts_a_users_sends_on_every_node_together() {
    let cluster = cluster_name();
    let db = database().await;
    let limits = [("BROKER_LIMITS_SEND_RATE", "4/1m")];
    let a = Node::start(&cluster, "a", &db.url, &limits).await;
    let b = Node::start(&cluster, "b", &db.url, &limits).await;
    let alice = format!("{cluster}-alice");
    let bob = format!("{cluster}-bob");
    for i in 0..4 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (status, answer) = send(node, &alice, &bob, &format!("s-{i}")).await;
        assert_eq!(status, 201, "send {i} on {}: {answer}", node.id);
    }
    // Two on each node: a per-node count would allow four more.
    for (i, node) in [(4, &a), (5, &b)] {
        let (status, answer) = send(node, &alice, &bob, &format!("s-{i}")).await;
        assert_eq!(status, 429, "send {i} on {}: {answer}", node.id);
        assert_eq!(answer["code"], "RATE_LIMITED", "{answer}");
    }
    // Counted per user: bob is not limited by alice's sends.
    let (status, answer) = send(&b, &bob, &alice, "reply").await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(fallbacks(&a).await, 0.0);
    assert_eq!(fallbacks(&b).await, 0.0);
}

#[tokio::test]
async fn the_stranger_rate_counts_messages_to_strangers_on_every_node_together() {
    let cluster = cluster_name();
    let db = database().await;
    let limits = [
        ("BROKER_LIMITS_STRANGER_RATE", "3/1m"),
        ("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "100"),
    ];
    let a = Node::start(&cluster, "a", &db.url, &limits).await;
    let b = Node::start(&cluster, "b", &db.url, &limits).await;
    let alice = format!("{cluster}-alice");
    for i in 0..3 {
        let node = if i % 2 == 0 { &a } else { &b };
        let stranger = format!("{cluster}-stranger{i}");
        let (status, answer) = send(node, &alice, &stranger, &format!("hi-{i}")).await;
        assert_eq!(status, 201, "message {i} on {}: {answer}", node.id);
    }
    for (i, node) in [(3, &b), (4, &a)] {
        let stranger = format!("{cluster}-stranger{i}");
        let (status, answer) = send(node, &alice, &stranger, &format!("hi-{i}")).await;
        assert_eq!(status, 429, "message {i} on {}: {answer}", node.id);
        assert_eq!(answer["code"], "STRANGER_LIMIT", "{answer}");
    }
    // The send rate is not what stopped them: a message to someone who replied still passes.
    let friend = format!("{cluster}-stranger0");
    let (status, answer) = send(&a, &friend, &alice, "reply").await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = send(&b, &alice, &friend, "thanks").await;
    assert_eq!(status, 201, "{answer}");
}

/// A REST call as `user` on `node`.
async fn call(node: &Node, user: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    common::im::http_json(
        node.addr,
        method,
        path,
        Some(&token(user, &[Role::User])),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn the_rates_of_other_actions_count_a_users_actions_on_every_node_together() {
    let cluster = cluster_name();
    let db = database().await;
    let limits = [
        ("BROKER_LIMITS_GROUP_CREATE_RATE", "2/1m"),
        ("BROKER_LIMITS_CONVERSATION_CREATE_RATE", "2/1m"),
        ("BROKER_LIMITS_REPORT_RATE", "2/1m"),
    ];
    let a = Node::start(&cluster, "a", &db.url, &limits).await;
    let b = Node::start(&cluster, "b", &db.url, &limits).await;
    let alice = format!("{cluster}-alice");
    let user = |i: usize| format!("{cluster}-u{i}");
    // One of each action on each node: a per-node count would allow one more everywhere.
    for (i, node) in [&a, &b].into_iter().enumerate() {
        let (status, answer) = call(
            node,
            &alice,
            "POST",
            "/api/v1/groups",
            json!({"name": format!("g{i}"), "memberIds": []}),
        )
        .await;
        assert_eq!(status, 201, "group {i} on {}: {answer}", node.id);
        let (status, answer) = call(
            node,
            &alice,
            "POST",
            "/api/v1/conversations/private",
            json!({"peerId": user(i)}),
        )
        .await;
        assert_eq!(status, 200, "conversation {i} on {}: {answer}", node.id);
        let (status, answer) = call(
            node,
            &alice,
            "POST",
            "/api/v1/reports",
            json!({"userId": user(i), "reason": "spam"}),
        )
        .await;
        assert_eq!(status, 201, "report {i} on {}: {answer}", node.id);
    }
    for node in [&a, &b] {
        for (path, body) in [
            ("/api/v1/groups", json!({"name": "g", "memberIds": []})),
            ("/api/v1/conversations/private", json!({"peerId": user(9)})),
            (
                "/api/v1/reports",
                json!({"userId": user(9), "reason": "spam"}),
            ),
        ] {
            let (status, answer) = call(node, &alice, "POST", path, body).await;
            assert_eq!(status, 429, "{path} on {}: {answer}", node.id);
            assert_eq!(answer["code"], "RATE_LIMITED", "{answer}");
        }
    }
    // Counted per user and per action: another user still may, and alice may still send.
    let (status, answer) = call(
        &b,
        &user(0),
        "POST",
        "/api/v1/groups",
        json!({"name": "theirs", "memberIds": []}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = send(&a, &alice, &user(0), "still-sends").await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(fallbacks(&a).await, 0.0);
    assert_eq!(fallbacks(&b).await, 0.0);
}

/// Sends on `node` until the answer's status is `status`, for at most 30 s (nodes reload the
/// bans in force every 10 s).
async fn eventually_sends(node: &Node, from: &str, to: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    for attempt in 0.. {
        let (got, answer) = send(node, from, to, &format!("try-{status}-{attempt}")).await;
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {got} on {}: {answer}",
            node.id
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_ban_made_or_lifted_on_one_node_applies_on_every_node() {
    let cluster = cluster_name();
    let db = database().await;
    let rules = [
        ("BROKER_MODERATION_BAN_THRESHOLD", "1"),
        ("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "100"),
        ("BROKER_LIMITS_SEND_RATE", "1000/1s"),
    ];
    let a = Node::start(&cluster, "a", &db.url, &rules).await;
    let b = Node::start(&cluster, "b", &db.url, &rules).await;
    let alice = format!("{cluster}-alice");
    for reporter in ["r1", "r2"] {
        let reporter = format!("{cluster}-{reporter}");
        let (status, answer) = send(&b, &alice, &reporter, &format!("to-{reporter}")).await;
        assert_eq!(status, 201, "{answer}");
        let (status, answer) = call(
            &a,
            &reporter,
            "POST",
            "/api/v1/reports",
            json!({"userId": alice, "reason": "abuse"}),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    let friend = format!("{cluster}-r1");
    let (status, answer) = send(&a, &alice, &friend, "on-a").await;
    assert_eq!((status, answer["code"].as_str()), (403, Some("BANNED")));
    eventually_sends(&b, &alice, &friend, 403).await;

    let admin = token("root", &[Role::Admin]);
    let (status, answer) = common::im::http_json(
        b.addr,
        "DELETE",
        &format!("/api/v1/admin/bans/{alice}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 204, "{answer}");
    let (status, answer) = send(&b, &alice, &friend, "lifted-on-b").await;
    assert_eq!(status, 201, "{answer}");
    eventually_sends(&a, &alice, &friend, 201).await;
}

/// A TCP proxy in front of the test Redis that can be cut: its connections are dropped and its
/// port closed, so that a node started through it finds Redis gone.
struct RedisProxy {
    url: String,
    cut: CancellationToken,
}

impl RedisProxy {
    async fn start() -> RedisProxy {
        let real = redis_url();
        let rest = real
            .strip_prefix("redis://")
            .expect("a redis:// URL for the test Redis");
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (format!("{credentials}@"), rest),
            None => (String::new(), rest),
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream = host.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let cut = CancellationToken::new();
        let token = cut.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let upstream = upstream.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        let path = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        RedisProxy {
            url: format!("redis://{credentials}{addr}{path}"),
            cut,
        }
    }
}

#[tokio::test]
async fn a_node_that_loses_redis_falls_back_to_its_own_limits_and_counts_it() {
    let cluster = cluster_name();
    let db = database().await;
    let proxy = RedisProxy::start().await;
    let a = Node::start(
        &cluster,
        "a",
        &db.url,
        &[
            ("BROKER_LIMITS_SEND_RATE", "4/1m"),
            ("BROKER_PRESENCE_REDIS_URL", proxy.url.as_str()),
        ],
    )
    .await;
    let b = Node::start(
        &cluster,
        "b",
        &db.url,
        &[("BROKER_LIMITS_SEND_RATE", "4/1m")],
    )
    .await;
    let alice = format!("{cluster}-alice");
    let bob = format!("{cluster}-bob");
    let (status, answer) = send(&a, &alice, &bob, "through-redis").await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(fallbacks(&a).await, 0.0);

    proxy.cut.cancel();
    // Node a counts alone now; it already gave one of the four to Redis, so it allows four
    // more of its own and refuses the fifth.
    for i in 0..4 {
        let (status, answer) = send(&a, &alice, &bob, &format!("alone-{i}")).await;
        assert_eq!(status, 201, "send {i} without Redis: {answer}");
    }
    let (status, answer) = send(&a, &alice, &bob, "alone-4").await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["code"], "RATE_LIMITED", "{answer}");
    assert!(
        fallbacks(&a).await >= 5.0,
        "every check without Redis is counted"
    );
    // Node b still counts in Redis, where only the first send was recorded.
    for i in 0..3 {
        let (status, answer) = send(&b, &alice, &bob, &format!("via-b-{i}")).await;
        assert_eq!(status, 201, "send {i} on b: {answer}");
    }
    let (status, answer) = send(&b, &alice, &bob, "via-b-3").await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(fallbacks(&b).await, 0.0);
}
