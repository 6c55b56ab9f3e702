//! Delivered positions, written in batches off the send path: a status is informational (the
//! message itself is already committed), so it is recorded a few milliseconds late rather than
//! costing every send a transaction of its own. Each batch moves each recipient's position
//! once, to the furthest seq delivered (see [`Store::mark_delivered`]).

use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::Store;

/// Records deliveries in the background.
#[derive(Clone)]
pub(crate) struct Recorder {
    queue: mpsc::UnboundedSender<(String, String, i64)>,
}

/// Most deliveries taken per write.
const BATCH: usize = 1024;

impl Recorder {
    pub(crate) fn start(store: Store) -> Recorder {
        let (queue, mut deliveries) = mpsc::unbounded_channel::<(String, String, i64)>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while deliveries.recv_many(&mut batch, BATCH).await > 0 {
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
                batch.clear();
            }
        });
        Recorder { queue }
    }

    /// Records that the message at `seq` of `conversation` reached `recipient`.
    pub(crate) fn delivered(&self, conversation: &str, recipient: &str, seq: i64) {
        let _ = self
            .queue
            .send((conversation.to_owned(), recipient.to_owned(), seq));
    }
}
