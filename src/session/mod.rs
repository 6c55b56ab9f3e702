//! One STOMP connection: the CONNECT handshake, the read loop with its frame handling, and the
//! writer task that drains the bounded outbound queue. Knows nothing of chats: SEND and
//! SUBSCRIBE go to the [`Router`].
//!
//! Two tasks per session: this one reads and handles frames in order (the chat SENDs side by
//! side, answered in order: `inflight.rs`); the writer owns the socket's sending half, so a
//! slow client never stalls the tasks that deliver to it (they only append to its mailbox,
//! [`SessionHandle`], and overflowing it cuts the client off).
//!
//! Files: the handshake (`connect.rs`), the read loop and its deadlines (`reader.rs`), each
//! client frame (`frames.rs`), pipelined SENDs (`inflight.rs`), transactions
//! (`transaction.rs`), the writer (`writer.rs`), ERROR frames (`fatal.rs`), and the transports
//! (`transport.rs`, `memory.rs`).

mod connect;
mod fatal;
mod frames;
mod inflight;
pub mod memory;
mod reader;
mod transaction;
pub mod transport;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use bytestring::ByteString;
use stomp_codec::{Command, Decoder, Frame, Limits, Version, encode};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};

use crate::auth::Authenticator;
use crate::config::{Config, HeartBeat};
use crate::delivery::SessionOrigin;
use crate::delivery::{Outgoing, SessionHandle, SessionLimits, UnackedLimits};
use crate::hub::AddSessionError;
use crate::metrics::{ErrorReason, Metrics};
use crate::router::Router;
use connect::{Accepted, accept, read_connect, refuse};
use fatal::Fatal;
use transport::{Inbound, Outbound};
use writer::write_loop;

/// What every session needs from the broker.
#[derive(Clone)]
pub struct SessionContext {
    /// Destinations.
    pub router: Router,
    /// Token verification.
    pub auth: Arc<Authenticator>,
    /// Settings.
    pub settings: Arc<SessionSettings>,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
    ids: Arc<AtomicU64>,
}

/// The configuration a session reads.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// Codec limits.
    pub limits: Limits,
    /// The server's heart-beat offer.
    pub heartbeat: HeartBeat,
    /// Time allowed for CONNECT.
    pub connect_timeout: Duration,
    /// Time a frame may take from its first byte to its last.
    pub frame_timeout: Duration,
    /// Outbound queue bound.
    pub max_outbound_bytes: usize,
    /// Pipelined SENDs under way at once, at most (see `inflight.rs`).
    pub max_inflight_sends: usize,
    /// Their bytes on the wire, at most.
    pub max_inflight_bytes: usize,
    /// Unacknowledged deliveries a session may hold.
    pub unacked: UnackedLimits,
    /// Open transactions per session.
    pub max_transactions: usize,
    /// Frames per transaction.
    pub max_transaction_frames: usize,
    /// Bytes held by a session's open transactions together.
    pub max_transaction_bytes: usize,
    /// Subscriptions per session.
    pub max_subscriptions: usize,
    /// Default and maximum prefetch of client-ack queue subscriptions.
    pub queue_prefetch: usize,
    /// The `server` header of CONNECTED.
    pub server_name: String,
}

impl SessionSettings {
    /// Reads the settings from the configuration.
    pub fn from_config(config: &Config) -> SessionSettings {
        SessionSettings {
            limits: Limits {
                max_frame_bytes: config.limits.max_frame_bytes,
                max_headers: config.limits.max_headers,
                max_header_line_bytes: config.limits.max_header_line_bytes,
                max_body_bytes: config.limits.max_frame_bytes,
            },
            heartbeat: config.stomp.heartbeat_ms,
            connect_timeout: config.connect_timeout(),
            frame_timeout: Duration::from_millis(config.limits.frame_timeout_ms),
            max_outbound_bytes: config.limits.max_outbound_bytes,
            max_inflight_sends: config.limits.max_inflight_sends.max(1),
            max_inflight_bytes: config.limits.max_inflight_bytes,
            unacked: UnackedLimits {
                per_session: config.limits.max_unacked,
                per_subscription: config.limits.max_unacked_per_subscription,
            },
            max_transactions: config.stomp.max_transactions,
            max_transaction_frames: config.stomp.max_transaction_frames,
            max_transaction_bytes: config.stomp.max_transaction_bytes,
            max_subscriptions: config.stomp.max_subscriptions,
            queue_prefetch: config.limits.queue_prefetch,
            server_name: format!("broker/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl SessionContext {
    /// A context for the sessions of one broker.
    pub fn new(
        router: Router,
        auth: Arc<Authenticator>,
        settings: SessionSettings,
        shutdown: CancellationToken,
    ) -> SessionContext {
        SessionContext {
            router,
            auth,
            settings: Arc::new(settings),
            shutdown,
            ids: Arc::new(AtomicU64::new(1)),
        }
    }
}

/// How a session ended, for the close that follows.
enum Ending {
    /// The peer closed or the socket failed: nothing more to send.
    Gone,
    /// Close after what is queued (DISCONNECT).
    Graceful,
    /// Send an ERROR, then close.
    Error(Fatal),
}

/// Serves one connection until it ends. `query_token` is the `access_token` of the WebSocket
/// upgrade, used when CONNECT carries none.
pub async fn run<I: Inbound, O: Outbound>(
    mut inbound: I,
    mut outbound: O,
    query_token: Option<String>,
    origin: SessionOrigin,
    context: SessionContext,
) {
    let mut decoder = Decoder::new(context.settings.limits);
    let mut buf = BytesMut::new();
    let Some((connect, accepted)) = handshake(
        &mut inbound,
        &mut outbound,
        &mut decoder,
        &mut buf,
        query_token.as_deref(),
        &context,
    )
    .await
    else {
        return;
    };
    decoder.set_version(accepted.version);
    let Accepted {
        identity,
        version,
        outgoing_heartbeat,
        incoming_heartbeat,
        expires_at,
    } = accepted;
    let terms = Terms {
        version,
        outgoing_heartbeat,
        incoming_heartbeat,
        expires_at,
    };

    let id = context.ids.fetch_add(1, Ordering::Relaxed);
    let name = ByteString::from(format!("{}-{id}", context.router.hub().node_id()));
    // At debug level only: an enabled span costs every session a registry slot and its
    // formatted fields for as long as it lives.
    let span = debug_span!("session", id, user = %identity.user_id);
    let handle = SessionHandle::new(
        id,
        name.clone(),
        identity,
        version,
        origin,
        SessionLimits {
            max_outbound_bytes: context.settings.max_outbound_bytes,
            unacked: context.settings.unacked,
        },
        context.shutdown.child_token(),
    );
    let connected = connected_frame(&connect, &handle, &context.settings, name);
    // The CONNECT frame (and its buffer) is not needed for the rest of a long session.
    drop(connect);
    let connection = Connection {
        inbound,
        outbound,
        decoder,
        buf,
    };
    serve(connection, handle, connected, terms, context)
        .instrument(span)
        .await;
}

/// Reads CONNECT within the connect timeout and authenticates it. On a refusal (or a peer
/// that goes, or a shutdown) the connection has been answered and `None` is returned.
async fn handshake<I: Inbound, O: Outbound>(
    inbound: &mut I,
    outbound: &mut O,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    query_token: Option<&str>,
    context: &SessionContext,
) -> Option<(Frame, Accepted)> {
    let connect = tokio::select! {
        biased;
        () = context.shutdown.cancelled() => return None,
        result = tokio::time::timeout(
            context.settings.connect_timeout,
            read_connect(inbound, decoder, buf),
        ) => match result {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return None,
            Ok(Err(fatal)) => {
                refuse(outbound, fatal, Version::V1_2).await;
                return None;
            }
            Err(_) => {
                let fatal = Fatal::new(
                    ErrorReason::Unexpected,
                    "connect timeout",
                    "no CONNECT frame within the connect timeout",
                );
                refuse(outbound, fatal, Version::V1_2).await;
                return None;
            }
        },
    };
    match accept(&connect, query_token, context) {
        Ok(accepted) => Some((connect, accepted)),
        Err(refused) => {
            let (fatal, version) = *refused;
            if fatal.reason == ErrorReason::Unauthorized {
                Metrics::get().auth_failures.increment(1);
            }
            refuse(outbound, fatal, version).await;
            None
        }
    }
}

/// The CONNECTED frame that answers `connect`.
fn connected_frame(
    connect: &Frame,
    handle: &SessionHandle,
    settings: &SessionSettings,
    name: ByteString,
) -> Frame {
    let mut connected = Frame::new(Command::Connected)
        .header("version", handle.version.as_str())
        .header(
            "heart-beat",
            format!(
                "{},{}",
                settings.heartbeat.send_ms, settings.heartbeat.expect_ms
            ),
        )
        .header("server", settings.server_name.as_str())
        .header("session", name)
        .header("user-name", handle.user_id());
    if let Some(receipt) = connect.headers.get_shared("receipt") {
        connected.headers.push("receipt-id", receipt.clone());
    }
    connected
}

/// What CONNECT agreed, beyond who is connected.
#[derive(Clone, Copy)]
struct Terms {
    version: Version,
    outgoing_heartbeat: Option<Duration>,
    incoming_heartbeat: Option<Duration>,
    /// When the token expires, and the session with it.
    expires_at: SystemTime,
}

/// The transport halves and the read state of an accepted connection.
struct Connection<I, O> {
    inbound: I,
    outbound: O,
    decoder: Decoder,
    /// Bytes read and not decoded yet (frames that arrived with CONNECT among them).
    buf: BytesMut,
}

/// Runs an accepted session: registers it with the hub, answers CONNECTED, starts the writer,
/// reads until the session ends, then closes it and unregisters it.
async fn serve<I: Inbound, O: Outbound>(
    connection: Connection<I, O>,
    handle: Arc<SessionHandle>,
    connected: Frame,
    terms: Terms,
    context: SessionContext,
) {
    let Connection {
        mut inbound,
        mut outbound,
        mut decoder,
        mut buf,
    } = connection;
    let hub = context.router.hub().clone();
    let first = match hub.add_session(&handle).await {
        Ok(first) => first,
        Err(error @ AddSessionError::TooMany { .. }) => {
            let mut fatal = Fatal::new(
                ErrorReason::TooManySessions,
                "too many sessions",
                format!("{error} on this node; close one and connect again"),
            );
            fatal.receipt = connected.headers.get_shared("receipt-id").cloned();
            return refuse(&mut outbound, fatal, terms.version).await;
        }
        Err(error) => {
            let fatal = Fatal::new(
                ErrorReason::Unexpected,
                "unavailable",
                format!("cannot register the session: {error}"),
            );
            hub.remove_session(&handle).await;
            return refuse(&mut outbound, fatal, terms.version).await;
        }
    };
    push_frame(&handle, &connected);
    drop(connected);
    let metrics = Metrics::get();
    metrics.connections.increment(1.0);
    if let Some(gauge) = sessions_gauge(metrics, handle.origin.transport) {
        gauge.increment(1.0);
    }
    for observer in context.router.observers() {
        observer.opened(&handle, first);
    }
    debug!("connected");

    // Not instrumented with the session's span: entering it on every wake-up is a
    // measurable part of a delivery, and the writer logs its session id itself.
    let mut writer = tokio::spawn(write_loop(
        outbound,
        handle.clone(),
        terms.outgoing_heartbeat,
        context.shutdown.clone(),
    ));
    let session = Session {
        handle: handle.clone(),
        context: context.clone(),
        transactions: HashMap::new(),
        inflight: None,
    };
    let ending = session
        .read_loop(
            &mut inbound,
            &mut decoder,
            &mut buf,
            terms.incoming_heartbeat,
            terms.expires_at,
        )
        .await;
    match ending {
        Ending::Gone => handle.close(),
        Ending::Graceful => {
            handle.push(Outgoing::Close, 0);
        }
        Ending::Error(fatal) => {
            debug!(message = %fatal.message, "closing with ERROR");
            metrics.error(fatal.reason);
            handle.push_encoded(Command::Error, fatal.encode(handle.version));
            handle.push(Outgoing::Close, 0);
        }
    }
    drop(inbound);
    // The writer ends after the Close item or when the session is cut; bound the wait so a
    // client that stopped reading cannot hold the session open.
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    handle.close();
    let last = hub.remove_session(&handle).await;
    for observer in context.router.observers() {
        observer.closed(&handle, last);
    }
    metrics.connections.decrement(1.0);
    if let Some(gauge) = sessions_gauge(metrics, handle.origin.transport) {
        gauge.decrement(1.0);
    }
    debug!("closed");
}

/// The gauge of open sessions over `transport`, if it is counted.
fn sessions_gauge(
    metrics: &crate::metrics::Metrics,
    transport: crate::delivery::Transport,
) -> Option<&metrics::Gauge> {
    match transport {
        crate::delivery::Transport::WebSocket => Some(&metrics.sessions_websocket),
        crate::delivery::Transport::Tcp => Some(&metrics.sessions_tcp),
        crate::delivery::Transport::Memory => None,
    }
}

fn push_frame(handle: &SessionHandle, frame: &Frame) -> bool {
    // Room for a RECEIPT or a short ERROR, the frames pushed this way, in one allocation.
    let mut buf = BytesMut::with_capacity(128);
    encode(frame, handle.version, &mut buf);
    handle.push_encoded(frame.command, buf.freeze())
}

/// The per-session state owned by the reading task.
struct Session {
    handle: Arc<SessionHandle>,
    context: SessionContext,
    transactions: HashMap<ByteString, transaction::Held>,
    /// Pipelined SENDs under way; allocated by the first one, so idle sessions carry none.
    inflight: Option<Box<inflight::Inflight>>,
}

#[cfg(test)]
mod inflight_tests;
#[cfg(test)]
mod tests;
