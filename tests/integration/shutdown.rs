//! Graceful shutdown: every session is told and closed, and `shutdown()` returns within the
//! grace period.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{Client, TestBroker};

#[tokio::test]
async fn shutdown_sends_each_session_an_error_and_closes_it() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut bob = broker.ws("bob").await;
    bob.subscribe("/topic/announcements", "s", "auto").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    let (server, _dir) = broker.into_parts();
    let stopping = tokio::spawn(server.shutdown());
    for client in [&mut alice, &mut bob, &mut backend] {
        let error = client.expect_error("server shutting down").await;
        assert!(!error.body.is_empty());
    }
    stopping.await.expect("shutdown completes");
}

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let (server, _dir) = broker.into_parts();
    let stopping = tokio::spawn(server.shutdown());
    alice.expect_error("server shutting down").await;
    assert_eq!(alice.close_code, Some(1001));
    stopping.await.expect("shutdown completes");
}

#[tokio::test]
async fn shutdown_returns_promptly_when_sessions_close() {
    let broker = TestBroker::start_env(&[("BROKER_SERVER_SHUTDOWN_GRACE_MS", "3000")]).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(broker.ws(&format!("user{i}")).await);
    }
    let (server, _dir) = broker.into_parts();
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    for client in &mut clients {
        client.expect_error("server shutting down").await;
    }
    stopping.await.expect("shutdown completes");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_returns_within_the_grace_period_even_if_a_client_does_not_read() {
    let broker = TestBroker::start_env(&[
        ("BROKER_SERVER_SHUTDOWN_GRACE_MS", "1000"),
        ("BROKER_LIMITS_MAX_OUTBOUND_BYTES", "16777216"),
    ])
    .await;
    // A client that subscribes and then never reads, with lots of data queued for it.
    let mut stuck = Client::tcp_small_window(broker.stomp_addr()).await;
    stuck.connect(&broker.token("stuck")).await;
    stuck.subscribe("/topic/announcements", "s", "auto").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    let body = "z".repeat(4096);
    for _ in 0..500 {
        backend.publish("/topic/announcements", &body).await;
    }
    backend.ping("queued").await;
    let (server, _dir) = broker.into_parts();
    let started = Instant::now();
    server.shutdown().await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn shutdown_closes_connections_that_never_sent_connect() {
    let broker = TestBroker::start().await;
    let mut waiting = broker.ws_raw().await;
    let (server, _dir) = broker.into_parts();
    let stopping = tokio::spawn(server.shutdown());
    // No session yet: no ERROR is owed, but the connection must not be left open.
    match waiting.receive().await {
        common::Received::Closed => {}
        common::Received::Frame(frame) => {
            assert_eq!(frame.command, stomp_codec::Command::Error, "{frame:?}");
            waiting.expect_closed().await;
        }
    }
    stopping.await.expect("shutdown completes");
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    let broker = TestBroker::start().await;
    let http = broker.http_addr();
    let stomp = broker.stomp_addr();
    let (server, _dir) = broker.into_parts();
    server.shutdown().await;
    assert!(tokio::net::TcpStream::connect(http).await.is_err());
    assert!(tokio::net::TcpStream::connect(stomp).await.is_err());
}
