//! `make bench`: event throughput, in one run.
//!
//! 1. raw rdkafka producer to the broker: the ceiling for anything that publishes to Kafka;
//! 2. the outbox relay from PostgreSQL to Kafka (claim, publish, mark sent), batched;
//! 3. the embedded log: publish, then consume and commit.
//!
//! Needs PostgreSQL (`TEST_DATABASE_URL`) and the broker (`TEST_KAFKA_BROKERS`), as the tests do.
//! `BENCH_EVENTS` sets how many events each part moves (default 20000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pdp_kit::events::{EmbeddedLog, Event, EventLog, KafkaLog};
use pdp_kit::outbox::{self, OutboxRelay};
use pdp_kit::store::{KIT_MIGRATIONS, Store, StoreError};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn event(i: u64) -> Event {
    Event::new(
        "bench",
        &"230100".parse().expect("tenant code"),
        "widget",
        "changed",
        format!("agg-{}", i % 64),
        chrono::Utc::now(),
        serde_json::json!({ "seq": i, "note": "a small payload of a typical domain event" }),
    )
}

fn report(name: &str, n: u64, elapsed: Duration) -> f64 {
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<40} {n:>7} events in {:>7.3}s = {rate:>10.0} events/s",
        elapsed.as_secs_f64()
    );
    rate
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

async fn raw_producer(brokers: &str, log: &KafkaLog, n: u64) -> f64 {
    let topic = unique("bench_raw");
    log.create_topic(&topic).await.expect("topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .create()
        .expect("producer");
    // The very records the relay sends (key, CloudEvents headers, JSON data), so that the
    // comparison is like for like.
    let events: Vec<Event> = (0..n).map(event).collect();
    let payloads: Vec<Vec<u8>> = events.iter().map(Event::payload).collect();
    let headers: Vec<OwnedHeaders> = events
        .iter()
        .map(|e| {
            e.headers().iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            })
        })
        .collect();
    let start = Instant::now();
    let mut pending = Vec::with_capacity(n as usize);
    for ((e, p), h) in events.iter().zip(&payloads).zip(headers) {
        let record = FutureRecord::to(&topic).key(e.key()).payload(p).headers(h);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for f in futures::future::join_all(pending).await {
        f.expect("delivered").expect("acknowledged");
    }
    report("raw rdkafka producer -> broker", n, start.elapsed())
}

async fn outbox_relay(database_url: &str, log: Arc<dyn EventLog>, n: u64) -> f64 {
    let store = Store::open(database_url, &unique("bench"), 4).expect("store");
    store.migrate(&[KIT_MIGRATIONS]).expect("migrations");
    let topic = unique("bench_outbox");
    log.create_topic(&topic).await.expect("topic");
    let mut written = 0;
    while written < n {
        let topic = topic.clone();
        let from = written;
        let to = (written + 1000).min(n);
        store
            .transaction(move |conn| {
                for i in from..to {
                    outbox::enqueue(conn, &topic, &event(i))?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .expect("enqueue");
        written = to;
    }
    let relay = OutboxRelay::new(store, log).with_batch_size(2000);
    let start = Instant::now();
    let mut relayed = 0;
    while relayed < n as usize {
        relayed += relay.relay_once().await.expect("relay");
    }
    report("outbox relay PostgreSQL -> broker", n, start.elapsed())
}

async fn embedded(n: u64) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = EmbeddedLog::open(&dir.path().join("events.db").to_string_lossy(), 3).expect("log");
    log.create_topic("bench").await.expect("topic");
    let events: Vec<Event> = (0..n).map(event).collect();
    let start = Instant::now();
    for chunk in events.chunks(500) {
        log.publish("bench", chunk).await.expect("publish");
    }
    let mut sub = log.subscribe("bench", &["bench"]).await.expect("subscribe");
    let mut consumed = 0;
    while consumed < n as usize {
        let batch = sub
            .next_batch(1000, Duration::from_secs(5))
            .await
            .expect("consume");
        sub.commit(&batch).await.expect("commit");
        consumed += batch.len();
    }
    report(
        "embedded log publish + consume + commit",
        n,
        start.elapsed(),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; this harness has no options of its own.
    let n: u64 = env("BENCH_EVENTS", "20000")
        .parse()
        .expect("BENCH_EVENTS is a number");
    let brokers = env("TEST_KAFKA_BROKERS", "127.0.0.1:9092");
    let database_url = env(
        "TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // tansu holds an empty fetch for the whole wait (`events.fetch_wait_ms`).
        let kafka = Arc::new(
            KafkaLog::connect(&brokers, 3, 1)
                .expect("kafka")
                .with_fetch_wait_ms(100),
        );
        let raw = raw_producer(&brokers, &kafka, n).await;
        let relay = outbox_relay(&database_url, kafka, n).await;
        embedded(n).await;
        println!("relay / raw producer = {:.2}", relay / raw);
    });
}
