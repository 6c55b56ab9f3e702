//! BEGIN / COMMIT / ABORT covering SEND, ACK and NACK.

use std::time::Duration;

use crate::common::{Client, TestBroker};
use stomp_codec::{Command, Frame};

fn send_in(tx: &str, destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination)
        .header("transaction", tx)
        .body(body.to_owned())
}

async fn begin(client: &mut Client, tx: &str) {
    client
        .request(
            Frame::new(Command::Begin).header("transaction", tx),
            &format!("begin-{tx}"),
        )
        .await;
}

async fn pair(broker: &TestBroker) -> (Client, Client) {
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "auto").await;
    let backend = broker.ws_system("backend").await;
    (alice, backend)
}

#[tokio::test]
async fn sends_in_a_transaction_are_delivered_in_order_only_at_commit() {
    let broker = TestBroker::start().await;
    let (mut alice, mut backend) = pair(&broker).await;
    begin(&mut backend, "tx").await;
    for (i, body) in ["one", "two", "three"].into_iter().enumerate() {
        backend
            .request(
                send_in("tx", "/topic/announcements", body),
                &format!("held-{i}"),
            )
            .await;
    }
    alice.expect_nothing(Duration::from_millis(200)).await;
    backend
        .request(Frame::new(Command::Commit).header("transaction", "tx"), "c")
        .await;
    assert_eq!(alice.bodies(3).await, ["one", "two", "three"]);
}

#[tokio::test]
async fn abort_discards_the_sends() {
    let broker = TestBroker::start().await;
    let (mut alice, mut backend) = pair(&broker).await;
    begin(&mut backend, "tx").await;
    backend
        .send(&send_in("tx", "/topic/announcements", "never"))
        .await;
    backend
        .request(Frame::new(Command::Abort).header("transaction", "tx"), "a")
        .await;
    backend
        .send_with_receipt("/topic/announcements", "after", "p")
        .await;
    assert_eq!(alice.message().await.1, "after");
    alice.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn sends_outside_the_transaction_are_not_held() {
    let broker = TestBroker::start().await;
    let (mut alice, mut backend) = pair(&broker).await;
    begin(&mut backend, "tx").await;
    backend
        .send(&send_in("tx", "/topic/announcements", "held"))
        .await;
    backend
        .send_with_receipt("/topic/announcements", "direct", "p")
        .await;
    assert_eq!(alice.message().await.1, "direct");
    backend
        .request(Frame::new(Command::Commit).header("transaction", "tx"), "c")
        .await;
    assert_eq!(alice.message().await.1, "held");
}

#[tokio::test]
async fn two_transactions_are_independent() {
    let broker = TestBroker::start().await;
    let (mut alice, mut backend) = pair(&broker).await;
    begin(&mut backend, "a").await;
    begin(&mut backend, "b").await;
    backend
        .send(&send_in("a", "/topic/announcements", "from a"))
        .await;
    backend
        .send(&send_in("b", "/topic/announcements", "from b"))
        .await;
    backend
        .request(Frame::new(Command::Commit).header("transaction", "b"), "cb")
        .await;
    assert_eq!(alice.message().await.1, "from b");
    backend
        .request(Frame::new(Command::Abort).header("transaction", "a"), "aa")
        .await;
    alice.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn ack_inside_a_transaction_takes_effect_at_commit() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut worker = broker.ws_system("worker").await;
    worker
        .subscribe("/queue/jobs", "s", "client-individual")
        .await;
    producer.send_with_receipt("/queue/jobs", "job", "p").await;
    let (message, _) = worker.message().await;
    begin(&mut worker, "tx").await;
    worker
        .request(
            Frame::new(Command::Ack)
                .header("id", message.get("ack").unwrap())
                .header("transaction", "tx"),
            "held-ack",
        )
        .await;
    worker
        .request(Frame::new(Command::Commit).header("transaction", "tx"), "c")
        .await;
    worker.disconnect().await;
    let mut next = broker.ws_system("worker").await;
    next.subscribe("/queue/jobs", "s", "client-individual")
        .await;
    next.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn aborted_ack_leaves_the_message_unacknowledged() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut worker = broker.ws_system("worker").await;
    worker
        .subscribe("/queue/jobs", "s", "client-individual")
        .await;
    producer.send_with_receipt("/queue/jobs", "job", "p").await;
    let (message, _) = worker.message().await;
    begin(&mut worker, "tx").await;
    worker
        .send(
            &Frame::new(Command::Ack)
                .header("id", message.get("ack").unwrap())
                .header("transaction", "tx"),
        )
        .await;
    worker
        .request(Frame::new(Command::Abort).header("transaction", "tx"), "a")
        .await;
    worker.disconnect().await;
    let mut next = broker.ws_system("worker").await;
    next.send(
        &Frame::new(Command::Subscribe)
            .header("destination", "/queue/jobs")
            .header("id", "s")
            .header("ack", "client-individual"),
    )
    .await;
    let (again, body) = next.message().await;
    assert_eq!(body, "job");
    assert_eq!(again.get("redelivered"), Some("true"));
}

#[tokio::test]
async fn nack_inside_a_transaction_redelivers_at_commit() {
    let broker = TestBroker::start().await;
    let mut producer = broker.ws_system("producer").await;
    let mut worker = broker.ws_system("worker").await;
    worker
        .subscribe("/queue/jobs", "s", "client-individual")
        .await;
    producer.send_with_receipt("/queue/jobs", "job", "p").await;
    let (message, _) = worker.message().await;
    let mut other = broker.ws_system("worker").await;
    other
        .subscribe("/queue/jobs", "s", "client-individual")
        .await;
    begin(&mut worker, "tx").await;
    worker
        .request(
            Frame::new(Command::Nack)
                .header("id", message.get("ack").unwrap())
                .header("transaction", "tx"),
            "held-nack",
        )
        .await;
    other.expect_nothing(Duration::from_millis(150)).await;
    worker
        .request(Frame::new(Command::Commit).header("transaction", "tx"), "c")
        .await;
    let (again, _) = other.message().await;
    assert_eq!(again.get("redelivered"), Some("true"));
}

#[tokio::test]
async fn send_naming_an_unknown_transaction_is_an_error() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send(&send_in("nope", "/topic/announcements", "x").header("receipt", "r"))
        .await;
    let error = backend.expect_error("unknown transaction").await;
    assert_eq!(error.get("receipt-id"), Some("r"));
}

#[tokio::test]
async fn commit_of_an_unknown_transaction_is_an_error() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send(&Frame::new(Command::Commit).header("transaction", "nope"))
        .await;
    backend.expect_error("unknown transaction").await;
}

#[tokio::test]
async fn abort_of_an_unknown_transaction_is_an_error() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send(&Frame::new(Command::Abort).header("transaction", "nope"))
        .await;
    backend.expect_error("unknown transaction").await;
}

#[tokio::test]
async fn commit_ends_the_transaction() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    begin(&mut backend, "tx").await;
    backend
        .request(Frame::new(Command::Commit).header("transaction", "tx"), "c")
        .await;
    backend
        .send(&Frame::new(Command::Commit).header("transaction", "tx"))
        .await;
    backend.expect_error("unknown transaction").await;
}

#[tokio::test]
async fn begin_twice_is_an_error() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    begin(&mut backend, "tx").await;
    backend
        .send(
            &Frame::new(Command::Begin)
                .header("transaction", "tx")
                .header("receipt", "again"),
        )
        .await;
    let error = backend.expect_error("transaction already begun").await;
    assert_eq!(error.get("receipt-id"), Some("again"));
}

#[tokio::test]
async fn begin_without_transaction_header_is_an_error() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend.send(&Frame::new(Command::Begin)).await;
    backend.expect_error("missing transaction header").await;
}

#[tokio::test]
async fn too_many_open_transactions_is_an_error() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_MAX_TRANSACTIONS", "2")]).await;
    let mut backend = broker.ws_system("backend").await;
    begin(&mut backend, "a").await;
    begin(&mut backend, "b").await;
    backend
        .send(&Frame::new(Command::Begin).header("transaction", "c"))
        .await;
    backend.expect_error("too many transactions").await;
}

#[tokio::test]
async fn transaction_over_its_frame_limit_is_an_error() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_MAX_TRANSACTION_FRAMES", "2")]).await;
    let (mut alice, mut backend) = pair(&broker).await;
    begin(&mut backend, "tx").await;
    for body in ["1", "2", "3"] {
        backend
            .send(&send_in("tx", "/topic/announcements", body))
            .await;
    }
    backend.expect_error("transaction too large").await;
    alice.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn open_transactions_are_dropped_when_the_session_ends() {
    let broker = TestBroker::start().await;
    let (mut alice, mut backend) = pair(&broker).await;
    begin(&mut backend, "tx").await;
    backend
        .send(&send_in("tx", "/topic/announcements", "orphan"))
        .await;
    backend.disconnect().await;
    alice.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn forbidden_send_in_a_transaction_fails_at_commit() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    begin(&mut alice, "tx").await;
    alice
        .request(send_in("tx", "/topic/announcements", "not mine"), "held")
        .await;
    alice
        .send(
            &Frame::new(Command::Commit)
                .header("transaction", "tx")
                .header("receipt", "c"),
        )
        .await;
    alice.expect_error("forbidden").await;
}

const SMALL_TRANSACTIONS: (&str, &str) = ("BROKER_STOMP_MAX_TRANSACTION_BYTES", "4096");

#[tokio::test]
async fn transaction_over_its_byte_limit_is_refused() {
    let broker = TestBroker::start_env(&[SMALL_TRANSACTIONS]).await;
    let (mut alice, mut backend) = pair(&broker).await;
    begin(&mut backend, "tx").await;
    let body = "b".repeat(1500);
    backend
        .request(send_in("tx", "/topic/announcements", &body), "held-1")
        .await;
    backend
        .request(send_in("tx", "/topic/announcements", &body), "held-2")
        .await;
    backend
        .send(&send_in("tx", "/topic/announcements", &body).header("receipt", "held-3"))
        .await;
    let error = backend.expect_error("transaction too large").await;
    assert_eq!(error.get("receipt-id"), Some("held-3"));
    alice.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn open_transactions_of_a_session_share_one_byte_limit() {
    let broker = TestBroker::start_env(&[SMALL_TRANSACTIONS]).await;
    let (mut alice, mut backend) = pair(&broker).await;
    let body = "b".repeat(1500);
    for tx in ["a", "b"] {
        begin(&mut backend, tx).await;
        backend
            .request(
                send_in(tx, "/topic/announcements", &body),
                &format!("{tx}-1"),
            )
            .await;
    }
    // Neither transaction alone is near the limit; the third frame takes the two over it.
    begin(&mut backend, "c").await;
    backend
        .send(&send_in("c", "/topic/announcements", &body))
        .await;
    backend.expect_error("transaction too large").await;
    alice.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn a_committed_transaction_gives_back_its_bytes() {
    let broker = TestBroker::start_env(&[SMALL_TRANSACTIONS]).await;
    let (mut alice, mut backend) = pair(&broker).await;
    let body = "b".repeat(1500);
    for round in 0..4 {
        let tx = format!("tx-{round}");
        begin(&mut backend, &tx).await;
        for i in 0..2 {
            backend
                .request(
                    send_in(&tx, "/topic/announcements", &body),
                    &format!("{tx}-{i}"),
                )
                .await;
        }
        backend
            .request(
                Frame::new(Command::Commit).header("transaction", tx.as_str()),
                &format!("commit-{round}"),
            )
            .await;
        assert_eq!(alice.bodies(2).await, [body.clone(), body.clone()]);
    }
}

#[tokio::test]
async fn an_aborted_transaction_gives_back_its_bytes() {
    let broker = TestBroker::start_env(&[SMALL_TRANSACTIONS]).await;
    let (_alice, mut backend) = pair(&broker).await;
    let body = "b".repeat(1500);
    for round in 0..4 {
        let tx = format!("tx-{round}");
        begin(&mut backend, &tx).await;
        for i in 0..2 {
            backend
                .request(
                    send_in(&tx, "/topic/announcements", &body),
                    &format!("{tx}-{i}"),
                )
                .await;
        }
        backend
            .request(
                Frame::new(Command::Abort).header("transaction", tx.as_str()),
                &format!("abort-{round}"),
            )
            .await;
    }
    backend.ping("open").await;
}
