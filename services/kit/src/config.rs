//! Typed configuration: defaults, then an optional TOML file, then `PDP_*` environment variables.
//!
//! Every key is known: an unknown key in the file or an unknown `PDP_` variable is an error that
//! names it, so a typo never silently falls back to a default. The loader takes the environment as
//! an argument so that tests never touch the process environment.
//!
//! Environment names: `PDP_<SECTION>__<KEY>` (double underscore between levels), e.g.
//! `PDP_STORE__URL`, `PDP_HTTP__LISTEN`, `PDP_MODE`. `PDP_CONFIG` names the TOML file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

/// The environment variable that names the configuration file.
pub const CONFIG_FILE_VAR: &str = "PDP_CONFIG";
const ENV_PREFIX: &str = "PDP_";
const ENV_SEPARATOR: &str = "__";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `dev`: embedded defaults, readable logs. `cluster`: JSON logs, external servers required.
    pub mode: Mode,
    /// Where the embedded default keeps its SQLite files and the dev signing key.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub grpc: GrpcConfig,
    pub instance: InstanceConfig,
    pub store: StoreConfig,
    pub events: EventsConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub identity: IdentityConfig,
    pub calendar: CalendarConfig,
    pub gateway: GatewayConfig,
    pub sandbox: SandboxConfig,
    pub products: ProductsConfig,
    pub audit: AuditConfig,
    pub oversight: OversightConfig,
    pub dev: DevConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Dev,
            data_dir: PathBuf::from("./data"),
            http: HttpConfig::default(),
            grpc: GrpcConfig::default(),
            instance: InstanceConfig::default(),
            store: StoreConfig::default(),
            events: EventsConfig::default(),
            redis: RedisConfig::default(),
            telemetry: TelemetryConfig::default(),
            identity: IdentityConfig::default(),
            calendar: CalendarConfig::default(),
            gateway: GatewayConfig::default(),
            sandbox: SandboxConfig::default(),
            products: ProductsConfig::default(),
            audit: AuditConfig::default(),
            oversight: OversightConfig::default(),
            dev: DevConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Dev,
    Cluster,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the HTTP listener (health, metrics and, in the gateway, the API).
    pub listen: SocketAddr,
    /// Where the gateway serves `/metrics` instead of on its public listener (the chart sets it
    /// and exposes it to the monitoring namespace only). Unset: `pdp dev` serves them on
    /// `listen`; a gateway in a cluster serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds that in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            shutdown_grace_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Address where the services answer the gateway (and their peers) over gRPC. Port 0 picks a
    /// free port, which `pdp dev` hands to its own gateway.
    pub listen: SocketAddr,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
        }
    }
}

/// Which platform instance this process belongs to.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InstanceMode {
    /// The provincial instance: serves the province and every city without its own platform, and
    /// receives what cities must send to the province (filings, registrations, disclosures).
    #[default]
    Shared,
    /// A city's own instance: serves that city and sends to the province what it must see.
    Municipal,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceConfig {
    /// The instance's name (the chart sets the release name). Consumer groups are named after it,
    /// so that every instance on the provincial Kafka receives every event, instead of the
    /// instances splitting the partitions between them.
    pub name: String,
    pub mode: InstanceMode,
    /// The tenants this instance serves; events of other tenants are acknowledged without effect.
    /// Empty: every tenant (one instance for the whole province). A municipal instance names its
    /// city.
    pub tenants: Vec<crate::identity::TenantCode>,
    /// How often the services look for dated work that has come due (plans taking effect,
    /// agreements activating and expiring). Dates are civil days, so a minute is plenty.
    pub scheduler_interval_secs: u64,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            name: "pdp".to_string(),
            mode: InstanceMode::default(),
            tenants: Vec::new(),
            scheduler_interval_secs: 60,
        }
    }
}

impl InstanceConfig {
    /// Whether this instance keeps the province's own records (filings from the cities).
    pub fn serves_province(&self) -> bool {
        self.mode == InstanceMode::Shared
    }

    /// Whether this instance applies the events of `tenant`.
    pub fn serves(&self, tenant: &crate::identity::TenantCode) -> bool {
        self.tenants.is_empty() || self.tenants.contains(tenant)
    }

    /// The tenants whose records this instance keeps: those it names, or every tenant.
    pub fn served_tenants(&self) -> Vec<crate::identity::TenantCode> {
        if self.tenants.is_empty() {
            crate::tenants::SHIPPED_TENANTS
                .all()
                .map(|t| t.code.clone())
                .collect()
        } else {
            self.tenants.clone()
        }
    }

    /// The consumer group of this instance's `consumer`: one group per instance and consumer.
    pub fn group(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.name)
    }

    fn check(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "`{}`: an instance name is letters, digits, `-` and `_` (it names consumer groups)",
                self.name
            ));
        }
        if let Some(unknown) = self.tenants.iter().find(|t| !crate::tenants::is_known(t)) {
            return Err(format!(
                "tenants: {unknown} is neither the province nor one of its cities"
            ));
        }
        if self.mode == InstanceMode::Municipal && self.tenants.is_empty() {
            return Err("a municipal instance names the city it serves".to_string());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://…` for PostgreSQL; unset for SQLite files under `data_dir`.
    pub url: Option<ConnectionUrl>,
    /// Connections per service pool (PostgreSQL; SQLite uses one writer).
    pub pool_size: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Kafka bootstrap servers (`host:port,…`); unset for the embedded log under `data_dir`.
    pub brokers: Option<String>,
    /// Partitions of each topic that pdp creates.
    pub partitions: u32,
    /// Replication factor of each topic that pdp creates.
    pub replication_factor: u32,
    /// Hours a sent outbox row is kept (for whoever investigates an incident) before it is
    /// purged: the broker has the event.
    pub outbox_retention_hours: u64,
    /// Days an inbox keeps the id of an event it applied, against redelivery: longer than the
    /// topics keep their events, since nothing older can be delivered again.
    pub inbox_retention_days: u64,
    /// This process's stable name in its consumer groups (Kafka's static membership), unique
    /// among the processes of an instance: restarted under the same name, it takes its
    /// partitions back at once instead of the group waiting out the killed process. The chart
    /// sets the pod's name; unset, every start joins as a new member.
    pub member: Option<String>,
    /// How long the broker may hold a consumer's fetch when it has nothing new (librdkafka's
    /// `fetch.wait.max.ms`). Apache Kafka answers a held fetch as soon as a record arrives, so a
    /// longer wait costs no latency there and spares every idle consumer most of its fetches;
    /// tansu answers only when the wait is over, so its tests set 100.
    pub fetch_wait_ms: u32,
}

impl EventsConfig {
    fn check(&self) -> Result<(), String> {
        if !(1..=300_000).contains(&self.fetch_wait_ms) {
            return Err(format!(
                "fetch_wait_ms {} is outside 1..=300000 (milliseconds; 0 would poll the broker \
                 without pause)",
                self.fetch_wait_ms
            ));
        }
        Ok(())
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            partitions: 3,
            replication_factor: 1,
            outbox_retention_hours: 24,
            inbox_retention_days: 14,
            member: None,
            fetch_wait_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://…`; unset for in-process rate limits and notices.
    pub url: Option<ConnectionUrl>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `auto` is `text` in dev mode and `json` in cluster mode.
    pub log_format: LogFormat,
    /// A `tracing` filter directive, e.g. `info,pdp_kit=debug`.
    pub log_level: String,
    /// OTLP/gRPC endpoint of the trace collector; unset to keep traces in log lines only.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported traces.
    pub service_name: String,
    /// How far ahead the domain gauges look: notices ending and agreements expiring within this
    /// many days (`pdp_notices_ending`, `pdp_agreements_expiring`).
    pub domain_window_days: u32,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            otlp_endpoint: None,
            service_name: "pdp".into(),
            domain_window_days: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Shared HMAC key that signs the identity the gateway forwards. Required in cluster mode;
    /// `pdp dev` generates one in `data_dir`.
    pub hmac_key: Option<Secret>,
    /// Seconds a signed identity stays valid after the gateway signed it.
    pub max_age_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            hmac_key: None,
            max_age_secs: 300,
        }
    }
}

/// Where the sandbox keeps the data loaded into the platform, and what one query may use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// `s3://<bucket>[/<prefix>]` of an S3-compatible store; unset for `<data_dir>/sandbox` in
    /// dev. A cluster without it refuses loads and queries: its pods share no directory.
    pub store_url: Option<String>,
    /// The S3 API's address (`https://…`, `http://` only inside the cluster); unset for AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    /// Unset to take credentials from the pod's environment (`AWS_*`, web identity).
    pub s3_access_key_id: Option<Secret>,
    pub s3_secret_access_key: Option<Secret>,
    /// Memory one query may use, in MiB; past it the query is cancelled.
    pub query_memory_mib: usize,
    /// Seconds one query may run; past them it is cancelled.
    pub query_timeout_secs: u64,
    /// What one grant's workspace (derived tables and uploaded data) may hold, in MiB.
    pub workspace_quota_mib: u64,
    /// `df://<host>:<port>` of a Ballista scheduler (`pdp sandbox scheduler`): queries read the
    /// data on its executors, which read the same store. Unset: in the service's own process.
    pub ballista_scheduler: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            store_url: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            query_memory_mib: 256,
            query_timeout_secs: 30,
            workspace_quota_mib: 10 * 1024,
            ballista_scheduler: None,
        }
    }
}

impl SandboxConfig {
    fn check(&self) -> Result<(), String> {
        if self.s3_access_key_id.is_some() != self.s3_secret_access_key.is_some() {
            return Err(
                "s3_access_key_id and s3_secret_access_key are set together or not at all"
                    .to_string(),
            );
        }
        if self.query_memory_mib < 16 || self.query_timeout_secs == 0 {
            return Err("a query needs at least 16 MiB and 1 second".to_string());
        }
        if self.workspace_quota_mib == 0 {
            return Err("workspace_quota_mib must be at least 1".to_string());
        }
        if let Some(url) = &self.ballista_scheduler
            && !url.starts_with("df://")
        {
            return Err(format!(
                "ballista_scheduler `{url}` is no df://<host>:<port> URL"
            ));
        }
        Ok(())
    }
}

/// What the products service hands products to: the data exchanges of the deployment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProductsConfig {
    pub exchanges: Vec<ExchangeConfig>,
}

/// A data exchange (数据交易机构) products are released to: it reads the listings naming its `id`
/// on `pdp.exchange.listings` and answers on its own topics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    /// Lower-case letters, digits and `-`, e.g. `hlj-dex`.
    pub id: String,
    pub name: String,
    /// Where it sends receipts of listings, and trades.
    pub receipts_topic: String,
    pub trades_topic: String,
    /// The PEM public key (ECDSA P-256) its events are signed with.
    pub public_key: String,
}

impl ProductsConfig {
    fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for e in &self.exchanges {
            let id_ok = !e.id.is_empty()
                && e.id.len() <= 63
                && e.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !id_ok {
                return Err(format!(
                    "exchange id `{}` is not 1 to 63 lower-case letters, digits and -",
                    e.id
                ));
            }
            if !seen.insert(e.id.as_str()) {
                return Err(format!("exchange `{}` is configured twice", e.id));
            }
            if e.name.trim().is_empty()
                || e.receipts_topic.trim().is_empty()
                || e.trades_topic.trim().is_empty()
            {
                return Err(format!(
                    "exchange `{}` needs its name, receipts_topic and trades_topic",
                    e.id
                ));
            }
        }
        Ok(())
    }
}

/// The audit archive the termination service keeps (第十六条, 第二十九条).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The Ed25519 private key (PEM, PKCS#8: `openssl genpkey -algorithm ed25519`) the archive's
    /// checkpoints are signed with. Required in cluster mode; in dev one is made in the data
    /// directory.
    pub signing_key: Option<Secret>,
    /// How often a tenant's chain is checkpointed when it has grown.
    pub checkpoint_every_secs: u64,
    /// How long records are kept after the authorization period they belong to has ended: at
    /// least two years (730 days, 第二十九条).
    pub retention_days: u32,
    /// A longer retention for some tenants, by tenant code.
    pub tenant_retention_days: std::collections::BTreeMap<String, u32>,
    /// Working days a termination case has, from its opening, to close: past them it is flagged
    /// to the bureau and the supervisors.
    pub case_deadline_working_days: u32,
    /// Another deadline for some tenants, by tenant code.
    pub tenant_case_deadline_working_days: std::collections::BTreeMap<String, u32>,
}

/// What the oversight service watches for and scores against. The shapes only: the oversight
/// service reads their meaning (and refuses to start on a rule it cannot read); unset lists are
/// its shipped defaults, which `pdp config` leaves out and `GET …/monitoring-rules` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OversightConfig {
    /// The monitoring rules of every tenant; unset: the shipped ones.
    pub rules: Option<Vec<MonitoringRuleConfig>>,
    /// More rules for some tenants, by tenant code; a rule with the id of a general one replaces
    /// it for that tenant.
    pub tenant_rules: BTreeMap<String, Vec<MonitoringRuleConfig>>,
    /// The departments (`CYBERSPACE`, `PUBLIC_SECURITY`, …) a supervising organization acts for,
    /// by organization: a supervisor sees the alerts of its departments' duties.
    pub supervisor_departments: BTreeMap<String, Vec<String>>,
    /// An agreement ending within this many days with no passed evaluation raises an alert.
    pub expiring_within_days: u32,
    /// The published criteria of evaluations; unset: the shipped ones.
    pub authorization_criteria: Option<Vec<CriterionConfig>>,
    pub provider_criteria: Option<Vec<CriterionConfig>>,
    /// The total (of 100) an authorization needs to continue.
    pub pass_mark: u32,
}

impl Default for OversightConfig {
    fn default() -> Self {
        Self {
            rules: None,
            tenant_rules: BTreeMap::new(),
            supervisor_departments: BTreeMap::new(),
            expiring_within_days: 60,
            authorization_criteria: None,
            provider_criteria: None,
            pass_mark: 60,
        }
    }
}

/// A monitoring rule as configured; see `pdp.oversight.v1.MonitoringRule`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringRuleConfig {
    pub id: String,
    pub title: String,
    pub event_type: String,
    pub conditions: Vec<ConditionConfig>,
    pub group_by: String,
    pub threshold: u32,
    pub window_secs: u32,
    pub usual_factor: f64,
    pub baseline_windows: u32,
    /// `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`.
    pub severity: String,
    pub duties: Vec<String>,
    pub article: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConditionConfig {
    pub field: String,
    pub op: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CriterionConfig {
    pub name: String,
    pub description: String,
    pub weight: u32,
}

/// 第二十九条: logs are kept at least two years.
pub const MIN_AUDIT_RETENTION_DAYS: u32 = 730;

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            checkpoint_every_secs: 3600,
            retention_days: MIN_AUDIT_RETENTION_DAYS,
            tenant_retention_days: Default::default(),
            case_deadline_working_days: 20,
            tenant_case_deadline_working_days: Default::default(),
        }
    }
}

impl AuditConfig {
    /// The retention of `tenant`'s records, in days.
    pub fn retention_of(&self, tenant: &str) -> u32 {
        self.tenant_retention_days
            .get(tenant)
            .copied()
            .unwrap_or(self.retention_days)
            .max(self.retention_days)
    }

    /// The working days a termination case of `tenant` has to close.
    pub fn case_deadline_of(&self, tenant: &str) -> u32 {
        self.tenant_case_deadline_working_days
            .get(tenant)
            .copied()
            .unwrap_or(self.case_deadline_working_days)
    }

    fn check(&self) -> Result<(), String> {
        let short = std::iter::once(("retention_days".to_string(), self.retention_days)).chain(
            self.tenant_retention_days
                .iter()
                .map(|(t, d)| (format!("tenant_retention_days.{t}"), *d)),
        );
        for (key, days) in short {
            if days < MIN_AUDIT_RETENTION_DAYS {
                return Err(format!(
                    "{key} = {days}: logs are kept at least two years ({MIN_AUDIT_RETENTION_DAYS} \
                     days, 第二十九条)"
                ));
            }
        }
        let deadlines = std::iter::once(self.case_deadline_working_days)
            .chain(self.tenant_case_deadline_working_days.values().copied());
        if deadlines.into_iter().any(|d| d == 0) {
            return Err("a case deadline is at least one working day".to_string());
        }
        let named = self
            .tenant_retention_days
            .keys()
            .chain(self.tenant_case_deadline_working_days.keys());
        for tenant in named {
            let known = tenant
                .parse::<crate::identity::TenantCode>()
                .is_ok_and(|t| crate::tenants::is_known(&t));
            if !known {
                return Err(format!(
                    "audit names tenant {tenant}, neither the province nor one of its \
                     cities"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {
    /// The deployment's holiday file (same format as `data/holidays-cn.toml`): years it holds are
    /// added to the shipped ones, or replace them. Read at start and whenever it changes.
    pub holidays_file: Option<PathBuf>,
}

/// What only `pdp dev` accepts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DevConfig {
    /// A file holding seconds to add to the clock (kit's `ShiftedClock`): tests and demos move
    /// time for dated rules from outside the process. Refused in cluster mode by a release
    /// build; a debug build accepts it there, for the cross-service tests.
    pub clock_shift_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// JWKS document of the province's identity provider (cluster mode). `pdp dev` uses its own
    /// dev key instead.
    pub jwks_file: Option<PathBuf>,
    /// Where the identity provider publishes its JWKS (cluster mode), instead of `jwks_file`:
    /// fetched at start and again every `jwks_refresh_secs`, so that keys can rotate.
    pub jwks_url: Option<String>,
    pub jwks_refresh_secs: u64,
    /// Expected `iss` of tokens (cluster mode).
    pub issuer: Option<String>,
    /// Expected `aud` of tokens.
    pub audience: String,
    /// The longest a token may live (`exp - iat`), in seconds: a leaked token stops working.
    pub max_token_lifetime_secs: i64,
    /// casbin policy (CSV); unset for the policy shipped with pdp.
    pub policy_file: Option<PathBuf>,
    /// Milliseconds a service gets to answer before the gateway answers 504.
    pub upstream_timeout_ms: u64,
    /// gRPC endpoint of each service (`planning = "http://planning:50051"`) for a single
    /// platform instance.
    pub upstreams: std::collections::BTreeMap<String, String>,
    /// Requests per second each tenant may make, and its burst.
    pub tenant_rate: f64,
    pub tenant_burst: u32,
    /// Requests per second each subject may make, and its burst; traffic that is not
    /// authenticated (the public, a bad or missing token, a path that matches no route) is
    /// charged to its client address with the same limit, and a request refused so is not
    /// recorded.
    pub subject_rate: f64,
    pub subject_burst: u32,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest streamed upload (a load's CSV file) accepted, in bytes: it is never held whole,
    /// so this bounds only what one call may write.
    pub max_upload_bytes: u64,
    /// Front-end origins allowed by CORS (`https://portal.hlj.example`); none by default.
    pub cors_origins: Vec<String>,
    /// The proxies (the ingress) in front of the gateway, as addresses or CIDR ranges: only from
    /// them is `X-Forwarded-For` believed. Empty: the peer's address is the client's.
    pub trusted_proxies: Vec<String>,
    /// A YAML list of tenant routes (dev): which instance serves each tenant. Unset: every
    /// tenant goes to `upstreams`.
    pub routes_file: Option<PathBuf>,
    /// Watch `TenantRoute` custom resources (cluster): changes apply without a restart.
    pub watch_routes: bool,
    /// The namespace whose `TenantRoute`s are watched; unset for all namespaces.
    pub routes_namespace: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_secs: 300,
            issuer: None,
            audience: "pdp".into(),
            policy_file: None,
            upstream_timeout_ms: 10_000,
            upstreams: Default::default(),
            tenant_rate: 500.0,
            tenant_burst: 1000,
            subject_rate: 20.0,
            subject_burst: 40,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 8 << 30,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            max_token_lifetime_secs: 24 * 3600,
            routes_file: None,
            watch_routes: false,
            routes_namespace: None,
        }
    }
}

/// A secret value: never printed, never logged.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

const MASK: &str = "********";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

/// A server URL that may carry a password (`postgres://user:pw@host/db`): shown with the
/// password masked, so IT teams still see which server is meant.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let Some((userinfo, host)) = rest.rsplit_once('@') else {
            return self.0.clone();
        };
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:{MASK}@{host}"),
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl Serialize for ConnectionUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("configuration key `{key}`{origin}: {message}")]
    Key {
        key: String,
        origin: String,
        message: String,
    },
}

impl Config {
    /// Loads defaults, then `file` (or the file named by `PDP_CONFIG`), then the `PDP_*` entries
    /// of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get(CONFIG_FILE_VAR).map(PathBuf::from));

        let mut merged = toml::Table::new();
        let mut origins = BTreeMap::new();
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax {
                        path: path.clone(),
                        message: e.message().to_string(),
                    })?;
            merge(&mut merged, table);
        }
        for (name, raw) in &env {
            if name == CONFIG_FILE_VAR {
                continue;
            }
            let path: Vec<String> = name[ENV_PREFIX.len()..]
                .split(ENV_SEPARATOR)
                .map(str::to_ascii_lowercase)
                .collect();
            origins.insert(path.join("."), name.clone());
            insert_path(&mut merged, &path, env_value(raw));
        }

        let value = toml::Value::Table(merged);
        let config: Self = serde_path_to_error::deserialize(value).map_err(|err| {
            let parent = err.path().to_string();
            let inner = err.into_inner();
            let message = inner.message().to_string();
            // The path of an unknown field already ends with it, except at the top level.
            let key = match unknown_field(&message) {
                Some(field) if parent == "." => field.to_string(),
                Some(field) if parent.rsplit('.').next() != Some(field) => {
                    format!("{parent}.{field}")
                }
                _ => parent,
            };
            let origin = match origins.get(&key) {
                Some(var) => format!(" (from {var})"),
                None => match &file {
                    Some(path) => format!(" (in {})", path.display()),
                    None => String::new(),
                },
            };
            ConfigError::Key {
                key,
                origin,
                message,
            }
        })?;
        config
            .instance
            .check()
            .map_err(|message| ConfigError::Key {
                key: "instance".to_string(),
                origin: String::new(),
                message,
            })?;
        config.events.check().map_err(|message| ConfigError::Key {
            key: "events".to_string(),
            origin: String::new(),
            message,
        })?;
        config.sandbox.check().map_err(|message| ConfigError::Key {
            key: "sandbox".to_string(),
            origin: String::new(),
            message,
        })?;
        config
            .products
            .check()
            .map_err(|message| ConfigError::Key {
                key: "products".to_string(),
                origin: String::new(),
                message,
            })?;
        config.audit.check().map_err(|message| ConfigError::Key {
            key: "audit".to_string(),
            origin: String::new(),
            message,
        })?;
        Ok(config)
    }

    /// The effective configuration as TOML, secrets masked: what `pdp config` prints and what a
    /// ConfigMap can hold.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    pub fn is_dev(&self) -> bool {
        self.mode == Mode::Dev
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// An environment value is read as a TOML scalar when it parses as one (`8`, `true`), else as a
/// string, so that `PDP_HTTP__LISTEN=127.0.0.1:8080` needs no quotes.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(table) = format!("v = {raw}").parse::<toml::Table>()
        && let Some(value) = table.get("v")
        && !value.is_table()
    {
        return value.clone();
    }
    toml::Value::String(raw.to_string())
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("environment key has a name");
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current.insert(last.clone(), value);
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pdp.toml");
        std::fs::write(
            &file,
            "mode = \"cluster\"\n[store]\npool_size = 4\n[http]\nlisten = \"0.0.0.0:9000\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[("PDP_STORE__POOL_SIZE", "16"), ("HOME", "/root")]),
        )
        .unwrap();
        assert_eq!(config.mode, Mode::Cluster);
        assert_eq!(config.store.pool_size, 16, "environment wins over the file");
        assert_eq!(config.http.listen.port(), 9000);
        assert_eq!(config.events.partitions, 3, "untouched keys keep defaults");
    }

    #[test]
    fn the_sandbox_store_takes_its_credentials_in_pairs_and_never_shows_them() {
        let config = Config::load(
            None,
            env(&[
                ("PDP_SANDBOX__STORE_URL", "s3://pdp-data/harbin"),
                ("PDP_SANDBOX__S3_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("PDP_SANDBOX__S3_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.sandbox.store_url.as_deref(),
            Some("s3://pdp-data/harbin")
        );
        let shown = config.to_toml();
        assert!(
            !shown.contains("AKIDEXAMPLE") && !shown.contains("wJalrXUtnFEMI"),
            "{shown}"
        );
        let err = Config::load(
            None,
            env(&[("PDP_SANDBOX__S3_ACCESS_KEY_ID", "AKIDEXAMPLE")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("s3_secret_access_key"), "{err}");
    }

    #[test]
    fn a_consumer_waits_on_an_empty_fetch_for_a_bounded_time() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.events.fetch_wait_ms, 500, "librdkafka's own default");
        let config = Config::load(None, env(&[("PDP_EVENTS__FETCH_WAIT_MS", "100")])).unwrap();
        assert_eq!(config.events.fetch_wait_ms, 100);
        for bad in ["0", "300001"] {
            let err = Config::load(None, env(&[("PDP_EVENTS__FETCH_WAIT_MS", bad)])).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains("fetch_wait_ms") && message.contains("1..=300000"),
                "{message}"
            );
        }
    }

    #[test]
    fn an_instance_names_its_groups_and_its_tenants() {
        let config = Config::load(
            None,
            env(&[
                ("PDP_INSTANCE__NAME", "pdp-harbin"),
                ("PDP_INSTANCE__MODE", "municipal"),
                ("PDP_INSTANCE__TENANTS", "[\"230100\"]"),
            ]),
        )
        .unwrap();
        let instance = &config.instance;
        assert_eq!(
            instance.group("selection-plans"),
            "pdp-harbin.selection-plans"
        );
        assert!(instance.serves(&"230100".parse().unwrap()));
        assert!(!instance.serves(&"230200".parse().unwrap()));
        assert!(
            Config::default()
                .instance
                .serves(&"230200".parse().unwrap()),
            "no list: every tenant"
        );

        let err = Config::load(None, env(&[("PDP_INSTANCE__MODE", "municipal")])).unwrap_err();
        assert!(
            err.to_string().contains("names the city it serves"),
            "{err}"
        );
        let err = Config::load(None, env(&[("PDP_INSTANCE__NAME", "a b")])).unwrap_err();
        assert!(err.to_string().contains("instance"), "{err}");
        let err =
            Config::load(None, env(&[("PDP_INSTANCE__TENANTS", "[\"239999\"]")])).unwrap_err();
        assert!(err.to_string().contains("239999"), "{err}");
        let err = Config::load(None, env(&[("PDP_INSTANCE__TENANTS", "[\"2301\"]")])).unwrap_err();
        assert!(err.to_string().contains("instance.tenants"), "{err}");
    }

    #[test]
    fn unknown_environment_variable_is_named() {
        let err = Config::load(None, env(&[("PDP_STORE__URLL", "x")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("store.urll"), "{text}");
        assert!(text.contains("PDP_STORE__URLL"), "{text}");
    }

    #[test]
    fn unknown_top_level_variable_is_named() {
        let err = Config::load(None, env(&[("PDP_FROBNICATE", "1")])).unwrap_err();
        assert!(err.to_string().contains("`frobnicate`"), "{err}");
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pdp.toml");
        std::fs::write(&file, "[events]\nbrokerz = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("events.brokerz"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::load(None, env(&[("PDP_HTTP__LISTEN", "not-an-address")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("http.listen"), "{text}");
        assert!(text.contains("PDP_HTTP__LISTEN"), "{text}");
        let err = Config::load(None, env(&[("PDP_MODE", "prod")])).unwrap_err();
        assert!(err.to_string().contains("`mode`"), "{err}");
    }

    #[test]
    fn printed_configuration_masks_secrets() {
        let config = Config::load(
            None,
            env(&[
                ("PDP_STORE__URL", "postgres://pdp:hunter2@db:5432/pdp"),
                ("PDP_IDENTITY__HMAC_KEY", "very-secret-key"),
            ]),
        )
        .unwrap();
        let text = config.to_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("very-secret-key"), "{text}");
        assert!(
            text.contains("postgres://pdp:********@db:5432/pdp"),
            "{text}"
        );
        assert_eq!(
            config.identity.hmac_key.unwrap().expose(),
            "very-secret-key"
        );
        assert!(!format!("{:?}", config.store.url).contains("hunter2"));
    }

    #[test]
    fn printed_configuration_loads_back() {
        let config = Config::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pdp.toml");
        std::fs::write(&file, config.to_toml()).unwrap();
        assert_eq!(Config::load(Some(&file), env(&[])).unwrap(), config);
    }
}
