//! One batch of sends committed in one transaction, phase by phase: find the sends stored
//! before (idempotency), refuse those to a recipient who blocked the sender, reserve each
//! conversation's seq range (moving the senders' read positions), creating the conversations
//! that start with this batch when the reservation finds them missing, insert the messages and
//! the files they share, record the domain events, and answer every send.
//!
//! Each phase is written once for both backends: the statements that differ live behind
//! [`BatchStatements`], [`InsertRows`] and [`RecordShares`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use diesel_async::AsyncConnection;
use schema::{ConversationRow, MemberRow, MessageRow};

use super::statements::{BatchStatements, ReadMark, Reservation, Reserved};
use crate::domain::{MemberRole, MessageStatus};
use crate::store::conversations::{member_row, new_conversation};
use crate::store::messages::{NewMessage, SendOutcome};
use crate::store::shares::RecordShares;
use crate::store::{IdGenerator, InsertRows, Pool, StoreError, event_outbox, now_ms, with_conn};

/// The answer to one send of a batch.
type Answer = Result<SendOutcome, StoreError>;

/// How a batch finds the sends it stored before (idempotency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Idempotency {
    /// Look the batch's clientMsgIds up before anything is written.
    LookFirst,
    /// Write without looking: a clientMsgId stored before fails the insert, and the batch with
    /// [`StoreError::StoredBefore`], to be committed again with `LookFirst`. Retries are rare,
    /// so the common batch saves the lookup (a statement, and an index probe per send).
    WriteFirst,
}

/// What a batch records besides its messages and their seqs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Recording<'a> {
    /// This node's id, when domain events are recorded for `im.events` (cluster mode).
    pub(super) outbox: Option<&'a str>,
    /// Whether private and assistant messages take inbox positions (`im.private_resume`).
    pub(super) inbox_positions: bool,
}

/// Commits `batch` in one transaction; answers each send, in the batch's order. Fails as a
/// whole when the transaction fails.
pub(super) async fn apply(
    pool: &Pool,
    ids: &IdGenerator,
    recording: Recording<'_>,
    batch: &[NewMessage],
    idempotency: Idempotency,
) -> Result<Vec<Answer>, StoreError> {
    with_conn!(pool, |conn| {
        conn.transaction(async |conn| apply_in(conn, ids, recording, batch, idempotency).await)
            .await
    })
}

/// The phases of [`apply`], inside its transaction.
async fn apply_in<C>(
    conn: &mut C,
    ids: &IdGenerator,
    recording: Recording<'_>,
    batch: &[NewMessage],
    idempotency: Idempotency,
) -> Result<Vec<Answer>, StoreError>
where
    C: BatchStatements + InsertRows + RecordShares + Send,
{
    InsertRows::lock_for_write(conn).await?;
    let now = now_ms();
    let mut triage = find_duplicates(conn, batch, idempotency).await?;
    triage.blocked = check_blocks(conn, batch, &mut triage.fresh).await?;
    let mut numbered = reserve_seqs(conn, ids, batch, &triage.fresh, now).await?;
    if recording.inbox_positions {
        number_inboxes(conn, &mut numbered.rows).await?;
    }
    insert_messages(conn, batch, &triage.fresh, &numbered).await?;
    // Domain events commit with the messages they describe (cluster mode).
    if let Some(node) = recording.outbox {
        record_events(conn, ids, node, batch, &numbered.created, &numbered.rows).await?;
    }
    answer(batch, triage, numbered)
}

/// The batch's sends sorted by what the batch does with them; indexes into the batch.
struct Triage {
    /// Answers known before anything is written: the duplicates of stored messages.
    outcomes: Vec<Option<SendOutcome>>,
    /// Sends to store, in arrival order.
    fresh: Vec<usize>,
    /// `(index, first)`: a repeat, within the batch, of the send at `first`.
    repeats: Vec<(usize, usize)>,
    /// Sends refused because the recipient blocked the sender.
    blocked: Vec<usize>,
}

/// Idempotency: finds the clientMsgIds stored before, and the repeats within this batch.
async fn find_duplicates<C: BatchStatements + Send>(
    conn: &mut C,
    batch: &[NewMessage],
    idempotency: Idempotency,
) -> Result<Triage, StoreError> {
    let mut outcomes: Vec<Option<SendOutcome>> = vec![None; batch.len()];
    let stored = match idempotency {
        Idempotency::LookFirst => {
            let senders: Vec<&str> = batch.iter().map(|m| m.sender.as_str()).collect();
            let client_ids: Vec<&str> = batch.iter().map(|m| m.client_msg_id.as_str()).collect();
            BatchStatements::find_stored(conn, &senders, &client_ids).await?
        }
        Idempotency::WriteFirst => Vec::new(),
    };
    let known: HashMap<(String, String), MessageRow> = stored
        .into_iter()
        .map(|row| ((row.sender_id.clone(), row.client_msg_id.clone()), row))
        .collect();
    let mut first_in_batch: HashMap<(&str, &str), usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut fresh: Vec<usize> = Vec::new();
    for (index, message) in batch.iter().enumerate() {
        // Retries are rare: the common batch finds nothing stored and builds no key.
        if !known.is_empty() {
            let key = (message.sender.clone(), message.client_msg_id.clone());
            if let Some(row) = known.get(&key) {
                outcomes[index] = Some(SendOutcome::Duplicate(row.clone()));
                continue;
            }
        }
        if let Some(&first) =
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
    Ok(Triage {
        outcomes,
        fresh,
        repeats,
        blocked: Vec::new(),
    })
}

/// Blocks: one lookup for every private send of the batch, in the transaction that stores
/// them. Takes the refused sends out of `fresh` and returns them.
async fn check_blocks<C: BatchStatements + Send>(
    conn: &mut C,
    batch: &[NewMessage],
    fresh: &mut Vec<usize>,
) -> Result<Vec<usize>, StoreError> {
    let mut blocked: Vec<usize> = Vec::new();
    let mut checks: Vec<(&str, &str)> = fresh
        .iter()
        .filter_map(|&i| {
            let message = &batch[i];
            let user = message.unless_blocked_by.as_deref()?;
            Some((user, message.sender.as_str()))
        })
        .collect();
    if checks.is_empty() {
        return Ok(blocked);
    }
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
    Ok(blocked)
}

/// The batch's messages with their seqs.
struct Numbered {
    rows: Vec<MessageRow>,
    /// Index in the batch → index in `rows`, for the sends stored.
    row_of: Vec<Option<usize>>,
    /// `(conversation, sender)` of the sends that read messages of others: see `SendOutcome`.
    marked_read: HashSet<(String, String)>,
    /// The conversations this batch created.
    created: HashSet<String>,
}

/// The sends of one conversation, by index into the batch, in arrival order.
type ConversationSends = (String, Vec<usize>);

/// Reserves a contiguous seq range per conversation, moving the senders' read positions, and
/// numbers the messages from it. A conversation the reservation finds missing is created
/// (private, system and assistant conversations start with their first message) and reserved
/// then: a batch into existing conversations, the common one, costs one statement here.
async fn reserve_seqs<C: BatchStatements + InsertRows + Send>(
    conn: &mut C,
    ids: &IdGenerator,
    batch: &[NewMessage],
    fresh: &[usize],
    now: i64,
) -> Result<Numbered, StoreError> {
    let by_conversation = group_by_conversation(batch, fresh);
    let message_ids: Vec<Vec<i64>> = by_conversation
        .iter()
        .map(|(_, indexes)| indexes.iter().map(|_| ids.next()).collect())
        .collect();
    let plan = plan_reservations(batch, &by_conversation, &message_ids);
    let mut reserved = BatchStatements::reserve(conn, &plan.reservations, &plan.marks, now).await?;
    let created = create_missing(conn, batch, &by_conversation, &plan, &mut reserved, now).await?;
    number_messages(
        batch,
        &by_conversation,
        message_ids,
        &plan,
        &reserved,
        created,
        now,
    )
}

/// Creates the conversations of `by_conversation` that the reservation did not find and that
/// their sends may create, with their participants as members, and reserves their ranges into
/// `reserved`. Returns the ids of those this batch created (another node may have created one
/// meanwhile: then it is only reserved).
async fn create_missing<C: BatchStatements + InsertRows + Send>(
    conn: &mut C,
    batch: &[NewMessage],
    by_conversation: &[ConversationSends],
    plan: &ReservationPlan<'_>,
    reserved: &mut Reserved,
    now: i64,
) -> Result<HashSet<String>, StoreError> {
    let mut candidates: Vec<ConversationRow> = Vec::new();
    let mut participants: HashMap<String, Vec<String>> = HashMap::new();
    let mut again: Vec<usize> = Vec::new();
    for (at, (id, indexes)) in by_conversation.iter().enumerate() {
        if reserved.last_seqs.contains_key(id) {
            continue;
        }
        let Some(target) = indexes
            .iter()
            .map(|&i| &batch[i].target)
            .find(|t| t.kind().is_some())
        else {
            continue;
        };
        let Some(kind) = target.kind() else { continue };
        participants.insert(id.clone(), target.participants());
        candidates.push(new_conversation(id.clone(), kind, now));
        again.push(at);
    }
    if candidates.is_empty() {
        return Ok(HashSet::new());
    }
    let inserted = BatchStatements::create_conversations(conn, &candidates).await?;
    let mut member_rows: Vec<MemberRow> = Vec::new();
    let mut created = HashSet::with_capacity(inserted.len());
    for id in inserted {
        for user in participants.remove(&id).unwrap_or_default() {
            member_rows.push(member_row(&id, &user, MemberRole::Member, now, 0));
        }
        created.insert(id);
    }
    if !member_rows.is_empty() {
        InsertRows::insert_members(conn, &member_rows).await?;
    }
    let reservations: Vec<Reservation<'_>> = again
        .iter()
        .map(|&at| plan.reservations[at].clone())
        .collect();
    let marks: Vec<ReadMark<'_>> = again
        .iter()
        .flat_map(|&at| plan.marks[plan.marks_of[at].clone()].iter().cloned())
        .collect();
    let more = BatchStatements::reserve(conn, &reservations, &marks, now).await?;
    reserved.last_seqs.extend(more.last_seqs);
    reserved.lagged.extend(more.lagged);
    Ok(created)
}

/// The fresh sends per conversation, in arrival order within each, the conversations sorted
/// by id.
fn group_by_conversation(batch: &[NewMessage], fresh: &[usize]) -> Vec<ConversationSends> {
    let mut by_conversation: Vec<ConversationSends> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for &index in fresh {
        let id = batch[index].target.conversation_id();
        match position.get(&id) {
            Some(&at) => by_conversation[at].1.push(index),
            None => {
                position.insert(id.clone(), by_conversation.len());
                by_conversation.push((id, vec![index]));
            }
        }
    }
    // Sorted by id, so that writers of several nodes sharing the database tend to lock common
    // conversations in the same order; should their locks still cross, PostgreSQL fails one
    // batch as a deadlock and its sends are retried one by one.
    by_conversation.sort_by(|a, b| a.0.cmp(&b.0));
    by_conversation
}

/// Each conversation's reservation, and each sender's new read position in it.
struct ReservationPlan<'a> {
    /// One per conversation, in the order of `by_conversation`.
    reservations: Vec<Reservation<'a>>,
    marks: Vec<ReadMark<'a>>,
    /// The conversation at `i` of `by_conversation` has the marks at `marks_of[i]`.
    marks_of: Vec<Range<usize>>,
}

fn plan_reservations<'a>(
    batch: &'a [NewMessage],
    by_conversation: &'a [ConversationSends],
    message_ids: &[Vec<i64>],
) -> ReservationPlan<'a> {
    let mut reservations = Vec::with_capacity(by_conversation.len());
    let mut marks = Vec::with_capacity(by_conversation.len());
    let mut marks_of = Vec::with_capacity(by_conversation.len());
    for ((conversation, indexes), message_ids) in by_conversation.iter().zip(message_ids) {
        let count = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
        reservations.push(Reservation {
            conversation,
            count,
            last_message_id: message_ids.last().copied().unwrap_or_default(),
        });
        // Sending reads everything before: the sender's own messages never count as unread
        // for them. Each sender's newest message, counted from the range's end.
        let start = marks.len();
        for (offset, &index) in indexes.iter().enumerate() {
            let distance = count - 1 - i64::try_from(offset).unwrap_or(0);
            let sender = batch[index].sender.as_str();
            match marks[start..]
                .iter_mut()
                .find(|m: &&mut ReadMark<'_>| m.user == sender)
            {
                Some(mark) => mark.distance = distance,
                None => marks.push(ReadMark {
                    conversation,
                    user: sender,
                    distance,
                }),
            }
        }
        marks_of.push(start..marks.len());
    }
    ReservationPlan {
        reservations,
        marks,
        marks_of,
    }
}

/// The message rows, numbered from each conversation's reserved range, and the sends that read
/// messages of others.
fn number_messages(
    batch: &[NewMessage],
    by_conversation: &[ConversationSends],
    message_ids: Vec<Vec<i64>>,
    plan: &ReservationPlan<'_>,
    reserved: &Reserved,
    created: HashSet<String>,
    now: i64,
) -> Result<Numbered, StoreError> {
    let Reserved { last_seqs, lagged } = reserved;
    let lagged: HashSet<(&str, &str)> = lagged
        .iter()
        .map(|(c, u)| (c.as_str(), u.as_str()))
        .collect();
    let fresh_count = by_conversation
        .iter()
        .map(|(_, indexes)| indexes.len())
        .sum();
    let mut marked_read: HashSet<(String, String)> = HashSet::new();
    let mut rows: Vec<MessageRow> = Vec::with_capacity(fresh_count);
    let mut row_of: Vec<Option<usize>> = vec![None; batch.len()];
    for (at, ((conversation, indexes), message_ids)) in
        by_conversation.iter().zip(message_ids).enumerate()
    {
        let last = *last_seqs.get(conversation).ok_or(StoreError::NotFound)?;
        let count = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
        let first_seq = last - count + 1;
        for (offset, (&index, id)) in indexes.iter().zip(message_ids).enumerate() {
            row_of[index] = Some(rows.len());
            let seq = first_seq + i64::try_from(offset).unwrap_or(0);
            rows.push(message_row(&batch[index], id, conversation, seq, now));
        }
        // A send that moved the sender's read position past messages of others (unread
        // before the batch, or earlier in it) reads them: see `SendOutcome`.
        for mark in &plan.marks[plan.marks_of[at].clone()] {
            let newest = last - mark.distance;
            let others_before = indexes.iter().enumerate().any(|(offset, &i)| {
                batch[i].sender != mark.user
                    && first_seq + i64::try_from(offset).unwrap_or(0) < newest
            });
            if others_before || lagged.contains(&(conversation.as_str(), mark.user)) {
                marked_read.insert((conversation.clone(), mark.user.to_owned()));
            }
        }
    }
    Ok(Numbered {
        rows,
        row_of,
        marked_read,
        created,
    })
}

/// Numbers the private and assistant messages in their users' inboxes, after the seqs: the
/// heads are locked until the commit, so a user's positions follow the order in which their
/// messages commit, and within a batch the order of `rows`, which within a conversation is seq
/// order. A position thus grows with seq in every conversation, which is what a resume's reads
/// rely on.
async fn number_inboxes<C: BatchStatements + Send>(
    conn: &mut C,
    rows: &mut [MessageRow],
) -> Result<(), StoreError> {
    let positions = {
        let users_of: Vec<(Option<&str>, Option<&str>)> =
            rows.iter().map(crate::store::inbox::inbox_users).collect();
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for &(sender, recipient) in &users_of {
            for user in sender.into_iter().chain(recipient) {
                *counts.entry(user).or_default() += 1;
            }
        }
        if counts.is_empty() {
            return Ok(());
        }
        let users: Vec<&str> = counts.keys().copied().collect();
        let added: Vec<i64> = counts.values().copied().collect();
        let heads = BatchStatements::advance_inboxes(conn, &users, &added).await?;
        // Each user's next position: the batch's range ends at the new head.
        let mut next: HashMap<&str, i64> = HashMap::with_capacity(counts.len());
        for (user, count) in counts {
            let head = *heads.get(user).ok_or(StoreError::NotFound)?;
            next.insert(user, head - count + 1);
        }
        let mut take = |user: Option<&str>| {
            let position = next.get_mut(user?)?;
            *position += 1;
            Some(*position - 1)
        };
        users_of
            .into_iter()
            .map(|(sender, recipient)| (take(sender), take(recipient)))
            .collect::<Vec<_>>()
    };
    for (row, (sender, recipient)) in rows.iter_mut().zip(positions) {
        row.sender_position = sender;
        row.recipient_position = recipient;
    }
    Ok(())
}

/// The stored row of a fresh send.
fn message_row(
    message: &NewMessage,
    id: i64,
    conversation: &str,
    seq: i64,
    now: i64,
) -> MessageRow {
    MessageRow {
        id,
        conversation_id: conversation.to_owned(),
        seq,
        sender_id: message.sender.clone(),
        client_msg_id: message.client_msg_id.clone(),
        format: message.format.clone(),
        content: message.content.clone(),
        attachment: message.attachment.clone(),
        reply_to: message.reply_to,
        forwarded_from: message.forwarded_from.clone(),
        status: MessageStatus::Sent.as_str().to_owned(),
        created_at: now,
        recalled_at: None,
        edited_at: None,
        mentions: message.mentions.clone(),
        sender_position: None,
        recipient_position: None,
    }
}

/// Inserts the messages, and the file shares they carry: a file becomes downloadable by a
/// conversation only with the message carrying it.
async fn insert_messages<C: BatchStatements + RecordShares + Send>(
    conn: &mut C,
    batch: &[NewMessage],
    fresh: &[usize],
    numbered: &Numbered,
) -> Result<(), StoreError> {
    let Numbered { rows, row_of, .. } = numbered;
    if !rows.is_empty() {
        BatchStatements::insert_rows(conn, rows)
            .await
            .map_err(stored_before)?;
    }
    let shares = crate::store::shares::of_batch(
        |i| batch.get(i)?.shared_file.as_ref(),
        fresh.iter().filter_map(|&i| Some((i, &rows[row_of[i]?]))),
    );
    if !shares.is_empty() {
        RecordShares::record_shares(conn, &shares).await?;
    }
    Ok(())
}

/// A clientMsgId stored before (by an earlier batch, or by another node meanwhile) fails the
/// insert on its unique index; the batch's seqs are reserved already, so the whole batch is
/// undone and written again, looking first. Not `ON CONFLICT DO NOTHING`: its speculative
/// insertion costs every row about as much as the lookup it would save.
fn stored_before(error: diesel::result::Error) -> StoreError {
    use diesel::result::{DatabaseErrorKind, Error};
    match &error {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(CLIENT_MSG_ID_INDEX) =>
        {
            StoreError::StoredBefore
        }
        _ => StoreError::Database(error),
    }
}

/// The unique index on `(sender_id, client_msg_id)` (PostgreSQL names it in its errors).
const CLIENT_MSG_ID_INDEX: &str = "messages_by_sender_client_id";

/// Records `conversation.created` for the conversations this batch created and `message.sent`
/// for every message, as `node`.
async fn record_events<C: BatchStatements + Send>(
    conn: &mut C,
    ids: &IdGenerator,
    node: &str,
    batch: &[NewMessage],
    created: &HashSet<String>,
    rows: &[MessageRow],
) -> Result<(), StoreError> {
    let mut events = Vec::new();
    for conversation in created {
        {
            let members: Vec<String> = batch
                .iter()
                .find(|m| m.target.conversation_id() == *conversation)
                .map(|m| m.target.participants())
                .unwrap_or_default();
            events.push(event_outbox::event_row(
                ids,
                node,
                "conversation.created",
                serde_json::json!({"conversationId": conversation, "userIds": members}),
            ));
        }
    }
    for row in rows {
        events.push(event_outbox::event_row(
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
    Ok(())
}

/// Every send's answer, in the batch's order: stored, duplicate (of a stored message or of an
/// earlier send of the batch) or refused.
fn answer(
    batch: &[NewMessage],
    triage: Triage,
    numbered: Numbered,
) -> Result<Vec<Answer>, StoreError> {
    let Triage {
        mut outcomes,
        fresh,
        repeats,
        blocked,
    } = triage;
    let Numbered {
        rows,
        row_of,
        marked_read,
        created,
    } = numbered;
    let mut rows: Vec<Option<MessageRow>> = rows.into_iter().map(Some).collect();
    for &index in &fresh {
        let row = row_of[index]
            .and_then(|at| rows[at].take())
            .ok_or(StoreError::NotFound)?;
        // Only the conversation's first message reports the creation.
        let created = row.seq == 1 && created.contains(&row.conversation_id);
        let marked_read = !marked_read.is_empty()
            && marked_read.contains(&(row.conversation_id.clone(), row.sender_id.clone()));
        outcomes[index] = Some(SendOutcome::Stored {
            message: row,
            created,
            marked_read,
        });
    }
    let refusal = |index: usize| {
        StoreError::Blocked(batch[index].unless_blocked_by.clone().unwrap_or_default())
    };
    let mut answers: Vec<Option<Answer>> = outcomes.into_iter().map(|o| o.map(Ok)).collect();
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
        .collect()
}
