//! Security oversight, evaluation and disclosure (安全监管与评估): monitoring rules over every
//! event and audit record and the alerts they raise (第二十六条, 第二十七条); inspections,
//! findings, rectification orders and referrals (第二十六条, 第三十条); incidents, security regimes
//! and risk assessments (R-SEC-1, R-SEC-2); evaluations of authorizations and provider units
//! (第二十五条, 第二十八条, R-OPS-11); and each tenant's annual disclosure (第二十条(四)).
//! Laid out as `services/README.md` says.

pub mod alert;
pub mod disclosure;
pub mod evaluations;
pub mod follow;
mod grpc;
pub mod inspections;
mod items;
pub mod monitoring;
pub mod records;
pub mod rectification;
pub mod rules;
mod schedule;
pub mod service;
pub mod store;

use pdp_kit::events::Event;
use pdp_kit::inbox::{EventHandler, InboxConsumer};
use pdp_kit::service::{Context, Running};
use pdp_kit::store::AnyConnection;
use pdp_proto::pdp::oversight::v1 as api;

pub use service::Oversight;

/// What oversight refuses: kit's one shape of refusal, with oversight's rules in its texts.
pub type OversightError = pdp_kit::error::DomainError;

pub const SERVICE: &str = "oversight";
pub const TOPIC: &str = "pdp.oversight";
/// The consumer group that watches every topic.
pub const WATCH_CONSUMER: &str = "oversight-watch";
/// Every topic oversight watches: each service's, the exchanges' listings and the audit stream.
pub const WATCHED: [&str; 8] = [
    "pdp.planning",
    "pdp.selection",
    "pdp.agreements",
    "pdp.requests",
    "pdp.products",
    "pdp.termination",
    "pdp.exchange.listings",
    pdp_kit::audit::TOPIC,
];

pdp_kit::service_def!(SERVICE, start);

/// Runs each event through the monitoring rules and keeps the facts oversight follows.
#[derive(Debug, Clone)]
pub struct Watch {
    pub oversight: Oversight,
}

impl EventHandler for Watch {
    type Error = OversightError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), OversightError> {
        let now = self.oversight.clock.now();
        follow::follow(conn, event, self.oversight.config.expiring_within_days)?;
        monitoring::watch(conn, &self.oversight, event, now)
    }
}

/// Starts oversight: its gRPC services behind the identity check, the watch over every topic,
/// and the scheduler of its dated work.
pub async fn start(context: &Context) -> anyhow::Result<Running> {
    for topic in std::iter::once(TOPIC).chain(WATCHED) {
        context.log.create_topic(topic).await?;
    }
    let oversight = Oversight::new(
        context.store.clone(),
        context.clock.clone(),
        context.calendar.clone(),
        context.config.oversight.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let routes = pdp_kit::guarded_routes!(
        context,
        oversight.clone();
        api::monitoring_service_server::MonitoringServiceServer,
        api::inspection_service_server::InspectionServiceServer,
        api::security_record_service_server::SecurityRecordServiceServer,
        api::evaluation_service_server::EvaluationServiceServer,
        api::disclosure_service_server::DisclosureServiceServer,
        api::public_disclosure_service_server::PublicDisclosureServiceServer,
    );
    // Most of what it reads is the audit stream, a record per request: a batch per transaction.
    let watch = InboxConsumer {
        one_transaction: true,
        ..context.consumer(WATCH_CONSUMER, &WATCHED)
    }
    .spawn(
        Watch {
            oversight: oversight.clone(),
        },
        context.shutdown.clone(),
    );
    let due = oversight.clone();
    let scheduler = context.every(
        "oversight's deadlines, expiry watch and report reminders",
        move || {
            let oversight = due.clone();
            async move { oversight.run_due().await }
        },
    );
    let tenants = context.config.instance.served_tenants();
    let forgetting = context.every("monitoring hits no window reaches forgotten", move || {
        let (oversight, tenants) = (oversight.clone(), tenants.clone());
        async move { oversight.forget_hits(&tenants).await }
    });
    Ok(Running {
        routes,
        tasks: vec![watch, scheduler, forgetting],
    })
}
