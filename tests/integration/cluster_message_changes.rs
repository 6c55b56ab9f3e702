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
