//! One STOMP connection: the CONNECT handshake, the read loop with its frame handling, and the
//! writer task that drains the bounded outbound queue. Knows nothing of chats: SEND and
//! SUBSCRIBE go to the [`Router`].
//!
//! Two tasks per session: this one reads and handles frames in order; the writer owns the
//! socket's sending half, so a slow client never stalls the tasks that deliver to it (they only
//! append to its queue, and overflowing the queue cuts the client off).

mod connect;
mod fatal;
mod transaction;
pub mod transport;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use bytestring::ByteString;
use stomp_codec::{Command, Decoded, Decoder, Frame, Limits, Version, encode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};

use crate::app_error::AppError;
use crate::auth::Authenticator;
use crate::config::{Config, HeartBeat};
use crate::delivery::{
    AckMode, Outgoing, SessionHandle, SessionLimits, UnackedLimits, settle_targets,
};
use crate::hub::{AddSessionError, Publication, SubscribeError};
use crate::metrics::{ErrorReason, Metrics};
use crate::router::{RouteError, Router};
use connect::{accept, read_connect, refuse};
use fatal::{Fatal, transport_too_large};
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
    context: SessionContext,
) {
    let settings = context.settings.clone();
    let mut decoder = Decoder::new(settings.limits);
    let mut buf = BytesMut::new();

    let connect = tokio::select! {
        biased;
        () = context.shutdown.cancelled() => return,
        result = tokio::time::timeout(
            settings.connect_timeout,
            read_connect(&mut inbound, &mut decoder, &mut buf),
        ) => match result {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(fatal)) => return refuse(&mut outbound, fatal, Version::V1_2).await,
            Err(_) => {
                let fatal = Fatal::new(
                    ErrorReason::Unexpected,
                    "connect timeout",
                    "no CONNECT frame within the connect timeout",
                );
                return refuse(&mut outbound, fatal, Version::V1_2).await;
            }
        },
    };
    let accepted = match accept(&connect, query_token.as_deref(), &context) {
        Ok(accepted) => accepted,
        Err(refused) => {
            let (fatal, version) = *refused;
            if fatal.reason == ErrorReason::Unauthorized {
                Metrics::get().auth_failures.increment(1);
            }
            return refuse(&mut outbound, fatal, version).await;
        }
    };
    decoder.set_version(accepted.version);

    let id = context.ids.fetch_add(1, Ordering::Relaxed);
    let name = ByteString::from(format!("{}-{id}", context.router.hub().node_id()));
    // At debug level only: an enabled span costs every session a registry slot and its
    // formatted fields for as long as it lives.
    let span = debug_span!("session", id, user = %accepted.identity.user_id);
    let closed = context.shutdown.child_token();
    let handle = SessionHandle::new(
        id,
        name.clone(),
        accepted.identity,
        accepted.version,
        SessionLimits {
            max_outbound_bytes: settings.max_outbound_bytes,
            unacked: settings.unacked,
        },
        closed,
    );
    let mut connected = Frame::new(Command::Connected)
        .header("version", accepted.version.as_str())
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
    // The CONNECT frame (and its buffer) is not needed for the rest of a long session.
    drop(connect);

    let session = Session {
        handle: handle.clone(),
        context: context.clone(),
        transactions: HashMap::new(),
    };
    async move {
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
                return refuse(&mut outbound, fatal, accepted.version).await;
            }
            Err(error) => {
                let fatal = Fatal::new(
                    ErrorReason::Unexpected,
                    "unavailable",
                    format!("cannot register the session: {error}"),
                );
                hub.remove_session(&handle).await;
                return refuse(&mut outbound, fatal, accepted.version).await;
            }
        };
        push_frame(&handle, &connected);
        drop(connected);
        let metrics = Metrics::get();
        metrics.connections.increment(1.0);
        for observer in context.router.observers() {
            observer.opened(&handle, first);
        }
        debug!("connected");

        // Not instrumented with the session's span: entering it on every wake-up is a
        // measurable part of a delivery, and the writer logs its session id itself.
        let writer = tokio::spawn(write_loop(
            outbound,
            handle.clone(),
            accepted.outgoing_heartbeat,
            context.shutdown.clone(),
        ));
        let ending = session
            .read_loop(
                &mut inbound,
                &mut decoder,
                &mut buf,
                accepted.incoming_heartbeat,
                accepted.expires_at,
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
        let mut writer = writer;
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
        debug!("closed");
    }
    .instrument(span)
    .await;
}

fn push_frame(handle: &SessionHandle, frame: &Frame) -> bool {
    let mut buf = BytesMut::new();
    encode(frame, handle.version, &mut buf);
    handle.push_encoded(frame.command, buf.freeze())
}

/// The per-session state owned by the reading task.
struct Session {
    handle: Arc<SessionHandle>,
    context: SessionContext,
    transactions: HashMap<ByteString, transaction::Held>,
}

impl Session {
    async fn read_loop<I: Inbound>(
        mut self,
        inbound: &mut I,
        decoder: &mut Decoder,
        buf: &mut BytesMut,
        heartbeat: Option<Duration>,
        expires_at: SystemTime,
    ) -> Ending {
        let expiry = Instant::now()
            + expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
        // STOMP: the peer may be considered dead after twice the agreed interval of silence.
        let silence_limit = heartbeat.map(|d| d * 2);
        let far = Duration::from_secs(86400 * 365);
        let mut silent_at = Instant::now() + silence_limit.unwrap_or(far);
        // When the frame that has begun to arrive (in `buf` or, for a WebSocket message not
        // complete yet, in the transport) received its first byte. A session idle between
        // frames has none, and no deadline for it.
        let mut frame_started: Option<Instant> = None;
        // One timer for the deadlines (the token's expiry, the heart-beat silence, the frame
        // under way): it fires at the earliest. Nothing more is kept across reads for them,
        // since this state lives as long as the session.
        let deadline = |silent_at: Instant, frame_started: Option<Instant>, timeout: Duration| {
            let frame_due = frame_started.map_or(expiry, |started| started + timeout);
            silent_at.min(expiry).min(frame_due)
        };
        let timer = tokio::time::sleep_until(expiry.min(silent_at));
        // The session's close token is a child of the shutdown token, so this also ends the
        // session on shutdown; nothing can be queued any more, and the writer sends the ERROR.
        let closed = self.handle.closed().clone().cancelled_owned();
        // Created once, not per read: each would register a timer and a waiter again.
        tokio::pin!(timer, closed);
        // Frames that arrived together with CONNECT.
        if let Some(ending) = self.drain(decoder, buf).await {
            return ending;
        }
        if !buf.is_empty() {
            frame_started = Some(Instant::now());
            let timeout = self.context.settings.frame_timeout;
            timer
                .as_mut()
                .reset(deadline(silent_at, frame_started, timeout));
        }
        loop {
            tokio::select! {
                biased;
                () = &mut closed => return Ending::Gone,
                () = &mut timer => {
                    let now = Instant::now();
                    if now >= expiry {
                        Metrics::get().auth_failures.increment(1);
                        return Ending::Error(Fatal::unauthorized("token expired"));
                    }
                    let timeout = self.context.settings.frame_timeout;
                    if frame_started.is_some_and(|started| now >= started + timeout) {
                        return Ending::Error(Fatal::new(
                            ErrorReason::FrameTimeout,
                            "frame timeout",
                            "a frame was not complete within limits.frame_timeout_ms of its \
                             first byte",
                        ));
                    }
                    return Ending::Error(Fatal::new(
                        ErrorReason::HeartbeatTimeout,
                        "heart-beat timeout",
                        "nothing received within twice the heart-beat interval",
                    ));
                }
                read = inbound.read(buf) => {
                    match read {
                        Ok(true) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::FileTooLarge => {
                            return Ending::Error(transport_too_large(&error));
                        }
                        Ok(false) | Err(_) => return Ending::Gone,
                    }
                    let arrived = Instant::now();
                    let before = buf.len();
                    if let Some(ending) = self.drain(decoder, buf).await {
                        return ending;
                    }
                    // A frame left incomplete began in this read when the read completed
                    // something before it, or when none was under way.
                    let in_buffer = if buf.is_empty() {
                        None
                    } else if buf.len() < before || frame_started.is_none() {
                        Some(arrived)
                    } else {
                        frame_started
                    };
                    let started = match (in_buffer, inbound.incomplete_since()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if silence_limit.is_some() || started != frame_started {
                        if let Some(limit) = silence_limit {
                            silent_at = arrived + limit;
                        }
                        frame_started = started;
                        let timeout = self.context.settings.frame_timeout;
                        timer
                            .as_mut()
                            .reset(deadline(silent_at, frame_started, timeout));
                    }
                }
            }
        }
    }

    /// Handles every complete frame in `buf`.
    async fn drain(&mut self, decoder: &mut Decoder, buf: &mut BytesMut) -> Option<Ending> {
        loop {
            match decoder.decode(buf) {
                Ok(None) => {
                    // Most sessions are idle most of the time: an empty buffer is given back
                    // rather than kept for the next frame.
                    if buf.is_empty() {
                        *buf = BytesMut::new();
                        decoder.release_memory();
                    }
                    return None;
                }
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(Some(Decoded::Frame(frame))) => {
                    Metrics::get().frame_in(frame.command);
                    // Boxed: the state of handling a frame is large, and held inline it would
                    // be part of every idle session's task.
                    match Box::pin(self.handle_frame(frame)).await {
                        Ok(true) => {}
                        Ok(false) => return Some(Ending::Graceful),
                        Err(fatal) => return Some(Ending::Error(fatal)),
                    }
                }
                Err(error) => return Some(Ending::Error(error.into())),
            }
        }
    }

    /// Handles one frame; `Ok(false)` ends the session gracefully.
    async fn handle_frame(&mut self, frame: Frame) -> Result<bool, Fatal> {
        match frame.command {
            Command::Send => self.on_send(frame, true).await?,
            Command::Subscribe => self.on_subscribe(frame).await?,
            Command::Unsubscribe => self.on_unsubscribe(frame).await?,
            Command::Ack | Command::Nack => self.on_ack(frame, true)?,
            Command::Begin => self.on_begin(frame)?,
            Command::Commit => self.on_commit(frame).await?,
            Command::Abort => self.on_abort(frame)?,
            Command::Disconnect => {
                self.receipt(&frame);
                return Ok(false);
            }
            Command::Connect | Command::Stomp => {
                return Err(Fatal::new(
                    ErrorReason::Unexpected,
                    "already connected",
                    "CONNECT may only be sent once",
                )
                .with_receipt(&frame));
            }
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                return Err(Fatal::new(
                    ErrorReason::Unexpected,
                    "unexpected command",
                    format!("{} is a server frame", frame.command),
                )
                .with_receipt(&frame));
            }
        }
        Ok(true)
    }

    fn receipt(&self, frame: &Frame) {
        if let Some(receipt) = frame.headers.get_shared("receipt") {
            push_frame(
                &self.handle,
                &Frame::new(Command::Receipt).header("receipt-id", receipt.clone()),
            );
        }
    }

    /// Sends an application error to this session's `/user/queue/errors`.
    fn app_error(&self, mut error: AppError, frame: &Frame) {
        if error.receipt_id.is_none() {
            error.receipt_id = frame.get("receipt").map(str::to_owned);
        }
        debug!(code = ?error.code, message = %error.message, "application error");
        self.context.router.hub().deliver_to_session(
            &self.handle,
            "errors",
            Publication::json_event("error", error.to_json()),
        );
    }

    async fn on_send(&mut self, frame: Frame, may_buffer: bool) -> Result<(), Fatal> {
        if may_buffer && self.in_transaction(&frame)? {
            return Ok(());
        }
        let Some(destination) = frame.get("destination") else {
            return Err(Fatal::missing("destination", &frame));
        };
        match self
            .context
            .router
            .send(&self.handle, destination, &frame.headers, &frame.body)
            .await
        {
            Ok(after_receipt) => {
                self.receipt(&frame);
                if let Some(after_receipt) = after_receipt {
                    after_receipt();
                }
            }
            Err(RouteError::Forbidden(detail)) => {
                return Err(
                    Fatal::new(ErrorReason::Forbidden, "forbidden", detail).with_receipt(&frame)
                );
            }
            Err(RouteError::App(error)) => self.app_error(error, &frame),
        }
        Ok(())
    }

    async fn on_subscribe(&mut self, frame: Frame) -> Result<(), Fatal> {
        let Some(destination) = frame.get("destination") else {
            return Err(Fatal::missing("destination", &frame));
        };
        let id = match frame.headers.get_shared("id") {
            Some(id) => id.clone(),
            // STOMP 1.0 made the id optional; the destination then names the subscription.
            None if self.handle.version == Version::V1_0 => ByteString::from(destination),
            None => return Err(Fatal::missing("id", &frame)),
        };
        let Some(ack) = AckMode::parse(frame.get("ack")) else {
            return Err(Fatal::new(
                ErrorReason::BadHeader,
                "invalid ack header",
                "ack must be auto, client or client-individual",
            )
            .with_receipt(&frame));
        };
        let max_prefetch = self.context.settings.queue_prefetch;
        let prefetch = frame
            .get("prefetch-count")
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|p| *p > 0)
            .map_or(max_prefetch, |p| p.min(max_prefetch));
        let router = &self.context.router;
        let key = match router.authorize_subscribe(&self.handle, destination).await {
            Ok(key) => key,
            Err(RouteError::Forbidden(detail)) => {
                return Err(
                    Fatal::new(ErrorReason::Forbidden, "forbidden", detail).with_receipt(&frame)
                );
            }
            Err(RouteError::App(error)) => {
                self.app_error(error, &frame);
                return Ok(());
            }
        };
        let result = router
            .hub()
            .subscribe(
                &self.handle,
                id,
                key,
                ack,
                prefetch,
                self.context.settings.max_subscriptions,
            )
            .await;
        match result {
            Ok(()) => {
                router.subscribed(&self.handle, destination).await;
                self.receipt(&frame);
                Ok(())
            }
            Err(SubscribeError::IdInUse(id)) => Err(Fatal::new(
                ErrorReason::BadHeader,
                "subscription id reused",
                format!("subscription id {id} is already in use"),
            )
            .with_receipt(&frame)),
            Err(SubscribeError::TooMany) => Err(Fatal::new(
                ErrorReason::TooLarge,
                "too many subscriptions",
                format!(
                    "a session may hold at most {} subscriptions",
                    self.context.settings.max_subscriptions
                ),
            )
            .with_receipt(&frame)),
            Err(SubscribeError::Relay(error)) => {
                self.app_error(
                    AppError::new(crate::app_error::ErrorCode::Unavailable, error.to_string()),
                    &frame,
                );
                Ok(())
            }
            Err(SubscribeError::Queue(error)) => {
                self.app_error(AppError::new(error.code(), error.to_string()), &frame);
                Ok(())
            }
        }
    }

    async fn on_unsubscribe(&mut self, frame: Frame) -> Result<(), Fatal> {
        let id = match (frame.get("id"), self.handle.version) {
            (Some(id), _) => id,
            (None, Version::V1_0) => match frame.get("destination") {
                Some(destination) => destination,
                None => return Err(Fatal::missing("id", &frame)),
            },
            (None, _) => return Err(Fatal::missing("id", &frame)),
        };
        // Unsubscribing an unknown id is harmless; the client may have raced a server-side
        // removal (a member leaving a group).
        self.context
            .router
            .hub()
            .unsubscribe(&self.handle, id)
            .await;
        self.receipt(&frame);
        Ok(())
    }

    fn on_ack(&mut self, frame: Frame, may_buffer: bool) -> Result<(), Fatal> {
        if may_buffer && self.in_transaction(&frame)? {
            return Ok(());
        }
        // 1.2 names the delivery with `id` (our `ack` header); 1.0 and 1.1 with `message-id`,
        // which for client-ack subscriptions is the same delivery id.
        let id = match self.handle.version {
            Version::V1_2 => frame.get("id").or_else(|| frame.get("message-id")),
            _ => frame.get("message-id").or_else(|| frame.get("id")),
        };
        let Some(id) = id else {
            let name = if self.handle.version == Version::V1_2 {
                "id"
            } else {
                "message-id"
            };
            return Err(Fatal::missing(name, &frame));
        };
        let positive = frame.command == Command::Ack;
        let targets = id
            .parse::<u64>()
            .map(|delivery| self.handle.settle(delivery))
            .unwrap_or_default();
        settle_targets(targets, positive);
        self.receipt(&frame);
        Ok(())
    }
}
