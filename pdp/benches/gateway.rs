//! `make bench`: what the gateway costs a real call, on the real binary.
//!
//! `pdp dev` runs as a developer or a single-node install runs it (gateway, services, SQLite, the
//! embedded event log, the audit trail and its relay, in one process). A provider's catalog entry
//! is read at the same fixed concurrency twice: through the gateway with `wrk` (HTTP/1.1 and JSON,
//! a bearer token, as front ends call), and straight from the planning service with `h2load`
//! (gRPC on one HTTP/2 connection, the identity signed as the gateway signs it, as another service
//! calls). Both load tools are C programs outside the process under test; `make bench-tools`
//! installs them. The figures are each tool's own.
//!
//! Beside them, nginx as a plain reverse proxy under the same wrk load (`nginx.rs`): the line
//! `nginx comparison …` sets the gateway's CPU per request against nginx's worker's.
//!
//! `BENCH_CONCURRENCY` (default `1,32`), `BENCH_ROUNDS` (default 3) and `BENCH_SECONDS` (default
//! 5) set the load, as in the gateway's own bench (`gateway/benches/common/rounds.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot go on should stop

use std::process::Command;
use std::sync::Arc;

use pdp_kit::clock::SystemClock;
use pdp_kit::identity::{Identity, IdentityKey};
use pdp_proto::pdp::planning::v1::{DataResource, GetResourceRequest};
use prost::Message as _;
use serde_json::json;

#[path = "../../tests/support/mod.rs"]
mod support;
use support::*;

const TENANT: &str = "230100";
const PROVIDER: &str = "harbin-transport";
const GET_RESOURCE: &str = "/pdp.planning.v1.ResourceService/GetResource";

#[path = "../../gateway/benches/common/rounds.rs"]
mod rounds;
use rounds::{Cpu, Figures, Rounds, concurrencies, setting};

#[path = "common/nginx.rs"]
mod nginx;

fn main() {
    for tool in ["wrk", "h2load", "nginx"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is missing: run `make bench-tools` first");
    }
    let seconds = setting("BENCH_SECONDS", 5);
    let rounds = setting("BENCH_ROUNDS", 3);

    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let token = token(dir, TENANT, "provider", PROVIDER);
    let http_port = free_port();
    let grpc_port = free_port();
    let grpc = format!("127.0.0.1:{grpc_port}");
    // `pdp dev` puts planning on `grpc.listen` and the next services on the ports above it.
    // The rate limits still run on every request, with room for the whole load.
    let mut child = start_dev_with(
        data.path(),
        http_port,
        &[
            ("PDP_GRPC__LISTEN", grpc.as_str()),
            ("PDP_GATEWAY__TENANT_RATE", "1000000000"),
            ("PDP_GATEWAY__TENANT_BURST", "1000000000"),
            ("PDP_GATEWAY__SUBJECT_RATE", "1000000000"),
            ("PDP_GATEWAY__SUBJECT_BURST", "1000000000"),
        ],
    );
    wait_ready(&mut child, http_port);
    // A failed step must not leave `pdp dev` running behind the bench: `Running` kills it.
    let dev = child;

    let (status, resource) = call(
        http_port,
        "POST",
        &format!("/api/v1/tenants/{TENANT}/resources"),
        Some(&token),
        Some(&json!({ "name": "Bus arrivals", "provider_unit": "Harbin Transport Bureau" })),
    );
    assert_eq!(status, 200, "{resource}");
    let id = resource["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/tenants/{TENANT}/resources/{id}");

    // The gRPC request h2load repeats, framed (no compression, length) and checked once here.
    let request = GetResourceRequest {
        tenant: TENANT.into(),
        id: id.clone(),
    };
    let mut frame = vec![0u8];
    frame.extend((request.encoded_len() as u32).to_be_bytes());
    request.encode(&mut frame).unwrap();
    let body = data.path().join("get-resource.bin");
    std::fs::write(&body, &frame).unwrap();
    let identity = signed_identity(data.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answered = runtime.block_on(get_resource(&grpc, request, &identity));
    assert_eq!(answered.id, id, "the direct call reads the resource");

    let grpc_args = |concurrency: u64, seconds: u64, log: &str| {
        let mut args = vec![
            "-D".to_string(),
            seconds.to_string(),
            "-c1".into(),
            format!("-m{concurrency}"),
            "-t1".into(),
            "-d".into(),
            body.to_str().unwrap().into(),
            "-H".into(),
            "content-type: application/grpc".into(),
            "-H".into(),
            "te: trailers".into(),
        ];
        for (name, value) in &identity {
            args.extend(["-H".into(), format!("{name}: {value}")]);
        }
        args.extend([
            "--log-file".into(),
            log.into(),
            format!("http://{grpc}{GET_RESOURCE}"),
        ]);
        args
    };
    let http_args = |concurrency: u64, seconds: u64| {
        vec![
            "-t1".to_string(),
            format!("-c{concurrency}"),
            format!("-d{seconds}s"),
            "--latency".into(),
            "-H".into(),
            format!("authorization: Bearer {token}"),
            format!("http://127.0.0.1:{http_port}{path}"),
        ]
    };
    let log = data.path().join("h2load.log");
    let log = log.to_str().unwrap();

    let nginx = nginx::Nginx::start(free_port(), free_port());

    // Warm every path (connections, caches, SQLite pages), then measure.
    h2load(&grpc_args(32, 1, log), log);
    wrk(&http_args(32, 1));
    nginx.round(32, 1);
    for concurrency in concurrencies() {
        println!(
            "GetResource at concurrency {concurrency}, {rounds} rounds of {seconds} s per path \
             (pdp dev: SQLite, embedded log, audit on; direct with h2load, gateway with wrk)"
        );
        let mut compared = Rounds::default();
        // The load tools are processes of their own: the CPU is pdp's alone.
        let pid = dev.id();
        for _ in 0..rounds {
            let before = Cpu::of(pid);
            let direct = h2load(&grpc_args(concurrency, seconds, log), log);
            let direct = direct.with_cpu(before, Cpu::of(pid), seconds);
            let before = Cpu::of(pid);
            let gateway = wrk(&http_args(concurrency, seconds));
            let gateway = gateway.with_cpu(before, Cpu::of(pid), seconds);
            compared.add(&direct, &gateway);
            compared.add_nginx(&nginx.round(concurrency, seconds));
        }
        let against_nginx = compared.nginx_comparison(concurrency);
        println!("{}", compared.summary());
        if let Some(line) = against_nginx {
            println!("{line}");
        }
    }
    interrupt_and_wait(dev, data.path());
}

/// The identity headers the gateway would send for the provider, signed with the dev key.
fn signed_identity(data: &std::path::Path) -> Vec<(String, String)> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(data.join("dev-identity.key")).unwrap();
    let secret = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap();
    let key = IdentityKey::new(&secret, chrono::Duration::minutes(5), Arc::new(SystemClock));
    let identity = Identity {
        subject: "bench".into(),
        organization: PROVIDER.into(),
        roles: vec!["provider".into()],
        tenant: TENANT.parse().unwrap(),
        division: None,
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    key.sign_into(&identity, &mut metadata);
    metadata
        .into_headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
        .collect()
}

async fn get_resource(
    grpc: &str,
    request: GetResourceRequest,
    identity: &[(String, String)],
) -> DataResource {
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(request);
    for (name, value) in identity {
        let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).unwrap();
        request.metadata_mut().insert(name, value.parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<GetResourceRequest, DataResource>::default();
    let path = http::uri::PathAndQuery::from_static(GET_RESOURCE);
    client
        .unary(request, path, codec)
        .await
        .expect("direct GetResource")
        .into_inner()
}

fn run(tool: &str, args: &[String]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// h2load's own rate; percentiles from its per-request log (microseconds, third column).
/// Every answer must be a 2xx: a refused call measures nothing.
fn h2load(args: &[String], log: &str) -> Figures {
    let text = run("h2load", args);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("h2load printed no `{prefix}` line:\n{text}"))
            .to_string()
    };
    let requests = line("requests:");
    assert!(
        requests.contains(" 0 failed, 0 errored, 0 timeout"),
        "{requests}"
    );
    let codes = line("status codes:");
    assert!(codes.contains(" 0 3xx, 0 4xx, 0 5xx"), "{codes}");
    let finished = line("finished in");
    let per_second = finished
        .split(", ")
        .nth(1)
        .and_then(|s| s.strip_suffix(" req/s"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no rate in `{finished}`"));
    let mut micros: Vec<f64> = std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    assert!(!micros.is_empty(), "h2load logged no request");
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)] / 1000.0;
    Figures::new(per_second, at(0.50), at(0.99))
}

/// wrk's own rate and latency distribution. Every answer must be a 2xx.
pub(crate) fn wrk(args: &[String]) -> Figures {
    let text = run("wrk", args);
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "the gateway refused calls:\n{text}"
    );
    let value = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("wrk printed no `{prefix}` line:\n{text}"))
            .trim()
            .to_string()
    };
    let millis = |v: String| {
        let (n, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap());
        let n: f64 = n.parse().unwrap();
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => panic!("unknown unit in `{v}`"),
        }
    };
    Figures::new(
        value("Requests/sec:").parse().unwrap(),
        millis(value("50%")),
        millis(value("99%")),
    )
}
