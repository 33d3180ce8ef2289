//! `make bench`: the audit archive — how fast records are archived as they arrive, and how long
//! verifying a million records takes — on PostgreSQL (`TEST_DATABASE_URL`) and on SQLite.
//!
//! 1. ingest: gateway records on an embedded log, archived by the archive's consumer (the inbox
//!    and the chain) each in a transaction of its own, and in batches of 100 per transaction with
//!    one append per tenant, as it runs (`one_transaction`); the embedded log's own cost is in;
//! 2. verify: `BENCH_ARCHIVE_RECORDS` (default 1 000 000) records seeded as a linked chain, then
//!    verified whole: every hash recomputed, every link and the head checked.
//!
//! `BENCH_ARCHIVE_EVENTS` sets how many records the ingest part archives (default 20 000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pdp_kit::clock::SystemClock;
use pdp_kit::config::AuditConfig;
use pdp_kit::events::{EmbeddedLog, Event, EventLog};
use pdp_kit::inbox::InboxConsumer;
use pdp_kit::store::{KIT_MIGRATIONS, Store, StoreError, TenantScope};
use pdp_termination::chain::{ArchivedRecord, GENESIS};
use pdp_termination::checkpoint::ArchiveKey;
use pdp_termination::{Archive, Ingest};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "230100";

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

fn report(what: &str, n: u64, elapsed: Duration) {
    println!(
        "{what:<44} {n:>8} records in {:>8.3}s = {:>9.0} records/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

fn gateway_record(i: u64, at: DateTime<Utc>) -> Event {
    Event::new(
        "gateway",
        &TENANT.parse().expect("tenant"),
        "request",
        "audited",
        format!("req-{i}"),
        at,
        serde_json::json!({
            "time": at, "request_id": format!("req-{i}"), "subject": "u-beta",
            "organization": "beta", "tenant": TENANT,
            "operation": "/pdp.planning.v1.PlanService/GetPlan",
            "decision": "allow", "status": 200, "latency_ms": 1.5,
        }),
    )
}

/// Archives `n` gateway records through the archive's consumer (the inbox, and the chain), in
/// batches of 100 as it receives them: each batch in one transaction with one append per
/// tenant (`one_transaction`), or each record in a transaction of its own.
async fn ingest(store: &Store, log: Arc<dyn EventLog>, n: u64, batched: bool) {
    let topic = unique("bench_audit");
    log.create_topic(&topic).await.expect("topic");
    let events: Vec<Event> = (0..n).map(|i| gateway_record(i, Utc::now())).collect();
    for chunk in events.chunks(1000) {
        log.publish(&topic, chunk).await.expect("publish");
    }
    let consumer = InboxConsumer {
        store: store.clone(),
        log,
        consumer: "bench-archive".into(),
        group: unique("bench"),
        topics: vec![topic],
        tenants: Vec::new(),
        batch_size: 100,
        one_transaction: batched,
    };
    let shutdown = CancellationToken::new();
    let ingest = Ingest {
        clock: Arc::new(SystemClock),
    };
    let started = Instant::now();
    let task = tokio::spawn(consumer.run(Arc::new(ingest), shutdown.clone()));
    loop {
        let head = store
            .run(|conn| pdp_termination::store::head(conn, TENANT))
            .await
            .expect("head");
        if head.is_some_and(|(seq, _)| seq >= n as i64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await.expect("consumer").expect("consumer ran");
    let what = if batched {
        "  ingest, a transaction per batch of 100"
    } else {
        "  ingest, a transaction per record"
    };
    report(what, n, elapsed);
}

/// `n` linked records written in large transactions (the chain as the consumer would leave it).
async fn seed(store: &Store, n: u64) {
    let started = Instant::now();
    let at = Utc::now();
    let mut prev = GENESIS.to_string();
    let mut seq = 0;
    while seq < n as i64 {
        let batch: Vec<ArchivedRecord> = (0..10_000.min(n as i64 - seq))
            .map(|k| {
                let s = seq + k + 1;
                let r = ArchivedRecord {
                    tenant: TENANT.into(),
                    seq: s,
                    event_id: format!("e{s}"),
                    event_type: "pdp.gateway.request.audited".into(),
                    time: at,
                    archived_at: at,
                    source: "gateway".into(),
                    operation: "/pdp.planning.v1.PlanService/GetPlan".into(),
                    target: format!("req-{s}"),
                    subject: "u-beta".into(),
                    organization: "beta".into(),
                    outcome: "allow 200".into(),
                    data: format!("{{\"request_id\":\"req-{s}\",\"status\":200}}"),
                    prev_hash: String::new(),
                    hash: String::new(),
                }
                .link(&prev);
                prev = r.hash.clone();
                r
            })
            .collect();
        seq += batch.len() as i64;
        let head = (seq, prev.clone());
        store
            .transaction(move |conn| {
                let scope = TenantScope::system(TENANT.parse().expect("tenant"));
                scope.enter(conn)?;
                let seeded =
                    pdp_termination::store::insert_records(conn, &scope, &batch).and_then(|()| {
                        pdp_termination::store::lock_head(conn, TENANT)?;
                        pdp_termination::store::set_head(conn, TENANT, head.0, &head.1)
                    });
                seeded.map_err(|e| StoreError::Task(e.to_string()))
            })
            .await
            .expect("seed");
    }
    report("  seeding (not a goal)", n, started.elapsed());
}

async fn verify(store: &Store, n: u64) {
    let archive = Archive::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(ArchiveKey::generate()),
        AuditConfig::default(),
    );
    let started = Instant::now();
    let scope = TenantScope::system(TENANT.parse().expect("tenant"));
    let result = archive.verify_in(scope, None, None).await.expect("verify");
    let elapsed = started.elapsed();
    assert!(result.verified, "{result:?}");
    assert_eq!(result.records_checked, n as i64);
    report("  verify the whole chain (goal: 1M < 3 s)", n, elapsed);
}

fn main() {
    let events: u64 = env("BENCH_ARCHIVE_EVENTS", "20000")
        .parse()
        .expect("a number");
    let records: u64 = env("BENCH_ARCHIVE_RECORDS", "1000000")
        .parse()
        .expect("a number");
    let database_url = env(
        "TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let migrations = [KIT_MIGRATIONS, pdp_termination::MIGRATIONS];
        // A store of its own for each part: a PostgreSQL schema, or a SQLite file.
        let open = |postgres: bool, part: &str| {
            let owner = unique(part);
            let url = if postgres {
                database_url.clone()
            } else {
                dir.path()
                    .join(format!("{owner}.db"))
                    .to_string_lossy()
                    .into_owned()
            };
            let store = Store::open(&url, &owner, 4).expect("store");
            store.migrate(&migrations).expect("migrations");
            store
        };
        for (name, postgres) in [("PostgreSQL", true), ("SQLite", false)] {
            println!("{name}");
            for batched in [false, true] {
                let log: Arc<dyn EventLog> = Arc::new(
                    EmbeddedLog::open(&dir.path().join(unique("log")).to_string_lossy(), 1)
                        .expect("embedded log"),
                );
                ingest(&open(postgres, "bench_ingest"), log, events, batched).await;
            }
            let store = open(postgres, "bench_verify");
            seed(&store, records).await;
            verify(&store, records).await;
        }
    });
}
