//! Dead letters: events a consumer could not apply after bounded retries, or records that were no
//! event at all, parked with the error and the attempts instead of being applied as a guess or
//! blocking every event behind them. `pdp events dead-letters` lists them; `pdp events replay ID`
//! asks the consumer (which holds the code that applies them) to try again.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use uuid::Uuid;

use crate::events::{Delivery, Event};
use crate::store::AnyConnection;

diesel::table! {
    pdp_dead_letters (id) {
        id -> Text,
        consumer -> Text,
        event_id -> Text,
        topic -> Text,
        part -> Integer,
        event_offset -> BigInt,
        event_type -> Text,
        tenant -> Text,
        event -> Text,
        error -> Text,
        attempts -> Integer,
        parked_at -> Timestamp,
        replay_requested -> Bool,
    }
}

/// One parked event.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: String,
    pub consumer: String,
    pub delivery: Delivery,
    pub error: String,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
    pub replay_requested: bool,
}

type Row = (
    String,
    String,
    String,
    i32,
    i64,
    String,
    String,
    i32,
    chrono::NaiveDateTime,
    bool,
);

fn columns() -> (
    pdp_dead_letters::id,
    pdp_dead_letters::consumer,
    pdp_dead_letters::topic,
    pdp_dead_letters::part,
    pdp_dead_letters::event_offset,
    pdp_dead_letters::event,
    pdp_dead_letters::error,
    pdp_dead_letters::attempts,
    pdp_dead_letters::parked_at,
    pdp_dead_letters::replay_requested,
) {
    use pdp_dead_letters::*;
    (
        id,
        consumer,
        topic,
        part,
        event_offset,
        event,
        error,
        attempts,
        parked_at,
        replay_requested,
    )
}

fn from_row(row: Row) -> QueryResult<DeadLetter> {
    let (id, consumer, topic, partition, offset, event, error, attempts, parked_at, replay) = row;
    let event: Event =
        serde_json::from_str(&event).map_err(|e| DieselError::DeserializationError(Box::new(e)))?;
    Ok(DeadLetter {
        id,
        consumer,
        delivery: Delivery {
            topic,
            partition,
            offset,
            event,
        },
        error,
        attempts,
        parked_at: parked_at.and_utc(),
        replay_requested: replay,
    })
}

/// Parks `delivery` for `consumer` with the last `error` after `attempts`. Parking the same event
/// again (a redelivery, another replica) updates the error and the attempts.
pub fn park(
    conn: &mut AnyConnection,
    consumer: &str,
    delivery: &Delivery,
    error: &str,
    attempts: i32,
) -> QueryResult<()> {
    let event = &delivery.event;
    let existing = pdp_dead_letters::table
        .filter(pdp_dead_letters::consumer.eq(consumer))
        .filter(pdp_dead_letters::event_id.eq(&event.id))
        .select(pdp_dead_letters::id)
        .first::<String>(conn)
        .optional()?;
    if let Some(id) = existing {
        diesel::update(pdp_dead_letters::table.find(id))
            .set((
                pdp_dead_letters::error.eq(error),
                pdp_dead_letters::attempts.eq(attempts),
                pdp_dead_letters::replay_requested.eq(false),
            ))
            .execute(conn)?;
        return Ok(());
    }
    let stored = serde_json::to_string(event).expect("events serialize");
    let inserted = diesel::insert_into(pdp_dead_letters::table)
        .values((
            pdp_dead_letters::id.eq(Uuid::now_v7().to_string()),
            pdp_dead_letters::consumer.eq(consumer),
            pdp_dead_letters::event_id.eq(&event.id),
            pdp_dead_letters::topic.eq(&delivery.topic),
            pdp_dead_letters::part.eq(delivery.partition),
            pdp_dead_letters::event_offset.eq(delivery.offset),
            pdp_dead_letters::event_type.eq(&event.event_type),
            pdp_dead_letters::tenant.eq(event.tenant.as_str()),
            pdp_dead_letters::event.eq(stored),
            pdp_dead_letters::error.eq(error),
            pdp_dead_letters::attempts.eq(attempts),
            pdp_dead_letters::parked_at.eq(Utc::now().naive_utc()),
            pdp_dead_letters::replay_requested.eq(false),
        ))
        .execute(conn);
    match inserted {
        // Another replica parked it between our look and our insert.
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) | Ok(_) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Every parked event (of `consumer`, when given), oldest first.
pub fn list(conn: &mut AnyConnection, consumer: Option<&str>) -> QueryResult<Vec<DeadLetter>> {
    let mut query = pdp_dead_letters::table
        .order(pdp_dead_letters::id)
        .select(columns())
        .into_boxed();
    if let Some(consumer) = consumer {
        query = query.filter(pdp_dead_letters::consumer.eq(consumer.to_string()));
    }
    query.load::<Row>(conn)?.into_iter().map(from_row).collect()
}

/// How many events `consumer` has parked.
pub fn count(conn: &mut AnyConnection, consumer: &str) -> QueryResult<i64> {
    pdp_dead_letters::table
        .filter(pdp_dead_letters::consumer.eq(consumer))
        .count()
        .get_result(conn)
}

/// Asks the consumer to apply dead letter `id` again; `false` when there is no such letter here.
pub fn request_replay(conn: &mut AnyConnection, id: &str) -> QueryResult<bool> {
    let updated = diesel::update(pdp_dead_letters::table.find(id))
        .set(pdp_dead_letters::replay_requested.eq(true))
        .execute(conn)?;
    Ok(updated > 0)
}

/// The letters of `consumer` whose replay was asked for.
pub fn to_replay(conn: &mut AnyConnection, consumer: &str) -> QueryResult<Vec<DeadLetter>> {
    pdp_dead_letters::table
        .filter(pdp_dead_letters::consumer.eq(consumer))
        // The bare column, not `= true`: its SQL is the partial index's own condition, so the
        // index serves it (a bound `= ?` would need its value at planning, which SQLite is built
        // not to look at: `.cargo/config.toml`).
        .filter(pdp_dead_letters::replay_requested)
        .order(pdp_dead_letters::id)
        .select(columns())
        .load::<Row>(conn)?
        .into_iter()
        .map(from_row)
        .collect()
}

/// Removes a letter once its event is applied.
pub fn remove(conn: &mut AnyConnection, id: &str) -> QueryResult<()> {
    diesel::delete(pdp_dead_letters::table.find(id)).execute(conn)?;
    Ok(())
}
