//! Cluster-wide rate limits in Redis: the same exact sliding window as the in-process limiter,
//! kept in a sorted set per key and checked with one round trip (a Lua script). When Redis does
//! not answer, the check falls back to this node's own limiter, which is logged and counted in
//! `broker_rate_limit_fallbacks_total`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::Script;
use redis::aio::ConnectionManager;

use super::limits::{Decision, InProcessLimiter, Rate, RateLimiter};
use crate::store::now_ms;

/// Bound on one check; past it the node's own limiter decides.
const CALL_TIMEOUT: Duration = Duration::from_millis(300);

/// KEYS[1] window; ARGV now_ms, window_ms, limit, unique member. Returns {allowed, retry_ms}.
const SLIDING_WINDOW: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1] - ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + tonumber(ARGV[2]) - tonumber(ARGV[1])}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, 0}
";

/// The Redis limiter.
pub struct RedisLimiter {
    connection: ConnectionManager,
    script: Arc<Script>,
    fallback: InProcessLimiter,
}

impl RedisLimiter {
    /// A limiter over an open Redis connection.
    pub fn new(connection: ConnectionManager) -> RedisLimiter {
        RedisLimiter {
            connection,
            script: Arc::new(Script::new(SLIDING_WINDOW)),
            fallback: InProcessLimiter::new(),
        }
    }

    async fn check_redis(&self, key: &str, limit: Rate) -> redis::RedisResult<Decision> {
        let mut connection = self.connection.clone();
        let window = i64::try_from(limit.per.as_millis()).unwrap_or(i64::MAX);
        let member = format!("{}-{:08x}", now_ms(), rand::random::<u32>());
        let (allowed, retry_ms): (i64, i64) = self
            .script
            .key(format!("ratelimit:{key}"))
            .arg(now_ms())
            .arg(window)
            .arg(limit.count)
            .arg(member)
            .invoke_async(&mut connection)
            .await?;
        Ok(if allowed == 1 {
            Decision::Allow
        } else {
            Decision::Deny {
                retry_after: Duration::from_millis(u64::try_from(retry_ms.max(0)).unwrap_or(0)),
            }
        })
    }
}

impl RateLimiter for RedisLimiter {
    fn check<'a>(&'a self, key: &'a str, limit: Rate) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            match tokio::time::timeout(CALL_TIMEOUT, self.check_redis(key, limit)).await {
                Ok(Ok(decision)) => decision,
                failed => {
                    let reason = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::warn!(%reason, "rate limit in Redis unavailable; using this node's limiter");
                    metrics::counter!("broker_rate_limit_fallbacks_total").increment(1);
                    self.fallback.check(key, limit).await
                }
            }
        })
    }
}
