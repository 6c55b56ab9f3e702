//! The cluster relay over RabbitMQ (lapin).
//!
//! Each node owns the queue `im.node.<nodeId>`, bound on the topic exchange `im.route` to
//! `user.<userId>` for every user with a session here and to `group.<id>` / `topic.<name>` for
//! every topic its sessions subscribe to. A publication is served to local sessions by the hub
//! and published once to `im.route`; RabbitMQ copies it to every other node with a matching
//! binding. A node skips copies of its own publications, so each session gets a message once.
//!
//! The connection is the node's shared one ([`AmqpSupervisor`]); the relay runs on a channel
//! of its own, on which it declares the topology and binds every interest again after each
//! reconnection. While RabbitMQ is away, local delivery goes on, publications to other nodes
//! are dropped (clients catch up by seq), and `/readyz` says so.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use stomp_codec::Headers;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::envelope::Envelope;
use super::supervisor::{AmqpSupervisor, AmqpUser};
use crate::delivery::{Interest, Route};
use crate::domain::GROUP_TOPIC_PREFIX;
use crate::hub::{Hub, Publication};
use crate::hub::{Relay, RelayError, RelayFuture};
use crate::util::lock;

/// The topic exchange that carries publications between nodes.
pub const ROUTE_EXCHANGE: &str = "im.route";

/// Publications waiting to be sent to RabbitMQ; beyond this they are dropped (and counted),
/// so that a stalled RabbitMQ cannot grow the broker's memory.
const PUBLISH_QUEUE: usize = 64 * 1024;

/// Publications sent before their confirms are awaited together.
const CONFIRM_BATCH: usize = 256;

/// How long the start waits for the relay's channel.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The routing key of an interest.
pub fn routing_key(interest: &Interest) -> String {
    match interest {
        Interest::User(user) => format!("user.{user}"),
        Interest::Topic(name) if name.starts_with(GROUP_TOPIC_PREFIX) => name.clone(),
        Interest::Topic(name) => format!("topic.{name}"),
    }
}

/// A publication ready for RabbitMQ: routing key and encoded envelope.
type Outgoing = (String, Vec<u8>);

/// The relay handle.
pub struct AmqpRelay {
    node_id: String,
    connected: AtomicBool,
    channel: Mutex<Option<Channel>>,
    interests: Mutex<HashSet<Interest>>,
    publish: mpsc::Sender<Outgoing>,
    publish_queue: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for AmqpRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpRelay")
            .field("node_id", &self.node_id)
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::fmt::Display) -> RelayError {
    RelayError::Unavailable(error.to_string())
}

impl AmqpRelay {
    /// A relay for `node_id`, on the connection of the supervisor it is started with.
    pub fn new(node_id: &str) -> Arc<AmqpRelay> {
        let (publish, queue) = mpsc::channel(PUBLISH_QUEUE);
        Arc::new(AmqpRelay {
            node_id: node_id.to_owned(),
            connected: AtomicBool::new(false),
            channel: Mutex::new(None),
            interests: Mutex::new(HashSet::new()),
            publish,
            publish_queue: Mutex::new(Some(queue)),
            dropped: AtomicU64::new(0),
        })
    }

    fn queue_name(&self) -> String {
        format!("im.node.{}", self.node_id)
    }

    /// Runs the relay on `supervisor`'s connection, delivering what other nodes publish into
    /// `hub`, and waits until its channel is open (so that an unusable RabbitMQ stops the
    /// start).
    ///
    /// # Errors
    ///
    /// [`RelayError::Unavailable`] when the channel cannot be opened at start.
    pub async fn start(
        self: &Arc<AmqpRelay>,
        hub: Hub,
        supervisor: &Arc<AmqpSupervisor>,
        shutdown: CancellationToken,
    ) -> Result<(), RelayError> {
        let queue = lock(&self.publish_queue)
            .take()
            .ok_or_else(|| unavailable("relay already started"))?;
        let user = Arc::new(RelayChannel {
            relay: self.clone(),
            hub,
            queue: tokio::sync::Mutex::new(queue),
        });
        tokio::spawn(supervisor.clone().run(user, shutdown));
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.connected.load(Ordering::Relaxed) {
            if Instant::now() >= deadline {
                return Err(unavailable(
                    "timed out opening the relay's RabbitMQ channel",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Opens the relay's channel: topology declared, interests bound, consumer started.
    async fn open(
        &self,
        connection: &Connection,
    ) -> Result<(Channel, lapin::Consumer), lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                ROUTE_EXCHANGE.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        // Not durable and removed a minute after its node stops consuming: a dead node's
        // queue does not collect messages forever.
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongInt(60_000));
        channel
            .queue_declare(
                self.queue_name().into(),
                QueueDeclareOptions::default(),
                arguments,
            )
            .await?;
        let interests: Vec<Interest> = lock(&self.interests).iter().cloned().collect();
        for interest in &interests {
            self.bind_on(&channel, interest).await?;
        }
        let consumer = channel
            .basic_consume(
                self.queue_name().into(),
                format!("broker-{}", self.node_id).into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *lock(&self.channel) = Some(channel.clone());
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!(queue = %self.queue_name(), "relay connected to RabbitMQ");
        Ok((channel, consumer))
    }

    async fn bind_on(&self, channel: &Channel, interest: &Interest) -> Result<(), lapin::Error> {
        channel
            .queue_bind(
                self.queue_name().into(),
                ROUTE_EXCHANGE.into(),
                routing_key(interest).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    /// Delivers what other nodes publish; returns when the consumer ends.
    async fn consume(&self, mut consumer: lapin::Consumer, hub: &Hub) {
        while let Some(delivery) = consumer.next().await {
            let Ok(delivery) = delivery else { return };
            match Envelope::decode(Bytes::from(delivery.data)) {
                Ok(envelope) if envelope.origin == self.node_id => {}
                Ok(envelope) => {
                    hub.deliver_local(
                        &envelope.route,
                        Publication {
                            headers: envelope.headers,
                            body: envelope.body,
                            sequence: envelope.sequence,
                            ..Publication::default()
                        },
                    );
                }
                Err(error) => tracing::warn!(%error, "dropping a relayed message"),
            }
        }
    }

    /// Publishes queued publications with confirms, a batch at a time; returns on failure.
    async fn publish_loop(&self, channel: &Channel, queue: &mut mpsc::Receiver<Outgoing>) {
        let mut batch = Vec::with_capacity(CONFIRM_BATCH);
        while queue.recv_many(&mut batch, CONFIRM_BATCH).await > 0 {
            let mut confirms = Vec::with_capacity(batch.len());
            let started = std::time::Instant::now();
            for (key, payload) in batch.drain(..) {
                match channel
                    .basic_publish(
                        ROUTE_EXCHANGE.into(),
                        key.into(),
                        BasicPublishOptions::default(),
                        &payload,
                        BasicProperties::default(),
                    )
                    .await
                {
                    Ok(confirm) => confirms.push(confirm),
                    Err(error) => {
                        tracing::warn!(%error, "relay publish failed");
                        return;
                    }
                }
            }
            for confirm in confirms {
                if confirm.await.is_err() {
                    return;
                }
            }
            crate::metrics::Metrics::get()
                .relay_publish_seconds
                .record(started.elapsed());
        }
    }

    /// Publications dropped because RabbitMQ was away or too slow.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The relay as a user of the shared connection: consumes the node's queue into the hub and
/// publishes what the hub forwards, on one channel.
struct RelayChannel {
    relay: Arc<AmqpRelay>,
    hub: Hub,
    /// Publications waiting for RabbitMQ; kept across reconnections.
    queue: tokio::sync::Mutex<mpsc::Receiver<Outgoing>>,
}

impl AmqpUser for RelayChannel {
    fn name(&self) -> &'static str {
        "relay"
    }

    fn serve(&self, connection: Arc<Connection>) -> BoxFuture<'_, Result<(), lapin::Error>> {
        Box::pin(async move {
            let (channel, consumer) = self.relay.open(&connection).await?;
            let mut queue = self.queue.lock().await;
            tokio::select! {
                () = self.relay.consume(consumer, &self.hub) => {}
                () = self.relay.publish_loop(&channel, &mut queue) => {}
            }
            Ok(())
        })
    }

    fn detach(&self) -> BoxFuture<'_, ()> {
        if self.relay.connected.swap(false, Ordering::Relaxed) {
            tracing::warn!("relay lost RabbitMQ; local delivery goes on while it reconnects");
        }
        *lock(&self.relay.channel) = None;
        Box::pin(std::future::ready(()))
    }
}

impl Relay for Arc<AmqpRelay> {
    fn bind(&self, interest: Interest) -> RelayFuture {
        let relay = self.clone();
        Box::pin(async move {
            let fresh = lock(&relay.interests).insert(interest.clone());
            let channel = lock(&relay.channel).clone();
            if let (true, Some(channel)) = (fresh, channel) {
                // While RabbitMQ is away the interest is kept and bound on reconnect; local
                // delivery does not wait for it.
                if let Err(error) = relay.bind_on(&channel, &interest).await {
                    tracing::warn!(%error, ?interest, "binding deferred until RabbitMQ is back");
                }
            }
            Ok(())
        })
    }

    fn unbind(&self, interest: Interest) -> RelayFuture {
        let relay = self.clone();
        Box::pin(async move {
            lock(&relay.interests).remove(&interest);
            let channel = lock(&relay.channel).clone();
            if let Some(channel) = channel {
                channel
                    .queue_unbind(
                        relay.queue_name().into(),
                        ROUTE_EXCHANGE.into(),
                        routing_key(&interest).into(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(unavailable)?;
            }
            Ok(())
        })
    }

    fn forward(&self, route: &Route, headers: &Headers, body: &Bytes, sequence: Option<i64>) {
        if !self.connected.load(Ordering::Relaxed) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let key = routing_key(&route.interest());
        let payload = Envelope::encode(&self.node_id, route, sequence, headers, body);
        if self.publish.try_send((key, payload)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}
