//! Cluster-wide presence in Redis: how many sessions each user has on each node.
//!
//! Keys: `presence:{user}` is a hash node → open sessions; `presence:node:{node}` is a node's
//! heartbeat, refreshed every few seconds with a short TTL; `presence:seen:{user}` is the last
//! time the user's last session closed. Counts of a node whose heartbeat expired (it died) are
//! ignored and cleaned up by the next script that reads them, so a dead node's users go
//! offline within the TTL.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

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

/// The Redis side of presence.
#[derive(Clone)]
pub struct RedisPresence {
    connection: ConnectionManager,
    node_id: String,
    open: std::sync::Arc<Script>,
    close: std::sync::Arc<Script>,
    lookup: std::sync::Arc<Script>,
    beat: std::sync::Arc<Script>,
}

async fn timed<T>(call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, PresenceError> {
    Ok(tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| PresenceError::Timeout)??)
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
    pub async fn opened(&self, user: &str) -> Result<i64, PresenceError> {
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
    pub async fn closed(&self, user: &str) -> Result<i64, PresenceError> {
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
    pub async fn lookup(&self, user: &str) -> Result<(bool, Option<i64>), PresenceError> {
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
