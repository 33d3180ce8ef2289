//! The transactional outbox: a service writes its state change and the events it causes in one
//! database transaction ([`enqueue`]); the [`OutboxRelay`] publishes pending rows to the event log
//! in id order and marks them sent.
//!
//! A crash between publishing and marking publishes the batch again on restart: delivery is at
//! least once, and consumers drop the repeats through their inbox ([`crate::inbox`]). Nothing is
//! lost, because a row is marked only after the log acknowledged it.
//!
//! In PostgreSQL the relay claims rows with `FOR UPDATE SKIP LOCKED`, so two replicas never
//! publish the same row, under a transaction-scoped advisory lock, so that one replica at a time
//! relays and a key's events cannot overtake each other across replicas. It wakes on `NOTIFY` and
//! polls as a fallback.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventLog, EventLogError};
use crate::store::{AnyConnection, Store, StoreError};

pub const NOTIFY_CHANNEL: &str = "pdp_outbox";

diesel::table! {
    pdp_outbox (id) {
        id -> BigInt,
        event_id -> Text,
        topic -> Text,
        event_key -> Text,
        envelope -> Text,
        created_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
    }
}

/// A producer span (OpenTelemetry messaging conventions) for one batch sent to `topic`, linked
/// to the changes that wrote its events: a batch has many parents, so none is its parent. The
/// records themselves carry each change's context, and their consumers continue it.
fn publish_span(topic: &str, events: &[Event]) -> tracing::Span {
    if !crate::telemetry::exporting() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "publish",
        otel.name = %format_args!("send {topic}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = %topic,
        messaging.batch.message_count = events.len(),
    );
    crate::telemetry::link_origins(&span, events.iter().map(|e| &e.trace));
    span
}

/// Records `event` for `topic` in the caller's transaction.
pub fn enqueue(conn: &mut AnyConnection, topic: &str, event: &Event) -> QueryResult<()> {
    enqueue_all(conn, topic, std::slice::from_ref(event))
}

/// Records many events for `topic` in the caller's transaction, with one statement per few
/// hundred rows (what a high-volume writer such as the gateway's audit trail needs).
pub fn enqueue_all(conn: &mut AnyConnection, topic: &str, events: &[Event]) -> QueryResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let now = Utc::now().naive_utc();
    for chunk in events.chunks(500) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|event| {
                (
                    pdp_outbox::event_id.eq(&event.id),
                    pdp_outbox::topic.eq(topic),
                    pdp_outbox::event_key.eq(event.key()),
                    pdp_outbox::envelope
                        .eq(serde_json::to_string(event).expect("events serialize")),
                    pdp_outbox::created_at.eq(now),
                )
            })
            .collect();
        match conn {
            AnyConnection::Postgresql(pg) => {
                diesel::insert_into(pdp_outbox::table)
                    .values(&rows)
                    .execute(pg)?;
            }
            AnyConnection::Sqlite(lite) => {
                diesel::insert_into(pdp_outbox::table)
                    .values(&rows)
                    .execute(lite)?;
            }
        }
    }
    if let AnyConnection::Postgresql(pg) = conn {
        // Delivered at commit, and only if the transaction commits.
        pg.batch_execute(&format!(
            "SELECT pg_notify('{NOTIFY_CHANNEL}', current_schema())"
        ))?;
    }
    Ok(())
}

/// How many rows are waiting.
/// Deletes up to `batch` rows sent before `before`, oldest first; how many it deleted. Rows not
/// yet sent are never touched.
pub fn purge_sent(
    conn: &mut AnyConnection,
    before: chrono::NaiveDateTime,
    batch: i64,
) -> QueryResult<usize> {
    let ids: Vec<i64> = pdp_outbox::table
        .filter(pdp_outbox::sent_at.lt(before))
        .order(pdp_outbox::id)
        .limit(batch)
        .select(pdp_outbox::id)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(pdp_outbox::table.filter(pdp_outbox::id.eq_any(&ids))).execute(conn)
}

/// The oldest `batch` unpublished rows (id, topic, envelope), in id order, locked for the caller's
/// transaction on PostgreSQL (rows another replica holds are skipped). Its cost must not grow with
/// the sent rows behind it: it reads the partial index of pending rows (`make bench` measures it
/// with ten million sent rows in the table).
pub fn claim(conn: &mut AnyConnection, batch: i64) -> QueryResult<Vec<(i64, String, String)>> {
    let pending = pdp_outbox::table
        .filter(pdp_outbox::sent_at.is_null())
        .order(pdp_outbox::id)
        .limit(batch)
        .select((pdp_outbox::id, pdp_outbox::topic, pdp_outbox::envelope));
    match conn {
        AnyConnection::Postgresql(pg) => pending.for_update().skip_locked().load(pg),
        AnyConnection::Sqlite(lite) => pending.load(lite),
    }
}

/// When the oldest unpublished row was written (the relay publishes in id order).
pub fn oldest_pending(conn: &mut AnyConnection) -> QueryResult<Option<chrono::NaiveDateTime>> {
    pdp_outbox::table
        .filter(pdp_outbox::sent_at.is_null())
        .order(pdp_outbox::id)
        .select(pdp_outbox::created_at)
        .first(conn)
        .optional()
}

pub fn pending(conn: &mut AnyConnection) -> QueryResult<i64> {
    pdp_outbox::table
        .filter(pdp_outbox::sent_at.is_null())
        .count()
        .get_result(conn)
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error("outbox row {id} is unreadable: {reason}")]
    Corrupt { id: i64, reason: String },
}

impl From<diesel::result::Error> for RelayError {
    fn from(value: diesel::result::Error) -> Self {
        Self::Store(value.into())
    }
}

/// Publishes a store's outbox to the event log.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    store: Store,
    log: Arc<dyn EventLog>,
    batch_size: usize,
    poll_interval: Duration,
    wake: Arc<Notify>,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

impl OutboxRelay {
    pub fn new(store: Store, log: Arc<dyn EventLog>) -> Self {
        Self {
            store,
            log,
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Wakes the relay now (for writers in the same process).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes one batch of pending rows; returns how many were published. The rows stay
    /// pending unless the log acknowledged every one of them.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let log = self.log.clone();
        let batch_size = self.batch_size as i64;
        let runtime = tokio::runtime::Handle::current();
        let label = self.store.schema().unwrap_or("sqlite").to_string();
        let published = self
            .store
            .run(move |conn| {
                conn.transaction(|conn| {
                    let rows: Vec<(i64, String, String)> = match conn {
                        AnyConnection::Postgresql(pg) => {
                            let lock = diesel::sql_query(
                                "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.pdp_outbox')) AS locked",
                            )
                            .get_result::<Locked>(pg)?;
                            if !lock.locked {
                                return Ok(0);
                            }
                            claim(conn, batch_size)?
                        }
                        AnyConnection::Sqlite(_) => claim(conn, batch_size)?,
                    };
                    if rows.is_empty() {
                        return Ok(0);
                    }
                    let ids: Vec<i64> = rows.iter().map(|(id, _, _)| *id).collect();
                    // Consecutive rows of one topic go out as one batch, in id order.
                    let mut runs: Vec<(String, Vec<Event>)> = Vec::new();
                    for (id, topic, envelope) in rows {
                        let event: Event = serde_json::from_str(&envelope).map_err(|e| {
                            RelayError::Corrupt {
                                id,
                                reason: e.to_string(),
                            }
                        })?;
                        match runs.last_mut() {
                            Some((t, events)) if *t == topic => events.push(event),
                            _ => runs.push((topic, vec![event])),
                        }
                    }
                    for (topic, events) in &runs {
                        let span = publish_span(topic, events);
                        let _entered = span.enter();
                        runtime.block_on(log.publish(topic, events))?;
                    }
                    let now = Utc::now().naive_utc();
                    diesel::update(pdp_outbox::table.filter(pdp_outbox::id.eq_any(&ids)))
                        .set(pdp_outbox::sent_at.eq(now))
                        .execute(conn)?;
                    Ok::<_, RelayError>(ids.len())
                })
            })
            .await?;
        crate::telemetry::metrics::OUTBOX_RELAYED
            .with_label_values(&[label.as_str()])
            .inc_by(published as u64);
        Ok(published)
    }

    /// Relays until `shutdown` is cancelled. A batch in flight finishes first, so a stop never
    /// leaves a published row unmarked unless the process is killed.
    pub async fn run(self, shutdown: CancellationToken) {
        let listener = self.spawn_listener(shutdown.clone());
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.relay_once().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => {
                    self.record_pending().await;
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
                Err(err) => {
                    let label = self.store.schema().unwrap_or("sqlite").to_string();
                    crate::telemetry::metrics::OUTBOX_RELAY_FAILURES
                        .with_label_values(&[label.as_str()])
                        .inc();
                    // What waits grows while the relay fails: the backlog is what alerts read.
                    self.record_pending().await;
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "outbox relay failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        if let Some(listener) = listener {
            let _ = listener.await;
        }
        tracing::info!(store = ?self.store.schema(), "outbox relay stopped");
    }

    async fn record_pending(&self) {
        let label = self.store.schema().unwrap_or("sqlite").to_string();
        let seen = self
            .store
            .run(|conn| {
                let n = pending(conn)?;
                let oldest = oldest_pending(conn)?;
                Ok::<_, StoreError>((n, oldest))
            })
            .await;
        if let Ok((n, oldest)) = seen {
            crate::telemetry::metrics::OUTBOX_PENDING
                .with_label_values(&[label.as_str()])
                .set(n);
            let age = oldest.map_or(0.0, |at| {
                (Utc::now().naive_utc() - at).num_milliseconds().max(0) as f64 / 1000.0
            });
            crate::telemetry::metrics::OUTBOX_OLDEST_AGE
                .with_label_values(&[label.as_str()])
                .set(age);
        }
    }

    /// In PostgreSQL, a dedicated connection listens for commits of outbox rows in this store's
    /// schema and wakes the relay.
    fn spawn_listener(&self, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        let schema = self.store.schema()?.to_string();
        let mut conn = self.store.connection().ok()?;
        let wake = self.wake.clone();
        Some(tokio::task::spawn_blocking(move || {
            let AnyConnection::Postgresql(pg) = &mut *conn else {
                return;
            };
            if let Err(err) = pg.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")) {
                tracing::warn!(error = %err, "outbox relay cannot LISTEN; polling only");
                return;
            }
            while !shutdown.is_cancelled() {
                let mut woke = false;
                for note in pg.notifications_iter() {
                    match note {
                        Ok(n) if n.payload == schema => woke = true,
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(error = %err, "outbox listener lost its connection; polling only");
                            return;
                        }
                    }
                }
                if woke {
                    wake.notify_one();
                }
                // notifications_iter only reads what the socket already has: a short nap keeps
                // this thread cheap and the wake-up within a few milliseconds.
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = pg.batch_execute(&format!("UNLISTEN {NOTIFY_CHANNEL}"));
        }))
    }
}
