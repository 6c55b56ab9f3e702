//! Reactions to messages (one row per message, emoji and user) and the messages pinned in a
//! conversation. Both are bounded per item: the bound is checked in the transaction that adds,
//! so that concurrent adds cannot both pass it.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use self::tables::{conversation_pins, message_reactions};
use super::{InsertRows, Store, StoreError, with_conn};

/// The tables of this module.
pub mod tables {
    #![allow(missing_docs)]

    diesel::table! {
        /// One reaction of one user to one message.
        message_reactions (message_id, emoji, user_id) {
            message_id -> BigInt,
            emoji -> Text,
            user_id -> Text,
            conversation_id -> Text,
            created_at -> BigInt,
        }
    }

    diesel::table! {
        /// Messages pinned in a conversation.
        conversation_pins (conversation_id, message_id) {
            conversation_id -> Text,
            message_id -> BigInt,
            pinned_by -> Text,
            pinned_at -> BigInt,
        }
    }
}

/// One emoji's reactions to one message, as one viewer sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionCount {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: i64,
    /// Whether the viewer is one of them.
    pub mine: bool,
}

/// A row of `conversation_pins`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = conversation_pins)]
pub struct PinRow {
    /// The conversation.
    pub conversation_id: String,
    /// The pinned message.
    pub message_id: i64,
    /// Who pinned it.
    pub pinned_by: String,
    /// When.
    pub pinned_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = message_reactions)]
struct ReactionRow<'a> {
    message_id: i64,
    emoji: &'a str,
    user_id: &'a str,
    conversation_id: &'a str,
    created_at: i64,
}

/// One reaction to add or take back.
#[derive(Clone, Copy, Debug)]
pub struct Reaction<'a> {
    /// The message.
    pub message_id: i64,
    /// Its conversation.
    pub conversation_id: &'a str,
    /// Who reacts.
    pub user: &'a str,
    /// With what.
    pub emoji: &'a str,
    /// Added (`true`) or taken back.
    pub on: bool,
}

impl Store {
    /// Adds or takes back a reaction; returns whether anything changed (adding one that is
    /// there, or taking back one that is not, changes nothing).
    ///
    /// # Errors
    ///
    /// [`StoreError::Full`] when adding a new emoji would give the message more than
    /// `max_kinds` distinct ones.
    pub async fn react(
        &self,
        reaction: Reaction<'_>,
        max_kinds: usize,
        now: i64,
    ) -> Result<bool, StoreError> {
        let max_kinds = i64::try_from(max_kinds).unwrap_or(i64::MAX);
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    if !reaction.on {
                        let removed = diesel::delete(message_reactions::table.find((
                            reaction.message_id,
                            reaction.emoji,
                            reaction.user,
                        )))
                        .execute(conn)
                        .await?;
                        return Ok(removed > 0);
                    }
                    conn.lock_for_write().await?;
                    let kinds: Vec<String> = message_reactions::table
                        .filter(message_reactions::message_id.eq(reaction.message_id))
                        .select(message_reactions::emoji)
                        .distinct()
                        .load(conn)
                        .await?;
                    let known = kinds.iter().any(|k| k == reaction.emoji);
                    if !known && i64::try_from(kinds.len()).unwrap_or(i64::MAX) >= max_kinds {
                        return Err(StoreError::Full(
                            "the message has as many kinds of reaction as it may",
                        ));
                    }
                    let added = diesel::insert_into(message_reactions::table)
                        .values(ReactionRow {
                            message_id: reaction.message_id,
                            emoji: reaction.emoji,
                            user_id: reaction.user,
                            conversation_id: reaction.conversation_id,
                            created_at: now,
                        })
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    Ok(added > 0)
                })
                .await
            })
        })
        .await
    }

    /// The reactions to each of `messages` as `viewer` sees them: per message, its emoji in
    /// the order they were first used. Messages without reactions are absent.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn reactions(
        &self,
        messages: &[i64],
        viewer: &str,
    ) -> Result<HashMap<i64, Vec<ReactionCount>>, StoreError> {
        if messages.is_empty() {
            return Ok(HashMap::new());
        }
        let (counts, mine) = self
            .timed(async {
                with_conn!(&self.pool, |conn| {
                    let counts: Vec<(i64, String, i64, Option<i64>)> = message_reactions::table
                        .filter(message_reactions::message_id.eq_any(messages))
                        .group_by((message_reactions::message_id, message_reactions::emoji))
                        .select((
                            message_reactions::message_id,
                            message_reactions::emoji,
                            diesel::dsl::count_star(),
                            diesel::dsl::min(message_reactions::created_at),
                        ))
                        .load(conn)
                        .await?;
                    let mine: Vec<(i64, String)> = message_reactions::table
                        .filter(message_reactions::message_id.eq_any(messages))
                        .filter(message_reactions::user_id.eq(viewer))
                        .select((message_reactions::message_id, message_reactions::emoji))
                        .load(conn)
                        .await?;
                    Ok::<_, StoreError>((counts, mine))
                })
            })
            .await?;
        let mut ordered = counts;
        ordered.sort_by(|a, b| (a.0, a.3, &a.1).cmp(&(b.0, b.3, &b.1)));
        let mut out: HashMap<i64, Vec<ReactionCount>> = HashMap::new();
        for (message, emoji, count, _) in ordered {
            let is_mine = mine.iter().any(|(m, e)| *m == message && *e == emoji);
            out.entry(message).or_default().push(ReactionCount {
                emoji,
                count,
                mine: is_mine,
            });
        }
        Ok(out)
    }

    /// Pins a message in its conversation; returns whether it was not pinned yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Full`] when the conversation has `max_pins` pinned messages already.
    pub async fn pin(&self, row: &PinRow, max_pins: usize) -> Result<bool, StoreError> {
        let max_pins = i64::try_from(max_pins).unwrap_or(i64::MAX);
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    conn.lock_for_write().await?;
                    let pinned: Vec<i64> = conversation_pins::table
                        .filter(conversation_pins::conversation_id.eq(&row.conversation_id))
                        .select(conversation_pins::message_id)
                        .load(conn)
                        .await?;
                    if pinned.contains(&row.message_id) {
                        return Ok(false);
                    }
                    if i64::try_from(pinned.len()).unwrap_or(i64::MAX) >= max_pins {
                        return Err(StoreError::Full(
                            "the conversation has as many pinned messages as it may",
                        ));
                    }
                    diesel::insert_into(conversation_pins::table)
                        .values(row)
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    Ok(true)
                })
                .await
            })
        })
        .await
    }

    /// Unpins a message; returns whether it was pinned.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn unpin(&self, conversation: &str, message: i64) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let removed =
                    diesel::delete(conversation_pins::table.find((conversation, message)))
                        .execute(conn)
                        .await?;
                Ok(removed > 0)
            })
        })
        .await
    }

    /// The messages pinned in a conversation, the most recently pinned first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn pins(&self, conversation: &str) -> Result<Vec<PinRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conversation_pins::table
                    .filter(conversation_pins::conversation_id.eq(conversation))
                    .order((
                        conversation_pins::pinned_at.desc(),
                        conversation_pins::message_id.desc(),
                    ))
                    .select(PinRow::as_select())
                    .load(conn)
                    .await
                    .map_err(StoreError::from)
            })
        })
        .await
    }
}
