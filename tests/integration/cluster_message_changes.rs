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
