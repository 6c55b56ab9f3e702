//! Inbox positions: every private and assistant message is numbered in its users' inboxes (the
//! sender's and the recipient's), per user, gapless, in commit order; the writer assigns them
//! (see `writer::batch`). `/user/queue/messages` resumes from a position with the reads here.
//!
//! Within one conversation a user's positions grow with seq, so the messages after a position
//! are a tail of each conversation, found by seq on the existing `(conversation_id, seq)`
//! index: no index on the positions themselves, which would cost every private message.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use schema::{MessageRow, conversations, inbox_heads, members, messages};

use super::{Store, StoreError, with_conn};
use crate::domain::ConversationKind;

/// The users whose inboxes number `row`: (its sender's, its recipient's). The two users of a
/// private chat; in an assistant conversation its user, as sender or as recipient (staff have
/// no inbox there: they follow `/topic/assistant`). Group and system messages have none.
pub(crate) fn inbox_users(row: &MessageRow) -> (Option<&str>, Option<&str>) {
    let id = row.conversation_id.as_str();
    let sender = row.sender_id.as_str();
    // As `ConversationId::participants` reads `private_<a>_<b>`.
    if let Some(rest) = id.strip_prefix("private_") {
        return match rest.split_once('_') {
            Some((a, b)) if a == sender && b != sender => (Some(a), Some(b)),
            Some((a, b)) if b == sender && a != sender => (Some(b), Some(a)),
            _ => (None, None),
        };
    }
    if let Some(user) = id.strip_prefix("assistant_") {
        return if user == sender {
            (Some(user), None)
        } else {
            (None, Some(user))
        };
    }
    (None, None)
}

/// `row`'s position in `user`'s inbox; none when it has none (not numbered, stored before
/// positions existed, or while `im.private_resume` was off).
pub(crate) fn position_for(row: &MessageRow, user: &str) -> Option<i64> {
    position_in(
        &row.sender_id,
        row.sender_position,
        row.recipient_position,
        user,
    )
}

/// [`position_for`], 0 for none: what the reads of a resume compare.
pub(crate) fn position_of(row: &MessageRow, user: &str) -> i64 {
    position_for(row, user).unwrap_or(0)
}

fn position_in(
    sender_id: &str,
    sender_position: Option<i64>,
    recipient_position: Option<i64>,
    user: &str,
) -> Option<i64> {
    if sender_id == user {
        sender_position
    } else {
        recipient_position
    }
}

/// What a resume's search needs of a message: its seq and positions.
#[derive(Queryable, Selectable)]
#[diesel(table_name = messages)]
struct Placed {
    seq: i64,
    sender_id: String,
    sender_position: Option<i64>,
    recipient_position: Option<i64>,
}

impl Placed {
    fn position(&self, user: &str) -> i64 {
        position_in(
            &self.sender_id,
            self.sender_position,
            self.recipient_position,
            user,
        )
        .unwrap_or(0)
    }
}

/// A conversation with messages after a position: where to start reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxConversation {
    /// The conversation.
    pub id: String,
    /// Its newest seq.
    pub last_seq: i64,
    /// The user sees only what is after this seq (joined, or cleared their history).
    pub floor_seq: i64,
    /// Its newest message's position in the user's inbox.
    pub newest_position: i64,
}

/// Messages read newest first by [`Store::inbox_boundary`] before it searches by halves.
const TAIL: i64 = 64;

impl Store {
    /// `user`'s newest inbox position (0 before their first private message).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn inbox_head(&self, user: &str) -> Result<i64, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let head: Option<i64> = inbox_heads::table
                    .find(user)
                    .select(inbox_heads::position)
                    .first(conn)
                    .await
                    .optional()?;
                Ok(head.unwrap_or(0))
            })
        })
        .await
    }

    /// `user`'s private and assistant conversations whose newest message is after `position`
    /// in their inbox: one read per conversation of the user, through the member index.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn inbox_conversations(
        &self,
        user: &str,
        position: i64,
    ) -> Result<Vec<InboxConversation>, StoreError> {
        let kinds = [
            ConversationKind::Private.as_str(),
            ConversationKind::Assistant.as_str(),
        ];
        let rows: Vec<(String, i64, i64, i64, Placed)> = self
            .timed(async {
                with_conn!(&self.pool, |conn| {
                    let rows = members::table
                        .inner_join(
                            conversations::table.on(conversations::id.eq(members::conversation_id)),
                        )
                        .inner_join(
                            messages::table.on(messages::conversation_id
                                .eq(conversations::id)
                                .and(messages::seq.eq(conversations::last_seq))),
                        )
                        .filter(members::user_id.eq(user))
                        .filter(conversations::kind.eq_any(kinds))
                        .filter(
                            messages::sender_id
                                .eq(user)
                                .and(messages::sender_position.gt(position))
                                .or(messages::sender_id
                                    .ne(user)
                                    .and(messages::recipient_position.gt(position))),
                        )
                        .select((
                            conversations::id,
                            conversations::last_seq,
                            members::joined_seq,
                            members::cleared_seq,
                            Placed::as_select(),
                        ))
                        .load(conn)
                        .await?;
                    Ok(rows)
                })
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, last_seq, joined, cleared, newest)| InboxConversation {
                    id,
                    last_seq,
                    floor_seq: joined.max(cleared),
                    newest_position: newest.position(user),
                },
            )
            .collect())
    }

    /// The newest seq of `conversation`, at most `newest`, whose message is at or before
    /// `position` in `user`'s inbox (0 when none is): the messages after it are those after
    /// `position`. Reads the newest few, then searches the rest by halves, one probe of the seq
    /// index each, so that a long conversation costs a few reads however far back it goes.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn inbox_boundary(
        &self,
        conversation: &str,
        user: &str,
        position: i64,
        newest: i64,
    ) -> Result<i64, StoreError> {
        let tail = self.inbox_rows(conversation, 0, newest, TAIL).await?;
        for row in &tail {
            if row.position(user) <= position {
                return Ok(row.seq);
            }
        }
        let Some(oldest) = tail.last().filter(|_| tail.len() as i64 == TAIL) else {
            return Ok(0);
        };
        // Every seq up to `low` is at or before `position`; the message at `high` is after it.
        let (mut low, mut high) = (0, oldest.seq);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            let probe = self.inbox_rows(conversation, low, middle, 1).await?;
            match probe.into_iter().next() {
                Some(row) if row.position(user) > position => high = row.seq,
                _ => low = middle,
            }
        }
        Ok(low)
    }

    /// Up to `limit` messages of `conversation` with seq in `(above, at_most]`, newest first.
    async fn inbox_rows(
        &self,
        conversation: &str,
        above: i64,
        at_most: i64,
        limit: i64,
    ) -> Result<Vec<Placed>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let rows = messages::table
                    .filter(messages::conversation_id.eq(conversation))
                    .filter(messages::seq.gt(above))
                    .filter(messages::seq.le(at_most))
                    .order(messages::seq.desc())
                    .limit(limit)
                    .select(Placed::as_select())
                    .load(conn)
                    .await?;
                Ok(rows)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(conversation: &str, sender: &str) -> MessageRow {
        MessageRow {
            id: 1,
            conversation_id: conversation.to_owned(),
            seq: 1,
            sender_id: sender.to_owned(),
            client_msg_id: "c".to_owned(),
            format: "text".to_owned(),
            content: String::new(),
            attachment: None,
            reply_to: None,
            forwarded_from: None,
            status: "sent".to_owned(),
            created_at: 0,
            recalled_at: None,
            edited_at: None,
            mentions: None,
            sender_position: None,
            recipient_position: None,
        }
    }

    #[test]
    fn a_private_message_numbers_both_users() {
        assert_eq!(
            inbox_users(&row("private_alice_bob", "alice")),
            (Some("alice"), Some("bob"))
        );
        assert_eq!(
            inbox_users(&row("private_alice_bob", "bob")),
            (Some("bob"), Some("alice"))
        );
        assert_eq!(inbox_users(&row("private_alice_bob", "eve")), (None, None));
    }

    #[test]
    fn an_assistant_message_numbers_its_user_only_and_groups_none() {
        assert_eq!(
            inbox_users(&row("assistant_carol", "carol")),
            (Some("carol"), None)
        );
        assert_eq!(
            inbox_users(&row("assistant_carol", "staff1")),
            (None, Some("carol"))
        );
        assert_eq!(inbox_users(&row("group_ab12", "carol")), (None, None));
        assert_eq!(inbox_users(&row("system_carol", "ops")), (None, None));
    }
}
