//! Apache Ballista, for when one pod is not enough: the reading of the data — the groups a
//! controlled plan computes, the only part of a query that touches records — runs on a Ballista
//! cluster (a scheduler and its executors). What leaves is still decided in the requests pod
//! from those groups, by the same [`crate::disclosure::control`] as in process, so the answer is
//! the same wherever the groups were computed.
//!
//! The scheduler and executors are `pdp sandbox scheduler` and `pdp sandbox executor`: the pdp
//! image, not Ballista's, because they must read the same store as the requests pods under the
//! same `sandbox://data/` URL the plans name, with the store's credentials from the same Secret.
//!
//! What the cluster sees is row-level: the plans it runs read granted fields and carry the
//! grant's mask key. Ballista's gRPC has no authentication of its own, so the chart lets only the
//! requests pods (and the cluster's own members) reach the scheduler and executors.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::RuntimeProducer;
use ballista_core::extension::SessionStateExt;
use ballista_core::utils::{default_config_producer, default_session_builder};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use url::Url;

use crate::engine::{Engine, SandboxError, store_url};

/// A Ballista cluster's scheduler, as the requests service reaches it: `df://<host>:<port>`.
#[derive(Debug, Clone)]
pub struct Ballista {
    /// `http://<host>:<port>`, as Ballista's client takes it.
    scheduler: String,
}

impl Ballista {
    /// The cluster whose scheduler `url` (`df://<host>:<port>`) names.
    pub fn new(url: &str) -> Result<Self, SandboxError> {
        let bad = || {
            SandboxError::Engine(format!(
                "sandbox.ballista_scheduler `{url}` is no df://<host>:<port> URL"
            ))
        };
        let parsed = Url::parse(url).map_err(|_| bad())?;
        if parsed.scheme() != "df" {
            return Err(bad());
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(bad)?;
        let port = parsed.port().ok_or_else(bad)?;
        Ok(Self {
            scheduler: format!("http://{host}:{port}"),
        })
    }
}

impl Engine for Ballista {
    fn context(
        &self,
        state: datafusion::execution::SessionState,
    ) -> Result<SessionContext, SandboxError> {
        let state = state.upgrade_for_ballista(self.scheduler.clone())?;
        Ok(SessionContext::new_with_state(state))
    }

    /// Ballista's client says a failed job as `Job <id> failed: …` (the engine's message, which
    /// can quote a value: never shown) and a scheduler it cannot reach as a transport error.
    fn unreachable(&self, error: &datafusion::error::DataFusionError) -> Option<String> {
        let datafusion::error::DataFusionError::Execution(message) = error.find_root() else {
            return None;
        };
        let transport = ["transport error", "ConnectError", "Connection refused"];
        (!message.starts_with("Job ") && transport.iter().any(|t| message.contains(t)))
            .then(|| format!("the Ballista scheduler at {}", self.scheduler))
    }
}

/// A runtime that reads `store` under the URL the plans name.
fn runtime(
    store: &Arc<dyn ObjectStore>,
    builder: RuntimeEnvBuilder,
) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let runtime = builder.build_arc()?;
    runtime.register_object_store(&store_url(), store.clone());
    Ok(runtime)
}

/// Serves a Ballista scheduler on `listen` until the process ends; executors and the requests
/// service reach it as `external_host:<listen's port>`. Its jobs' state is in memory: one
/// scheduler per cluster (a restarted scheduler loses the queries then running, which fail and
/// can be asked again).
pub async fn serve_scheduler(
    store: Arc<dyn ObjectStore>,
    listen: SocketAddr,
    external_host: &str,
) -> Result<(), SandboxError> {
    let config = SchedulerConfig::default()
        .with_hostname(external_host)
        .with_port(listen.port());
    let config = SchedulerConfig {
        bind_host: listen.ip().to_string(),
        ..config
    };
    let session_builder = Arc::new(move |config: SessionConfig| {
        let state = default_session_builder(config)?;
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime(&store, RuntimeEnvBuilder::new())?)
            .build())
    });
    let cluster = BallistaCluster::new_memory(
        config.scheduler_endpoint(),
        session_builder,
        Arc::new(default_config_producer),
    );
    start_server(cluster, listen, Arc::new(config))
        .await
        .map_err(|e| SandboxError::Engine(format!("the Ballista scheduler stopped: {e}")))
}

/// Where an executor listens and whom it serves.
#[derive(Debug, Clone)]
pub struct Executor {
    /// Where it serves the results of its tasks (Arrow Flight); its gRPC port is the next one.
    pub listen: SocketAddr,
    /// The address the scheduler and clients reach it at (the pod's IP in a cluster).
    pub external_host: String,
    /// The scheduler's host and port.
    pub scheduler: (String, u16),
    /// Tasks run at once; 0 for one per core.
    pub vcores: usize,
    /// The memory its tasks share, in bytes.
    pub memory_bytes: u64,
}

/// Serves a Ballista executor until the process ends, reading `store`.
pub async fn serve_executor(
    store: Arc<dyn ObjectStore>,
    executor: Executor,
) -> Result<(), SandboxError> {
    let producer: RuntimeProducer = Arc::new(move |_| runtime(&store, RuntimeEnvBuilder::new()));
    let config = ExecutorProcessConfig {
        bind_host: executor.listen.ip().to_string(),
        port: executor.listen.port(),
        grpc_port: executor.listen.port().saturating_add(1),
        external_host: Some(executor.external_host),
        scheduler_host: executor.scheduler.0,
        scheduler_port: executor.scheduler.1,
        // In a cluster the executors may start first: they wait for the scheduler.
        scheduler_connect_timeout_seconds: 60,
        vcores: executor.vcores,
        memory_pool_size: Some(executor.memory_bytes),
        override_runtime_producer: Some(producer),
        // Heartbeats every few seconds, so that a scheduler notices a lost executor soon.
        executor_heartbeat_interval_seconds: 5,
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| SandboxError::Engine(format!("the Ballista executor stopped: {e}")))
}
