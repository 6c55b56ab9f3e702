//! A session's transactions: BEGIN, COMMIT and ABORT, and the SEND, ACK and NACK frames held
//! until COMMIT, bounded in number (`stomp.max_transactions`), in frames each
//! (`stomp.max_transaction_frames`) and in bytes over all of them together
//! (`stomp.max_transaction_bytes`), so that what a session holds back is bounded however it
//! spreads it.

use std::ops::Range;

use bytes::BytesMut;
use bytestring::ByteString;
use stomp_codec::{Command, Frame, Headers};

use super::Session;
use super::fatal::Fatal;
use crate::metrics::ErrorReason;

/// The frames one transaction holds, and the bytes they count for.
#[derive(Default)]
pub(super) struct Held {
    frames: Vec<Frame>,
    bytes: usize,
}

/// The bytes a held frame counts for: its size on the wire (command, headers, body, the EOLs
/// and the NUL).
pub(super) fn wire_size(frame: &Frame) -> usize {
    let headers: usize = frame
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 2)
        .sum();
    frame.command.as_str().len() + headers + frame.body.len() + 3
}

/// A copy of `frame` to hold, without its `receipt` (the RECEIPT answers the frame as it is
/// held; COMMIT must not answer it a second time). Its text and body are copied into one buffer
/// of their own: a frame decoded from a socket shares the read buffer it came in, which a held
/// frame would keep whole, so that a transaction would hold more than it counts.
fn held_copy(frame: &Frame) -> Frame {
    let kept = || frame.headers.iter().filter(|(name, _)| *name != "receipt");
    let text: usize = kept().map(|(name, value)| name.len() + value.len()).sum();
    let mut buf = BytesMut::with_capacity(text + frame.body.len());
    let mut ranges: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    for (name, value) in kept() {
        let start = buf.len();
        buf.extend_from_slice(name.as_bytes());
        let middle = buf.len();
        buf.extend_from_slice(value.as_bytes());
        ranges.push((start..middle, middle..buf.len()));
    }
    let body_start = buf.len();
    buf.extend_from_slice(&frame.body);
    let buf = buf.freeze();
    // Each range holds a whole name or value, which was UTF-8 already.
    let text_of = |range: Range<usize>| ByteString::try_from(buf.slice(range)).unwrap_or_default();
    let mut headers = Headers::with_capacity(ranges.len());
    for (name, value) in ranges {
        headers.push(text_of(name), text_of(value));
    }
    Frame {
        command: frame.command,
        headers,
        body: buf.slice(body_start..),
    }
}

impl Session {
    /// Buffers the frame if it belongs to a transaction. Returns true when it did.
    pub(super) fn in_transaction(&mut self, frame: &Frame) -> Result<bool, Fatal> {
        let Some(tx) = frame.headers.get_shared("transaction") else {
            return Ok(false);
        };
        let settings = &self.context.settings;
        let (max_frames, max_bytes) = (
            settings.max_transaction_frames,
            settings.max_transaction_bytes,
        );
        // Summed over the open transactions (at most `stomp.max_transactions`) rather than kept
        // in a field of its own: every idle session would carry that field.
        let holding: usize = self.transactions.values().map(|held| held.bytes).sum();
        let Some(held) = self.transactions.get_mut(tx) else {
            return Err(Fatal::new(
                ErrorReason::BadHeader,
                "unknown transaction",
                format!("transaction {tx} was not begun"),
            )
            .with_receipt(frame));
        };
        if held.frames.len() >= max_frames {
            return Err(Fatal::new(
                ErrorReason::TooLarge,
                "transaction too large",
                format!("a transaction may hold at most {max_frames} frames"),
            )
            .with_receipt(frame));
        }
        let copy = held_copy(frame);
        let size = wire_size(&copy);
        if holding + size > max_bytes {
            return Err(Fatal::new(
                ErrorReason::TooLarge,
                "transaction too large",
                format!(
                    "the open transactions of a session may hold at most {max_bytes} bytes \
                     together"
                ),
            )
            .with_receipt(frame));
        }
        held.bytes += size;
        held.frames.push(copy);
        self.receipt(frame);
        Ok(true)
    }

    fn transaction_id(frame: &Frame) -> Result<ByteString, Fatal> {
        frame
            .headers
            .get_shared("transaction")
            .cloned()
            .ok_or_else(|| Fatal::missing("transaction", frame))
    }

    pub(super) fn on_begin(&mut self, frame: Frame) -> Result<(), Fatal> {
        let tx = Self::transaction_id(&frame)?;
        if self.transactions.contains_key(&tx) {
            return Err(Fatal::new(
                ErrorReason::BadHeader,
                "transaction already begun",
                format!("transaction {tx} is already open"),
            )
            .with_receipt(&frame));
        }
        if self.transactions.len() >= self.context.settings.max_transactions {
            return Err(Fatal::new(
                ErrorReason::TooLarge,
                "too many transactions",
                format!(
                    "a session may hold at most {} open transactions",
                    self.context.settings.max_transactions
                ),
            )
            .with_receipt(&frame));
        }
        self.transactions.insert(tx, Held::default());
        self.receipt(&frame);
        Ok(())
    }

    pub(super) async fn on_commit(&mut self, frame: Frame) -> Result<(), Fatal> {
        let tx = Self::transaction_id(&frame)?;
        let Some(Held { frames, .. }) = self.transactions.remove(&tx) else {
            return Err(Fatal::new(
                ErrorReason::BadHeader,
                "unknown transaction",
                format!("transaction {tx} was not begun"),
            )
            .with_receipt(&frame));
        };
        for buffered in frames {
            match buffered.command {
                Command::Send => self.on_send(buffered, false).await?,
                _ => self.on_ack(buffered, false)?,
            }
        }
        self.receipt(&frame);
        Ok(())
    }

    pub(super) fn on_abort(&mut self, frame: Frame) -> Result<(), Fatal> {
        let tx = Self::transaction_id(&frame)?;
        if self.transactions.remove(&tx).is_none() {
            return Err(Fatal::new(
                ErrorReason::BadHeader,
                "unknown transaction",
                format!("transaction {tx} was not begun"),
            )
            .with_receipt(&frame));
        }
        self.receipt(&frame);
        Ok(())
    }
}
