//! `pdp`: one binary for every part of the platform. It only wires: each part lives in its own
//! crate and is started from here by name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pdp_kit::config::Config;
use pdp_kit::events::EventLog;
use pdp_kit::outbox::OutboxRelay;
use pdp_kit::platform;
use tokio_util::sync::CancellationToken;

/// The platform's own store (audit trail, gateway state); services keep theirs.
const PLATFORM_STORE: &str = "platform";

/// Topics that exist whatever services run: the audit trail and the exchanges' contract.
const PLATFORM_TOPICS: &[&str] = &["pdp.audit", "pdp.exchange.listings"];

/// The domain services this build can serve. Each service's issue adds its entry.
const SERVICES: &[&str] = &[];

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
    /// Apply pending database migrations of the platform store and every service.
    Migrate,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Print the version.
    Version,
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
    if let Command::Dev { data_dir, listen } = &cli.command {
        if let Some(dir) = data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(listen) = listen {
            config.http.listen = *listen;
        }
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
        Command::Migrate => with_runtime(&config, migrate(config.clone())),
        Command::Dev { .. } => with_runtime(&config, dev(config.clone())),
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

async fn migrate(config: Config) -> anyhow::Result<()> {
    let owners = std::iter::once(PLATFORM_STORE).chain(SERVICES.iter().copied());
    for owner in owners {
        let cfg = config.clone();
        let name = owner.to_string();
        let (_, applied) =
            tokio::task::spawn_blocking(move || platform::open_migrated_store(&cfg, &name, &[]))
                .await??;
        if applied.is_empty() {
            println!("{owner}: up to date");
        } else {
            println!("{owner}: applied {}", applied.join(", "));
        }
    }
    Ok(())
}

async fn serve(_config: Config, service: String) -> anyhow::Result<()> {
    let available = if SERVICES.is_empty() {
        "none yet: each domain service lands with its issue".to_string()
    } else {
        SERVICES.join(", ")
    };
    anyhow::bail!("unknown service `{service}` (available: {available})")
}

async fn dev(config: Config) -> anyhow::Result<()> {
    tracing::info!(data_dir = %config.data_dir.display(), "starting pdp dev");
    let boot = config.clone();
    let (store, log) = tokio::task::spawn_blocking(move || {
        let log = platform::open_event_log(&boot)?;
        let (store, _) = platform::open_migrated_store(&boot, PLATFORM_STORE, &[])?;
        Ok::<_, anyhow::Error>((store, log))
    })
    .await??;
    create_topics(&log).await?;

    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(store.clone(), log.clone()).run(shutdown.clone()));
    let http = tokio::spawn(platform::serve_http(
        config.http.listen,
        platform::readiness(&store, &log),
        |_cfg| {},
        Duration::from_secs(config.http.shutdown_grace_secs),
        shutdown.clone(),
    ));

    tokio::select! {
        _ = platform::shutdown_signal() => {}
        _ = shutdown.cancelled() => {}
    }
    shutdown.cancel();
    http.await??;
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
