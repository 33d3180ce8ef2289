//! Selection (运营机构遴选): calls for an effective plan, applications checked against the
//! conditions of 第十二条, evaluation and shortlist, the public notice (公示) with objections,
//! and the conclusion that names the operator (第十三条). Laid out as `services/README.md` says.

mod eligibility;
mod grpc;
pub mod selection;
pub mod service;
pub mod store;

use std::sync::Arc;

use pdp_kit::events::Event;
use pdp_kit::inbox::EventHandler;
use pdp_kit::service::{Context, Running};
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_proto::pdp::planning::v1 as planning;
use pdp_proto::pdp::selection::v1 as api;

pub use eligibility::{CreditChecker, Judgment, RecordedByStaff};
/// What selection refuses: kit's one shape of refusal, with selection's rules in its texts.
pub type SelectionError = pdp_kit::error::DomainError;
pub use service::Selections;

pub const SERVICE: &str = "selection";
pub const TOPIC: &str = "pdp.selection";
/// The consumer group that follows planning's effective plans.
pub const PLANS_CONSUMER: &str = "selection-plans";
const PLANNING_TOPIC: &str = "pdp.planning";

pdp_kit::service_def!(SERVICE, start);

/// Keeps the plans in force, as planning's events tell, so that a call is opened only for an
/// effective plan without reading planning's tables.
#[derive(Debug, Clone)]
pub struct PlansInForce;

impl EventHandler for PlansInForce {
    type Error = SelectionError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), SelectionError> {
        let scope = TenantScope::system(event.tenant.clone());
        if let Some(plan) = event.data_of(planning::PLAN_BECAME_EFFECTIVE)? {
            scope.enter(conn)?;
            store::plan_in_force(conn, &scope, &plan.plan_id, plan.version as i32, &plan.name)
        } else if let Some(plan) = event.data_of(planning::PLAN_SUPERSEDED)? {
            scope.enter(conn)?;
            store::plan_out_of_force(conn, &scope, &plan.plan_id, plan.version as i32)
        } else {
            Ok(())
        }
    }
}

/// Starts selection: its gRPC services behind the identity check, and the follower of
/// planning's effective plans.
pub async fn start(context: &Context) -> anyhow::Result<Running> {
    for topic in [TOPIC, PLANNING_TOPIC] {
        context.log.create_topic(topic).await?;
    }
    let selections = Selections::new(
        context.store.clone(),
        context.clock.clone(),
        context.calendar.clone(),
        Arc::new(RecordedByStaff),
    );
    let routes = pdp_kit::guarded_routes!(
        context,
        selections;
        api::selection_service_server::SelectionServiceServer,
        api::application_service_server::ApplicationServiceServer,
        api::public_selection_service_server::PublicSelectionServiceServer,
    );

    let follower = context
        .consumer(PLANS_CONSUMER, &[PLANNING_TOPIC])
        .spawn(PlansInForce, context.shutdown.clone());
    Ok(Running {
        routes,
        tasks: vec![follower],
    })
}
