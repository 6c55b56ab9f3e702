//! A user's housekeeping of their conversations: what the list shows as a conversation's last
//! message, hiding a conversation until its next message, and clearing its history for oneself.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use schema::{MemberRow, MessageRow, conversations, members, message_deletions, messages};

use super::conversations::ConversationSummary;
use super::{Store, StoreError, with_conn};

impl Store {
    /// Replaces each last message that `user` cannot see (deleted for themselves, or at or
    /// below their floor: before they joined or where they cleared the history) by the newest
    /// one they can, or by none.
    pub(super) async fn visible_last_messages(
        &self,
        user: &str,
        items: &mut [ConversationSummary],
    ) -> Result<(), StoreError> {
        let last_ids: Vec<i64> = items
            .iter()
            .filter_map(|item| item.last_message.as_ref().map(|m| m.id))
            .collect();
        if last_ids.is_empty() {
            return Ok(());
        }
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let deleted: Vec<i64> = message_deletions::table
                    .filter(message_deletions::user_id.eq(user))
                    .filter(message_deletions::message_id.eq_any(&last_ids))
                    .select(message_deletions::message_id)
                    .load(conn)
                    .await?;
                for item in items.iter_mut() {
                    let floor = item.member.joined_seq.max(item.member.cleared_seq);
                    let Some(last) = &item.last_message else {
                        continue;
                    };
                    if last.seq > floor && !deleted.contains(&last.id) {
                        continue;
                    }
                    let conversation = item.conversation.id.as_str();
                    let theirs_deleted = message_deletions::table
                        .filter(message_deletions::user_id.eq(user))
                        .filter(message_deletions::conversation_id.eq(conversation))
                        .select(message_deletions::message_id);
                    item.last_message = messages::table
                        .filter(messages::conversation_id.eq(conversation))
                        .filter(messages::seq.gt(floor))
                        .filter(messages::id.ne_all(theirs_deleted))
                        .order(messages::seq.desc())
                        .select(MessageRow::as_select())
                        .first(conn)
                        .await
                        .optional()?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Hides a conversation from `user`'s list until its next message (`hidden`), or shows it
    /// again.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the user is not a member.
    pub async fn set_hidden(
        &self,
        conversation: &str,
        user: &str,
        hidden: bool,
    ) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let mine = members::table
                    .find((conversation, user))
                    .filter(members::left_at.is_null());
                let changed = if hidden {
                    // Up to the seq the conversation has now: a message committed after this
                    // read has a larger seq and shows it again.
                    let last_seq: i64 = conversations::table
                        .find(conversation)
                        .select(conversations::last_seq)
                        .first(conn)
                        .await?;
                    diesel::update(mine)
                        .set(members::hidden_seq.eq(last_seq))
                        .execute(conn)
                        .await?
                } else {
                    diesel::update(mine)
                        .set(members::hidden_seq.eq(-1))
                        .execute(conn)
                        .await?
                };
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
        })
        .await
    }

    /// Clears `user`'s history of a conversation: the messages it has now disappear for them
    /// (history, search, the list's last message, unread), not for anyone else. Returns the
    /// seq cleared up to.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the user is not a member.
    pub async fn clear_history(&self, conversation: &str, user: &str) -> Result<i64, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let last_seq: i64 = conversations::table
                    .find(conversation)
                    .select(conversations::last_seq)
                    .first(conn)
                    .await?;
                let mine = members::table
                    .find((conversation, user))
                    .filter(members::left_at.is_null());
                let member: MemberRow = mine
                    .select(MemberRow::as_select())
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or(StoreError::NotFound)?;
                // Only forward: a concurrent clear that read a later seq wins.
                diesel::update(mine.filter(members::cleared_seq.lt(last_seq)))
                    .set(members::cleared_seq.eq(last_seq))
                    .execute(conn)
                    .await?;
                Ok(member.cleared_seq.max(last_seq))
            })
        })
        .await
    }
}
