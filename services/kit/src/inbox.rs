//! The inbox: a consumer applies an event and records its id (with its partition and offset) in
//! the same transaction, so that an event delivered again changes nothing. Offsets are committed
//! to the log only after the effects are durable: a crash anywhere in between redelivers, and the
//! inbox drops the repeat.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tokio_util::sync::CancellationToken;

use crate::dead_letter;
use crate::events::{Delivery, Event, EventLog, EventLogError};
use crate::identity::TenantCode;
use crate::store::{AnyConnection, Store, StoreError};
use crate::telemetry::metrics;
use crate::tenants;

diesel::table! {
    pdp_inbox (consumer, event_id) {
        consumer -> Text,
        event_id -> Text,
        topic -> Text,
        part -> Integer,
        event_offset -> BigInt,
        applied_at -> Timestamp,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before: nothing was changed.
    Duplicate,
}

/// What an event does to a consumer's data, inside the inbox transaction.
pub trait EventHandler: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), Self::Error>;

    /// Applies `events` in order, all or nothing: what a consumer that applies each batch in
    /// one transaction (`InboxConsumer::one_transaction`) calls first; when it fails, the
    /// consumer applies them one by one, parking the one that fails. By default, one by one.
    fn handle_all(&self, conn: &mut AnyConnection, events: &[&Event]) -> Result<(), Self::Error> {
        for event in events {
            self.handle(conn, event)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("handler failed: {0}")]
    Handler(#[source] E),
    #[error(transparent)]
    Log(#[from] EventLogError),
}

impl<E: std::error::Error + 'static> From<DieselError> for InboxError<E> {
    fn from(value: DieselError) -> Self {
        Self::Store(value.into())
    }
}

/// Forgets up to `batch` event ids applied before `before`; how many it forgot.
pub fn purge_applied(
    conn: &mut AnyConnection,
    before: chrono::NaiveDateTime,
    batch: i64,
) -> QueryResult<usize> {
    let keys: Vec<(String, String)> = pdp_inbox::table
        .filter(pdp_inbox::applied_at.lt(before))
        .order(pdp_inbox::applied_at)
        .limit(batch)
        .select((pdp_inbox::consumer, pdp_inbox::event_id))
        .load(conn)?;
    let mut by_consumer: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (consumer, event_id) in keys {
        by_consumer.entry(consumer).or_default().push(event_id);
    }
    let mut forgotten = 0;
    for (consumer, ids) in by_consumer {
        forgotten += diesel::delete(
            pdp_inbox::table
                .filter(pdp_inbox::consumer.eq(consumer))
                .filter(pdp_inbox::event_id.eq_any(ids)),
        )
        .execute(conn)?;
    }
    Ok(forgotten)
}

/// Which of `event_ids` `consumer` has applied: the duplicate check of every delivery, by the
/// inbox's key, so that its cost does not grow with the ids kept (`make bench` measures it with
/// ten million behind it).
pub fn applied(
    conn: &mut AnyConnection,
    consumer: &str,
    event_ids: &[&str],
) -> QueryResult<std::collections::HashSet<String>> {
    Ok(pdp_inbox::table
        .filter(pdp_inbox::consumer.eq(consumer))
        .filter(pdp_inbox::event_id.eq_any(event_ids))
        .select(pdp_inbox::event_id)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Applies `delivery` once for `consumer`: records it and runs `apply` in one transaction, or does
/// nothing if the consumer already applied that event.
pub fn apply_once<E, F>(
    conn: &mut AnyConnection,
    consumer: &str,
    delivery: &Delivery,
    apply: F,
) -> Result<Outcome, InboxError<E>>
where
    E: std::error::Error + 'static,
    F: FnOnce(&mut AnyConnection, &Event) -> Result<(), E>,
{
    let result = conn.transaction(|conn| {
        if !applied(conn, consumer, &[delivery.event.id.as_str()])?.is_empty() {
            return Ok(Outcome::Duplicate);
        }
        diesel::insert_into(pdp_inbox::table)
            .values((
                pdp_inbox::consumer.eq(consumer),
                pdp_inbox::event_id.eq(&delivery.event.id),
                pdp_inbox::topic.eq(&delivery.topic),
                pdp_inbox::part.eq(delivery.partition),
                pdp_inbox::event_offset.eq(delivery.offset),
                pdp_inbox::applied_at.eq(Utc::now().naive_utc()),
            ))
            .execute(conn)?;
        apply(conn, &delivery.event).map_err(InboxError::Handler)?;
        Ok(Outcome::Applied)
    });
    match result {
        // Another replica applied the same event between our look and our insert.
        Err(InboxError::Store(StoreError::Query(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _,
        )))) => Ok(Outcome::Duplicate),
        other => other,
    }
}

/// A consumer group member that applies each event through the inbox and commits offsets after.
#[derive(Debug, Clone)]
pub struct InboxConsumer {
    pub store: Store,
    pub log: Arc<dyn EventLog>,
    /// The consumer's name: its key in the inbox and its metric label.
    pub consumer: String,
    /// The consumer group it joins on the log: one per instance (`InstanceConfig::group`), so
    /// that every instance receives every event.
    pub group: String,
    pub topics: Vec<String>,
    /// The tenants whose events it applies; the others are acknowledged without effect (another
    /// instance serves them). Empty: every tenant.
    pub tenants: Vec<TenantCode>,
    pub batch_size: usize,
    /// Applies each batch in one transaction (each event in a savepoint of it, parked alone if
    /// its handler fails): one commit per batch instead of one per event, for a consumer whose
    /// events are many and small (the audit archive). A store failure redelivers the batch.
    pub one_transaction: bool,
}

impl InboxConsumer {
    /// Consumes until `shutdown`; the batch in hand is applied and committed before it returns.
    pub async fn run<H: EventHandler>(
        self,
        handler: Arc<H>,
        shutdown: CancellationToken,
    ) -> Result<(), InboxError<H::Error>> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let mut subscription = self.log.subscribe(&self.group, &topics).await?;
        let wait = Duration::from_millis(500);
        // Replays are a person's request: looked for once a second, not on every batch.
        let mut replays_due = std::time::Instant::now();
        while !shutdown.is_cancelled() {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = subscription.next_batch(self.batch_size, wait) => batch?,
            };
            if std::time::Instant::now() >= replays_due {
                self.replay_requested(&handler).await?;
                replays_due = std::time::Instant::now() + REPLAY_EVERY;
                // A lag that only grows is a consumer that cannot keep up: measured as often.
                if let Ok(lags) = subscription.lag().await {
                    for (topic, lag) in lags {
                        metrics::CONSUMER_LAG
                            .with_label_values(&[self.consumer.as_str(), topic.as_str()])
                            .set(lag);
                    }
                }
            }
            if batch.is_empty() {
                continue;
            }
            self.apply_batch(&handler, &batch).await?;
            subscription.commit(&batch).await?;
        }
        Ok(())
    }

    /// Runs on its own task until `shutdown`, joining again after a failure: a failed batch was
    /// not committed, so it is delivered again.
    pub fn spawn<H: EventHandler>(
        self,
        handler: H,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            while let Err(err) = self.clone().run(handler.clone(), shutdown.clone()).await {
                let consumer = &self.consumer;
                tracing::warn!(%consumer, error = %err, "consumer failed; restarting");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    }

    async fn apply_batch<H: EventHandler>(
        &self,
        handler: &Arc<H>,
        batch: &[Delivery],
    ) -> Result<(), InboxError<H::Error>> {
        let handler = handler.clone();
        let consumer = self.consumer.clone();
        let tenants = self.tenants.clone();
        let batch = batch.to_vec();
        let one_transaction = self.one_transaction;
        self.store
            .run(move |conn| {
                if one_transaction {
                    conn.transaction(|conn| {
                        Self::apply_all(conn, &consumer, &tenants, &batch, &*handler)
                    })
                } else {
                    Self::apply_each(conn, &consumer, &tenants, &batch, &*handler)
                }
            })
            .await
    }

    /// Applies `batch` in the caller's transaction: the events to apply (readable, of a tenant
    /// served, not applied before) recorded in the inbox and handed to the handler at once, in a
    /// savepoint; should that fail, one by one as [`Self::apply_each`] does.
    fn apply_all<H: EventHandler>(
        conn: &mut AnyConnection,
        consumer: &str,
        tenants: &[TenantCode],
        batch: &[Delivery],
        handler: &H,
    ) -> Result<(), InboxError<H::Error>> {
        let applicable = |d: &&Delivery| {
            let e = &d.event;
            e.unreadable_reason().is_none()
                && tenants::is_known(&e.tenant)
                && (tenants.is_empty() || tenants.contains(&e.tenant))
        };
        let ids: Vec<&str> = batch
            .iter()
            .filter(applicable)
            .map(|d| d.event.id.as_str())
            .collect();
        let seen = applied(conn, consumer, &ids)?;
        let mut taken = std::collections::HashSet::new();
        let fresh: Vec<&Delivery> = batch
            .iter()
            .filter(applicable)
            .filter(|d| !seen.contains(&d.event.id) && taken.insert(d.event.id.as_str()))
            .collect();
        let events: Vec<&Event> = fresh.iter().map(|d| &d.event).collect();
        let span = batch_span(consumer, &fresh);
        let _entered = span.enter();
        let at_once = conn.transaction(|conn| {
            record_applied(conn, consumer, &fresh)?;
            handler
                .handle_all(conn, &events)
                .map_err(InboxError::Handler)
        });
        match at_once {
            Ok(()) => {
                let fresh: std::collections::HashSet<&str> =
                    fresh.iter().map(|d| d.event.id.as_str()).collect();
                let mut counted = std::collections::HashSet::new();
                for d in batch {
                    let id = d.event.id.as_str();
                    if fresh.contains(id) && counted.insert(id) {
                        count(conn, consumer, Received::Applied)?;
                    } else if !applicable(&d) {
                        // Parked or skipped exactly as one by one would.
                        Self::apply_each(
                            conn,
                            consumer,
                            tenants,
                            std::slice::from_ref(d),
                            handler,
                        )?;
                    } else {
                        count(conn, consumer, Received::Duplicate)?;
                    }
                }
                Ok(())
            }
            Err(InboxError::Handler(err)) => {
                tracing::debug!(consumer, error = %err, "a batch failed at once; one by one");
                Self::apply_each(conn, consumer, tenants, batch, handler)
            }
            Err(other) => Err(other),
        }
    }

    /// Applies each event of `batch` through the inbox, parking what cannot be applied.
    fn apply_each<H: EventHandler>(
        conn: &mut AnyConnection,
        consumer: &str,
        tenants: &[TenantCode],
        batch: &[Delivery],
        handler: &H,
    ) -> Result<(), InboxError<H::Error>> {
        for delivery in batch {
            let event = &delivery.event;
            let outcome = if let Some(reason) = event.unreadable_reason() {
                dead_letter::park(conn, consumer, delivery, reason, 1)?;
                Received::Parked
            } else if !tenants::is_known(&event.tenant) {
                let reason = format!(
                    "tenant {} is neither the province nor one of its cities",
                    event.tenant
                );
                dead_letter::park(conn, consumer, delivery, &reason, 1)?;
                Received::Parked
            } else if !tenants.is_empty() && !tenants.contains(&event.tenant) {
                Received::Skipped
            } else {
                let (id, kind) = (&event.id, &event.event_type);
                // A consumer span (OpenTelemetry messaging conventions), child of the change
                // that wrote the event: the trace goes on from the request that caused it.
                let span = tracing::info_span!(
                    "apply",
                    %consumer,
                    event = %id,
                    r#type = %kind,
                    otel.name = %format_args!("process {}", delivery.topic),
                    otel.kind = "consumer",
                    messaging.system = "kafka",
                    messaging.operation.type = "process",
                    messaging.destination.name = %delivery.topic,
                    messaging.destination.partition.id = delivery.partition,
                    messaging.consumer.group.name = %consumer,
                    messaging.message.id = %id,
                    pdp.tenant = %event.tenant,
                    pdp.outcome = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                );
                crate::telemetry::adopt_parent(
                    &span,
                    &crate::telemetry::RecordHeaders(&event.trace),
                );
                let _entered = span.enter();
                let outcome = apply_or_park(conn, consumer, delivery, handler)?;
                span.record("pdp.outcome", outcome.label());
                if outcome == Received::Parked {
                    span.record("otel.status_code", "error");
                }
                outcome
            };
            count(conn, consumer, outcome)?;
        }
        Ok(())
    }

    /// Applies the dead letters whose replay was asked for: a letter whose event now applies is
    /// removed; one that fails again stays parked with the new error.
    async fn replay_requested<H: EventHandler>(
        &self,
        handler: &Arc<H>,
    ) -> Result<(), InboxError<H::Error>> {
        let handler = handler.clone();
        let consumer = self.consumer.clone();
        self.store
            .run(move |conn| {
                for letter in dead_letter::to_replay(conn, &consumer)? {
                    let outcome = match apply_once(conn, &consumer, &letter.delivery, |c, e| {
                        handler.handle(c, e)
                    }) {
                        Ok(outcome) => {
                            dead_letter::remove(conn, &letter.id)?;
                            dead_letters_held(conn, &consumer)?;
                            let letter = &letter.id;
                            tracing::info!(%consumer, %letter, "dead letter replayed");
                            Received::from(outcome)
                        }
                        Err(InboxError::Handler(err)) => {
                            let error = err.to_string();
                            let id = &letter.id;
                            let failed = "dead letter failed again";
                            tracing::warn!(%consumer, letter = %id, %error, "{failed}");
                            dead_letter::park(
                                conn,
                                &consumer,
                                &letter.delivery,
                                &error,
                                letter.attempts + 1,
                            )?;
                            Received::Parked
                        }
                        Err(other) => return Err(other),
                    };
                    count(conn, &consumer, outcome)?;
                }
                Ok(())
            })
            .await
    }
}

/// Records `deliveries` as applied by `consumer` (one multi-row insert on PostgreSQL).
fn record_applied(
    conn: &mut AnyConnection,
    consumer: &str,
    deliveries: &[&Delivery],
) -> Result<(), DieselError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let now = Utc::now().naive_utc();
    let row = |d: &&Delivery| {
        (
            pdp_inbox::consumer.eq(consumer.to_string()),
            pdp_inbox::event_id.eq(d.event.id.clone()),
            pdp_inbox::topic.eq(d.topic.clone()),
            pdp_inbox::part.eq(d.partition),
            pdp_inbox::event_offset.eq(d.offset),
            pdp_inbox::applied_at.eq(now),
        )
    };
    match conn {
        AnyConnection::Postgresql(pg) => {
            for chunk in deliveries.chunks(1000) {
                let rows: Vec<_> = chunk.iter().map(row).collect();
                diesel::insert_into(pdp_inbox::table)
                    .values(rows)
                    .execute(pg)?;
            }
        }
        AnyConnection::Sqlite(sqlite) => {
            for d in deliveries {
                diesel::insert_into(pdp_inbox::table)
                    .values(row(d))
                    .execute(sqlite)?;
            }
        }
    }
    Ok(())
}

/// What became of an event a consumer received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    Applied,
    Duplicate,
    /// Of a tenant another instance serves: acknowledged without effect.
    Skipped,
    /// Not applied after its attempts, or no event at all: a dead letter.
    Parked,
}

impl From<Outcome> for Received {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Applied => Self::Applied,
            Outcome::Duplicate => Self::Duplicate,
        }
    }
}

/// How often a consumer looks for dead letters whose replay was asked for.
const REPLAY_EVERY: Duration = Duration::from_secs(1);

/// How often a consumer tries an event whose handler fails before it parks it.
pub const ATTEMPTS: i32 = 3;

/// Applies `delivery` through the inbox, trying again (after 50, then 100 ms) when the handler
/// fails, and parks it as a dead letter after [`ATTEMPTS`]. A failing store is not the event's
/// fault: it fails the batch, which is delivered again.
fn apply_or_park<H: EventHandler>(
    conn: &mut AnyConnection,
    consumer: &str,
    delivery: &Delivery,
    handler: &H,
) -> Result<Received, InboxError<H::Error>> {
    let mut attempt = 1;
    loop {
        match apply_once(conn, consumer, delivery, |c, e| handler.handle(c, e)) {
            Ok(outcome) => return Ok(outcome.into()),
            Err(InboxError::Handler(err)) if attempt >= ATTEMPTS => {
                let error = err.to_string();
                let event = &delivery.event.id;
                tracing::warn!(consumer, %event, %error, "event parked as a dead letter");
                dead_letter::park(conn, consumer, delivery, &error, attempt)?;
                return Ok(Received::Parked);
            }
            Err(InboxError::Handler(_)) => {
                metrics::EVENTS_RETRIED.with_label_values(&[consumer]).inc();
                std::thread::sleep(Duration::from_millis(50 * attempt as u64));
                attempt += 1;
            }
            Err(other) => return Err(other),
        }
    }
}

/// The consumer span of a batch applied at once (OpenTelemetry messaging conventions): its
/// events come from many changes, so it links to them rather than having one for a parent.
fn batch_span(consumer: &str, batch: &[&Delivery]) -> tracing::Span {
    if !crate::telemetry::exporting() {
        return tracing::Span::none();
    }
    let topic = match batch.first() {
        Some(first) if batch.iter().all(|d| d.topic == first.topic) => first.topic.as_str(),
        _ => "",
    };
    let name = match topic {
        "" => "process".to_string(),
        topic => format!("process {topic}"),
    };
    let span = tracing::info_span!(
        "apply",
        %consumer,
        otel.name = %name,
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = topic,
        messaging.consumer.group.name = %consumer,
        messaging.batch.message_count = batch.len(),
    );
    crate::telemetry::link_origins(&span, batch.iter().map(|d| &d.event.trace));
    span
}

impl Received {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Skipped => "skipped",
            Self::Parked => "parked",
        }
    }
}

/// Counts what became of an event; after a parking, how many dead letters the consumer holds.
fn count(conn: &mut AnyConnection, consumer: &str, outcome: Received) -> Result<(), StoreError> {
    let label = outcome.label();
    metrics::EVENTS_APPLIED
        .with_label_values(&[consumer, label])
        .inc();
    if outcome == Received::Parked {
        dead_letters_held(conn, consumer)?;
    }
    Ok(())
}

fn dead_letters_held(conn: &mut AnyConnection, consumer: &str) -> Result<(), StoreError> {
    metrics::DEAD_LETTERS
        .with_label_values(&[consumer])
        .set(dead_letter::count(conn, consumer)?);
    Ok(())
}
