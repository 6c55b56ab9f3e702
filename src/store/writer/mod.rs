//! The group-commit writer: one task that takes pending sends off its queues (people's messages,
//! and system notifications beside them, see [`Lanes`]) and commits them together in one
//! transaction. Sends are queued in the order their callers were given turns (see
//! [`crate::ordering::Turn`]) and committed in queue order, so that a session's pipelined
//! SENDs get seqs in the order of its frames.
//!
//! In one transaction a batch: finds clientMsgIds already stored (idempotency), reserves a
//! contiguous range of seqs per conversation with `UPDATE .. SET last_seq = last_seq + k
//! RETURNING last_seq` (a row lock, so nodes sharing PostgreSQL cannot interleave), advancing
//! each sender's read position, creates the private / system / assistant conversations the
//! reservation did not find (and reserves theirs), and inserts all messages. On PostgreSQL each of these steps is one statement for
//! the whole batch (rows passed as arrays and expanded with `unnest`), so a batch costs the same
//! few round trips however many conversations it touches. Each caller is answered only after
//! the commit, and only after the committed seqs were registered with the [`PushOrder`]. When a
//! batch fails, its sends are retried one by one, so one bad send cannot fail the others.
//!
//! This file owns the queue, the writer's thread and the retry; [`batch`] commits one batch,
//! phase by phase; [`statements`] names the statements whose number would otherwise grow with
//! the batch, written per backend in [`postgres`] and [`sqlite`].

mod batch;
mod postgres;
mod sqlite;
mod statements;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use self::batch::{Idempotency, apply};
use self::statements::{BatchStatements, DeliveryMark};
use super::messages::{NewMessage, SendOutcome};
use super::{IdGenerator, Pool, StoreError, with_conn};
use crate::metrics::Metrics;
use crate::ordering::{PushOrder, Turn};

type Reply = oneshot::Sender<Result<SendOutcome, StoreError>>;
type Job = (NewMessage, Reply);

/// The sending side of the writer: two queues, one for people's messages and one for system
/// notifications, which may come by the thousand from one call and must not hold up a chat.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    chat: mpsc::Sender<Job>,
    bulk: mpsc::Sender<Job>,
}

fn stopped<T>(_: T) -> StoreError {
    StoreError::Unavailable("the writer has stopped".into())
}

fn dropped<T>(_: T) -> StoreError {
    StoreError::Unavailable("the writer dropped the send".into())
}

impl WriterHandle {
    /// Sends waiting in the writer's queues (not yet taken into a batch).
    pub(crate) fn queued(&self) -> usize {
        [&self.chat, &self.bulk]
            .iter()
            .map(|queue| queue.max_capacity() - queue.capacity())
            .sum()
    }

    /// Queues a person's message once `turn` comes, and waits for its commit.
    pub(crate) async fn send(
        &self,
        message: Box<NewMessage>,
        mut turn: Turn,
    ) -> Result<SendOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        turn.wait().await;
        // Room first, then the message: `send`'s future would hold a second copy of the
        // message, and this state is part of every pipelined SEND's. The message comes boxed
        // for the same reason (an async fn keeps its arguments twice).
        let permit = self.chat.reserve().await.map_err(stopped)?;
        permit.send((*message, reply));
        // Queued: the next frame of the session may queue its own.
        drop(turn);
        answer.await.map_err(dropped)?
    }

    /// Queues notifications once `turn` comes (waiting for room as the queue fills, which
    /// holds back a caller that sends faster than the writer commits), and waits for every
    /// commit. Answers in the order given.
    pub(crate) async fn send_bulk(
        &self,
        messages: Vec<NewMessage>,
        mut turn: Turn,
    ) -> Vec<Result<SendOutcome, StoreError>> {
        turn.wait().await;
        let mut answers = Vec::with_capacity(messages.len());
        for message in messages {
            let (reply, answer) = oneshot::channel();
            match self.bulk.send((message, reply)).await {
                Ok(()) => answers.push(Ok(answer)),
                Err(error) => answers.push(Err(stopped(error))),
            }
        }
        drop(turn);
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            outcomes.push(match answer {
                Ok(answer) => answer.await.unwrap_or_else(|e| Err(dropped(e))),
                Err(error) => Err(error),
            });
        }
        outcomes
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
        let mut marks: Vec<DeliveryMark<'_>> = furthest
            .into_iter()
            .map(|((conversation, user), seq)| DeliveryMark {
                conversation,
                user,
                seq,
            })
            .collect();
        // In key order, as every writer of members rows should take them.
        marks.sort_unstable_by(|a, b| (a.conversation, a.user).cmp(&(b.conversation, b.user)));
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                BatchStatements::mark_delivered(conn, &marks).await?;
                Ok(())
            })
        })
        .await
    }
}

/// Pending sends each queue holds before senders wait for room.
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
    push_order: Arc<PushOrder>,
) -> Result<WriterHandle, StoreError> {
    let (chat, chat_jobs) = mpsc::channel::<Job>(QUEUE_CAPACITY);
    let (bulk, bulk_jobs) = mpsc::channel::<Job>(QUEUE_CAPACITY);
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
                run(
                    pool,
                    ids,
                    settings,
                    push_order,
                    Lanes::new(chat_jobs, bulk_jobs),
                )
                .await;
            });
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
    started
        .await
        .map_err(|_| StoreError::Unavailable("the writer did not start".into()))??;
    Ok(WriterHandle { chat, bulk })
}

/// How long after the last person's message the chats count as active, and notifications keep
/// to their share of a batch.
const CHATS_ACTIVE: Duration = Duration::from_secs(1);

/// The writer's two queues, and how a batch is shared between them.
///
/// A batch takes people's messages first and notifications after them. While chats are active
/// (a person's message was committed within [`CHATS_ACTIVE`]), notifications take at most
/// `storage.max_bulk_batch` of a batch: that bounds what a bulk run adds to each commit that
/// chats wait for, and it is theirs whenever they wait, so they are never starved. While chats
/// are quiet, notifications fill whole batches (`storage.max_batch`), for throughput; the first
/// chat message then waits for at most one such batch.
struct Lanes {
    chat: mpsc::Receiver<Job>,
    bulk: mpsc::Receiver<Job>,
    /// When a batch last took a person's message.
    last_chat: Option<Instant>,
}

impl Lanes {
    fn new(chat: mpsc::Receiver<Job>, bulk: mpsc::Receiver<Job>) -> Lanes {
        Lanes {
            chat,
            bulk,
            last_chat: None,
        }
    }

    /// Waits for work and fills `batch` with the next batch; false once both queues have
    /// closed and are empty.
    async fn next_batch(
        &mut self,
        batch: &mut Vec<Job>,
        max_batch: usize,
        max_bulk: usize,
    ) -> bool {
        let first_is_bulk = tokio::select! {
            biased;
            Some(job) = self.chat.recv() => { batch.push(job); false }
            Some(job) = self.bulk.recv() => { batch.push(job); true }
            else => return false,
        };
        let chats_active = !first_is_bulk
            || !self.chat.is_empty()
            || self
                .last_chat
                .is_some_and(|last| last.elapsed() < CHATS_ACTIVE);
        let bulk_share = if chats_active { max_bulk } else { max_batch };
        let bulk_waiting = self.bulk.len() + usize::from(first_is_bulk);
        // People's messages first, leaving room for the notifications' share.
        let chat_room = max_batch
            .saturating_sub(bulk_waiting.min(bulk_share))
            .max(1);
        let mut chats = usize::from(!first_is_bulk);
        while chats < chat_room {
            match self.chat.try_recv() {
                Ok(job) => {
                    batch.push(job);
                    chats += 1;
                }
                Err(_) => break,
            }
        }
        if chats > 0 {
            self.last_chat = Some(Instant::now());
        }
        let mut bulks = usize::from(first_is_bulk);
        let room = bulk_share.min(max_batch.saturating_sub(chats));
        while bulks < room {
            match self.bulk.try_recv() {
                Ok(job) => {
                    batch.push(job);
                    bulks += 1;
                }
                Err(_) => break,
            }
        }
        true
    }
}

/// Takes batches off the queues until every handle (every Store clone) is gone.
async fn run(
    pool: Pool,
    ids: Arc<IdGenerator>,
    settings: super::StoreSettings,
    push_order: Arc<PushOrder>,
    mut lanes: Lanes,
) {
    let max_batch = settings.max_batch.max(1);
    let max_bulk = settings.max_bulk_batch.clamp(1, max_batch);
    let recording = batch::Recording {
        outbox: settings.outbox_node.as_deref(),
        inbox_positions: settings.inbox_positions,
    };
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut lookups = Lookups::new(&pool);
    while lanes.next_batch(&mut batch, max_batch, max_bulk).await {
        let (messages, replies): (Vec<NewMessage>, Vec<Reply>) = batch.drain(..).unzip();
        let started = Instant::now();
        let outcomes = commit(
            &pool,
            &ids,
            recording,
            &messages,
            settings.timeout,
            &mut lookups,
        )
        .await;
        let metrics = Metrics::get();
        metrics.store_batch_seconds.record(started.elapsed());
        metrics.store_batch_messages.record(messages.len() as f64);
        // Before anyone hears of the commit: the pushes of these seqs will be run in order.
        push_order.committed(outcomes.iter().filter_map(|outcome| match outcome {
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

/// Batches that look their clientMsgIds up first after one that met a send stored before:
/// retries come in runs (a client resending what it had in flight when its connection broke),
/// and a client resending on purpose makes at most one batch in this many be written twice.
const LOOK_FIRST_AFTER_RETRY: u32 = 64;

/// Which way the writer's next batch finds the sends stored before.
struct Lookups {
    /// SQLite runs in process, where the lookup costs little: it always looks first.
    always: bool,
    /// Batches left that look first.
    left: u32,
}

impl Lookups {
    fn new(pool: &Pool) -> Lookups {
        Lookups {
            always: matches!(pool, Pool::Sqlite(_)),
            left: 0,
        }
    }

    fn next(&mut self) -> Idempotency {
        if self.always {
            return Idempotency::LookFirst;
        }
        if self.left > 0 {
            self.left -= 1;
            return Idempotency::LookFirst;
        }
        Idempotency::WriteFirst
    }

    /// A batch met a send stored before.
    fn met_retry(&mut self) {
        self.left = LOOK_FIRST_AFTER_RETRY;
    }
}

/// Commits a batch, or each send alone when the batch fails.
async fn commit(
    pool: &Pool,
    ids: &IdGenerator,
    recording: batch::Recording<'_>,
    batch: &[NewMessage],
    timeout: Duration,
    lookups: &mut Lookups,
) -> Vec<Result<SendOutcome, StoreError>> {
    let idempotency = lookups.next();
    let mut whole =
        tokio::time::timeout(timeout, apply(pool, ids, recording, batch, idempotency)).await;
    // Looking first can still meet a send stored since the lookup (by another node; the insert
    // waits for its commit): the next look finds it.
    for _ in 0..2 {
        if !matches!(whole, Ok(Err(StoreError::StoredBefore))) {
            break;
        }
        lookups.met_retry();
        whole = tokio::time::timeout(
            timeout,
            apply(pool, ids, recording, batch, Idempotency::LookFirst),
        )
        .await;
    }
    if let Ok(Ok(outcomes)) = &whole
        && outcomes
            .iter()
            .any(|outcome| matches!(outcome, Ok(SendOutcome::Duplicate(_))))
    {
        lookups.met_retry();
    }
    match whole {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(_)) if batch.len() > 1 => {
            Metrics::get().store_batch_failures.increment(1);
            let mut outcomes = Vec::with_capacity(batch.len());
            for message in batch {
                let single = tokio::time::timeout(
                    timeout,
                    apply(
                        pool,
                        ids,
                        recording,
                        std::slice::from_ref(message),
                        Idempotency::LookFirst,
                    ),
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
