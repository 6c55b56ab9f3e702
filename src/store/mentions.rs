//! What reads the mentions stored on group messages: a user's recent mentions, and which of
//! their conversations have an unread message mentioning them. Both go through the partial
//! index `messages_mentioning`, so they read only messages that mention someone.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use schema::{MessageRow, members, message_deletions, messages};

use super::{Store, StoreError, with_conn};

/// The stored `mentions` of a message that mentions everybody.
const ALL_STORED: &str = r#"["*"]"#;

/// A `LIKE` pattern matching a stored `mentions` array that names `user`. User ids are made of
/// letters, digits and `- . @ :`, none of them special to `LIKE` or to JSON.
fn naming(user: &str) -> String {
    format!("%\"{user}\"%")
}

impl Store {
    /// The messages of `user`'s current groups that mention them (by name or as everybody),
    /// newest first: only from when they joined or last cleared the group's history, without
    /// those they deleted, their own and recalled ones; before message `before` when given.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn mentions_of(
        &self,
        user: &str,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let pattern = naming(user);
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let mut query = messages::table
                    .inner_join(
                        members::table.on(members::conversation_id
                            .eq(messages::conversation_id)
                            .and(members::user_id.eq(user))),
                    )
                    .filter(members::left_at.is_null())
                    .filter(messages::mentions.is_not_null())
                    .filter(
                        messages::mentions
                            .like(&pattern)
                            .or(messages::mentions.eq(ALL_STORED)),
                    )
                    .filter(messages::seq.gt(members::joined_seq))
                    .filter(messages::seq.gt(members::cleared_seq))
                    .filter(messages::recalled_at.is_null())
                    .filter(messages::sender_id.ne(user))
                    .filter(diesel::dsl::not(diesel::dsl::exists(
                        message_deletions::table
                            .filter(message_deletions::message_id.eq(messages::id))
                            .filter(message_deletions::user_id.eq(user)),
                    )))
                    .select(MessageRow::as_select())
                    .order(messages::id.desc())
                    .limit(limit)
                    .into_boxed();
                if let Some(before) = before {
                    query = query.filter(messages::id.lt(before));
                }
                query.load(conn).await.map_err(StoreError::from)
            })
        })
        .await
    }

    /// Which of `conversations` (each with the seq `user` has seen up to) have a message after
    /// that seq that mentions `user`, not recalled and not their own.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn mentioned_after(
        &self,
        user: &str,
        conversations: &HashMap<String, i64>,
    ) -> Result<HashSet<String>, StoreError> {
        let Some(lowest) = conversations.values().min().copied() else {
            return Ok(HashSet::new());
        };
        let ids: Vec<&String> = conversations.keys().collect();
        let pattern = naming(user);
        let found: Vec<(String, i64)> = self
            .timed(async {
                with_conn!(&self.pool, |conn| {
                    messages::table
                        .filter(messages::conversation_id.eq_any(&ids))
                        .filter(messages::mentions.is_not_null())
                        .filter(messages::seq.gt(lowest))
                        .filter(
                            messages::mentions
                                .like(&pattern)
                                .or(messages::mentions.eq(ALL_STORED)),
                        )
                        .filter(messages::recalled_at.is_null())
                        .filter(messages::sender_id.ne(user))
                        .select((messages::conversation_id, messages::seq))
                        .load(conn)
                        .await
                        .map_err(StoreError::from)
                })
            })
            .await?;
        Ok(found
            .into_iter()
            .filter(|(conversation, seq)| conversations.get(conversation).is_some_and(|s| seq > s))
            .map(|(conversation, _)| conversation)
            .collect())
    }
}
