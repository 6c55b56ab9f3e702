//! The consuming side of a generic queue in RabbitMQ: declaring the queue, and the pump that
//! turns a RabbitMQ consumer into deliveries to one subscribing session, within its prefetch,
//! settling acks and nacks back to RabbitMQ.

use super::*;

/// What a consumer needs of its subscription.
pub(super) struct Opening {
    pub(super) session: Arc<SessionHandle>,
    pub(super) subscription: ByteString,
    pub(super) slot: u32,
    pub(super) queue: ShortString,
    destination: ByteString,
    pub(super) ack: AckMode,
    pub(super) prefetch: u16,
}

impl Opening {
    pub(super) fn of(registered: &Registered) -> Opening {
        Opening {
            session: registered.session.clone(),
            subscription: registered.subscription.clone(),
            slot: registered.slot,
            queue: registered.queue.clone(),
            destination: registered.destination.clone(),
            ack: registered.ack,
            prefetch: registered.prefetch,
        }
    }
}

pub(super) async fn declare(channel: &Channel, queue: &ShortString) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            queue.clone(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|_| ())
}

/// Hands a consumer's deliveries to its session and its session's settlements to RabbitMQ,
/// until either ends; then closes the channel, so that RabbitMQ requeues what is unsettled.
pub(super) async fn pump(
    link: Arc<Link>,
    channel: Channel,
    mut consumer: lapin::Consumer,
    mut orders: mpsc::UnboundedReceiver<Order>,
    opening: Opening,
) {
    let session = &opening.session;
    let mut replies = Vec::new();
    loop {
        tokio::select! {
            // Settlements first: an ACK the client sent before it went must reach RabbitMQ.
            biased;
            Some(order) = orders.recv() => match order {
                Order::Settle { tag, multiple, positive } => {
                    if settle(&channel, tag, multiple, positive).await.is_err() {
                        break;
                    }
                }
                Order::Close(reply) => {
                    replies.push(reply);
                    break;
                }
            },
            () = session.closed().cancelled() => break,
            delivery = consumer.next() => {
                let Some(Ok(delivery)) = delivery else { break };
                if !deliver(&link, &channel, &opening, delivery).await {
                    break;
                }
            }
        }
    }
    // Whatever the session settled before the end still counts.
    while let Ok(order) = orders.try_recv() {
        match order {
            Order::Settle {
                tag,
                multiple,
                positive,
            } => {
                let _ = settle(&channel, tag, multiple, positive).await;
            }
            Order::Close(reply) => replies.push(reply),
        }
    }
    let _ = channel.close(200, "consumer ended".into()).await;
    for reply in replies {
        let _ = reply.send(());
    }
}

async fn settle(
    channel: &Channel,
    tag: u64,
    multiple: bool,
    positive: bool,
) -> Result<(), lapin::Error> {
    if positive {
        channel.basic_ack(tag, BasicAckOptions { multiple }).await
    } else {
        channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple,
                    requeue: true,
                },
            )
            .await
    }
}

/// Hands one delivery to the session; false when the consumer must end.
async fn deliver(
    link: &Arc<Link>,
    channel: &Channel,
    opening: &Opening,
    delivery: lapin::message::Delivery,
) -> bool {
    let tag = delivery.delivery_tag;
    let message_id = delivery.properties.message_id().as_ref().map_or_else(
        || ByteString::from(format!("amqp-{tag}")),
        |id| ByteString::from(id.as_str()),
    );
    let template = Arc::new(template(delivery, &opening.destination));
    let target = match opening.ack {
        AckMode::Auto => AckTarget::None,
        AckMode::Client | AckMode::ClientIndividual => AckTarget::Queue {
            queue: link.clone(),
            tag,
        },
    };
    let queued = opening.session.deliver(
        &opening.subscription,
        opening.slot,
        opening.ack,
        &template,
        &message_id,
        target,
    );
    // A session that is gone or was cut ends the consumer: closing the channel gives the
    // message to another one.
    queued
        && (opening.ack != AckMode::Auto
            || channel
                .basic_ack(tag, BasicAckOptions::default())
                .await
                .is_ok())
}
