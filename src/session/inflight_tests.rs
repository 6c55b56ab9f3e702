//! Pipelined SENDs over the in-memory transport, against a handler that the test holds: the
//! bound on what a session has under way, the frame order of the ordered step and of the
//! answers, frames that wait for the SENDs before them, and the deadlines that keep running.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stomp_codec::{Command, Frame};
use tokio::sync::Semaphore;

use super::memory::MemoryPeer;
use super::tests::{connect, context_with, next, start};
use super::{SessionContext, run};
use crate::app_error::AppError;
use crate::router::{AfterReceipt, AppHandler, AppRequest, Extensions, HandlerFuture};

/// A pipelining handler of `/app/probe`: counts the SENDs it has started, records the order in
/// which they take their ordered step, and answers each only when the test gives a permit.
struct Probe {
    started: AtomicUsize,
    order: Mutex<Vec<usize>>,
    permits: Semaphore,
    /// The earlier a frame, the longer it takes to reach its ordered step.
    stagger: bool,
}

impl Default for Probe {
    fn default() -> Probe {
        Probe {
            started: AtomicUsize::new(0),
            order: Mutex::new(Vec::new()),
            permits: Semaphore::new(0),
            stagger: false,
        }
    }
}

impl AppHandler for Probe {
    fn handle<'a>(
        &'a self,
        request: AppRequest<'a>,
    ) -> HandlerFuture<'a, Result<Option<AfterReceipt>, AppError>> {
        Box::pin(async move {
            let mut turn = request.turn;
            let n: usize = std::str::from_utf8(request.body)
                .ok()
                .and_then(|b| b.parse().ok())
                .ok_or_else(|| AppError::invalid("not a number"))?;
            self.started.fetch_add(1, Ordering::SeqCst);
            if self.stagger {
                tokio::time::sleep(Duration::from_millis(40u64.saturating_sub(n as u64 * 2))).await;
            }
            turn.wait().await;
            self.order.lock().expect("order").push(n);
            drop(turn);
            self.permits.acquire().await.expect("permits").forget();
            Ok(None)
        })
    }

    fn pipelines(&self) -> bool {
        true
    }
}

fn probe_context(config: &str, probe: Arc<Probe>) -> SessionContext {
    context_with(config, Extensions::new().app("probe", probe))
}

fn probe_send(n: usize) -> Frame {
    Frame::new(Command::Send)
        .header("destination", "/app/probe")
        .header("receipt", format!("r{n}"))
        .body(n.to_string())
}

/// The receipt ids of the next `count` frames, failing on anything else.
async fn receipts(peer: &mut MemoryPeer, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let frame = next(peer).await.expect("a frame");
        assert_eq!(frame.command, Command::Receipt, "{frame:?}");
        ids.push(frame.get("receipt-id").unwrap_or_default().to_owned());
    }
    ids
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_session_reads_no_more_than_its_bound_of_sends_ahead() {
    let probe = Arc::new(Probe::default());
    let context = probe_context("[limits]\nmax_inflight_sends = 3\n", probe.clone());
    let (mut peer, token, _session) = start(&context, "backend");
    connect(&mut peer, &token).await;

    for n in 0..10 {
        peer.send(&probe_send(n));
    }
    settle().await;
    assert_eq!(
        probe.started.load(Ordering::SeqCst),
        3,
        "three under way, no more"
    );
    // One answered makes room for one more.
    probe.permits.add_permits(1);
    assert_eq!(receipts(&mut peer, 1).await, ["r0"]);
    settle().await;
    assert_eq!(probe.started.load(Ordering::SeqCst), 4);
    probe.permits.add_permits(9);
    let expected: Vec<String> = (1..10).map(|n| format!("r{n}")).collect();
    assert_eq!(receipts(&mut peer, 9).await, expected);
    assert_eq!(*probe.order.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn sends_take_their_step_and_are_answered_in_frame_order_whatever_their_pace() {
    let probe = Arc::new(Probe {
        stagger: true,
        ..Probe::default()
    });
    let context = probe_context("", probe.clone());
    let (mut peer, token, _session) = start(&context, "backend");
    connect(&mut peer, &token).await;

    probe.permits.add_permits(1000);
    for n in 0..20 {
        peer.send(&probe_send(n));
    }
    let expected: Vec<String> = (0..20).map(|n| format!("r{n}")).collect();
    assert_eq!(receipts(&mut peer, 20).await, expected);
    assert_eq!(*probe.order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    // They ran side by side: all had started before the first could take its step.
    assert_eq!(probe.started.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn other_frames_wait_for_the_sends_before_them() {
    let probe = Arc::new(Probe::default());
    let context = probe_context("", probe.clone());
    let (mut peer, token, session) = start(&context, "backend");
    connect(&mut peer, &token).await;

    for n in 0..3 {
        peer.send(&probe_send(n));
    }
    peer.send(
        &Frame::new(Command::Subscribe)
            .header("destination", "/topic/news")
            .header("id", "s1")
            .header("receipt", "sub"),
    );
    peer.send(&probe_send(3));
    peer.send(&Frame::new(Command::Disconnect).header("receipt", "bye"));
    settle().await;
    // Nothing is answered, and the SEND after the SUBSCRIBE is not even read.
    assert_eq!(probe.started.load(Ordering::SeqCst), 3);
    probe.permits.add_permits(4);
    assert_eq!(
        receipts(&mut peer, 6).await,
        ["r0", "r1", "r2", "sub", "r3", "bye"]
    );
    assert!(next(&mut peer).await.is_none(), "closed after DISCONNECT");
    tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .expect("the session ends")
        .expect("no panic");
}

#[tokio::test]
async fn a_refused_send_is_answered_in_its_place_and_does_not_hold_up_the_rest() {
    let probe = Arc::new(Probe::default());
    let context = probe_context("", probe.clone());
    let (mut peer, token, _session) = start(&context, "backend");
    connect(&mut peer, &token).await;
    peer.send(
        &Frame::new(Command::Subscribe)
            .header("destination", "/user/queue/errors")
            .header("id", "errors")
            .header("receipt", "sub"),
    );
    assert_eq!(receipts(&mut peer, 1).await, ["sub"]);

    probe.permits.add_permits(10);
    peer.send(&probe_send(0));
    peer.send(
        &Frame::new(Command::Send)
            .header("destination", "/app/probe")
            .header("receipt", "bad")
            .body("not a number"),
    );
    peer.send(&probe_send(2));
    assert_eq!(receipts(&mut peer, 1).await, ["r0"]);
    let error = next(&mut peer).await.expect("the error");
    assert_eq!(error.command, Command::Message);
    let body: serde_json::Value = serde_json::from_slice(&error.body).expect("JSON");
    assert_eq!(body["receiptId"], "bad", "{body}");
    assert_eq!(receipts(&mut peer, 1).await, ["r2"]);
    assert_eq!(*probe.order.lock().unwrap(), [0, 2]);
}

#[tokio::test]
async fn the_heart_beat_deadline_runs_while_sends_wait_for_their_commit() {
    let probe = Arc::new(Probe::default());
    let context = probe_context("[stomp]\nheartbeat_ms = \"0,100\"\n", probe.clone());
    let (mut peer, token, session) = start(&context, "backend");
    peer.send(
        &Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", "test")
            .header("heart-beat", "100,0")
            .header("passcode", token.as_str()),
    );
    assert_eq!(
        next(&mut peer).await.expect("CONNECTED").command,
        Command::Connected
    );
    // The client falls silent, its send waiting for a commit well past the silence limit
    // (200 ms); the answer still goes out before the ERROR.
    peer.send(&probe_send(0));
    tokio::time::sleep(Duration::from_millis(600)).await;
    probe.permits.add_permits(1);
    assert_eq!(receipts(&mut peer, 1).await, ["r0"]);
    let error = next(&mut peer).await.expect("ERROR");
    assert_eq!(error.command, Command::Error);
    assert_eq!(
        error.get("message"),
        Some("heart-beat timeout"),
        "{error:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .expect("the session ends")
        .expect("no panic");
}

#[tokio::test]
async fn the_heart_beat_deadline_is_suspended_while_a_full_session_does_not_read() {
    let probe = Arc::new(Probe::default());
    let context = probe_context(
        "[stomp]\nheartbeat_ms = \"0,100\"\n[limits]\nmax_inflight_sends = 1\n",
        probe.clone(),
    );
    let (mut peer, token, _session) = start(&context, "backend");
    peer.send(
        &Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", "test")
            .header("heart-beat", "100,0")
            .header("passcode", token.as_str()),
    );
    assert_eq!(
        next(&mut peer).await.expect("CONNECTED").command,
        Command::Connected
    );
    // The session is full with the first and does not read the second for 600 ms, three times
    // the silence limit: that is not the client's silence.
    peer.send(&probe_send(0));
    peer.send(&probe_send(1));
    tokio::time::sleep(Duration::from_millis(600)).await;
    probe.permits.add_permits(2);
    assert_eq!(receipts(&mut peer, 2).await, ["r0", "r1"]);
    // Silent from then on, it is cut as usual.
    let error = next(&mut peer).await.expect("ERROR");
    assert_eq!(
        error.get("message"),
        Some("heart-beat timeout"),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_token_expires_while_a_full_session_waits() {
    let probe = Arc::new(Probe::default());
    let context = probe_context("[limits]\nmax_inflight_sends = 1\n", probe.clone());
    let token = context
        .auth
        .mint(
            "backend",
            &[crate::auth::Role::System],
            Duration::from_secs(1),
        )
        .expect("token");
    let (inbound, outbound, mut peer) = super::memory::pair();
    let _session = tokio::spawn(run(
        inbound,
        outbound,
        None,
        crate::delivery::SessionOrigin::MEMORY,
        context.clone(),
    ));
    connect(&mut peer, &token).await;
    // The first waits; the second cannot be read: the session is not reading at all, and its
    // token expires meanwhile.
    peer.send(&probe_send(0));
    peer.send(&probe_send(1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    probe.permits.add_permits(2);
    assert_eq!(receipts(&mut peer, 1).await, ["r0"]);
    let error = next(&mut peer).await.expect("ERROR");
    assert_eq!(error.command, Command::Error);
    assert_eq!(error.get("message"), Some("unauthorized"), "{error:?}");
    assert_eq!(
        probe.started.load(Ordering::SeqCst),
        1,
        "the second was never read"
    );
}
