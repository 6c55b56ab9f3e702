//! The broker's lifetime: start-up, with the listeners (HTTP, the optional STOMP/TCP and
//! metrics ports, TLS) in `listeners`, and graceful shutdown: stop accepting, tell every
//! session, drain tasks within a grace period. Which backends a node runs on (one node or a
//! cluster) is picked in [`backends`].

pub mod backends;
mod listeners;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::api::ApiState;
use crate::auth::{AuthError, Authenticator};
use crate::config::Config;
use crate::http::{self, HttpState};
use crate::http_guard::RequestLimits;
use crate::hub::{Hub, HubSettings};
use crate::im::{Im, ImSettings};
use crate::ordering::PushOrder;
use crate::router::{Acl, Extensions, Router};
use crate::session::{SessionContext, SessionSettings};
use crate::store::{Store, StoreError, StoreSettings, node_number};
use backends::{BackendError, Backends};
use listeners::Listeners;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The signing material could not be loaded.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// RabbitMQ could not be reached.
    #[error(transparent)]
    Relay(#[from] crate::hub::RelayError),
    /// Redis could not be reached.
    #[error("presence: {0}")]
    Presence(crate::im::presence_redis::PresenceError),
    /// The file store's settings do not make a client.
    #[error("files: {0}")]
    Files(String),
    /// The database could not be opened or migrated.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl From<BackendError> for StartError {
    fn from(error: BackendError) -> StartError {
        match error {
            BackendError::Relay(error) => StartError::Relay(error),
            BackendError::Presence(error) => StartError::Presence(error),
        }
    }
}

/// A running broker.
pub struct Server {
    http_addr: SocketAddr,
    stomp_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    hub: Hub,
    auth: Arc<Authenticator>,
    im: Option<Im>,
    routes: http::HttpRouter,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

impl Server {
    /// Starts the whole broker: the STOMP core with the IM layer on the configured store.
    ///
    /// # Errors
    ///
    /// [`StartError`] when the store cannot be opened, a listener cannot be bound or the keys
    /// cannot be loaded.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let node_id = config.node_id();
        let backends = Backends::from_config(&config, &node_id);
        let store_settings = StoreSettings {
            url: config.storage.url.clone(),
            pool_size: config.storage.pool_size,
            timeout: Duration::from_millis(config.storage.timeout_ms),
            max_batch: config.storage.max_batch,
            max_bulk_batch: config.storage.max_bulk_batch,
            node_number: node_number(&node_id),
            outbox_node: backends.events.records_events().then(|| node_id.clone()),
            inbox_positions: config.im.private_resume,
        };
        // The writer registers its commits with this order; the IM layer releases its pushes
        // through it (see `crate::ordering`).
        let push_order = Arc::new(PushOrder::default());
        let store = Store::open(&store_settings, push_order.clone()).await?;
        let settings = ImSettings::from_config(&config);
        let files = crate::files::open_store(&config.files).map_err(StartError::Files)?;
        let im_backends = backends.connect_im().await?;
        Server::start_inner(config, backends, |hub| {
            let im = Im::new(store, hub.clone(), push_order, settings, files, im_backends);
            (crate::im::stomp::extensions(&im), Some(im))
        })
        .await
    }

    /// Starts the STOMP core alone, with no store; `extensions` builds an application layer's
    /// handlers from the hub.
    ///
    /// # Errors
    ///
    /// [`StartError`] when a listener cannot be bound or the keys cannot be loaded.
    pub async fn start_with(
        config: Config,
        extensions: impl FnOnce(&Hub) -> Extensions,
    ) -> Result<Server, StartError> {
        let node_id = config.node_id();
        let backends = Backends::from_config(&config, &node_id);
        Server::start_inner(config, backends, |hub| (extensions(hub), None)).await
    }

    async fn start_inner(
        config: Config,
        backends: Backends,
        layer: impl FnOnce(&Hub) -> (Extensions, Option<Im>),
    ) -> Result<Server, StartError> {
        let auth = Arc::new(Authenticator::from_config(&config.auth)?);
        let hub = Hub::new(
            HubSettings {
                node_id: backends.node_id().to_owned(),
                max_sessions_per_user: config.limits.max_sessions_per_user,
            },
            backends.relay.clone(),
            backends.queues.clone(),
        );
        let (extensions, im) = layer(&hub);
        let router = Router::new(hub.clone(), Acl::new(config.acl.clone()), extensions);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        backends.start(&hub, &shutdown).await?;
        if let Some(im) = &im {
            backends.start_im(im, &tracker, &shutdown);
        }
        let sessions = SessionContext::new(
            router,
            auth.clone(),
            SessionSettings::from_config(&config),
            shutdown.clone(),
        );
        let slots = Arc::new(Semaphore::new(config.server.max_connections));

        let listeners = Listeners::bind(&config).await?;
        let (http_addr, stomp_addr, metrics_addr) = listeners.addrs();

        let state = HttpState {
            sessions: sessions.clone(),
            slots: slots.clone(),
            tracker: tracker.clone(),
            websocket: http::websocket_config(config.limits.max_frame_bytes),
            rest: im.clone().map(|im| ApiState {
                im,
                auth: auth.clone(),
                dev_login: config.auth.dev_login,
            }),
            web_dir: config.server.web_dir.clone(),
            request_limits: RequestLimits {
                timeout: config.request_timeout(),
                json_max_bytes: config.limits.json_max_bytes,
                notification_max_bytes: RequestLimits::notification_body(
                    config.limits.json_max_bytes,
                    config.limits.notification_max_users,
                ),
            },
            serve_metrics: config.server.metrics_addr.is_none(),
        };
        let routes = http::routes(state);
        listeners.serve(
            &config,
            routes.clone(),
            sessions,
            slots,
            &shutdown,
            &tracker,
        );
        if let Some(im) = &im {
            tracker.spawn(crate::im::retention::run_purge(
                im.clone(),
                Duration::from_secs(config.im.retention_purge_interval_s),
                shutdown.clone(),
            ));
        }
        // Every series is there from the first scrape.
        crate::metrics::Metrics::get();
        tracker.spawn(upkeep(
            im.as_ref().map(|im| im.store().clone()),
            shutdown.clone(),
        ));
        tracker.spawn(release_overdue(hub.clone(), shutdown.clone()));

        Ok(Server {
            http_addr,
            stomp_addr,
            metrics_addr,
            hub,
            auth,
            im,
            routes,
            shutdown,
            tracker,
            grace: Duration::from_millis(config.server.shutdown_grace_ms),
        })
    }

    /// The HTTP routes with their state (REST API, health, the web client), to call in-process
    /// without a socket. The connection-level guards (connection caps, header and body
    /// timeouts) are not on this path; everything a route does is.
    pub fn http_routes(&self) -> http::HttpRouter {
        self.routes.clone()
    }

    /// The bound HTTP address (the real port when 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound STOMP/TCP address, when enabled.
    pub fn stomp_addr(&self) -> Option<SocketAddr> {
        self.stomp_addr
    }

    /// The bound address of the metrics listener, when `server.metrics_addr` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The IM layer, when the broker runs with it.
    pub fn im(&self) -> Option<&Im> {
        self.im.as_ref()
    }

    /// The token verifier (and minter, with a shared secret).
    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// A token that starts the shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, closes every session (they get an ERROR and a clean close) and waits
    /// for the tasks to finish, at most the configured grace period.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.tracker.len(),
                "shutdown grace period over; abandoning remaining tasks"
            );
        }
    }
}

/// Lets sequenced publications stop waiting for a seq that is not coming.
async fn release_overdue(hub: Hub, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(crate::ordering::HOLD / 4);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => hub.release_overdue(),
        }
    }
}

/// Every few seconds: the exporter's housekeeping, and the store's load as gauges.
async fn upkeep(store: Option<crate::store::Store>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                crate::metrics::upkeep();
                if let Some(store) = &store {
                    let load = store.load();
                    let metrics = crate::metrics::Metrics::get();
                    #[allow(clippy::cast_precision_loss)]
                    metrics.store_writer_queued.set(load.writer_queued as f64);
                    metrics
                        .db_connections_in_use
                        .set(f64::from(load.connections.saturating_sub(load.idle)));
                    metrics.db_connections_idle.set(f64::from(load.idle));
                    metrics.db_waits.absolute(load.waited);
                    metrics.db_timeouts.absolute(load.timed_out);
                }
            }
        }
    }
}
