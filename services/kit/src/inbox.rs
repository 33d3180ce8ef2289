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

use crate::events::{Delivery, Event, EventLog, EventLogError};
use crate::store::{AnyConnection, Store, StoreError};

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
        let seen = pdp_inbox::table
            .find((consumer, &delivery.event.id))
            .count()
            .get_result::<i64>(conn)?;
        if seen > 0 {
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
    pub consumer: String,
    pub topics: Vec<String>,
    pub batch_size: usize,
}

impl InboxConsumer {
    /// Consumes until `shutdown`; the batch in hand is applied and committed before it returns.
    pub async fn run<H: EventHandler>(
        self,
        handler: Arc<H>,
        shutdown: CancellationToken,
    ) -> Result<(), InboxError<H::Error>> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let mut subscription = self.log.subscribe(&self.consumer, &topics).await?;
        while !shutdown.is_cancelled() {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = subscription.next_batch(self.batch_size, Duration::from_millis(500)) => batch?,
            };
            if batch.is_empty() {
                continue;
            }
            self.apply_batch(&handler, &batch).await?;
            subscription.commit(&batch).await?;
        }
        Ok(())
    }

    async fn apply_batch<H: EventHandler>(
        &self,
        handler: &Arc<H>,
        batch: &[Delivery],
    ) -> Result<(), InboxError<H::Error>> {
        let handler = handler.clone();
        let consumer = self.consumer.clone();
        let batch = batch.to_vec();
        self.store
            .run(move |conn| {
                for delivery in &batch {
                    let span = tracing::info_span!("apply", consumer = %consumer, event = %delivery.event.id, r#type = %delivery.event.event_type);
                    crate::telemetry::adopt_parent(
                        &span,
                        &crate::telemetry::RecordHeaders(&delivery.event.trace),
                    );
                    let _entered = span.enter();
                    let outcome = apply_once(conn, &consumer, delivery, |c, e| handler.handle(c, e))?;
                    let label = match outcome {
                        Outcome::Applied => "applied",
                        Outcome::Duplicate => "duplicate",
                    };
                    crate::telemetry::metrics::EVENTS_APPLIED
                        .with_label_values(&[consumer.as_str(), label])
                        .inc();
                }
                Ok(())
            })
            .await
    }
}
