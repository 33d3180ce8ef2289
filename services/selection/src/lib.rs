//! Selection (运营机构遴选): calls for an effective plan, applications checked against the
//! conditions of 第十二条, evaluation and shortlist, the public notice (公示) with objections,
//! and the conclusion that names the operator (第十三条). Laid out as `services/README.md` says.

mod eligibility;
mod gauges;
mod grpc;
pub mod selection;
pub mod service;
pub mod store;

use std::sync::Arc;

use pdp_kit::events::Event;
use pdp_kit::inbox::EventHandler;
use pdp_kit::service::{Context, Running};
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_proto::pdp::oversight::v1 as oversight;
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
/// The consumer group that follows the incidents oversight records (第十二条(三)).
pub const INCIDENTS_CONSUMER: &str = "selection-incidents";
const OVERSIGHT_TOPIC: &str = "pdp.oversight";

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

/// Keeps the security incidents operators reported to oversight: an application fails the
/// condition of 第十二条(三) on one within three years, whatever it declares.
#[derive(Debug, Clone)]
pub struct RecordedIncidents;

impl EventHandler for RecordedIncidents {
    type Error = SelectionError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), SelectionError> {
        let Some(i) = event.data_of(oversight::INCIDENT_REPORTED)? else {
            return Ok(());
        };
        let scope = TenantScope::system(event.tenant.clone());
        scope.enter(conn)?;
        store::put_incident(conn, &scope, &i.incident_id, &i.operator, &i.occurred_on)
    }
}

/// Starts selection: its gRPC services behind the identity check, the follower of planning's
/// effective plans and that of oversight's incidents.
pub async fn start(context: &Context) -> anyhow::Result<Running> {
    for topic in [TOPIC, PLANNING_TOPIC, OVERSIGHT_TOPIC] {
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
    let incidents = context
        .consumer(INCIDENTS_CONSUMER, &[OVERSIGHT_TOPIC])
        .spawn(RecordedIncidents, context.shutdown.clone());
    Ok(Running {
        routes,
        tasks: vec![follower, incidents, context.gauges(gauges::measure)],
    })
}
