//! `pdp`: one binary for every part of the platform. It only wires: each part lives in its own
//! crate and is started from here by name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pdp_kit::calendar::WorkingCalendar;
use pdp_kit::clock::SystemClock;
use pdp_kit::config::Config;
use pdp_kit::dead_letter;
use pdp_kit::events::EventLog;
use pdp_kit::identity::IdentityKey;
use pdp_kit::outbox::OutboxRelay;
use pdp_kit::platform;
use pdp_kit::service::{Context, ServiceDef, serve_grpc};
use pdp_kit::store::Store;
use tokio_util::sync::CancellationToken;

/// glibc's malloc serializes threads on its arena locks under load; mimalloc does not (the
/// gateway's overhead bench measured 18.5k → 21k requests/s with it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The platform's own store (audit trail, gateway state); services keep theirs.
const PLATFORM_STORE: &str = "platform";

/// Topics that exist whatever services run: the audit trail and the exchanges' contract.
const PLATFORM_TOPICS: &[&str] = &["pdp.audit", "pdp.exchange.listings"];

/// The domain services this build can serve: a new service is one more row.
const SERVICES: &[ServiceDef] = &[
    pdp_planning::DEF,
    pdp_selection::DEF,
    pdp_agreements::DEF,
    pdp_requests::DEF,
    pdp_products::DEF,
    pdp_termination::DEF,
    pdp_oversight::DEF,
];

fn service_named(name: &str) -> anyhow::Result<&'static ServiceDef> {
    SERVICES.iter().find(|s| s.name == name).ok_or_else(|| {
        let known: Vec<_> = SERVICES.iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown service `{name}` (available: {})", known.join(", "))
    })
}

#[derive(Parser, Debug)]
#[command(
    name = "pdp",
    version,
    about = "Heilongjiang public data authorized-operation platform"
)]
struct Cli {
    /// TOML configuration file (also PDP_CONFIG); PDP_* variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything that exists in one process on the embedded defaults (SQLite, embedded log).
    Dev {
        /// Where SQLite files and the dev key live.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// HTTP address for health, metrics and (later) the gateway.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run one service.
    Serve { service: String },
    /// Run the gateway (with the platform store, the audit trail and its outbox relay).
    Gateway,
    /// Print a dev token for front-end development (signed with the data directory's dev key).
    Token {
        /// The subject's tenant, e.g. 230100.
        #[arg(long)]
        tenant: String,
        /// A role id; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The organization the subject acts for.
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "dev-user")]
        subject: String,
        /// How long the token lives: 30m, 8h, 7d.
        #[arg(long, default_value = "8h", value_parser = parse_ttl)]
        ttl: chrono::Duration,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Apply pending database migrations of the platform store and every service.
    Migrate,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Print the version.
    Version,
    /// Print the CustomResourceDefinitions pdp watches (committed under k8s/crds/).
    Crd,
    /// Print the AsyncAPI document of the events pdp publishes (committed as
    /// proto/asyncapi/pdp.yaml): what a data exchange builds its consumer from.
    Asyncapi,
    /// Replace the authorization policy stored in the platform store and tell every gateway to
    /// reload it (cluster mode).
    PolicySet {
        /// casbin policy lines (CSV), as in gateway/policy/policy.csv.
        file: PathBuf,
    },
    /// The working-day calendar.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Events consumers could not apply.
    #[command(subcommand)]
    Events(EventsCommand),
    /// The audit archive.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// A member of the sandbox's Apache Ballista cluster (`sandbox.ballista_scheduler`), reading
    /// the store `sandbox.store_url` names.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

#[derive(Subcommand, Debug)]
enum SandboxCommand {
    /// The scheduler: one per cluster (its jobs' state is in memory).
    Scheduler {
        #[arg(long, default_value = "0.0.0.0:50050")]
        listen: SocketAddr,
        /// The host executors and the requests service reach it at.
        #[arg(long, env = "PDP_SANDBOX_EXTERNAL_HOST", default_value = "localhost")]
        external_host: String,
    },
    /// An executor: serves its tasks' results on `listen` (Arrow Flight) and the scheduler's
    /// calls on the next port.
    Executor {
        #[arg(long, default_value = "0.0.0.0:50051")]
        listen: SocketAddr,
        /// The address the scheduler and the requests service reach it at (the pod's IP).
        #[arg(long, env = "PDP_SANDBOX_EXTERNAL_HOST", default_value = "localhost")]
        external_host: String,
        /// The scheduler's `<host>:<port>`.
        #[arg(long, default_value = "localhost:50050")]
        scheduler: String,
        /// Tasks at once; 0 for one per core.
        #[arg(long, default_value_t = 0)]
        vcores: usize,
        /// Memory its tasks share, in MiB.
        #[arg(long, default_value_t = 1024)]
        memory_mib: u64,
    },
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// List the dead letters of every store: events a consumer parked after its retries.
    DeadLetters,
    /// Ask the consumer that parked dead letter ID to apply it again (within seconds).
    Replay { id: String },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Verify the archive's hash chain and signed checkpoints; names the first record that does
    /// not verify, and exits 1 if any does.
    Verify {
        /// One tenant (default: every tenant with records).
        #[arg(long)]
        tenant: Option<String>,
        /// Records from this time (RFC 3339, or a date: midnight in Asia/Shanghai).
        #[arg(long, value_parser = parse_instant)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Records before this time.
        #[arg(long, value_parser = parse_instant)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Where `pdp dev` keeps its SQLite files and the archive key.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// An instant given as RFC 3339, or as a date (its midnight in Asia/Shanghai).
fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.into());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is neither RFC 3339 nor YYYY-MM-DD"))?;
    let midnight = date.and_time(chrono::NaiveTime::MIN) - chrono::Duration::hours(8);
    Ok(midnight.and_utc())
}

#[derive(Subcommand, Debug)]
enum CalendarCommand {
    /// Validate a deployment's holiday file and print the years pdp would then hold.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    match &cli.command {
        Command::Dev { data_dir, listen } => {
            if let Some(dir) = data_dir {
                config.data_dir = dir.clone();
            }
            if let Some(listen) = listen {
                config.http.listen = *listen;
            }
        }
        Command::Token {
            data_dir: Some(dir),
            ..
        }
        | Command::Audit(AuditCommand::Verify {
            data_dir: Some(dir),
            ..
        }) => config.data_dir = dir.clone(),
        _ => {}
    }
    let result = match cli.command {
        Command::Config => {
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Version => {
            println!("pdp {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::PolicySet { file } => with_runtime(&config, policy_set(config.clone(), file)),
        Command::Crd => {
            print!("{}", pdp_gateway::routing::crd_yaml());
            Ok(())
        }
        Command::Asyncapi => {
            print!("{}", pdp_proto::ASYNCAPI);
            Ok(())
        }
        Command::Migrate => with_runtime(&config, migrate(config.clone())),
        Command::Calendar(CalendarCommand::Check { file }) => calendar_check(&file),
        Command::Events(command) => with_runtime(&config, events(config.clone(), command)),
        Command::Audit(command) => with_runtime(&config, audit(config.clone(), command)),
        Command::Dev { .. } | Command::Gateway => {
            with_runtime(&config, run_platform(config.clone()))
        }
        Command::Token {
            tenant,
            roles,
            org,
            subject,
            ttl,
            ..
        } => token(&config, &tenant, &roles, &org, &subject, ttl),
        Command::Serve { service } => with_runtime(&config, serve(config.clone(), service)),
        Command::Sandbox(command) => with_runtime(&config, sandbox(config.clone(), command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn with_runtime(
    config: &Config,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let _telemetry = pdp_kit::telemetry::init(&config.telemetry, config.mode)?;
        work.await
    })
}

/// Serves a member of the sandbox's Ballista cluster until the process ends.
async fn sandbox(config: Config, command: SandboxCommand) -> anyhow::Result<()> {
    let store = pdp_requests::sandbox_store(&config)?.ok_or_else(|| {
        anyhow::anyhow!(
            "sandbox.store_url is not set: a cluster's members read the bucket it names"
        )
    })?;
    match command {
        SandboxCommand::Scheduler {
            listen,
            external_host,
        } => pdp_sandbox::ballista::serve_scheduler(store, listen, &external_host).await?,
        SandboxCommand::Executor {
            listen,
            external_host,
            scheduler,
            vcores,
            memory_mib,
        } => {
            let (host, port) = scheduler
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| anyhow::anyhow!("--scheduler `{scheduler}` is no <host>:<port>"))?;
            let executor = pdp_sandbox::ballista::Executor {
                listen,
                external_host,
                scheduler: (host, port),
                vcores,
                memory_bytes: memory_mib << 20,
            };
            pdp_sandbox::ballista::serve_executor(store, executor).await?
        }
    }
    Ok(())
}

/// The migrations of each store's owner beyond kit's own.
fn migrations_of(owner: &str) -> Vec<pdp_kit::store::Migrations> {
    match owner {
        PLATFORM_STORE => vec![pdp_gateway::policy::MIGRATIONS],
        name => service_named(name)
            .map(|s| vec![s.migrations])
            .unwrap_or_default(),
    }
}

async fn policy_set(config: Config, file: PathBuf) -> anyhow::Result<()> {
    let policy = std::fs::read_to_string(&file)?;
    // Refuse a policy that does not load before any replica sees it.
    pdp_gateway::authz::CasbinAuthorizer::new(&policy, &pdp_gateway::tenants::Tenants::shipped())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let cfg = config.clone();
    let (store, _) = tokio::task::spawn_blocking(move || {
        platform::open_migrated_store(&cfg, PLATFORM_STORE, &migrations_of(PLATFORM_STORE))
    })
    .await??;
    pdp_gateway::policy::replace(&store, &policy).await?;
    match &config.redis.url {
        Some(url) => pdp_gateway::policy::announce(url.expose()).await?,
        None => println!("no redis.url: gateways load the new policy when they restart"),
    }
    println!("policy from {} stored", file.display());
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let owners = std::iter::once(PLATFORM_STORE).chain(SERVICES.iter().map(|s| s.name));
    for owner in owners {
        let cfg = config.clone();
        let name = owner.to_string();
        let (_, applied) = tokio::task::spawn_blocking(move || {
            platform::open_migrated_store(&cfg, &name, &migrations_of(&name))
        })
        .await??;
        if applied.is_empty() {
            println!("{owner}: up to date");
        } else {
            println!("{owner}: applied {}", applied.join(", "));
        }
    }
    Ok(())
}

/// A service running in this process: its gRPC address and what to wait for when it stops.
struct ServiceHandle {
    name: &'static str,
    address: SocketAddr,
    grpc: tokio::task::JoinHandle<anyhow::Result<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    relay: tokio::task::JoinHandle<()>,
    relay_stop: CancellationToken,
}

/// Purges `store`'s sent outbox rows and old inbox ids every hour until `shutdown`.
fn purge(
    config: &Config,
    store: &Store,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(pdp_kit::retention::run(
        store.clone(),
        pdp_kit::retention::Retention::of(&config.events),
        std::time::Duration::from_secs(3600),
        shutdown.clone(),
    ))
}

/// The store of `name`: migrated here when `migrate` (`pdp dev`), else opened as it is for a
/// process that waits for `pdp migrate`.
async fn service_store(config: &Config, name: &str, migrate: bool) -> anyhow::Result<Store> {
    let cfg = config.clone();
    let name = name.to_string();
    let store = tokio::task::spawn_blocking(move || {
        if migrate {
            platform::open_migrated_store(&cfg, &name, &migrations_of(&name)).map(|(s, _)| s)
        } else {
            platform::open_store(&cfg, &name)
        }
    })
    .await??;
    Ok(store)
}

/// What a process that leaves migrating to `pdp migrate` waits for before it starts `name`.
fn needed(name: &str, store: &Store) -> platform::NeededStore {
    platform::NeededStore {
        owner: name.to_string(),
        store: store.clone(),
        migrations: platform::migrations_with_kit(&migrations_of(name)),
    }
}

/// Starts the service on its (migrated) store, with its outbox relay and its gRPC server on
/// `listen`.
async fn launch(
    config: &Config,
    name: &'static str,
    store: Store,
    log: Arc<dyn EventLog>,
    time: &Time,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<ServiceHandle> {
    let identity_key = IdentityKey::new(
        &pdp_gateway::identity_secret(config)?,
        chrono::Duration::seconds(config.identity.max_age_secs as i64),
        Arc::new(SystemClock),
    );
    let context = Context {
        config: config.clone(),
        store: store.clone(),
        log: log.clone(),
        identity_key,
        clock: time.clock.clone(),
        calendar: time.calendar.clone(),
        shutdown: shutdown.clone(),
    };
    let running = (service_named(name)?.start)(&context).await?;
    let relay_stop = CancellationToken::new();
    let mut tasks = running.tasks;
    tasks.push(purge(config, &store, &shutdown));
    let relay = tokio::spawn(OutboxRelay::new(store, log).run(relay_stop.clone()));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr()?;
    let grpc = tokio::spawn(serve_grpc(listener, running.routes, shutdown));
    Ok(ServiceHandle {
        name,
        address,
        grpc,
        tasks,
        relay,
        relay_stop,
    })
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let signal = token.clone();
    tokio::spawn(async move {
        platform::shutdown_signal().await;
        signal.cancel();
    });
    token
}

impl ServiceHandle {
    /// Waits for the server and the background work to end, then lets the relay publish what
    /// they wrote last.
    async fn stopped(self) -> anyhow::Result<()> {
        self.grpc.await??;
        for task in self.tasks {
            task.await?;
        }
        self.relay_stop.cancel();
        self.relay.await?;
        tracing::info!(service = self.name, "stopped");
        Ok(())
    }
}

/// The clock and the working-day calendar that every service of a process shares.
struct Time {
    clock: Arc<dyn pdp_kit::clock::Clock>,
    calendar: Arc<WorkingCalendar>,
}

impl Time {
    fn new(config: &Config, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let clock = clock(config)?;
        let calendar = calendar(config, clock.clone(), shutdown)?;
        Ok(Self { clock, calendar })
    }
}

/// The system clock, or the clock a test shifts (`dev.clock_shift_file`): in `pdp dev`, and in
/// cluster mode only in a debug build, so that the cross-service tests in `tests/` can move the
/// time of separately started services while a release build (every image) keeps real time.
fn clock(config: &Config) -> anyhow::Result<Arc<dyn pdp_kit::clock::Clock>> {
    match &config.dev.clock_shift_file {
        Some(_) if !config.is_dev() && !cfg!(debug_assertions) => anyhow::bail!(
            "dev.clock_shift_file is for pdp dev and test builds; a release build in cluster \
             mode keeps real time"
        ),
        Some(file) => {
            tracing::warn!(file = %file.display(), "the clock follows a shift file (test)");
            Ok(Arc::new(pdp_kit::clock::ShiftedClock::new(file)))
        }
        None => Ok(Arc::new(SystemClock)),
    }
}

/// `pdp serve <service>`: one service with its gRPC API, health and metrics.
async fn serve(config: Config, service: String) -> anyhow::Result<()> {
    let name = service_named(&service)?.name;
    let boot = config.clone();
    let log = tokio::task::spawn_blocking(move || platform::open_event_log(&boot)).await??;
    create_topics(&log).await?;
    let shutdown = on_signal();
    let store = service_store(&config, name, false).await?;
    let stores = vec![needed(name, &store)];
    if !platform::await_migrations(config.http.listen, stores, shutdown.clone()).await? {
        return Ok(());
    }
    let time = Time::new(&config, &shutdown)?;
    let handle = launch(
        &config,
        name,
        store.clone(),
        log.clone(),
        &time,
        config.grpc.listen,
        shutdown.clone(),
    )
    .await?;
    let mut http = tokio::spawn(platform::serve_http(
        config.http.listen,
        service_readiness(&store, &log, &time.calendar, time.clock.clone()),
        |_: &mut actix_web::web::ServiceConfig| {},
        Duration::from_secs(config.http.shutdown_grace_secs),
        shutdown.clone(),
    ));
    tokio::select! {
        _ = shutdown.cancelled() => http.await??,
        ended = &mut http => {
            // Before a stop was asked, its listener could not bind or failed: without health and
            // metrics nobody can tell the process works, so it stops and says why rather than
            // serve unseen. (On a stop the listener may end before this sees the signal.)
            if !shutdown.is_cancelled() {
                shutdown.cancel();
                handle.stopped().await?;
                ended??;
                anyhow::bail!("the HTTP listener on {} ended", config.http.listen);
            }
            ended??;
        }
    }
    handle.stopped().await
}

const REPLAY_SOON: &str = "its consumer applies it within seconds";
const LISTED_BY: &str = "`pdp events dead-letters` lists them";

fn missing(owner: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{owner}: {e} (has `pdp migrate` run?)")
}

/// `pdp events dead-letters` and `pdp events replay ID`, over the platform store and every
/// service's.
async fn events(mut config: Config, command: EventsCommand) -> anyhow::Result<()> {
    // One connection per store is all a command needs.
    config.store.pool_size = 1;
    let owners: Vec<&str> = std::iter::once(PLATFORM_STORE)
        .chain(SERVICES.iter().map(|s| s.name))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut stores = Vec::new();
        for owner in owners {
            let store = platform::open_store(&config, owner)?;
            stores.push((owner, store.connection()?));
        }
        match command {
            EventsCommand::DeadLetters => {
                println!("store\tid\tconsumer\ttype\ttenant\tattempts\tparked_at\terror");
                let mut total = 0;
                for (owner, conn) in &mut stores {
                    let letters = dead_letter::list(conn, None).map_err(|e| missing(owner, e))?;
                    total += letters.len();
                    for l in letters {
                        let e = &l.delivery.event;
                        println!(
                            "{owner}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                            l.id,
                            l.consumer,
                            e.event_type,
                            e.tenant,
                            l.attempts,
                            l.parked_at.to_rfc3339(),
                            l.error.replace(['\n', '\t'], " ")
                        );
                    }
                }
                eprintln!("{total} dead letter(s)");
                Ok(())
            }
            EventsCommand::Replay { id } => {
                for (owner, conn) in &mut stores {
                    if dead_letter::request_replay(conn, &id).map_err(|e| missing(owner, e))? {
                        println!("{owner}: replay of {id} requested; {REPLAY_SOON}");
                        return Ok(());
                    }
                }
                anyhow::bail!("no dead letter {id} in any store; {LISTED_BY}")
            }
        }
    })
    .await?
}

/// `pdp audit verify`: every tenant's chain (or one's) in the termination service's store, with
/// the deployment's archive key.
async fn audit(mut config: Config, command: AuditCommand) -> anyhow::Result<()> {
    config.store.pool_size = 1;
    let AuditCommand::Verify {
        tenant, from, to, ..
    } = command;
    let key = Arc::new(pdp_termination::archive_key(&config)?);
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || platform::open_store(&config, pdp_termination::SERVICE))
            .await??
    };
    let tenants: Vec<pdp_kit::identity::TenantCode> = match tenant {
        Some(t) => vec![t.parse().map_err(|e| anyhow::anyhow!("--tenant: {e}"))?],
        None => store
            .run(pdp_termination::store::heads)
            .await
            .map_err(|e| missing(pdp_termination::SERVICE, e))?
            .into_iter()
            .filter_map(|(t, _, _)| t.parse().ok())
            .collect(),
    };
    let archive =
        pdp_termination::Archive::new(store, Arc::new(SystemClock), key, config.audit.clone());
    let mut failed = 0;
    println!("tenant\tverified\trecords\tfirst\tlast\tcheckpoints\tfailed_at\tfailure");
    for tenant in tenants {
        let scope = pdp_kit::store::TenantScope::system(tenant.clone());
        let r = archive
            .verify_in(scope, from, to)
            .await
            .map_err(|e| anyhow::anyhow!("{tenant}: {e}"))?;
        failed += usize::from(!r.verified);
        println!(
            "{tenant}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.verified,
            r.records_checked,
            r.first_seq,
            r.last_seq,
            r.checkpoints_checked,
            r.failed_seq,
            r.failure
        );
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} tenant(s) whose archive does not verify"
    );
    Ok(())
}

/// `pdp calendar check FILE`: the file alone must be valid, and so must the shipped years with it.
fn calendar_check(file: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let own =
        WorkingCalendar::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let merged = WorkingCalendar::load(Some(file))?;
    let list = |years: Vec<i32>| {
        years
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{}: valid; it holds {}; with the shipped years pdp holds {}",
        file.display(),
        list(own.years()),
        list(merged.years())
    );
    Ok(())
}

/// The process's one working-day calendar, kept in step with the deployment's holiday file.
fn calendar(
    config: &Config,
    clock: Arc<dyn pdp_kit::clock::Clock>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<WorkingCalendar>> {
    let file = config.calendar.holidays_file.clone();
    let calendar = Arc::new(WorkingCalendar::load(file.as_deref())?);
    tokio::spawn(
        calendar
            .clone()
            .watch(file, clock, Duration::from_secs(30), shutdown.clone()),
    );
    Ok(calendar)
}

/// Readiness of a service process: its store and log, and the calendar's advice.
fn service_readiness(
    store: &Store,
    log: &Arc<dyn EventLog>,
    calendar: &Arc<WorkingCalendar>,
    clock: Arc<dyn pdp_kit::clock::Clock>,
) -> pdp_kit::telemetry::health::Readiness {
    let calendar = calendar.clone();
    platform::readiness(store, log).advise("calendar", move || {
        calendar.advice(pdp_kit::calendar::civil_date(clock.now()))
    })
}

fn parse_ttl(raw: &str) -> Result<chrono::Duration, String> {
    let (number, unit) = raw.split_at(raw.trim_end_matches(char::is_alphabetic).len());
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{raw}`: a number and a unit (s, m, h, d), e.g. 8h"))?;
    let ttl = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => return Err(format!("`{raw}`: the unit is s, m, h or d")),
    };
    if n <= 0 {
        return Err(format!("`{raw}`: must be positive"));
    }
    Ok(ttl)
}

fn token(
    config: &Config,
    tenant: &str,
    roles: &[String],
    org: &str,
    subject: &str,
    ttl: chrono::Duration,
) -> anyhow::Result<()> {
    let tenant = tenant.parse()?;
    anyhow::ensure!(
        pdp_gateway::tenants::Tenants::shipped()
            .get(&tenant)
            .is_some(),
        "--tenant {tenant} is not the province or one of its cities"
    );
    use pdp_kit::identity::Role;
    for role in roles {
        anyhow::ensure!(
            Role::parse(role).is_some_and(|r| !r.is_derived()),
            "--role {role} is not a role a token carries; roles: {}",
            Role::ISSUED
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let max = config.gateway.max_token_lifetime_secs;
    anyhow::ensure!(
        ttl.num_seconds() <= max,
        "--ttl {}s: the gateway accepts tokens living at most {max}s \
         (gateway.max_token_lifetime_secs)",
        ttl.num_seconds()
    );
    let key = pdp_gateway::auth::DevKey::load_or_create(&config.data_dir)?;
    println!("{}", key.issue(subject, org, roles, &tenant, ttl));
    Ok(())
}

/// `pdp dev` and `pdp gateway`: the platform store with its outbox relay, the audit trail, the
/// gateway, and (in dev) every service that exists.
async fn run_platform(mut config: Config) -> anyhow::Result<()> {
    tracing::info!(data_dir = %config.data_dir.display(), mode = ?config.mode, "starting");
    // `pdp dev` migrates its own stores; a gateway in a cluster waits for `pdp migrate`.
    let migrate = config.is_dev();
    let boot = config.clone();
    let log = tokio::task::spawn_blocking(move || platform::open_event_log(&boot)).await??;
    let store = service_store(&config, PLATFORM_STORE, migrate).await?;
    let signal = on_signal();
    let stores = vec![needed(PLATFORM_STORE, &store)];
    if !platform::await_migrations(config.http.listen, stores, signal.clone()).await? {
        return Ok(());
    }
    create_topics(&log).await?;

    // Stopping goes outside in: HTTP drains, then the audit writer writes the last records,
    // then the relay publishes them.
    let shutdown = CancellationToken::new();
    let audit_stop = CancellationToken::new();
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(store.clone(), log.clone()).run(relay_stop.clone()));
    let purger = purge(&config, &store, &shutdown);

    // In dev every service runs here, each on its own gRPC port (the next one up from
    // `grpc.listen`, or any free one when that is port 0), and the gateway calls them there.
    let services_stop = CancellationToken::new();
    let time = Time::new(&config, &services_stop)?;
    let mut services = Vec::new();
    if config.is_dev() {
        for (i, name) in SERVICES.iter().map(|s| s.name).enumerate() {
            let mut listen = config.grpc.listen;
            if listen.port() != 0 {
                listen.set_port(listen.port() + i as u16);
            }
            let store = service_store(&config, name, true).await?;
            let handle = launch(
                &config,
                name,
                store,
                log.clone(),
                &time,
                listen,
                services_stop.clone(),
            )
            .await?;
            config
                .gateway
                .upstreams
                .entry(name.to_string())
                .or_insert_with(|| format!("http://{}", handle.address));
            services.push(handle);
        }
    }
    let gateway =
        pdp_gateway::start(&config, store.clone(), log.clone(), audit_stop.clone()).await?;
    let readiness = if config.is_dev() {
        service_readiness(&store, &log, &time.calendar, time.clock.clone())
    } else {
        platform::readiness(&store, &log)
    };
    // The public listener carries no metrics: they go to an internal one, or (in dev, unset)
    // stay on the one port.
    let metrics_here = config.http.metrics_listen.is_none() && config.is_dev();
    if config.http.metrics_listen.is_none() && !config.is_dev() {
        tracing::warn!("http.metrics_listen is unset: the gateway serves no /metrics");
    }
    let metrics = config
        .http
        .metrics_listen
        .map(|listen| tokio::spawn(platform::serve_metrics(listen, shutdown.clone())));
    let http = tokio::spawn(platform::serve_http_with(
        config.http.listen,
        readiness,
        metrics_here,
        gateway.gateway.clone().configure(),
        Duration::from_secs(config.http.shutdown_grace_secs),
        shutdown.clone(),
    ));

    tokio::select! {
        _ = signal.cancelled() => {}
        _ = shutdown.cancelled() => {}
    }
    shutdown.cancel();
    http.await??;
    purger.await?;
    if let Some(metrics) = metrics {
        metrics.await??;
    }
    services_stop.cancel();
    for service in services {
        service.stopped().await?;
    }
    audit_stop.cancel();
    gateway.audit_writer.await?;
    relay_stop.cancel();
    relay.await?;
    tracing::info!("pdp dev stopped");
    Ok(())
}

async fn create_topics(log: &Arc<dyn EventLog>) -> anyhow::Result<()> {
    for topic in PLATFORM_TOPICS {
        log.create_topic(topic).await?;
    }
    Ok(())
}
