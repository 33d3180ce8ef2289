//! `make bench`: costs that stay flat as data grows.
//!
//! One Harbin tenant is grown to 1 % and then to all of `BENCH_RESOURCES` data resources (default
//! 100 000), `BENCH_PLANS` plans (10 000) and `BENCH_AUDIT_RECORDS` archived audit records
//! (1 000 000), on two platforms: `pdp dev` (SQLite, one process) and the cluster as a province
//! runs it (`pdp serve` per service, two instances on PostgreSQL, the broker, one `pdp gateway`).
//! At each size the lists and gets a front end makes are sent through the gateway,
//! `BENCH_SAMPLES` times each (default 200, one after the other), at the first page and at a page
//! nine tenths of the way in; the table gives p50 and p99 at both sizes and how much p99 grew.
//! Then the plan of each list query on the full data (`EXPLAIN`, through the store function
//! the service calls), and each process's resident memory after seeding and after the run.
//! Last, the CPU each process spends per read under `wrk -t1 -c32` for `BENCH_SECONDS` (10),
//! beside what it spends per second with no load; with `BENCH_PROFILE=<dir>`, `perf` samples
//! the platform's processes over that load and the bench prints where their time went.
//!
//! The rows are written as the services write them (their store functions; the archive's own
//! chain), straight into the stores of the running platform: a million gateway requests would
//! take the bench an hour. `BENCH_PLATFORMS` (default `dev,cluster`) picks the platforms; the
//! cluster needs what the tests need (`TEST_DATABASE_URL`, `TEST_KAFKA_BROKERS`,
//! `TEST_REDIS_URL`, `TEST_S3_ENDPOINT`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot go on should stop

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use pdp_gateway::audit::{AuditRecord, Decision};
use pdp_kit::events::Event;
use pdp_kit::identity::TenantCode;
use pdp_kit::paging::Cursor;
use pdp_kit::store::{Store, TenantScope};
use pdp_planning::store as planning;
use pdp_proto::pdp::planning::v1::{self as api, PlanState};

#[path = "../../tests/support/mod.rs"]
mod support;
use support::cluster::{Cluster, Setup};
use support::servers::Servers;
use support::*;

#[path = "../../services/kit/benches/common/explain.rs"]
mod explain;

const TENANT: &str = "230100";
const H: &str = "/api/v1/tenants/230100";
const PROVIDER: &str = "harbin-transport";
const BUREAU: &str = "harbin-data-bureau";
/// One acting organization in a thousand records: an auditor's needle.
const RARE: &str = "harbin-audit-office";
const ORGANIZATIONS: usize = 20;
const OPERATIONS: [&str; 6] = [
    "/pdp.planning.v1.ResourceService/GetResource",
    "/pdp.planning.v1.ResourceService/ListResources",
    "/pdp.planning.v1.PlanService/GetPlan",
    "/pdp.requests.v1.SandboxService/RunQuery",
    "/pdp.products.v1.ProductService/ListProducts",
    "/pdp.agreements.v1.AgreementService/GetAgreement",
];

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// How many rows of each kind the tenant holds at one size.
#[derive(Clone, Copy)]
struct Size {
    resources: usize,
    plans: usize,
    records: usize,
}

impl Size {
    fn label(&self) -> String {
        format!(
            "{} resources, {} plans, {} audit records",
            self.resources, self.plans, self.records
        )
    }
}

/// A running platform: where its gateway listens, its tenant's stores and its processes.
struct Platform {
    name: &'static str,
    port: u16,
    bureau: String,
    provider: String,
    planning: Store,
    termination: Store,
    processes: Vec<(String, u32)>,
    _running: Box<dyn std::any::Any>,
}

fn config(dir: &Path) -> std::path::PathBuf {
    // The bench is one subject sending thousands of reads: the limits stay on, out of its way.
    let path = dir.join("pdp.toml");
    std::fs::write(
        &path,
        "[gateway]\ntenant_rate = 1000000000.0\ntenant_burst = 1000000000\n\
         subject_rate = 1000000000.0\nsubject_burst = 1000000000\n",
    )
    .unwrap();
    path
}

fn dev(dir: &Path) -> Platform {
    let port = free_port();
    let config = config(dir);
    let mut child = start_dev_with(dir, port, &[("PDP_CONFIG", config.to_str().unwrap())]);
    wait_ready(&mut child, port);
    let d = dir.to_str().unwrap();
    let sqlite = |owner: &str| {
        let path = dir.join(format!("{owner}.db"));
        Store::open(path.to_str().unwrap(), owner, 1).unwrap()
    };
    Platform {
        name: "pdp dev (SQLite)",
        port,
        bureau: token(d, TENANT, "city_bureau", BUREAU),
        provider: token(d, TENANT, "provider", PROVIDER),
        planning: sqlite("planning"),
        termination: sqlite("termination"),
        processes: vec![("pdp dev".into(), child.id())],
        _running: Box::new(child),
    }
}

fn cluster(dir: &Path) -> Platform {
    let config = config(dir);
    let run = format!("scale{}", rand::random::<u32>());
    let cluster = Cluster::start(&Setup {
        config: &config,
        shift: None,
        run: &run,
        servers: &Servers::from_env(),
        // As deployed: the tests' one-second schedulers would have fifteen processes counting
        // gauges of every tenant each second beside the measured calls.
        env: &[("PDP_INSTANCE__SCHEDULER_INTERVAL_SECS", "60")],
    });
    let url = cluster.harbin.store_url.clone();
    let processes = cluster
        .shared
        .processes
        .iter()
        .chain(&cluster.harbin.processes)
        .chain(std::iter::once(&cluster.gateway))
        .map(|p| (p.name.clone(), p.pid().unwrap()))
        .collect();
    Platform {
        name: "cluster (PostgreSQL)",
        port: cluster.gateway.http_port,
        bureau: cluster.token(TENANT, "city_bureau", BUREAU),
        provider: cluster.token(TENANT, "provider", PROVIDER),
        planning: Store::open(&url, "planning", 2).unwrap(),
        termination: Store::open(&url, "termination", 2).unwrap(),
        processes,
        _running: Box::new(cluster),
    }
}

/// What the seeded rows are copies of: a resource and a plan made through the gateway.
struct Templates {
    resource: api::DataResource,
    plan: api::Plan,
}

/// What the tenant holds so far, and the keys a deep page starts after.
#[derive(Default)]
struct Seeded {
    resources: Vec<String>,
    registered: Vec<String>,
    plans: Vec<String>,
    effective: Vec<String>,
    records: usize,
}

fn scope() -> TenantScope {
    TenantScope::system(TENANT.parse().unwrap())
}

fn templates(p: &Platform, rt: &tokio::runtime::Runtime) -> Templates {
    let id = registered_resource(p.port, H, &p.provider);
    let (status, plan) = call(
        p.port,
        "POST",
        &format!("{H}/plans"),
        Some(&p.bureau),
        Some(&plan_body(&id)),
    );
    assert_eq!(status, 200, "{plan}");
    let plan_id = plan["id"].as_str().unwrap().to_string();
    rt.block_on(p.planning.scoped(&scope(), move |conn| {
        let resource = planning::find_resource(conn, &scope(), &id)?.unwrap();
        let plan = planning::latest_plan(conn, &scope(), &plan_id)?.unwrap();
        Ok::<_, anyhow::Error>(Templates { resource, plan })
    }))
    .unwrap()
}

/// Grows the tenant to `to`, in transactions of a few thousand rows so that the platform's own
/// writers get their turn.
fn seed(p: &Platform, rt: &tokio::runtime::Runtime, t: &Templates, s: &mut Seeded, to: Size) {
    let started = Instant::now();
    let year = Utc::now().format("%Y");
    while s.resources.len() < to.resources {
        let first = s.resources.len();
        let n = (to.resources - first).min(5_000);
        let batch: Vec<api::DataResource> = (first..first + n)
            .map(|i| {
                let mut r = t.resource.clone();
                r.id = uuid::Uuid::now_v7().to_string();
                r.name = format!("Resource {i}");
                // Nine in ten are registered, as a catalog in use is.
                r.registration_number = if i % 10 == 9 {
                    String::new()
                } else {
                    format!("HLJ-{TENANT}-{year}-B{i:07}")
                };
                r
            })
            .collect();
        for r in &batch {
            s.resources.push(r.id.clone());
            if !r.registration_number.is_empty() {
                s.registered.push(r.id.clone());
            }
        }
        rt.block_on(p.planning.scoped(&scope(), move |conn| {
            let now = Utc::now();
            for r in &batch {
                planning::insert_resource(conn, &scope(), r, now)?;
                if !r.registration_number.is_empty() {
                    planning::save_resource(conn, &scope(), r, now)?;
                }
            }
            Ok::<_, anyhow::Error>(())
        }))
        .unwrap();
    }
    while s.plans.len() < to.plans {
        let first = s.plans.len();
        let n = (to.plans - first).min(2_000);
        let batch: Vec<api::Plan> = (first..first + n)
            .map(|i| {
                let mut plan = t.plan.clone();
                plan.id = uuid::Uuid::now_v7().to_string();
                plan.name = format!("Plan {i}");
                // Three in ten in force, the rest on their way or rejected.
                plan.state = match i % 10 {
                    0..=2 => PlanState::Effective,
                    3 | 4 => PlanState::Submitted,
                    5 => PlanState::Rejected,
                    _ => PlanState::Draft,
                } as i32;
                plan
            })
            .collect();
        for plan in &batch {
            s.plans.push(plan.id.clone());
            if plan.state == PlanState::Effective as i32 {
                s.effective.push(plan.id.clone());
            }
        }
        rt.block_on(p.planning.scoped(&scope(), move |conn| {
            let now = Utc::now();
            for plan in &batch {
                planning::insert_plan_version(conn, &scope(), plan, now)?;
            }
            Ok::<_, anyhow::Error>(())
        }))
        .unwrap();
    }
    let tenant: TenantCode = TENANT.parse().unwrap();
    while s.records < to.records {
        let first = s.records;
        let n = (to.records - first).min(5_000);
        let events: Vec<Event> = (first..first + n)
            .map(|i| audit_event(&tenant, i))
            .collect();
        rt.block_on(p.termination.transaction(move |conn| {
            let refs: Vec<&Event> = events.iter().collect();
            pdp_termination::service::append_all(conn, &refs, Utc::now())
                .map_err(anyhow::Error::from)
        }))
        .unwrap();
        s.records += n;
        if s.records % 100_000 == 0 {
            println!(
                "    {} audit records after {:.1} s",
                s.records,
                started.elapsed().as_secs_f64()
            );
        }
    }
    s.resources.sort();
    s.registered.sort();
    s.plans.sort();
    s.effective.sort();
    println!(
        "  seeded to {} in {:.1} s",
        to.label(),
        started.elapsed().as_secs_f64()
    );
}

/// The `i`th seeded gateway record: twenty organizations and a rare one, five hundred subjects.
fn audit_event(tenant: &TenantCode, i: usize) -> Event {
    let organization = if i % 1000 == 999 {
        RARE.to_string()
    } else {
        format!("org-{:02}", i % ORGANIZATIONS)
    };
    let record = AuditRecord {
        time: Utc::now(),
        request_id: uuid::Uuid::now_v7().to_string(),
        trace_id: None,
        subject: format!("user-{}", i % 500),
        organization,
        tenant: tenant.clone(),
        operation: OPERATIONS[i % OPERATIONS.len()].to_string(),
        decision: Decision::Allow,
        status: 200,
        latency_ms: 1.5,
        client_address: None,
    };
    Event::new(
        "gateway",
        tenant,
        "request",
        "audited",
        record.request_id.clone(),
        record.time,
        serde_json::to_value(&record).unwrap(),
    )
}

/// A page token that starts after `key`, as the service would hand it out.
fn after(key: &str) -> String {
    Cursor::parse(1, "").unwrap().next_token(&[key], |k| k)
}

/// Nine tenths of the way into `keys`.
fn deep(keys: &[String]) -> &str {
    &keys[keys.len() * 9 / 10]
}

/// The requests measured: a name, which page, and the path.
fn requests(s: &Seeded) -> Vec<(&'static str, &'static str, String)> {
    let deep_seq = (s.records * 9 / 10).to_string();
    let page = "page.page_size=50";
    vec![
        ("list resources", "first", format!("{H}/resources?{page}")),
        (
            "list resources",
            "deep",
            format!(
                "{H}/resources?{page}&page.page_token={}",
                after(deep(&s.resources))
            ),
        ),
        (
            "public catalog (registered)",
            "first",
            format!("{H}/public/resources?{page}"),
        ),
        (
            "public catalog (registered)",
            "deep",
            format!(
                "{H}/public/resources?{page}&page.page_token={}",
                after(deep(&s.registered))
            ),
        ),
        ("list plans", "first", format!("{H}/plans?{page}")),
        (
            "list plans",
            "deep",
            format!(
                "{H}/plans?{page}&page.page_token={}",
                after(&format!("{}@1", deep(&s.plans)))
            ),
        ),
        (
            "public plans (effective)",
            "first",
            format!("{H}/public/plans?{page}"),
        ),
        (
            "public plans (effective)",
            "deep",
            format!(
                "{H}/public/plans?{page}&page.page_token={}",
                after(&format!("{}@1", deep(&s.effective)))
            ),
        ),
        (
            "audit records",
            "first",
            format!("{H}/audit/records?{page}"),
        ),
        (
            "audit records",
            "deep",
            format!(
                "{H}/audit/records?{page}&page.page_token={}",
                after(&deep_seq)
            ),
        ),
        (
            "audit records of one organization (5 %)",
            "first",
            format!("{H}/audit/records?organization=org-07&{page}"),
        ),
        (
            "audit records of one organization (5 %)",
            "deep",
            format!(
                "{H}/audit/records?organization=org-07&{page}&page.page_token={}",
                after(&deep_seq)
            ),
        ),
        (
            "audit records of a rare organization (0.1 %)",
            "first",
            format!("{H}/audit/records?organization={RARE}&{page}"),
        ),
        (
            "get resource",
            "-",
            format!("{H}/resources/{}", deep(&s.resources)),
        ),
        ("get plan", "-", format!("{H}/plans/{}", deep(&s.plans))),
    ]
}

/// p50 and p99 of `samples` calls of `path`, in milliseconds; the first answer must be a 200.
fn measure(p: &Platform, path: &str, samples: usize) -> (f64, f64) {
    let (status, body) = call(p.port, "GET", path, Some(&p.bureau), None);
    assert_eq!(status, 200, "{path}: {body}");
    let mut took: Vec<Duration> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            let (status, _) = call(p.port, "GET", path, Some(&p.bureau), None);
            let took = started.elapsed();
            assert_eq!(status, 200, "{path}");
            took
        })
        .collect();
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(at(0.50)), ms(at(0.99)))
}

/// Resident memory of each process, in MiB.
fn rss(p: &Platform) -> Vec<f64> {
    p.processes
        .iter()
        .map(|(_, pid)| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        })
        .collect()
}

/// The plans of the list queries the measured calls make, on the data as it is now.
fn explain_lists(p: &Platform, rt: &tokio::runtime::Runtime, s: &Seeded) {
    let deep_resource = deep(&s.resources).to_string();
    let deep_plan = format!("{}@1", deep(&s.effective));
    let deep_seq = (s.records * 9 / 10) as i64;
    let page = |after: Option<String>| Cursor { after, size: 50 };
    let plans = rt
        .block_on(p.planning.scoped(&scope(), move |conn| {
            let mut out = Vec::new();
            out.push(explain::explain(conn, "resources", |conn| {
                planning::list_resources(conn, &scope(), None, &page(Some(deep_resource.clone())))
            }));
            out.push(explain::explain(conn, "resources", |conn| {
                planning::list_resources(conn, &scope(), Some(true), &page(Some(deep_resource)))
            }));
            out.push(explain::explain(conn, "plans", |conn| {
                planning::list_plans(conn, &scope(), None, &page(None))
            }));
            out.push(explain::explain(conn, "plans", |conn| {
                let effective = [pdp_planning::plan::PlanState::Effective];
                planning::list_plans(conn, &scope(), Some(&effective), &page(Some(deep_plan)))
            }));
            Ok::<_, anyhow::Error>(out)
        }))
        .unwrap();
    let records = rt
        .block_on(p.termination.scoped(&scope(), move |conn| {
            use pdp_termination::store::{RecordFilter, list_records};
            let mut out = Vec::new();
            out.push(explain::explain(conn, "audit_records", |conn| {
                list_records(conn, &scope(), &RecordFilter::default(), deep_seq, 50)
            }));
            let of = |o: &str| RecordFilter {
                organization: Some(o.to_string()),
                ..RecordFilter::default()
            };
            out.push(explain::explain(conn, "audit_records", |conn| {
                list_records(conn, &scope(), &of("org-07"), 0, 50)
            }));
            out.push(explain::explain(conn, "audit_records", |conn| {
                list_records(conn, &scope(), &of("org-07"), deep_seq, 50)
            }));
            out.push(explain::explain(conn, "audit_records", |conn| {
                list_records(conn, &scope(), &of(RARE), 0, 50)
            }));
            Ok::<_, anyhow::Error>(out)
        }))
        .unwrap();
    for (sql, plan) in plans.into_iter().chain(records) {
        println!("\n  {sql}");
        for line in plan {
            println!("    {line}");
        }
    }
}

/// CPU time (user + system) a process has used, in microseconds.
fn cpu_micros(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports in clock ticks of 1/100 s (`getconf CLK_TCK`).
    (ticks(11) + ticks(12)) * 10_000
}

/// Context switches of all of a process's threads so far (voluntary and not): a read that
/// wakes many threads pays for each switch in the kernel.
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Every process whose command name is `comm` (PostgreSQL's backends, the broker).
fn pids_named(comm: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// Where the CPU of a read through the gateway goes, process by process: `wrk` at concurrency
/// 32 for `seconds` on `path`, and each process's CPU time over it divided by the requests.
fn cost_split(p: &Platform, path: &str, seconds: u64) {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v wrk"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "wrk is missing: run `make bench-tools` first");
    let mut groups: Vec<(String, Vec<u32>)> = p
        .processes
        .iter()
        .map(|(name, pid)| (name.clone(), vec![*pid]))
        .collect();
    groups.push(("PostgreSQL (all backends)".into(), pids_named("postgres")));
    groups.push(("broker (tansu)".into(), pids_named("tansu")));
    let cpu = |groups: &[(String, Vec<u32>)]| -> Vec<u64> {
        groups
            .iter()
            .map(|(_, pids)| pids.iter().map(|pid| cpu_micros(*pid)).sum())
            .collect()
    };
    let script = std::env::temp_dir().join(format!("pdp-scale-{}.lua", std::process::id()));
    std::fs::write(
        &script,
        format!("wrk.headers[\"Authorization\"] = \"Bearer {}\"\n", p.bureau),
    )
    .unwrap();
    // What the processes spend with no request at all (schedulers, consumers catching up), so
    // that it is not taken for the cost of a read.
    let idle_from = cpu(&groups);
    std::thread::sleep(Duration::from_secs(seconds));
    let idle: Vec<f64> = cpu(&groups)
        .iter()
        .zip(&idle_from)
        .map(|(a, b)| (a - b) as f64 / seconds as f64)
        .collect();
    let profile = std::env::var_os("BENCH_PROFILE").map(|dir| {
        let pids: Vec<String> = p.processes.iter().map(|(_, pid)| pid.to_string()).collect();
        let data = Path::new(&dir).join(format!("scale-{}.perf", std::process::id()));
        let child = std::process::Command::new("perf")
            .args(["record", "-q", "-F", "499", "-p", &pids.join(","), "-o"])
            .arg(&data)
            .args(["--", "sleep", &seconds.to_string()])
            .spawn()
            .expect("BENCH_PROFILE needs perf (Debian's linux-perf)");
        (child, data)
    });
    let switched = || -> u64 { p.processes.iter().map(|(_, pid)| switches(*pid)).sum() };
    let switches_before = switched();
    let before = cpu(&groups);
    let out = std::process::Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{seconds}s"), "-s"])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}{path}", p.port))
        .output()
        .unwrap();
    let after = cpu(&groups);
    let switches_after = switched();
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    let requests: f64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk said: {text}"));
    assert!(
        !text.contains("Non-2xx"),
        "the reads must succeed under load: {text}"
    );
    println!(
        "\n  CPU per request of GET {path} through the gateway, wrk -t1 -c32 {seconds} s \
         ({:.0} requests/s):",
        requests / seconds as f64
    );
    println!(
        "    {:<26} {:>9} {:>14} {:>12}",
        "process", "µs/request", "without idle", "idle µs/s"
    );
    let (mut total, mut net) = (0.0, 0.0);
    for (((name, _), (b, a)), idle) in groups.iter().zip(before.iter().zip(&after)).zip(&idle) {
        let per = (a - b) as f64 / requests;
        let without = ((a - b) as f64 - idle * seconds as f64).max(0.0) / requests;
        total += per;
        net += without;
        if per >= 0.5 || *idle >= 1000.0 {
            println!("    {name:<26} {per:>9.1} {without:>14.1} {idle:>12.0}");
        }
    }
    println!("    {:<26} {total:>9.1} {net:>14.1}", "all of them");
    println!(
        "    context switches of the platform's threads: {:.1} per request",
        // A lower bound: a blocking-pool thread that exits over the load takes its count along.
        switches_after.saturating_sub(switches_before) as f64 / requests
    );
    if let Some((mut child, data)) = profile {
        child.wait().unwrap();
        let report = std::process::Command::new("perf")
            .args([
                "report",
                "-q",
                "--stdio",
                "--no-children",
                "--percent-limit",
                "0.7",
            ])
            .args(["--sort", "comm,dso,sym", "-i"])
            .arg(&data)
            .output()
            .unwrap();
        println!("\n  where it went (perf at 499 Hz, by thread kind; symbols over 0.7 %):");
        for line in String::from_utf8_lossy(&report.stdout).lines().take(60) {
            println!("    {}", line.trim_end());
        }
    }
}

fn main() {
    let full = Size {
        resources: setting("BENCH_RESOURCES", 100_000),
        plans: setting("BENCH_PLANS", 10_000),
        records: setting("BENCH_AUDIT_RECORDS", 1_000_000),
    };
    let small = Size {
        resources: full.resources / 100,
        plans: full.plans / 100,
        records: full.records / 100,
    };
    let samples = setting("BENCH_SAMPLES", 200);
    let platforms = std::env::var("BENCH_PLATFORMS").unwrap_or_else(|_| "dev,cluster".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut table = Vec::new();
    for kind in platforms.split(',').map(str::trim) {
        let dir = tempfile::tempdir().unwrap();
        let p = match kind {
            "dev" => dev(dir.path()),
            "cluster" => cluster(dir.path()),
            other => panic!("BENCH_PLATFORMS: no platform {other} (dev, cluster)"),
        };
        println!("\n{}: {} process(es)", p.name, p.processes.len());
        let t = templates(&p, &rt);
        let mut seeded = Seeded::default();
        let mut memory = vec![rss(&p)];
        let mut by_size = Vec::new();
        for size in [small, full] {
            seed(&p, &rt, &t, &mut seeded, size);
            memory.push(rss(&p));
            let figures: Vec<_> = requests(&seeded)
                .into_iter()
                .map(|(what, page, path)| {
                    let (p50, p99) = measure(&p, &path, samples);
                    println!("  {what:<46} {page:<5} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms");
                    (what, page, p50, p99)
                })
                .collect();
            memory.push(rss(&p));
            by_size.push(figures);
        }
        explain_lists(&p, &rt, &seeded);
        let one = format!("{H}/resources/{}", deep(&seeded.resources));
        cost_split(&p, &one, setting("BENCH_SECONDS", 10) as u64);
        let stages = "start · seeded 1 % · after its run · seeded 100 % · after its run";
        println!("\n  resident memory (MiB): {stages}");
        for (i, (name, _)) in p.processes.iter().enumerate() {
            let row: Vec<String> = memory.iter().map(|m| format!("{:.0}", m[i])).collect();
            println!("    {name:<24} {}", row.join(" · "));
        }
        for (a, b) in by_size[0].iter().zip(&by_size[1]) {
            table.push((p.name, a.0, a.1, a.3, b.2, b.3));
        }
    }
    println!(
        "\nscale table: p99 through the gateway at {} and at {} ({samples} calls each)",
        small.label(),
        full.label()
    );
    println!("| platform | call | page | p99 at 1 % | p50 at 100 % | p99 at 100 % | p99 grew |");
    println!("|---|---|---|---|---|---|---|");
    for (platform, what, page, small99, full50, full99) in table {
        let grew = full99 / small99;
        println!(
            "| {platform} | {what} | {page} | {small99:.2} ms | {full50:.2} ms \
             | {full99:.2} ms | {grew:.2}× |"
        );
    }
}
