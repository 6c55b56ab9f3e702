//! Cluster-wide presence in Redis: how many sessions each user has on each node.
//!
//! Keys: `presence:{user}` is a hash node → open sessions; `presence:node:{node}` is a node's
//! heartbeat, refreshed every few seconds with a short TTL; `presence:seen:{user}` is the last
//! time the user's last session closed. Counts of a node whose heartbeat expired (it died) are
//! ignored and cleaned up by the next script that reads them, so a dead node's users go
//! offline within the TTL.
//!
//! As the cluster's [`PresenceBackend`], changes are applied in order by one task, which also
//! keeps this node's heartbeat alive and writes this node's sessions again when Redis lost them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::presence::{Announcer, PresenceBackend};
use crate::util::now_ms;

/// How long a node's heartbeat lives without a refresh.
pub const NODE_TTL: Duration = Duration::from_secs(15);

/// Bound on each Redis call; past it the caller falls back to what this node knows.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// Sums the sessions of live nodes, removing fields of dead ones. KEYS[1] = user hash.
const LIVE_TOTAL: &str = r"
local function live_total(key)
  local total = 0
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local node, count = fields[i], tonumber(fields[i + 1])
    if redis.call('EXISTS', 'presence:node:' .. node) == 1 and count > 0 then
      total = total + count
    else
      redis.call('HDEL', key, node)
    end
  end
  return total
end
";

/// Why a Redis call failed.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// Redis answered with an error or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis timed out")]
    Timeout,
}

/// A session opening or closing, with this node's own view of first/last.
enum Change {
    Opened { user: String, first_here: bool },
    Closed { user: String, last_here: bool },
}

/// The Redis side of presence.
#[derive(Clone)]
pub struct RedisPresence {
    connection: ConnectionManager,
    node_id: String,
    /// Feeds the task that applies changes in order, once started.
    changes: Arc<OnceLock<mpsc::UnboundedSender<Change>>>,
    open: std::sync::Arc<Script>,
    close: std::sync::Arc<Script>,
    lookup: std::sync::Arc<Script>,
    beat: std::sync::Arc<Script>,
}

async fn timed<T>(call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, PresenceError> {
    let result = crate::metrics::timed(
        &crate::metrics::Metrics::get().redis_seconds,
        tokio::time::timeout(CALL_TIMEOUT, call),
    )
    .await;
    Ok(result.map_err(|_| PresenceError::Timeout)??)
}

impl RedisPresence {
    /// Connects to Redis.
    ///
    /// # Errors
    ///
    /// [`PresenceError`] when Redis cannot be reached.
    pub async fn connect(url: &str, node_id: &str) -> Result<RedisPresence, PresenceError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let connection = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| PresenceError::Timeout)??;
        let presence = RedisPresence {
            connection,
            node_id: node_id.to_owned(),
            changes: Arc::new(OnceLock::new()),
            open: std::sync::Arc::new(Script::new(&format!(
                "{LIVE_TOTAL}
redis.call('SET', 'presence:node:' .. ARGV[1], 1, 'EX', ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return live_total(KEYS[1])"
            ))),
            beat: std::sync::Arc::new(Script::new(
                "local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], 1, 'EX', ARGV[1])
return existed",
            )),
            close: std::sync::Arc::new(Script::new(&format!(
                "{LIVE_TOTAL}
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
local total = live_total(KEYS[1])
if total == 0 then redis.call('SET', KEYS[2], ARGV[2]) end
return total"
            ))),
            lookup: std::sync::Arc::new(Script::new(&format!(
                "{LIVE_TOTAL}
local total = live_total(KEYS[1])
local seen = redis.call('GET', KEYS[2])
return {{total, seen or ''}}"
            ))),
        };
        presence.heartbeat().await?;
        Ok(presence)
    }

    /// The Redis connection, shared with the rate limiter.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Refreshes this node's heartbeat.
    ///
    /// # Errors
    ///
    /// [`PresenceError`] when Redis fails.
    ///
    /// Returns false when the heartbeat was missing (Redis was flushed or restarted, or this
    /// node was presumed dead): the caller should then [`RedisPresence::resync`].
    pub async fn heartbeat(&self) -> Result<bool, PresenceError> {
        let mut connection = self.connection.clone();
        let existed: i64 = timed(
            self.beat
                .key(format!("presence:node:{}", self.node_id))
                .arg(NODE_TTL.as_secs())
                .invoke_async(&mut connection),
        )
        .await?;
        Ok(existed == 1)
    }

    /// Writes this node's session count of every user again, after Redis lost them.
    ///
    /// # Errors
    ///
    /// [`PresenceError`] when Redis fails.
    pub async fn resync(&self, counts: &[(String, usize)]) -> Result<(), PresenceError> {
        let mut connection = self.connection.clone();
        let mut pipeline = redis::pipe();
        for (user, count) in counts {
            pipeline
                .hset(format!("presence:{user}"), &self.node_id, *count)
                .ignore();
        }
        timed(pipeline.query_async::<()>(&mut connection)).await
    }

    /// Counts a session opening; returns the user's open sessions cluster-wide.
    ///
    /// # Errors
    ///
    /// [`PresenceError`] when Redis fails.
    pub async fn count_opened(&self, user: &str) -> Result<i64, PresenceError> {
        let mut connection = self.connection.clone();
        timed(
            self.open
                .key(format!("presence:{user}"))
                .arg(&self.node_id)
                .arg(NODE_TTL.as_secs())
                .invoke_async(&mut connection),
        )
        .await
    }

    /// Counts a session closing; returns the user's open sessions cluster-wide and records
    /// the last-seen time when none is left.
    ///
    /// # Errors
    ///
    /// [`PresenceError`] when Redis fails.
    pub async fn count_closed(&self, user: &str) -> Result<i64, PresenceError> {
        let mut connection = self.connection.clone();
        timed(
            self.close
                .key(format!("presence:{user}"))
                .key(format!("presence:seen:{user}"))
                .arg(&self.node_id)
                .arg(now_ms())
                .invoke_async(&mut connection),
        )
        .await
    }

    /// Whether a user has a session anywhere, and when they were last seen.
    ///
    /// # Errors
    ///
    /// [`PresenceError`] when Redis fails.
    pub async fn fetch(&self, user: &str) -> Result<(bool, Option<i64>), PresenceError> {
        let mut connection = self.connection.clone();
        let (total, seen): (i64, String) = timed(
            self.lookup
                .key(format!("presence:{user}"))
                .key(format!("presence:seen:{user}"))
                .invoke_async(&mut connection),
        )
        .await?;
        Ok((total > 0, seen.parse().ok()))
    }
}

impl RedisPresence {
    /// Applies changes in order and keeps the heartbeat, for as long as the runtime runs.
    async fn apply(self, announcer: Announcer, mut queue: mpsc::UnboundedReceiver<Change>) {
        let mut heartbeat = tokio::time::interval(NODE_TTL / 3);
        loop {
            tokio::select! {
                change = queue.recv() => match change {
                    Some(change) => self.apply_one(&announcer, change).await,
                    None => return,
                },
                _ = heartbeat.tick() => match self.heartbeat().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!("presence state missing in Redis; writing this node's sessions again");
                        if let Err(error) = self.resync(&announcer.hub().user_session_counts()).await {
                            tracing::warn!(%error, "presence resync failed");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "presence heartbeat failed; using this node's view");
                    }
                },
            }
        }
    }

    async fn apply_one(&self, announcer: &Announcer, change: Change) {
        match change {
            Change::Opened { user, first_here } => {
                let first = match self.count_opened(&user).await {
                    Ok(total) => total == 1,
                    Err(error) => {
                        tracing::warn!(%error, "presence in Redis unavailable; using this node's view");
                        first_here
                    }
                };
                if first {
                    announcer.online(&user);
                }
            }
            Change::Closed { user, last_here } => {
                let last = match self.count_closed(&user).await {
                    Ok(total) => total == 0,
                    Err(error) => {
                        tracing::warn!(%error, "presence in Redis unavailable; using this node's view");
                        last_here
                    }
                };
                if last {
                    announcer.offline(&user);
                }
            }
        }
    }

    fn send(&self, change: Change) {
        if let Some(changes) = self.changes.get() {
            let _ = changes.send(change);
        }
    }
}

impl PresenceBackend for RedisPresence {
    fn start(&self, announcer: Announcer) {
        let (changes, queue) = mpsc::unbounded_channel();
        if self.changes.set(changes).is_ok() {
            tokio::spawn(self.clone().apply(announcer, queue));
        }
    }

    fn opened(&self, user: &str, first_here: bool) {
        self.send(Change::Opened {
            user: user.to_owned(),
            first_here,
        });
    }

    fn closed(&self, user: &str, last_here: bool) {
        self.send(Change::Closed {
            user: user.to_owned(),
            last_here,
        });
    }

    fn lookup<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Option<(bool, Option<i64>)>> {
        Box::pin(async move {
            match self.fetch(user).await {
                Ok(answer) => Some(answer),
                Err(error) => {
                    tracing::warn!(%error, "presence lookup in Redis failed; using this node's view");
                    None
                }
            }
        })
    }
}
