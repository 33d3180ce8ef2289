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
use pdp_kit::events::EventLog;
use pdp_kit::identity::IdentityKey;
use pdp_kit::outbox::OutboxRelay;
use pdp_kit::platform;
use pdp_kit::service::{Context, Running, serve_grpc};
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

/// The domain services this build can serve. Each service's issue adds its entry here and in
/// [`migrations_of`] and [`start_service`].
const SERVICES: &[&str] = &[
    pdp_planning::SERVICE,
    pdp_selection::SERVICE,
    pdp_agreements::SERVICE,
];

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
    /// Replace the authorization policy stored in the platform store and tell every gateway to
    /// reload it (cluster mode).
    PolicySet {
        /// casbin policy lines (CSV), as in gateway/policy/policy.csv.
        file: PathBuf,
    },
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
        } => config.data_dir = dir.clone(),
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
        Command::Migrate => with_runtime(&config, migrate(config.clone())),
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

/// The migrations of each store's owner beyond kit's own.
fn migrations_of(owner: &str) -> Vec<pdp_kit::store::Migrations> {
    match owner {
        PLATFORM_STORE => vec![pdp_gateway::policy::MIGRATIONS],
        pdp_planning::SERVICE => vec![pdp_planning::MIGRATIONS],
        pdp_selection::SERVICE => vec![pdp_selection::MIGRATIONS],
        pdp_agreements::SERVICE => vec![pdp_agreements::MIGRATIONS],
        _ => Vec::new(),
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
    let owners = std::iter::once(PLATFORM_STORE).chain(SERVICES.iter().copied());
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

async fn start_service(context: &Context, service: &str) -> anyhow::Result<Running> {
    match service {
        pdp_planning::SERVICE => pdp_planning::start(context).await,
        pdp_selection::SERVICE => pdp_selection::start(context).await,
        pdp_agreements::SERVICE => pdp_agreements::start(context).await,
        other => anyhow::bail!(
            "unknown service `{other}` (available: {})",
            SERVICES.join(", ")
        ),
    }
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

/// Opens the service's store and starts it, its outbox relay and its gRPC server on `listen`.
async fn launch(
    config: &Config,
    name: &'static str,
    log: Arc<dyn EventLog>,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(ServiceHandle, Store)> {
    let cfg = config.clone();
    let (store, _) = tokio::task::spawn_blocking(move || {
        platform::open_migrated_store(&cfg, name, &migrations_of(name))
    })
    .await??;
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
        clock: clock(config)?,
        calendar: Arc::new(WorkingCalendar::load(
            config.calendar.holidays_file.as_deref(),
        )?),
        shutdown: shutdown.clone(),
    };
    let running = start_service(&context, name).await?;
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(store.clone(), log).run(relay_stop.clone()));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr()?;
    let grpc = tokio::spawn(serve_grpc(listener, running.routes, shutdown));
    Ok((
        ServiceHandle {
            name,
            address,
            grpc,
            tasks: running.tasks,
            relay,
            relay_stop,
        },
        store,
    ))
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

/// The system clock, or in dev the clock a test shifts (`dev.clock_shift_file`).
fn clock(config: &Config) -> anyhow::Result<Arc<dyn pdp_kit::clock::Clock>> {
    match &config.dev.clock_shift_file {
        Some(_) if !config.is_dev() => {
            anyhow::bail!("dev.clock_shift_file is for pdp dev only; cluster mode keeps real time")
        }
        Some(file) => {
            tracing::warn!(file = %file.display(), "the clock follows a shift file (dev)");
            Ok(Arc::new(pdp_kit::clock::ShiftedClock::new(file)))
        }
        None => Ok(Arc::new(SystemClock)),
    }
}

/// `pdp serve <service>`: one service with its gRPC API, health and metrics.
async fn serve(config: Config, service: String) -> anyhow::Result<()> {
    let name = SERVICES
        .iter()
        .copied()
        .find(|s| *s == service)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown service `{service}` (available: {})",
                SERVICES.join(", ")
            )
        })?;
    let boot = config.clone();
    let log = tokio::task::spawn_blocking(move || platform::open_event_log(&boot)).await??;
    create_topics(&log).await?;
    let shutdown = CancellationToken::new();
    let (handle, store) = launch(
        &config,
        name,
        log.clone(),
        config.grpc.listen,
        shutdown.clone(),
    )
    .await?;
    let http = tokio::spawn(platform::serve_http(
        config.http.listen,
        platform::readiness(&store, &log),
        |_: &mut actix_web::web::ServiceConfig| {},
        Duration::from_secs(config.http.shutdown_grace_secs),
        shutdown.clone(),
    ));
    platform::shutdown_signal().await;
    shutdown.cancel();
    http.await??;
    handle.stopped().await
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
    for role in roles {
        anyhow::ensure!(
            pdp_gateway::authz::ROLES.contains(&role.as_str()),
            "--role {role} is unknown; roles: {}",
            pdp_gateway::authz::ROLES.join(", ")
        );
    }
    let key = pdp_gateway::auth::DevKey::load_or_create(&config.data_dir)?;
    println!("{}", key.issue(subject, org, roles, &tenant, ttl));
    Ok(())
}

/// `pdp dev` and `pdp gateway`: the platform store with its outbox relay, the audit trail, the
/// gateway, and (in dev) every service that exists.
async fn run_platform(mut config: Config) -> anyhow::Result<()> {
    tracing::info!(data_dir = %config.data_dir.display(), mode = ?config.mode, "starting");
    let boot = config.clone();
    let (store, log) = tokio::task::spawn_blocking(move || {
        let log = platform::open_event_log(&boot)?;
        let (store, _) =
            platform::open_migrated_store(&boot, PLATFORM_STORE, &migrations_of(PLATFORM_STORE))?;
        Ok::<_, anyhow::Error>((store, log))
    })
    .await??;
    create_topics(&log).await?;

    // Stopping goes outside in: HTTP drains, then the audit writer writes the last records,
    // then the relay publishes them.
    let shutdown = CancellationToken::new();
    let audit_stop = CancellationToken::new();
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(store.clone(), log.clone()).run(relay_stop.clone()));

    // In dev every service runs here, each on its own gRPC port (the next one up from
    // `grpc.listen`, or any free one when that is port 0), and the gateway calls them there.
    let services_stop = CancellationToken::new();
    let mut services = Vec::new();
    if config.is_dev() {
        for (i, name) in SERVICES.iter().copied().enumerate() {
            let mut listen = config.grpc.listen;
            if listen.port() != 0 {
                listen.set_port(listen.port() + i as u16);
            }
            let (handle, _) =
                launch(&config, name, log.clone(), listen, services_stop.clone()).await?;
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
    let http = tokio::spawn(platform::serve_http(
        config.http.listen,
        platform::readiness(&store, &log),
        gateway.gateway.clone().configure(),
        Duration::from_secs(config.http.shutdown_grace_secs),
        shutdown.clone(),
    ));

    tokio::select! {
        _ = platform::shutdown_signal() => {}
        _ = shutdown.cancelled() => {}
    }
    shutdown.cancel();
    http.await??;
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
