//! CONNECT and STOMP: version negotiation, the CONNECTED headers, subprotocols, the connect
//! timeout, and the frames that are refused around the handshake.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{Client, TestBroker};
use stomp_codec::{Command, Frame, Version};

async fn connect_version(broker: &TestBroker, accept_version: Option<&str>) -> Frame {
    let token = broker.token("alice");
    let mut client = broker.ws_raw().await;
    let mut headers = vec![("host", "localhost"), ("passcode", token.as_str())];
    if let Some(versions) = accept_version {
        headers.push(("accept-version", versions));
    }
    client.connect_with(Command::Connect, &headers).await
}

#[tokio::test]
async fn connect_without_accept_version_negotiates_1_0() {
    let broker = TestBroker::start().await;
    let connected = connect_version(&broker, None).await;
    assert_eq!(connected.command, Command::Connected);
    assert_eq!(connected.get("version"), Some("1.0"));
}

#[tokio::test]
async fn accept_version_1_1_negotiates_1_1() {
    let broker = TestBroker::start().await;
    let connected = connect_version(&broker, Some("1.1")).await;
    assert_eq!(connected.get("version"), Some("1.1"));
}

#[tokio::test]
async fn accept_version_1_2_negotiates_1_2() {
    let broker = TestBroker::start().await;
    let connected = connect_version(&broker, Some("1.2")).await;
    assert_eq!(connected.get("version"), Some("1.2"));
}

#[tokio::test]
async fn highest_common_version_is_chosen() {
    let broker = TestBroker::start().await;
    for (offered, chosen) in [
        ("1.0,1.1,1.2", "1.2"),
        ("1.2,1.0", "1.2"),
        ("1.0,1.1", "1.1"),
        ("1.1,1.0,9.9", "1.1"),
        ("1.0", "1.0"),
    ] {
        let connected = connect_version(&broker, Some(offered)).await;
        assert_eq!(connected.get("version"), Some(chosen), "offered {offered}");
    }
}

#[tokio::test]
async fn unsupported_version_gets_error_with_version_header_then_close() {
    let broker = TestBroker::start().await;
    let token = broker.token("alice");
    let mut client = broker.ws_raw().await;
    client
        .send(&common::connect_frame(
            Command::Connect,
            &[
                ("accept-version", "2.0,3.1"),
                ("passcode", &token),
                ("receipt", "c1"),
            ],
        ))
        .await;
    let error = client.expect_error("unsupported version").await;
    assert_eq!(error.get("version"), Some("1.0,1.1,1.2"));
    assert_eq!(error.get("receipt-id"), Some("c1"));
}

#[tokio::test]
async fn stomp_command_connects_like_connect() {
    let broker = TestBroker::start().await;
    let token = broker.token("alice");
    let mut client = broker.ws_raw().await;
    let connected = client
        .connect_with(
            Command::Stomp,
            &[
                ("accept-version", "1.2"),
                ("host", "localhost"),
                ("passcode", &token),
            ],
        )
        .await;
    assert_eq!(connected.command, Command::Connected);
    assert_eq!(connected.get("version"), Some("1.2"));
    assert_eq!(connected.get("user-name"), Some("alice"));
    client.ping("after-stomp").await;
}

#[tokio::test]
async fn connected_carries_version_heart_beat_server_session_and_user_name() {
    let broker = TestBroker::start_env(&[("BROKER_STOMP_HEARTBEAT_MS", "4000,6000")]).await;
    let mut client = broker.ws_raw().await;
    let connected = client.connect(&broker.token("carol")).await;
    assert_eq!(connected.get("version"), Some("1.2"));
    assert_eq!(connected.get("heart-beat"), Some("4000,6000"));
    let server = connected.get("server").expect("server header");
    assert!(server.starts_with("broker/"), "{server}");
    assert!(server.len() > "broker/".len(), "{server}");
    assert!(
        connected
            .get("session")
            .is_some_and(|s| s.starts_with("test-node-"))
    );
    assert_eq!(connected.get("user-name"), Some("carol"));
}

#[tokio::test]
async fn each_connection_gets_its_own_session_id() {
    let broker = TestBroker::start().await;
    let token = broker.token("alice");
    let mut one = broker.ws_raw().await;
    let mut two = broker.ws_raw().await;
    let first = one.connect(&token).await;
    let second = two.connect(&token).await;
    assert_ne!(first.get("session"), second.get("session"));
}

#[tokio::test]
async fn connected_answers_a_connect_receipt() {
    let broker = TestBroker::start().await;
    let token = broker.token("alice");
    let mut client = broker.ws_raw().await;
    let connected = client
        .connect_with(
            Command::Connect,
            &[
                ("accept-version", "1.2"),
                ("passcode", &token),
                ("receipt", "hello"),
            ],
        )
        .await;
    assert_eq!(connected.command, Command::Connected);
    assert_eq!(connected.get("receipt-id"), Some("hello"));
}

#[tokio::test]
async fn subprotocol_v12_is_preferred_over_v11_and_v10() {
    let broker = TestBroker::start().await;
    let client = Client::websocket(
        broker.http_addr(),
        None,
        &["v10.stomp", "v11.stomp", "v12.stomp"],
    )
    .await;
    assert_eq!(client.subprotocol.as_deref(), Some("v12.stomp"));
}

#[tokio::test]
async fn subprotocol_v11_is_preferred_over_v10() {
    let broker = TestBroker::start().await;
    let client = Client::websocket(broker.http_addr(), None, &["v10.stomp", "v11.stomp"]).await;
    assert_eq!(client.subprotocol.as_deref(), Some("v11.stomp"));
}

#[tokio::test]
async fn subprotocol_v10_alone_is_accepted() {
    let broker = TestBroker::start().await;
    let mut client = Client::websocket(broker.http_addr(), None, &["v10.stomp"]).await;
    assert_eq!(client.subprotocol.as_deref(), Some("v10.stomp"));
    client.connect(&broker.token("alice")).await;
}

#[tokio::test]
async fn subprotocol_unknown_ones_are_skipped_for_a_known_one() {
    let broker = TestBroker::start().await;
    let client = Client::websocket(broker.http_addr(), None, &["mqtt", "v11.stomp"]).await;
    assert_eq!(client.subprotocol.as_deref(), Some("v11.stomp"));
}

#[tokio::test]
async fn client_offering_no_subprotocol_is_accepted() {
    let broker = TestBroker::start().await;
    let mut client = Client::websocket(broker.http_addr(), None, &[]).await;
    assert_eq!(client.subprotocol, None);
    let connected = client.connect(&broker.token("alice")).await;
    assert_eq!(connected.get("user-name"), Some("alice"));
}

#[tokio::test]
async fn connection_without_connect_gets_error_at_connect_timeout() {
    let broker = TestBroker::start_env(&[("BROKER_SERVER_CONNECT_TIMEOUT_MS", "300")]).await;
    let mut client = broker.ws_raw().await;
    let started = Instant::now();
    client.expect_error("connect timeout").await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn tcp_connection_without_connect_gets_error_at_connect_timeout() {
    let broker = TestBroker::start_env(&[("BROKER_SERVER_CONNECT_TIMEOUT_MS", "300")]).await;
    let mut client = broker.tcp_raw().await;
    client.expect_error("connect timeout").await;
}

#[tokio::test]
async fn heart_beats_do_not_count_as_connect() {
    let broker = TestBroker::start_env(&[("BROKER_SERVER_CONNECT_TIMEOUT_MS", "400")]).await;
    let mut client = broker.ws_raw().await;
    for _ in 0..4 {
        client.send_raw(b"\n").await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    client.expect_error("connect timeout").await;
}

#[tokio::test]
async fn connect_within_the_timeout_keeps_the_session_past_it() {
    let broker = TestBroker::start_env(&[("BROKER_SERVER_CONNECT_TIMEOUT_MS", "300")]).await;
    let mut client = broker.ws_raw().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Heart-beats before CONNECT are ignored.
    client.send_raw(b"\n").await;
    client.connect(&broker.token("alice")).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.ping("still-open").await;
}

#[tokio::test]
async fn second_connect_is_an_error() {
    let broker = TestBroker::start().await;
    let mut client = broker.ws("alice").await;
    client
        .send(&common::connect_frame(
            Command::Connect,
            &[
                ("accept-version", "1.2"),
                ("passcode", &broker.token("alice")),
                ("receipt", "again"),
            ],
        ))
        .await;
    let error = client.expect_error("already connected").await;
    assert_eq!(error.get("receipt-id"), Some("again"));
}

#[tokio::test]
async fn stomp_after_connect_is_an_error() {
    let broker = TestBroker::start().await;
    let mut client = broker.ws("alice").await;
    client
        .send(&common::connect_frame(
            Command::Stomp,
            &[("accept-version", "1.2")],
        ))
        .await;
    client.expect_error("already connected").await;
}

#[tokio::test]
async fn server_frames_from_the_client_are_errors() {
    let broker = TestBroker::start().await;
    for command in [
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ] {
        let mut client = broker.ws("alice").await;
        client
            .send(&Frame::new(command).header("receipt", "server-frame"))
            .await;
        let error = client.expect_error("unexpected command").await;
        assert_eq!(error.get("receipt-id"), Some("server-frame"), "{command}");
    }
}

#[tokio::test]
async fn frame_before_connect_is_an_error() {
    let broker = TestBroker::start().await;
    let mut client = broker.ws_raw().await;
    client
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/news")
                .header("receipt", "early"),
        )
        .await;
    let error = client.expect_error("not connected").await;
    assert_eq!(error.get("receipt-id"), Some("early"));
}

#[tokio::test]
async fn malformed_heart_beat_header_is_an_error() {
    let broker = TestBroker::start().await;
    let mut client = broker.ws_raw().await;
    client
        .send(&common::connect_frame(
            Command::Connect,
            &[
                ("accept-version", "1.2"),
                ("passcode", &broker.token("alice")),
                ("heart-beat", "often"),
            ],
        ))
        .await;
    client.expect_error("invalid heart-beat").await;
}

#[tokio::test]
async fn frames_sent_with_connect_in_one_message_are_handled_after_it() {
    let broker = TestBroker::start().await;
    let mut client = broker.ws_raw().await;
    let token = broker.token("alice");
    let frames = common::encode_all(
        &[
            common::connect_frame(
                Command::Connect,
                &[("accept-version", "1.2"), ("passcode", &token)],
            ),
            Frame::new(Command::Subscribe)
                .header("destination", "/topic/announcements")
                .header("id", "1")
                .header("receipt", "piggyback"),
        ],
        Version::V1_2,
    );
    client.send_raw(&frames).await;
    client.expect(Command::Connected).await;
    client.expect_receipt("piggyback").await;
}

#[tokio::test]
async fn a_1_0_session_subscribes_without_an_id() {
    let broker = TestBroker::start().await;
    let token = broker.token("alice");
    let mut client = broker.ws_raw().await;
    let connected = client
        .connect_with(Command::Connect, &[("login", "x"), ("passcode", &token)])
        .await;
    assert_eq!(connected.get("version"), Some("1.0"));
    client.set_version(Version::V1_0);
    client
        .request(
            Frame::new(Command::Subscribe).header("destination", "/topic/announcements"),
            "s",
        )
        .await;
    let mut system = broker.ws_system("backend").await;
    system
        .send_with_receipt("/topic/announcements", "for 1.0", "p")
        .await;
    let (message, body) = client.message().await;
    assert_eq!(body, "for 1.0");
    assert_eq!(message.get("subscription"), Some("/topic/announcements"));
    // In 1.0 the destination names the subscription for UNSUBSCRIBE too.
    client
        .request(
            Frame::new(Command::Unsubscribe).header("destination", "/topic/announcements"),
            "u",
        )
        .await;
    system
        .send_with_receipt("/topic/announcements", "gone", "p2")
        .await;
    client.expect_nothing(Duration::from_millis(150)).await;
}
