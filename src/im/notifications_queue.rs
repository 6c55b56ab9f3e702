//! The durable RabbitMQ queue `im.notifications`: backend systems publish the JSON body of
//! `POST /api/v1/notifications` to it, and every node consumes it as a competing consumer.
//! A message is acknowledged only after its notifications are stored, so a node that dies
//! mid-way leaves it to another node; the idempotency key (the AMQP `message_id`, else a hash
//! of the body) keeps such a retry from storing anything twice. The consumer runs on a channel
//! of the node's shared RabbitMQ connection, opened again after every reconnection.
//!
//! Messages are taken in batches: with a prefetch of [`PREFETCH`], whatever has arrived joins
//! the first message (up to [`BATCH_RECIPIENTS`] recipients), all their notifications go to the
//! writer at once and ride its group commit, and each message is acknowledged once all of its
//! own are committed.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use super::Im;
use super::json::NotificationRequest;
use crate::app_error::ErrorCode;
use crate::auth::{Identity, Role};
use crate::relay::supervisor::{AmqpSupervisor, AmqpUser};

/// Unacknowledged messages a node holds at once.
const PREFETCH: u16 = 256;

/// The identity notifications from the queue are sent as.
fn system_identity() -> Identity {
    Identity {
        user_id: "system".to_owned(),
        roles: vec![Role::System],
        name: None,
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)),
    }
}

/// Consumes the queue `queue` on `supervisor`'s connection until shutdown.
pub async fn consume(
    supervisor: Arc<AmqpSupervisor>,
    queue: String,
    im: Im,
    shutdown: CancellationToken,
) {
    supervisor
        .run(Arc::new(NotificationsConsumer { queue, im }), shutdown)
        .await;
}

/// The consumer as a user of the node's connection.
struct NotificationsConsumer {
    queue: String,
    im: Im,
}

impl AmqpUser for NotificationsConsumer {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn serve(&self, connection: Arc<Connection>) -> BoxFuture<'_, Result<(), lapin::Error>> {
        Box::pin(consume_on(connection, &self.queue, &self.im))
    }
}

async fn consume_on(connection: Arc<Connection>, queue: &str, im: &Im) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "broker-notifications".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue, "consuming system notifications");
    let _depth = Depth::watch(channel.clone(), queue.to_owned());
    let sender = system_identity();
    while let Some(first) = consumer.next().await {
        // What has arrived already joins the first: one trip through the writer for all.
        let mut deliveries = vec![first?];
        let mut recipients = 0;
        while deliveries.len() < usize::from(PREFETCH) && recipients < BATCH_RECIPIENTS {
            match consumer.next().now_or_never() {
                Some(Some(delivery)) => {
                    let delivery = delivery?;
                    recipients += recipient_count(&delivery.data);
                    deliveries.push(delivery);
                }
                Some(None) | None => break,
            }
        }
        let mut batch = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match parse(&delivery, im, &sender) {
                Ok(request) => batch.push((delivery, request)),
                Err(reason) => {
                    crate::metrics::Metrics::get().send(
                        crate::metrics::SendSource::Queue,
                        Err(ErrorCode::InvalidArgument),
                    );
                    // It can never succeed: drop it (dead-lettered when the queue has a policy
                    // for that) rather than redeliver it forever.
                    tracing::warn!(reason, "dropping a notification");
                    delivery
                        .nack(BasicNackOptions {
                            requeue: false,
                            ..BasicNackOptions::default()
                        })
                        .await?;
                }
            }
        }
        store_and_settle(im, &sender, batch).await?;
    }
    Ok(())
}

/// Recipients whose notifications one trip through the writer takes, at most (beyond the first
/// message, which may have up to `limits.notification_max_users`).
const BATCH_RECIPIENTS: usize = 4096;

/// A cheap upper bound of a message's recipients, to size a batch before parsing it.
fn recipient_count(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b',').count() + 1
}

/// The request a message carries, with its idempotency key; or why it can never be stored
/// (malformed, or refused as `POST /api/v1/notifications` would refuse it).
fn parse(delivery: &Delivery, im: &Im, sender: &Identity) -> Result<NotificationRequest, String> {
    let request: NotificationRequest =
        serde_json::from_slice(&delivery.data).map_err(|e| format!("malformed: {e}"))?;
    im.check_notification(sender, &request)
        .map_err(|e| e.message)?;
    // A message id longer than a clientMsgId may be is hashed, like a body without one.
    let key = delivery
        .properties
        .message_id()
        .as_ref()
        .map(ToString::to_string)
        .filter(|id| id.chars().count() <= 64)
        .unwrap_or_else(|| {
            let source = delivery
                .properties
                .message_id()
                .as_ref()
                .map_or(&delivery.data[..], |id| id.as_str().as_bytes());
            format!("amqp-{:016x}", fnv(source))
        });
    Ok(NotificationRequest {
        client_msg_id: Some(request.client_msg_id.clone().unwrap_or(key)),
        ..request
    })
}

/// Stores the notifications of every message of `batch` (each checked already) in one trip
/// through the writer, then acknowledges each message whose notifications are all stored, and
/// gives back for redelivery those the database could not take all of.
async fn store_and_settle(
    im: &Im,
    sender: &Identity,
    batch: Vec<(Delivery, NotificationRequest)>,
) -> Result<(), lapin::Error> {
    let requests: Vec<&NotificationRequest> = batch.iter().map(|(_, request)| request).collect();
    let mut retry = vec![false; batch.len()];
    im.store_notifications(sender, &requests, |owner, outcome| {
        crate::metrics::Metrics::get().send(
            crate::metrics::SendSource::Queue,
            outcome.as_ref().map(drop).map_err(|e| e.code),
        );
        if let Err(error) = outcome
            && matches!(error.code, ErrorCode::Unavailable | ErrorCode::Internal)
        {
            retry[owner] = true;
        }
        ControlFlow::Continue(())
    })
    .await;
    if retry.contains(&true) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for ((delivery, _), retry) in batch.into_iter().zip(retry) {
        if retry {
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await?;
        } else {
            delivery.ack(BasicAckOptions::default()).await?;
        }
    }
    Ok(())
}

/// FNV-1a of a body: a stable idempotency key for messages published without a message id.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Samples the queue's depth (its consumer lag) every few seconds for `/metrics`, while the
/// consumer it belongs to runs: the task ends when this is dropped or the channel closes.
struct Depth(tokio::task::JoinHandle<()>);

impl Depth {
    fn watch(channel: lapin::Channel, queue: String) -> Depth {
        Depth(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let declared = channel
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await;
                match declared {
                    Ok(state) => crate::metrics::Metrics::get()
                        .notifications_queued
                        .set(f64::from(state.message_count())),
                    Err(_) => return,
                }
            }
        }))
    }
}

impl Drop for Depth {
    fn drop(&mut self) {
        self.0.abort();
    }
}
