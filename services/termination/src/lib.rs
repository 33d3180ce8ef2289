//! Termination and log retention (授权运营终止与日志留存): the case of each ended authorization
//! (access cut at once, the operator's data destroyed under a supervisor's witness, the records
//! handed over to the bureau, 第二十九条), and the audit archive — every audit record of the
//! platform (the gateway's record of each request, every service's record of each change), per
//! tenant, in a hash chain with checkpoints signed by the platform's Ed25519 key and published,
//! kept at least two years after the authorization period it belongs to (第十六条, 第二十九条).
//! Laid out as `services/README.md` says.

pub mod case;
pub mod cases;
pub mod chain;
pub mod checkpoint;
mod grpc;
pub mod retention;
pub mod service;
pub mod store;

use std::sync::Arc;

use pdp_kit::calendar::WorkingCalendar;
use pdp_kit::clock::Clock;
use pdp_kit::config::{AuditConfig, Config};
use pdp_kit::events::Event;
use pdp_kit::inbox::{EventHandler, InboxConsumer};
use pdp_kit::service::{Context, Running};
use pdp_kit::store::AnyConnection;
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::products::v1 as products;
use pdp_proto::pdp::requests::v1 as requests;
use pdp_proto::pdp::termination::v1 as api;

use crate::checkpoint::ArchiveKey;

/// What termination refuses: kit's one shape of refusal, with termination's rules in its texts.
pub type TerminationError = pdp_kit::error::DomainError;
pub use service::Archive;

pub const SERVICE: &str = "termination";
pub const TOPIC: &str = "pdp.termination";
/// Every audit record of the platform.
pub const AUDIT_TOPIC: &str = pdp_kit::audit::TOPIC;
/// The consumer group that archives `pdp.audit`.
pub const ARCHIVE_CONSUMER: &str = "termination-archive";
/// The consumer group that follows agreements' ends, grants ended, products withdrawn and
/// destructions done.
pub const FOLLOW_CONSUMER: &str = "termination-follow";
const FOLLOWED: [&str; 3] = ["pdp.agreements", "pdp.requests", "pdp.products"];
/// Where `pdp dev` keeps the archive key it made.
const DEV_KEY_FILE: &str = "dev-audit-signing.pem";

pdp_kit::service_def!(SERVICE, start);

/// The archive's signing key: `audit.signing_key`, or in dev one kept in the data directory.
pub fn archive_key(config: &Config) -> anyhow::Result<ArchiveKey> {
    if let Some(pem) = &config.audit.signing_key {
        return Ok(ArchiveKey::from_pem(pem.expose())?);
    }
    anyhow::ensure!(
        config.is_dev(),
        "audit.signing_key is required in cluster mode (PDP_AUDIT__SIGNING_KEY, from a Secret: \
         `openssl genpkey -algorithm ed25519`)"
    );
    let path = config.data_dir.join(DEV_KEY_FILE);
    if let Ok(pem) = std::fs::read_to_string(&path) {
        return Ok(ArchiveKey::from_pem(&pem)?);
    }
    let key = ArchiveKey::generate();
    std::fs::create_dir_all(&config.data_dir)?;
    write_private(&path, &key.to_pem())?;
    Ok(key)
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

/// Archives each audit record as it arrives.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub clock: Arc<dyn Clock>,
}

impl EventHandler for Ingest {
    type Error = TerminationError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), TerminationError> {
        service::append_all(conn, &[event], self.clock.now())
    }

    fn handle_all(
        &self,
        conn: &mut AnyConnection,
        events: &[&Event],
    ) -> Result<(), TerminationError> {
        service::append_all(conn, events, self.clock.now())
    }
}

/// Follows what ends an authorization and what it takes: each agreement's period (its records
/// are kept two years after it ends), the case an end opens, the grants ended and products
/// withdrawn that cut the operator's access, and the destruction requests reports.
#[derive(Debug, Clone)]
pub struct Follow {
    pub calendar: Arc<WorkingCalendar>,
    pub config: AuditConfig,
}

impl EventHandler for Follow {
    type Error = TerminationError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), TerminationError> {
        if let Some(a) = event.data_of(agreements::AGREEMENT_ACTIVATED)? {
            return Archive::follow_period(conn, event, &a.agreement_id, &a.operator, false);
        }
        for (ty, cause) in [
            (agreements::AGREEMENT_EXPIRED, "EXPIRED"),
            (agreements::AGREEMENT_TERMINATED, "TERMINATED"),
        ] {
            if let Some(a) = event.data_of(ty)? {
                Archive::follow_period(conn, event, &a.agreement_id, &a.operator, true)?;
                let ended = cases::Ended {
                    agreement: &a,
                    cause,
                    at: event.time,
                };
                return cases::open(conn, event, ended, &self.calendar, &self.config);
            }
        }
        if let Some(g) = event.data_of(requests::GRANT_ENDED)? {
            let (grant, operator, agreement) = (&g.grant_id, &g.operator, &g.agreement_id);
            return cases::record_cut(conn, event, cases::GRANT, grant, operator, agreement);
        }
        if let Some(p) = event.data_of(products::PRODUCT_WITHDRAWN)? {
            let (product, operator) = (&p.product_id, &p.operator);
            return cases::record_cut(conn, event, cases::PRODUCT, product, operator, "");
        }
        if let Some(d) = event.data_of(requests::OPERATOR_DATA_DESTROYED)? {
            return cases::record_destruction(conn, event, &d);
        }
        Ok(())
    }
}

/// Starts termination: its gRPC services behind the identity check, the archive's consumer,
/// the follower of agreements, and the scheduler of checkpoints and purges.
pub async fn start(context: &Context) -> anyhow::Result<Running> {
    for topic in [TOPIC, AUDIT_TOPIC].into_iter().chain(FOLLOWED) {
        context.log.create_topic(topic).await?;
    }
    let key = Arc::new(archive_key(&context.config)?);
    let archive = Archive::new(
        context.store.clone(),
        context.clock.clone(),
        key.clone(),
        context.config.audit.clone(),
    );
    let cases = cases::Cases::new(context.store.clone(), context.clock.clone(), key);
    let routes = pdp_kit::guarded_routes!(
        context,
        archive;
        api::audit_archive_service_server::AuditArchiveServiceServer,
        api::public_audit_service_server::PublicAuditServiceServer,
    )
    .add_service(
        api::termination_service_server::TerminationServiceServer::with_interceptor(
            cases.clone(),
            pdp_kit::identity::RequireIdentity(context.identity_key.clone()),
        ),
    );
    let ingest = Ingest {
        clock: context.clock.clone(),
    };
    // One commit per batch: the gateway writes a record per request, and one transaction per
    // record (each locking the chain's head) would not keep up with it.
    let archiver = InboxConsumer {
        one_transaction: true,
        ..context.consumer(ARCHIVE_CONSUMER, &[AUDIT_TOPIC])
    }
    .spawn(ingest, context.shutdown.clone());
    let follow = Follow {
        calendar: context.calendar.clone(),
        config: context.config.audit.clone(),
    };
    let follower = context
        .consumer(FOLLOW_CONSUMER, &FOLLOWED)
        .spawn(follow, context.shutdown.clone());
    let scheduler = context.every("audit checkpoints signed and records purged", move || {
        let archive = archive.clone();
        async move {
            Ok::<_, TerminationError>(archive.checkpoint_due().await? + archive.purge_due().await?)
        }
    });
    let overdue = context.every("termination cases past their deadline flagged", move || {
        let cases = cases.clone();
        async move { cases.flag_overdue().await }
    });
    Ok(Running {
        routes,
        tasks: vec![archiver, follower, scheduler, overdue],
    })
}
