//! The batch statements on SQLite: in process, inside the same transaction, where a statement
//! per row costs little; lookups of pairs still go as one statement, to save hops to SQLite's
//! blocking thread.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use schema::{
    ConversationRow, MessageRow, OutboxRow, conversations, event_outbox, inbox_heads, members,
    messages,
};

use super::statements::{
    BatchStatements, BlockRow, DeliveryMark, IdRow, ReadMark, Reservation, Reserved,
};
use crate::domain::ConversationStatus;
use crate::store::{InsertRows, SqliteConn};

/// `select` over `k(a, b)`, a table of `pairs` given as one `VALUES` list: a whole batch's
/// lookup in one statement, so one hop to SQLite's blocking thread rather than one per pair.
/// `select` joins `k` with `CROSS JOIN`, which in SQLite keeps `k` outside, so that each pair is
/// one search of the unique index (a row-value `IN` scans the whole index instead).
fn sqlite_pairs<'a>(
    select: &str,
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> diesel::query_builder::BoxedSqlQuery<'a, diesel::sqlite::Sqlite, diesel::query_builder::SqlQuery>
{
    use diesel::sql_types::Text;
    let mut sql = String::with_capacity(select.len() + pairs.len() * 8 + 32);
    sql.push_str("WITH k(a, b) AS (VALUES ");
    let mut query_pairs = Vec::with_capacity(pairs.len());
    for (index, pair) in pairs.enumerate() {
        sql.push_str(if index == 0 { "(?, ?)" } else { ", (?, ?)" });
        query_pairs.push(pair);
    }
    sql.push_str(") ");
    sql.push_str(select);
    let mut query = diesel::sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
    for (first, second) in query_pairs {
        query = query.bind::<Text, _>(first).bind::<Text, _>(second);
    }
    query
}

impl BatchStatements for SqliteConn {
    async fn find_blocks(
        &mut self,
        pairs: &[(&str, &str)],
    ) -> diesel::QueryResult<Vec<(String, String)>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<BlockRow> = sqlite_pairs(
            "SELECT b.user_id, b.blocked_id FROM k CROSS JOIN blocks AS b \
             ON b.user_id = k.a AND b.blocked_id = k.b",
            pairs.iter().copied(),
        )
        .load(self)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.user_id, row.blocked_id))
            .collect())
    }

    async fn mark_delivered(&mut self, marks: &[DeliveryMark<'_>]) -> diesel::QueryResult<usize> {
        let mut moved = 0;
        for mark in marks {
            moved += diesel::update(
                members::table
                    .filter(members::conversation_id.eq(mark.conversation))
                    .filter(members::user_id.eq(mark.user))
                    .filter(members::delivered_seq.lt(mark.seq)),
            )
            .set(members::delivered_seq.eq(mark.seq))
            .execute(self)
            .await?;
        }
        Ok(moved)
    }

    async fn find_stored(
        &mut self,
        senders: &[&str],
        client_ids: &[&str],
    ) -> diesel::QueryResult<Vec<MessageRow>> {
        if senders.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<IdRow> = sqlite_pairs(
            "SELECT m.id FROM k CROSS JOIN messages AS m \
             ON m.sender_id = k.a AND m.client_msg_id = k.b",
            senders.iter().copied().zip(client_ids.iter().copied()),
        )
        .load(self)
        .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        messages::table
            .filter(messages::id.eq_any(ids.into_iter().map(|row| row.id).collect::<Vec<_>>()))
            .select(MessageRow::as_select())
            .load(self)
            .await
    }

    async fn reserve(
        &mut self,
        reservations: &[Reservation<'_>],
        marks: &[ReadMark<'_>],
        now: i64,
    ) -> diesel::QueryResult<Reserved> {
        let mut last_seqs = HashMap::with_capacity(reservations.len());
        let mut lagged = Vec::new();
        for reservation in reservations {
            let last: Option<i64> = diesel::update(
                conversations::table
                    .find(reservation.conversation)
                    .filter(conversations::status.eq(ConversationStatus::Active.as_str())),
            )
            .set((
                conversations::last_seq.eq(conversations::last_seq + reservation.count),
                conversations::last_message_id.eq(Some(reservation.last_message_id)),
                conversations::last_activity_at.eq(now),
            ))
            .returning(conversations::last_seq)
            .get_result(self)
            .await
            .optional()?;
            if let Some(last) = last {
                last_seqs.insert(reservation.conversation.to_owned(), last);
            }
        }
        let counts: HashMap<&str, i64> = reservations
            .iter()
            .map(|r| (r.conversation, r.count))
            .collect();
        for mark in marks {
            let Some(last) = last_seqs.get(mark.conversation) else {
                continue;
            };
            let seq = last - mark.distance;
            let before_range = counts
                .get(mark.conversation)
                .map_or(0, |count| last - count);
            let mine = members::table
                .filter(members::conversation_id.eq(mark.conversation))
                .filter(members::user_id.eq(mark.user))
                .filter(members::read_seq.lt(seq));
            // The common case, nothing unread before the batch, takes one statement; a lagging
            // position takes a second, which tells that the send read messages of others.
            let caught_up = diesel::update(mine.filter(members::read_seq.ge(before_range)))
                .set(members::read_seq.eq(seq))
                .execute(self)
                .await?;
            if caught_up == 0
                && diesel::update(mine)
                    .set(members::read_seq.eq(seq))
                    .execute(self)
                    .await?
                    > 0
            {
                lagged.push((mark.conversation.to_owned(), mark.user.to_owned()));
            }
        }
        Ok(Reserved { last_seqs, lagged })
    }

    async fn insert_rows(&mut self, rows: &[MessageRow]) -> diesel::QueryResult<usize> {
        InsertRows::insert_messages(self, rows).await
    }

    async fn create_conversations(
        &mut self,
        rows: &[ConversationRow],
    ) -> diesel::QueryResult<Vec<String>> {
        // Nearly every candidate exists already: one lookup by key leaves the inserts (a
        // statement each, so a hop each to the blocking thread) to the new ones.
        let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
        let existing: std::collections::HashSet<String> = conversations::table
            .filter(conversations::id.eq_any(&ids))
            .select(conversations::id)
            .load::<String>(self)
            .await?
            .into_iter()
            .collect();
        let mut inserted = Vec::new();
        for row in rows.iter().filter(|row| !existing.contains(&row.id)) {
            let created: Option<String> = diesel::insert_into(conversations::table)
                .values(row)
                .on_conflict_do_nothing()
                .returning(conversations::id)
                .get_result(self)
                .await
                .optional()?;
            inserted.extend(created);
        }
        Ok(inserted)
    }

    async fn advance_inboxes(
        &mut self,
        users: &[&str],
        counts: &[i64],
    ) -> diesel::QueryResult<HashMap<String, i64>> {
        use diesel::upsert::excluded;
        let mut heads = HashMap::with_capacity(users.len());
        for (user, count) in users.iter().zip(counts) {
            let head: i64 = diesel::insert_into(inbox_heads::table)
                .values((
                    inbox_heads::user_id.eq(*user),
                    inbox_heads::position.eq(*count),
                ))
                .on_conflict(inbox_heads::user_id)
                .do_update()
                .set(
                    inbox_heads::position
                        .eq(inbox_heads::position + excluded(inbox_heads::position)),
                )
                .returning(inbox_heads::position)
                .get_result(self)
                .await?;
            heads.insert((*user).to_owned(), head);
        }
        Ok(heads)
    }

    async fn record_events(&mut self, rows: &[OutboxRow]) -> diesel::QueryResult<usize> {
        let mut recorded = 0;
        for row in rows {
            recorded += diesel::insert_into(event_outbox::table)
                .values(row)
                .execute(self)
                .await?;
        }
        Ok(recorded)
    }
}
