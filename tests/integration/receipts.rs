//! RECEIPT: every client frame with a `receipt` header is answered, after its effect.

use crate::common;

use std::time::Duration;

use crate::common::TestBroker;
use stomp_codec::{Command, Frame};

#[tokio::test]
async fn every_client_frame_with_a_receipt_is_answered_in_order() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .subscribe("/queue/work", "q", "client-individual")
        .await;
    let frames = [
        Frame::new(Command::Subscribe)
            .header("destination", "/topic/announcements")
            .header("id", "t"),
        Frame::new(Command::Unsubscribe).header("id", "t"),
        Frame::new(Command::Begin).header("transaction", "tx"),
        Frame::new(Command::Send)
            .header("destination", "/topic/announcements")
            .header("transaction", "tx")
            .body("held"),
        Frame::new(Command::Commit).header("transaction", "tx"),
        Frame::new(Command::Begin).header("transaction", "tx2"),
        Frame::new(Command::Abort).header("transaction", "tx2"),
    ];
    for (i, frame) in frames.into_iter().enumerate() {
        backend.request(frame, &format!("r{i}")).await;
    }
    // The queue hands the job to this very session before the SEND's receipt.
    backend
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/queue/work")
                .header("receipt", "job")
                .body("job"),
        )
        .await;
    let (job, _) = backend.message().await;
    backend.expect_receipt("job").await;
    let id = job.get("ack").unwrap().to_owned();
    backend
        .send(
            &Frame::new(Command::Nack)
                .header("id", id.as_str())
                .header("receipt", "nack"),
        )
        .await;
    // The only consumer gets the job again, before the NACK's receipt.
    let (again, _) = backend.message().await;
    assert_eq!(again.get("redelivered"), Some("true"));
    backend.expect_receipt("nack").await;
    let id = again.get("ack").unwrap().to_owned();
    backend
        .request(Frame::new(Command::Ack).header("id", id.as_str()), "ack")
        .await;
    backend
        .send(&Frame::new(Command::Disconnect).header("receipt", "bye"))
        .await;
    backend.expect_receipt("bye").await;
    backend.expect_closed().await;
}

#[tokio::test]
async fn frames_without_receipt_get_no_receipt() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/topic/x")
                .header("id", "1"),
        )
        .await;
    backend.publish("/topic/elsewhere", "x").await;
    backend
        .send(&Frame::new(Command::Unsubscribe).header("id", "1"))
        .await;
    backend.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn receipt_of_a_send_follows_its_delivery_to_the_same_session() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend.subscribe("/topic/loop", "s", "auto").await;
    backend
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/loop")
                .header("receipt", "sent")
                .body("echo"),
        )
        .await;
    let (_, body) = backend.message().await;
    assert_eq!(body, "echo");
    backend.expect_receipt("sent").await;
}

#[tokio::test]
async fn receipt_of_subscribe_means_later_publications_are_received() {
    let broker = TestBroker::start().await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    for round in 0..20 {
        let mut alice = broker.ws("alice").await;
        alice.subscribe("/topic/announcements", "s", "auto").await;
        backend
            .publish("/topic/announcements", &format!("round {round}"))
            .await;
        assert_eq!(alice.message().await.1, format!("round {round}"));
    }
}

#[tokio::test]
async fn disconnect_receipt_comes_before_the_close() {
    let broker = TestBroker::start().await;
    let mut alice = broker.tcp(&broker.token("alice")).await;
    alice
        .send(&Frame::new(Command::Disconnect).header("receipt", "77"))
        .await;
    alice.expect_receipt("77").await;
    alice.expect_closed().await;
}

#[tokio::test]
async fn disconnect_without_receipt_closes() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.send(&Frame::new(Command::Disconnect)).await;
    alice.expect_closed().await;
}

#[tokio::test]
async fn messages_queued_before_disconnect_are_written_before_its_receipt() {
    let broker = TestBroker::start().await;
    let mut backend = broker.ws_system("backend").await;
    backend.subscribe("/topic/loop", "s", "auto").await;
    let mut frames = Vec::new();
    for i in 0..50 {
        frames.push(
            Frame::new(Command::Send)
                .header("destination", "/topic/loop")
                .body(format!("m{i}")),
        );
    }
    frames.push(Frame::new(Command::Disconnect).header("receipt", "bye"));
    backend
        .send_raw(&common::encode_all(&frames, stomp_codec::Version::V1_2))
        .await;
    let expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(backend.bodies(50).await, expected);
    backend.expect_receipt("bye").await;
    backend.expect_closed().await;
}
