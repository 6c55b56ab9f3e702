//! The node's one RabbitMQ connection, kept by one supervisor, and the loop that runs each of
//! its users (the relay, the shared queues, the event publisher, the notifications consumer)
//! on a channel of its own.
//!
//! The supervisor connects, watches the connection, and after a loss reconnects with backoff;
//! `connected` says whether RabbitMQ is reachable now (for `/readyz` and metrics). A user never
//! connects by itself: [`AmqpSupervisor::run`] hands it every new connection, on which it opens
//! its channel and declares what it needs, so that after RabbitMQ comes back each user finds
//! its exchanges, queues and bindings again. A user whose channel fails while the connection
//! lives (a channel-level error) opens a new one after a backoff of its own.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::hub::RelayError;

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long the first connection may take before the start gives up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the connection is looked at; a lost one is replaced within about this long.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// The next wait after one more failure.
fn longer(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// A user of the shared connection.
pub trait AmqpUser: Send + Sync + 'static {
    /// What the user is called in logs.
    fn name(&self) -> &'static str;

    /// Opens the user's channel on `connection`, declares what it needs there and serves until
    /// the channel ends. The future is dropped when the connection is lost or the node shuts
    /// down, so it must hold nothing that dropping it would leave half done.
    ///
    /// # Errors
    ///
    /// The error that ended the channel (logged; the channel is opened again).
    fn serve(&self, connection: Arc<Connection>) -> BoxFuture<'_, Result<(), lapin::Error>>;

    /// The channel is gone: forget what was opened on it, say the user is unavailable.
    fn detach(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Keeps the node's RabbitMQ connection and shares it.
pub struct AmqpSupervisor {
    url: String,
    /// The live connection; `None` while RabbitMQ is away.
    current: watch::Sender<Option<Arc<Connection>>>,
    connected: watch::Sender<bool>,
}

impl std::fmt::Debug for AmqpSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSupervisor")
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl AmqpSupervisor {
    /// A supervisor for the RabbitMQ at `url`, connected by [`AmqpSupervisor::start`].
    pub fn new(url: &str) -> Arc<AmqpSupervisor> {
        Arc::new(AmqpSupervisor {
            url: url.to_owned(),
            current: watch::Sender::new(None),
            connected: watch::Sender::new(false),
        })
    }

    /// Connects once (so that an unreachable RabbitMQ stops the start), then keeps the
    /// connection in a task until `shutdown`, which closes it.
    ///
    /// # Errors
    ///
    /// [`RelayError::Unavailable`] when RabbitMQ cannot be reached at start.
    pub async fn start(self: &Arc<Self>, shutdown: CancellationToken) -> Result<(), RelayError> {
        let first = tokio::time::timeout(START_TIMEOUT, self.connect())
            .await
            .map_err(|_| RelayError::Unavailable("timed out connecting to RabbitMQ".into()))?
            .map_err(|error| RelayError::Unavailable(self.redact(&error)))?;
        self.install(Some(first));
        tokio::spawn(self.clone().supervise(shutdown));
        Ok(())
    }

    /// Whether RabbitMQ is reachable now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Follows whether RabbitMQ is reachable.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    fn redact(&self, error: &impl std::fmt::Display) -> String {
        crate::redact::redact_secrets(&error.to_string(), &self.url)
    }

    async fn connect(&self) -> Result<Arc<Connection>, lapin::Error> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        tracing::info!("connected to RabbitMQ");
        Ok(Arc::new(connection))
    }

    fn install(&self, connection: Option<Arc<Connection>>) {
        let connected = connection.is_some();
        self.current.send_replace(connection);
        self.connected.send_replace(connected);
        crate::metrics::Metrics::get()
            .relay_connected
            .set(if connected { 1.0 } else { 0.0 });
    }

    async fn supervise(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let connection = self.current.borrow().clone();
            if let Some(connection) = connection {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {
                        self.install(None);
                        let _ = connection.close(200, "shutdown".into()).await;
                        return;
                    }
                    () = until_lost(&connection) => {}
                }
                self.install(None);
                tracing::warn!("lost RabbitMQ; local delivery goes on while it reconnects");
            }
            let mut backoff = MIN_BACKOFF;
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                match self.connect().await {
                    Ok(connection) => {
                        self.install(Some(connection));
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(error = %self.redact(&error), "RabbitMQ unreachable; retrying");
                        backoff = longer(backoff);
                    }
                }
            }
        }
    }

    /// Runs `user` on every connection until `shutdown`: it serves on each new connection,
    /// and opens its channel again after a backoff when the channel fails on a live one.
    pub async fn run(self: Arc<Self>, user: Arc<dyn AmqpUser>, shutdown: CancellationToken) {
        let mut current = self.current.subscribe();
        let mut backoff = MIN_BACKOFF;
        loop {
            let connection = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                connection = live(&mut current) => match connection {
                    Some(connection) => connection,
                    None => return,
                },
            };
            let outcome = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    user.detach().await;
                    return;
                }
                () = replaced(&mut current, &connection) => Ok(()),
                outcome = user.serve(connection.clone()) => outcome,
            };
            user.detach().await;
            if let Err(error) = outcome {
                tracing::warn!(user = user.name(), error = %self.redact(&error), "RabbitMQ channel failed");
            }
            let same = self
                .current
                .borrow()
                .as_ref()
                .is_some_and(|now| Arc::ptr_eq(now, &connection));
            if same && connection.status().connected() {
                // A new connection ends the wait: its channels start afresh.
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    () = replaced(&mut current, &connection) => {}
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = longer(backoff);
            } else {
                backoff = MIN_BACKOFF;
            }
        }
    }
}

/// Resolves when the connection is found closed.
async fn until_lost(connection: &Connection) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        if !connection.status().connected() {
            return;
        }
    }
}

/// The next live connection; `None` once the supervisor is gone.
async fn live(current: &mut watch::Receiver<Option<Arc<Connection>>>) -> Option<Arc<Connection>> {
    current
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|connection| connection.clone())
}

/// Resolves when `connection` is no longer the supervisor's live connection.
async fn replaced(
    current: &mut watch::Receiver<Option<Arc<Connection>>>,
    connection: &Arc<Connection>,
) {
    let _ = current
        .wait_for(|now| !now.as_ref().is_some_and(|now| Arc::ptr_eq(now, connection)))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        assert_eq!(longer(MIN_BACKOFF), Duration::from_millis(400));
        assert_eq!(longer(Duration::from_secs(4)), MAX_BACKOFF);
        assert_eq!(longer(MAX_BACKOFF), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn a_supervisor_that_never_connected_says_so() {
        let supervisor = AmqpSupervisor::new("amqp://127.0.0.1:1/%2f");
        assert!(!supervisor.is_connected());
        assert!(!*supervisor.connected().borrow());
    }
}
