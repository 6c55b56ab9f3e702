//! Resume of `/user/queue/messages` from an inbox position (`since-position`): every private and
//! assistant message is numbered in its users' inboxes, gapless per user, in commit order (see
//! [`crate::store::inbox`]), and each push carries the receiving user's position. A SUBSCRIBE
//! with `since-position:<n>` gets the messages after `n` as history shows them now, oldest first
//! by position, each with `replay:true`, then the live ones without a gap or a repeat (see
//! [`crate::hub::replay`]).
//!
//! Bounded as the other replays: positions being gapless, the newest `limits.max_replay` are
//! those after `head - max_replay`; older ones, and those beyond `limits.max_replay_bytes`,
//! are named per conversation by `replay.truncated`, to page through REST.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use super::Im;
use super::messages::{inbox_publication, user_route};
use super::replay::truncated;
use crate::app_error::AppError;
use crate::auth::Identity;
use crate::hub::Publication;
use crate::router::{HandlerFuture, Replay, ReplaySource};
use crate::store::HistoryQuery;
use crate::store::inbox::{InboxConversation, position_of};

/// History pages are read this many messages at a time.
const PAGE: i64 = 100;

/// The IM layer's [`ReplaySource`] for `/user/queue/messages`.
pub struct InboxReplay {
    im: Im,
}

impl InboxReplay {
    /// A source for `/user/queue/messages`.
    pub fn new(im: &Im) -> Arc<InboxReplay> {
        Arc::new(InboxReplay { im: im.clone() })
    }
}

impl ReplaySource for InboxReplay {
    fn replay<'a>(
        &'a self,
        identity: &'a Identity,
        _name: &'a str,
        since: i64,
    ) -> HandlerFuture<'a, Replay> {
        Box::pin(async move {
            let refused = || Replay {
                publications: vec![truncated(None, None, None)],
                up_to: Some(since),
            };
            if !self.im.settings().private_resume
                || !self
                    .im
                    .within_rate(super::limits::Action::Replay, &identity.user_id)
                    .await
            {
                return refused();
            }
            match self.im.missed_in_inbox(identity, since).await {
                Ok(replay) => replay,
                Err(error) => {
                    tracing::warn!(%error, user = %identity.user_id, "inbox replay failed");
                    refused()
                }
            }
        })
    }

    fn cursor_header(&self) -> &'static str {
        crate::router::CURSOR_HEADERS[1]
    }
}

/// One message found after the cursor.
struct Found {
    position: i64,
    seq: i64,
    /// Index into the conversations read.
    conversation: usize,
    body: Vec<u8>,
}

/// The newest messages found within `limits.max_replay_bytes`, kept while they are read, so
/// that a resume holds at most that much (and a page) however large its messages are.
struct Newest {
    max_bytes: usize,
    bytes: usize,
    /// By position, the oldest first out.
    kept: BinaryHeap<Reverse<(i64, usize)>>,
    slots: Vec<Option<Found>>,
    /// Everything at or below this position is left out: what is kept stays the newest.
    dropped_up_to: i64,
    /// Conversations some of whose messages were left out.
    left_out: Vec<usize>,
}

impl Newest {
    fn new(max_bytes: usize) -> Newest {
        Newest {
            max_bytes,
            bytes: 0,
            kept: BinaryHeap::new(),
            slots: Vec::new(),
            dropped_up_to: i64::MIN,
            left_out: Vec::new(),
        }
    }

    fn offer(&mut self, found: Found) {
        if found.position <= self.dropped_up_to {
            self.left_out.push(found.conversation);
            return;
        }
        self.bytes += found.body.len();
        self.kept.push(Reverse((found.position, self.slots.len())));
        self.slots.push(Some(found));
        while self.bytes > self.max_bytes {
            let Some(Reverse((position, slot))) = self.kept.pop() else {
                break;
            };
            if let Some(oldest) = self.slots[slot].take() {
                self.bytes -= oldest.body.len();
                self.left_out.push(oldest.conversation);
            }
            self.dropped_up_to = self.dropped_up_to.max(position);
        }
    }

    /// What is kept, oldest first.
    fn into_sorted(self) -> Vec<Found> {
        let mut kept: Vec<Found> = self.slots.into_iter().flatten().collect();
        kept.sort_unstable_by_key(|f| f.position);
        kept
    }
}

/// What a conversation's part of the replay leaves out.
struct Part {
    /// The newest seq at or before the client's cursor.
    after: i64,
    /// Whether messages after the cursor are left out (before the bound, or over its bytes).
    left_out: bool,
    /// The oldest seq replayed.
    first_replayed: Option<i64>,
}

impl Im {
    /// What `caller` missed on `/user/queue/messages` after inbox position `since`.
    async fn missed_in_inbox(&self, caller: &Identity, since: i64) -> Result<Replay, AppError> {
        let user = caller.user_id.as_str();
        let bounds = self.settings().replay;
        let store = self.store();
        // Every position up to the head is committed before the reads below begin, so they see
        // all of it; newer ones are published after the subscription was registered and come
        // live.
        let head = store.inbox_head(user).await?;
        // A cursor past the head (a database restored from an older backup) counts as the head.
        let since = since.min(head);
        let route = user_route(user, "messages");
        self.hub().order_from(&route, head + 1);
        if since == head {
            return Ok(Replay {
                publications: Vec::new(),
                up_to: Some(head),
            });
        }
        let max = i64::try_from(bounds.max_messages).unwrap_or(i64::MAX);
        let from = since.max(head - max);
        let conversations = store.inbox_conversations(user, since).await?;
        let mut parts: Vec<Part> = Vec::with_capacity(conversations.len());
        let mut newest = Newest::new(bounds.max_bytes);
        for (index, conversation) in conversations.iter().enumerate() {
            // A conversation whose news all lie before the bound has nothing to replay.
            let start = if conversation.newest_position > from {
                store
                    .inbox_boundary(&conversation.id, user, from, conversation.last_seq)
                    .await?
            } else {
                conversation.last_seq
            };
            let after = if from > since {
                store
                    .inbox_boundary(&conversation.id, user, since, start)
                    .await?
            } else {
                start
            };
            parts.push(Part {
                after,
                // Before the bound: what is at or below the floor the user does not see anyway.
                left_out: after < start && start > conversation.floor_seq,
                first_replayed: None,
            });
            self.read_after(
                conversation,
                user,
                (start, from),
                head,
                |position, seq, body| {
                    newest.offer(Found {
                        position,
                        seq,
                        conversation: index,
                        body,
                    });
                },
            )
            .await?;
        }
        for conversation in std::mem::take(&mut newest.left_out) {
            parts[conversation].left_out = true;
        }
        let kept = newest.into_sorted();
        for message in &kept {
            let part = &mut parts[message.conversation];
            part.first_replayed = Some(
                part.first_replayed
                    .map_or(message.seq, |s| s.min(message.seq)),
            );
        }
        let mut publications = Vec::with_capacity(kept.len() + 1);
        let mut truncations: BTreeMap<&str, Publication> = BTreeMap::new();
        for (part, conversation) in parts.iter().zip(&conversations) {
            if part.left_out {
                truncations.insert(
                    &conversation.id,
                    truncated(
                        Some(&conversation.id),
                        Some(part.after.max(conversation.floor_seq)),
                        part.first_replayed,
                    ),
                );
            }
        }
        publications.extend(truncations.into_values());
        for message in kept {
            let mut publication = inbox_publication(message.body, Some(message.position));
            publication.headers.push("replay", "true");
            publications.push(publication);
        }
        Ok(Replay {
            publications,
            up_to: Some(head),
        })
    }

    /// Reads `conversation` after seq `start` as history shows it to `user`, handing `found`
    /// each message after position `from` and at or before `head` with its position, seq and
    /// JSON.
    async fn read_after(
        &self,
        conversation: &InboxConversation,
        user: &str,
        (start, from): (i64, i64),
        head: i64,
        mut found: impl FnMut(i64, i64, Vec<u8>),
    ) -> Result<(), AppError> {
        let mut after = start;
        while after < conversation.last_seq {
            let page = self
                .store()
                .history(
                    &conversation.id,
                    user,
                    conversation.floor_seq,
                    HistoryQuery {
                        before_seq: None,
                        after_seq: Some(after),
                        limit: PAGE,
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for row in &page {
                let position = position_of(row, user);
                if position > from && position <= head {
                    found(position, row.seq, super::json::message_body(row));
                }
            }
            if i64::try_from(page.len()).unwrap_or(0) < PAGE {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(position: i64, conversation: usize, size: usize) -> Found {
        Found {
            position,
            seq: position,
            conversation,
            body: vec![b'x'; size],
        }
    }

    #[test]
    fn the_newest_within_the_bytes_are_kept_whatever_order_they_are_read_in() {
        let mut newest = Newest::new(10);
        newest.offer(found(5, 0, 8));
        newest.offer(found(6, 1, 8));
        // Older than one left out: left out too, though it would fit.
        newest.offer(found(2, 2, 1));
        newest.offer(found(7, 1, 2));
        let mut left_out = newest.left_out.clone();
        left_out.sort_unstable();
        assert_eq!(left_out, vec![0, 2]);
        let kept: Vec<i64> = newest.into_sorted().iter().map(|f| f.position).collect();
        assert_eq!(kept, vec![6, 7]);
    }
}
