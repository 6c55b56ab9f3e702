//! The group-commit writer: one task that takes every pending send off a queue and commits them
//! together in one transaction.
//!
//! In one transaction a batch: finds clientMsgIds already stored (idempotency), creates the
//! private / system / assistant conversations that do not exist yet, reserves a contiguous range
//! of seqs per conversation with one `UPDATE .. SET last_seq = last_seq + k RETURNING last_seq`
//! (a row lock, so nodes sharing PostgreSQL cannot interleave), inserts all messages in one
//! statement, and advances each sender's read position. Each caller is answered only after the
//! commit. When a batch fails, its sends are retried one by one, so one bad send cannot fail the
//! others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use schema::{ConversationRow, MemberRow, MessageRow, conversations, members, messages};
use tokio::sync::{mpsc, oneshot};

use super::messages::{NewMessage, SendOutcome};
use super::order::SeqOrder;
use super::{IdGenerator, Pool, StoreError, now_ms, with_conn};

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
}

/// Pending sends the queue holds before senders wait for room.
const QUEUE_CAPACITY: usize = 16 * 1024;

pub(crate) fn start(
    pool: Pool,
    ids: Arc<IdGenerator>,
    outbox_node: Option<String>,
    max_batch: usize,
    timeout: Duration,
    order: Arc<SeqOrder>,
) -> WriterHandle {
    let (queue, mut jobs) = mpsc::channel::<(NewMessage, Reply)>(QUEUE_CAPACITY);
    tokio::spawn(async move {
        let mut batch: Vec<(NewMessage, Reply)> = Vec::with_capacity(max_batch);
        // Ends when every handle (every Store clone) is gone.
        while jobs.recv_many(&mut batch, max_batch.max(1)).await > 0 {
            let (messages, replies): (Vec<NewMessage>, Vec<Reply>) = batch.drain(..).unzip();
            let outcomes = commit(&pool, &ids, outbox_node.as_deref(), &messages, timeout).await;
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
    });
    WriterHandle { queue }
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
        Ok(Ok(outcomes)) => outcomes.into_iter().map(Ok).collect(),
        Ok(Err(_)) if batch.len() > 1 => {
            let mut outcomes = Vec::with_capacity(batch.len());
            for message in batch {
                let single = tokio::time::timeout(
                    timeout,
                    apply(pool, ids, outbox, std::slice::from_ref(message)),
                )
                .await
                .unwrap_or(Err(StoreError::Timeout))
                .map(|mut o| o.remove(0));
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
) -> Result<Vec<SendOutcome>, StoreError> {
    with_conn!(pool, |conn| {
        conn.transaction(async |conn| {
            super::InsertRows::lock_for_write(conn).await?;
            let now = now_ms();
            let mut outcomes: Vec<Option<SendOutcome>> = vec![None; batch.len()];

            // Idempotency: clientMsgIds stored before, and repeats within this batch.
            let senders: Vec<&str> = batch.iter().map(|m| m.sender.as_str()).collect();
            let client_ids: Vec<&str> = batch.iter().map(|m| m.client_msg_id.as_str()).collect();
            let stored: Vec<MessageRow> = messages::table
                .filter(messages::sender_id.eq_any(&senders))
                .filter(messages::client_msg_id.eq_any(&client_ids))
                .select(MessageRow::as_select())
                .load(conn)
                .await?;
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

            // Conversations created by their first message.
            let mut created: HashMap<String, bool> = HashMap::new();
            for &index in &fresh {
                let target = &batch[index].target;
                let Some(kind) = target.kind() else { continue };
                let id = target.conversation_id();
                if created.contains_key(&id) {
                    continue;
                }
                let row = ConversationRow {
                    id: id.clone(),
                    kind: kind.to_owned(),
                    name: None,
                    avatar: None,
                    announcement: None,
                    owner_id: None,
                    allow_invite: false,
                    last_seq: 0,
                    last_message_id: None,
                    last_activity_at: now,
                    status: "active".to_owned(),
                    settings: "{}".to_owned(),
                    created_at: now,
                };
                let inserted = diesel::insert_into(conversations::table)
                    .values(&row)
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                let member_rows: Vec<MemberRow> = target
                    .participants()
                    .into_iter()
                    .map(|user| MemberRow {
                        conversation_id: id.clone(),
                        user_id: user,
                        role: "member".to_owned(),
                        joined_at: now,
                        left_at: None,
                        joined_seq: 0,
                        read_seq: 0,
                        cleared_seq: 0,
                        pinned: false,
                        muted: false,
                        archived: false,
                    })
                    .collect();
                if inserted > 0 {
                    for member in &member_rows {
                        diesel::insert_into(members::table)
                            .values(member)
                            .on_conflict_do_nothing()
                            .execute(conn)
                            .await?;
                    }
                }
                created.insert(id, inserted > 0);
            }

            // A contiguous seq range per conversation, in arrival order.
            let mut by_conversation: Vec<(String, Vec<usize>)> = Vec::new();
            for &index in &fresh {
                let id = batch[index].target.conversation_id();
                match by_conversation.iter_mut().find(|(c, _)| *c == id) {
                    Some((_, list)) => list.push(index),
                    None => by_conversation.push((id, vec![index])),
                }
            }
            let mut rows: Vec<MessageRow> = Vec::with_capacity(fresh.len());
            let mut marked_read: Vec<(String, String)> = Vec::new();
            let mut row_of: HashMap<usize, usize> = HashMap::new();
            for (conversation, indexes) in &by_conversation {
                let count = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
                let message_ids: Vec<i64> = indexes.iter().map(|_| ids.next()).collect();
                let last: i64 = diesel::update(
                    conversations::table
                        .find(conversation)
                        .filter(conversations::status.eq("active")),
                )
                .set((
                    conversations::last_seq.eq(conversations::last_seq + count),
                    conversations::last_message_id.eq(message_ids.last().copied()),
                    conversations::last_activity_at.eq(now),
                ))
                .returning(conversations::last_seq)
                .get_result(conn)
                .await
                .optional()?
                .ok_or(StoreError::NotFound)?;
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
                // Sending reads everything before: the sender's own messages never count as
                // unread for them.
                let mut newest_by_sender: HashMap<&str, i64> = HashMap::new();
                for &index in indexes {
                    let seq = rows[row_of[&index]].seq;
                    newest_by_sender.insert(batch[index].sender.as_str(), seq);
                }
                for (sender, seq) in newest_by_sender {
                    let mine = members::table
                        .filter(members::conversation_id.eq(conversation))
                        .filter(members::user_id.eq(sender))
                        .filter(members::read_seq.lt(seq));
                    // The common case, nothing unread before this batch, takes one statement;
                    // a lagging position takes a second, which tells that sending read
                    // messages of others (for the read events, see `SendOutcome`).
                    let caught_up =
                        diesel::update(mine.filter(members::read_seq.ge(first_seq - 1)))
                            .set(members::read_seq.eq(seq))
                            .execute(conn)
                            .await?;
                    let lagged = caught_up == 0
                        && diesel::update(mine)
                            .set(members::read_seq.eq(seq))
                            .execute(conn)
                            .await?
                            > 0;
                    let others_before = indexes
                        .iter()
                        .any(|&i| batch[i].sender != sender && rows[row_of[&i]].seq < seq);
                    if lagged || others_before {
                        marked_read.push((conversation.clone(), sender.to_owned()));
                    }
                }
            }
            if !rows.is_empty() {
                super::InsertRows::insert_messages(conn, &rows).await?;
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
                for event in &events {
                    diesel::insert_into(schema::event_outbox::table)
                        .values(event)
                        .execute(conn)
                        .await?;
                }
            }

            for &index in &fresh {
                let row = rows[row_of[&index]].clone();
                let created = created.get(&row.conversation_id).copied().unwrap_or(false)
                    && rows
                        .iter()
                        .find(|r| r.conversation_id == row.conversation_id)
                        .is_some_and(|r| r.id == row.id);
                let marked_read = marked_read
                    .iter()
                    .any(|(c, u)| *c == row.conversation_id && *u == row.sender_id);
                outcomes[index] = Some(SendOutcome::Stored {
                    message: row,
                    created,
                    marked_read,
                });
            }
            for (index, first) in repeats {
                let row = outcomes[first]
                    .as_ref()
                    .map(|o| o.message().clone())
                    .ok_or(StoreError::NotFound)?;
                outcomes[index] = Some(SendOutcome::Duplicate(row));
            }
            outcomes
                .into_iter()
                .map(|o| o.ok_or(StoreError::NotFound))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await
    })
}
