//! The one place where a node is told apart from a cluster: [`Backends::from_config`] picks,
//! for every replaceable backend, the in-process implementation (one node) or the networked one
//! (RabbitMQ for the relay, the shared queues, domain events and the notifications queue; Redis
//! for presence and rate limits). The rest of the start-up only uses what it picked.
//!
//! Every RabbitMQ user runs on one connection kept by one [`AmqpSupervisor`].

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::hub::{Hub, LocalQueues, LocalRelay, QueueBackend, Relay, RelayError};
use crate::im::limits_redis::RedisLimiter;
use crate::im::presence_redis::{PresenceError, RedisPresence};
use crate::im::{Im, ImBackends};
use crate::relay::amqp::AmqpRelay;
use crate::relay::events::{AmqpEvents, EventPublisher, NoEvents};
use crate::relay::queues::AmqpQueues;
use crate::relay::supervisor::AmqpSupervisor;

/// Why a backend could not be reached at start.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// RabbitMQ could not be reached.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// Redis could not be reached.
    #[error("presence: {0}")]
    Presence(#[from] PresenceError),
}

/// The backends of this node, picked from the configuration.
pub struct Backends {
    node_id: String,
    /// Carries publications to the other nodes.
    pub relay: Arc<dyn Relay>,
    /// Where generic `/queue/*` destinations live: in this process, or in RabbitMQ.
    pub queues: Arc<dyn QueueBackend>,
    /// Where domain events go.
    pub events: Arc<dyn EventPublisher>,
    /// Where presence and rate limits are counted.
    im: ImPlan,
    /// The RabbitMQ connection and what runs on it, in a cluster.
    rabbitmq: Option<RabbitMq>,
}

/// Where the IM layer's presence and rate limits are counted.
enum ImPlan {
    /// In this process.
    InProcess,
    /// In the Redis at this URL, shared by the cluster.
    Redis(String),
}

/// The RabbitMQ side of a cluster node.
struct RabbitMq {
    supervisor: Arc<AmqpSupervisor>,
    relay: Arc<AmqpRelay>,
    queues: Arc<AmqpQueues>,
    /// The queue backend systems publish notifications to.
    notifications_queue: String,
}

impl Backends {
    /// Picks every backend from `config`: with no `relay.amqp_url` and no
    /// `presence.redis_url`, every one is in process. Connects nothing yet.
    pub fn from_config(config: &Config, node_id: &str) -> Backends {
        let rabbitmq = config.relay.amqp_url.as_deref().map(|url| RabbitMq {
            supervisor: AmqpSupervisor::new(url),
            relay: AmqpRelay::new(node_id),
            queues: AmqpQueues::new(node_id),
            notifications_queue: config.relay.notifications_queue.clone(),
        });
        type Picked = (
            Arc<dyn Relay>,
            Arc<dyn QueueBackend>,
            Arc<dyn EventPublisher>,
        );
        let (relay, queues, events): Picked = match &rabbitmq {
            Some(rabbitmq) => (
                Arc::new(rabbitmq.relay.clone()),
                rabbitmq.queues.clone(),
                Arc::new(AmqpEvents::new(rabbitmq.supervisor.clone())),
            ),
            None => (
                Arc::new(LocalRelay),
                Arc::new(LocalQueues::new(config.limits.queue_max_messages)),
                Arc::new(NoEvents),
            ),
        };
        let im = match &config.presence.redis_url {
            Some(url) => ImPlan::Redis(url.clone()),
            None => ImPlan::InProcess,
        };
        Backends {
            node_id: node_id.to_owned(),
            relay,
            queues,
            events,
            im,
            rabbitmq,
        }
    }

    /// This node's id, as the backends know it.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Connects the IM layer's backends (Redis, when configured).
    ///
    /// # Errors
    ///
    /// [`BackendError::Presence`] when Redis cannot be reached.
    pub async fn connect_im(&self) -> Result<ImBackends, BackendError> {
        Ok(match &self.im {
            ImPlan::InProcess => ImBackends::in_process(),
            ImPlan::Redis(url) => {
                let redis = RedisPresence::connect(url, &self.node_id).await?;
                ImBackends {
                    limiter: Arc::new(RedisLimiter::new(redis.connection())),
                    presence: Arc::new(redis),
                }
            }
        })
    }

    /// Connects to RabbitMQ, when configured, and starts the relay (delivering into `hub`) and
    /// the shared queues on that connection, until `shutdown`.
    ///
    /// # Errors
    ///
    /// [`BackendError::Relay`] when RabbitMQ cannot be reached.
    pub async fn start(&self, hub: &Hub, shutdown: &CancellationToken) -> Result<(), BackendError> {
        if let Some(rabbitmq) = &self.rabbitmq {
            rabbitmq.supervisor.start(shutdown.clone()).await?;
            rabbitmq
                .relay
                .start(hub.clone(), &rabbitmq.supervisor, shutdown.clone())
                .await?;
            rabbitmq
                .queues
                .start(&rabbitmq.supervisor, shutdown.clone())
                .await?;
        }
        Ok(())
    }

    /// Starts what the IM layer runs on the backends: publishing domain events and, in a
    /// cluster, consuming the notifications queue.
    pub fn start_im(&self, im: &Im, tracker: &TaskTracker, shutdown: &CancellationToken) {
        tracker.spawn(self.events.run(im.store().clone(), shutdown.clone()));
        if let Some(rabbitmq) = &self.rabbitmq {
            tracker.spawn(crate::im::notifications_queue::consume(
                rabbitmq.supervisor.clone(),
                rabbitmq.notifications_queue.clone(),
                im.clone(),
                shutdown.clone(),
            ));
        }
    }
}
