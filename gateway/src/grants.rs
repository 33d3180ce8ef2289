//! Authorization that follows the agreements (R-AGR-3): an operator's organization holds the
//! `authorized_operator` role in a tenant only while one of its agreements there is ACTIVE.
//!
//! The gateway consumes the agreements' events into `gateway_grants` (one consumer group for all
//! replicas, through the inbox), and every replica reloads the grants from that table each
//! second, so that an activation or an expiry takes effect everywhere within seconds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use pdp_kit::events::{Event, EventLog, PayloadError};
use pdp_kit::inbox::{EventHandler, InboxConsumer};
use pdp_kit::store::{AnyConnection, Store, StoreError};
use pdp_proto::pdp::agreements::v1 as agreements;
use tokio_util::sync::CancellationToken;

use crate::authz::CasbinAuthorizer;

/// The agreements' topic.
pub const TOPIC: &str = "pdp.agreements";
pub const CONSUMER: &str = "gateway-grants";

diesel::table! {
    gateway_grants (agreement_id) {
        agreement_id -> Text,
        tenant -> Text,
        organization -> Text,
    }
}

/// (tenant, organization) pairs that hold an active agreement.
pub type Grants = HashSet<(String, String)>;

#[derive(Debug, Clone, Copy)]
pub struct GrantFollower;

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Store(#[from] diesel::result::Error),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

impl EventHandler for GrantFollower {
    type Error = GrantError;

    fn handle(&self, conn: &mut AnyConnection, event: &Event) -> Result<(), GrantError> {
        let started = match event.data_of(agreements::AGREEMENT_ACTIVATED)? {
            Some(a) => Some(a),
            None => event.data_of(agreements::AGREEMENT_RESUMED)?,
        };
        if let Some(a) = started {
            if a.agreement_id.is_empty() || a.operator.is_empty() {
                return Err(PayloadError::missing::<agreements::AgreementChanged>(
                    event,
                    "agreement_id and operator",
                )
                .into());
            }
            diesel::delete(gateway_grants::table.find(&a.agreement_id)).execute(conn)?;
            diesel::insert_into(gateway_grants::table)
                .values((
                    gateway_grants::agreement_id.eq(&a.agreement_id),
                    gateway_grants::tenant.eq(event.tenant.as_str()),
                    gateway_grants::organization.eq(&a.operator),
                ))
                .execute(conn)?;
        } else {
            // Expired, suspended or terminated: the operator is authorized for nothing at once.
            for ty in [
                agreements::AGREEMENT_EXPIRED,
                agreements::AGREEMENT_SUSPENDED,
                agreements::AGREEMENT_TERMINATED,
            ] {
                if let Some(a) = event.data_of(ty)? {
                    diesel::delete(gateway_grants::table.find(&a.agreement_id)).execute(conn)?;
                }
            }
        }
        Ok(())
    }
}

pub async fn load(store: &Store) -> Result<Grants, StoreError> {
    store
        .run(|conn| {
            let rows: Vec<(String, String)> = gateway_grants::table
                .select((gateway_grants::tenant, gateway_grants::organization))
                .load(conn)?;
            Ok(rows.into_iter().collect())
        })
        .await
}

/// Starts following: the consumer of the agreements' events and the reload of the grants.
pub async fn follow(
    store: Store,
    log: Arc<dyn EventLog>,
    group: String,
    authorizer: Arc<CasbinAuthorizer>,
    shutdown: CancellationToken,
) -> Result<(), pdp_kit::events::EventLogError> {
    log.create_topic(TOPIC).await?;
    // Every tenant: the gateway authorizes callers of every instance.
    InboxConsumer {
        store: store.clone(),
        log,
        consumer: CONSUMER.into(),
        group,
        topics: vec![TOPIC.into()],
        tenants: Vec::new(),
        batch_size: 100,
        one_transaction: false,
    }
    .spawn(GrantFollower, shutdown.clone());
    tokio::spawn(async move {
        loop {
            match load(&store).await {
                Ok(grants) => authorizer.set_grants(grants),
                Err(err) => {
                    tracing::warn!(error = %err, "grants not reloaded; keeping those in hand")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdp_proto::EventType;

    /// Each agreement event as the agreements service publishes it.
    fn event(ty: EventType<agreements::AgreementChanged>) -> Event {
        Event::typed(
            &"230100".parse().expect("a tenant code"),
            ty,
            "agr-1",
            chrono::Utc::now(),
            &agreements::AgreementChanged {
                agreement_id: "agr-1".into(),
                operator: "beta".into(),
                ..Default::default()
            },
        )
    }

    #[tokio::test]
    async fn suspension_and_termination_end_an_operators_authorization_at_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = dir.path().join("platform.db");
        let store = Store::open(&url.to_string_lossy(), "platform", 1).expect("the store opens");
        store
            .migrate(&[pdp_kit::store::KIT_MIGRATIONS, crate::policy::MIGRATIONS])
            .expect("migrations apply");
        let holds = |store: &Store, ty| {
            let (store, event) = (store.clone(), event(ty));
            async move {
                store
                    .run(move |conn| {
                        GrantFollower
                            .handle(conn, &event)
                            .map_err(|e| StoreError::Task(e.to_string()))
                    })
                    .await
                    .expect("the event applies");
                load(&store)
                    .await
                    .expect("grants load")
                    .contains(&("230100".to_string(), "beta".to_string()))
            }
        };
        assert!(holds(&store, agreements::AGREEMENT_ACTIVATED).await);
        assert!(!holds(&store, agreements::AGREEMENT_SUSPENDED).await);
        assert!(holds(&store, agreements::AGREEMENT_RESUMED).await);
        assert!(!holds(&store, agreements::AGREEMENT_TERMINATED).await);
        assert!(holds(&store, agreements::AGREEMENT_ACTIVATED).await);
        assert!(!holds(&store, agreements::AGREEMENT_EXPIRED).await);
    }
}
