//! `make chaos`: the cluster's walk (`authorization::lifecycle` on `support::cluster`, every
//! service its own process, two instances, one gateway) run again and again with faults struck at
//! seeded random points: `kill -9` of every service process of both instances and of the
//! gateway (each started again at once, as Kubernetes would), a broker crash and restart, a
//! PostgreSQL crash and restart, and Redis gone for a few seconds while requests go on. Each run
//! has its own broker, PostgreSQL and Redis (`support::servers`), so that it can crash them and
//! count on a clean slate.
//!
//! The walk asserts what a person would check at each step, as in CI; the client retries as a
//! front end should (a lost connection or a 502/503/504 again after a pause, writes with the same
//! `Idempotency-Key`). After each run it counts, in the databases: events published (outbox rows)
//! against events applied by each consumer (inbox rows; none may be missing, and the inbox's key
//! makes a second application impossible), audit records archived twice, requests answered
//! against gateway records archived for them, and the time each fault took to recover from.
//!
//! `CHAOS_RUNS` (20) runs, none started after `CHAOS_MINUTES` (120); seeds from `CHAOS_SEED`
//! (random) up, each printed so that a failed run can be replayed alone; `CHAOS_FAULTS` keeps
//! some kinds of fault only; the walk waits `CHAOS_PATIENCE` (4) times longer than in CI for
//! what events bring, and the table says how long the slowest took.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

mod authorization;
mod support;
use authorization::{Answer, Ending, Options, Platform, Run};
use support::cluster::{Cluster, HARBIN, SERVICES, Setup};
use support::servers::PrivateServers;
use support::*;

/// The steps of the walk where faults may strike (`Platform::step`).
const STEPS: usize = 14;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

#[test]
#[ignore = "minutes per run: `make chaos` runs it (CHAOS_RUNS, CHAOS_MINUTES, CHAOS_SEED)"]
fn the_whole_authorization_survives_faults() {
    let runs = env_number("CHAOS_RUNS", 20);
    let bound = Duration::from_secs(60 * env_number("CHAOS_MINUTES", 120));
    let first_seed = env_number("CHAOS_SEED", rand::random::<u32>() as u64);
    let started = Instant::now();
    let mut reports = Vec::new();
    let patience = env_number("CHAOS_PATIENCE", 4);
    support::PATIENCE.store(patience, std::sync::atomic::Ordering::Relaxed);
    for i in 0..runs {
        if started.elapsed() > bound {
            eprintln!("chaos: the time bound ends the series after {i} runs");
            break;
        }
        let seed = first_seed + i;
        eprintln!(
            "chaos run {}/{runs}: seed {seed} (alone: CHAOS_SEED={seed} CHAOS_RUNS=1 make chaos)",
            i + 1
        );
        let report = Arc::new(Mutex::new(Report {
            seed,
            ..Report::default()
        }));
        let shared = report.clone();
        let begun = Instant::now();
        support::SLOWEST_WAIT_MS.store(0, std::sync::atomic::Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            authorization::lifecycle(
                Options {
                    on_kafka: true,
                    ending: Ending::Termination,
                },
                |run| Box::new(Chaos::start(run, seed, shared)),
            )
        }));
        let mut report = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
        report.seconds = begun.elapsed().as_secs_f64();
        report.slowest_wait =
            support::SLOWEST_WAIT_MS.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0;
        report.failure = outcome.err().map(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        });
        eprintln!("{}", report.row());
        reports.push(report);
    }
    println!("\n{}", Report::HEADER);
    for report in &reports {
        println!("{}", report.row());
    }
    println!("{}", Report::summary(&reports));
    let failed: Vec<u64> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.seed)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} runs failed; their seeds: {failed:?}",
        failed.len(),
        reports.len()
    );
}

/// What one run counted.
#[derive(Debug, Clone, Default)]
struct Report {
    seed: u64,
    seconds: f64,
    /// `<fault> @ <step>`, in the order struck.
    faults: Vec<String>,
    /// Seconds from each fault until every process was ready again, by kind of fault.
    recoveries: BTreeMap<&'static str, Vec<f64>>,
    /// The longest the walk waited for an effect events bring (a grant, an alert, a filing):
    /// how long the consumers a fault struck took to come back.
    slowest_wait: f64,
    /// Answers the gateway gave, and attempts made again after no answer or a 502/503/504.
    answered: u64,
    retried: u64,
    acknowledged_writes: u64,
    /// Outbox rows (every store of both instances) and inbox rows (every consumer).
    published: u64,
    applied: u64,
    /// Events of a consumer's topics and tenants it never applied.
    lost: u64,
    /// Archived audit records of one event more than once.
    archived_twice: u64,
    /// Answered requests (not 5xx, not 429) without a gateway record in their tenant's archive.
    unaudited: u64,
    failure: Option<String>,
}

impl Report {
    const HEADER: &str = "seed        | result | s    | faults | answered | retried | writes ok \
                          | published | applied | lost | twice | unaudited | slowest effect \
                          | worst recovery";

    fn passed(&self) -> bool {
        self.failure.is_none() && self.lost == 0 && self.archived_twice == 0 && self.unaudited == 0
    }

    fn worst_recovery(&self) -> String {
        self.recoveries
            .iter()
            .filter_map(|(kind, times)| {
                let worst = times
                    .iter()
                    .cloned()
                    .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))?;
                Some(format!("{kind} {worst:.1}s"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn row(&self) -> String {
        let result = if self.passed() { "pass" } else { "FAIL" };
        let mut row = format!(
            "{:<11} | {result:<6} | {:<4.0} | {:<6} | {:<8} | {:<7} | {:<9} | {:<9} | {:<7} | \
             {:<4} | {:<5} | {:<9} | {:<14} | {}",
            self.seed,
            self.seconds,
            self.faults.len(),
            self.answered,
            self.retried,
            self.acknowledged_writes,
            self.published,
            self.applied,
            self.lost,
            self.archived_twice,
            self.unaudited,
            format!("{:.1} s", self.slowest_wait),
            self.worst_recovery()
        );
        if let Some(failure) = &self.failure {
            let first = failure.lines().next().unwrap_or_default();
            row.push_str(&format!("\n  failed: {}", &first[..first.len().min(300)]));
        }
        row
    }

    /// Recovery times over every run, by kind of fault: median and worst.
    fn summary(reports: &[Report]) -> String {
        let mut all: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for report in reports {
            for (kind, times) in &report.recoveries {
                all.entry(kind).or_default().extend(times);
            }
        }
        let mut lines = vec![format!(
            "{} runs, {} passed; recovery (every process ready again) by fault:",
            reports.len(),
            reports.iter().filter(|r| r.passed()).count()
        )];
        for (kind, mut times) in all {
            times.sort_by(f64::total_cmp);
            lines.push(format!(
                "  {kind}: {} faults, median {:.1} s, worst {:.1} s",
                times.len(),
                times[times.len() / 2],
                times[times.len() - 1]
            ));
        }
        lines.join("\n")
    }
}

/// A fault and where it strikes.
#[derive(Debug, Clone)]
enum Fault {
    /// `kill -9` of a process (`gateway`, `harbin/requests`), started again at once.
    Kill(String),
    /// The broker crashes and starts again on its data.
    Broker,
    /// PostgreSQL crashes and starts again, recovering from its WAL.
    Postgres,
    /// Redis is gone for these seconds while the walk goes on.
    Redis(u64),
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Self::Kill(name) if name == "gateway" => "kill -9 gateway",
            Self::Kill(_) => "kill -9 service",
            Self::Broker => "broker restart",
            Self::Postgres => "postgres restart",
            Self::Redis(_) => "redis outage",
        }
    }
}

/// Every fault once, each at a seeded step and after a seeded pause (so that it lands while the
/// step's events are still being consumed).
fn plan(seed: u64) -> Vec<(usize, Duration, Fault)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults: Vec<Fault> = ["shared", "harbin"]
        .iter()
        .flat_map(|instance| SERVICES.map(|s| Fault::Kill(format!("{instance}/{s}"))))
        .collect();
    faults.push(Fault::Kill("gateway".into()));
    faults.push(Fault::Broker);
    faults.push(Fault::Postgres);
    faults.push(Fault::Redis(rng.gen_range(2..=8)));
    // `CHAOS_FAULTS` (`service,gateway,broker,postgres,redis`) keeps some kinds only: to find
    // which one a failure needs.
    if let Ok(kinds) = std::env::var("CHAOS_FAULTS") {
        faults.retain(|f| {
            let kind = match f {
                Fault::Kill(name) if name == "gateway" => "gateway",
                Fault::Kill(_) => "service",
                Fault::Broker => "broker",
                Fault::Postgres => "postgres",
                Fault::Redis(_) => "redis",
            };
            kinds.split(',').any(|k| k.trim() == kind)
        });
    }
    let mut plan: Vec<_> = faults
        .into_iter()
        .map(|f| {
            let step = rng.gen_range(0..STEPS);
            let pause = Duration::from_millis(rng.gen_range(0..400));
            (step, pause, f)
        })
        .collect();
    plan.sort_by_key(|(step, _, _)| *step);
    plan
}

/// The cluster on private servers, striking the plan's faults as the walk reaches its steps.
struct Chaos {
    cluster: RefCell<Cluster>,
    servers: Arc<Mutex<PrivateServers>>,
    plan: Vec<(usize, Duration, Fault)>,
    step: Cell<usize>,
    seed: u64,
    requests: Cell<u64>,
    /// Every answer: the path's tenant, the request id, the status, whether it was a write.
    answers: RefCell<Vec<(String, String, u16, bool)>>,
    report: Arc<Mutex<Report>>,
    outage: RefCell<Option<std::thread::JoinHandle<()>>>,
}

impl Chaos {
    fn start(run: &Run, seed: u64, report: Arc<Mutex<Report>>) -> Self {
        let servers = PrivateServers::start();
        let cluster = Cluster::start(&Setup {
            config: run.config,
            shift: Some(run.shift),
            env: &[],
            run: run.name,
            servers: &servers.servers(),
        });
        Self {
            cluster: RefCell::new(cluster),
            servers: Arc::new(Mutex::new(servers)),
            plan: plan(seed),
            step: Cell::new(0),
            seed,
            requests: Cell::new(0),
            answers: RefCell::new(Vec::new()),
            report,
            outage: RefCell::new(None),
        }
    }

    fn report(&self) -> std::sync::MutexGuard<'_, Report> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn strike(&self, fault: &Fault) {
        let started = Instant::now();
        match fault {
            Fault::Kill(name) => self.cluster.borrow_mut().process(name).restart(),
            Fault::Broker => {
                self.servers.lock().unwrap().broker.restart();
                self.cluster.borrow_mut().wait_all_ready(120);
            }
            Fault::Postgres => {
                self.servers.lock().unwrap().postgres.restart();
                self.cluster.borrow_mut().wait_all_ready(120);
            }
            Fault::Redis(seconds) => {
                self.servers.lock().unwrap().redis.crash();
                let servers = self.servers.clone();
                let seconds = *seconds;
                *self.outage.borrow_mut() = Some(std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(seconds));
                    servers.lock().unwrap().redis.start_again();
                }));
                self.report()
                    .recoveries
                    .entry(fault.kind())
                    .or_default()
                    .push(seconds as f64);
                return;
            }
        }
        let took = started.elapsed().as_secs_f64();
        self.report()
            .recoveries
            .entry(fault.kind())
            .or_default()
            .push(took);
    }

    /// Waits for what the walk set going to settle, then counts it in the databases.
    fn count(&self) {
        if let Some(outage) = self.outage.borrow_mut().take() {
            outage.join().unwrap();
        }
        let cluster = self.cluster.borrow();
        let instances = [
            (&cluster.shared, None),
            (&cluster.harbin, Some(HARBIN.to_string())),
        ];
        // Everything written is sent.
        eventually(120, "every outbox row is sent", || {
            let unsent: u64 = instances
                .iter()
                .map(|(i, _)| count_rows(&i.store_url, "pdp_outbox", "sent_at IS NULL"))
                .sum();
            (unsent == 0).then_some(())
        });
        // Every event of a consumer's topics and tenants is in its inbox: counted in the
        // databases, so that an event a killed process acknowledged but never applied counts.
        for _ in 0..60 {
            let published: Vec<Published> = instances
                .iter()
                .flat_map(|(i, _)| outbox(&i.store_url))
                .collect();
            let (mut lost, mut applied) = (0, 0);
            for (instance, only) in &instances {
                let inbox = inbox(&instance.store_url);
                applied += inbox.values().map(BTreeSet::len).sum::<usize>();
                let topics = inbox_topics(&instance.store_url);
                for (consumer, seen) in &inbox {
                    let wanted = topics.get(consumer).cloned().unwrap_or_default();
                    lost += published
                        .iter()
                        .filter(|p| wanted.contains(&p.topic))
                        .filter(|p| match only {
                            Some(t) => p.tenant == *t,
                            None => p.tenant != HARBIN,
                        })
                        .filter(|p| !seen.contains(&p.event_id))
                        .count();
                }
            }
            let mut report = self.report();
            report.published = published.len() as u64;
            report.applied = applied as u64;
            report.lost = lost as u64;
            if lost == 0 {
                break;
            }
            drop(report);
            std::thread::sleep(Duration::from_secs(1));
        }
        // No audit record twice, and every answered request archived in its tenant's chain.
        let answers = self.answers.borrow();
        let tenants: BTreeSet<&str> = answers.iter().map(|(t, _, _, _)| t.as_str()).collect();
        let mut unaudited = 0;
        for _ in 0..60 {
            let mut twice = 0;
            let mut archived: BTreeSet<(String, String)> = BTreeSet::new();
            for tenant in &tenants {
                let url = if *tenant == HARBIN {
                    &cluster.harbin.store_url
                } else {
                    &cluster.shared.store_url
                };
                let distinct = "SELECT count(*) - count(DISTINCT event_id)";
                twice += scalar(url, &as_tenant(tenant, distinct, ""));
                let gateway = "AND source = 'gateway'";
                let ids = lines(url, &as_tenant(tenant, "SELECT target", gateway));
                archived.extend(ids.into_iter().map(|id| (tenant.to_string(), id)));
            }
            unaudited = answers
                .iter()
                .filter(|(_, _, status, _)| *status < 500 && *status != 429)
                .filter(|(t, id, _, _)| !archived.contains(&(t.clone(), id.clone())))
                .count();
            self.report().archived_twice = twice;
            if unaudited == 0 {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        self.report().unaudited = unaudited as u64;
    }
}

impl Platform for Chaos {
    fn port(&self) -> u16 {
        self.cluster.borrow().gateway.http_port
    }

    fn token(&self, tenant: &str, role: &str, org: &str) -> String {
        self.cluster.borrow().token(tenant, role, org)
    }

    fn brokers(&self) -> String {
        self.servers.lock().unwrap().servers().brokers
    }

    /// As a front end retries: no answer, or a 502/503/504, or its first attempt still running
    /// (409), is tried again after a pause for up to two minutes; a write keeps its
    /// `Idempotency-Key` across attempts.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        let n = self.requests.get();
        self.requests.set(n + 1);
        let write = method != "GET";
        let key = format!("chaos-{}-{n}", self.seed);
        let tenant = path
            .strip_prefix("/api/v1/tenants/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(120);
        for attempt in 0.. {
            let id = format!("{key}-{attempt}");
            let mut headers = format!("X-Request-Id: {id}\r\n");
            if write {
                headers.push_str(&format!("Idempotency-Key: {key}\r\n"));
            }
            let answer = try_call_with(self.port(), method, path, token, body, &headers);
            if let Ok((status, _)) = &answer {
                self.answers
                    .borrow_mut()
                    .push((tenant.clone(), id, *status, write));
                let mut report = self.report();
                report.answered += 1;
                if write && (200..300).contains(status) {
                    report.acknowledged_writes += 1;
                }
            }
            let again = match &answer {
                Err(_) => true,
                Ok((status, value)) => {
                    matches!(status, 502..=504)
                        || (*status == 409 && value.to_string().contains("still running"))
                }
            };
            if !again || Instant::now() > deadline {
                return answer
                    .unwrap_or_else(|e| panic!("{method} {path}: no answer in 120 s: {e}"));
            }
            self.report().retried += 1;
            std::thread::sleep(Duration::from_millis(500));
        }
        unreachable!()
    }

    fn step(&self, name: &str) {
        let index = self.step.get();
        self.step.set(index + 1);
        for (_, pause, fault) in self.plan.iter().filter(|(s, _, _)| *s == index) {
            std::thread::sleep(*pause);
            eprintln!("  fault at `{name}`: {fault:?}");
            self.report().faults.push(format!("{fault:?} @ {name}"));
            self.strike(fault);
        }
    }

    fn metrics(&self) -> String {
        self.cluster.borrow().harbin_metrics()
    }

    fn dead_letters(&self) -> String {
        let out = pdp(
            &["events", "dead-letters"],
            &[("PDP_STORE__URL", &self.cluster.borrow().harbin.store_url)],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sandbox_objects(&self, prefix: &str) -> Vec<String> {
        self.cluster.borrow().harbin_sandbox_objects(prefix)
    }

    fn stop(self: Box<Self>) {
        self.count();
        // The gateway first, then the services, each asserting it stopped cleanly; the
        // servers go with `self`.
        self.cluster.borrow_mut().stop_all();
    }
}

impl Drop for Chaos {
    /// A failed run says where its events stopped: rows its stores have not sent, and what
    /// each consumer applied.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let cluster = self.cluster.borrow();
        for instance in [&cluster.shared, &cluster.harbin] {
            let url = &instance.store_url;
            for schema in schemas_with(url, "pdp_outbox") {
                let unsent = scalar(
                    url,
                    &format!("SELECT count(*) FROM \"{schema}\".pdp_outbox WHERE sent_at IS NULL"),
                );
                let oldest = lines(
                    url,
                    &format!(
                        "SELECT min(created_at) FROM \"{schema}\".pdp_outbox \
                         WHERE sent_at IS NULL"
                    ),
                );
                eprintln!(
                    "  {}/{schema}: {unsent} unsent, oldest {oldest:?}",
                    instance.name
                );
            }
            for (consumer, seen) in inbox(url) {
                eprintln!("  {}: {consumer} applied {}", instance.name, seen.len());
            }
        }
    }
}

/// An event as its producer's outbox holds it.
struct Published {
    event_id: String,
    topic: String,
    tenant: String,
}

/// The schemas of `url` that hold `table` (one per service, and the platform's).
fn schemas_with(url: &str, table: &str) -> Vec<String> {
    lines(
        url,
        &format!("SELECT table_schema FROM information_schema.tables WHERE table_name = '{table}'"),
    )
}

fn count_rows(url: &str, table: &str, filter: &str) -> u64 {
    schemas_with(url, table)
        .iter()
        .map(|schema| {
            scalar(
                url,
                &format!("SELECT count(*) FROM \"{schema}\".{table} WHERE {filter}"),
            )
        })
        .sum()
}

fn outbox(url: &str) -> Vec<Published> {
    schemas_with(url, "pdp_outbox")
        .iter()
        .flat_map(|schema| {
            lines(
                url,
                &format!(
                    "SELECT event_id || '|' || topic || '|' || \
                     coalesce(envelope::json->>'tenant', '') FROM \"{schema}\".pdp_outbox"
                ),
            )
        })
        .filter_map(|line| {
            let mut parts = line.splitn(3, '|');
            Some(Published {
                event_id: parts.next()?.to_string(),
                topic: parts.next()?.to_string(),
                tenant: parts.next()?.to_string(),
            })
        })
        .collect()
}

/// Each consumer's applied event ids, over every schema of `url`.
fn inbox(url: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for schema in schemas_with(url, "pdp_inbox") {
        let rows = lines(
            url,
            &format!("SELECT consumer || '|' || event_id FROM \"{schema}\".pdp_inbox"),
        );
        for row in rows {
            if let Some((consumer, id)) = row.split_once('|') {
                seen.entry(consumer.to_string())
                    .or_default()
                    .insert(id.to_string());
            }
        }
    }
    seen
}

/// The topics each consumer has applied events of: those it follows.
fn inbox_topics(url: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut topics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for schema in schemas_with(url, "pdp_inbox") {
        let rows = lines(
            url,
            &format!("SELECT DISTINCT consumer || '|' || topic FROM \"{schema}\".pdp_inbox"),
        );
        for row in rows {
            if let Some((consumer, topic)) = row.split_once('|') {
                topics
                    .entry(consumer.to_string())
                    .or_default()
                    .insert(topic.to_string());
            }
        }
    }
    topics
}

/// `select` over a tenant's records in the audit archive (`and` narrows them), as that tenant:
/// the archive's tables refuse a query without one.
fn as_tenant(tenant: &str, select: &str, and: &str) -> String {
    format!(
        "BEGIN; SET LOCAL pdp.tenant = '{tenant}'; {select} FROM termination.audit_records \
         WHERE tenant = '{tenant}' {and}; COMMIT;"
    )
}

fn lines(url: &str, sql: &str) -> Vec<String> {
    let out = std::process::Command::new("psql")
        .args([url, "-qtAc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn scalar(url: &str, sql: &str) -> u64 {
    lines(url, sql)
        .first()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
