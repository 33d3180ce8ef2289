//! The proxy everyone knows, as the yardstick of the gateway's CPU per request: nginx as a plain
//! reverse proxy (one worker, HTTP/1.1 keep-alive to its upstream; no auth, no transcoding, no
//! audit) in front of a trivial upstream, which is a second nginx whose CPU is not counted.
//! Measured under the same load generator, concurrency and duration as the gateway.

use std::process::{Child, Command, Stdio};

use crate::rounds::{Cpu, Figures};

/// Both nginx processes, stopped when dropped.
pub struct Nginx {
    proxy: Child,
    upstream: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master stops its worker on the way out; killed outright, it
        // would leave the worker behind, holding the port.
        for child in [&mut self.proxy, &mut self.upstream] {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }
}

/// An nginx configuration: one worker, everything it writes inside `dir`, serving `server`.
fn config(dir: &std::path::Path, name: &str, http: &str) -> std::path::PathBuf {
    let d = dir.display();
    let text = format!(
        "worker_processes 1;\n\
         daemon off;\n\
         pid {d}/{name}.pid;\n\
         error_log {d}/{name}.error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/{name}-body;\n\
           proxy_temp_path {d}/{name}-proxy;\n\
           fastcgi_temp_path {d}/{name}-fastcgi;\n\
           uwsgi_temp_path {d}/{name}-uwsgi;\n\
           scgi_temp_path {d}/{name}-scgi;\n\
           {http}\n\
         }}\n"
    );
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, text).unwrap();
    path
}

fn start(conf: &std::path::Path) -> Child {
    Command::new("nginx")
        .args(["-e", "stderr", "-c"])
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts (`make bench-tools` installs it)")
}

impl Nginx {
    pub fn start(port: u16, upstream_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let upstream = config(
            dir.path(),
            "upstream",
            &format!(
                "server {{ listen 127.0.0.1:{upstream_port}; \
                 location / {{ return 200 '{{\"id\":\"bench\"}}'; }} }}"
            ),
        );
        let proxy = config(
            dir.path(),
            "proxy",
            &format!(
                "upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n\
                 server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://up; \
                 proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
            ),
        );
        let nginx = Self {
            upstream: start(&upstream),
            proxy: start(&proxy),
            port,
            _dir: dir,
        };
        crate::support::eventually(10, "nginx answers", || {
            crate::support::get(port, "/").filter(|(s, _)| *s == 200)
        });
        nginx
    }

    /// The proxy's worker: the one process that does its work (the master only supervises).
    pub fn worker(&self) -> u32 {
        let master = self.proxy.id();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rfind(')')
                        .and_then(|end| stat[end + 2..].split(' ').nth(1)?.parse::<u32>().ok())
                        == Some(master)
                })
            })
            .expect("nginx started its worker")
    }

    /// One round at `concurrency` for `seconds`: wrk's figures and the worker's CPU.
    pub fn round(&self, concurrency: u64, seconds: u64) -> Figures {
        let worker = self.worker();
        let before = Cpu::of(worker);
        let figures = crate::wrk(&[
            "-t1".to_string(),
            format!("-c{concurrency}"),
            format!("-d{seconds}s"),
            "--latency".into(),
            format!("http://127.0.0.1:{}/", self.port),
        ]);
        let mut figures = figures.with_cpu(before, Cpu::of(worker), seconds);
        // nginx has no gateway workers: its one worker is all of it.
        figures.gateway_cpu_us = None;
        figures
    }
}
