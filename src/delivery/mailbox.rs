//! A session's mailbox: the part of a session that other tasks may touch, its bounded outbound
//! queue and its ledger of unacknowledged deliveries (see [`super::ledger`]). The hub, the
//! queues and the relay hold these handles to deliver; the session's own tasks hold the rest
//! (socket, decoder, transactions). It lives below the session so that whoever delivers need
//! not import the connection that reads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use bytestring::ByteString;
use stomp_codec::{Command, MessageTemplate, Version};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ack::{AckMode, AckTarget};
use super::ledger::{self, Ledger, Overflow, UnackedLimits, Unacknowledged};
use crate::auth::Identity;
use crate::metrics::Metrics;
use crate::util::lock;

/// One frame waiting in a session's outbound queue.
pub enum Outgoing {
    /// An encoded frame.
    Encoded {
        /// For metrics.
        command: Command,
        /// The frame's bytes.
        bytes: Bytes,
    },
    /// A MESSAGE encoded by the writer from a shared template. Boxed so that the queue's
    /// slots, allocated for every session, stay small.
    Message(Box<Delivery>),
    /// A heart-beat EOL.
    HeartBeat,
    /// Write everything before this, then close the connection.
    Close,
}

/// A MESSAGE for one subscription, before encoding.
pub struct Delivery {
    /// Shared headers and body.
    pub template: Arc<MessageTemplate>,
    /// The `subscription` header.
    pub subscription: ByteString,
    /// The `message-id` header.
    pub message_id: ByteString,
    /// The `ack` header, for client-ack subscriptions.
    pub ack: Option<ByteString>,
}

/// A queued item and the bytes it counts for.
pub(crate) type Queued = (Outgoing, usize);

/// The outbound queue: pushed by any task, drained by the session's writer. A deque under a
/// mutex rather than a channel because an idle session then holds no buffer at all (a tokio
/// channel allocates a block of slots up front), and the writer takes everything queued at
/// once.
#[derive(Default)]
struct Outbox {
    items: VecDeque<Queued>,
    /// The writer has ended; nothing more is taken.
    closed: bool,
}

/// Why a session was cut as a slow consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowReason {
    /// Its outbound queue would have gone over `limits.max_outbound_bytes`.
    Outbound,
    /// It would have held more unacknowledged deliveries than `limits.max_unacked` (or
    /// `limits.max_unacked_per_subscription` on one subscription).
    Unacked,
}

/// What a session may hold before it is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Bytes waiting in the outbound queue.
    pub max_outbound_bytes: usize,
    /// Unacknowledged deliveries.
    pub unacked: UnackedLimits,
}

/// How a session reached this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// STOMP over WebSocket (`/ws/im`).
    WebSocket,
    /// STOMP over TCP.
    Tcp,
    /// In process (tests).
    Memory,
}

impl Transport {
    /// As the admin API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Tcp => "tcp",
            Transport::Memory => "memory",
        }
    }
}

/// Where a session comes from, for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOrigin {
    /// How it is carried.
    pub transport: Transport,
    /// The peer's address, when there is one.
    pub remote: Option<std::net::SocketAddr>,
}

impl SessionOrigin {
    /// A session with no network peer.
    pub const MEMORY: SessionOrigin = SessionOrigin {
        transport: Transport::Memory,
        remote: None,
    };
}

/// The shared half of a session.
pub struct SessionHandle {
    /// Unique within the process.
    pub id: u64,
    /// The `session` header of CONNECTED.
    pub name: ByteString,
    /// Who is connected.
    pub identity: Identity,
    /// The negotiated protocol version.
    pub version: Version,
    /// Where it comes from.
    pub origin: SessionOrigin,
    /// When it was accepted (epoch ms).
    pub connected_at: i64,
    outbox: Mutex<Outbox>,
    /// Wakes the writer: something was queued, or the session is closing.
    ready: Notify,
    queued_bytes: AtomicUsize,
    limits: SessionLimits,
    /// Cancelled when the session must end: slow consumer, shutdown, or its own close.
    closed: CancellationToken,
    /// Set with `closed` by [`SessionHandle::close`] and the slow-consumer cut: checked per
    /// delivery, where the token's own check would take its mutex.
    closing: AtomicBool,
    /// 0 while not cut; else a [`SlowReason`] + 1.
    slow: AtomicU8,
    next_delivery: AtomicU64,
    /// Slots of the ledger, one per subscription (see [`ledger`]).
    next_slot: AtomicU32,
    pending: Mutex<Ledger>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id)
            .field("user", &self.identity.user_id)
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    pub(crate) fn new(
        id: u64,
        name: ByteString,
        identity: Identity,
        version: Version,
        origin: SessionOrigin,
        limits: SessionLimits,
        closed: CancellationToken,
    ) -> Arc<SessionHandle> {
        Arc::new(SessionHandle {
            id,
            name,
            identity,
            version,
            origin,
            connected_at: crate::util::now_ms(),
            outbox: Mutex::new(Outbox::default()),
            ready: Notify::new(),
            queued_bytes: AtomicUsize::new(0),
            limits,
            closed,
            closing: AtomicBool::new(false),
            slow: AtomicU8::new(0),
            next_delivery: AtomicU64::new(1),
            next_slot: AtomicU32::new(0),
            pending: Mutex::new(Ledger::default()),
        })
    }

    /// The user id.
    pub fn user_id(&self) -> &str {
        &self.identity.user_id
    }

    /// Queues an item. Returns false when the session is gone or has just been cut as a slow
    /// consumer because this item would overflow its queue.
    pub fn push(&self, item: Outgoing, size: usize) -> bool {
        // A session ended by shutdown is caught by the send below once its writer is gone.
        if self.closing.load(Ordering::Relaxed) {
            return false;
        }
        let queued = self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
        if queued > self.limits.max_outbound_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.cut(SlowReason::Outbound);
            return false;
        }
        {
            let mut outbox = lock(&self.outbox);
            if outbox.closed {
                drop(outbox);
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                return false;
            }
            outbox.items.push_back((item, size));
        }
        self.ready.notify_one();
        true
    }

    /// Waits until something is queued or the session is closing.
    pub(crate) async fn queued(&self) {
        // `notify_one` leaves a permit when the writer is not waiting, so a push between the
        // check and the wait is not missed.
        while !self.closing.load(Ordering::Relaxed) && lock(&self.outbox).items.is_empty() {
            self.ready.notified().await;
        }
    }

    /// Takes everything queued, leaving the queue without an allocation.
    pub(crate) fn take_queued(&self) -> VecDeque<Queued> {
        std::mem::take(&mut lock(&self.outbox).items)
    }

    /// Called by the writer as it ends: later pushes fail, and what is queued is dropped.
    pub(crate) fn close_queue(&self) {
        let items = {
            let mut outbox = lock(&self.outbox);
            outbox.closed = true;
            std::mem::take(&mut outbox.items)
        };
        drop(items);
    }

    /// Queues an encoded frame.
    pub fn push_encoded(&self, command: Command, bytes: Bytes) -> bool {
        let size = bytes.len();
        self.push(Outgoing::Encoded { command, bytes }, size)
    }

    /// A slot for a new subscription's unacknowledged deliveries.
    pub(crate) fn new_slot(&self) -> u32 {
        self.next_slot.fetch_add(1, Ordering::Relaxed) & ledger::SLOT_MASK
    }

    /// Queues a MESSAGE for one of this session's subscriptions, the one registered with
    /// `slot`. For client-ack subscriptions the delivery is recorded so that the ACK or NACK
    /// reaches `target`; a delivery that would take the session over its unacknowledged limits
    /// cuts it as a slow consumer. Returns false when the MESSAGE was not queued.
    pub fn deliver(
        &self,
        subscription: &ByteString,
        slot: u32,
        ack_mode: AckMode,
        template: &Arc<MessageTemplate>,
        message_id: &ByteString,
        target: AckTarget,
    ) -> bool {
        let size = template.tail(self.version).len() + subscription.len() + 64;
        let (message_id, ack, recorded) = if ack_mode == AckMode::Auto {
            (message_id.clone(), None, None)
        } else {
            // Nothing may be recorded for a session that is going: its ledger may already have
            // been taken at its end.
            if self.closing.load(Ordering::Relaxed) {
                return false;
            }
            let seq = self.next_delivery.fetch_add(1, Ordering::Relaxed);
            let delivery = ledger::delivery_id(slot, seq);
            let recorded = lock(&self.pending).record(
                slot,
                ack_mode == AckMode::Client,
                delivery,
                target,
                self.limits.unacked,
            );
            if recorded == Err(Overflow) {
                self.cut(SlowReason::Unacked);
                return false;
            }
            // The delivery id serves as message-id too, so that 1.0 and 1.1 clients, which ACK
            // by message-id, name the delivery unambiguously.
            let id = ByteString::from(itoa::Buffer::new().format(delivery));
            (id.clone(), Some(id), Some(delivery))
        };
        let queued = self.push(
            Outgoing::Message(Box::new(Delivery {
                template: template.clone(),
                subscription: subscription.clone(),
                message_id,
                ack,
            })),
            size,
        );
        if queued {
            Metrics::get().deliveries.increment(1);
        } else if let Some(delivery) = recorded {
            lock(&self.pending).unrecord(delivery);
        }
        queued
    }

    /// Settles the delivery named by an ACK or NACK and, for `client` subscriptions, every
    /// earlier pending delivery of the same subscription. Returns the targets to act on, oldest
    /// first; empty when the id is unknown (already settled, or never ours).
    pub(crate) fn settle(&self, delivery: u64) -> Vec<AckTarget> {
        lock(&self.pending).settle(delivery)
    }

    /// Takes the pending deliveries of the subscription registered with `slot` (after
    /// UNSUBSCRIBE).
    pub(crate) fn forget_subscription(&self, slot: u32) -> Unacknowledged {
        lock(&self.pending).forget(slot)
    }

    /// Takes every pending delivery at once (the session is ending).
    pub(crate) fn take_unacknowledged(&self) -> Unacknowledged {
        lock(&self.pending).take()
    }

    /// How many deliveries wait for an ACK or NACK.
    pub fn unacked(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Cuts the session as a slow consumer (too much waiting for it), once.
    pub fn cut_slow(&self) {
        self.cut(SlowReason::Outbound);
    }

    /// Cuts the session as a slow consumer, once.
    fn cut(&self, reason: SlowReason) {
        let code = match reason {
            SlowReason::Outbound => 1,
            SlowReason::Unacked => 2,
        };
        if self
            .slow
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let metrics = Metrics::get();
            metrics.slow_consumer_cuts.increment(1);
            if reason == SlowReason::Unacked {
                metrics.unacked_cuts.increment(1);
            }
            self.close();
        }
    }

    /// Marks the session for closing.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.closed.cancel();
        self.ready.notify_one();
    }

    /// Ends the session with `error` (an encoded ERROR frame): it is written after what is
    /// queued, then the connection closes; nothing more is queued meanwhile.
    pub fn end_with_error(&self, error: Bytes) {
        if self.push_encoded(Command::Error, error) {
            self.push(Outgoing::Close, 0);
        }
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Whether the session was cut as a slow consumer.
    pub fn is_slow(&self) -> bool {
        self.slow_reason().is_some()
    }

    /// Why the session was cut as a slow consumer, if it was.
    pub fn slow_reason(&self) -> Option<SlowReason> {
        match self.slow.load(Ordering::Relaxed) {
            1 => Some(SlowReason::Outbound),
            2 => Some(SlowReason::Unacked),
            _ => None,
        }
    }

    /// Whether [`SessionHandle::close`] was called (or the session was cut): cheaper than
    /// [`SessionHandle::is_closed`], which also sees a shutdown that has not reached the
    /// session yet.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Whether the session has ended or is ending.
    pub fn is_closed(&self) -> bool {
        self.closing.load(Ordering::Relaxed) || self.closed.is_cancelled()
    }

    /// Resolves when the session ends.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    pub(crate) fn written(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}
