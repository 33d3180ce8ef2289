//! Planning (规划): the data-resource catalog and its registration, implementation plans with
//! their approval chain, and the filing of city plans with the province.
//!
//! Layout, the pattern every domain service follows (see `services/README.md`):
//! `plan` and `resource` hold the rules, `service` the operations (one transaction each, with
//! their events and audit records), `store` the rows, `grpc` the API adapter, and this file the
//! wiring that `pdp` calls.

mod grpc;
pub mod plan;
pub mod resource;
pub mod service;
pub mod store;

use std::time::Duration;

use pdp_kit::events::Event;
use pdp_kit::identity::RequireIdentity;
use pdp_kit::inbox::{EventHandler, InboxConsumer};
use pdp_kit::service::{Context, Running};
use pdp_kit::store::{AnyConnection, Migrations};
use pdp_proto::pdp::planning::v1 as api;

/// What planning refuses: kit's one shape of refusal, with planning's rules in its texts.
pub type PlanningError = pdp_kit::error::DomainError;
pub use service::Planning;

/// The service's name: its store, its upstream in the gateway's routes, its event source.
pub const SERVICE: &str = "planning";
/// Planning's domain events.
pub const TOPIC: &str = "pdp.planning";
/// The consumer group that files city plans with the province.
pub const FILINGS_CONSUMER: &str = "planning-filings";

pub const MIGRATIONS: Migrations = Migrations {
    postgres: &POSTGRES,
    sqlite: &SQLITE,
};

static POSTGRES: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations/postgres");
static SQLITE: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations/sqlite");

/// Files city plans that took effect with the province (R-PLAN-5, R-TEN-3). Runs in the
/// instance that serves the province; a city with its own instance reaches it through the
/// provincial event log that both instances write to.
#[derive(Debug, Clone)]
pub struct Filings;

impl EventHandler for Filings {
    type Error = PlanningError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), PlanningError> {
        if event.event_type == format!("pdp.{SERVICE}.plan.became_effective") {
            Planning::receive_filing(conn, event, chrono::Utc::now())?;
        }
        Ok(())
    }
}

/// Starts planning in `context`: its gRPC services (every call needs the gateway's signed
/// identity), the effective-date scheduler and, where the province is served, the filings
/// consumer.
pub async fn start(context: &Context) -> anyhow::Result<Running> {
    context.log.create_topic(TOPIC).await?;
    let planning = Planning::new(context.store.clone(), context.clock.clone());
    let guard = RequireIdentity(context.identity_key.clone());
    let routes = tonic::service::Routes::new(
        api::resource_service_server::ResourceServiceServer::with_interceptor(
            planning.clone(),
            guard.clone(),
        ),
    )
    .add_service(
        api::plan_service_server::PlanServiceServer::with_interceptor(
            planning.clone(),
            guard.clone(),
        ),
    )
    .add_service(
        api::filing_service_server::FilingServiceServer::with_interceptor(
            planning.clone(),
            guard.clone(),
        ),
    )
    .add_service(
        api::public_planning_service_server::PublicPlanningServiceServer::with_interceptor(
            planning.clone(),
            guard,
        ),
    );

    let mut tasks = Vec::new();
    let scheduler = planning.clone();
    let stop = context.shutdown.clone();
    let interval = Duration::from_secs(context.config.instance.scheduler_interval_secs.max(1));
    tasks.push(tokio::spawn(async move {
        loop {
            match scheduler.take_effect_due().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(plans = n, "plans took effect"),
                Err(err) => {
                    tracing::warn!(error = %err, "effective-date scheduler failed; retrying")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }));
    if context.config.instance.serves_province() {
        let consumer = InboxConsumer {
            store: context.store.clone(),
            log: context.log.clone(),
            consumer: FILINGS_CONSUMER.into(),
            topics: vec![TOPIC.into()],
            batch_size: 100,
        };
        let stop = context.shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let handler = std::sync::Arc::new(Filings);
            // A failed batch is not committed: start again and it is delivered again.
            while let Err(err) = consumer.clone().run(handler.clone(), stop.clone()).await {
                tracing::warn!(error = %err, "filings consumer failed; restarting");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }));
    }
    Ok(Running { routes, tasks })
}
