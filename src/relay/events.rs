//! Publishes the event outbox to the RabbitMQ topic exchange `im.events`: persistent messages
//! with the event name as routing key and as AMQP `type`, and the JSON body
//! `{"event", "at", "nodeId", ...}`. A batch leaves the outbox only once RabbitMQ confirmed it.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use schema::OutboxRow;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// The exchange domain events are published to.
pub const EVENTS_EXCHANGE: &str = "im.events";

/// How often an empty outbox is looked at again.
const IDLE_POLL: Duration = Duration::from_millis(100);

async fn connect(url: &str) -> Result<(Connection, Channel), lapin::Error> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            EVENTS_EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

async fn publish_rows(channel: Channel, rows: Vec<OutboxRow>) -> bool {
    let mut confirms = Vec::with_capacity(rows.len());
    for row in rows {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_type(row.event.as_str().into())
            .with_message_id(row.id.to_string().into());
        match channel
            .basic_publish(
                EVENTS_EXCHANGE.into(),
                row.event.as_str().into(),
                BasicPublishOptions::default(),
                row.body.as_bytes(),
                properties,
            )
            .await
        {
            Ok(confirm) => confirms.push(confirm),
            Err(_) => return false,
        }
    }
    for confirm in confirms {
        match confirm.await {
            Ok(confirmation) if !confirmation.is_nack() => {}
            _ => return false,
        }
    }
    true
}

/// Drains the outbox into `im.events` until shutdown, reconnecting with backoff.
pub async fn publish(url: String, store: Store, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let (connection, channel) = match connect(&url).await {
            Ok(connected) => {
                backoff = Duration::from_millis(200);
                connected
            }
            Err(error) => {
                let error = crate::redact::redact_secrets(&error.to_string(), &url);
                tracing::warn!(%error, "events publisher cannot reach RabbitMQ; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let batch = channel.clone();
            let publish_batch = move |rows: Vec<OutboxRow>| {
                let channel = batch.clone();
                Box::pin(publish_rows(channel, rows))
                    as std::pin::Pin<Box<dyn Future<Output = bool> + Send>>
            };
            let result = tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = connection.close(200, "shutdown".into()).await;
                    return;
                }
                result = store.publish_outbox(&publish_batch) => result,
            };
            match result {
                Ok(0) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "publishing events failed; they stay in the outbox");
                    if !channel.status().connected() {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
}
