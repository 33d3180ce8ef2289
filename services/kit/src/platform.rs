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

/// Opens `owner`'s store and applies kit's migrations, then the owner's.
pub fn open_migrated_store(
    config: &Config,
    owner: &str,
    migrations: &[Migrations],
) -> Result<(Store, Vec<String>), StoreError> {
    let store = open_store(config, owner)?;
    let mut sets = vec![KIT_MIGRATIONS];
    sets.extend_from_slice(migrations);
    let applied = store.migrate(&sets)?;
    Ok((store, applied))
}

/// Kafka when brokers are configured, else the embedded log under the data directory.
pub fn open_event_log(config: &Config) -> Result<Arc<dyn EventLog>, EventLogError> {
    match &config.events.brokers {
        Some(brokers) => Ok(Arc::new(KafkaLog::connect(
            brokers,
            config.events.partitions,
            config.events.replication_factor,
        )?)),
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
    let server = HttpServer::new(move || {
        App::new()
            .wrap_fn(|req, srv| {
                use actix_web::dev::Service as _;
                let method = req.method().to_string();
                let start = std::time::Instant::now();
                let response = srv.call(req);
                async move {
                    let response = response.await?;
                    crate::telemetry::metrics::HTTP_REQUESTS
                        .with_label_values(&[method.as_str(), response.status().as_str()])
                        .observe(start.elapsed().as_secs_f64());
                    Ok(response)
                }
            })
            .configure(health::routes(readiness.clone()))
            .configure(extra.clone())
    })
    .disable_signals()
    .shutdown_timeout(grace.as_secs())
    .bind(listen)
    .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?
    .run();
    let handle = server.handle();
    tracing::info!(%listen, "http listening");
    let stopper = tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    server.await?;
    stopper.abort();
    Ok(())
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
