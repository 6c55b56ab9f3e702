//! Slow consumers: a connection that does not read is cut when its outbound queue overflows,
//! and nobody else is slowed down by it.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Received, TestBroker};
use stomp_codec::Command;

const SMALL_QUEUE: (&str, &str) = ("BROKER_LIMITS_MAX_OUTBOUND_BYTES", "262144");
/// Messages per batch: a batch (about 64 KiB) fits a reading client's queue several times over.
const BATCH: usize = 8;
/// Bytes per message body.
const BODY: usize = 8192;
const SLOW_USER: &str = "slowpoke";

/// What a run of the scenario observed.
struct Outcome {
    /// Messages the publisher sent.
    published: usize,
    /// Bodies the fast subscriber received, in order.
    fast_bodies: Vec<String>,
    /// Every frame the slow client read once it started reading again, and whether the
    /// connection then closed.
    slow_frames: Vec<stomp_codec::Frame>,
    slow_closed: bool,
}

fn is_cut(broker: &TestBroker) -> bool {
    let sessions = broker.server.hub().sessions_of(SLOW_USER);
    sessions.is_empty() || sessions.iter().any(|s| s.is_slow())
}

/// A slow client subscribes and stops reading; a publisher sends batches of messages until the
/// slow client is cut (the kernel's socket buffers take a few MiB first), then one batch more;
/// a fast subscriber reads everything.
async fn run(broker: &TestBroker, mut slow: Client) -> Outcome {
    slow.connect(&broker.token(SLOW_USER)).await;
    slow.subscribe("/topic/announcements", "s", "auto").await;
    let mut fast = broker.ws("speedy").await;
    fast.subscribe("/topic/announcements", "f", "auto").await;
    let mut publisher = broker.tcp(&broker.system_token("backend")).await;

    let body = "x".repeat(BODY);
    let reader = tokio::spawn(async move {
        let mut bodies = Vec::new();
        loop {
            match fast.receive().await {
                Received::Frame(frame) if frame.command == Command::Message => {
                    let text = String::from_utf8_lossy(&frame.body).into_owned();
                    let done = text == "done";
                    bodies.push(text);
                    if done {
                        return bodies;
                    }
                }
                other => panic!("fast subscriber got {other:?}"),
            }
        }
    });
    let started = Instant::now();
    let mut published = 0;
    let mut batch = 0;
    while !is_cut(broker) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the slow consumer was never cut"
        );
        for i in 0..BATCH {
            publisher
                .publish(
                    "/topic/announcements",
                    &format!("{published:06}{i:02}{body}"),
                )
                .await;
        }
        published += BATCH;
        batch += 1;
        publisher.ping(&format!("batch-{batch}")).await;
    }
    // The cut does not stop the others.
    for i in 0..BATCH {
        publisher
            .publish("/topic/announcements", &format!("after-{i:02}"))
            .await;
    }
    publisher
        .send_with_receipt("/topic/announcements", "done", "done")
        .await;
    published += BATCH + 1;
    let fast_bodies = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the fast subscriber keeps up")
        .expect("reader");

    let mut slow_frames = Vec::new();
    let slow_closed = loop {
        match slow.receive().await {
            Received::Frame(frame) => slow_frames.push(frame),
            Received::Closed => break true,
        }
    };
    Outcome {
        published,
        fast_bodies,
        slow_frames,
        slow_closed,
    }
}

fn assert_cut_with_error(outcome: &Outcome) {
    assert!(outcome.slow_closed, "the slow consumer is closed");
    let last = outcome.slow_frames.last().expect("frames before the close");
    assert_eq!(last.command, Command::Error, "last frame: {last:?}");
    assert_eq!(last.get("message"), Some("slow consumer"));
    // It got some messages, and fewer than were published.
    let messages = outcome
        .slow_frames
        .iter()
        .filter(|f| f.command == Command::Message)
        .count();
    assert!(
        messages < outcome.published,
        "{messages} of {}",
        outcome.published
    );
}

#[tokio::test]
async fn slow_tcp_consumer_is_cut_and_its_last_frame_is_slow_consumer() {
    let broker = TestBroker::start_env(&[SMALL_QUEUE]).await;
    let slow = Client::tcp_small_window(broker.stomp_addr()).await;
    let outcome = run(&broker, slow).await;
    assert_cut_with_error(&outcome);
}

#[tokio::test]
async fn slow_websocket_consumer_is_cut_and_its_last_frame_is_slow_consumer() {
    let broker = TestBroker::start_env(&[SMALL_QUEUE]).await;
    let slow = Client::websocket_small_window(broker.http_addr()).await;
    let outcome = run(&broker, slow).await;
    assert_cut_with_error(&outcome);
}

#[tokio::test]
async fn fast_subscriber_gets_every_message_while_a_slow_one_is_cut() {
    let broker = TestBroker::start_env(&[SMALL_QUEUE]).await;
    let slow = Client::tcp_small_window(broker.stomp_addr()).await;
    let outcome = run(&broker, slow).await;
    assert_eq!(outcome.fast_bodies.len(), outcome.published);
    let mut previous = String::new();
    for body in &outcome.fast_bodies[..outcome.published - BATCH - 1] {
        assert!(*body > previous, "in order");
        previous.clone_from(body);
    }
    assert_eq!(outcome.fast_bodies.last().map(String::as_str), Some("done"));
}

#[tokio::test]
async fn slow_consumer_cuts_are_counted_in_metrics() {
    let broker = TestBroker::start_env(&[SMALL_QUEUE]).await;
    let before = broker.metric("broker_slow_consumer_cuts_total").await;
    let errors_before = broker
        .metric(r#"broker_stomp_errors_total{reason="slow_consumer"}"#)
        .await;
    let slow = Client::tcp_small_window(broker.stomp_addr()).await;
    let outcome = run(&broker, slow).await;
    assert!(outcome.slow_closed);
    let after = broker.metric("broker_slow_consumer_cuts_total").await;
    assert!(after > before, "{before} -> {after}");
    let errors_after = broker
        .metric(r#"broker_stomp_errors_total{reason="slow_consumer"}"#)
        .await;
    assert!(
        errors_after > errors_before,
        "{errors_before} -> {errors_after}"
    );
}

#[tokio::test]
async fn slow_consumer_session_is_removed_from_the_hub() {
    let broker = TestBroker::start_env(&[SMALL_QUEUE]).await;
    let slow = Client::tcp_small_window(broker.stomp_addr()).await;
    let outcome = run(&broker, slow).await;
    assert!(outcome.slow_closed);
    for _ in 0..100 {
        if broker.server.hub().sessions_of(SLOW_USER).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the slow consumer's session is still registered");
}
