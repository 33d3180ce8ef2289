//! `make bench`: the audit archive — how fast records are archived as they arrive, and how long
//! verifying a million records takes — on PostgreSQL (`TEST_DATABASE_URL`) and on SQLite.
//!
//! 1. ingest: gateway records applied through the inbox, each in its own transaction, and in
//!    batches of 100 per transaction as the archive's consumer applies them (`one_transaction`);
//! 2. verify: `BENCH_ARCHIVE_RECORDS` (default 1 000 000) records seeded as a linked chain, then
//!    verified whole: every hash recomputed, every link and the head checked.
//!
//! `BENCH_ARCHIVE_EVENTS` sets how many records the ingest part archives (default 20 000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use pdp_kit::clock::SystemClock;
use pdp_kit::config::AuditConfig;
use pdp_kit::events::{Delivery, Event};
use pdp_kit::inbox::apply_once;
use pdp_kit::store::{KIT_MIGRATIONS, Store, StoreError, TenantScope};
use pdp_termination::chain::{ArchivedRecord, GENESIS};
use pdp_termination::checkpoint::ArchiveKey;
use pdp_termination::store::{audit_heads, audit_records};
use pdp_termination::{Archive, Ingest};

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

/// Archives `n` gateway records through the inbox, as the archive's consumer does: batches of
/// 100, each in one transaction (`one_transaction`), or each record in its own.
async fn ingest(store: &Store, n: u64, batched: bool) {
    let deliveries: Vec<Delivery> = (0..n)
        .map(|i| Delivery {
            topic: "pdp.audit".into(),
            partition: 0,
            offset: i as i64,
            event: gateway_record(i, Utc::now()),
        })
        .collect();
    let started = Instant::now();
    store
        .run(move |conn| {
            let ingest = Ingest {
                clock: Arc::new(SystemClock),
            };
            for batch in deliveries.chunks(100) {
                let apply = |conn: &mut pdp_kit::store::AnyConnection| {
                    for d in batch {
                        apply_once(conn, "bench-archive", d, |c, e| {
                            pdp_kit::inbox::EventHandler::handle(&ingest, c, e)
                        })
                        .map_err(|e| StoreError::Task(e.to_string()))?;
                    }
                    Ok::<_, StoreError>(())
                };
                if batched {
                    conn.transaction(apply)?;
                } else {
                    apply(conn)?;
                }
            }
            Ok::<_, StoreError>(())
        })
        .await
        .expect("ingest");
    let what = if batched {
        "  ingest, a transaction per batch of 100"
    } else {
        "  ingest, a transaction per record"
    };
    report(what, n, started.elapsed());
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
                if let pdp_kit::store::AnyConnection::Postgresql(pg) = conn {
                    diesel::sql_query("SELECT pdp_audit_partition($1, $2)")
                        .bind::<diesel::sql_types::Text, _>(TENANT)
                        .bind::<diesel::sql_types::Timestamp, _>(at.naive_utc())
                        .execute(pg)?;
                }
                for chunk in batch.chunks(1000) {
                    let rows: Vec<_> = chunk
                        .iter()
                        .map(|r| {
                            (
                                audit_records::tenant.eq(&r.tenant),
                                audit_records::seq.eq(r.seq),
                                audit_records::event_id.eq(&r.event_id),
                                audit_records::event_type.eq(&r.event_type),
                                audit_records::time.eq(r.time.naive_utc()),
                                audit_records::archived_at.eq(r.archived_at.naive_utc()),
                                audit_records::source.eq(&r.source),
                                audit_records::operation.eq(&r.operation),
                                audit_records::target.eq(&r.target),
                                audit_records::subject.eq(&r.subject),
                                audit_records::organization.eq(&r.organization),
                                audit_records::outcome.eq(&r.outcome),
                                audit_records::data.eq(&r.data),
                                (
                                    audit_records::prev_hash.eq(&r.prev_hash),
                                    audit_records::hash.eq(&r.hash),
                                ),
                            )
                        })
                        .collect();
                    // A multi-row insert on PostgreSQL; SQLite takes them one by one (fast in
                    // one transaction), as diesel batches no insert for both at once.
                    match conn {
                        pdp_kit::store::AnyConnection::Postgresql(pg) => {
                            diesel::insert_into(audit_records::table)
                                .values(rows)
                                .execute(pg)?;
                        }
                        pdp_kit::store::AnyConnection::Sqlite(sqlite) => {
                            for row in rows {
                                diesel::insert_into(audit_records::table)
                                    .values(row)
                                    .execute(sqlite)?;
                            }
                        }
                    }
                }
                diesel::delete(audit_heads::table.filter(audit_heads::tenant.eq(TENANT)))
                    .execute(conn)?;
                diesel::insert_into(audit_heads::table)
                    .values((
                        audit_heads::tenant.eq(TENANT),
                        audit_heads::seq.eq(head.0),
                        audit_heads::hash.eq(&head.1),
                    ))
                    .execute(conn)?;
                Ok::<_, StoreError>(())
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
            ingest(&open(postgres, "bench_ingest"), events, false).await;
            ingest(&open(postgres, "bench_ingest"), events, true).await;
            let store = open(postgres, "bench_verify");
            seed(&store, records).await;
            verify(&store, records).await;
        }
    });
}
