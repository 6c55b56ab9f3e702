//! A session's transactions: BEGIN, COMMIT and ABORT, and the SEND, ACK and NACK frames held
//! until COMMIT.

use bytestring::ByteString;
use stomp_codec::{Command, Frame};

use super::Session;
use super::fatal::Fatal;
use crate::metrics::ErrorReason;

impl Session {
    /// Buffers the frame if it belongs to a transaction. Returns true when it did.
    pub(super) fn in_transaction(&mut self, frame: &Frame) -> Result<bool, Fatal> {
        let Some(tx) = frame.headers.get_shared("transaction") else {
            return Ok(false);
        };
        let limit = self.context.settings.max_transaction_frames;
        let frames = self.transactions.get_mut(tx).ok_or_else(|| {
            Fatal::new(
                ErrorReason::BadHeader,
                "unknown transaction",
                format!("transaction {tx} was not begun"),
            )
            .with_receipt(frame)
        })?;
        if frames.len() >= limit {
            return Err(Fatal::new(
                ErrorReason::TooLarge,
                "transaction too large",
                format!("a transaction may hold at most {limit} frames"),
            )
            .with_receipt(frame));
        }
        // The RECEIPT answers the frame now that it is held; the held copy has no `receipt`, so
        // that COMMIT does not answer it a second time.
        let mut held = frame.clone();
        held.headers.remove("receipt");
        frames.push(held);
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
        self.transactions.insert(tx, Vec::new());
        self.receipt(&frame);
        Ok(())
    }

    pub(super) async fn on_commit(&mut self, frame: Frame) -> Result<(), Fatal> {
        let tx = Self::transaction_id(&frame)?;
        let Some(frames) = self.transactions.remove(&tx) else {
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
