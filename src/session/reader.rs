//! The session's read loop: bytes from the transport into the decoder, every complete frame
//! handled in order (see `frames.rs`) or started alongside the SENDs under way (see
//! `inflight.rs`), their answers as they come, and the deadlines that bound a session's
//! silence, a frame's arrival and the token's life, all on one timer.
//!
//! While the SENDs under way fill their bounds the session reads nothing; the silence and
//! frame deadlines are suspended meanwhile (the client may well be sending, into its socket's
//! buffer) and start again from the moment reading resumes. The token's expiry never is.

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use stomp_codec::{Decoded, Decoder, Frame};
use tokio::time::Instant;

use super::fatal::{Fatal, transport_too_large};
use super::inflight::{FINISH_WAIT, Inflight, Settled};
use super::transport::Inbound;
use super::{Ending, Session};
use crate::metrics::{ErrorReason, Metrics};

impl Session {
    /// Reads and handles frames until the peer goes, a deadline passes (token expiry,
    /// heart-beat silence, a frame under way too long) or a frame ends the session.
    pub(super) async fn read_loop<I: Inbound>(
        mut self,
        inbound: &mut I,
        decoder: &mut Decoder,
        buf: &mut BytesMut,
        heartbeat: Option<Duration>,
        expires_at: SystemTime,
    ) -> Ending {
        let ending = self
            .read_frames(inbound, decoder, buf, heartbeat, expires_at)
            .await;
        // A client that went, or said DISCONNECT (which waited for every SEND before it),
        // needs no answer; one about to get an ERROR gets the answers that are due first.
        let wait = match ending {
            Ending::Error(_) => FINISH_WAIT,
            Ending::Gone | Ending::Graceful => Duration::ZERO,
        };
        self.finish_inflight(wait).await;
        ending
    }

    async fn read_frames<I: Inbound>(
        &mut self,
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
            let accepting = self.accepting();
            tokio::select! {
                biased;
                () = &mut closed => return Ending::Gone,
                () = &mut timer => {
                    return Ending::Error(self.deadline_passed(expiry, frame_started));
                }
                settled = next_settled(&mut self.inflight), if self.has_inflight() => {
                    if let Err(fatal) = self.answer_send(&settled.frame, settled.result) {
                        return Ending::Error(fatal);
                    }
                    if let Some(frame) = self.take_held()
                        && let Some(ending) = self.dispatch(frame).await
                    {
                        return ending;
                    }
                    if accepting || !self.accepting() {
                        continue;
                    }
                    // Reading resumes: first what was read before the pause.
                    if let Some(ending) = self.drain(decoder, buf).await {
                        return ending;
                    }
                    if self.accepting() {
                        let now = Instant::now();
                        if let Some(limit) = silence_limit {
                            silent_at = now + limit;
                        }
                        frame_started = (!buf.is_empty() || inbound.incomplete_since().is_some())
                            .then_some(now);
                        let timeout = self.context.settings.frame_timeout;
                        timer
                            .as_mut()
                            .reset(deadline(silent_at, frame_started, timeout));
                    }
                }
                read = inbound.read(buf), if accepting => {
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
                    if !self.accepting() {
                        // Paused: only the token's expiry counts until reading resumes.
                        timer.as_mut().reset(expiry);
                        continue;
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

    /// Handles every complete frame in `buf`, until the session stops accepting frames (the
    /// rest then waits in `buf`).
    async fn drain(&mut self, decoder: &mut Decoder, buf: &mut BytesMut) -> Option<Ending> {
        while self.accepting() {
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
                    if let Some(ending) = self.dispatch(frame).await {
                        return Some(ending);
                    }
                }
                Err(error) => return Some(Ending::Error(error.into())),
            }
        }
        None
    }

    /// Starts a frame alongside the SENDs under way, holds it until they are answered, or
    /// handles it now.
    async fn dispatch(&mut self, frame: Frame) -> Option<Ending> {
        if self.pipelines(&frame) {
            self.start_send(frame);
            return None;
        }
        if self.must_wait(&frame) {
            self.hold(frame);
            return None;
        }
        // Boxed: the state of handling a frame is large, and held inline it would be part of
        // every idle session's task.
        match Box::pin(self.handle_frame(frame)).await {
            Ok(true) => None,
            Ok(false) => Some(Ending::Graceful),
            Err(fatal) => Some(Ending::Error(fatal)),
        }
    }

    /// Why the read loop's timer fired: the token expired, a frame under way took too long,
    /// or the peer was silent past the heart-beat limit.
    fn deadline_passed(&self, expiry: Instant, frame_started: Option<Instant>) -> Fatal {
        let now = Instant::now();
        if now >= expiry {
            Metrics::get().auth_failures.increment(1);
            return Fatal::unauthorized("token expired");
        }
        let timeout = self.context.settings.frame_timeout;
        if frame_started.is_some_and(|started| now >= started + timeout) {
            return Fatal::new(
                ErrorReason::FrameTimeout,
                "frame timeout",
                "a frame was not complete within limits.frame_timeout_ms of its first byte",
            );
        }
        Fatal::new(
            ErrorReason::HeartbeatTimeout,
            "heart-beat timeout",
            "nothing received within twice the heart-beat interval",
        )
    }
}

/// The next answer of the SENDs under way (a free function, so that it borrows only them).
async fn next_settled(inflight: &mut Option<Box<Inflight>>) -> Settled {
    match inflight {
        Some(inflight) => inflight.next().await,
        None => std::future::pending().await,
    }
}
