//! Slow consumers: a connection that does not read is cut when its outbound queue overflows,
//! and nobody else is slowed down by it.

use std::time::{Duration, Instant};

use crate::common::{Client, Received, TestBroker};
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

/// Reads what a session gets until its connection closes.
async fn frames_until_closed(client: &mut Client) -> Vec<stomp_codec::Frame> {
    let mut frames = Vec::new();
    loop {
        match client.receive().await {
            Received::Frame(frame) => frames.push(frame),
            Received::Closed => return frames,
        }
    }
}

fn assert_last_is_slow_consumer(frames: &[stomp_codec::Frame]) {
    let last = frames.last().expect("an ERROR before the close");
    assert_eq!(last.command, Command::Error, "last frame: {last:?}");
    assert_eq!(last.get("message"), Some("slow consumer"));
    let detail = String::from_utf8_lossy(&last.body);
    assert!(detail.contains("unacknowledged"), "{detail}");
}

#[tokio::test]
async fn client_ack_subscriptions_over_max_unacked_are_cut_as_slow_consumer() {
    let broker = TestBroker::start_env(&[("BROKER_LIMITS_MAX_UNACKED", "50")]).await;
    let mut hoarder = broker.ws("hoarder").await;
    for i in 0..10 {
        hoarder
            .subscribe("/topic/announcements", &format!("s{i}"), "client")
            .await;
    }
    let mut publisher = broker.tcp(&broker.system_token("backend")).await;
    for i in 0..6 {
        publisher
            .publish("/topic/announcements", &format!("m{i}"))
            .await;
    }
    publisher.ping("published").await;
    let frames = frames_until_closed(&mut hoarder).await;
    assert_last_is_slow_consumer(&frames);
    let messages = frames
        .iter()
        .filter(|f| f.command == Command::Message)
        .count();
    assert!(messages <= 50, "{messages} messages");
    // The publisher is not slowed down, and the cut is counted.
    publisher.ping("still-open").await;
    assert!(broker.metric("broker_unacked_cuts_total").await >= 1.0);
}

#[tokio::test]
async fn one_user_queue_subscription_over_its_unacked_bound_is_cut_as_slow_consumer() {
    let broker = TestBroker::start_env(&[
        ("BROKER_LIMITS_MAX_UNACKED_PER_SUBSCRIPTION", "5"),
        ("BROKER_LIMITS_QUEUE_PREFETCH", "5"),
    ])
    .await;
    let mut alice = broker.ws("alice").await;
    alice
        .subscribe("/user/queue/feed", "s", "client-individual")
        .await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    for i in 0..6 {
        backend
            .publish("/user/alice/queue/feed", &format!("m{i}"))
            .await;
    }
    backend.ping("published").await;
    let frames = frames_until_closed(&mut alice).await;
    assert_last_is_slow_consumer(&frames);
}

#[tokio::test]
async fn acknowledged_deliveries_do_not_count_toward_the_unacked_bound() {
    let broker = TestBroker::start_env(&[
        ("BROKER_LIMITS_MAX_UNACKED_PER_SUBSCRIPTION", "5"),
        ("BROKER_LIMITS_QUEUE_PREFETCH", "5"),
    ])
    .await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "s", "client").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    for round in 0..4 {
        for i in 0..5 {
            backend
                .publish("/topic/announcements", &format!("r{round}-{i}"))
                .await;
        }
        let mut last = None;
        for _ in 0..5 {
            last = Some(alice.message().await.0);
        }
        let last = last.expect("five messages");
        // One cumulative ACK settles the five.
        alice
            .ack(Command::Ack, &last, &format!("ack-{round}"))
            .await;
    }
    alice.ping("never-cut").await;
}

#[tokio::test]
async fn a_queue_subscriber_at_its_prefetch_waits_and_is_not_cut() {
    let broker = TestBroker::start_env(&[
        ("BROKER_LIMITS_MAX_UNACKED_PER_SUBSCRIPTION", "5"),
        ("BROKER_LIMITS_QUEUE_PREFETCH", "5"),
    ])
    .await;
    let mut worker = broker.ws_system("worker").await;
    worker
        .subscribe("/queue/jobs", "s", "client-individual")
        .await;
    let mut producer = broker.tcp(&broker.system_token("producer")).await;
    for i in 0..20 {
        producer.publish("/queue/jobs", &format!("job-{i}")).await;
    }
    producer.ping("queued").await;
    let first = worker.message().await.0;
    for _ in 0..4 {
        worker.message().await;
    }
    worker.expect_nothing(Duration::from_millis(200)).await;
    // An ACK makes room for exactly one more, which may come before the ACK's RECEIPT.
    let id = first.get("ack").expect("an ack header").to_owned();
    worker
        .send(
            &stomp_codec::Frame::new(Command::Ack)
                .header("id", id)
                .header("receipt", "ack-1"),
        )
        .await;
    worker.expect_receipt_after_messages("ack-1").await;
    assert_eq!(worker.message().await.1, "job-5");
    worker.expect_nothing(Duration::from_millis(200)).await;
    worker.ping("open").await;
}

#[tokio::test]
async fn a_session_holding_many_unacked_deliveries_ends_without_stalling_the_others() {
    // 400 client-ack subscriptions each left with 250 unacknowledged deliveries: 100,000 in
    // the ledger of one session when it disconnects.
    const SUBSCRIPTIONS: usize = 400;
    const MESSAGES: usize = 250;
    let broker = TestBroker::start_env(&[
        ("BROKER_LIMITS_MAX_UNACKED", "100000"),
        ("BROKER_LIMITS_MAX_OUTBOUND_BYTES", "268435456"),
    ])
    .await;
    let mut hoarder = Client::tcp_small_window(broker.stomp_addr()).await;
    hoarder.connect(&broker.token("hoarder")).await;
    for i in 0..SUBSCRIPTIONS {
        hoarder
            .subscribe(
                "/topic/announcements",
                &format!("s{i}"),
                "client-individual",
            )
            .await;
    }
    let mut publisher = broker.tcp(&broker.system_token("backend")).await;
    for i in 0..MESSAGES {
        publisher
            .publish("/topic/announcements", &format!("m{i}"))
            .await;
    }
    publisher.ping("published").await;
    let held = broker.server.hub().sessions_of("hoarder")[0].unacked();
    assert_eq!(held, SUBSCRIPTIONS * MESSAGES);

    let mut other = broker.ws("bystander").await;
    drop(hoarder);
    // While the broker releases what the hoarder held, it keeps answering others.
    let bound = Duration::from_secs(1);
    for round in 0..10 {
        let health = tokio::time::timeout(bound, broker.get("/healthz")).await;
        assert_eq!(
            health.map(|(status, _)| status).ok(),
            Some(200),
            "round {round}"
        );
        let ping = tokio::time::timeout(bound, other.ping(&format!("p{round}"))).await;
        assert!(ping.is_ok(), "round {round}: no RECEIPT within {bound:?}");
    }
    for _ in 0..200 {
        if broker.server.hub().sessions_of("hoarder").is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the hoarder's session is still registered");
}
