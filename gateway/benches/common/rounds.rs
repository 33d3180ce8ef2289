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
}

pub fn report(name: &str, f: &Figures) {
    println!(
        "{name:<34} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
        f.per_second, f.p50_ms, f.p99_ms
    );
}

/// The rounds at one concurrency.
#[derive(Debug, Default)]
pub struct Rounds {
    ratios: Vec<f64>,
    p50_overheads: Vec<f64>,
    p99_overheads: Vec<f64>,
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
    }

    pub fn summary(self) -> String {
        format!(
            "  median of {} rounds: throughput ratio gateway/direct = {:.2}; \
             overhead p50 = {:.3} ms, p99 = {:.3} ms",
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
