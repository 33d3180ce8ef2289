//! One audit record per request, allowed or not, published on `pdp.audit`.
//!
//! Records go through the platform store's outbox, so that they reach the event log even if the
//! broker is down. Requests hand records to a channel and a writer inserts them in batches (one
//! transaction per batch), so that no request waits for the database.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pdp_kit::events::Event;
use pdp_kit::identity::TenantCode;
use pdp_kit::outbox;
use pdp_kit::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const TOPIC: &str = "pdp.audit";

/// The most records one transaction writes.
const BATCH: usize = 5_000;
/// How long the writer lets records gather after the first before it writes them all.
const LINGER: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    /// Refused before authorization could decide (no route, bad token, bad input).
    Refused,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: DateTime<Utc>,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub subject: String,
    pub organization: String,
    pub tenant: TenantCode,
    /// The gRPC method, or `METHOD path` when no route matched.
    pub operation: String,
    pub decision: Decision,
    pub status: u16,
    pub latency_ms: f64,
    /// The client's address, on records of requests nobody authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
}

/// Where the gateway sends its records.
pub trait AuditSink: Send + Sync {
    fn record(&self, record: AuditRecord);
}

/// Sends records to the outbox writer; see [`OutboxAudit::spawn`].
#[derive(Debug, Clone)]
pub struct OutboxAudit {
    sender: mpsc::Sender<AuditRecord>,
}

impl AuditSink for OutboxAudit {
    fn record(&self, record: AuditRecord) {
        match self.sender.try_send(record) {
            Ok(()) => {}
            // A full channel means the database is far behind: say so loudly rather than
            // block requests.
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::error!("audit record dropped: the writer is behind");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("audit record dropped: the gateway is stopping");
            }
        }
    }
}

impl OutboxAudit {
    /// Starts the writer; it drains what is queued before it stops on `shutdown`.
    pub fn spawn(store: Store, shutdown: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::channel::<AuditRecord>(10_000);
        let task = tokio::spawn(async move {
            let mut batch = Vec::new();
            loop {
                let mut stopping = tokio::select! {
                    n = receiver.recv_many(&mut batch, BATCH) => n == 0,
                    _ = shutdown.cancelled() => true,
                };
                // Under load, records arrive one by one: gathering them for a moment makes one
                // transaction of many (measured: a third of the gateway's throughput went to
                // writing small batches). The writer sleeps through the gathering instead of
                // listening, so that a request's record wakes no thread.
                if !stopping {
                    tokio::select! {
                        _ = tokio::time::sleep(LINGER) => {}
                        _ = shutdown.cancelled() => stopping = true,
                    }
                }
                if stopping {
                    // What was queued before the stop is still written; nothing after it is.
                    receiver.close();
                }
                loop {
                    while batch.len() < BATCH
                        && let Ok(record) = receiver.try_recv()
                    {
                        batch.push(record);
                    }
                    if batch.is_empty() {
                        break;
                    }
                    write(&store, std::mem::take(&mut batch)).await;
                    if !stopping {
                        // Under load, the next records are already gathering.
                        break;
                    }
                }
                if stopping {
                    break;
                }
            }
        });
        (Self { sender }, task)
    }
}

async fn write(store: &Store, records: Vec<AuditRecord>) {
    let count = records.len();
    // Built once: a retry writes the very same events (same ids), never new ones.
    let events: Arc<Vec<Event>> = Arc::new(
        records
            .iter()
            .map(|r| {
                Event::new(
                    "gateway",
                    &r.tenant,
                    "request",
                    "audited",
                    r.request_id.clone(),
                    r.time,
                    serde_json::to_value(r).expect("audit records serialize"),
                )
            })
            .collect(),
    );
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        let batch = events.clone();
        let result = store
            .transaction(move |conn| {
                outbox::enqueue_all(conn, TOPIC, &batch)?;
                Ok::<_, StoreError>(())
            })
            .await;
        match result {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(error = %err, attempt, count, "audit batch not written yet");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    tracing::error!(count, "audit batch lost after retries");
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;
    use pdp_kit::outbox::pdp_outbox;

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            time: Utc::now(),
            request_id: format!("req-{n}"),
            trace_id: None,
            subject: "alice".into(),
            organization: "org".into(),
            tenant: "230100".parse().unwrap(),
            operation: "pdp.testing.v1.WidgetService/GetWidget".into(),
            decision: Decision::Allow,
            status: 200,
            latency_ms: 0.2,
            client_address: None,
        }
    }

    async fn written(store: &Store) -> i64 {
        store
            .run(|conn| Ok::<_, StoreError>(pdp_outbox::table.count().get_result::<i64>(conn)?))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_writer_gathers_records_and_a_stop_writes_what_was_queued_and_nothing_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db").to_string_lossy(), "platform", 1).unwrap();
        store.migrate(&[pdp_kit::store::KIT_MIGRATIONS]).unwrap();
        let shutdown = CancellationToken::new();
        let (audit, writer) = OutboxAudit::spawn(store.clone(), shutdown.clone());

        for n in 0..3 {
            audit.record(record(n));
        }
        for _ in 0..100 {
            if written(&store).await == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            written(&store).await,
            3,
            "records are written without a stop"
        );

        // More than one transaction's worth, queued at once, then the stop.
        for n in 3..(3 + BATCH + 7) {
            audit.record(record(n));
        }
        shutdown.cancel();
        writer.await.unwrap();
        assert_eq!(written(&store).await, (3 + BATCH + 7) as i64);
        audit.record(record(0));
        assert_eq!(written(&store).await, (3 + BATCH + 7) as i64);
    }
}
