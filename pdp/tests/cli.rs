//! The `pdp` binary as IT teams and developers run it.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

#[path = "../../tests/support/mod.rs"]
mod support;
use support::*;

#[test]
fn an_unknown_variable_stops_every_command_and_is_named() {
    for command in [
        &["config"][..],
        &["version"],
        &["migrate"],
        &["dev"],
        &["serve", "planning"],
    ] {
        let out = pdp(command, &[("PDP_STORE__URLL", "postgres://x")]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "pdp {command:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("store.urll"),
            "pdp {command:?}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("PDP_STORE__URLL"), "{}", stderr(&out));
    }
}

#[test]
fn a_bad_value_in_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pdp.toml");
    std::fs::write(&file, "[store]\npool_size = \"many\"\n").unwrap();
    let out = pdp(&["config", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("store.pool_size"), "{}", stderr(&out));
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_masked() {
    let out = pdp(
        &["config"],
        &[
            ("PDP_MODE", "cluster"),
            ("PDP_STORE__URL", "postgres://pdp:s3cret@db/pdp"),
            ("PDP_IDENTITY__HMAC_KEY", "k3y-material"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("mode = \"cluster\""), "{text}");
    assert!(text.contains("postgres://pdp:********@db/pdp"), "{text}");
    assert!(
        !text.contains("s3cret") && !text.contains("k3y-material"),
        "{text}"
    );
}

#[test]
fn serve_names_the_services_it_knows() {
    let out = pdp(&["serve", "nonesuch"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown service `nonesuch`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn migrate_applies_once_on_postgres() {
    // A database of its own, so that the platform schema starts empty.
    let own = database("cli");
    let first = pdp(&["migrate"], &[("PDP_STORE__URL", &own)]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains("platform: applied"));
    let second = pdp(&["migrate"], &[("PDP_STORE__URL", &own)]);
    assert!(String::from_utf8_lossy(&second.stdout).contains("platform: up to date"));
}

/// The migrations each `pdp migrate` output says it applied, by store.
fn applied(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (owner, rest) = line.split_once(": applied ")?;
            Some(
                rest.split(", ")
                    .map(|m| format!("{owner}/{m}"))
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect()
}

#[test]
fn two_migrations_at_once_both_succeed_and_apply_each_migration_once() {
    let own = database("cli_race");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pdp"))
            .arg("migrate")
            .env_clear()
            .env("PDP_STORE__URL", &own)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (run(), run());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let mut both = applied(&a);
    both.extend(applied(&b));
    let mut once = both.clone();
    once.sort();
    once.dedup();
    assert_eq!(both.len(), once.len(), "applied twice: {both:?}");
    assert!(
        once.iter().any(|m| m.starts_with("planning/"))
            && once.iter().any(|m| m.starts_with("platform/")),
        "{once:?}"
    );
    let again = pdp(&["migrate"], &[("PDP_STORE__URL", &own)]);
    assert!(
        applied(&again).is_empty(),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

/// `pdp serve planning` in cluster mode on the database `own`, its HTTP on `http_listen`.
fn serve_planning(dir: &std::path::Path, own: &str, http_listen: &str) -> Running {
    let grpc_listen = format!("127.0.0.1:{}", free_port());
    let data_dir = dir.to_str().unwrap().to_string();
    start_serve(
        dir,
        "planning",
        &[
            ("PDP_MODE", "cluster"),
            ("PDP_DATA_DIR", &data_dir),
            ("PDP_STORE__URL", own),
            (
                "PDP_IDENTITY__HMAC_KEY",
                "cli-test-hmac-key-of-at-least-32-characters",
            ),
            ("PDP_HTTP__LISTEN", http_listen),
            ("PDP_GRPC__LISTEN", &grpc_listen),
        ],
    )
}

/// A service whose HTTP port is taken stops and says so, instead of serving gRPC with no health
/// or metrics that anyone could see (what the fault runs once found).
#[test]
fn serve_stops_and_names_its_http_port_when_it_is_taken() {
    let own = database("cli_port");
    let migrated = pdp(&["migrate"], &[("PDP_STORE__URL", &own)]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_listen = taken.local_addr().unwrap().to_string();
    let mut child = serve_planning(dir.path(), &own, &http_listen);
    let status = eventually(30, "pdp serve stops", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(dir.path().join("pdp.log")).unwrap();
    assert!(
        log.contains(&format!("cannot listen on {http_listen}")),
        "{log}"
    );
}

#[test]
fn serve_waits_not_ready_until_pdp_migrate_has_run() {
    let own = database("cli_wait");
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let http_listen = format!("127.0.0.1:{http}");
    let mut child = serve_planning(dir.path(), &own, &http_listen);
    let body = eventually(30, "readyz names the pending migrations", || {
        match get(http, "/readyz") {
            Some((503, body)) if body.contains("pending") => Some(body),
            _ => {
                assert!(child.try_wait().unwrap().is_none(), "pdp serve exited");
                None
            }
        }
    });
    assert!(
        body.contains("planning: ") && body.contains("pdp migrate"),
        "{body}"
    );
    assert_eq!(
        get(http, "/healthz").map(|(s, _)| s),
        Some(200),
        "alive meanwhile"
    );

    let out = pdp(&["migrate"], &[("PDP_STORE__URL", &own)]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_ready(&mut child, http);
    assert_eq!(interrupt_and_wait(child, dir.path()).code(), Some(0));
}

#[test]
fn dev_serves_health_and_stops_cleanly_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start_dev(data.path(), port);
    let ready = wait_ready(&mut child, port);
    assert!(ready.contains("\"store\":\"ok\""), "{ready}");
    assert!(ready.contains("\"event_log\":\"ok\""), "{ready}");
    assert_eq!(get(port, "/healthz").unwrap().0, 200);
    let (status, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("pdp_http_request_duration_seconds_count{method=\"GET\",status=\"200\"}"),
        "served requests are counted: {metrics}"
    );
    // A call through the gateway is a call a service served: counted by method and status code.
    let checkpoints = "/api/v1/tenants/230000/public/audit/checkpoints";
    assert_eq!(get(port, checkpoints).unwrap().0, 200);
    let (_, metrics) = get(port, "/metrics").unwrap();
    let served = metrics.lines().any(|l| {
        l.starts_with("pdp_grpc_server_duration_seconds_count{")
            && l.contains("code=\"Ok\"")
            && l.contains("method=\"/pdp.termination.v1.PublicAuditService/ListAuditCheckpoints\"")
    });
    assert!(served, "gRPC calls are counted: {metrics}");
    assert!(
        metrics.contains("pdp_outbox_oldest_pending_age_seconds{"),
        "the outbox's backlog has an age: {metrics}"
    );
    // What decides the gateway's capacity: its audit writes, what it loaded when, its token
    // cache.
    let plans = "/api/v1/tenants/230000/plans";
    let refused = get_with(port, plans, "Authorization: Bearer not-a-token\r\n").unwrap();
    assert_eq!(refused.0, 401, "{}", refused.1);
    let (_, metrics) = get(port, "/metrics").unwrap();
    for family in [
        "pdp_gateway_audit_write_seconds_count{outcome=\"ok\"}",
        "pdp_gateway_loaded_timestamp_seconds{what=\"policy\"}",
        "pdp_gateway_loaded_timestamp_seconds{what=\"grants\"}",
        "pdp_gateway_token_cache_total{outcome=\"miss\"}",
        "pdp_gateway_audit_queue_depth",
        "pdp_gateway_request_duration_seconds_count{operation=\"pdp.planning.v1.PlanService/\
         ListPlans\",status_class=\"4xx\"}",
    ] {
        assert!(metrics.contains(family), "{family} in {metrics}");
    }
    // The domain gauges, per tenant, once each service has counted (at its start).
    let gauges = [
        "pdp_plans{state=\"EFFECTIVE\",tenant=\"230100\"} 0",
        "pdp_selections_open{tenant=\"230100\"} 0",
        "pdp_notices_ending{tenant=\"230000\"} 0",
        "pdp_agreements_expiring{tenant=\"230200\"} 0",
        "pdp_overdue{tenant=\"230100\",what=\"quality_ticket\"} 0",
    ];
    eventually(10, "the domain gauges are counted", || {
        get(port, "/metrics").and_then(|(_, m)| gauges.iter().all(|g| m.contains(g)).then_some(()))
    });
    // Each consumer measures what waits for it once a second.
    let lag = "pdp_consumer_lag{consumer=\"oversight-watch\",topic=\"pdp.audit\"}";
    eventually(10, "the consumers' lag is measured", || {
        get(port, "/metrics").and_then(|(_, m)| m.contains(lag).then_some(()))
    });

    let status = interrupt_and_wait(child, data.path());
    assert_eq!(status.code(), Some(0), "Ctrl-C is a clean stop");
    assert!(data.path().join("platform.db").exists());
    assert!(data.path().join("events.db").exists());

    // The same data directory starts again.
    let port = free_port();
    let mut again = start_dev(data.path(), port);
    wait_ready(&mut again, port);
    assert_eq!(interrupt_and_wait(again, data.path()).code(), Some(0));
}

#[test]
fn dev_serves_the_gateway_and_accepts_its_own_tokens() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let out = pdp(
        &[
            "token",
            "--data-dir",
            dir,
            "--tenant",
            "230100",
            "--role",
            "operator",
            "--org",
            "acme",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let bad = pdp(
        &[
            "token",
            "--data-dir",
            dir,
            "--tenant",
            "110000",
            "--role",
            "operator",
            "--org",
            "x",
        ],
        &[],
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("110000"), "{}", stderr(&bad));
    let bad = pdp(
        &[
            "token",
            "--data-dir",
            dir,
            "--tenant",
            "230100",
            "--role",
            "root",
            "--org",
            "x",
        ],
        &[],
    );
    assert!(
        stderr(&bad).contains("--role root is not a role a token carries"),
        "{}",
        stderr(&bad)
    );

    let port = free_port();
    let mut child = start_dev(data.path(), port);
    wait_ready(&mut child, port);
    let (status, body) = get(port, "/api/v1/tenants").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("哈尔滨市") && body.contains("Daxing'anling"),
        "{body}"
    );
    let (status, body) = get_with(
        port,
        "/api/v1/tenants/230100/nothing",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(
        body.to_lowercase().contains("x-request-id"),
        "every answer carries a request id: {body}"
    );
    assert_eq!(interrupt_and_wait(child, data.path()).code(), Some(0));
}

#[test]
fn calendar_check_validates_a_deployment_file_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("holidays.toml");
    std::fs::write(
        &good,
        "[[year]]\nyear = 2027\ndays_off = [\"2027-01-01\"]\nworking_days = []\n",
    )
    .unwrap();
    let out = pdp(&["calendar", "check", good.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("it holds 2027") && text.contains("2025, 2026, 2027"),
        "{text}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[year]]\nyear = 2027\ndays_off = []\nworking_days = [\"2027-01-04\"]\n",
    )
    .unwrap();
    let out = pdp(&["calendar", "check", bad.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("2027-01-04 is not a weekend day"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dead_letters_are_listed_and_an_unknown_one_is_not_replayed() {
    let own = database("cli_letters");
    let migrated = pdp(&["migrate"], &[("PDP_STORE__URL", &own)]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let out = pdp(&["events", "dead-letters"], &[("PDP_STORE__URL", &own)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("store\tid\tconsumer\ttype"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(&out).contains("0 dead letter(s)"),
        "{}",
        stderr(&out)
    );
    let out = pdp(&["events", "replay", "nope"], &[("PDP_STORE__URL", &own)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no dead letter nope in any store"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_gateway_serves_metrics_only_on_its_internal_listener_and_cuts_off_a_stalled_body() {
    use std::io::{Read, Write};
    let data = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(), free_port());
    let metrics_listen = format!("127.0.0.1:{metrics}");
    let mut child = start_dev_with(
        data.path(),
        port,
        &[("PDP_HTTP__METRICS_LISTEN", metrics_listen.as_str())],
    );
    wait_ready(&mut child, port);
    let (status, _) = get(port, "/metrics").unwrap();
    assert_eq!(status, 404, "no metrics on the public listener");
    let (status, text) = get(metrics, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("pdp_"), "{text}");

    // A caller who is allowed sends a head that promises 100 bytes, then stalls.
    let dir = data.path().to_str().unwrap();
    let provider = token(dir, "230100", "provider", "harbin-transport");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /api/v1/tenants/230100/resources HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {provider}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\nConnection: close\r\n\r\n{{\"name\""
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    // Nobody's body is read before the caller is known: a stranger's is refused unread.
    let mut stranger = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stranger
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        stranger,
        "POST /api/v1/tenants/230100/resources HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    stranger.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 401", "answered before any body arrived");
    assert_eq!(interrupt_and_wait(child, data.path()).code(), Some(0));
}
