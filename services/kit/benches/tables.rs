//! `make bench`: tables that only grow, and what they would cost the two queries every event
//! passes through.
//!
//! The outbox keeps the rows it sent and the inbox the ids it applied until the purge
//! (`retention`) removes them. On PostgreSQL (`TEST_DATABASE_URL`, a schema of its own) and on
//! SQLite (a file), each is measured with the table as a new instance has it and again with
//! `BENCH_BEHIND` rows behind (default ten million sent outbox rows and ten million applied
//! inbox ids over eight consumers: what years of a busy instance would hold if nothing purged):
//! - the relay's claim of a batch of 100 pending rows (`outbox::claim`, in a transaction rolled
//!   back, so the same rows are claimed every time);
//! - a consumer's duplicate check of one event (`inbox::applied`), for an id it applied and for
//!   one it has not;
//! - with the rows behind, one purge batch of each table (1 000 rows, as `retention` deletes);
//!
//! `BENCH_SAMPLES` (default 1 000) calls each; p50 and p99 in microseconds. The plans of the
//! claim and the check, on the full tables, close each store's part.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot go on should stop

use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use pdp_kit::events::Event;
use pdp_kit::store::{AnyConnection, Backend, KIT_MIGRATIONS, Store};
use pdp_kit::{inbox, outbox};

#[path = "common/explain.rs"]
mod explain;

const CONSUMERS: usize = 8;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn event(i: usize) -> Event {
    Event::new(
        "bench",
        &"230100".parse().unwrap(),
        "widget",
        "changed",
        format!("agg-{}", i % 64),
        Utc::now(),
        serde_json::json!({ "seq": i, "note": "a small payload of a typical domain event" }),
    )
}

/// p50 and p99 of `samples` runs of `f`, in microseconds.
fn timed(samples: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut took: Vec<Duration> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    (at(0.50).as_secs_f64() * 1e6, at(0.99).as_secs_f64() * 1e6)
}

/// Claims the 100 oldest pending rows and gives them back.
fn claim(conn: &mut AnyConnection) {
    let _ = conn.transaction::<(), diesel::result::Error, _>(|conn| {
        let rows = outbox::claim(conn, 100)?;
        assert_eq!(rows.len(), 100, "the pending rows are there to claim");
        Err(diesel::result::Error::RollbackTransaction)
    });
}

/// Ten million rows of each table, written by the database itself in steps of a million.
fn fill(conn: &mut AnyConnection, backend: Backend, behind: usize) {
    let step = 1_000_000.min(behind);
    let envelope =
        "'{\"specversion\":\"1.0\",\"type\":\"pdp.bench.widget.changed\",\"data\":{\"seq\":1}}'";
    for start in (0..behind).step_by(step) {
        let (from, to) = (start + 1, (start + step).min(behind));
        let sql = match backend {
            Backend::Postgres => format!(
                "INSERT INTO pdp_outbox (event_id, topic, event_key, envelope, created_at, sent_at)
                 SELECT 'sent-' || g, 'pdp.bench', 'agg-' || (g % 64), {envelope},
                        now() - interval '30 days', now() - interval '30 days'
                 FROM generate_series({from}, {to}) g;
                 INSERT INTO pdp_inbox (consumer, event_id, topic, part, event_offset, applied_at)
                 SELECT 'consumer-' || (g % {CONSUMERS}), 'applied-' || g, 'pdp.bench', 0, g,
                        now() - interval '30 days'
                 FROM generate_series({from}, {to}) g;"
            ),
            Backend::Sqlite => format!(
                "WITH RECURSIVE g(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM g WHERE x < {to})
                 INSERT INTO pdp_outbox (event_id, topic, event_key, envelope, created_at, sent_at)
                 SELECT 'sent-' || x, 'pdp.bench', 'agg-' || (x % 64), {envelope},
                        datetime('now', '-30 days'), datetime('now', '-30 days') FROM g;
                 WITH RECURSIVE g(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM g WHERE x < {to})
                 INSERT INTO pdp_inbox (consumer, event_id, topic, part, event_offset, applied_at)
                 SELECT 'consumer-' || (x % {CONSUMERS}), 'applied-' || x, 'pdp.bench', 0, x,
                        datetime('now', '-30 days') FROM g;"
            ),
        };
        conn.batch_execute(&sql).unwrap();
    }
    // As autovacuum (PostgreSQL) or `PRAGMA optimize` would, so the figures do not depend on when
    // that last ran.
    conn.batch_execute("ANALYZE pdp_outbox; ANALYZE pdp_inbox;")
        .unwrap();
}

/// Pending rows at the end of the outbox, as the relay finds them: written after everything sent.
fn enqueue_pending(conn: &mut AnyConnection, n: usize) {
    let events: Vec<Event> = (0..n).map(event).collect();
    outbox::enqueue_all(conn, "pdp.bench", &events).unwrap();
}

fn measure(conn: &mut AnyConnection, what: &str, samples: usize) {
    let (p50, p99) = timed(samples, || claim(conn));
    println!("  {what:<22} relay claim of 100        p50 {p50:>8.1} µs  p99 {p99:>8.1} µs");
    let (known, unknown) = ("applied-7", "never-applied");
    for (label, id) in [("applied id", known), ("new id", unknown)] {
        let (p50, p99) = timed(samples, || {
            let seen = inbox::applied(conn, "consumer-7", &[id]).unwrap();
            assert_eq!(seen.len(), usize::from(id == known));
        });
        println!("  {what:<22} duplicate check, {label:<11}p50 {p50:>8.1} µs  p99 {p99:>8.1} µs");
    }
}

fn bench(name: &str, store: &Store, behind: usize, samples: usize) {
    println!("\n{name}");
    store.migrate(&[KIT_MIGRATIONS]).expect("migrations");
    let mut conn = store.connection().unwrap();
    // A new instance: the pending rows and one applied id of the consumer looked at.
    enqueue_pending(&mut conn, 100);
    conn.batch_execute(
        "INSERT INTO pdp_inbox (consumer, event_id, topic, part, event_offset, applied_at)
         VALUES ('consumer-7', 'applied-7', 'pdp.bench', 0, 7, CURRENT_TIMESTAMP)",
    )
    .unwrap();
    measure(&mut conn, "empty tables", samples);

    // The same pending rows, now behind the years a purge would have removed.
    conn.batch_execute("DELETE FROM pdp_outbox; DELETE FROM pdp_inbox;")
        .unwrap();
    let started = Instant::now();
    fill(&mut conn, store.backend(), behind);
    println!(
        "  filled: {behind} sent outbox rows and {behind} applied inbox ids in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    enqueue_pending(&mut conn, 100);
    let with = format!("{behind} rows behind");
    measure(&mut conn, &with, samples);

    let before = (Utc::now() - chrono::Duration::days(1)).naive_utc();
    let (p50, p99) = timed(5, || {
        assert_eq!(outbox::purge_sent(&mut conn, before, 1000).unwrap(), 1000);
    });
    println!("  {with:<22} purge of 1 000 sent rows  p50 {p50:>8.1} µs  p99 {p99:>8.1} µs");
    let (p50, p99) = timed(5, || {
        assert_eq!(inbox::purge_applied(&mut conn, before, 1000).unwrap(), 1000);
    });
    println!("  {with:<22} purge of 1 000 inbox ids  p50 {p50:>8.1} µs  p99 {p99:>8.1} µs");

    let _ = conn.transaction::<(), diesel::result::Error, _>(|conn| {
        let (sql, plan) = explain::explain(conn, "pdp_outbox", |conn| {
            outbox::claim(conn, 100).unwrap();
        });
        println!("\n  {sql}\n    {}", plan.join("\n    "));
        Err(diesel::result::Error::RollbackTransaction)
    });
    let (sql, plan) = explain::explain(&mut conn, "pdp_inbox", |conn| {
        inbox::applied(conn, "consumer-7", &["applied-7"]).unwrap();
    });
    println!("\n  {sql}\n    {}", plan.join("\n    "));
}

fn main() {
    let behind = setting("BENCH_BEHIND", 10_000_000);
    let samples = setting("BENCH_SAMPLES", 1000);
    let database_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("bench_tables_{}", uuid::Uuid::now_v7().simple());
    let pg = Store::open(&database_url, &schema, 2).expect("PostgreSQL");
    bench("PostgreSQL", &pg, behind, samples);
    pg.connection()
        .unwrap()
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tables.db");
    let sqlite = Store::open(path.to_str().unwrap(), "bench", 1).expect("SQLite");
    bench("SQLite", &sqlite, behind, samples);
}
