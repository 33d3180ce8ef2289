//! Agreements (授权运营协议): drafted from a concluded selection with the thirteen items of
//! 第十四条, signed by both parties, ACTIVE from the first day of a term of at most three years to
//! its last, renewed within that bound; the authorization query other services ask, and its
//! public disclosure. Laid out as `services/README.md` says.

pub mod agreement;
mod gauges;
mod grpc;
pub mod service;
pub mod store;

use pdp_kit::events::Event;
use pdp_kit::inbox::EventHandler;
use pdp_kit::service::{Context, Running};
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_proto::pdp::agreements::v1 as api;
use pdp_proto::pdp::oversight::v1 as oversight;
use pdp_proto::pdp::planning::v1 as planning;
use pdp_proto::pdp::selection::v1 as selection;

/// What agreements refuses: kit's one shape of refusal, with agreements's rules in its texts.
pub type AgreementError = pdp_kit::error::DomainError;
pub use service::Agreements;

pub const SERVICE: &str = "agreements";
pub const TOPIC: &str = "pdp.agreements";
/// The consumer group that follows plans' scopes, concluded selections and passed evaluations.
pub const FOLLOW_CONSUMER: &str = "agreements-follow";
const FOLLOWED: [&str; 3] = ["pdp.planning", "pdp.selection", "pdp.oversight"];

pdp_kit::service_def!(SERVICE, start);

/// Keeps what agreements must know of other services: each effective plan's scope, each
/// concluded selection's operators, and each agreement's passed evaluations (a renewal needs
/// one, 第二十八条) and failed rectifications (a termination for a breach not rectified rests on
/// one, 第三十条).
#[derive(Debug, Clone)]
pub struct Follow;

impl EventHandler for Follow {
    type Error = AgreementError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), AgreementError> {
        let scope = TenantScope::system(event.tenant.clone());
        if let Some(plan) = event.data_of(planning::PLAN_BECAME_EFFECTIVE)? {
            scope.enter(conn)?;
            store::put_plan_scope(
                conn,
                &scope,
                &plan.plan_id,
                plan.version as i32,
                &plan.resource_ids,
            )
        } else if let Some(selection) = event.data_of(selection::SELECTION_CONCLUDED)? {
            scope.enter(conn)?;
            store::put_concluded(
                conn,
                &scope,
                &selection.selection_id,
                &selection.plan_id,
                selection.plan_version as i32,
                &selection.selected_organizations,
            )
        } else if let Some(e) = event.data_of(oversight::EVALUATION_RECORDED)? {
            if !e.passed || e.agreement_id.is_empty() {
                return Ok(());
            }
            scope.enter(conn)?;
            store::put_passed_evaluation(conn, &scope, &e.evaluation_id, &e.agreement_id)
        } else if let Some(r) = event.data_of(oversight::RECTIFICATION_FAILED)? {
            if r.agreement_id.is_empty() {
                return Ok(());
            }
            scope.enter(conn)?;
            store::put_failed_rectification(conn, &scope, &r.order_id, &r.agreement_id)
        } else {
            Ok(())
        }
    }
}

/// Starts agreements: its gRPC services behind the identity check, the follower of planning,
/// selection and oversight, and the scheduler of activations and expiries.
pub async fn start(context: &Context) -> anyhow::Result<Running> {
    for topic in std::iter::once(TOPIC).chain(FOLLOWED) {
        context.log.create_topic(topic).await?;
    }
    let agreements = Agreements::new(context.store.clone(), context.clock.clone());
    let routes = pdp_kit::guarded_routes!(
        context,
        agreements;
        api::agreement_service_server::AgreementServiceServer,
        api::authorization_service_server::AuthorizationServiceServer,
        api::public_authorization_service_server::PublicAuthorizationServiceServer,
    );

    let follower = context
        .consumer(FOLLOW_CONSUMER, &FOLLOWED)
        .spawn(Follow, context.shutdown.clone());
    let scheduler = context.every("agreements activated or expired", move || {
        let agreements = agreements.clone();
        async move { agreements.run_schedule().await }
    });
    Ok(Running {
        routes,
        tasks: vec![follower, scheduler, context.gauges(gauges::measure)],
    })
}
