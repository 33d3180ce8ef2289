//! pdp as a province deploys it, as processes on this machine: the shared provincial instance and
//! Harbin's municipal one, each a `pdp serve <service>` process per service on a PostgreSQL
//! database of its own, and one `pdp gateway` routing Harbin's tenant to Harbin's instance and
//! every other tenant to the shared one (a routes file, as the `TenantRoute`s would). All of them
//! in cluster mode, on the Kafka-compatible broker (`TEST_KAFKA_BROKERS`), Redis
//! (`TEST_REDIS_URL`) and the S3-API store (`TEST_S3_ENDPOINT`); tokens are ES256, verified
//! against a JWKS file as the province's identity provider's would be. A missing server fails
//! the start, naming the process whose log says why.
//!
//! Every process can be killed (SIGKILL, as `kill -9`) and started again with the same
//! configuration: what the fault runs do.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;

use super::servers::Servers;
use super::{Running, database_at, free_port, get, pdp, stderr};

/// The services every instance runs, each as its own process.
pub const SERVICES: [&str; 7] = [
    "planning",
    "selection",
    "agreements",
    "requests",
    "products",
    "termination",
    "oversight",
];
pub const PROVINCE: &str = "230000";
pub const HARBIN: &str = "230100";
/// The province and its cities without Harbin: the shared instance's tenants.
const SHARED_TENANTS: [&str; 13] = [
    "230000", "230200", "230300", "230400", "230500", "230600", "230700", "230800", "230900",
    "231000", "231100", "231200", "232700",
];
const ISSUER: &str = "https://sso.hlj.example/realms/pdp";

/// What every process of a run is started with, beside its own addresses.
pub struct Setup<'a> {
    /// The `pdp.toml` every process reads (the exchanges products releases to).
    pub config: &'a Path,
    /// The clock shift file every process follows (a debug build's test clock; a release build,
    /// as the benches run, refuses one).
    pub shift: Option<&'a Path>,
    /// This run's name: instance names, consumer groups and the sandbox's prefix carry it.
    pub run: &'a str,
    pub servers: &'a Servers,
    /// Settings every process gets after the suite's own (a bench sets production intervals).
    pub env: &'a [(&'a str, &'a str)],
}

/// One process of the cluster, started again with the same arguments and environment.
pub struct Process {
    /// `gateway`, or `<instance>/<service>`.
    pub name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub http_port: u16,
    log: PathBuf,
    child: Option<Running>,
}

impl Process {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pdp"))
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pdp starts");
        self.child = Some(Running(Some(child)));
    }

    /// Waits for `/readyz` to answer 200, for at most `seconds`.
    fn wait_ready(&mut self, seconds: u64) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            if self.ready() {
                return;
            }
            let child = self.child.as_mut().expect("started");
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{} exited early ({status}); its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} not ready within {seconds} s; its log:\n{}",
            self.name,
            self.log()
        );
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The last 4 000 characters of the process's log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_string()
    }

    /// `kill -9`: no signal handler runs, nothing is flushed.
    pub fn kill(&mut self) {
        if let Some(mut running) = self.child.take() {
            let _ = running.kill();
            let _ = running.wait();
        }
    }

    /// Starts the process again and waits until it is ready; a process that exits before (a
    /// server it needs is still down) is started again after a second, as Kubernetes restarts a
    /// crashed container, for at most two minutes.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.spawn();
            while Instant::now() < deadline {
                if self.ready() {
                    return;
                }
                let child = self.child.as_mut().expect("started");
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready again within 120 s; its log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Whether `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        matches!(get(self.http_port, "/readyz"), Some((200, _)))
    }

    /// Interrupts the process (SIGINT, as Kubernetes' SIGTERM) and asserts it stopped cleanly.
    fn stop(&mut self) {
        let Some(running) = self.child.take() else {
            return;
        };
        let status = super::interrupt_and_wait_inner(running.into_child());
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not stop cleanly ({status:?}); its log:\n{}",
            self.name,
            self.log()
        );
    }
}

/// One platform instance: its database and its service processes.
pub struct Instance {
    pub name: String,
    pub store_url: String,
    pub processes: Vec<Process>,
    /// `s3://…` of its sandbox.
    pub sandbox: String,
}

/// The two instances and the gateway.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub gateway: Process,
    pub shared: Instance,
    pub harbin: Instance,
    key: jsonwebtoken::EncodingKey,
    s3_endpoint: String,
}

impl Cluster {
    pub fn start(setup: &Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let servers = setup.servers;
        let brokers = servers.brokers.clone();
        let redis = servers.redis.clone();
        let s3_endpoint = servers.s3.clone();
        let bucket = &servers.bucket;
        // The run's secrets, made here: none is in the repository.
        let hmac = format!("{:064x}", rand::random::<u128>());
        let audit_key = pdp_termination::checkpoint::ArchiveKey::generate().to_pem();
        let signing = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = signing.public_key().to_encoded_point(false);
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "cluster-test", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        }]});
        let jwks_file = dir.path().join("jwks.json");
        std::fs::write(&jwks_file, jwks.to_string()).unwrap();
        let key =
            jsonwebtoken::EncodingKey::from_ec_der(signing.to_pkcs8_der().unwrap().as_bytes());

        let path = |p: &Path| p.to_str().unwrap().to_string();
        let common: Vec<(String, String)> = [
            ("PDP_MODE", "cluster".to_string()),
            ("PDP_CONFIG", path(setup.config)),
            ("PDP_EVENTS__BROKERS", brokers),
            // tansu holds an empty fetch for the whole wait.
            ("PDP_EVENTS__FETCH_WAIT_MS", "100".into()),
            ("PDP_EVENTS__REPLICATION_FACTOR", "1".into()),
            ("PDP_REDIS__URL", redis),
            ("PDP_IDENTITY__HMAC_KEY", hmac),
            ("PDP_AUDIT__SIGNING_KEY", audit_key),
            ("PDP_INSTANCE__SCHEDULER_INTERVAL_SECS", "1".into()),
            ("PDP_SANDBOX__S3_ENDPOINT", s3_endpoint.clone()),
            ("PDP_SANDBOX__S3_REGION", "us-east-1".into()),
            ("PDP_SANDBOX__S3_ACCESS_KEY_ID", "pdp-test".into()),
            (
                "PDP_SANDBOX__S3_SECRET_ACCESS_KEY",
                "pdp-test-secret".into(),
            ),
            // Every process shares two cores with the others and the test.
            ("PDP_STORE__POOL_SIZE", "4".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(
            setup
                .shift
                .map(|shift| ("PDP_DEV__CLOCK_SHIFT_FILE".to_string(), path(shift))),
        )
        .collect();
        let mut common = common;
        for (k, v) in setup.env {
            common.retain(|(name, _)| name != k);
            common.push((k.to_string(), v.to_string()));
        }

        let instance = |name: &str, mode: &str, tenants: &[&str]| {
            let store_url = database_at(&servers.database, &format!("cluster_{name}"));
            // As the chart's Job does before the pods start: serving processes never migrate.
            let migrated = pdp(&["migrate"], &[("PDP_STORE__URL", &store_url)]);
            assert!(migrated.status.success(), "{}", stderr(&migrated));
            let sandbox = format!("s3://{bucket}/runs/{}/{name}", setup.run);
            let tenants = serde_json::to_string(tenants).unwrap();
            let processes = SERVICES
                .iter()
                .map(|service| {
                    let http_port = free_port();
                    let mut env = common.clone();
                    env.extend(
                        [
                            ("PDP_STORE__URL", store_url.clone()),
                            ("PDP_INSTANCE__NAME", format!("{name}-{}", setup.run)),
                            ("PDP_INSTANCE__MODE", mode.to_string()),
                            ("PDP_INSTANCE__TENANTS", tenants.clone()),
                            ("PDP_SANDBOX__STORE_URL", sandbox.clone()),
                            ("PDP_GRPC__LISTEN", format!("127.0.0.1:{}", free_port())),
                            ("PDP_HTTP__LISTEN", format!("127.0.0.1:{http_port}")),
                            ("PDP_TELEMETRY__SERVICE_NAME", format!("pdp-{service}")),
                            // As the chart names each pod's member: the same after a restart.
                            ("PDP_EVENTS__MEMBER", format!("{name}-{service}")),
                        ]
                        .map(|(k, v)| (k.to_string(), v)),
                    );
                    Process {
                        name: format!("{name}/{service}"),
                        args: vec!["serve".into(), service.to_string()],
                        env,
                        http_port,
                        log: dir.path().join(format!("{name}-{service}.log")),
                        child: None,
                    }
                })
                .collect();
            Instance {
                name: name.to_string(),
                store_url,
                processes,
                sandbox,
            }
        };
        let shared = instance("shared", "shared", &SHARED_TENANTS);
        let harbin = instance("harbin", "municipal", &[HARBIN]);

        // The gateway's routes: Harbin to its own instance, every other tenant to the shared one.
        let mut routes = String::new();
        let tenants = SHARED_TENANTS.iter().map(|t| (*t, &shared));
        for (tenant, instance) in tenants.chain([(HARBIN, &harbin)]) {
            writeln!(
                routes,
                "- name: t{tenant}\n  tenant: \"{tenant}\"\n  instance: {}\n  services:",
                instance.name
            )
            .unwrap();
            for (service, process) in SERVICES.iter().zip(&instance.processes) {
                let grpc = process.env_value("PDP_GRPC__LISTEN");
                writeln!(routes, "    {service}: http://{grpc}").unwrap();
            }
        }
        let routes_file = dir.path().join("routes.yaml");
        std::fs::write(&routes_file, routes).unwrap();
        let http_port = free_port();
        let mut env = common.clone();
        env.extend(
            [
                // The platform store (the audit trail, the policy) is the province's.
                ("PDP_STORE__URL", shared.store_url.clone()),
                ("PDP_INSTANCE__NAME", format!("gateway-{}", setup.run)),
                ("PDP_GATEWAY__JWKS_FILE", path(&jwks_file)),
                ("PDP_GATEWAY__ISSUER", ISSUER.to_string()),
                ("PDP_GATEWAY__ROUTES_FILE", path(&routes_file)),
                ("PDP_GATEWAY__UPSTREAM_TIMEOUT_MS", "60000".to_string()),
                ("PDP_HTTP__LISTEN", format!("127.0.0.1:{http_port}")),
                (
                    "PDP_HTTP__METRICS_LISTEN",
                    format!("127.0.0.1:{}", free_port()),
                ),
                ("PDP_TELEMETRY__SERVICE_NAME", "pdp-gateway".to_string()),
                ("PDP_EVENTS__MEMBER", "gateway".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        let gateway = Process {
            name: "gateway".into(),
            args: vec!["gateway".into()],
            env,
            http_port,
            log: dir.path().join("gateway.log"),
            child: None,
        };
        let mut cluster = Self {
            dir,
            gateway,
            shared,
            harbin,
            key,
            s3_endpoint,
        };
        // All at once: each waits for its broker, database and migrations by itself.
        for process in cluster.processes_mut() {
            process.spawn();
        }
        for process in cluster.processes_mut() {
            process.wait_ready(90);
        }
        cluster
    }

    /// Every process: the shared instance's, Harbin's, then the gateway.
    pub fn processes_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        self.shared
            .processes
            .iter_mut()
            .chain(self.harbin.processes.iter_mut())
            .chain(std::iter::once(&mut self.gateway))
    }

    /// Waits until every process is ready (after a server they need came back).
    pub fn wait_all_ready(&mut self, seconds: u64) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        for process in self.processes_mut() {
            while !process.ready() {
                assert!(
                    Instant::now() < deadline,
                    "{} not ready within {seconds} s; its log:\n{}",
                    process.name,
                    process.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The process named `name` (`gateway`, `harbin/requests`).
    pub fn process(&mut self, name: &str) -> &mut Process {
        self.processes_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// An ES256 token of the province's identity provider, living 8 hours.
    pub fn token(&self, tenant: &str, role: &str, org: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = pdp_gateway::auth::Claims {
            sub: format!("{role}-{tenant}"),
            org: org.into(),
            roles: vec![role.into()],
            tenant: tenant.parse().unwrap(),
            division: None,
            iss: ISSUER.into(),
            aud: pdp_gateway::auth::Audience::One("pdp".into()),
            exp: now + 8 * 3600,
            nbf: Some(now - 5),
            iat: now,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("cluster-test".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    /// What Harbin's service processes export on `/metrics`, one after the other.
    pub fn harbin_metrics(&self) -> String {
        self.harbin
            .processes
            .iter()
            .filter_map(|p| get(p.http_port, "/metrics"))
            .map(|(_, text)| text)
            .collect()
    }

    /// The keys of the objects of Harbin's sandbox under `prefix`, as the S3 API lists them.
    pub fn harbin_sandbox_objects(&self, prefix: &str) -> Vec<String> {
        let rest = self.harbin.sandbox.strip_prefix("s3://").unwrap();
        let (bucket, root) = rest.split_once('/').unwrap();
        let port: u16 = self
            .s3_endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("TEST_S3_ENDPOINT is http://host:port");
        let path = format!("/{bucket}?list-type=2&prefix={root}/{prefix}");
        let (status, text) = get(port, &path).expect("the S3 server answers");
        assert_eq!(status, 200, "{text}");
        text.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect()
    }

    /// Stops every process as Kubernetes would (gateway first), asserting each stops cleanly.
    pub fn stop(mut self) {
        self.stop_all();
    }

    /// [`Cluster::stop`] in place.
    pub fn stop_all(&mut self) {
        self.gateway.stop();
        for process in self.processes_mut() {
            process.stop();
        }
    }
}

impl Drop for Cluster {
    /// A run that failed keeps its processes' logs: they are what tells why.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let kept = std::env::temp_dir().join(format!(
            "pdp-cluster-logs-{}",
            self.gateway.env_value("PDP_INSTANCE__NAME")
        ));
        let _ = std::fs::create_dir_all(&kept);
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let _ = std::fs::copy(&path, kept.join(entry.file_name()));
            }
        }
        eprintln!("the cluster's logs: {}", kept.display());
    }
}

impl Process {
    fn env_value(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{} has no {name}", self.name))
    }
}
