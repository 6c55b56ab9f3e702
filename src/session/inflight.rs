//! Pipelined SENDs: a session goes on reading while the SENDs it has read wait for their
//! commit, so that one connection's throughput is not one over the commit latency.
//!
//! A SEND whose handler pipelines (the chat sends and notifications, see
//! [`crate::router::AppHandler::pipelines`]) is started at once and kept here with its place in
//! the session's line ([`TurnLine`]): the handlers check several frames at once, but queue
//! their messages for the writer in frame order, and the writer commits in queue order. Answers
//! (RECEIPT, or an error on `/user/queue/errors`) are taken from the front only, so they go out
//! in frame order, each after its own commit.
//!
//! Every other frame waits until the SENDs before it are answered (it may need their effect: a
//! read, a recall, a COMMIT, a DISCONNECT whose RECEIPT must be the last), except an ACK or
//! NACK without a receipt, which needs nothing of them. Beyond `limits.max_inflight_sends` or
//! `limits.max_inflight_bytes` the session stops reading until the front is answered: TCP
//! backpressure on the client, not an error.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use stomp_codec::{Command, Frame};

use super::Session;
use super::transaction::wire_size;
use crate::ordering::TurnLine;
use crate::router::{AfterReceipt, RouteError};

/// A pipelined SEND's outcome, with the frame it answers.
pub(super) struct Settled {
    pub(super) frame: Frame,
    pub(super) result: Result<Option<AfterReceipt>, RouteError>,
    bytes: usize,
}

/// The SENDs a session has under way, oldest first.
pub(super) struct Inflight {
    pending: FuturesOrdered<BoxFuture<'static, Settled>>,
    bytes: usize,
    line: TurnLine,
    /// A frame read while SENDs were under way, waiting for them to be answered; nothing is
    /// read after it until it is handled.
    held: Option<Frame>,
}

/// How long a session that ends with an ERROR waits for its pipelined SENDs, so that their
/// answers go out before the ERROR: as long as a database operation takes by default.
pub(super) const FINISH_WAIT: Duration = Duration::from_secs(5);

impl Inflight {
    fn new() -> Inflight {
        Inflight {
            pending: FuturesOrdered::new(),
            bytes: 0,
            line: TurnLine::new(),
            held: None,
        }
    }

    /// The next answer, in frame order; pending forever when nothing is under way.
    pub(super) async fn next(&mut self) -> Settled {
        match self.pending.next().await {
            Some(settled) => {
                self.bytes -= settled.bytes;
                settled
            }
            None => std::future::pending().await,
        }
    }
}

impl Session {
    /// Whether the session may read and handle more frames now: nothing held back, and the
    /// SENDs under way within their bounds.
    pub(super) fn accepting(&self) -> bool {
        let Some(inflight) = &self.inflight else {
            return true;
        };
        let settings = &self.context.settings;
        inflight.held.is_none()
            && inflight.pending.len() < settings.max_inflight_sends
            && inflight.bytes < settings.max_inflight_bytes
    }

    /// Whether SENDs are under way.
    pub(super) fn has_inflight(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|i| !i.pending.is_empty())
    }

    /// Whether `frame` is a SEND to a handler that pipelines, outside any transaction.
    pub(super) fn pipelines(&self, frame: &Frame) -> bool {
        frame.command == Command::Send
            && frame.get("transaction").is_none()
            && frame
                .get("destination")
                .is_some_and(|destination| self.context.router.pipelines(destination))
    }

    /// Whether `frame` must wait for the SENDs under way to be answered first.
    pub(super) fn must_wait(&self, frame: &Frame) -> bool {
        let unordered =
            matches!(frame.command, Command::Ack | Command::Nack) && frame.get("receipt").is_none();
        !unordered && self.has_inflight()
    }

    /// Holds `frame` until the SENDs under way are answered; the session reads nothing more
    /// meanwhile.
    pub(super) fn hold(&mut self, frame: Frame) {
        let inflight = self
            .inflight
            .get_or_insert_with(|| Box::new(Inflight::new()));
        inflight.held = Some(frame);
    }

    /// The frame held back, once nothing is under way any more.
    pub(super) fn take_held(&mut self) -> Option<Frame> {
        let inflight = self.inflight.as_mut()?;
        if inflight.pending.is_empty() {
            inflight.held.take()
        } else {
            None
        }
    }

    /// Starts a pipelined SEND: it takes its turn in the session's line at once and runs
    /// alongside the frames read after it.
    pub(super) fn start_send(&mut self, frame: Frame) {
        let inflight = self
            .inflight
            .get_or_insert_with(|| Box::new(Inflight::new()));
        let turn = inflight.line.next_turn();
        let bytes = wire_size(&frame);
        let router = self.context.router.clone();
        let session = self.handle.clone();
        inflight.bytes += bytes;
        inflight.pending.push_back(Box::pin(async move {
            let result = match frame.get("destination") {
                Some(destination) => {
                    router
                        .send(&session, destination, &frame.headers, &frame.body, turn)
                        .await
                }
                None => Ok(None),
            };
            Settled {
                frame,
                result,
                bytes,
            }
        }));
    }

    /// Answers the SENDs still under way when the session ends, for up to `wait`: their
    /// RECEIPTs go out before the ERROR that closes the session. Those not answered by then
    /// finish on their own: each stored message is still pushed, but not answered.
    pub(super) async fn finish_inflight(&mut self, wait: Duration) {
        let Some(mut inflight) = self.inflight.take() else {
            return;
        };
        // Moved in as `&mut`: a shared borrow of the session held across the awaits would
        // need the session to be `Sync`.
        let session = &mut *self;
        let waiting = &mut inflight;
        let answered = tokio::time::timeout(wait, async move {
            while !waiting.pending.is_empty() {
                let settled = waiting.next().await;
                // An ERROR is on its way already; a second one would not be read.
                let _ = session.answer_send(&settled.frame, settled.result);
            }
        })
        .await;
        if answered.is_err() {
            tokio::spawn(async move {
                while let Some(settled) = inflight.pending.next().await {
                    if let Ok(Some(after_receipt)) = settled.result {
                        after_receipt();
                    }
                }
            });
        }
    }
}
