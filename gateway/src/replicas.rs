//! The connection to the Redis that the gateway's replicas share (rate limits, idempotency keys).
//!
//! Every request that counts against a limit or carries an `Idempotency-Key` waits on it, so it
//! must fail fast when Redis is away: the client's defaults (seconds of connecting and retrying)
//! held such requests for ten seconds each during an outage in the fault runs. With these
//! bounds a request learns within about a second that Redis is gone — the limiter then admits,
//! a keyed write is refused with 503 — and the connection is made again on a later request.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long connecting, and then each answer, may take.
const WAIT: Duration = Duration::from_millis(500);

pub async fn connect(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(WAIT))
        .set_response_timeout(Some(WAIT))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config).await
}
