//! `Idempotency-Key` on creates and other writes: a client that retries a request (a timeout, a
//! dropped connection) with the same key gets the first answer again instead of a second row.
//! Keys are per caller, tenant and operation, and kept a day; the same key with another body is
//! refused, and so is a key whose first request is still running. A running claim is held only
//! as long as its request may run: a gateway that dies mid-request (`kill -9`, a node lost) never
//! completes it, and its key must not refuse the client's retries for the rest of the day. Kept
//! in Redis when the gateway has one (every replica sees every key), in the process otherwise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// How long a key and its answer are kept.
pub const KEPT: Duration = Duration::from_secs(24 * 3600);

/// A completed answer, replayed to a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What holds a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Entry {
    Running { fingerprint: String },
    Done { fingerprint: String, answer: Answer },
}

/// What a request finds for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody used it: the request runs, and its answer is kept.
    New,
    /// The same request completed: its answer.
    Replay(Answer),
    /// The same request is still running.
    Running,
    /// The key was used for another request.
    Mismatch,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request whose body has `fingerprint` and which runs at most `running`
    /// (after that the claim lapses, as if the request had failed).
    async fn claim(&self, key: &str, fingerprint: &str, running: Duration)
    -> Result<Claim, String>;
    /// Keeps the answer of a claimed key, or (`None`) releases the key so that a retry runs again.
    async fn complete(&self, key: &str, fingerprint: &str, answer: Option<Answer>);
}

fn judge(entry: &Entry, fingerprint: &str) -> Claim {
    match entry {
        Entry::Running { fingerprint: f } if f == fingerprint => Claim::Running,
        Entry::Done {
            fingerprint: f,
            answer,
        } if f == fingerprint => Claim::Replay(answer.clone()),
        _ => Claim::Mismatch,
    }
}

// === in the process ===

#[derive(Debug, Default)]
pub struct LocalIdempotency {
    entries: Mutex<HashMap<String, (Entry, Instant)>>,
}

#[async_trait]
impl IdempotencyStore for LocalIdempotency {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        running: Duration,
    ) -> Result<Claim, String> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("idempotency lock");
        entries.retain(|_, (_, until)| *until > now);
        if let Some((entry, _)) = entries.get(key) {
            return Ok(judge(entry, fingerprint));
        }
        let claimed = Entry::Running {
            fingerprint: fingerprint.to_string(),
        };
        entries.insert(key.to_string(), (claimed, now + running));
        Ok(Claim::New)
    }

    async fn complete(&self, key: &str, fingerprint: &str, answer: Option<Answer>) {
        let mut entries = self.entries.lock().expect("idempotency lock");
        match answer {
            Some(answer) => {
                let done = Entry::Done {
                    fingerprint: fingerprint.to_string(),
                    answer,
                };
                entries.insert(key.to_string(), (done, Instant::now() + KEPT));
            }
            None => {
                entries.remove(key);
            }
        }
    }
}

// === in Redis, shared by the replicas ===

pub struct RedisIdempotency {
    connection: redis::aio::ConnectionManager,
}

impl std::fmt::Debug for RedisIdempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisIdempotency")
    }
}

impl RedisIdempotency {
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            connection: crate::replicas::connect(url).await?,
        })
    }

    fn key(key: &str) -> String {
        format!("pdp:idempotency:{key}")
    }
}

#[async_trait]
impl IdempotencyStore for RedisIdempotency {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        running: Duration,
    ) -> Result<Claim, String> {
        let mut connection = self.connection.clone();
        let claimed = serde_json::to_string(&Entry::Running {
            fingerprint: fingerprint.to_string(),
        })
        .expect("entries serialize");
        // SET NX: of two replicas claiming one key at once, one wins.
        let set: Option<String> = redis::cmd("SET")
            .arg(Self::key(key))
            .arg(&claimed)
            .arg("NX")
            .arg("PX")
            .arg(running.as_millis().max(1) as u64)
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        if set.is_some() {
            return Ok(Claim::New);
        }
        let held: Option<String> = redis::cmd("GET")
            .arg(Self::key(key))
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        match held.and_then(|text| serde_json::from_str::<Entry>(&text).ok()) {
            Some(entry) => Ok(judge(&entry, fingerprint)),
            // It expired between the two commands: claim it again.
            None => Box::pin(self.claim(key, fingerprint, running)).await,
        }
    }

    async fn complete(&self, key: &str, fingerprint: &str, answer: Option<Answer>) {
        let mut connection = self.connection.clone();
        let result: Result<(), redis::RedisError> = match answer {
            Some(answer) => {
                let done = serde_json::to_string(&Entry::Done {
                    fingerprint: fingerprint.to_string(),
                    answer,
                })
                .expect("entries serialize");
                redis::cmd("SET")
                    .arg(Self::key(key))
                    .arg(done)
                    .arg("EX")
                    .arg(KEPT.as_secs())
                    .query_async(&mut connection)
                    .await
            }
            None => {
                redis::cmd("DEL")
                    .arg(Self::key(key))
                    .query_async(&mut connection)
                    .await
            }
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "idempotency answer not kept; a retry runs again");
        }
    }
}
