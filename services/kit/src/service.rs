//! What a domain service gets from the process that runs it, and what it hands back: the one
//! shape every service crate's `start` has, so that `pdp` wires them all alike (`pdp serve
//! <name>` runs one, `pdp dev` runs them all in one process).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::calendar::WorkingCalendar;
use crate::clock::Clock;
use crate::config::Config;
use crate::events::EventLog;
use crate::identity::IdentityKey;
use crate::inbox::InboxConsumer;
use crate::store::{AnyConnection, Store, StoreError, TenantScope};
use chrono::{DateTime, Utc};

/// Everything a service needs from outside itself.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Config,
    /// The service's own store, migrated (kit's tables and the service's).
    pub store: Store,
    pub log: Arc<dyn EventLog>,
    /// Verifies the identity the gateway signs into every call.
    pub identity_key: IdentityKey,
    pub clock: Arc<dyn Clock>,
    pub calendar: Arc<WorkingCalendar>,
    pub shutdown: CancellationToken,
}

impl Context {
    /// An inbox consumer of this instance: its own consumer group on `topics`, applying the
    /// events of the tenants the instance serves.
    pub fn consumer(&self, name: &str, topics: &[&str]) -> InboxConsumer {
        InboxConsumer {
            store: self.store.clone(),
            log: self.log.clone(),
            consumer: name.to_string(),
            group: self.config.instance.group(name),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            tenants: self.config.instance.tenants.clone(),
            batch_size: 100,
            one_transaction: false,
        }
    }

    /// Runs `work` every `instance.scheduler_interval_secs` until shutdown: the dated work of a
    /// service (plans taking effect, agreements expiring). `work` answers how many items it
    /// did; a failure is logged and tried again at the next tick.
    pub fn every<F, Fut, E>(&self, what: &'static str, work: F) -> JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<usize, E>> + Send,
        E: std::fmt::Display,
    {
        let interval =
            std::time::Duration::from_secs(self.config.instance.scheduler_interval_secs.max(1));
        let stop = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                match work().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(items = n, "{what}"),
                    Err(err) => tracing::warn!(error = %err, "{what}: failed; trying again"),
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        })
    }
}

/// How a service counts its part of the domain gauges (`telemetry::metrics::PLANS` …) in one
/// tenant: in that tenant's scope, at `now`, looking `window_days` ahead; it sets the gauges.
pub type Measure<E> = fn(&mut AnyConnection, &TenantScope, DateTime<Utc>, u32) -> Result<(), E>;

impl Context {
    /// Refreshes the service's domain gauges every scheduler interval, one tenant at a time (those
    /// the instance keeps), each in its own read of that tenant's scope. Every replica measures
    /// alike: a dashboard takes the maximum over them.
    pub fn gauges<E>(&self, measure: Measure<E>) -> JoinHandle<()>
    where
        E: From<StoreError> + From<diesel::result::Error> + std::fmt::Display + Send + 'static,
    {
        let store = self.store.clone();
        let clock = self.clock.clone();
        let tenants = self.config.instance.served_tenants();
        let window = self.config.telemetry.domain_window_days;
        self.every("domain gauges", move || {
            let (store, clock, tenants) = (store.clone(), clock.clone(), tenants.clone());
            async move {
                for tenant in tenants {
                    let scope = TenantScope::system_read(tenant);
                    store
                        .operate(&scope, clock.now(), move |conn, scope, now| {
                            measure(conn, scope, now, window)
                        })
                        .await?;
                }
                Ok::<_, E>(0)
            }
        })
    }
}

/// The operations of a domain service run alike: in one transaction in the caller's tenant, at the
/// time of the service's clock. A service says where its store and clock are; `in_scope` is the
/// rest.
pub trait Operations {
    /// The service's refusal (its name for `kit::error::DomainError`).
    type Error: From<StoreError> + From<diesel::result::Error> + Send + 'static;

    fn store(&self) -> &Store;
    fn clock(&self) -> &dyn Clock;

    /// Runs `f` in one transaction in `scope`'s tenant with the scope and the time now.
    fn in_scope<F, R>(
        &self,
        scope: &TenantScope,
        f: F,
    ) -> impl std::future::Future<Output = Result<R, Self::Error>> + Send
    where
        F: FnOnce(&mut AnyConnection, &TenantScope, DateTime<Utc>) -> Result<R, Self::Error>
            + Send
            + 'static,
        R: Send + 'static,
    {
        self.store().operate(scope, self.clock().now(), f)
    }
}

/// What `start` returns while it starts.
pub type Starting<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Running>> + 'a>>;

/// A domain service as the `pdp` binary knows it: one row of its table of services.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDef {
    /// Its name: `pdp serve <name>`, its store, its upstream in the gateway's routes.
    pub name: &'static str,
    /// Its own tables (kit's come with every store).
    pub migrations: crate::store::Migrations,
    pub start: fn(&Context) -> Starting<'_>,
}

/// A service crate's `MIGRATIONS` (from its `migrations/` folders) and its `DEF`, the row of pdp's
/// table of services: `pdp_kit::service_def!(SERVICE, start);`.
#[macro_export]
macro_rules! service_def {
    ($name:expr, $start:path) => {
        /// The service's own tables, for both backends.
        pub const MIGRATIONS: $crate::store::Migrations = $crate::migrations!();

        /// The service as `pdp` serves it.
        pub const DEF: $crate::service::ServiceDef = $crate::service::ServiceDef {
            name: $name,
            migrations: MIGRATIONS,
            start: |context| Box::pin($start(context)),
        };
    };
}

/// The gRPC services of a service crate, each behind the check of the identity the gateway signs
/// (a call without one is refused): `guarded_routes!(context, planning; api::x::XServer, …)`.
#[macro_export]
macro_rules! guarded_routes {
    ($context:expr, $service:expr; $($first:ident)::+ $(, $($rest:ident)::+)* $(,)?) => {{
        let guard = $crate::identity::RequireIdentity($context.identity_key.clone());
        $crate::service::Routes::new(
            $($first)::+::with_interceptor($service.clone(), guard.clone()),
        )
        $(.add_service($($rest)::+::with_interceptor($service.clone(), guard.clone())))*
    }};
}

pub use tonic::service::Routes;

/// A started service: its gRPC services and its background work (schedulers, consumers), which
/// end when the context's `shutdown` is cancelled.
#[derive(Debug)]
pub struct Running {
    pub routes: tonic::service::Routes,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Accepted connections with Nagle's algorithm off: small gRPC answers otherwise wait for the
/// peer's delayed ACK, which puts ~40 ms on the slowest calls.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Serves `routes` over gRPC on `listener` until `shutdown`.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(listen = %local, "grpc listening");
    tonic::transport::Server::builder()
        .layer(crate::telemetry::grpc::GrpcTelemetryLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(nodelay(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}
