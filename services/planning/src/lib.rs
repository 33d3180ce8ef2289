//! Planning (规划): the data-resource catalog and its registration, implementation plans with
//! their approval chain, and the filing of city plans with the province.
//!
//! Layout, the pattern every domain service follows (see `services/README.md`):
//! `plan` and `resource` hold the rules, `service` the operations (one transaction each, with
//! their events and audit records), `store` the rows, `grpc` the API adapter, and this file the
//! wiring that `pdp` calls.

mod gauges;
mod grpc;
pub mod plan;
pub mod resource;
pub mod service;
pub mod store;

use std::sync::Arc;

use pdp_kit::clock::Clock;
use pdp_kit::events::Event;
use pdp_kit::inbox::EventHandler;
use pdp_kit::service::{Context, Running};
use pdp_kit::store::AnyConnection;
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

pdp_kit::service_def!(SERVICE, start);

/// Files city plans that took effect with the province (R-PLAN-5, R-TEN-3). Runs in the
/// instance that serves the province; a city with its own instance reaches it through the
/// provincial event log that both instances write to.
#[derive(Debug, Clone)]
pub struct Filings {
    pub clock: Arc<dyn Clock>,
}

impl EventHandler for Filings {
    type Error = PlanningError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), PlanningError> {
        if let Some(effective) = event.data_of(api::PLAN_BECAME_EFFECTIVE)? {
            Planning::receive_filing(conn, event, &effective, self.clock.now())?;
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
    let routes = pdp_kit::guarded_routes!(
        context,
        planning;
        api::resource_service_server::ResourceServiceServer,
        api::plan_service_server::PlanServiceServer,
        api::filing_service_server::FilingServiceServer,
        api::public_planning_service_server::PublicPlanningServiceServer,
    );

    let scheduler = planning.clone();
    let mut tasks = vec![context.every("plans took effect", move || {
        let planning = scheduler.clone();
        async move { planning.take_effect_due().await }
    })];
    tasks.push(context.gauges(gauges::measure));
    if context.config.instance.serves_province() {
        // The province files the plans of every city, those of cities with their own instance
        // included: this consumer applies every tenant's events.
        let mut filings = context.consumer(FILINGS_CONSUMER, &[TOPIC]);
        filings.tenants.clear();
        let clock = context.clock.clone();
        tasks.push(filings.spawn(Filings { clock }, context.shutdown.clone()));
    }
    Ok(Running { routes, tasks })
}
