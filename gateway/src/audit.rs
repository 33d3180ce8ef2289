//! One audit record per request, allowed or not, published on `pdp.audit`.
//!
//! Records go through the platform store's outbox, so that they reach the event log even if the
//! broker is down. A request is answered only once its record is durable: it hands the record to
//! a writer and waits. The writer commits whatever has queued in one transaction and tells each
//! request; while one transaction is in flight the next batch gathers (group commit), so under
//! load many requests share a commit and a lone request waits for one commit only. When the
//! writer falls behind, requests wait for room in its queue (the gateway slows down) and, past a
//! bound, are told the trail is unavailable: no record is ever dropped to keep an answer fast.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pdp_kit::events::Event;
use pdp_kit::identity::TenantCode;
use pdp_kit::outbox;
use pdp_kit::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub const TOPIC: &str = "pdp.audit";

/// The most records one transaction writes.
const BATCH: usize = 5_000;
/// How long a request waits for room in the writer's queue, and then for its record's commit,
/// before it is told the trail is unavailable. The writer's own retries take about 3 s.
pub const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    /// Refused before authorization could decide (no route, bad token, bad input).
    Refused,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Refused => "refused",
        }
    }
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

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuditError {
    #[error("the audit trail cannot be written now: {0}")]
    Unavailable(&'static str),
    #[error("the gateway is stopping")]
    Stopping,
}

/// Where the gateway sends its records.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync {
    /// Returns once the record is durable.
    async fn record(&self, record: AuditRecord) -> Result<(), AuditError>;
}

/// A record and the request waiting for its commit.
struct Pending {
    record: AuditRecord,
    /// The request's trace context: the record's event carries it to its consumers, which the
    /// writer's own task could not give it.
    trace: std::collections::BTreeMap<String, String>,
    written: oneshot::Sender<bool>,
}

/// Hands records to the outbox writer; see [`OutboxAudit::spawn`].
#[derive(Debug, Clone)]
pub struct OutboxAudit {
    sender: mpsc::Sender<Pending>,
}

#[async_trait::async_trait]
impl AuditSink for OutboxAudit {
    async fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        let queued = self.sender.max_capacity() - self.sender.capacity();
        pdp_kit::telemetry::metrics::GATEWAY_AUDIT_QUEUE.set(queued as i64);
        let (written, committed) = oneshot::channel();
        let mut trace = std::collections::BTreeMap::new();
        pdp_kit::telemetry::inject_current(&mut pdp_kit::telemetry::RecordHeadersMut(&mut trace));
        let pending = Pending {
            record,
            trace,
            written,
        };
        match tokio::time::timeout(WAIT, self.sender.send(pending)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(AuditError::Stopping),
            Err(_) => return Err(AuditError::Unavailable("the writer is behind")),
        }
        match tokio::time::timeout(WAIT, committed).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(AuditError::Unavailable(
                "the platform store refused the batch",
            )),
            Ok(Err(_)) => Err(AuditError::Stopping),
            Err(_) => Err(AuditError::Unavailable("the commit did not come in time")),
        }
    }
}

impl OutboxAudit {
    /// Starts the writer; it drains what is queued before it stops on `shutdown`.
    pub fn spawn(store: Store, shutdown: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::channel::<Pending>(10_000);
        let task = tokio::spawn(async move {
            let mut batch = Vec::new();
            loop {
                let stopping = tokio::select! {
                    n = receiver.recv_many(&mut batch, BATCH) => n == 0,
                    _ = shutdown.cancelled() => true,
                };
                if stopping {
                    // What was queued before the stop is still written; nothing after it is.
                    receiver.close();
                }
                loop {
                    while batch.len() < BATCH
                        && let Ok(pending) = receiver.try_recv()
                    {
                        batch.push(pending);
                    }
                    if batch.is_empty() {
                        break;
                    }
                    let (records, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut batch)
                        .into_iter()
                        .map(|p| ((p.record, p.trace), p.written))
                        .unzip();
                    let ok = write(&store, records).await;
                    for request in waiting {
                        // A request that gave up waiting is gone; nothing to tell it.
                        let _ = request.send(ok);
                    }
                    if !stopping {
                        // The next batch gathered while this one was written.
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

/// Writes a batch in one transaction, retrying a failure a few times; whether it is durable.
async fn write(store: &Store, records: Vec<(AuditRecord, Trace)>) -> bool {
    let started = std::time::Instant::now();
    let ok = write_with_retries(store, records).await;
    pdp_kit::telemetry::metrics::GATEWAY_AUDIT_WRITE
        .with_label_values(&[if ok { "ok" } else { "failed" }])
        .observe(started.elapsed().as_secs_f64());
    ok
}

/// A request's trace context, as record headers.
type Trace = std::collections::BTreeMap<String, String>;

async fn write_with_retries(store: &Store, records: Vec<(AuditRecord, Trace)>) -> bool {
    let count = records.len();
    // Built once: a retry writes the very same events (same ids), never new ones.
    let events: Arc<Vec<Event>> = Arc::new(
        records
            .into_iter()
            .map(|(r, trace)| {
                let mut event = Event::new(
                    "gateway",
                    &r.tenant,
                    "request",
                    "audited",
                    r.request_id.clone(),
                    r.time,
                    serde_json::to_value(&r).expect("audit records serialize"),
                );
                event.trace = trace;
                event
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
            Ok(()) => return true,
            Err(err) => {
                tracing::warn!(error = %err, attempt, count, "audit batch not written yet");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    tracing::error!(
        count,
        "audit batch not written after retries; its requests are refused"
    );
    false
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
    async fn a_record_is_durable_when_record_returns_and_a_stop_writes_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db").to_string_lossy(), "platform", 1).unwrap();
        store.migrate(&[pdp_kit::store::KIT_MIGRATIONS]).unwrap();
        let shutdown = CancellationToken::new();
        let (audit, writer) = OutboxAudit::spawn(store.clone(), shutdown.clone());

        for n in 0..3 {
            audit.record(record(n)).await.unwrap();
            assert_eq!(
                written(&store).await,
                n as i64 + 1,
                "durable before the answer"
            );
        }

        // Many requests at once share commits.
        let many: Vec<_> = (3..(3 + BATCH + 7))
            .map(|n| {
                let audit = audit.clone();
                tokio::spawn(async move { audit.record(record(n)).await })
            })
            .collect();
        for request in many {
            request.await.unwrap().unwrap();
        }
        assert_eq!(written(&store).await, (3 + BATCH + 7) as i64);
        shutdown.cancel();
        writer.await.unwrap();
        assert_eq!(audit.record(record(0)).await, Err(AuditError::Stopping));
        assert_eq!(written(&store).await, (3 + BATCH + 7) as i64);
    }

    #[tokio::test]
    async fn a_request_is_told_when_its_record_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        // No migrations: the outbox table does not exist, so every batch fails.
        let store = Store::open(&dir.path().join("p.db").to_string_lossy(), "platform", 1).unwrap();
        let (audit, _writer) = OutboxAudit::spawn(store, CancellationToken::new());
        assert!(matches!(
            audit.record(record(1)).await,
            Err(AuditError::Unavailable(_))
        ));
    }
}
