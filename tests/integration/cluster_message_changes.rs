//! Edits, reactions and pins made on one node reach sessions on the other (two broker
//! processes sharing PostgreSQL and RabbitMQ).

use std::time::Duration;

use crate::common::cluster::{Node, cluster_name, database, token};
use crate::common::im::http_json;
use crate::common::{Client, Received};
use broker::auth::Role;
use serde_json::{Value, json};

/// The next `event:<name>` the client gets within a few seconds; fails without one.
async fn next_event(client: &mut Client, name: &str) -> Value {
    loop {
        let Some(Received::Frame(frame)) = client.receive_within(Duration::from_secs(5)).await
        else {
            panic!("no {name} within 5 s");
        };
        if frame.get("event") == Some(name) {
            return serde_json::from_slice(&frame.body).expect("JSON body");
        }
    }
}

#[tokio::test]
async fn edits_reactions_and_pins_cross_nodes() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let [alice, bob] = ["alice", "bob"].map(|name| format!("{cluster}-{name}"));
    let [alice_token, bob_token] = [&alice, &bob].map(|name| token(name, &[Role::User]));

    // Bob listens on node b; alice acts over REST on node a.
    let mut bob_session = Client::websocket(b.addr, None, &["v12.stomp"]).await;
    bob_session.connect(&bob_token).await;
    for queue in ["messages", "events"] {
        bob_session
            .subscribe(&format!("/user/queue/{queue}"), queue, "auto")
            .await;
    }
    let (status, sent) = http_json(
        a.addr,
        "POST",
        "/api/v1/messages",
        Some(&alice_token),
        Some(json!({"to": bob, "clientMsgId": "x1", "content": "frist"})),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    let id = sent["id"].as_str().unwrap().to_owned();
    next_event(&mut bob_session, "message.new").await;

    let (status, edited) = http_json(
        a.addr,
        "PATCH",
        &format!("/api/v1/messages/{id}"),
        Some(&alice_token),
        Some(json!({"content": "first"})),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    let event = next_event(&mut bob_session, "message.edited").await;
    assert_eq!(
        (event["messageId"].as_str(), &event["content"]),
        (Some(id.as_str()), &json!("first"))
    );

    let (status, _) = http_json(
        a.addr,
        "POST",
        &format!("/api/v1/messages/{id}/reactions"),
        Some(&alice_token),
        Some(json!({"emoji": "👍"})),
    )
    .await;
    assert_eq!(status, 204);
    let event = next_event(&mut bob_session, "message.reactions").await;
    assert_eq!(event["reactions"], json!([{"emoji": "👍", "count": 1}]));
    assert_eq!(event["changes"][0]["userId"], alice.as_str());

    let (status, pins) = http_json(
        a.addr,
        "PUT",
        &format!("/api/v1/messages/{id}/pin"),
        Some(&alice_token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{pins}");
    loop {
        let event = next_event(&mut bob_session, "conversation.updated").await;
        if let Some(pins) = event.get("pins") {
            assert_eq!(pins[0]["message"]["content"], "first");
            break;
        }
    }
}

#[tokio::test]
async fn a_group_resumes_on_one_node_what_was_sent_on_the_other() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let [alice, bob] = ["alice", "bob"].map(|name| format!("{cluster}-{name}"));
    let [alice_token, bob_token] = [&alice, &bob].map(|name| token(name, &[Role::User]));
    let (status, group) = http_json(
        a.addr,
        "POST",
        "/api/v1/groups",
        Some(&alice_token),
        Some(json!({"name": "resume", "memberIds": [bob]})),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let id = group["id"].as_str().unwrap().to_owned();
    let mut recalled = String::new();
    for n in 1..=30 {
        let (status, sent) = http_json(
            a.addr,
            "POST",
            "/api/v1/messages",
            Some(&alice_token),
            Some(json!({"conversationId": id, "clientMsgId": format!("m{n}"), "content": "x"})),
        )
        .await;
        assert_eq!(status, 201, "{sent}");
        if n == 7 {
            recalled = sent["id"].as_str().unwrap().to_owned();
        }
    }
    let (status, _) = http_json(
        a.addr,
        "POST",
        &format!("/api/v1/messages/{recalled}/recall"),
        Some(&alice_token),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Bob comes back on node b, having seen up to seq 5; alice goes on sending on node a.
    let mut bob_session = Client::websocket(b.addr, None, &["v12.stomp"]).await;
    bob_session.connect(&bob_token).await;
    bob_session
        .subscribe_with(
            &format!("/topic/group.{id}"),
            "g",
            &[("ack", "auto"), ("since-seq", "5")],
        )
        .await;
    let (status, _) = http_json(
        a.addr,
        "POST",
        "/api/v1/messages",
        Some(&alice_token),
        Some(json!({"conversationId": id, "clientMsgId": "live", "content": "live"})),
    )
    .await;
    assert_eq!(status, 201);
    let mut seqs = Vec::new();
    while seqs.len() < 26 {
        let message = next_event(&mut bob_session, "message.new").await;
        if message["seq"] == 7 {
            assert_eq!(message["status"], "recalled");
        }
        seqs.push(message["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, (6..=31).collect::<Vec<_>>());
}

#[tokio::test]
async fn private_messages_resume_on_one_node_what_was_sent_on_the_other() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|name| format!("{cluster}-{name}"));
    let [alice_token, bob_token, carol_token] =
        [&alice, &bob, &carol].map(|name| token(name, &[Role::User]));
    let post = |from_token: &str, to: &str, id: String| {
        let (from_token, to) = (from_token.to_owned(), to.to_owned());
        let addr = a.addr;
        async move {
            let (status, sent) = http_json(
                addr,
                "POST",
                "/api/v1/messages",
                Some(&from_token),
                Some(json!({"to": to, "clientMsgId": id, "content": id})),
            )
            .await;
            assert_eq!(status, 201, "{sent}");
            sent
        }
    };
    // The position header of the next message.new, with its body and replay flag.
    async fn next_new(client: &mut Client) -> (Option<i64>, bool, Value) {
        loop {
            let Some(Received::Frame(frame)) = client.receive_within(Duration::from_secs(5)).await
            else {
                panic!("no message.new within 5 s");
            };
            if frame.get("event") == Some("message.new") {
                let position = frame.get("position").map(|p| p.parse::<i64>().unwrap());
                let replay = frame.get("replay") == Some("true");
                return (
                    position,
                    replay,
                    serde_json::from_slice(&frame.body).unwrap(),
                );
            }
        }
    }

    // Bob on node b sees positions 1 and 2 live, sent on node a.
    let mut bob_session = Client::websocket(b.addr, None, &["v12.stomp"]).await;
    bob_session.connect(&bob_token).await;
    bob_session
        .subscribe("/user/queue/messages", "m", "auto")
        .await;
    for n in 1..=2 {
        let sent = post(&alice_token, &bob, format!("pre{n}")).await;
        let (position, replay, message) = next_new(&mut bob_session).await;
        assert_eq!((position, replay), (Some(n), false));
        assert_eq!(message["id"], sent["id"]);
    }
    bob_session.disconnect_quietly().await;

    // Away: 30 from alice and 5 from carol on node a, interleaved; one recalled.
    let mut stored = Vec::new();
    for n in 1..=30 {
        stored.push(post(&alice_token, &bob, format!("m{n}")).await);
        if n % 6 == 0 {
            stored.push(post(&carol_token, &bob, format!("c{n}")).await);
        }
    }
    assert_eq!(stored.len(), 35);
    let recalled = stored[7]["id"].as_str().unwrap().to_owned();
    let (status, _) = http_json(
        a.addr,
        "POST",
        &format!("/api/v1/messages/{recalled}/recall"),
        Some(&alice_token),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Bob comes back on node b from position 2; alice goes on sending on node a.
    let mut bob_session = Client::websocket(b.addr, None, &["v12.stomp"]).await;
    bob_session.connect(&bob_token).await;
    bob_session
        .subscribe_with(
            "/user/queue/messages",
            "m",
            &[("ack", "auto"), ("since-position", "2")],
        )
        .await;
    let live = post(&alice_token, &bob, "live".to_owned()).await;
    let mut got = Vec::new();
    while got.len() < 36 {
        got.push(next_new(&mut bob_session).await);
    }
    assert_eq!(
        got.iter().map(|(p, _, _)| p.unwrap()).collect::<Vec<_>>(),
        (3..=38).collect::<Vec<_>>(),
        "every position after 2, in order"
    );
    let mut expected: Vec<Value> = stored.iter().map(|m| m["id"].clone()).collect();
    expected.push(live["id"].clone());
    assert_eq!(
        got.iter()
            .map(|(_, _, m)| m["id"].clone())
            .collect::<Vec<_>>(),
        expected
    );
    assert!(got[..35].iter().all(|(_, replay, _)| *replay), "replayed");
    assert!(!got[35].1, "the live one is not marked");
    assert_eq!(
        (&got[7].2["status"], &got[7].2["content"]),
        (&json!("recalled"), &json!(""))
    );
    if let Some(Received::Frame(frame)) =
        bob_session.receive_within(Duration::from_millis(500)).await
    {
        assert_ne!(
            frame.get("event"),
            Some("message.new"),
            "a repeat: {frame:?}"
        );
    }
}
