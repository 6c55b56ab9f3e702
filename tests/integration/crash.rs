//! Nothing acknowledged is lost when the broker dies mid-way (SIGKILL), on PostgreSQL: a
//! connection with 64 pipelined sends in flight, and a bulk notification cut halfway. After a
//! restart every RECEIPTed send is stored exactly once and in frame order, and a retry with the
//! same `clientMsgId`s completes what was cut without a duplicate.

use std::time::Duration;

use broker::auth::Role;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::cluster::{self, Node};
use crate::common::im::{self, http_raw};
use crate::common::{Client, Received};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// `SELECT count(*) ...` on the database at `url`.
async fn count(url: &str, query: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(url).await.expect("PostgreSQL");
    diesel::sql_query(query)
        .get_result::<Count>(&mut conn)
        .await
        .expect("count")
        .n
}

fn private_send(n: usize) -> Frame {
    Frame::new(Command::Send)
        .header("destination", "/app/private.send")
        .header("content-type", "application/json")
        .header("receipt", format!("r{n}"))
        .body(
            json!({"to": "bob", "clientMsgId": format!("c{n}"), "content": format!("m{n}")})
                .to_string(),
        )
}

/// The contents of `private_alice_bob` in seq order, read as bob over REST; the seqs must be
/// gapless from 1.
async fn stored_contents(node: &Node) -> Vec<String> {
    let token = cluster::token("bob", &[Role::User]);
    let (status, page) = http_raw(
        node.addr,
        "GET",
        "/api/v1/conversations/private_alice_bob/messages?afterSeq=0&limit=100",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    im::contents_in_seq_order(page["items"].as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn receipted_pipelined_sends_survive_a_sigkill_in_frame_order() {
    let db = cluster::database().await;
    let mut node = Node::start_alone("crash-pipeline", &db.url, &[]).await;
    let mut alice = Client::websocket(node.addr, None, &[]).await;
    alice.connect(&cluster::token("alice", &[Role::User])).await;
    for n in 0..64 {
        alice.send(&private_send(n)).await;
    }
    // Killed as soon as the first answer is in: the rest are in flight.
    let mut receipted = Vec::new();
    let first = alice.expect(Command::Receipt).await;
    receipted.push(first.get("receipt-id").unwrap_or_default().to_owned());
    node.kill().await;
    while let Some(Received::Frame(frame)) = alice.receive_within(Duration::from_secs(2)).await {
        if frame.command == Command::Receipt {
            receipted.push(frame.get("receipt-id").unwrap_or_default().to_owned());
        }
    }
    let node = Node::start_alone("crash-pipeline", &db.url, &[]).await;
    let stored = stored_contents(&node).await;
    // A prefix of the frames, in frame order, holding every RECEIPTed one.
    let prefix: Vec<String> = (0..stored.len()).map(|n| format!("m{n}")).collect();
    assert_eq!(stored, prefix, "stored in frame order, without a hole");
    for receipt in &receipted {
        let n: usize = receipt[1..].parse().expect("receipt number");
        assert!(n < stored.len(), "{receipt} was answered but is not stored");
    }
    // The client sends again whatever it has no RECEIPT for: all 64, each stored once.
    let mut alice = Client::websocket(node.addr, None, &[]).await;
    alice.connect(&cluster::token("alice", &[Role::User])).await;
    for n in 0..64 {
        alice.send(&private_send(n)).await;
    }
    for n in 0..64 {
        let receipt = alice.expect(Command::Receipt).await;
        assert_eq!(receipt.get("receipt-id"), Some(format!("r{n}").as_str()));
    }
    let all: Vec<String> = (0..64).map(|n| format!("m{n}")).collect();
    assert_eq!(stored_contents(&node).await, all);
}

#[tokio::test]
async fn a_bulk_notification_cut_halfway_is_completed_by_its_retry() {
    const USERS: i64 = 10_000;
    let db = cluster::database().await;
    // Small notification batches, so that the call is still under way when it is cut.
    let extra = [("BROKER_STORAGE_MAX_BULK_BATCH", "16")];
    let mut node = Node::start_alone("crash-bulk", &db.url, &extra).await;
    let users: Vec<String> = (0..USERS).map(|i| format!("u{i}")).collect();
    let body =
        json!({"userIds": users, "title": "Maintenance", "clientMsgId": "bulk-7"}).to_string();
    let token = cluster::token("backend", &[Role::System]);
    let authorization = format!("Bearer {token}");
    let call = {
        let request = format!(
            "POST /api/v1/notifications HTTP/1.1\r\nHost: {}\r\nAuthorization: {authorization}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            node.addr,
            body.len()
        );
        let addr = node.addr;
        // The answer, if any comes: the connection is cut with the node.
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response).await;
            String::from_utf8_lossy(&response).into_owned()
        })
    };
    let notifications =
        "SELECT count(*) AS n FROM messages WHERE conversation_id LIKE 'system\\_%'";
    let mut cut = 0;
    for _ in 0..2000 {
        cut = count(&db.url, notifications).await;
        if cut > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill().await;
    let answer = call.await.expect("the call task");
    assert!(
        !answer.starts_with("HTTP/1.1 201"),
        "the call was cut before it was answered"
    );
    let cut = count(&db.url, notifications).await.max(cut);
    assert!(cut > 0 && cut < USERS, "cut halfway: {cut} stored");

    let node = Node::start_alone("crash-bulk", &db.url, &extra).await;
    let (status, answer) = http_raw(
        node.addr,
        "POST",
        "/api/v1/notifications",
        &[
            ("Authorization", authorization.as_str()),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let items = answer["items"].as_array().map_or(0, Vec::len);
    assert_eq!(items as i64, USERS);
    assert_eq!(count(&db.url, notifications).await, USERS, "one each");
    assert_eq!(
        count(
            &db.url,
            "SELECT count(DISTINCT conversation_id) AS n FROM messages \
             WHERE conversation_id LIKE 'system\\_%'"
        )
        .await,
        USERS
    );
    assert!(
        answer["items"]
            .as_array()
            .is_some_and(|items| items.iter().all(|m: &Value| m["seq"] == 1))
    );
}
