//! `cargo bench -p pdp-sandbox --bench engine`: what disclosure control costs. Loads a generated
//! resource (`PDP_BENCH_ROWS`, default 10 000 000 rows) through the sandbox's CSV load, reporting
//! its time and the process's peak RSS (the load must run in bounded memory), then runs a fixed
//! set of aggregate queries over the same Parquet three ways in one run: through the sandbox
//! (masking view, plan control, suppression, noise), on plain DataFusion, and on DuckDB (PyPI
//! `duckdb`, `make bench-tools`). Each figure is the median of `PDP_BENCH_RUNS` (default 3).
// A bench reports on stdout and stops at its first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use object_store::local::LocalFileSystem;
use pdp_sandbox::load::Field;
use pdp_sandbox::{Limits, Rules, Sandbox, Table};

const DISTRICTS: [&str; 13] = [
    "Daoli",
    "Nangang",
    "Daowai",
    "Xiangfang",
    "Pingfang",
    "Songbei",
    "Hulan",
    "Acheng",
    "Shuangcheng",
    "Yilan",
    "Fangzheng",
    "Bin",
    "Bayan",
];

/// The fixed queries: grouped counts, sums and averages, a two-key grouping, a deviation under a
/// filter on a group key.
const QUERIES: [(&str, &str); 4] = [
    (
        "count by district",
        "SELECT district, count(*) AS n FROM t GROUP BY district",
    ),
    (
        "sum and avg by district",
        "SELECT district, sum(income) AS total, avg(income) AS mean FROM t GROUP BY district",
    ),
    (
        "count by district and age",
        "SELECT district, age, count(*) AS n FROM t GROUP BY district, age",
    ),
    (
        "stddev, filtered on the key",
        "SELECT district, stddev(income) AS sd FROM t \
         WHERE district IN ('Daoli', 'Nangang', 'Songbei') GROUP BY district",
    ),
];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process's peak resident set so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Writes `rows` residents as CSV: a deterministic generator, so every run loads the same data.
fn generate(path: &std::path::Path, rows: usize) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(out, "id_card,district,age,income").unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..rows {
        // xorshift: cheap and repeatable.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let district = DISTRICTS[(x % 13) as usize];
        let age = 18 + (x >> 8) % 72;
        let income = 1500 + (x >> 16) % 30_000;
        writeln!(out, "2301{i:014},{district},{age},{income}").unwrap();
    }
    out.flush().unwrap();
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn time<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        f().await;
        samples.push(start.elapsed());
    }
    median(samples)
}

/// DuckDB's median time per query over the same Parquet, in one Python process; None (said why)
/// when the package is missing.
fn duckdb(glob: &str, runs: usize) -> Option<Vec<Duration>> {
    let script = format!(
        r#"
import json, statistics, time, duckdb
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute("CREATE VIEW t AS SELECT * FROM read_parquet('{glob}')")
out = []
for sql in json.loads('''{queries}'''):
    samples = []
    for _ in range({runs}):
        start = time.perf_counter()
        con.execute(sql).fetchall()
        samples.append(time.perf_counter() - start)
    out.append(statistics.median(samples))
print(json.dumps(out))
"#,
        queries = serde_json_array(),
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    if !output.status.success() {
        println!(
            "duckdb: not run ({}); `make bench-tools` installs it",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("python3 failed")
        );
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let seconds: Vec<f64> = text
        .trim()
        .trim_matches(['[', ']'])
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(seconds.into_iter().map(Duration::from_secs_f64).collect())
}

/// The queries as a JSON array of strings.
fn serde_json_array() -> String {
    let quoted: Vec<String> = QUERIES
        .iter()
        .map(|(_, sql)| format!("\"{}\"", sql.replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn ms(d: Duration) -> String {
    format!("{:9.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = env_number("PDP_BENCH_ROWS", 10_000_000);
    let runs = env_number("PDP_BENCH_RUNS", 3).max(1);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("residents.csv");
    let started = Instant::now();
    generate(&csv, rows);
    let csv_mib = std::fs::metadata(&csv).unwrap().len() as f64 / (1 << 20) as f64;
    println!(
        "generated {rows} rows ({csv_mib:.0} MiB of CSV) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let data = dir.path().join("store");
    std::fs::create_dir_all(&data).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(&data).unwrap());
    let limits = Limits {
        memory_bytes: 2 << 30,
        time: Duration::from_secs(600),
    };
    let sandbox = Sandbox::new(store, limits).unwrap();
    let fields = [
        ("id_card", "string", true),
        ("district", "string", false),
        ("age", "integer", false),
        ("income", "integer", true),
    ]
    .map(|(name, kind, personal)| Field {
        name: name.into(),
        kind: kind.into(),
        personal,
    });
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let file = std::fs::File::open(&csv).unwrap();
    let location = "tenants/230100/resources/residents/loads/bench/";
    let loaded = sandbox
        .load_csv(&format!("{location}part-0.parquet"), &fields, file, 2)
        .await
        .unwrap();
    let load_time = started.elapsed();
    println!(
        "load: {} rows in {:.1} s ({:.0} rows/s); peak RSS {:.0} MiB before, {:.0} MiB after \
         ({csv_mib:.0} MiB of CSV read)",
        loaded.rows,
        load_time.as_secs_f64(),
        loaded.rows as f64 / load_time.as_secs_f64(),
        rss_before,
        peak_rss_mib(),
    );
    std::fs::remove_file(&csv).unwrap();

    let table = Table {
        name: "t".into(),
        location: location.into(),
        fields: fields.iter().map(|f| f.name.clone()).collect(),
        masked: vec!["id_card".into()],
        personal: vec!["id_card".into(), "income".into()],
    };
    let rules = Rules {
        k: 10,
        epsilon: 1.0,
    };
    let plain = SessionContext::new();
    let parquet_dir = data.join(location);
    plain
        .register_parquet(
            "t",
            parquet_dir.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    let glob = format!("{}/*.parquet", parquet_dir.display());
    let duck = duckdb(&glob, runs);

    println!("\nquery                          sandbox ms  datafusion ms   duckdb ms   sandbox/df");
    let (mut total_sandbox, mut total_plain) = (Duration::ZERO, Duration::ZERO);
    for (i, (name, sql)) in QUERIES.iter().enumerate() {
        let tables = std::slice::from_ref(&table);
        let controlled = time(runs, || async {
            sandbox
                .query(tables, sql, rules, "bench-secret")
                .await
                .unwrap();
        })
        .await;
        let direct = time(runs, || async {
            plain.sql(sql).await.unwrap().collect().await.unwrap();
        })
        .await;
        total_sandbox += controlled;
        total_plain += direct;
        let duck_ms = duck
            .as_ref()
            .and_then(|d| d.get(i))
            .map_or_else(|| "        -".to_string(), |d| ms(*d));
        println!(
            "{name:<30} {}   {}   {}   {:8.2}",
            ms(controlled),
            ms(direct),
            duck_ms,
            controlled.as_secs_f64() / direct.as_secs_f64()
        );
    }
    println!(
        "\nsandbox over plain DataFusion, all queries: {:+.0} % ({} ms against {} ms)",
        (total_sandbox.as_secs_f64() / total_plain.as_secs_f64() - 1.0) * 100.0,
        ms(total_sandbox).trim(),
        ms(total_plain).trim()
    );
    if let Some(d) = &duck {
        let total: Duration = d.iter().sum();
        println!(
            "plain DataFusion over DuckDB, all queries: {:.2}×",
            total_plain.as_secs_f64() / total.as_secs_f64()
        );
    }
}
