//! The group-commit writer: one task that takes every pending send off a queue and commits them
//! together in one transaction.
//!
//! In one transaction a batch: finds clientMsgIds already stored (idempotency), creates the
//! private / system / assistant conversations that do not exist yet, reserves a contiguous range
//! of seqs per conversation with `UPDATE .. SET last_seq = last_seq + k RETURNING last_seq`
//! (a row lock, so nodes sharing PostgreSQL cannot interleave), advances each sender's read
//! position, and inserts all messages. On PostgreSQL each of these steps is one statement for
//! the whole batch (rows passed as arrays and expanded with `unnest`), so a batch costs the same
//! few round trips however many conversations it touches; see `BatchStatements`. Each caller
//! is answered only after the commit. When a batch fails, its sends are retried one by one, so
//! one bad send cannot fail the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use schema::{
    ConversationRow, MemberRow, MessageRow, OutboxRow, conversations, event_outbox, members,
    messages,
};
use tokio::sync::{mpsc, oneshot};

use super::conversations::{member_row, new_conversation};
use super::messages::{NewMessage, SendOutcome};
use super::order::SeqOrder;
use super::{IdGenerator, Pool, StoreError, with_conn};
use crate::metrics::Metrics;
use crate::util::now_ms;

type Reply = oneshot::Sender<Result<SendOutcome, StoreError>>;

/// The sending side of the writer.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    queue: mpsc::Sender<(NewMessage, Reply)>,
}

impl WriterHandle {
    pub(crate) async fn send(&self, message: NewMessage) -> Result<SendOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((message, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer dropped the send".into()))?
    }
}

impl super::Store {
    pub(crate) fn writer(&self) -> &WriterHandle {
        &self.writer
    }

    /// Moves recipients' delivered positions forward (never back): `(conversation, recipient,
    /// seq)` means the message at `seq` reached one of the recipient's sessions. One statement
    /// on PostgreSQL however many positions move.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn mark_delivered(
        &self,
        deliveries: &[(String, String, i64)],
    ) -> Result<(), StoreError> {
        // One position per member, the furthest: an UPDATE .. FROM with two rows for the same
        // member would apply either.
        let mut furthest: HashMap<(&str, &str), i64> = HashMap::with_capacity(deliveries.len());
        for (conversation, recipient, seq) in deliveries {
            let entry = furthest
                .entry((conversation.as_str(), recipient.as_str()))
                .or_insert(*seq);
            *entry = (*entry).max(*seq);
        }
        let marks: Vec<DeliveryMark<'_>> = furthest
            .into_iter()
            .map(|((conversation, user), seq)| DeliveryMark {
                conversation,
                user,
                seq,
            })
            .collect();
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                BatchStatements::mark_delivered(conn, &marks).await?;
                Ok(())
            })
        })
        .await
    }
}

/// A recipient's new delivered position.
struct DeliveryMark<'a> {
    conversation: &'a str,
    user: &'a str,
    seq: i64,
}

/// Pending sends the queue holds before senders wait for room.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// Connections of the writer's own pool: one commits; a second stands by for a reconnect.
const WRITER_CONNECTIONS: u32 = 2;

/// Starts the writer on a thread of its own, with a runtime and a pool of its own.
///
/// Why a thread: a batch is a handful of round trips to the database, and on the shared runtime
/// each answer wakes the writer behind every session task that is ready at that moment (with
/// thousands of senders, milliseconds per round trip), which stretched each batch and so the
/// latency of every send in it. On its own thread the writer is scheduled by the kernel as soon
/// as its answer arrives. Its connections live on that runtime too, for the same reason.
pub(crate) async fn start(
    settings: &super::StoreSettings,
    ids: Arc<IdGenerator>,
    order: Arc<SeqOrder>,
) -> Result<WriterHandle, StoreError> {
    let (queue, jobs) = mpsc::channel::<(NewMessage, Reply)>(QUEUE_CAPACITY);
    let (ready, started) = oneshot::channel::<Result<(), StoreError>>();
    let settings = settings.clone();
    std::thread::Builder::new()
        .name("broker-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready.send(Err(StoreError::Unavailable(error.to_string())));
                    return;
                }
            };
            runtime.block_on(async move {
                let pool =
                    match super::connect_sized(&settings, WRITER_CONNECTIONS, WRITER_CONNECTIONS)
                        .await
                    {
                        Ok(pool) => pool,
                        Err(error) => {
                            let _ = ready.send(Err(error));
                            return;
                        }
                    };
                let _ = ready.send(Ok(()));
                run(pool, ids, settings, order, jobs).await;
            });
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
    started
        .await
        .map_err(|_| StoreError::Unavailable("the writer did not start".into()))??;
    Ok(WriterHandle { queue })
}

/// Takes batches off the queue until every handle (every Store clone) is gone.
async fn run(
    pool: Pool,
    ids: Arc<IdGenerator>,
    settings: super::StoreSettings,
    order: Arc<SeqOrder>,
    mut jobs: mpsc::Receiver<(NewMessage, Reply)>,
) {
    let max_batch = settings.max_batch.max(1);
    let outbox_node = settings.outbox_node.as_deref();
    let mut batch: Vec<(NewMessage, Reply)> = Vec::with_capacity(max_batch);
    while jobs.recv_many(&mut batch, max_batch).await > 0 {
        let (messages, replies): (Vec<NewMessage>, Vec<Reply>) = batch.drain(..).unzip();
        let started = Instant::now();
        let outcomes = commit(&pool, &ids, outbox_node, &messages, settings.timeout).await;
        let metrics = Metrics::get();
        metrics.store_batch_seconds.record(started.elapsed());
        metrics.store_batch_messages.record(messages.len() as f64);
        // Before anyone hears of the commit: the pushes of these seqs will be run in order.
        order.committed(outcomes.iter().filter_map(|outcome| match outcome {
            Ok(SendOutcome::Stored { message, .. }) => {
                Some((message.conversation_id.as_str(), message.seq))
            }
            _ => None,
        }));
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
}

/// Commits a batch, or each send alone when the batch fails.
async fn commit(
    pool: &Pool,
    ids: &IdGenerator,
    outbox: Option<&str>,
    batch: &[NewMessage],
    timeout: Duration,
) -> Vec<Result<SendOutcome, StoreError>> {
    let whole = tokio::time::timeout(timeout, apply(pool, ids, outbox, batch)).await;
    match whole {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(_)) if batch.len() > 1 => {
            Metrics::get().store_batch_failures.increment(1);
            let mut outcomes = Vec::with_capacity(batch.len());
            for message in batch {
                let single = tokio::time::timeout(
                    timeout,
                    apply(pool, ids, outbox, std::slice::from_ref(message)),
                )
                .await
                .unwrap_or(Err(StoreError::Timeout))
                .and_then(|mut o| o.remove(0));
                outcomes.push(single);
            }
            outcomes
        }
        Ok(Err(error)) => vec![Err(error)],
        Err(_) => batch.iter().map(|_| Err(StoreError::Timeout)).collect(),
    }
}

async fn apply(
    pool: &Pool,
    ids: &IdGenerator,
    outbox: Option<&str>,
    batch: &[NewMessage],
) -> Result<Vec<Result<SendOutcome, StoreError>>, StoreError> {
    with_conn!(pool, |conn| {
        conn.transaction(async |conn| {
            super::InsertRows::lock_for_write(conn).await?;
            let now = now_ms();
            let mut outcomes: Vec<Option<SendOutcome>> = vec![None; batch.len()];

            // Idempotency: clientMsgIds stored before, and repeats within this batch.
            let senders: Vec<&str> = batch.iter().map(|m| m.sender.as_str()).collect();
            let client_ids: Vec<&str> = batch.iter().map(|m| m.client_msg_id.as_str()).collect();
            let stored = BatchStatements::find_stored(conn, &senders, &client_ids).await?;
            let mut known: HashMap<(String, String), MessageRow> = stored
                .into_iter()
                .map(|row| ((row.sender_id.clone(), row.client_msg_id.clone()), row))
                .collect();
            let mut first_in_batch: HashMap<(&str, &str), usize> = HashMap::new();
            let mut repeats: Vec<(usize, usize)> = Vec::new();
            let mut fresh: Vec<usize> = Vec::new();
            for (index, message) in batch.iter().enumerate() {
                let key = (message.sender.clone(), message.client_msg_id.clone());
                if let Some(row) = known.remove(&key) {
                    outcomes[index] = Some(SendOutcome::Duplicate(row.clone()));
                    known.insert(key, row);
                } else if let Some(&first) =
                    first_in_batch.get(&(message.sender.as_str(), message.client_msg_id.as_str()))
                {
                    repeats.push((index, first));
                } else {
                    first_in_batch.insert(
                        (message.sender.as_str(), message.client_msg_id.as_str()),
                        index,
                    );
                    fresh.push(index);
                }
            }

            // Blocks: one lookup for every private send of the batch, in the transaction that
            // stores them.
            let mut blocked: Vec<usize> = Vec::new();
            let mut checks: Vec<(&str, &str)> = fresh
                .iter()
                .filter_map(|&i| {
                    let message = &batch[i];
                    let user = message.unless_blocked_by.as_deref()?;
                    Some((user, message.sender.as_str()))
                })
                .collect();
            if !checks.is_empty() {
                checks.sort_unstable();
                checks.dedup();
                let found = BatchStatements::find_blocks(conn, &checks).await?;
                if !found.is_empty() {
                    fresh.retain(|&i| {
                        let message = &batch[i];
                        let refused = found.iter().any(|(user, sender)| {
                            message.unless_blocked_by.as_deref() == Some(user.as_str())
                                && *sender == message.sender
                        });
                        if refused {
                            blocked.push(i);
                        }
                        !refused
                    });
                }
            }

            // Conversations created by their first message: one insert for all of the batch's
            // candidates, which tells which ones did not exist yet.
            let mut candidates: Vec<ConversationRow> = Vec::new();
            let mut participants: HashMap<String, Vec<String>> = HashMap::new();
            for &index in &fresh {
                let target = &batch[index].target;
                let Some(kind) = target.kind() else { continue };
                let id = target.conversation_id();
                if participants.contains_key(&id) {
                    continue;
                }
                participants.insert(id.clone(), target.participants());
                candidates.push(new_conversation(id, kind, now));
            }
            let mut created: HashMap<String, bool> = candidates
                .iter()
                .map(|row| (row.id.clone(), false))
                .collect();
            if !candidates.is_empty() {
                let inserted = BatchStatements::create_conversations(conn, &candidates).await?;
                let mut member_rows: Vec<MemberRow> = Vec::new();
                for id in inserted {
                    for user in participants.remove(&id).unwrap_or_default() {
                        member_rows.push(member_row(&id, &user, "member", now, 0));
                    }
                    created.insert(id, true);
                }
                if !member_rows.is_empty() {
                    super::InsertRows::insert_members(conn, &member_rows).await?;
                }
            }

            // A contiguous seq range per conversation, in arrival order.
            let mut by_conversation: Vec<(String, Vec<usize>)> = Vec::new();
            let mut position: HashMap<String, usize> = HashMap::new();
            for &index in &fresh {
                let id = batch[index].target.conversation_id();
                match position.get(&id) {
                    Some(&at) => by_conversation[at].1.push(index),
                    None => {
                        position.insert(id.clone(), by_conversation.len());
                        by_conversation.push((id, vec![index]));
                    }
                }
            }
            // Sorted by id, so that writers of several nodes sharing the database tend to lock
            // common conversations in the same order; should their locks still cross,
            // PostgreSQL fails one batch as a deadlock and its sends are retried one by one.
            by_conversation.sort_by(|a, b| a.0.cmp(&b.0));
            let message_ids: Vec<Vec<i64>> = by_conversation
                .iter()
                .map(|(_, indexes)| indexes.iter().map(|_| ids.next()).collect())
                .collect();
            let mut reservations = Vec::with_capacity(by_conversation.len());
            let mut marks = Vec::new();
            for ((conversation, indexes), message_ids) in by_conversation.iter().zip(&message_ids) {
                let count = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
                reservations.push(Reservation {
                    conversation,
                    count,
                    last_message_id: message_ids.last().copied().unwrap_or_default(),
                });
                // Sending reads everything before: the sender's own messages never count as
                // unread for them. Each sender's newest message, counted from the range's end.
                let mut newest_by_sender: Vec<(&str, i64)> = Vec::new();
                for (offset, &index) in indexes.iter().enumerate() {
                    let distance = count - 1 - i64::try_from(offset).unwrap_or(0);
                    let sender = batch[index].sender.as_str();
                    match newest_by_sender.iter_mut().find(|(s, _)| *s == sender) {
                        Some(entry) => entry.1 = distance,
                        None => newest_by_sender.push((sender, distance)),
                    }
                }
                marks.extend(
                    newest_by_sender
                        .into_iter()
                        .map(|(user, distance)| ReadMark {
                            conversation,
                            user,
                            distance,
                        }),
                );
            }
            let Reserved { last_seqs, lagged } =
                BatchStatements::reserve(conn, &reservations, &marks, now).await?;
            let mut marked_read: Vec<(String, String)> = Vec::new();
            let mut rows: Vec<MessageRow> = Vec::with_capacity(fresh.len());
            let mut row_of: HashMap<usize, usize> = HashMap::with_capacity(fresh.len());
            for ((conversation, indexes), message_ids) in by_conversation.iter().zip(message_ids) {
                let last = *last_seqs.get(conversation).ok_or(StoreError::NotFound)?;
                let count = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
                let first_seq = last - count + 1;
                for (offset, (&index, id)) in indexes.iter().zip(message_ids).enumerate() {
                    let message = &batch[index];
                    row_of.insert(index, rows.len());
                    rows.push(MessageRow {
                        id,
                        conversation_id: conversation.clone(),
                        seq: first_seq + i64::try_from(offset).unwrap_or(0),
                        sender_id: message.sender.clone(),
                        client_msg_id: message.client_msg_id.clone(),
                        format: message.format.clone(),
                        content: message.content.clone(),
                        attachment: message.attachment.clone(),
                        reply_to: message.reply_to,
                        forwarded_from: message.forwarded_from.clone(),
                        status: "sent".to_owned(),
                        created_at: now,
                        recalled_at: None,
                    });
                }
                // A send that moved the sender's read position past messages of others (unread
                // before the batch, or earlier in it) reads them: see `SendOutcome`.
                for mark in marks
                    .iter()
                    .filter(|m| m.conversation == conversation.as_str())
                {
                    let newest = last - mark.distance;
                    let others_before = indexes
                        .iter()
                        .any(|&i| batch[i].sender != mark.user && rows[row_of[&i]].seq < newest);
                    let was_behind = lagged
                        .iter()
                        .any(|(c, u)| c == conversation && u == mark.user);
                    if was_behind || others_before {
                        marked_read.push((conversation.clone(), mark.user.to_owned()));
                    }
                }
            }
            if !rows.is_empty() {
                BatchStatements::insert_rows(conn, &rows).await?;
            }
            // A file becomes downloadable by a conversation only with the message carrying it.
            let shares = super::shares::of_batch(
                |i| batch.get(i)?.shared_file.as_ref(),
                fresh.iter().map(|&i| (i, &rows[row_of[&i]])),
            );
            if !shares.is_empty() {
                super::shares::RecordShares::record_shares(conn, &shares).await?;
            }
            // Domain events commit with the messages they describe (cluster mode).
            if let Some(node) = outbox {
                let mut events = Vec::new();
                for (conversation, was_created) in &created {
                    if *was_created {
                        let members: Vec<String> = batch
                            .iter()
                            .find(|m| m.target.conversation_id() == *conversation)
                            .map(|m| m.target.participants())
                            .unwrap_or_default();
                        events.push(super::outbox::event_row(
                            ids,
                            node,
                            "conversation.created",
                            serde_json::json!({"conversationId": conversation, "userIds": members}),
                        ));
                    }
                }
                for row in &rows {
                    events.push(super::outbox::event_row(
                        ids,
                        node,
                        "message.sent",
                        serde_json::json!({
                            "conversationId": row.conversation_id,
                            "messageId": row.id.to_string(),
                            "clientMsgId": row.client_msg_id,
                            "senderId": row.sender_id,
                            "seq": row.seq,
                        }),
                    ));
                }
                if !events.is_empty() {
                    BatchStatements::record_events(conn, &events).await?;
                }
            }

            for &index in &fresh {
                let row = rows[row_of[&index]].clone();
                // Only the conversation's first message reports the creation.
                let created =
                    created.get(&row.conversation_id).copied().unwrap_or(false) && row.seq == 1;
                let marked_read = marked_read
                    .iter()
                    .any(|(c, u)| *c == row.conversation_id && *u == row.sender_id);
                outcomes[index] = Some(SendOutcome::Stored {
                    message: row,
                    created,
                    marked_read,
                });
            }
            let refusal = |index: usize| {
                StoreError::Blocked(batch[index].unless_blocked_by.clone().unwrap_or_default())
            };
            let mut answers: Vec<Option<Result<SendOutcome, StoreError>>> =
                outcomes.into_iter().map(|o| o.map(Ok)).collect();
            for &index in &blocked {
                answers[index] = Some(Err(refusal(index)));
            }
            for (index, first) in repeats {
                answers[index] = Some(match &answers[first] {
                    Some(Ok(outcome)) => Ok(SendOutcome::Duplicate(outcome.message().clone())),
                    Some(Err(_)) => Err(refusal(first)),
                    None => Err(StoreError::NotFound),
                });
            }
            answers
                .into_iter()
                .map(|o| o.ok_or(StoreError::NotFound))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await
    })
}

/// A conversation's share of a batch: `count` seqs, the last one for message `last_message_id`.
struct Reservation<'a> {
    conversation: &'a str,
    count: i64,
    last_message_id: i64,
}

/// A sender's read position moves to its newest message of the batch: the reserved range's
/// last seq minus `distance`.
struct ReadMark<'a> {
    conversation: &'a str,
    user: &'a str,
    distance: i64,
}

/// The statements of a batch whose number would otherwise grow with the batch. PostgreSQL is
/// a network round trip per statement, so there each is one statement for the whole batch,
/// with the rows passed as arrays; SQLite runs in process, where a statement per row costs
/// little.
/// What reserving a batch's seq ranges answers.
struct Reserved {
    /// Each conversation's new `last_seq`; a conversation missing or not active is absent.
    last_seqs: HashMap<String, i64>,
    /// (conversation, user) of senders whose read position was behind the start of the batch's
    /// range: their send read messages of others.
    lagged: Vec<(String, String)>,
}

trait BatchStatements {
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

    /// Records domain events in the outbox.
    fn record_events(
        &mut self,
        rows: &[OutboxRow],
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send;
}

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
    attachment, reply_to, forwarded_from, status, created_at, recalled_at) \
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
    $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::bigint[], \
    $13::bigint[])";

/// One probe of the unique index per pair. Not two `= ANY` lists, which PostgreSQL probes with
/// every sender times every clientMsgId (262,144 probes for a batch of 512), and not a plain
/// join, which the planner turns into a hash join over a scan of the whole table (15 ms at
/// 44,000 messages, against 2 ms of probes); the `LIMIT` keeps the subquery from being flattened.
const PG_FIND_STORED: &str = "\
SELECT m.id FROM unnest($1::text[], $2::text[]) AS k(sender_id, client_msg_id) \
CROSS JOIN LATERAL (SELECT id FROM messages \
    WHERE sender_id = k.sender_id AND client_msg_id = k.client_msg_id LIMIT 1) AS m";

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

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

#[derive(diesel::QueryableByName)]
struct BlockRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    user_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    blocked_id: String,
}

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
        diesel::sql_query(PG_MARK_DELIVERED)
            .bind::<Array<Text>, _>(marks.iter().map(|m| m.conversation).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(marks.iter().map(|m| m.user).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(marks.iter().map(|m| m.seq).collect::<Vec<_>>())
            .execute(self)
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
            .execute(self)
            .await
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

impl BatchStatements for super::SqliteConn {
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
                    .filter(conversations::status.eq("active")),
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
        for mark in marks {
            let Some(last) = last_seqs.get(mark.conversation) else {
                continue;
            };
            let seq = last - mark.distance;
            let before_range = reservations
                .iter()
                .find(|r| r.conversation == mark.conversation)
                .map_or(0, |r| last - r.count);
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
        super::InsertRows::insert_messages(self, rows).await
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
