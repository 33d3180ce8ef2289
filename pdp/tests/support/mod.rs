//! Running `pdp` in tests: commands, `pdp dev` processes and a small HTTP/1.1 client (std only,
//! so the tests speak to the gateway exactly as a front end's HTTP stack would).
#![allow(dead_code)] // each test binary uses its own part

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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

pub fn start_dev(data: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pdp"))
        .args(["dev", "--data-dir", data.to_str().unwrap(), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env_clear()
        // Services take free gRPC ports, so that dev processes of parallel tests do not meet.
        .env("PDP_GRPC__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        // A file, not a pipe nobody reads: a full pipe would block the process.
        .stderr(std::fs::File::create(data.join("pdp.log")).unwrap())
        .spawn()
        .expect("pdp dev starts")
}

pub fn wait_ready(child: &mut Child, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some((200, body)) = get(port, "/readyz") {
            return body;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("pdp dev exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("pdp dev not ready within 30s");
}

pub fn interrupt_and_wait(child: Child, data: &std::path::Path) -> std::process::ExitStatus {
    let status = interrupt_and_wait_inner(child);
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

/// A request with an optional bearer token and JSON body; the answer's status and JSON body.
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("gateway listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
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
