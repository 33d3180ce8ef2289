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
use pdp_kit::identity::RequireIdentity;
use pdp_kit::inbox::EventHandler;
use pdp_kit::service::{Context, Running, ServiceDef};
use pdp_kit::store::{AnyConnection, Migrations, TenantScope};
use pdp_proto::pdp::selection::v1 as api;

pub use eligibility::{CreditChecker, EvidenceCreditChecker};
/// What selection refuses: kit's one shape of refusal, with selection's rules in its texts.
pub type SelectionError = pdp_kit::error::DomainError;
pub use service::Selections;

pub const SERVICE: &str = "selection";
pub const TOPIC: &str = "pdp.selection";
/// The consumer group that follows planning's effective plans.
pub const PLANS_CONSUMER: &str = "selection-plans";
const PLANNING_TOPIC: &str = "pdp.planning";

pub const MIGRATIONS: Migrations = pdp_kit::migrations!();

/// The service as `pdp` serves it.
pub const DEF: ServiceDef = ServiceDef {
    name: SERVICE,
    migrations: MIGRATIONS,
    start: |context| Box::pin(start(context)),
};

/// Keeps the plans in force, as planning's events tell, so that a call is opened only for an
/// effective plan without reading planning's tables.
#[derive(Debug, Clone)]
pub struct PlansInForce;

impl EventHandler for PlansInForce {
    type Error = SelectionError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), SelectionError> {
        let verb = event.event_type.rsplit('.').next().unwrap_or_default();
        if !matches!(verb, "became_effective" | "superseded") {
            return Ok(());
        }
        let plan_id = event.data["plan_id"].as_str().unwrap_or_default();
        let version = event.data["version"].as_i64().unwrap_or_default() as i32;
        let scope = TenantScope::system(event.tenant.clone());
        scope.enter(conn)?;
        if verb == "became_effective" {
            let name = event.data["name"].as_str().unwrap_or_default();
            store::plan_in_force(conn, &scope, plan_id, version, name)
        } else {
            store::plan_out_of_force(conn, &scope, plan_id, version)
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
        Arc::new(EvidenceCreditChecker),
    );
    let guard = RequireIdentity(context.identity_key.clone());
    let routes = tonic::service::Routes::new(
        api::selection_service_server::SelectionServiceServer::with_interceptor(
            selections.clone(),
            guard.clone(),
        ),
    )
    .add_service(
        api::application_service_server::ApplicationServiceServer::with_interceptor(
            selections.clone(),
            guard.clone(),
        ),
    )
    .add_service(
        api::public_selection_service_server::PublicSelectionServiceServer::with_interceptor(
            selections, guard,
        ),
    );

    let follower = context
        .consumer(PLANS_CONSUMER, &[PLANNING_TOPIC])
        .spawn(PlansInForce, context.shutdown.clone());
    Ok(Running {
        routes,
        tasks: vec![follower],
    })
}
