//! The durable RabbitMQ queue `im.notifications`: backend systems publish the JSON body of
//! `POST /api/v1/notifications` to it, and every node consumes it as a competing consumer.
//! A message is acknowledged only after its notifications are stored, so a node that dies
//! mid-way leaves it to another node; the idempotency key (the AMQP `message_id`, else a hash
//! of the body) keeps such a retry from storing anything twice. The consumer runs on a channel
//! of the node's shared RabbitMQ connection, opened again after every reconnection.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::Connection;
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
const PREFETCH: u16 = 32;

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
    let sender = system_identity();
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
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
        let request: NotificationRequest = match serde_json::from_slice(&delivery.data) {
            Ok(request) => request,
            Err(error) => {
                // A malformed message can never succeed: drop it (dead-lettered when the queue
                // has a policy for that) rather than redeliver it forever.
                tracing::warn!(%error, "dropping a malformed notification");
                delivery
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..BasicNackOptions::default()
                    })
                    .await?;
                continue;
            }
        };
        if let Err(error) = super::notify::check_recipients(&request) {
            // As malformed: it can never succeed.
            tracing::warn!(message = %error.message, "dropping a notification");
            delivery
                .nack(BasicNackOptions {
                    requeue: false,
                    ..BasicNackOptions::default()
                })
                .await?;
            continue;
        }
        let request = NotificationRequest {
            client_msg_id: Some(request.client_msg_id.clone().unwrap_or(key)),
            ..request
        };
        let mut retry = false;
        for user in &request.user_ids {
            if let Err(error) = im.notify(&sender, user, &request).await {
                if matches!(error.code, ErrorCode::Unavailable | ErrorCode::Internal) {
                    retry = true;
                    break;
                }
                tracing::warn!(user = %user, message = %error.message, "notification refused");
            }
        }
        if retry {
            tokio::time::sleep(Duration::from_millis(500)).await;
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
