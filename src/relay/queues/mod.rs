//! Generic `/queue/<name>` destinations in cluster mode: each is the durable RabbitMQ queue
//! `stomp.queue.<name>` on the default exchange, so that its messages outlive any node and the
//! consumers of every node compete for them.
//!
//! SEND publishes persistently and resolves on the publisher confirm, so that a RECEIPT means
//! RabbitMQ holds the message. Each SUBSCRIBE is a consumer on a channel of its own whose
//! prefetch is the subscription's. The session settles deliveries through the consumer's
//! [`Lender`], as it does with the in-process queue: `auto` is acknowledged once the frame is
//! queued to the session, `client` acknowledges cumulatively (`multiple`), `client-individual`
//! one delivery at a time, and NACK requeues. Closing the channel (UNSUBSCRIBE, the session's
//! end, the node's death) makes RabbitMQ hand whatever was unacknowledged to another consumer.
//!
//! All of it runs on the node's shared connection ([`AmqpSupervisor`]); after each
//! reconnection the publishing channel and the consumers are opened again. While RabbitMQ is
//! away a SEND fails with `UNAVAILABLE` rather than losing the message, and subscriptions wait
//! for the connection.

mod consumer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use stomp_codec::{Headers, MessageTemplate};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::supervisor::{AmqpSupervisor, AmqpUser};
use crate::delivery::{AckMode, AckTarget, Lender, SessionHandle};
use crate::hub::{QueueBackend, QueueError, QueueFuture, RelayError, Subscriber};
use crate::util::lock;
use consumer::{Opening, declare, pump};

/// The prefix of the RabbitMQ queue behind `/queue/<name>`.
pub const QUEUE_PREFIX: &str = "stomp.queue.";

/// RabbitMQ's limit on queue names (an AMQP short string), in bytes.
const MAX_QUEUE_NAME: usize = 255;

/// How long a SEND waits for RabbitMQ to confirm its message.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the start waits for the queues' channel.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The RabbitMQ queue of `/queue/<name>`.
///
/// # Errors
///
/// [`QueueError::Invalid`] when the name does not fit RabbitMQ's 255 bytes.
pub fn amqp_queue_name(name: &str) -> Result<ShortString, QueueError> {
    ShortString::try_new(format!("{QUEUE_PREFIX}{name}")).map_err(|_| {
        QueueError::Invalid(format!(
            "queue name {name:?} is too long: RabbitMQ allows {} bytes after /queue/",
            MAX_QUEUE_NAME - QUEUE_PREFIX.len()
        ))
    })
}

/// The SEND headers as an AMQP header table (with the default `content-type` already set).
fn header_table(headers: &Headers) -> Result<FieldTable, QueueError> {
    let mut table = FieldTable::default();
    for (name, value) in headers.iter() {
        let key = ShortString::try_new(name).map_err(|_| {
            QueueError::Invalid(format!(
                "header names on /queue destinations are limited to {MAX_QUEUE_NAME} bytes"
            ))
        })?;
        // The first of repeated headers wins, as STOMP says.
        if !table.contains_key(key.as_str()) {
            table.insert(key, AMQPValue::LongString(value.into()));
        }
    }
    Ok(table)
}

/// The MESSAGE template of a delivery: the stored headers, its destination, and
/// `redelivered:true` when RabbitMQ has delivered it before. A header holding a NUL, which no
/// STOMP frame can carry, is left out: a SEND through the broker cannot have one, but a message
/// published to the queue directly in RabbitMQ may.
fn template(delivery: lapin::message::Delivery, destination: &ByteString) -> MessageTemplate {
    let mut headers = Headers::with_capacity(4);
    headers.push("destination", destination.clone());
    if let Some(table) = delivery.properties.headers() {
        for (name, value) in table {
            if let AMQPValue::LongString(value) = value {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                if name.as_str().contains('\0') || value.contains('\0') {
                    continue;
                }
                headers.push(name.as_str().to_owned(), value);
            }
        }
    }
    if headers.get("content-type").is_none() {
        headers.push("content-type", "text/plain;charset=utf-8");
    }
    if delivery.redelivered {
        headers.set("redelivered", "true");
    }
    MessageTemplate::new(headers, Bytes::from(delivery.data))
}

fn unavailable(error: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(error.to_string())
}

/// What the consumer's task is told to do, in the order the session did it.
enum Order {
    /// Acknowledge (or requeue) a delivery, and with `multiple` every earlier one.
    Settle {
        tag: u64,
        multiple: bool,
        positive: bool,
    },
    /// Close the channel after what was settled before, then reply.
    Close(oneshot::Sender<()>),
}

/// One subscription's consumer on one connection: the lender of its deliveries.
struct Link {
    /// `client` mode: one ACK settles every earlier delivery too.
    cumulative: bool,
    orders: mpsc::UnboundedSender<Order>,
}

impl Link {
    fn settle(&self, tags: &[u64], positive: bool) {
        // Through the consumer's task, so that RabbitMQ sees settlements in the order the
        // client sent them and before the channel closes. Once the task has ended its channel
        // is closed and RabbitMQ has taken the messages back, so a failed send loses nothing.
        let multiple = self.cumulative;
        let tags = if multiple {
            tags.last().map_or(&[][..], std::slice::from_ref)
        } else {
            tags
        };
        for &tag in tags {
            let _ = self.orders.send(Order::Settle {
                tag,
                multiple,
                positive,
            });
        }
    }

    /// Closes the consumer's channel once what was settled before has reached RabbitMQ.
    async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.orders.send(Order::Close(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), closed).await;
        }
    }
}

impl Lender for Link {
    fn ack(&self, tags: &[u64]) {
        self.settle(tags, true);
    }

    fn nack(&self, tags: &[u64]) {
        self.settle(tags, false);
    }
}

/// A subscription to a shared queue, kept across reconnections.
struct Registered {
    session: Arc<SessionHandle>,
    subscription: ByteString,
    slot: u32,
    queue: ShortString,
    destination: ByteString,
    ack: AckMode,
    prefetch: u16,
    link: Option<Arc<Link>>,
}

/// The publishing side of the connection.
struct Publisher {
    channel: Channel,
    /// Queues declared on this connection; a queue is declared before its first message.
    declared: HashSet<ShortString>,
}

/// Generic queues in RabbitMQ, shared by every node of the cluster.
pub struct AmqpQueues {
    node_id: String,
    connection: Mutex<Option<Arc<Connection>>>,
    publisher: tokio::sync::Mutex<Option<Publisher>>,
    subscriptions: Mutex<HashMap<(u64, ByteString), Registered>>,
    /// Serialises subscribe, unsubscribe and the reattachment after a reconnection, so that a
    /// subscription never gets two consumers.
    changes: tokio::sync::Mutex<()>,
    connected: AtomicBool,
}

impl std::fmt::Debug for AmqpQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpQueues")
            .field("node_id", &self.node_id)
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AmqpQueues {
    /// Shared queues of `node_id`, on the connection of the supervisor they are started with.
    pub fn new(node_id: &str) -> Arc<AmqpQueues> {
        Arc::new(AmqpQueues {
            node_id: node_id.to_owned(),
            connection: Mutex::new(None),
            publisher: tokio::sync::Mutex::new(None),
            subscriptions: Mutex::new(HashMap::new()),
            changes: tokio::sync::Mutex::new(()),
            connected: AtomicBool::new(false),
        })
    }

    /// Runs the queues on `supervisor`'s connection and waits until they are usable (so that
    /// an unusable RabbitMQ stops the start).
    ///
    /// # Errors
    ///
    /// [`RelayError::Unavailable`] when the publishing channel cannot be opened at start.
    pub async fn start(
        self: &Arc<Self>,
        supervisor: &Arc<AmqpSupervisor>,
        shutdown: CancellationToken,
    ) -> Result<(), RelayError> {
        let user = Arc::new(QueuesChannel(self.clone()));
        tokio::spawn(supervisor.clone().run(user, shutdown));
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while !self.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return Err(RelayError::Unavailable(
                    "timed out opening the queues' RabbitMQ channel".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Whether RabbitMQ is reachable now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Opens the publishing channel on a fresh connection and the consumers of every
    /// subscription on it.
    async fn attach(&self, connection: Arc<Connection>) -> Result<(), lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *self.publisher.lock().await = Some(Publisher {
            channel,
            declared: HashSet::new(),
        });
        *lock(&self.connection) = Some(connection);
        self.reattach().await;
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!("generic queues connected to RabbitMQ");
        Ok(())
    }

    /// Forgets the connection's channels: each subscription waits for the next connection.
    async fn detach(&self) {
        if self.connected.swap(false, Ordering::Relaxed) {
            tracing::warn!("generic queues lost RabbitMQ; reconnecting");
        }
        lock(&self.connection).take();
        self.publisher.lock().await.take();
        for registered in lock(&self.subscriptions).values_mut() {
            registered.link = None;
        }
    }

    /// Opens a consumer for every subscription that has none (after a reconnection).
    async fn reattach(&self) {
        let _serial = self.changes.lock().await;
        let Some(connection) = lock(&self.connection).clone() else {
            return;
        };
        let keys: Vec<(u64, ByteString)> = lock(&self.subscriptions)
            .iter()
            .filter(|(_, r)| r.link.is_none() && !r.session.is_closed())
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            let Some(opening) = lock(&self.subscriptions).get(&key).map(Opening::of) else {
                continue;
            };
            match self.open(&connection, opening).await {
                Ok(link) => {
                    if let Some(registered) = lock(&self.subscriptions).get_mut(&key) {
                        registered.link = Some(link);
                    }
                }
                Err(error) => tracing::warn!(%error, "could not reopen a queue consumer"),
            }
        }
    }

    /// Puts a message on the queue `name` and waits for RabbitMQ's confirm.
    ///
    /// # Errors
    ///
    /// [`QueueError::Invalid`] for a name or header RabbitMQ cannot carry;
    /// [`QueueError::Unavailable`] when RabbitMQ is away or refuses the message.
    pub async fn send(
        &self,
        name: &str,
        headers: &Headers,
        body: Bytes,
        message_id: &str,
    ) -> Result<(), QueueError> {
        let queue = amqp_queue_name(name)?;
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(header_table(headers)?);
        if let Ok(id) = ShortString::try_new(message_id) {
            properties = properties.with_message_id(id);
        }
        if let Some(Ok(content_type)) = headers.get("content-type").map(ShortString::try_new) {
            properties = properties.with_content_type(content_type);
        }
        // A queue deleted behind our back makes the mandatory publish come back: declare it
        // again and publish once more.
        for _ in 0..2 {
            let confirm = {
                let mut guard = self.publisher.lock().await;
                let publisher = guard
                    .as_mut()
                    .ok_or_else(|| unavailable("RabbitMQ is unreachable"))?;
                if !publisher.channel.status().connected() {
                    return Err(unavailable("RabbitMQ channel closed"));
                }
                if !publisher.declared.contains(&queue) {
                    declare(&publisher.channel, &queue)
                        .await
                        .map_err(unavailable)?;
                    publisher.declared.insert(queue.clone());
                }
                publisher
                    .channel
                    .basic_publish(
                        ShortString::from(""),
                        queue.clone(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        properties.clone(),
                    )
                    .await
                    .map_err(unavailable)?
            };
            match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                Ok(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => return Ok(()),
                Ok(Ok(Confirmation::Ack(Some(_)))) => {
                    if let Some(publisher) = self.publisher.lock().await.as_mut() {
                        publisher.declared.remove(&queue);
                    }
                }
                Ok(Ok(Confirmation::Nack(_))) => {
                    return Err(unavailable(format!(
                        "RabbitMQ refused the message for {queue} (full?)"
                    )));
                }
                Ok(Err(error)) => return Err(unavailable(error)),
                Err(_) => return Err(unavailable("RabbitMQ did not confirm in time")),
            }
        }
        Err(unavailable(format!("{queue} could not be declared")))
    }

    /// Starts consuming the queue `name` for a session's subscription (`slot` is its slot in the
    /// session's ledger); while RabbitMQ is away the subscription waits for the connection.
    ///
    /// # Errors
    ///
    /// [`QueueError::Invalid`] for a name RabbitMQ cannot carry; [`QueueError::Unavailable`]
    /// when the consumer cannot be opened.
    pub async fn subscribe(
        &self,
        session: &Arc<SessionHandle>,
        subscription: &ByteString,
        slot: u32,
        name: &str,
        ack: AckMode,
        prefetch: usize,
    ) -> Result<(), QueueError> {
        let queue = amqp_queue_name(name)?;
        let mut registered = Registered {
            session: session.clone(),
            subscription: subscription.clone(),
            slot,
            queue,
            destination: ByteString::from(format!("/queue/{name}")),
            ack,
            prefetch: u16::try_from(prefetch.max(1)).unwrap_or(u16::MAX),
            link: None,
        };
        let _serial = self.changes.lock().await;
        let connection = lock(&self.connection).clone();
        if let Some(connection) = connection {
            let link = self
                .open(&connection, Opening::of(&registered))
                .await
                .map_err(unavailable)?;
            registered.link = Some(link);
        }
        lock(&self.subscriptions).insert((session.id, subscription.clone()), registered);
        Ok(())
    }

    /// Ends a subscription's consumer: RabbitMQ gives what it had not acknowledged to another.
    pub async fn unsubscribe(&self, session_id: u64, subscription: &str) {
        let _serial = self.changes.lock().await;
        let removed =
            lock(&self.subscriptions).remove(&(session_id, ByteString::from(subscription)));
        if let Some(Registered {
            link: Some(link), ..
        }) = removed
        {
            link.close().await;
        }
    }

    async fn open(
        &self,
        connection: &Connection,
        opening: Opening,
    ) -> Result<Arc<Link>, lapin::Error> {
        let channel = connection.create_channel().await?;
        declare(&channel, &opening.queue).await?;
        channel
            .basic_qos(opening.prefetch, BasicQosOptions::default())
            .await?;
        let tag = ShortString::try_new(format!("{}.{}", self.node_id, opening.session.id))
            .unwrap_or_else(|_| ShortString::from(""));
        let consumer = channel
            .basic_consume(
                opening.queue.clone(),
                tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let (orders, received) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            cumulative: opening.ack == AckMode::Client,
            orders,
        });
        tokio::spawn(pump(link.clone(), channel, consumer, received, opening));
        Ok(link)
    }
}

/// The shared queues as a user of the node's connection.
struct QueuesChannel(Arc<AmqpQueues>);

impl AmqpUser for QueuesChannel {
    fn name(&self) -> &'static str {
        "queues"
    }

    fn serve(&self, connection: Arc<Connection>) -> BoxFuture<'_, Result<(), lapin::Error>> {
        Box::pin(async move {
            self.0.attach(connection).await?;
            // Consumers have channels of their own and end with the connection; the
            // supervisor drops this future when the connection is lost.
            std::future::pending().await
        })
    }

    fn detach(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.0.detach())
    }
}

impl QueueBackend for AmqpQueues {
    fn send<'a>(
        &'a self,
        name: &'a ByteString,
        mut headers: Headers,
        body: Bytes,
        message_id: ByteString,
    ) -> QueueFuture<'a, Result<(), QueueError>> {
        // Stored with the message, so that every node delivers it with the same default.
        if headers.get("content-type").is_none() {
            headers.push("content-type", "text/plain;charset=utf-8");
        }
        Box::pin(async move { AmqpQueues::send(self, name, &headers, body, &message_id).await })
    }

    fn subscribe<'a>(
        &'a self,
        name: &'a ByteString,
        subscriber: Subscriber,
        prefetch: usize,
    ) -> QueueFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            AmqpQueues::subscribe(
                self,
                &subscriber.session,
                &subscriber.subscription,
                subscriber.slot,
                name,
                subscriber.ack,
                prefetch,
            )
            .await
        })
    }

    fn unsubscribe<'a>(
        &'a self,
        _name: &'a ByteString,
        session_id: u64,
        subscription: &'a str,
    ) -> QueueFuture<'a, ()> {
        Box::pin(AmqpQueues::unsubscribe(self, session_id, subscription))
    }

    fn is_connected(&self) -> bool {
        AmqpQueues::is_connected(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_prefixed_and_bounded_by_rabbitmq() {
        assert_eq!(
            amqp_queue_name("jobs").unwrap().as_str(),
            "stomp.queue.jobs"
        );
        let longest = "q".repeat(MAX_QUEUE_NAME - QUEUE_PREFIX.len());
        assert_eq!(amqp_queue_name(&longest).unwrap().as_str().len(), 255);
        let error = amqp_queue_name(&format!("{longest}q")).unwrap_err();
        assert!(matches!(error, QueueError::Invalid(_)));
        assert!(error.to_string().contains("243 bytes"), "{error}");
    }

    #[test]
    fn headers_travel_as_a_table_first_value_winning() {
        let headers: Headers = [("x-a", "1"), ("content-type", "text/csv"), ("x-a", "2")]
            .into_iter()
            .collect();
        let table = header_table(&headers).unwrap();
        assert_eq!(table.inner().len(), 2);
        assert_eq!(
            table.inner().get("x-a"),
            Some(&AMQPValue::LongString("1".into()))
        );
        let long: Headers = [("h".repeat(256), "v".to_owned())].into_iter().collect();
        assert!(matches!(header_table(&long), Err(QueueError::Invalid(_))));
    }
}
