//! Heart-beats: negotiation, the server's EOLs, the silence deadline, and disabling.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{Event, TestBroker};
use stomp_codec::{Command, Frame};

/// Reads for `period`, sending an EOL every `send_every` when given; returns when each
/// heart-beat arrived (relative to the start) and panics on any frame or close.
async fn collect_heartbeats(
    client: &mut common::Client,
    period: Duration,
    send_every: Option<Duration>,
) -> Vec<Duration> {
    let started = Instant::now();
    let mut next_send = send_every.map(|every| started + every);
    let mut arrivals = Vec::new();
    loop {
        let now = Instant::now();
        let end = started + period;
        if now >= end {
            return arrivals;
        }
        let until = next_send.map_or(end, |send| send.min(end));
        match client.next_event_within(until - now).await {
            None => {}
            Some(Event::HeartBeat) => arrivals.push(started.elapsed()),
            Some(other) => panic!("expected only heart-beats, got {other:?}"),
        }
        if let (Some(send), Some(every)) = (next_send, send_every)
            && Instant::now() >= send
        {
            client.send_raw(b"\n").await;
            next_send = Some(send + every);
        }
    }
}

fn gaps(arrivals: &[Duration]) -> Vec<Duration> {
    arrivals.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn server_sends_heart_beats_at_the_negotiated_interval() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "100,100")]).await;
    let mut client = broker.ws_raw().await;
    let connected = client
        .connect_heartbeat(&broker.token("alice"), "100,100")
        .await;
    assert_eq!(connected.get("heart-beat"), Some("100,100"));
    let arrivals = collect_heartbeats(
        &mut client,
        Duration::from_millis(1000),
        Some(Duration::from_millis(50)),
    )
    .await;
    assert!(
        (6..=12).contains(&arrivals.len()),
        "about ten heart-beats in a second: {arrivals:?}"
    );
    assert!(arrivals[0] <= Duration::from_millis(190), "{arrivals:?}");
    for gap in gaps(&arrivals) {
        assert!(gap >= Duration::from_millis(60), "{arrivals:?}");
        // Never near twice the interval, the point at which a peer may give up.
        assert!(gap <= Duration::from_millis(190), "{arrivals:?}");
    }
}

#[tokio::test]
async fn negotiated_interval_is_the_larger_of_both_sides() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "100,100")]).await;
    let mut client = broker.ws_raw().await;
    // The client sends none and wants one every 300 ms; the server can do 100: 300 it is.
    client
        .connect_heartbeat(&broker.token("alice"), "0,300")
        .await;
    let arrivals = collect_heartbeats(&mut client, Duration::from_millis(1000), None).await;
    assert!(
        (2..=4).contains(&arrivals.len()),
        "about three heart-beats in a second: {arrivals:?}"
    );
    for gap in gaps(&arrivals) {
        assert!(gap >= Duration::from_millis(250), "{arrivals:?}");
    }
}

#[tokio::test]
async fn server_heart_beat_comes_within_one_interval_of_its_last_write() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "400,0")]).await;
    let mut client = broker.ws_raw().await;
    client
        .connect_heartbeat(&broker.token("alice"), "0,400")
        .await;
    // Whatever the phase of a write relative to the previous heart-beat, the next heart-beat
    // must follow the write within the interval.
    // (A writer that checked on a fixed tick whether half an interval had passed left up to
    // 1.5 intervals of silence after writes made 200 to 400 ms after a heart-beat.)
    for (round, pause) in [0u64, 150, 210, 240].into_iter().enumerate() {
        match client.next_event().await {
            Event::HeartBeat => {}
            other => panic!("expected a heart-beat, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let receipt = format!("r{round}");
        client.ping(&receipt).await;
        let written = Instant::now();
        match client.next_event().await {
            Event::HeartBeat => {}
            other => panic!("expected a heart-beat, got {other:?}"),
        }
        let gap = written.elapsed();
        assert!(
            gap <= Duration::from_millis(520),
            "round {round} (pause {pause} ms): {gap:?} of silence after a write"
        );
    }
}

#[tokio::test]
async fn silent_client_is_closed_after_twice_the_interval() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "100,100")]).await;
    let mut client = broker.ws_raw().await;
    // The client promises a heart-beat every 100 ms and wants none.
    client
        .connect_heartbeat(&broker.token("alice"), "100,0")
        .await;
    let started = Instant::now();
    client.expect_error("heart-beat timeout").await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(180), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
}

#[tokio::test]
async fn silence_deadline_uses_the_larger_interval() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "0,100")]).await;
    let mut client = broker.ws_raw().await;
    // The client can only promise one every 250 ms: the deadline is 500 ms.
    client
        .connect_heartbeat(&broker.token("alice"), "250,0")
        .await;
    let started = Instant::now();
    client.expect_error("heart-beat timeout").await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn client_heart_beats_keep_the_connection_alive() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "100,100")]).await;
    let mut client = broker.ws_raw().await;
    client
        .connect_heartbeat(&broker.token("alice"), "100,0")
        .await;
    collect_heartbeats(
        &mut client,
        Duration::from_millis(700),
        Some(Duration::from_millis(60)),
    )
    .await;
    client.ping("alive").await;
}

#[tokio::test]
async fn client_frames_keep_the_connection_alive() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "100,100")]).await;
    let mut client = broker.ws_raw().await;
    client
        .connect_heartbeat(&broker.token("alice"), "100,0")
        .await;
    for round in 0..8 {
        tokio::time::sleep(Duration::from_millis(80)).await;
        client.ping(&format!("p{round}")).await;
    }
}

#[tokio::test]
async fn zero_zero_from_the_client_disables_heart_beats() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "100,100")]).await;
    let mut client = broker.ws_raw().await;
    client
        .connect_heartbeat(&broker.token("alice"), "0,0")
        .await;
    let arrivals = collect_heartbeats(&mut client, Duration::from_millis(500), None).await;
    assert!(arrivals.is_empty(), "{arrivals:?}");
    client.ping("not-timed-out").await;
}

#[tokio::test]
async fn zero_zero_from_the_server_disables_heart_beats() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "0,0")]).await;
    let mut client = broker.ws_raw().await;
    let connected = client
        .connect_heartbeat(&broker.token("alice"), "100,100")
        .await;
    assert_eq!(connected.get("heart-beat"), Some("0,0"));
    let arrivals = collect_heartbeats(&mut client, Duration::from_millis(500), None).await;
    assert!(arrivals.is_empty(), "{arrivals:?}");
    client.ping("not-timed-out").await;
}

#[tokio::test]
async fn connect_without_heart_beat_header_gets_none() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "100,100")]).await;
    let mut client = broker.ws("alice").await;
    let arrivals = collect_heartbeats(&mut client, Duration::from_millis(400), None).await;
    assert!(arrivals.is_empty(), "{arrivals:?}");
    client.ping("not-timed-out").await;
}

#[tokio::test]
async fn heart_beats_flow_over_tcp_too() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "100,100")]).await;
    let mut client = broker.tcp_raw().await;
    client
        .connect_heartbeat(&broker.token("alice"), "0,100")
        .await;
    let arrivals = collect_heartbeats(&mut client, Duration::from_millis(550), None).await;
    assert!(arrivals.len() >= 3, "{arrivals:?}");
    client
        .request(Frame::new(Command::Unsubscribe).header("id", "x"), "tcp")
        .await;
}
