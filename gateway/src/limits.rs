//! Rate limits: a token bucket per tenant and per subject (per client address for the public).
//! In a cluster the buckets live in Redis, so that every gateway replica draws from the same
//! one; `pdp dev` keeps them in the process.
//!
//! When Redis cannot be reached the gateway admits the request and logs it: a rate limit protects
//! capacity, it is not an authorization, and an outage of the cache should not close the platform.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// Requests per second, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Try again after this long.
    Limited(Duration),
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    async fn admit(&self, key: &str, limit: Limit) -> Admission;
}

/// Buckets in this process.
#[derive(Debug, Default)]
pub struct LocalLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn admit(&self, key: &str, limit: Limit) -> Admission {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("bucket lock");
        let (tokens, last) = buckets
            .entry(key.to_string())
            .or_insert((f64::from(limit.burst), now));
        let refilled = (*tokens + now.duration_since(*last).as_secs_f64() * limit.per_second)
            .min(f64::from(limit.burst));
        *last = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Admission::Admitted
        } else {
            *tokens = refilled;
            Admission::Limited(Duration::from_secs_f64((1.0 - refilled) / limit.per_second))
        }
    }
}

/// Buckets in Redis, updated atomically by a script that reads the server's clock, so that
/// replicas with drifting clocks still share one bucket.
pub struct RedisLimiter {
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisLimiter")
    }
}

const BUCKET: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) / 1000 * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
";

impl RedisLimiter {
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let connection = crate::replicas::connect(url).await?;
        Ok(Self {
            connection,
            script: redis::Script::new(BUCKET),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn admit(&self, key: &str, limit: Limit) -> Admission {
        let mut connection = self.connection.clone();
        let wait: Result<u64, _> = self
            .script
            .key(format!("pdp:ratelimit:{key}"))
            .arg(limit.per_second)
            .arg(limit.burst)
            .invoke_async(&mut connection)
            .await;
        match wait {
            Ok(0) => Admission::Admitted,
            Ok(ms) => Admission::Limited(Duration::from_millis(ms)),
            Err(err) => {
                tracing::error!(error = %err, "rate limiter unavailable; admitting");
                Admission::Admitted
            }
        }
    }
}
