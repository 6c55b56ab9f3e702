//! The group-commit writer: one task that takes every pending send off a queue and commits them
//! together in one transaction.
//!
//! In one transaction a batch: finds clientMsgIds already stored (idempotency), creates the
//! private / system / assistant conversations that do not exist yet, reserves a contiguous range
//! of seqs per conversation with `UPDATE .. SET last_seq = last_seq + k RETURNING last_seq`
//! (a row lock, so nodes sharing PostgreSQL cannot interleave), advances each sender's read
//! position, and inserts all messages. On PostgreSQL each of these steps is one statement for
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

use self::batch::apply;
use self::statements::{BatchStatements, DeliveryMark};
use super::messages::{NewMessage, SendOutcome};
use super::{IdGenerator, Pool, StoreError, with_conn};
use crate::metrics::Metrics;
use crate::ordering::PushOrder;

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
    push_order: Arc<PushOrder>,
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
                run(pool, ids, settings, push_order, jobs).await;
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
    push_order: Arc<PushOrder>,
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
