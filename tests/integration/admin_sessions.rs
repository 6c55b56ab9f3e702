//! Operator controls (role `admin`): a user's sessions listed and closed with a reason, on one
//! node and across two.

use std::time::Duration;

use crate::common::cluster::{Node, cluster_name, database, token};
use crate::common::im::{self, http_json};
use crate::common::{Client, db};
use broker::auth::Role;
use serde_json::{Value, json};
use stomp_codec::Command;

async fn sessions(addr: std::net::SocketAddr, admin: &str, user: &str) -> Vec<Value> {
    let (status, body) = http_json(
        addr,
        "GET",
        &format!("/api/v1/admin/users/{user}/sessions"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap()
}

#[tokio::test]
async fn an_admin_lists_a_users_sessions_and_closes_them_with_a_reason() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[]).await;
    let admin = broker.token_with("root", &[Role::Admin], Duration::from_secs(60));
    let mut phone = broker.im_user("alice").await;
    let mut laptop = broker.ws("alice").await;
    let listed = sessions(broker.http_addr(), &admin, "alice").await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let phone_entry = listed
        .iter()
        .find(|s| s["subscriptions"] == 4)
        .expect("the session with four subscriptions");
    assert_eq!(phone_entry["transport"], "websocket");
    assert!(
        phone_entry["remoteAddress"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{phone_entry}"
    );
    assert!(phone_entry["connectedAt"].as_i64().unwrap() > 0);

    // One session, by name: it gets an ERROR with the reason; the other stays open.
    let name = phone_entry["session"].as_str().unwrap();
    let (status, body) = http_json(
        broker.http_addr(),
        "DELETE",
        &format!("/api/v1/admin/users/alice/sessions/{name}"),
        Some(&admin),
        Some(json!({"reason": "lost phone"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let error = phone.expect(Command::Error).await;
    assert_eq!(error.get("message"), Some("closed by an administrator"));
    assert_eq!(&error.body[..], b"lost phone");
    phone.expect_closed().await;
    im::quiet(&mut laptop).await;

    // Everything else: not admins, unknown sessions.
    let user = broker.token("bob");
    let (status, _) = http_json(
        broker.http_addr(),
        "GET",
        "/api/v1/admin/users/alice/sessions",
        Some(&user),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = http_json(
        broker.http_addr(),
        "DELETE",
        "/api/v1/admin/users/alice/sessions/no-such",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // All of them.
    let (status, body) = http_json(
        broker.http_addr(),
        "DELETE",
        "/api/v1/admin/users/alice/sessions",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "{body}");
    let error = laptop.expect(Command::Error).await;
    assert_eq!(&error.body[..], b"closed by an administrator");
    let listed = im::eventually("no session left", || async {
        sessions(broker.http_addr(), &admin, "alice")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let () = listed;
}

#[tokio::test]
async fn sessions_on_every_node_are_listed_and_closed_from_one() {
    let cluster = cluster_name();
    let db = database().await;
    let a = Node::start(&cluster, "a", &db.url, &[]).await;
    let b = Node::start(&cluster, "b", &db.url, &[]).await;
    let alice = format!("{cluster}-alice");
    let admin = token("root", &[Role::Admin]);
    let mut clients = Vec::new();
    for node in [&a, &b] {
        let mut client = Client::websocket(node.addr, None, &["v12.stomp"]).await;
        client.connect(&token(&alice, &[Role::User])).await;
        clients.push(client);
    }
    let listed = sessions(a.addr, &admin, &alice).await;
    let mut nodes: Vec<&str> = listed.iter().map(|s| s["node"].as_str().unwrap()).collect();
    nodes.sort_unstable();
    assert_eq!(nodes.len(), 2, "{listed:?}");
    assert_ne!(nodes[0], nodes[1], "{listed:?}");

    let (status, body) = http_json(
        a.addr,
        "DELETE",
        &format!("/api/v1/admin/users/{alice}/sessions"),
        Some(&admin),
        Some(json!({"reason": "account suspended"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for client in &mut clients {
        let error = client.expect(Command::Error).await;
        assert_eq!(&error.body[..], b"account suspended");
    }
}
