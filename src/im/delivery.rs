//! Delivered positions, written in batches off the send path: a status is informational (the
//! message itself is already committed), so it is recorded a few milliseconds late rather than
//! costing every send a transaction of its own. Each write moves each recipient's position once,
//! to the furthest seq delivered (see [`Store::mark_delivered`]).
//!
//! Deliveries wait in a map with one entry per conversation and recipient, not in a queue: while
//! the database is slow or away, what waits is bounded by the conversations with traffic, not by
//! the time it is away. Writes are at least [`SPACING`] apart, so that under load each carries
//! many positions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::Store;
use crate::util::lock;

/// The furthest seq delivered, per (conversation, recipient), not written yet.
type Pending = HashMap<(String, String), i64>;

/// Records deliveries in the background.
#[derive(Clone)]
pub(crate) struct Recorder {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
}

/// Least time between two writes. A recipient in a busy conversation gets several messages
/// in this time, and each write moves their position once: at 20 ms nearly every delivery
/// still cost an UPDATE of its own row (5 µs of PostgreSQL per message at 10,000 msg/s).
/// The status is informational and the `message.delivered` event goes out at once, so only a
/// history read in this window, or a crash, sees the status a little late.
const SPACING: Duration = Duration::from_millis(200);

/// The spacing grows by this much per position the last write carried, up to
/// [`MAX_SPACING`]: a write of many positions means many conversations with traffic, each of
/// which, given longer, would have carried several deliveries in one position. At 1,000 busy
/// conversations and 200 ms, about one position was written for every two messages.
const SPACING_PER_POSITION: Duration = Duration::from_millis(1);

/// The longest a delivered status waits to be written.
const MAX_SPACING: Duration = Duration::from_secs(1);

/// How long to wait after a write that carried `written` positions.
fn spacing_after(written: usize) -> Duration {
    let grown = SPACING_PER_POSITION.saturating_mul(u32::try_from(written).unwrap_or(u32::MAX));
    SPACING.saturating_add(grown).min(MAX_SPACING)
}

impl Recorder {
    pub(crate) fn start(store: Store) -> Recorder {
        let recorder = Recorder {
            pending: Arc::new(Mutex::new(HashMap::new())),
            wake: Arc::new(Notify::new()),
        };
        let (pending, wake) = (recorder.pending.clone(), recorder.wake.clone());
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                let taken = std::mem::take(&mut *lock(&pending));
                if taken.is_empty() {
                    continue;
                }
                let written = taken.len();
                let batch: Vec<(String, String, i64)> = taken
                    .into_iter()
                    .map(|((conversation, recipient), seq)| (conversation, recipient, seq))
                    .collect();
                // Retry a failed write a few times; a lost status update is tolerable, a
                // tight loop against a dead database is not.
                for attempt in 0..3 {
                    match store.mark_delivered(&batch).await {
                        Ok(()) => break,
                        Err(error) => {
                            tracing::warn!(%error, attempt, "recording deliveries failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                tokio::time::sleep(spacing_after(written)).await;
            }
        });
        recorder
    }

    /// Records that the message at `seq` of `conversation` reached `recipient`.
    pub(crate) fn delivered(&self, conversation: &str, recipient: &str, seq: i64) {
        {
            let mut pending = lock(&self.pending);
            let furthest = pending
                .entry((conversation.to_owned(), recipient.to_owned()))
                .or_insert(seq);
            *furthest = (*furthest).max(seq);
        }
        // A permit is kept when the writer is busy, so nothing recorded meanwhile is left behind.
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipient_waits_once_per_conversation_at_the_furthest_seq() {
        let recorder = Recorder {
            pending: Arc::new(Mutex::new(HashMap::new())),
            wake: Arc::new(Notify::new()),
        };
        for seq in [3, 9, 5] {
            recorder.delivered("private_a_b", "b", seq);
        }
        recorder.delivered("private_a_c", "c", 1);
        let pending = lock(&recorder.pending);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[&("private_a_b".to_owned(), "b".to_owned())], 9);
    }

    #[test]
    fn writes_space_out_with_the_positions_they_carry() {
        assert_eq!(spacing_after(1), Duration::from_millis(201));
        assert_eq!(spacing_after(300), Duration::from_millis(500));
        assert_eq!(spacing_after(5_000), MAX_SPACING);
        assert_eq!(spacing_after(usize::MAX), MAX_SPACING);
    }
}
