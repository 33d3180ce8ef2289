//! Termination and log retention (授权运营终止与日志留存). This far: the audit archive — every
//! audit record of the platform (the gateway's record of each request, every service's record of
//! each change), per tenant, in a hash chain with checkpoints signed by the platform's Ed25519
//! key and published, kept at least two years after the authorization period it belongs to
//! (第十六条, 第二十九条). Laid out as `services/README.md` says.

pub mod chain;
pub mod checkpoint;
mod grpc;
pub mod retention;
pub mod service;
pub mod store;

use std::sync::Arc;

use pdp_kit::clock::Clock;
use pdp_kit::config::Config;
use pdp_kit::events::Event;
use pdp_kit::inbox::EventHandler;
use pdp_kit::service::{Context, Running};
use pdp_kit::store::AnyConnection;
use pdp_proto::pdp::agreements::v1 as agreements;
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
/// The consumer group that follows agreements' periods.
pub const FOLLOW_CONSUMER: &str = "termination-follow";
const FOLLOWED: [&str; 1] = ["pdp.agreements"];
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
        service::append(conn, event, self.clock.now()).map(|_| ())
    }
}

/// Keeps each authorization period: records of a period are kept two years after it ends.
#[derive(Debug, Clone)]
pub struct Follow;

impl EventHandler for Follow {
    type Error = TerminationError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), TerminationError> {
        if let Some(a) = event.data_of(agreements::AGREEMENT_ACTIVATED)? {
            return Archive::follow_period(conn, event, &a.agreement_id, &a.operator, false);
        }
        for ty in [
            agreements::AGREEMENT_EXPIRED,
            agreements::AGREEMENT_TERMINATED,
        ] {
            if let Some(a) = event.data_of(ty)? {
                return Archive::follow_period(conn, event, &a.agreement_id, &a.operator, true);
            }
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
        key,
        context.config.audit.clone(),
    );
    let routes = pdp_kit::guarded_routes!(
        context,
        archive;
        api::audit_archive_service_server::AuditArchiveServiceServer,
        api::public_audit_service_server::PublicAuditServiceServer,
    );
    let ingest = Ingest {
        clock: context.clock.clone(),
    };
    let archiver = context
        .consumer(ARCHIVE_CONSUMER, &[AUDIT_TOPIC])
        .spawn(ingest, context.shutdown.clone());
    let follower = context
        .consumer(FOLLOW_CONSUMER, &FOLLOWED)
        .spawn(Follow, context.shutdown.clone());
    let scheduler = context.every("audit checkpoints signed and records purged", move || {
        let archive = archive.clone();
        async move {
            Ok::<_, TerminationError>(archive.checkpoint_due().await? + archive.purge_due().await?)
        }
    });
    Ok(Running {
        routes,
        tasks: vec![archiver, follower, scheduler],
    })
}
