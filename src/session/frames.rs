//! What a connected session does with each client frame: SEND and SUBSCRIBE through the
//! router, UNSUBSCRIBE, ACK and NACK, DISCONNECT, and the RECEIPT or ERROR each may earn.
//! Transactions (BEGIN, COMMIT, ABORT) are in `transaction.rs`.

use std::sync::Arc;

use bytestring::ByteString;
use stomp_codec::{Command, Frame, Version};
use tracing::debug;

use super::fatal::Fatal;
use super::{Session, push_frame};
use crate::app_error::{AppError, ErrorCode};
use crate::delivery::{AckMode, settle_targets};
use crate::hub::{Publication, SubscribeError};
use crate::metrics::ErrorReason;
use crate::ordering::Turn;
use crate::router::{AfterReceipt, CURSOR_HEADERS, ReplaySource, RouteError};

impl Session {
    /// Handles one frame; `Ok(false)` ends the session gracefully.
    pub(super) async fn handle_frame(&mut self, frame: Frame) -> Result<bool, Fatal> {
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

    /// Sends the RECEIPT a frame asked for, if it asked.
    pub(super) fn receipt(&self, frame: &Frame) {
        if let Some(receipt) = frame.headers.get_shared("receipt") {
            push_frame(
                &self.handle,
                &Frame::new(Command::Receipt)
                    .header(ByteString::from_static("receipt-id"), receipt.clone()),
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

    /// SEND: to the router, or held by the frame's transaction while `may_buffer`.
    pub(super) async fn on_send(&mut self, frame: Frame, may_buffer: bool) -> Result<(), Fatal> {
        if may_buffer && self.in_transaction(&frame)? {
            return Ok(());
        }
        let Some(destination) = frame.get("destination") else {
            return Err(Fatal::missing("destination", &frame));
        };
        let result = self
            .context
            .router
            .send(
                &self.handle,
                destination,
                &frame.headers,
                &frame.body,
                Turn::free(),
            )
            .await;
        self.answer_send(&frame, result)
    }

    /// Answers a SEND the router has carried out: its RECEIPT then the work to do after it,
    /// an application error on `/user/queue/errors`, or the ERROR that ends the session.
    pub(super) fn answer_send(
        &self,
        frame: &Frame,
        result: Result<Option<AfterReceipt>, RouteError>,
    ) -> Result<(), Fatal> {
        match result {
            Ok(after_receipt) => {
                self.receipt(frame);
                if let Some(after_receipt) = after_receipt {
                    after_receipt();
                }
            }
            Err(RouteError::Forbidden(detail)) => {
                return Err(
                    Fatal::new(ErrorReason::Forbidden, "forbidden", detail).with_receipt(frame)
                );
            }
            Err(RouteError::App(error)) => self.app_error(error, frame),
        }
        Ok(())
    }

    /// SUBSCRIBE: authorised by the router, registered with the hub.
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
        // A subscription that asks for what it missed is registered closed (see
        // `crate::hub::replay`) and opened once the stored part is delivered.
        let replay = match replay_cursor(&frame, || router.replay_source(destination)) {
            Ok(replay) => replay,
            Err(header) => {
                return Err(Fatal::new(
                    ErrorReason::BadHeader,
                    format!("invalid {header} header"),
                    format!("{header} is 0 or more, on a destination that replays from it"),
                )
                .with_receipt(&frame));
            }
        };
        let gate = replay
            .as_ref()
            .map(|_| crate::hub::replay::ReplayGate::new());
        let result = router
            .hub()
            .subscribe(
                &self.handle,
                id.clone(),
                key,
                crate::hub::SubscribeOptions {
                    ack,
                    prefetch,
                    gate: gate.clone(),
                },
                self.context.settings.max_subscriptions,
            )
            .await;
        match result {
            Ok(()) => {
                router.subscribed(&self.handle, destination).await;
                if let (Some((since, (source, name))), Some(gate)) = (replay, gate) {
                    let missed = source.replay(&self.handle.identity, &name, since).await;
                    router.hub().open_gate(
                        &self.handle,
                        &id,
                        &gate,
                        missed.publications,
                        missed.up_to,
                    );
                }
                self.receipt(&frame);
                Ok(())
            }
            Err(error) => self.subscribe_refused(error, &frame),
        }
    }

    /// Answers a SUBSCRIBE the hub refused: an ERROR for what the client got wrong, an
    /// application error (the session goes on) for what the backends could not do.
    fn subscribe_refused(&self, error: SubscribeError, frame: &Frame) -> Result<(), Fatal> {
        match error {
            SubscribeError::IdInUse(id) => Err(Fatal::new(
                ErrorReason::BadHeader,
                "subscription id reused",
                format!("subscription id {id} is already in use"),
            )
            .with_receipt(frame)),
            SubscribeError::TooMany => Err(Fatal::new(
                ErrorReason::TooLarge,
                "too many subscriptions",
                format!(
                    "a session may hold at most {} subscriptions",
                    self.context.settings.max_subscriptions
                ),
            )
            .with_receipt(frame)),
            SubscribeError::Relay(error) => {
                self.app_error(
                    AppError::new(ErrorCode::Unavailable, error.to_string()),
                    frame,
                );
                Ok(())
            }
            SubscribeError::Queue(error) => {
                self.app_error(AppError::new(error.code(), error.to_string()), frame);
                Ok(())
            }
        }
    }

    /// UNSUBSCRIBE by id (by destination for 1.0 without one).
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

    /// ACK or NACK: settles the deliveries it names, or is held by its transaction while
    /// `may_buffer`.
    pub(super) fn on_ack(&mut self, frame: Frame, may_buffer: bool) -> Result<(), Fatal> {
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

/// A destination's replay source and the name it replays under.
type Source = (Arc<dyn ReplaySource>, String);

/// The SUBSCRIBE's replay cursor, if it asks for one: its value and the source to replay from
/// (looked up only then). `Err` names the cursor header that is malformed or that this
/// destination does not take.
fn replay_cursor(
    frame: &Frame,
    source: impl FnOnce() -> Option<Source>,
) -> Result<Option<(i64, Source)>, &'static str> {
    if CURSOR_HEADERS
        .iter()
        .all(|header| frame.get(header).is_none())
    {
        return Ok(None);
    }
    let source = source();
    let mut replay = None;
    for header in CURSOR_HEADERS {
        let Some(text) = frame.get(header) else {
            continue;
        };
        match (text.parse::<i64>(), &source) {
            (Ok(since), Some(found)) if since >= 0 && found.0.cursor_header() == header => {
                replay = Some((since, found.clone()));
            }
            _ => return Err(header),
        }
    }
    Ok(replay)
}
