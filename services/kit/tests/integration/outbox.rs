//! The outbox from a service's transaction to another service's inbox, in both configurations
//! pdp runs in: SQLite with the embedded log, PostgreSQL with Kafka.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use pdp_kit::events::{Event, EventLog, EventLogError, Subscription};
use pdp_kit::inbox::{EventHandler, InboxConsumer};
use pdp_kit::outbox::{self, OutboxRelay};
use pdp_kit::store::{AnyConnection, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::support::{LogBackend, StoreBackend, event, unique};

/// Writes `n` events, `per_tx` to a transaction, as a service would.
async fn write_events(store: &Store, topic: &str, n: u64, per_tx: u64) {
    let mut seq = 0;
    while seq < n {
        let topic = topic.to_string();
        let from = seq;
        let to = (seq + per_tx).min(n);
        store
            .transaction(move |conn| {
                for i in from..to {
                    outbox::enqueue(conn, &topic, &event(&format!("agg-{}", i % 7), i))?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        seq = to;
    }
}

/// The real log, which fails after publishing `allow` events: the relay dies between publishing
/// part of a batch and marking it.
#[derive(Debug)]
struct DiesMidBatch {
    inner: Arc<dyn EventLog>,
    allow: AtomicUsize,
}

#[async_trait]
impl EventLog for DiesMidBatch {
    async fn create_topic(&self, topic: &str) -> Result<(), EventLogError> {
        self.inner.create_topic(topic).await
    }

    async fn publish(&self, topic: &str, events: &[Event]) -> Result<(), EventLogError> {
        let allow = self.allow.swap(0, Ordering::SeqCst).min(events.len());
        self.inner.publish(topic, &events[..allow]).await?;
        if allow < events.len() {
            return Err(EventLogError::Unavailable("killed mid-batch".into()));
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, EventLogError> {
        self.inner.subscribe(group, topics).await
    }

    async fn ping(&self) -> Result<(), EventLogError> {
        self.inner.ping().await
    }
}

diesel::table! {
    applied (event_id) {
        event_id -> Text,
        subject -> Text,
        seq -> BigInt,
        position -> BigInt,
    }
}

/// Records each applied event with its arrival position.
#[derive(Debug, Default)]
struct Recorder {
    position: AtomicUsize,
}

impl EventHandler for Recorder {
    type Error = diesel::result::Error;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), Self::Error> {
        diesel::insert_into(applied::table)
            .values((
                applied::event_id.eq(&event.id),
                applied::subject.eq(&event.subject),
                applied::seq.eq(event.data["seq"].as_i64().unwrap_or(-1)),
                applied::position.eq(self.position.fetch_add(1, Ordering::SeqCst) as i64),
            ))
            .execute(conn)?;
        Ok(())
    }
}

async fn applied_rows(store: &Store) -> Vec<(String, String, i64)> {
    store
        .run(|conn| {
            Ok::<_, StoreError>(
                applied::table
                    .order(applied::position)
                    .select((applied::event_id, applied::subject, applied::seq))
                    .load(conn)?,
            )
        })
        .await
        .unwrap()
}

pub async fn a_relay_killed_mid_batch_loses_and_duplicates_nothing_downstream(
    stores: StoreBackend,
    logs: LogBackend,
) {
    let producer = stores.open("producer");
    let consumer_store = stores.open("consumer");
    consumer_store
        .run(|conn| {
            conn.batch_execute(
                "CREATE TABLE applied (event_id TEXT PRIMARY KEY, subject TEXT NOT NULL, seq BIGINT NOT NULL, position BIGINT NOT NULL)",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let log = logs.open();
    let topic = unique("outbox");
    log.create_topic(&topic).await.unwrap();

    let total = 60;
    write_events(&producer, &topic, total, 4).await;
    // A transaction that fails leaves no event behind.
    let rolled_back: Result<(), StoreError> = {
        let topic = topic.clone();
        producer
            .transaction(move |conn| {
                outbox::enqueue(conn, &topic, &event("ghost", 999))?;
                Err(StoreError::Task("the state change was refused".into()))
            })
            .await
    };
    assert!(rolled_back.is_err());

    let dying = Arc::new(DiesMidBatch {
        inner: log.clone(),
        allow: AtomicUsize::new(15),
    });
    let first = OutboxRelay::new(producer.clone(), dying).with_batch_size(25);
    assert!(
        first.relay_once().await.is_err(),
        "the relay died mid-batch"
    );

    // The restarted relay publishes everything pending, the 15 already sent included.
    let restarted = OutboxRelay::new(producer.clone(), log.clone()).with_batch_size(25);
    let mut relayed = 0;
    while relayed < total as usize {
        let n = restarted.relay_once().await.unwrap();
        assert!(n > 0, "pending rows remain to relay");
        relayed += n;
    }
    let pending = producer
        .run(|conn| Ok::<_, StoreError>(outbox::pending(conn)?))
        .await
        .unwrap();
    assert_eq!(pending, 0);

    let shutdown = CancellationToken::new();
    let consumer = InboxConsumer {
        store: consumer_store.clone(),
        log: log.clone(),
        consumer: "recorder".into(),
        group: unique("recorder"),
        topics: vec![topic.clone()],
        tenants: Vec::new(),
        batch_size: 20,
        one_transaction: false,
    };
    let task = tokio::spawn(consumer.run(Arc::new(Recorder::default()), shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while applied_rows(&consumer_store).await.len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give redelivered duplicates time to arrive, then stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let rows = applied_rows(&consumer_store).await;
    let seqs: HashSet<i64> = rows.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(
        rows.len(),
        total as usize,
        "each event applied exactly once"
    );
    assert_eq!(
        seqs,
        (0..total as i64).collect::<HashSet<_>>(),
        "none lost, no ghost"
    );
    for key in 0..7 {
        let subject = format!("agg-{key}");
        let order: Vec<i64> = rows
            .iter()
            .filter(|(_, s, _)| *s == subject)
            .map(|(_, _, seq)| *seq)
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{subject} in order: {order:?}"
        );
    }
}

pub async fn two_relays_never_publish_a_row_twice(stores: StoreBackend, logs: LogBackend) {
    let producer = stores.open("producer");
    let log = logs.open();
    let topic = unique("outbox");
    log.create_topic(&topic).await.unwrap();
    let total = 200;
    write_events(&producer, &topic, total, 20).await;

    let shutdown = CancellationToken::new();
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let relay = OutboxRelay::new(producer.clone(), log.clone())
                .with_batch_size(10)
                .with_poll_interval(Duration::from_millis(20));
            tokio::spawn(relay.run(shutdown.clone()))
        })
        .collect();

    let mut sub = log
        .subscribe(&unique("g"), &[topic.as_str()])
        .await
        .unwrap();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids.len() < total as usize && Instant::now() < deadline {
        for d in sub
            .next_batch(100, Duration::from_millis(500))
            .await
            .unwrap()
        {
            ids.push(d.event.id);
        }
    }
    // Anything published twice would arrive within this extra wait.
    let extra = sub.next_batch(100, Duration::from_secs(2)).await.unwrap();
    shutdown.cancel();
    for r in relays {
        r.await.unwrap();
    }
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), total as usize, "every row published");
    assert_eq!(ids.len(), total as usize, "no row published twice");
    assert!(extra.is_empty(), "no late duplicate");
}

macro_rules! outbox_contract {
    ($name:ident, $stores:expr, $logs:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_relay_killed_mid_batch_loses_and_duplicates_nothing_downstream() {
                super::a_relay_killed_mid_batch_loses_and_duplicates_nothing_downstream(
                    $stores, $logs,
                )
                .await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_relays_never_publish_a_row_twice() {
                super::two_relays_never_publish_a_row_twice($stores, $logs).await
            }
        }
    };
}

outbox_contract!(
    sqlite_embedded,
    StoreBackend::sqlite(),
    LogBackend::embedded()
);
outbox_contract!(
    postgres_kafka,
    StoreBackend::postgres(),
    LogBackend::kafka()
);

/// In PostgreSQL a commit wakes the relay through NOTIFY: with polling set to a minute, an event
/// still goes out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commit_wakes_the_relay_without_polling() {
    let stores = StoreBackend::postgres();
    let producer = stores.open("producer");
    let log = LogBackend::kafka().open();
    let topic = unique("outbox");
    log.create_topic(&topic).await.unwrap();
    let mut sub = log
        .subscribe(&unique("g"), &[topic.as_str()])
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let relay =
        OutboxRelay::new(producer.clone(), log.clone()).with_poll_interval(Duration::from_secs(60));
    let task = tokio::spawn(relay.run(shutdown.clone()));
    // Let the relay go idle (its first look finds nothing) and its listener LISTEN.
    tokio::time::sleep(Duration::from_secs(1)).await;

    write_events(&producer, &topic, 1, 1).await;
    // Generous: joining a fresh consumer group is what takes time here, not the relay.
    let got = sub.next_batch(1, Duration::from_secs(45)).await.unwrap();
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        got.len(),
        1,
        "the commit woke the relay long before its next poll"
    );
}
