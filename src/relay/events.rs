//! Where domain events go, behind [`EventPublisher`]. On one node nobody outside listens, so
//! nothing is recorded ([`NoEvents`]). In a cluster ([`AmqpEvents`]) the store records them in
//! its outbox and they are published to the RabbitMQ topic exchange `im.events`: persistent
//! messages with the event name as routing key and as AMQP `type`, and the JSON body
//! `{"event", "at", "nodeId", ...}`. A batch leaves the outbox only once RabbitMQ confirmed it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use schema::OutboxRow;
use tokio_util::sync::CancellationToken;

use super::supervisor::{AmqpSupervisor, AmqpUser};
use crate::store::Store;

/// The exchange domain events are published to.
pub const EVENTS_EXCHANGE: &str = "im.events";

/// How often an empty outbox is looked at again.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How long a failed batch waits before it is tried again on the same channel.
const RETRY: Duration = Duration::from_millis(200);

/// Where domain events go.
pub trait EventPublisher: Send + Sync + 'static {
    /// Whether the store records events in its outbox for this publisher to take.
    fn records_events(&self) -> bool;

    /// Publishes what `store`'s outbox holds until `shutdown`.
    fn run(&self, store: Store, shutdown: CancellationToken) -> BoxFuture<'static, ()>;
}

/// One node: events are neither recorded nor published.
#[derive(Debug, Default)]
pub struct NoEvents;

impl EventPublisher for NoEvents {
    fn records_events(&self) -> bool {
        false
    }

    fn run(&self, _store: Store, _shutdown: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A cluster: the outbox is drained into `im.events` on the node's RabbitMQ connection.
#[derive(Debug)]
pub struct AmqpEvents {
    supervisor: Arc<AmqpSupervisor>,
}

impl AmqpEvents {
    /// Events published on `supervisor`'s connection.
    pub fn new(supervisor: Arc<AmqpSupervisor>) -> AmqpEvents {
        AmqpEvents { supervisor }
    }
}

impl EventPublisher for AmqpEvents {
    fn records_events(&self) -> bool {
        true
    }

    fn run(&self, store: Store, shutdown: CancellationToken) -> BoxFuture<'static, ()> {
        let user = Arc::new(OutboxDrain { store });
        Box::pin(self.supervisor.clone().run(user, shutdown))
    }
}

/// Opens the events channel: the exchange declared, publisher confirms on.
async fn open(connection: &Connection) -> Result<Channel, lapin::Error> {
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
    Ok(channel)
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

/// The outbox publisher as a user of the node's connection.
struct OutboxDrain {
    store: Store,
}

impl AmqpUser for OutboxDrain {
    fn name(&self) -> &'static str {
        "events"
    }

    /// Drains the outbox into `im.events` until the channel fails.
    fn serve(&self, connection: Arc<Connection>) -> BoxFuture<'_, Result<(), lapin::Error>> {
        Box::pin(async move {
            let channel = open(&connection).await?;
            let batch = channel.clone();
            let publish_batch = move |rows: Vec<OutboxRow>| {
                let channel = batch.clone();
                Box::pin(publish_rows(channel, rows))
                    as std::pin::Pin<Box<dyn Future<Output = bool> + Send>>
            };
            loop {
                match self.store.publish_outbox(&publish_batch).await {
                    Ok(0) => tokio::time::sleep(IDLE_POLL).await,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "publishing events failed; they stay in the outbox");
                        if !channel.status().connected() {
                            return Ok(());
                        }
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        })
    }
}
