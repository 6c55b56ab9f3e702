//! Read receipts in groups: how many members have read each message, derived from their read
//! positions as private statuses are (nothing is stored per reader and message), and the
//! `message.read_count` events that tell senders.
//!
//! A group of 500 whose members all read a burst of 50 messages would be 25,000 events if each
//! read told each sender at once. Reads only mark their conversation's seq range here; a task
//! turns what was marked into at most one event per sender and conversation per
//! [`SPACING`], with the counts of the newest [`MAX_MESSAGES`] messages of the range.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use schema::{MemberRow, MessageRow};
use serde::Serialize;
use tokio::sync::Notify;

use crate::delivery::Route;
use crate::domain::MessageStatus;
use crate::hub::{Hub, Publication};
use crate::store::{Store, StoreError};
use crate::util::lock;

/// Least time between two rounds of events.
const SPACING: Duration = Duration::from_secs(1);

/// Messages per conversation whose counts one round reports: the newest of the range read.
const MAX_MESSAGES: i64 = 100;

/// Per group conversation, the seq range `(after, up_to]` that reads moved over since the last
/// round.
type Pending = HashMap<String, (i64, i64)>;

/// One message's read count, as events carry it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReadCount {
    /// The message id, as a string.
    pub message_id: String,
    /// Its seq.
    pub seq: i64,
    /// Members, other than its sender, who were members when it was sent and have read it.
    pub read_count: i64,
}

/// How many of `members` (other than the sender, and only those who were members when it was
/// sent) have read `message`; `None` for a recalled message.
pub fn read_count(message: &MessageRow, members: &[MemberRow]) -> Option<i64> {
    if message.status.parse() == Ok(MessageStatus::Recalled) {
        return None;
    }
    let readers = members
        .iter()
        .filter(|m| is_audience(message, m) && m.read_seq >= message.seq)
        .count();
    Some(i64::try_from(readers).unwrap_or(i64::MAX))
}

/// Whether `member` is one of those whose reading `message` counts: not its sender, and a
/// member from before it.
pub fn is_audience(message: &MessageRow, member: &MemberRow) -> bool {
    member.user_id != message.sender_id && member.joined_seq < message.seq
}

/// Marks reads and sends the coalesced events.
#[derive(Clone)]
pub(crate) struct ReadCounts {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
}

impl ReadCounts {
    /// Starts the task that sends the events; it ends once the returned value and its clones
    /// are gone.
    pub(crate) fn start(store: Store, hub: Hub) -> ReadCounts {
        let counts = ReadCounts {
            pending: Arc::new(Mutex::new(HashMap::new())),
            wake: Arc::new(Notify::new()),
        };
        let pending = Arc::downgrade(&counts.pending);
        let wake = counts.wake.clone();
        tokio::spawn(run(pending, wake, store, hub));
        counts
    }

    /// A member of group `conversation` read the messages after `after` up to `up_to`.
    pub(crate) fn read(&self, conversation: &str, after: i64, up_to: i64) {
        if up_to <= after {
            return;
        }
        {
            let mut pending = lock(&self.pending);
            let range = pending
                .entry(conversation.to_owned())
                .or_insert((after, up_to));
            range.0 = range.0.min(after);
            range.1 = range.1.max(up_to);
        }
        self.wake.notify_one();
    }
}

async fn run(pending: Weak<Mutex<Pending>>, wake: Arc<Notify>, store: Store, hub: Hub) {
    loop {
        wake.notified().await;
        let Some(pending) = pending.upgrade() else {
            return;
        };
        let taken = std::mem::take(&mut *lock(&pending));
        drop(pending);
        for (conversation, (after, up_to)) in taken {
            if let Err(error) = publish(&store, &hub, &conversation, after, up_to).await {
                // The next read of the conversation sends its counts again.
                tracing::warn!(%error, conversation, "read counts not sent");
            }
        }
        tokio::time::sleep(SPACING).await;
    }
}

/// Tells the senders of the newest messages of `(after, up_to]` their read counts: one event
/// per sender.
async fn publish(
    store: &Store,
    hub: &Hub,
    conversation: &str,
    after: i64,
    up_to: i64,
) -> Result<(), StoreError> {
    let messages = store
        .newest_between(conversation, after, up_to, MAX_MESSAGES)
        .await?;
    if messages.is_empty() {
        return Ok(());
    }
    let members = store.members(conversation).await?;
    let mut by_sender: BTreeMap<&str, Vec<ReadCount>> = BTreeMap::new();
    for message in &messages {
        if let Some(count) = read_count(message, &members) {
            by_sender
                .entry(message.sender_id.as_str())
                .or_default()
                .push(ReadCount {
                    message_id: message.id.to_string(),
                    seq: message.seq,
                    read_count: count,
                });
        }
    }
    for (sender, mut counts) in by_sender {
        counts.sort_by_key(|c| c.seq);
        let body = serde_json::json!({"conversationId": conversation, "counts": counts});
        hub.publish(
            &Route::User {
                user: sender.to_owned(),
                queue: "events".to_owned(),
            },
            Publication::json_event(
                "message.read_count",
                serde_json::to_vec(&body).unwrap_or_default(),
            ),
        );
    }
    Ok(())
}
