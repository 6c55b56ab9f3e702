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
use crate::metrics::{Metrics, timed};
use crate::util::now_ms;

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

/// KEYS[1] window; ARGV now_ms, window_ms, capacity, weight, unique member. Members are
/// `<weight>:<unique>`, scored by time. Returns {allowed, retry_ms}.
const WEIGHTED_WINDOW: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1] - ARGV[2])
local items = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local function units(member) return tonumber(string.match(member, '^(%d+):')) or 0 end
local total = 0
for i = 1, #items, 2 do total = total + units(items[i]) end
local weight = tonumber(ARGV[4])
local capacity = tonumber(ARGV[3])
local need = math.max(weight, 1)
if total + need > capacity then
  if need <= capacity then
    local left = total
    for i = 1, #items, 2 do
      left = left - units(items[i])
      if left + need <= capacity then
        return {0, tonumber(items[i + 1]) + tonumber(ARGV[2]) - tonumber(ARGV[1])}
      end
    end
  end
  return {0, tonumber(ARGV[2])}
end
if weight > 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4] .. ':' .. ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, 0}
";

/// The Redis limiter.
pub struct RedisLimiter {
    connection: ConnectionManager,
    script: Arc<Script>,
    weighted: Arc<Script>,
    fallback: InProcessLimiter,
}

fn decision(allowed: i64, retry_ms: i64) -> Decision {
    if allowed == 1 {
        Decision::Allow
    } else {
        Decision::Deny {
            retry_after: Duration::from_millis(u64::try_from(retry_ms.max(0)).unwrap_or(0)),
        }
    }
}

/// Logs and counts a check that Redis did not answer.
fn fell_back(reason: &str) {
    tracing::warn!(%reason, "rate limit in Redis unavailable; using this node's limiter");
    metrics::counter!("broker_rate_limit_fallbacks_total").increment(1);
}

impl RedisLimiter {
    /// A limiter over an open Redis connection.
    pub fn new(connection: ConnectionManager) -> RedisLimiter {
        RedisLimiter {
            connection,
            script: Arc::new(Script::new(SLIDING_WINDOW)),
            weighted: Arc::new(Script::new(WEIGHTED_WINDOW)),
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
        Ok(decision(allowed, retry_ms))
    }

    async fn check_weighted_redis(
        &self,
        key: &str,
        weight: u64,
        capacity: u64,
        window: Duration,
    ) -> redis::RedisResult<Decision> {
        let mut connection = self.connection.clone();
        let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let (allowed, retry_ms): (i64, i64) = self
            .weighted
            .key(format!("ratelimit:{key}"))
            .arg(now_ms())
            .arg(window)
            .arg(capacity)
            .arg(weight)
            .arg(format!("{}-{:08x}", now_ms(), rand::random::<u32>()))
            .invoke_async(&mut connection)
            .await?;
        Ok(decision(allowed, retry_ms))
    }
}

impl RateLimiter for RedisLimiter {
    fn check<'a>(&'a self, key: &'a str, limit: Rate) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let call = tokio::time::timeout(CALL_TIMEOUT, self.check_redis(key, limit));
            let answer = timed(&Metrics::get().redis_seconds, call).await;
            match answer {
                Ok(Ok(decision)) => decision,
                failed => {
                    let reason = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    fell_back(&reason);
                    self.fallback.check(key, limit).await
                }
            }
        })
    }

    fn check_weighted<'a>(
        &'a self,
        key: &'a str,
        weight: u64,
        capacity: u64,
        window: Duration,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let call = self.check_weighted_redis(key, weight, capacity, window);
            let answer = timed(
                &Metrics::get().redis_seconds,
                tokio::time::timeout(CALL_TIMEOUT, call),
            )
            .await;
            let reason = match answer {
                Ok(Ok(decision)) => return decision,
                Ok(Err(error)) => error.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            fell_back(&reason);
            self.fallback
                .check_weighted(key, weight, capacity, window)
                .await
        })
    }
}
