//! The batch statements on PostgreSQL: each is one statement for the whole batch, with the
//! rows passed as arrays and expanded with `unnest`, since every statement is a network round
//! trip.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use schema::{ConversationRow, MessageRow, OutboxRow, conversations, event_outbox, messages};

use super::statements::{
    BatchStatements, BlockRow, DeliveryMark, HeadRow, IdRow, ReadMark, Reservation, Reserved,
};

#[derive(diesel::QueryableByName)]
struct ReservedRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    last_seq: i64,
    /// Set on the rows that name a lagging sender rather than a reservation.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    lagging_user: Option<String>,
}

/// Both updates in one statement: the read positions follow from the seqs the conversation
/// update assigns, which data-modifying CTEs pass along without a second round trip.
const PG_RESERVE: &str = "\
WITH reserved AS (\
    UPDATE conversations AS c \
    SET last_seq = c.last_seq + v.k, last_message_id = v.last_id, last_activity_at = $4 \
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, k, last_id) \
    WHERE c.id = v.id AND c.status = 'active' \
    RETURNING c.id, c.last_seq, v.k\
), marked AS (\
    UPDATE members AS m SET read_seq = r.last_seq - v.d \
    FROM unnest($5::text[], $6::text[], $7::bigint[]) AS v(conversation_id, user_id, d) \
    JOIN reserved AS r ON r.id = v.conversation_id \
    JOIN members AS was ON was.conversation_id = v.conversation_id \
        AND was.user_id = v.user_id \
    WHERE m.conversation_id = v.conversation_id AND m.user_id = v.user_id \
    AND m.read_seq < r.last_seq - v.d \
    RETURNING m.conversation_id, m.user_id, was.read_seq < r.last_seq - r.k AS lagged\
) SELECT id, last_seq, NULL::text AS lagging_user FROM reserved \
UNION ALL SELECT conversation_id, 0, user_id FROM marked WHERE lagged";

const PG_INSERT: &str = "\
INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, format, content, \
    attachment, reply_to, forwarded_from, status, created_at, recalled_at, mentions, \
    sender_position, recipient_position) \
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
    $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::bigint[], \
    $13::bigint[], $14::text[], $15::bigint[], $16::bigint[])";

/// The heads that exist, in the order of the (sorted) array, so that two nodes' batches lock
/// common users in the same order.
const PG_ADVANCE_INBOXES: &str = "\
UPDATE inbox_heads AS h SET position = h.position + v.n \
FROM unnest($1::text[], $2::bigint[]) AS v(user_id, n) \
WHERE h.user_id = v.user_id RETURNING h.user_id, h.position";

/// A user's first private message creates the head; another node may create it meanwhile.
const PG_CREATE_INBOXES: &str = "\
INSERT INTO inbox_heads (user_id, position) SELECT * FROM unnest($1::text[], $2::bigint[]) \
ON CONFLICT (user_id) DO UPDATE SET position = inbox_heads.position + excluded.position \
RETURNING user_id, position";

/// One probe of the unique index per pair. Not two `= ANY` lists, which PostgreSQL probes with
/// every sender times every clientMsgId (262,144 probes for a batch of 512), and not a plain
/// join, which the planner turns into a hash join over a scan of the whole table (15 ms at
/// 44,000 messages, against 2 ms of probes); the `LIMIT` keeps the subquery from being flattened.
const PG_FIND_STORED: &str = "\
SELECT m.id FROM unnest($1::text[], $2::text[]) AS k(sender_id, client_msg_id) \
CROSS JOIN LATERAL (SELECT id FROM messages \
    WHERE sender_id = k.sender_id AND client_msg_id = k.client_msg_id LIMIT 1) AS m";

const PG_MARK_DELIVERED: &str = "\
UPDATE members AS m SET delivered_seq = v.seq \
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v(conversation_id, user_id, seq) \
WHERE m.conversation_id = v.conversation_id AND m.user_id = v.user_id \
AND m.delivered_seq < v.seq";

/// Probes per pair, for the reason given at [`PG_FIND_STORED`].
const PG_FIND_BLOCKS: &str = "\
SELECT b.user_id, b.blocked_id FROM unnest($1::text[], $2::text[]) AS k(user_id, blocked_id) \
CROSS JOIN LATERAL (SELECT user_id, blocked_id FROM blocks \
    WHERE user_id = k.user_id AND blocked_id = k.blocked_id LIMIT 1) AS b";

impl BatchStatements for diesel_async::AsyncPgConnection {
    async fn find_blocks(
        &mut self,
        pairs: &[(&str, &str)],
    ) -> diesel::QueryResult<Vec<(String, String)>> {
        use diesel::sql_types::{Array, Text};
        let rows: Vec<BlockRow> = diesel::sql_query(PG_FIND_BLOCKS)
            .bind::<Array<Text>, _>(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(pairs.iter().map(|p| p.1).collect::<Vec<_>>())
            .load(self)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.user_id, row.blocked_id))
            .collect())
    }

    async fn mark_delivered(&mut self, marks: &[DeliveryMark<'_>]) -> diesel::QueryResult<usize> {
        use diesel::sql_types::{Array, BigInt, Text};
        use diesel_async::AsyncConnection;
        // The writer's batches update members too (senders' read positions), in an order of
        // their own: waiting on one of their rows could close a cycle, which PostgreSQL breaks
        // only after deadlock_timeout (1 s by default), stalling every send of the batch. This
        // status may come late, so it gives way at once instead and is tried again.
        self.transaction(async |conn| {
            diesel::sql_query("SET LOCAL lock_timeout = '50ms'")
                .execute(conn)
                .await?;
            diesel::sql_query(PG_MARK_DELIVERED)
                .bind::<Array<Text>, _>(marks.iter().map(|m| m.conversation).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(marks.iter().map(|m| m.user).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(marks.iter().map(|m| m.seq).collect::<Vec<_>>())
                .execute(conn)
                .await
        })
        .await
    }

    async fn find_stored(
        &mut self,
        senders: &[&str],
        client_ids: &[&str],
    ) -> diesel::QueryResult<Vec<MessageRow>> {
        use diesel::sql_types::{Array, Text};
        let found: Vec<IdRow> = diesel::sql_query(PG_FIND_STORED)
            .bind::<Array<Text>, _>(senders)
            .bind::<Array<Text>, _>(client_ids)
            .load(self)
            .await?;
        // Retries are rare: the common batch ends here with one cheap statement.
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = found.into_iter().map(|row| row.id).collect();
        messages::table
            .filter(messages::id.eq_any(ids))
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
        use diesel::sql_types::{Array, BigInt, Text};
        let ids: Vec<&str> = reservations.iter().map(|r| r.conversation).collect();
        let counts: Vec<i64> = reservations.iter().map(|r| r.count).collect();
        let last_ids: Vec<i64> = reservations.iter().map(|r| r.last_message_id).collect();
        let mark_conversations: Vec<&str> = marks.iter().map(|m| m.conversation).collect();
        let mark_users: Vec<&str> = marks.iter().map(|m| m.user).collect();
        let distances: Vec<i64> = marks.iter().map(|m| m.distance).collect();
        let rows: Vec<ReservedRow> = diesel::sql_query(PG_RESERVE)
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<BigInt>, _>(counts)
            .bind::<Array<BigInt>, _>(last_ids)
            .bind::<BigInt, _>(now)
            .bind::<Array<Text>, _>(mark_conversations)
            .bind::<Array<Text>, _>(mark_users)
            .bind::<Array<BigInt>, _>(distances)
            .load(self)
            .await?;
        let mut reserved = Reserved {
            last_seqs: HashMap::with_capacity(reservations.len()),
            lagged: Vec::new(),
        };
        for row in rows {
            match row.lagging_user {
                Some(user) => reserved.lagged.push((row.id, user)),
                None => {
                    reserved.last_seqs.insert(row.id, row.last_seq);
                }
            }
        }
        Ok(reserved)
    }

    async fn insert_rows(&mut self, rows: &[MessageRow]) -> diesel::QueryResult<usize> {
        use diesel::sql_types::{Array, BigInt, Nullable, Text};
        let column = |f: fn(&MessageRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        diesel::sql_query(PG_INSERT)
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(column(|r| &r.conversation_id))
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(column(|r| &r.sender_id))
            .bind::<Array<Text>, _>(column(|r| &r.client_msg_id))
            .bind::<Array<Text>, _>(column(|r| &r.format))
            .bind::<Array<Text>, _>(column(|r| &r.content))
            .bind::<Array<Nullable<Text>>, _>(
                rows.iter()
                    .map(|r| r.attachment.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<BigInt>>, _>(rows.iter().map(|r| r.reply_to).collect::<Vec<_>>())
            .bind::<Array<Nullable<Text>>, _>(
                rows.iter()
                    .map(|r| r.forwarded_from.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(column(|r| &r.status))
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind::<Array<Nullable<BigInt>>, _>(
                rows.iter().map(|r| r.recalled_at).collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                rows.iter()
                    .map(|r| r.mentions.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<BigInt>>, _>(
                rows.iter().map(|r| r.sender_position).collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<BigInt>>, _>(
                rows.iter()
                    .map(|r| r.recipient_position)
                    .collect::<Vec<_>>(),
            )
            .execute(self)
            .await
    }

    async fn advance_inboxes(
        &mut self,
        users: &[&str],
        counts: &[i64],
    ) -> diesel::QueryResult<HashMap<String, i64>> {
        use diesel::sql_types::{Array, BigInt, Text};
        let moved: Vec<HeadRow> = diesel::sql_query(PG_ADVANCE_INBOXES)
            .bind::<Array<Text>, _>(users)
            .bind::<Array<BigInt>, _>(counts)
            .load(self)
            .await?;
        let mut heads: HashMap<String, i64> = moved
            .into_iter()
            .map(|row| (row.user_id, row.position))
            .collect();
        if heads.len() < users.len() {
            let (missing, added): (Vec<&str>, Vec<i64>) = users
                .iter()
                .zip(counts)
                .filter(|(user, _)| !heads.contains_key(**user))
                .map(|(user, count)| (*user, *count))
                .unzip();
            let created: Vec<HeadRow> = diesel::sql_query(PG_CREATE_INBOXES)
                .bind::<Array<Text>, _>(missing)
                .bind::<Array<BigInt>, _>(added)
                .load(self)
                .await?;
            heads.extend(created.into_iter().map(|row| (row.user_id, row.position)));
        }
        Ok(heads)
    }

    async fn create_conversations(
        &mut self,
        rows: &[ConversationRow],
    ) -> diesel::QueryResult<Vec<String>> {
        diesel::insert_into(conversations::table)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(conversations::id)
            .get_results(self)
            .await
    }

    async fn record_events(&mut self, rows: &[OutboxRow]) -> diesel::QueryResult<usize> {
        diesel::insert_into(event_outbox::table)
            .values(rows)
            .execute(self)
            .await
    }
}
