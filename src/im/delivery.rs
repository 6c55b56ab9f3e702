//! Message status changes to `delivered`, written in batches off the send path: a status is
//! informational (the message itself is already committed), so it is recorded a few
//! milliseconds late rather than costing every send a transaction of its own.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::Store;

/// Records deliveries in the background.
#[derive(Clone)]
pub(crate) struct Recorder {
    queue: mpsc::UnboundedSender<i64>,
}

/// Most ids written per statement.
const BATCH: usize = 1024;

impl Recorder {
    pub(crate) fn start(store: Store) -> Recorder {
        let (queue, mut ids) = mpsc::unbounded_channel::<i64>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while ids.recv_many(&mut batch, BATCH).await > 0 {
                // Retry a failed write a few times; a lost status update is tolerable, a
                // tight loop against a dead database is not.
                for attempt in 0..3 {
                    match store.set_delivered(&batch).await {
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

    /// Marks a message delivered (if it is still `sent`).
    pub(crate) fn delivered(&self, message_id: i64) {
        let _ = self.queue.send(message_id);
    }
}
