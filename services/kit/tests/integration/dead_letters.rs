//! A consumer that receives an event it cannot apply parks it after its retries, goes on with the
//! events behind it, and applies it when a person asks for a replay; a record that is no event at
//! all is parked too. On SQLite with the embedded log and on PostgreSQL with Kafka.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use pdp_kit::dead_letter;
use pdp_kit::events::Event;
use pdp_kit::inbox::{ATTEMPTS, EventHandler, InboxConsumer};
use pdp_kit::store::{AnyConnection, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::support::{LogBackend, StoreBackend, event, unique};

diesel::table! {
    seqs (event_id) {
        event_id -> Text,
        seq -> BigInt,
    }
}

/// Stores each event's `seq`; an event without one is malformed and fails, until `lenient` says
/// to take it as 0 (a release that understands it).
#[derive(Debug, Default)]
struct Strict {
    lenient: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
enum StrictError {
    #[error("data.seq: missing or not a number")]
    Malformed,
    #[error(transparent)]
    Store(#[from] diesel::result::Error),
}

impl EventHandler for Strict {
    type Error = StrictError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), StrictError> {
        let seq = match event.data["seq"].as_i64() {
            Some(seq) => seq,
            None if self.lenient.load(Ordering::SeqCst) => 0,
            None => return Err(StrictError::Malformed),
        };
        diesel::insert_into(seqs::table)
            .values((seqs::event_id.eq(&event.id), seqs::seq.eq(seq)))
            .execute(conn)?;
        Ok(())
    }
}

async fn stored(store: &Store) -> Vec<i64> {
    store
        .run(|conn| Ok::<_, StoreError>(seqs::table.order(seqs::seq).select(seqs::seq).load(conn)?))
        .await
        .unwrap()
}

async fn letters(store: &Store) -> Vec<dead_letter::DeadLetter> {
    store
        .run(|conn| Ok::<_, StoreError>(dead_letter::list(conn, Some("strict"))?))
        .await
        .unwrap()
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With `one_transaction`, the consumer applies each batch in one transaction: the malformed
/// event's savepoint is rolled back alone, and the events around it still commit.
pub async fn a_malformed_event_is_parked_and_replayed_not_stored(
    stores: StoreBackend,
    logs: LogBackend,
    one_transaction: bool,
) {
    let store = stores.open("consumer");
    store
        .run(|conn| {
            conn.batch_execute(
                "CREATE TABLE seqs (event_id TEXT PRIMARY KEY, seq BIGINT NOT NULL)",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let log = logs.open();
    let topic = unique("letters");
    log.create_topic(&topic).await.unwrap();
    let mut malformed = event("agg-1", 0);
    malformed.data = serde_json::json!({"sequence": "two"});
    // A well-formed event of a tenant that is neither the province nor one of its cities.
    let mut stranger = event("agg-2", 9);
    stranger.tenant = "239999".parse().unwrap();
    log.publish(
        &topic,
        &[
            event("agg-1", 1),
            malformed.clone(),
            event("agg-1", 3),
            stranger.clone(),
        ],
    )
    .await
    .unwrap();

    let handler = Arc::new(Strict::default());
    let shutdown = CancellationToken::new();
    let consumer = InboxConsumer {
        store: store.clone(),
        log: log.clone(),
        consumer: "strict".into(),
        group: unique("strict"),
        topics: vec![topic.clone()],
        tenants: Vec::new(),
        batch_size: 10,
        one_transaction,
    };
    let task = tokio::spawn(consumer.run(handler.clone(), shutdown.clone()));

    until("the events around it are applied", || async {
        stored(&store).await == [1, 3]
    })
    .await;
    until("both are parked", || async {
        letters(&store).await.len() == 2
    })
    .await;
    let mut parked = letters(&store).await;
    let unknown = parked
        .iter()
        .position(|l| l.delivery.event.id == stranger.id)
        .expect("the unknown tenant's event is parked");
    let unknown = parked.remove(unknown);
    assert!(unknown.error.contains("239999"), "{}", unknown.error);
    assert_eq!(parked[0].delivery.event.id, malformed.id);
    assert_eq!(
        parked[0].delivery.event.data, malformed.data,
        "kept as it came"
    );
    assert_eq!(parked[0].attempts, ATTEMPTS);
    // Its attempts before the last were retries, and counted (other runs of this contract may
    // add theirs: the counter is the process's).
    let retried = pdp_kit::telemetry::metrics::EVENTS_RETRIED
        .with_label_values(&["strict"])
        .get();
    assert!(
        retried >= (ATTEMPTS - 1) as u64,
        "{retried} retries counted"
    );
    assert!(parked[0].error.contains("data.seq"), "{}", parked[0].error);

    // A release that understands it: a replay applies it and the letter goes.
    handler.lenient.store(true, Ordering::SeqCst);
    let id = parked[0].id.clone();
    store
        .run(move |conn| Ok::<_, StoreError>(dead_letter::request_replay(conn, &id)?))
        .await
        .unwrap();
    until("the replayed event is applied", || async {
        stored(&store).await == [0, 1, 3]
    })
    .await;
    until("its letter is gone", || async {
        letters(&store).await.len() == 1
    })
    .await;
    assert_eq!(
        stored(&store).await,
        [0, 1, 3],
        "the unknown tenant's event is never applied"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

macro_rules! dead_letter_contract {
    ($name:ident, $stores:expr, $logs:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_malformed_event_is_parked_and_replayed_not_stored() {
                super::a_malformed_event_is_parked_and_replayed_not_stored($stores, $logs, false)
                    .await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_same_with_each_batch_in_one_transaction() {
                super::a_malformed_event_is_parked_and_replayed_not_stored($stores, $logs, true)
                    .await
            }
        }
    };
}

dead_letter_contract!(
    sqlite_embedded,
    StoreBackend::sqlite(),
    LogBackend::embedded()
);
dead_letter_contract!(
    postgres_kafka,
    StoreBackend::postgres(),
    LogBackend::kafka()
);
