//! The session's state machine over the in-memory transport: handshake, a SUBSCRIBE / SEND /
//! MESSAGE round trip, a malformed frame, and DISCONNECT, with no socket.

use std::time::Duration;

use stomp_codec::{Command, Frame};
use tokio::task::JoinHandle;

use super::memory::{MemoryPeer, pair};
use super::*;
use crate::auth::Role;
use crate::hub::{Hub, HubSettings, LocalQueues, LocalRelay};
use crate::router::{Acl, Extensions};

/// How long a test waits for the session's next frame before failing.
const PATIENCE: Duration = Duration::from_secs(5);

/// A bare broker's session context (no chat layer) and the authenticator of its tokens.
fn context() -> SessionContext {
    context_with("", Extensions::new())
}

/// A session context with `config` (TOML over the defaults) and `extensions`.
pub(super) fn context_with(config: &str, extensions: Extensions) -> SessionContext {
    let config = Config::from_toml("test", config, std::iter::empty()).expect("config");
    let hub = Hub::new(
        HubSettings {
            node_id: "n".into(),
            max_sessions_per_user: 4,
        },
        Arc::new(LocalRelay),
        Arc::new(LocalQueues::new(16)),
    );
    let router = Router::new(hub, Acl::new(config.acl.clone()), extensions);
    SessionContext::new(
        router,
        Arc::new(Authenticator::hs256(b"session unit tests")),
        SessionSettings::from_config(&config),
        CancellationToken::new(),
    )
}

/// A session for `user` (with the `system` role, which the default ACL lets use generic
/// topics) served over an in-memory pair, and the client's end of it.
pub(super) fn start(context: &SessionContext, user: &str) -> (MemoryPeer, String, JoinHandle<()>) {
    let token = context
        .auth
        .mint(user, &[Role::System], Duration::from_secs(60))
        .expect("token");
    let (inbound, outbound, peer) = pair();
    let session = tokio::spawn(run(
        inbound,
        outbound,
        None,
        crate::delivery::SessionOrigin::MEMORY,
        context.clone(),
    ));
    (peer, token, session)
}

/// The session's next frame, failing the test when none comes in time.
pub(super) async fn next(peer: &mut MemoryPeer) -> Option<Frame> {
    tokio::time::timeout(PATIENCE, peer.frame())
        .await
        .expect("a frame in time")
        .expect("a well-formed frame")
}

/// Connects and returns the CONNECTED frame.
pub(super) async fn connect(peer: &mut MemoryPeer, token: &str) -> Frame {
    assert!(
        peer.send(
            &Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "test")
                .header("passcode", token),
        )
    );
    next(peer).await.expect("CONNECTED")
}

#[tokio::test]
async fn connect_is_answered_with_connected() {
    let context = context();
    let (mut peer, token, _session) = start(&context, "alice");

    let connected = connect(&mut peer, &token).await;

    assert_eq!(connected.command, Command::Connected);
    assert_eq!(connected.get("version"), Some("1.2"));
    assert_eq!(connected.get("user-name"), Some("alice"));
    assert!(
        connected
            .get("session")
            .is_some_and(|s| s.starts_with("n-"))
    );
}

#[tokio::test]
async fn a_send_to_a_subscribed_topic_comes_back_as_a_message() {
    let context = context();
    let (mut peer, token, _session) = start(&context, "alice");
    connect(&mut peer, &token).await;

    peer.send(
        &Frame::new(Command::Subscribe)
            .header("destination", "/topic/news")
            .header("id", "s1")
            .header("receipt", "r1"),
    );
    let receipt = next(&mut peer).await.expect("RECEIPT");
    assert_eq!(receipt.command, Command::Receipt);
    assert_eq!(receipt.get("receipt-id"), Some("r1"));

    peer.send(
        &Frame::new(Command::Send)
            .header("destination", "/topic/news")
            .body("hello"),
    );
    let message = next(&mut peer).await.expect("MESSAGE");
    assert_eq!(message.command, Command::Message);
    assert_eq!(message.get("destination"), Some("/topic/news"));
    assert_eq!(message.get("subscription"), Some("s1"));
    assert!(message.get("message-id").is_some());
    assert_eq!(&message.body[..], b"hello");
}

#[tokio::test]
async fn a_malformed_frame_is_answered_with_error_and_close() {
    let context = context();
    let (mut peer, token, session) = start(&context, "alice");
    connect(&mut peer, &token).await;

    peer.send_bytes(&b"NOT-A-COMMAND\n\n\0"[..]);

    let error = next(&mut peer).await.expect("ERROR");
    assert_eq!(error.command, Command::Error);
    assert!(next(&mut peer).await.is_none(), "the connection is closed");
    tokio::time::timeout(PATIENCE, session)
        .await
        .expect("the session ends")
        .expect("the session does not panic");
}

#[tokio::test]
async fn disconnect_is_answered_with_its_receipt_then_close() {
    let context = context();
    let (mut peer, token, session) = start(&context, "alice");
    connect(&mut peer, &token).await;

    peer.send(&Frame::new(Command::Disconnect).header("receipt", "bye"));

    let receipt = next(&mut peer).await.expect("RECEIPT");
    assert_eq!(receipt.command, Command::Receipt);
    assert_eq!(receipt.get("receipt-id"), Some("bye"));
    assert!(next(&mut peer).await.is_none(), "the connection is closed");
    tokio::time::timeout(PATIENCE, session)
        .await
        .expect("the session ends")
        .expect("the session does not panic");
    assert_eq!(context.router.hub().session_count(), 0);
}
