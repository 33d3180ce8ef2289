//! Running `pdp` in tests: commands, `pdp dev` processes and a small HTTP/1.1 client (std only,
//! so the tests speak to the gateway exactly as a front end's HTTP stack would).
#![allow(dead_code)] // each test binary uses its own part

pub mod cluster;
pub mod servers;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn pdp(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pdp"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("pdp runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port nothing listens on, below Linux's ephemeral range (32768 and up): a port the system
/// handed out for binding to 0 is free only until the next outgoing connection of any process
/// takes it, which with a cluster's dozens of connections happened between the test picking a
/// port and the process binding it. Never the same port twice in one test process: a cluster
/// picks thirty before any is bound.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), 20_000..32_000);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    get_with(port, path, "")
}

/// A GET with extra header lines (each ending in CRLF).
pub fn get_with(port: u16, path: &str, headers: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

/// A `pdp` process a test started, killed when dropped: a test that panics leaves nothing
/// running (a `pdp dev` left behind holds its ports and PostgreSQL connections, and the tests
/// after it fail for want of them).
#[derive(Debug)]
pub struct Running(Option<Child>);

impl Running {
    /// The process, no longer killed on drop.
    pub fn into_child(mut self) -> Child {
        self.0.take().expect("the process is held")
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("the process is held")
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("the process is held")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn start_dev(data: &std::path::Path, port: u16) -> Running {
    start_dev_with(data, port, &[])
}

/// `pdp dev` with extra `PDP_*` variables.
pub fn start_dev_with(data: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Running {
    Running(Some(
        Command::new(env!("CARGO_BIN_EXE_pdp"))
            .args(["dev", "--data-dir", data.to_str().unwrap(), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env_clear()
            // Services take free gRPC ports, so that dev processes of parallel tests do not meet.
            .env("PDP_GRPC__LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            // A file, not a pipe nobody reads: a full pipe would block the process.
            .stderr(std::fs::File::create(data.join("pdp.log")).unwrap())
            .spawn()
            .expect("pdp dev starts"),
    ))
}

/// The sandbox's Ballista cluster as processes: `pdp sandbox scheduler` and one
/// `pdp sandbox executor`, reading the sandbox directory of the data directory `data` (as
/// `pdp dev` does); both killed when dropped.
pub struct SandboxCluster {
    children: Vec<Child>,
    /// `df://127.0.0.1:<port>`: what `sandbox.ballista_scheduler` names.
    pub url: String,
}

impl SandboxCluster {
    pub fn start(data: &std::path::Path) -> Self {
        let scheduler = free_port();
        // An executor takes two ports: its own and the next.
        let executor = loop {
            let port = free_port();
            if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let member = |name: &str, args: Vec<String>| {
            Command::new(env!("CARGO_BIN_EXE_pdp"))
                .arg("sandbox")
                .args(args)
                .env_clear()
                .env("PDP_DATA_DIR", data)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(data.join(format!("{name}.log"))).unwrap())
                .spawn()
                .expect("pdp sandbox starts")
        };
        let children = vec![
            member(
                "scheduler",
                vec![
                    "scheduler".into(),
                    format!("--listen=127.0.0.1:{scheduler}"),
                    "--external-host=127.0.0.1".into(),
                ],
            ),
            member(
                "executor",
                vec![
                    "executor".into(),
                    format!("--listen=127.0.0.1:{executor}"),
                    "--external-host=127.0.0.1".into(),
                    format!("--scheduler=127.0.0.1:{scheduler}"),
                    "--vcores=2".into(),
                    "--memory-mib=256".into(),
                ],
            ),
        ];
        Self {
            children,
            url: format!("df://127.0.0.1:{scheduler}"),
        }
    }
}

impl Drop for SandboxCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `pdp serve <service>` with `PDP_*` variables; its log goes to `dir/pdp.log`.
pub fn start_serve(dir: &std::path::Path, service: &str, env: &[(&str, &str)]) -> Running {
    Running(Some(
        Command::new(env!("CARGO_BIN_EXE_pdp"))
            .args(["serve", service])
            .env_clear()
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("pdp.log")).unwrap())
            .spawn()
            .expect("pdp serve starts"),
    ))
}

/// How many times longer [`eventually`] waits: a fault run sets it, since what events bring
/// arrives only once the consumers a fault struck have rejoined their groups.
pub static PATIENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Slowest [`eventually`] of the process so far, in milliseconds: how long effects took to come.
pub static SLOWEST_WAIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Polls `probe` every 200 ms until it returns `Some`, for at most `seconds` (times
/// [`PATIENCE`]).
pub fn eventually<T>(seconds: u64, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    use std::sync::atomic::Ordering;
    let seconds = seconds * PATIENCE.load(Ordering::Relaxed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    loop {
        if let Some(value) = probe() {
            let waited = started.elapsed().as_millis() as u64;
            SLOWEST_WAIT_MS.fetch_max(waited, Ordering::Relaxed);
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {seconds} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn wait_ready(child: &mut Child, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some((200, body)) = get(port, "/readyz") {
            return body;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("pdp exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("pdp not ready within 30s");
}

pub fn interrupt_and_wait(child: Running, data: &std::path::Path) -> std::process::ExitStatus {
    let status = interrupt_and_wait_inner(child.into_child());
    if status.is_none() {
        let log = std::fs::read_to_string(data.join("pdp.log")).unwrap_or_default();
        panic!("pdp dev did not stop after Ctrl-C; its log:\n{log}");
    }
    status.unwrap()
}

pub fn interrupt_and_wait_inner(mut child: Child) -> Option<std::process::ExitStatus> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh PostgreSQL database `<name>_<pid>` (dropped first if a run left it); its URL.
pub fn database(name: &str) -> String {
    database_at(&servers::Servers::from_env().database, name)
}

/// [`database`] on the server of `url` (a database its user may create databases from).
pub fn database_at(url: &str, name: &str) -> String {
    let db = format!("{name}_{}", std::process::id());
    let admin = Command::new("psql")
        .args([
            url,
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS {db}"),
            "-c",
            &format!("CREATE DATABASE {db}"),
        ])
        .output()
        .expect("psql runs");
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    format!("{}/{db}", url.rsplit_once('/').unwrap().0)
}

/// A request with an optional bearer token and JSON body; the answer's status and JSON body.
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    call_with(port, method, path, token, body, "")
}

/// [`call`] with extra header lines (each ending in CRLF).
pub fn call_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
    headers: &str,
) -> (u16, serde_json::Value) {
    try_call_with(port, method, path, token, body, headers)
        .unwrap_or_else(|e| panic!("{method} {path}: no answer from the gateway: {e}"))
}

/// [`call_with`], or the error of a connection that failed or closed without an answer (a
/// gateway that is down or was killed mid-request).
pub fn try_call_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
    headers: &str,
) -> std::io::Result<(u16, serde_json::Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}{headers}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let no_answer = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no HTTP answer");
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(no_answer)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(no_answer)?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        unchunk(rest)
    } else {
        rest.to_string()
    };
    let json = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body))
    };
    Ok((status, json))
}

/// A streamed upload: `PUT path` with `content_type`, its body sent in HTTP/1.1 chunks of
/// `piece` bytes as a client streaming a large file would, never announcing its length.
pub fn upload(
    port: u16,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
    piece: usize,
) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("gateway listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    for part in body.chunks(piece.max(1)) {
        // The gateway may answer (and close) before the whole body is sent: a refusal.
        if write!(stream, "{:x}\r\n", part.len()).is_err()
            || stream.write_all(part).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(rest)
    } else {
        rest.to_string()
    };
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, json)
}

fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

/// A dev token printed by `pdp token` for the data directory `dir`.
pub fn token(dir: &str, tenant: &str, role: &str, org: &str) -> String {
    let out = pdp(
        &[
            "token",
            "--data-dir",
            dir,
            "--tenant",
            tenant,
            "--role",
            role,
            "--org",
            org,
            "--subject",
            &format!("{role}-{tenant}"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn today_in_shanghai() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d")
        .to_string()
}

/// A Harbin plan with every section of 第十一条 and `resource_id` in scope.
pub fn plan_body(resource_id: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "哈尔滨公共交通数据授权运营",
        "mode": "AUTHORIZATION_MODE_BY_SCENARIO",
        "sections": {
            "necessity": {
                "lifecycle_management": "on the platform", "social_demand": "commuters",
                "market_size": "CNY 40m", "expected_results": "transit products",
                "benefits": "shorter commutes", "risk_control": "sandbox only"
            },
            "operator_conditions": {
                "funding": "CNY 10m", "management": "ISO 27001", "technology": "privacy computing",
                "service": "7x24", "security": "no incident in 3 years"
            },
            "scope": { "items": [{
                "resource_id": resource_id, "update_frequency": "UPDATE_FREQUENCY_DAILY",
                "data_quality": "complete"
            }]},
            "implementation": {
                "period_start": "2027-01-01", "period_end": "2029-12-31",
                "construction": "products", "technical_safeguards": "platform",
                "schedule": "three phases", "evaluation_standards": "yearly",
                "exit_mechanism": "handover", "asset_management": "operator owns products"
            },
            "scenarios": { "items": [{ "name": "bus arrival prediction" }] },
            "products": { "items": [
                { "name": "arrivals", "class": "PRODUCT_CLASS_PUBLIC_GOVERNANCE_AND_WELFARE", "form": "app" },
                { "name": "logistics index", "class": "PRODUCT_CLASS_INDUSTRY_DEVELOPMENT", "form": "API" }
            ]},
            "accounting": { "cost_accounting": "ledger", "revenue_accounting": "ledger", "revenue_distribution": "who invests benefits" },
            "security": { "data_security": "level 3", "personal_information_protection": "de-identified", "emergency_response": "drills" },
            "rights_and_duties": { "rights_and_duties": "per agreement", "incentives": "renewal priority" },
            "supervision": { "supervision": "quarterly", "evaluation": "yearly" },
            "other_matters": "none"
        }
    })
}

/// A resource of the tenant at `h` (`/api/v1/tenants/230100`) created, described and registered
/// by `provider`; its id.
pub fn registered_resource(port: u16, h: &str, provider: &str) -> String {
    let (status, created) = call(
        port,
        "POST",
        &format!("{h}/resources"),
        Some(provider),
        Some(&serde_json::json!({
            "name": "Bus arrivals", "provider_unit": "Harbin Transport Bureau",
            "sector": "transport", "schema": [{ "name": "stop_id", "type": "string" }],
            "classification": "DATA_CLASS_GENERAL", "sensitivity": "SENSITIVITY_LOW",
            "update_frequency": "UPDATE_FREQUENCY_DAILY", "quality_statement": "checked daily"
        })),
    );
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, registered) = call(
        port,
        "POST",
        &format!("{h}/resources/{id}:register"),
        Some(provider),
        Some(&serde_json::json!({})),
    );
    assert_eq!(status, 200, "{registered}");
    id
}

/// The steps of a plan's approval chain, in order, with the body each takes (dated `today`).
pub fn approval_steps(today: &str) -> [(&'static str, serde_json::Value); 4] {
    use serde_json::json;
    [
        ("submit", json!({})),
        (
            "review",
            json!({ "review": { "summary": "feasible", "reviewed_on": today,
                    "departments_consulted": ["Transport Bureau"] } }),
        ),
        (
            "decide",
            json!({ "decision": { "decided_on": today, "body": "bureau party group",
                    "outcome": "DECISION_OUTCOME_AGREED" } }),
        ),
        (
            "approve",
            json!({ "approval": { "document_number": "哈政函〔2026〕88号", "approved_on": today,
                    "effective_on": today } }),
        ),
    ]
}
