//! The statements of a batch whose number would otherwise grow with the batch, as one trait
//! with an implementation per backend ([`super::postgres`], [`super::sqlite`]), and the values
//! they take and answer.

use std::collections::HashMap;

use schema::{ConversationRow, MessageRow, OutboxRow};

/// A recipient's new delivered position.
pub(super) struct DeliveryMark<'a> {
    pub(super) conversation: &'a str,
    pub(super) user: &'a str,
    pub(super) seq: i64,
}

/// A conversation's share of a batch: `count` seqs, the last one for message `last_message_id`.
#[derive(Clone)]
pub(super) struct Reservation<'a> {
    pub(super) conversation: &'a str,
    pub(super) count: i64,
    pub(super) last_message_id: i64,
}

/// A sender's read position moves to its newest message of the batch: the reserved range's
/// last seq minus `distance`.
#[derive(Clone)]
pub(super) struct ReadMark<'a> {
    pub(super) conversation: &'a str,
    pub(super) user: &'a str,
    pub(super) distance: i64,
}

/// What reserving a batch's seq ranges answers.
pub(super) struct Reserved {
    /// Each conversation's new `last_seq`; a conversation missing or not active is absent.
    pub(super) last_seqs: HashMap<String, i64>,
    /// (conversation, user) of senders whose read position was behind the start of the batch's
    /// range: their send read messages of others.
    pub(super) lagged: Vec<(String, String)>,
}

/// The statements of a batch whose number would otherwise grow with the batch. PostgreSQL is
/// a network round trip per statement, so there each is one statement for the whole batch,
/// with the rows passed as arrays; SQLite runs in process, where a statement per row costs
/// little.
pub(super) trait BatchStatements {
    /// The stored messages among the `(senders[i], client_ids[i])` pairs.
    fn find_stored(
        &mut self,
        senders: &[&str],
        client_ids: &[&str],
    ) -> impl Future<Output = diesel::QueryResult<Vec<MessageRow>>> + Send;

    /// Reserves each conversation's seq range (locking its row until the commit) and moves
    /// the senders' read positions.
    fn reserve(
        &mut self,
        reservations: &[Reservation<'_>],
        marks: &[ReadMark<'_>],
        now: i64,
    ) -> impl Future<Output = diesel::QueryResult<Reserved>> + Send;

    /// Inserts the batch's messages.
    fn insert_rows(
        &mut self,
        rows: &[MessageRow],
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send;

    /// Inserts the conversations that do not exist yet; returns the ids of those inserted.
    fn create_conversations(
        &mut self,
        rows: &[ConversationRow],
    ) -> impl Future<Output = diesel::QueryResult<Vec<String>>> + Send;

    /// The `(user, sender)` pairs among `pairs` where the user has blocked the sender.
    fn find_blocks(
        &mut self,
        pairs: &[(&str, &str)],
    ) -> impl Future<Output = diesel::QueryResult<Vec<(String, String)>>> + Send;

    /// Moves delivered positions forward; at most one mark per member.
    fn mark_delivered(
        &mut self,
        marks: &[DeliveryMark<'_>],
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send;

    /// Adds `counts[i]` to the inbox head of `users[i]` (sorted, distinct), creating the heads
    /// missing; returns every user's new head. Locks the heads until the commit.
    fn advance_inboxes(
        &mut self,
        users: &[&str],
        counts: &[i64],
    ) -> impl Future<Output = diesel::QueryResult<HashMap<String, i64>>> + Send;

    /// Records domain events in the outbox.
    fn record_events(
        &mut self,
        rows: &[OutboxRow],
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send;
}

#[derive(diesel::QueryableByName)]
pub(super) struct IdRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(super) id: i64,
}

#[derive(diesel::QueryableByName)]
pub(super) struct HeadRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) user_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(super) position: i64,
}

#[derive(diesel::QueryableByName)]
pub(super) struct BlockRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) user_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) blocked_id: String,
}
