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
use crate::store::Store;

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
        .add_routes(routes)
        .serve_with_incoming_shutdown(nodelay(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}
