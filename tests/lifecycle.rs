//! The whole authorization (`authorization::lifecycle`) through the gateway of `pdp dev`: on the
//! embedded log, with the sandbox on a Ballista cluster, and on the Kafka-compatible broker with
//! the reference exchange. Time moves through `dev.clock_shift_file`, so dated rules are tested
//! without waiting.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::sync::Mutex;

mod authorization;
mod support;
use authorization::{Ending, Options, Platform, Run};
use support::*;

#[test]
fn from_an_effective_plan_to_an_active_agreement_and_its_expiry() {
    authorization::lifecycle(
        Options {
            on_kafka: false,
            ending: Ending::Expiry,
        },
        |run| Dev::start(run, false, false),
    );
}

/// The same lifecycle with the sandbox's queries reading the data on a Ballista cluster of
/// `pdp sandbox scheduler|executor` processes: the same answers, refusals and suppressions.
#[test]
fn the_same_lifecycle_with_the_sandbox_on_a_ballista_cluster() {
    authorization::lifecycle(
        Options {
            on_kafka: false,
            ending: Ending::Expiry,
        },
        |run| Dev::start(run, true, false),
    );
}

/// The same lifecycle on the Kafka-compatible broker (`TEST_KAFKA_BROKERS`) instead of the
/// embedded log, where a consumer that is not pdp — the reference exchange client — reads the
/// listing, answers with a signed receipt and sells a call; the buyer then calls the product
/// through the gateway. Its organizations and exchange are named for this run, so that what
/// earlier runs left on the broker concerns nobody here.
#[test]
fn the_same_lifecycle_on_kafka_with_the_reference_exchange() {
    authorization::lifecycle(
        Options {
            on_kafka: true,
            ending: Ending::Expiry,
        },
        |run| Dev::start(run, false, true),
    );
}

/// `pdp dev` in the run's directory.
struct Dev {
    child: Running,
    data: std::path::PathBuf,
    port: u16,
    sandbox_cluster: Mutex<Option<SandboxCluster>>,
    /// The PostgreSQL stores on the broker (empty: SQLite files in the data directory).
    store_url: String,
}

impl Dev {
    fn start(run: &Run, on_ballista: bool, on_kafka: bool) -> Box<dyn Platform> {
        let port = free_port();
        let cluster = on_ballista.then(|| SandboxCluster::start(run.dir));
        let brokers =
            std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
        let instance = format!("lifecycle-{}", run.name);
        let mut env = vec![
            ("PDP_CONFIG", run.config.to_str().unwrap()),
            ("PDP_DEV__CLOCK_SHIFT_FILE", run.shift.to_str().unwrap()),
            ("PDP_INSTANCE__SCHEDULER_INTERVAL_SECS", "1"),
            // Three lifecycles, a Ballista cluster and the broker share two cores in CI: a query
            // may take longer than a quiet machine's default allows.
            ("PDP_GATEWAY__UPSTREAM_TIMEOUT_MS", "60000"),
        ];
        if let Some(cluster) = &cluster {
            env.push(("PDP_SANDBOX__BALLISTA_SCHEDULER", cluster.url.as_str()));
        }
        // On the broker, the stores are PostgreSQL's, as in a cluster: a fresh instance first
        // reads every event earlier runs left on the broker, and SQLite's one writer per store
        // would make the first calls wait behind that backlog.
        let store_url = if on_kafka {
            database(&format!("lifecycle_kafka_{}", run.name))
        } else {
            String::new()
        };
        if on_kafka {
            env.push(("PDP_EVENTS__BROKERS", brokers.as_str()));
            // tansu holds an empty fetch for the whole wait.
            env.push(("PDP_EVENTS__FETCH_WAIT_MS", "100"));
            env.push(("PDP_INSTANCE__NAME", instance.as_str()));
            env.push(("PDP_STORE__URL", store_url.as_str()));
        }
        let mut child = start_dev_with(run.dir, port, &env);
        wait_ready(&mut child, port);
        Box::new(Self {
            child,
            data: run.dir.to_path_buf(),
            port,
            sandbox_cluster: Mutex::new(cluster),
            store_url,
        })
    }
}

impl Platform for Dev {
    fn port(&self) -> u16 {
        self.port
    }

    fn token(&self, tenant: &str, role: &str, org: &str) -> String {
        token(self.data.to_str().unwrap(), tenant, role, org)
    }

    fn metrics(&self) -> String {
        get(self.port, "/metrics")
            .map(|(_, text)| text)
            .unwrap_or_default()
    }

    fn dead_letters(&self) -> String {
        let out = pdp(
            &["events", "dead-letters"],
            &[("PDP_STORE__URL", &self.store_url)],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sandbox_objects(&self, prefix: &str) -> Vec<String> {
        walk_files(&self.data.join("sandbox").join(prefix))
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }

    fn stop_sandbox_cluster(&self) -> bool {
        self.sandbox_cluster.lock().unwrap().take().is_some()
    }

    fn stop(self: Box<Self>) {
        assert_eq!(interrupt_and_wait(self.child, &self.data).code(), Some(0));
    }
}

/// Every file under `dir` (none when it does not exist).
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_files(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
