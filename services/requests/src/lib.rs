//! Data requests (数据使用申请, 第十七条–第十九条): an operator with an ACTIVE agreement asks for
//! the fields it needs of resources within it; the data bureau and the provider unit of each
//! resource review in parallel, providers within the tenant's period of working days; an
//! approval issues a grant (数据使用授权), the intersection of what every reviewer approved,
//! which ends at its last day, on revocation, or at once when the agreement stops being ACTIVE.
//! The sandbox asks [`GrantService/CheckGrant`](service::Requests::check) before every query.
//! Laid out as `services/README.md` says.

mod delivery;
mod destruction;
pub mod developer;
mod developers;
mod gauges;
mod grpc;
pub mod request;
mod sandbox;
pub mod service;
pub mod store;
pub mod ticket;
mod tickets;
pub mod upload;
pub mod workspace;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use pdp_kit::events::Event;
use pdp_kit::inbox::EventHandler;
use pdp_kit::service::{Context, Running};
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::planning::v1 as planning;
use pdp_proto::pdp::products::v1 as products;
use pdp_proto::pdp::requests::v1 as api;
use pdp_proto::pdp::termination::v1 as termination;

use crate::request::{AgreementFacts, ResourceFacts};

/// What requests refuses: kit's one shape of refusal, with the rules of requests in its texts.
pub type RequestError = pdp_kit::error::DomainError;
pub use service::Requests;

pub const SERVICE: &str = "requests";
pub const TOPIC: &str = "pdp.requests";
/// The consumer group that follows the catalog's resources, the agreements, and the products it
/// delivers.
pub const FOLLOW_CONSUMER: &str = "requests-follow";
const FOLLOWED: [&str; 4] = [
    "pdp.planning",
    "pdp.agreements",
    "pdp.products",
    "pdp.termination",
];

pdp_kit::service_def!(SERVICE, start);

/// Keeps what requests must know of other services: each resource's fields and provider, which
/// agreements are ACTIVE for what (ending the grants of an agreement that stops being one), and
/// the registered products it delivers with their buyers' entitlements.
#[derive(Debug, Clone)]
pub struct Follow;

fn resource_facts(r: planning::ResourceChanged) -> ResourceFacts {
    let fields: BTreeMap<String, bool> = r
        .schema
        .iter()
        .map(|f| (f.name.clone(), f.personal_information))
        .collect();
    let kinds: BTreeMap<String, String> =
        r.schema.into_iter().map(|f| (f.name, f.r#type)).collect();
    ResourceFacts {
        id: r.resource_id,
        provider: r.provider_organization,
        provider_unit: r.provider_unit,
        fields,
        kinds,
        classification: r.classification,
        sensitivity: r.sensitivity,
    }
}

fn agreement_facts(a: agreements::AgreementChanged) -> AgreementFacts {
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or(NaiveDate::MIN);
    AgreementFacts {
        active: a.state == agreements::AgreementState::Active as i32,
        first_day: day(&a.first_day),
        last_day: day(&a.last_day),
        id: a.agreement_id,
        operator: a.operator,
        resource_ids: a.resource_ids,
    }
}

impl EventHandler for Follow {
    type Error = RequestError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), RequestError> {
        let scope = TenantScope::system(event.tenant.clone());
        for ty in [
            planning::RESOURCE_CREATED,
            planning::RESOURCE_UPDATED,
            planning::RESOURCE_REGISTERED,
        ] {
            if let Some(resource) = event.data_of(ty)? {
                scope.enter(conn)?;
                return store::put_resource(conn, &scope, &resource_facts(resource));
            }
        }
        for ty in [
            agreements::AGREEMENT_ACTIVATED,
            agreements::AGREEMENT_RESUMED,
            agreements::AGREEMENT_SUSPENDED,
            agreements::AGREEMENT_EXPIRED,
            agreements::AGREEMENT_TERMINATED,
        ] {
            if let Some(agreement) = event.data_of(ty)? {
                scope.enter(conn)?;
                // Suspended, its grants allow nothing (the agreement is not ACTIVE) and come back
                // with it; expired or terminated, they end.
                let ended = match ty.name() {
                    n if n == agreements::AGREEMENT_EXPIRED.name() => Some("EXPIRED"),
                    n if n == agreements::AGREEMENT_TERMINATED.name() => Some("TERMINATED"),
                    _ => None,
                };
                let facts = agreement_facts(agreement);
                store::put_agreement(conn, &scope, &facts)?;
                if let Some(state) = ended {
                    service::end_grants_of_agreement(conn, &scope, &facts.id, state, event.time)?;
                }
                return Ok(());
            }
        }
        for (ty, deliverable) in [
            (products::PRODUCT_REGISTERED, true),
            (products::PRODUCT_WITHDRAWN, false),
        ] {
            if let Some(p) = event.data_of(ty)? {
                scope.enter(conn)?;
                return delivery::follow_product(conn, &scope, &p, deliverable, event.time);
            }
        }
        if let Some(t) = event.data_of(products::TRADE_RECORDED)? {
            scope.enter(conn)?;
            let trade = t.trade.unwrap_or_default();
            return delivery::follow_trade(conn, &scope, &trade);
        }
        if let Some(c) = event.data_of(termination::CASE_OPENED)? {
            scope.enter(conn)?;
            // The case may arrive before the agreement's own end: its grants end here too.
            service::end_grants_of_agreement(conn, &scope, &c.agreement_id, &c.cause, event.time)?;
            let today = pdp_kit::calendar::civil_date(event.time);
            return destruction::order(conn, &scope, &c.case_id, &c.agreement_id, today);
        }
        Ok(())
    }
}

/// The sandbox's store: the configured S3-compatible bucket, else in `pdp dev` a directory under
/// the data directory. A cluster without a bucket has none (loads and queries are refused saying
/// so), rather than each pod keeping data of its own. The Ballista cluster's members
/// (`pdp sandbox …`) open the same.
pub fn sandbox_store(
    config: &pdp_kit::config::Config,
) -> anyhow::Result<Option<Arc<dyn pdp_sandbox::object_store::ObjectStore>>> {
    let s = &config.sandbox;
    Ok(Some(match &s.store_url {
        Some(url) => pdp_sandbox::store::s3(&pdp_sandbox::store::S3 {
            url: url.clone(),
            endpoint: s.s3_endpoint.clone(),
            region: s.s3_region.clone(),
            access_key_id: s.s3_access_key_id.as_ref().map(|k| k.expose().to_string()),
            secret_access_key: s
                .s3_secret_access_key
                .as_ref()
                .map(|k| k.expose().to_string()),
        })?,
        None if config.is_dev() => pdp_sandbox::store::directory(&config.data_dir.join("sandbox"))?,
        None => return Ok(None),
    }))
}

/// The sandbox over [`sandbox_store`], reading the data in process or on the configured Ballista
/// cluster.
fn open_sandbox(
    config: &pdp_kit::config::Config,
) -> anyhow::Result<Option<Arc<pdp_sandbox::Sandbox>>> {
    let Some(objects) = sandbox_store(config)? else {
        return Ok(None);
    };
    let s = &config.sandbox;
    let limits = pdp_sandbox::Limits {
        memory_bytes: s.query_memory_mib << 20,
        time: std::time::Duration::from_secs(s.query_timeout_secs),
    };
    let sandbox = pdp_sandbox::Sandbox::new(objects, limits)?
        .with_workspace_quota(s.workspace_quota_mib.saturating_mul(1 << 20));
    Ok(Some(Arc::new(match &s.ballista_scheduler {
        Some(url) => sandbox.with_engine(Arc::new(pdp_sandbox::ballista::Ballista::new(url)?)),
        None => sandbox,
    })))
}

/// Starts requests: its gRPC services behind the identity check, the follower of planning and
/// agreements, and the scheduler of overdue reviews and grant expiries.
pub async fn start(context: &Context) -> anyhow::Result<Running> {
    for topic in std::iter::once(TOPIC).chain(FOLLOWED) {
        context.log.create_topic(topic).await?;
    }
    let sandbox = open_sandbox(&context.config)?;
    let requests = Requests::new(
        context.store.clone(),
        context.clock.clone(),
        context.calendar.clone(),
        sandbox,
    );
    let routes = pdp_kit::guarded_routes!(
        context,
        requests;
        api::request_service_server::RequestServiceServer,
        api::grant_service_server::GrantServiceServer,
        api::quality_service_server::QualityServiceServer,
        api::developer_service_server::DeveloperServiceServer,
        api::sandbox_service_server::SandboxServiceServer,
        api::product_delivery_service_server::ProductDeliveryServiceServer,
    );
    let follower = context
        .consumer(FOLLOW_CONSUMER, &FOLLOWED)
        .spawn(Follow, context.shutdown.clone());
    let requests_for_datasets = requests.clone();
    let scheduler = context.every(
        "overdue reviews or tickets marked, grants expired",
        move || {
            let requests = requests.clone();
            async move { requests.run_schedule().await }
        },
    );
    let requests_for_destruction = requests_for_datasets.clone();
    let datasets = context.every("datasets refreshed", move || {
        let requests = requests_for_datasets.clone();
        async move { requests.refresh_datasets().await }
    });
    let destructions = context.every("operators' data destroyed", move || {
        let requests = requests_for_destruction.clone();
        async move { requests.destroy_ordered().await }
    });
    Ok(Running {
        routes,
        tasks: vec![
            follower,
            scheduler,
            datasets,
            destructions,
            context.gauges(gauges::measure),
        ],
    })
}
