//! What both gateway benches share: their settings, and rounds of the direct call and the call
//! through the gateway taking turns, summed up by the median.
//!
//! A shared VM's speed drifts by tens of percent within minutes, so one run of each path can
//! compare a fast minute with a slow one; interleaved rounds touch both paths alike.

/// `name` from the environment, or `default`.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: `{v}` is not a whole number"))
        })
        .unwrap_or(default)
}

/// `BENCH_CONCURRENCY`, a comma-separated list (default `1,32`): at 1 the overhead is the
/// gateway's own time per request; at 32 the ratio is what it costs in throughput on cores it
/// shares with the service and the load generator.
pub fn concurrencies() -> Vec<u64> {
    let raw = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "1,32".into());
    raw.split(',')
        .map(|c| {
            c.trim()
                .parse()
                .unwrap_or_else(|_| panic!("BENCH_CONCURRENCY: `{c}` is not a whole number"))
        })
        .collect()
}

/// One path's figures in one round.
#[derive(Debug)]
pub struct Figures {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU per request of the measured process (see [`Figures::with_cpu`]), in µs.
    pub cpu_us: Option<f64>,
    /// Of which the gateway's HTTP workers.
    pub gateway_cpu_us: Option<f64>,
}

impl Figures {
    pub fn new(per_second: f64, p50_ms: f64, p99_ms: f64) -> Self {
        Self {
            per_second,
            p50_ms,
            p99_ms,
            cpu_us: None,
            gateway_cpu_us: None,
        }
    }

    /// Adds what the process used per request between two readings `seconds` apart.
    pub fn with_cpu(mut self, before: Cpu, after: Cpu, seconds: u64) -> Self {
        let requests = self.per_second * seconds as f64;
        self.cpu_us = Some((after.all_us - before.all_us) / requests);
        self.gateway_cpu_us = Some((after.gateway_us - before.gateway_us) / requests);
        self
    }
}

pub fn report(name: &str, f: &Figures) {
    let cpu = match (f.cpu_us, f.gateway_cpu_us) {
        (Some(all), Some(gateway)) => {
            format!("  CPU/request {all:>5.1} µs (gateway workers {gateway:>4.1} µs)")
        }
        (Some(all), None) => format!("  CPU/request {all:>5.1} µs"),
        _ => String::new(),
    };
    println!(
        "{name:<34} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms{cpu}",
        f.per_second, f.p50_ms, f.p99_ms
    );
}

/// CPU time (user and system) a process has used so far, in µs: all of it, and its gateway
/// workers' (actix names them `actix-server worker N`) apart. Read from `/proc`, so that the
/// bench reports what a request costs, not only how fast one comes back: on a machine whose
/// cores the load generator, the gateway and the service share, throughput alone hides who
/// spent the time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub all_us: f64,
    pub gateway_us: f64,
}

impl Cpu {
    pub fn of(pid: u32) -> Self {
        let tick_us = 1e6 / clock_ticks_per_second();
        let all = stat_ticks(&format!("/proc/{pid}/stat"))
            .unwrap_or_else(|| panic!("no /proc/{pid}/stat: is this Linux?"));
        let mut gateway = 0;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if comm.starts_with("actix-server w") {
                    gateway += stat_ticks(&task.path().join("stat").to_string_lossy()).unwrap_or(0);
                }
            }
        }
        Self {
            all_us: all as f64 * tick_us,
            gateway_us: gateway as f64 * tick_us,
        }
    }
}

/// utime + stime of a `stat` file: the 14th and 15th fields, counted after the `(comm)` field,
/// which may itself hold spaces.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    // After `(comm)`, the state is field 3; utime and stime are fields 14 and 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The rounds at one concurrency.
#[derive(Debug, Default)]
pub struct Rounds {
    ratios: Vec<f64>,
    p50_overheads: Vec<f64>,
    p99_overheads: Vec<f64>,
    cpu_overheads: Vec<f64>,
    gateway_cpu: Vec<f64>,
    /// nginx's worker CPU per request, where the bench runs it beside (`pdp/benches/common/
    /// nginx.rs`; the gateway's in-process bench has no nginx).
    #[allow(dead_code)]
    nginx_cpu: Vec<f64>,
}

impl Rounds {
    /// Reports one round and keeps its comparison.
    pub fn add(&mut self, direct: &Figures, gateway: &Figures) {
        let round = self.ratios.len() + 1;
        report(&format!("  {round}: direct"), direct);
        report(&format!("  {round}: through the gateway"), gateway);
        self.ratios.push(gateway.per_second / direct.per_second);
        self.p50_overheads.push(gateway.p50_ms - direct.p50_ms);
        self.p99_overheads.push(gateway.p99_ms - direct.p99_ms);
        if let (Some(d), Some(g), Some(workers)) =
            (direct.cpu_us, gateway.cpu_us, gateway.gateway_cpu_us)
        {
            self.cpu_overheads.push(g - d);
            self.gateway_cpu.push(workers);
        }
    }

    /// Reports nginx's round beside the gateway's and keeps its CPU per request.
    #[allow(dead_code)]
    pub fn add_nginx(&mut self, nginx: &Figures) {
        report(
            &format!("  {}: nginx (plain proxy)", self.ratios.len()),
            nginx,
        );
        self.nginx_cpu.extend(nginx.cpu_us);
    }

    /// The gateway's CPU per request against nginx's, medians of the rounds: its HTTP workers
    /// alone, and the whole path (everything the process spends beyond a direct call).
    #[allow(dead_code)]
    pub fn nginx_comparison(&self, concurrency: u64) -> Option<String> {
        if self.nginx_cpu.is_empty() || self.cpu_overheads.is_empty() {
            return None;
        }
        let nginx = median(self.nginx_cpu.clone());
        let workers = median(self.gateway_cpu.clone());
        let whole = median(self.cpu_overheads.clone());
        Some(format!(
            "nginx comparison at concurrency {concurrency}: nginx worker {nginx:.1} µs/request; \
             gateway HTTP workers {workers:.1} µs ({:.1}×); whole gateway path {whole:.1} µs; \
             ratio {:.1}",
            workers / nginx,
            whole / nginx
        ))
    }

    pub fn summary(self) -> String {
        let cpu = if self.cpu_overheads.is_empty() {
            String::new()
        } else {
            format!(
                "; CPU added per request = {:.1} µs (gateway workers {:.1} µs)",
                median(self.cpu_overheads),
                median(self.gateway_cpu)
            )
        };
        format!(
            "  median of {} rounds: throughput ratio gateway/direct = {:.2}; \
             overhead p50 = {:.3} ms, p99 = {:.3} ms{cpu}",
            self.ratios.len(),
            median(self.ratios),
            median(self.p50_overheads),
            median(self.p99_overheads)
        )
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
