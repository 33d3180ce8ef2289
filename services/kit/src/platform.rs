//! Wiring from configuration to the parts: which store, which event log, the HTTP listener, and
//! shutdown. Each row of the architecture's "two ways to run" table is chosen here and nowhere
//! else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::{EmbeddedLog, EventLog, EventLogError, KafkaLog};
use crate::store::{KIT_MIGRATIONS, Migrations, Store, StoreError};
use crate::telemetry::health::{self, Readiness};

/// The store of `owner`: its PostgreSQL schema, or its SQLite file under the data directory.
pub fn open_store(config: &Config, owner: &str) -> Result<Store, StoreError> {
    match &config.store.url {
        Some(url) => Store::open(url.expose(), owner, config.store.pool_size),
        None => {
            let path: PathBuf = config.data_dir.join(format!("{owner}.db"));
            Store::open(&path.to_string_lossy(), owner, 1)
        }
    }
}

/// Every migration of `owner`'s store: kit's, then the owner's.
pub fn migrations_with_kit(migrations: &[Migrations]) -> Vec<Migrations> {
    let mut sets = vec![KIT_MIGRATIONS];
    sets.extend_from_slice(migrations);
    sets
}

/// Opens `owner`'s store and applies kit's migrations, then the owner's: what `pdp migrate` and
/// `pdp dev` do. Serving processes in a cluster wait instead ([`await_migrations`]).
pub fn open_migrated_store(
    config: &Config,
    owner: &str,
    migrations: &[Migrations],
) -> Result<(Store, Vec<String>), StoreError> {
    let store = open_store(config, owner)?;
    let applied = store.migrate(&migrations_with_kit(migrations))?;
    Ok((store, applied))
}

/// A store a process needs, with every migration it needs.
#[derive(Debug, Clone)]
pub struct NeededStore {
    pub owner: String,
    pub store: Store,
    pub migrations: Vec<Migrations>,
}

/// What is not applied yet across `stores`, as `owner: migration`.
async fn pending(stores: &[NeededStore]) -> Result<Vec<String>, String> {
    let stores = stores.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for needed in &stores {
            let names = needed
                .store
                .pending(&needed.migrations)
                .map_err(|e| format!("{}: {e}", needed.owner))?;
            out.extend(names.into_iter().map(|n| format!("{}: {n}", needed.owner)));
        }
        Ok(out)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Waits until `pdp migrate` (the chart's Job, or a person) has applied every migration that
/// `stores` need: a serving process never migrates, so that replicas and the Job do not race.
/// Meanwhile it serves `/healthz`, and a `/readyz` that names what is pending, on `listen`.
/// Answers `false` when `shutdown` comes first.
pub async fn await_migrations(
    listen: SocketAddr,
    stores: Vec<NeededStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<bool> {
    let first = pending(&stores).await;
    if first.as_ref().is_ok_and(Vec::is_empty) {
        return Ok(true);
    }
    tracing::warn!(pending = ?first, "waiting for `pdp migrate` to apply the migrations");
    let watched = stores.clone();
    let readiness = Readiness::default().check("migrations", move || {
        let stores = watched.clone();
        async move {
            match pending(&stores).await? {
                names if names.is_empty() => Ok(()),
                names => Err(format!("pending: {}; run `pdp migrate`", names.join(", "))),
            }
        }
    });
    let waiting = CancellationToken::new();
    let server = tokio::spawn(serve_http(
        listen,
        readiness,
        |_: &mut web::ServiceConfig| {},
        Duration::from_secs(1),
        waiting.clone(),
    ));
    let migrated = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break false,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if pending(&stores).await.is_ok_and(|p| p.is_empty()) {
            tracing::info!("migrations applied; starting");
            break true;
        }
    };
    waiting.cancel();
    server.await??;
    Ok(migrated)
}

/// Kafka when brokers are configured, else the embedded log under the data directory.
pub fn open_event_log(config: &Config) -> Result<Arc<dyn EventLog>, EventLogError> {
    match &config.events.brokers {
        Some(brokers) => Ok(Arc::new(
            KafkaLog::connect(
                brokers,
                config.events.partitions,
                config.events.replication_factor,
            )?
            .with_member(config.events.member.clone())
            .with_fetch_wait_ms(config.events.fetch_wait_ms),
        )),
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| StoreError::Open(format!("{}: {e}", config.data_dir.display())))?;
            let path = config.data_dir.join("events.db");
            Ok(Arc::new(EmbeddedLog::open(
                &path.to_string_lossy(),
                config.events.partitions,
            )?))
        }
    }
}

/// The readiness of a process that needs `store` and `log`.
pub fn readiness(store: &Store, log: &Arc<dyn EventLog>) -> Readiness {
    let store = store.clone();
    let log = log.clone();
    Readiness::default()
        .check("store", move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        })
        .check("event_log", move || {
            let log = log.clone();
            async move { log.ping().await.map_err(|e| e.to_string()) }
        })
}

/// Serves health, readiness and metrics (plus whatever `extra` mounts) on `listen` until
/// `shutdown`, then lets in-flight requests finish within `grace`.
pub async fn serve_http<F>(
    listen: SocketAddr,
    readiness: Readiness,
    extra: F,
    grace: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    serve_http_with(listen, readiness, true, extra, grace, shutdown).await
}

/// Serves `/metrics` alone on `listen` until `shutdown`: the gateway's internal listener.
pub async fn serve_metrics(listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let server = HttpServer::new(|| App::new().configure(health::metrics_routes))
        .disable_signals()
        .bind(listen)
        .map_err(|e| anyhow::anyhow!("http.metrics_listen {listen}: {e}"))?
        .run();
    tracing::info!(%listen, "metrics listening");
    run_until(server, shutdown).await
}

/// Runs `server` until it ends or `shutdown`, when it stops accepting and lets requests finish.
async fn run_until(
    server: actix_web::dev::Server,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let handle = server.handle();
    let stopper = tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    server.await?;
    stopper.abort();
    Ok(())
}

/// [`serve_http`], with `/metrics` on `listen` or not.
pub async fn serve_http_with<F>(
    listen: SocketAddr,
    readiness: Readiness,
    with_metrics: bool,
    extra: F,
    grace: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let server = HttpServer::new(move || {
        App::new()
            .wrap_fn(|req, srv| {
                use actix_web::dev::Service as _;
                let method = crate::telemetry::metrics::method_label(req.method().as_str());
                let start = std::time::Instant::now();
                let response = srv.call(req);
                async move {
                    let response = response.await?;
                    crate::telemetry::metrics::HTTP_REQUESTS
                        .with_label_values(&[method, response.status().as_str()])
                        .observe(start.elapsed().as_secs_f64());
                    Ok(response)
                }
            })
            .configure(health::routes_for(readiness.clone(), with_metrics))
            .configure(extra.clone())
    })
    .disable_signals()
    // A client that does not finish its request head in time is cut off.
    .client_request_timeout(Duration::from_secs(5))
    .shutdown_timeout(grace.as_secs())
    .bind(listen)
    .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?
    .run();
    tracing::info!(%listen, "http listening");
    run_until(server, shutdown).await
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupt received, shutting down"),
        _ = term => tracing::info!("terminate received, shutting down"),
    }
}
