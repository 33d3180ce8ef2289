//! Destruction of an ended authorization's data (第二十九条), ordered by its termination case:
//! everything requests holds for the operator under the agreement — each grant's workspace
//! (tables derived from the grant's data, social data the operator uploaded) and the computed
//! datasets of products built on those grants — is listed with its digest, deleted from the
//! sandbox's store and this store, looked for again, and reported to termination as
//! `pdp.requests.operator_data.destroyed` for a supervisor to witness.
//!
//! The provider's data loaded for the grant is the provider's, not the operator's: it stays.

use chrono::NaiveDate;
use pdp_kit::change::timestamp;
use pdp_kit::identity::TenantCode;
use pdp_kit::service::Operations;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_proto::pdp::requests::v1 as api;
use pdp_proto::pdp::termination::v1::DestroyedObject;
use sha2::{Digest, Sha256};

use crate::RequestError;
use crate::sandbox::{engine_error, workspace_root};
use crate::service::{RECORDER, Requests};
use crate::store as db;

type Result<T> = std::result::Result<T, RequestError>;

/// Orders the destruction termination's case asks for, in the follower's transaction: once per
/// case, taken up by [`Requests::destroy_ordered`] on the next scheduled run.
pub fn order(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    case_id: &str,
    agreement_id: &str,
    today: NaiveDate,
) -> Result<()> {
    if db::destruction::order(conn, scope, case_id, agreement_id)? {
        db::schedule(conn, scope, case_id, db::DESTROY, today)?;
    }
    Ok(())
}

/// Where a computed dataset lies, as the destruction record names it.
fn dataset_location(tenant: &str, product_id: &str, version: i32) -> String {
    format!("db://requests/tenants/{tenant}/products/{product_id}/datasets/{version}")
}

impl Requests {
    /// Carries out every destruction ordered and not yet done; each is reported once, whatever
    /// the replicas.
    pub async fn destroy_ordered(&self) -> Result<usize> {
        let today = pdp_kit::calendar::civil_date(self.clock().now());
        let due = self.store().run(move |conn| db::due(conn, today)).await?;
        let mut done = 0;
        for (tenant, case_id, action) in due {
            if action != db::DESTROY {
                continue;
            }
            let Ok(tenant) = tenant.parse::<TenantCode>() else {
                continue;
            };
            done += usize::from(self.destroy(tenant, case_id).await?);
        }
        Ok(done)
    }

    async fn destroy(&self, tenant: TenantCode, case_id: String) -> Result<bool> {
        let scope = TenantScope::system(tenant.clone());
        let sandbox = self.sandbox.clone();
        // 1. What there is, listed and kept before anything goes.
        let id = case_id.clone();
        let found = self
            .in_scope(&scope, move |conn, scope, _| {
                let Some((agreement, kept)) = db::destruction::find(conn, scope, &id)? else {
                    return Ok(None);
                };
                let grants = db::grants_of_agreement(conn, scope, &agreement)?;
                let ids: Vec<String> = grants.iter().map(|(g, _)| g.clone()).collect();
                let datasets = db::delivery::datasets_of_grants(conn, scope, &ids)?;
                let operator = grants.first().map(|(_, o)| o.clone()).unwrap_or_default();
                Ok(Some((agreement, kept, ids, datasets, operator)))
            })
            .await?;
        let Some((agreement, kept, grant_ids, datasets, operator)) = found else {
            return Ok(false);
        };
        let inventory = match kept {
            Some(kept) => kept,
            None => {
                let mut objects = Vec::new();
                for grant in &grant_ids {
                    let Some(sandbox) = &sandbox else { break };
                    let root = workspace_root(tenant.as_str(), grant);
                    for o in sandbox.inventory(&root).await.map_err(engine_error)? {
                        objects.push(DestroyedObject {
                            location: o.location,
                            size_bytes: o.size as i64,
                            sha256: o.sha256,
                        });
                    }
                }
                for (product, version, body) in &datasets {
                    objects.push(DestroyedObject {
                        location: dataset_location(tenant.as_str(), product, *version),
                        size_bytes: body.len() as i64,
                        sha256: hex::encode(Sha256::digest(body)),
                    });
                }
                let inventory = api::OperatorDataDestroyed {
                    case_id: case_id.clone(),
                    agreement_id: agreement.clone(),
                    operator: operator.clone(),
                    grant_ids: grant_ids.clone(),
                    objects,
                    remaining: 0,
                    destroyed_at: None,
                };
                let id = case_id.clone();
                self.in_scope(&scope, move |conn, scope, _| {
                    db::destruction::keep_inventory(conn, scope, &id, &inventory)
                })
                .await?
            }
        };
        // 2. Deleted from the sandbox's store, then looked for again.
        let mut remaining = 0;
        if let Some(sandbox) = &sandbox {
            for grant in &grant_ids {
                let root = workspace_root(tenant.as_str(), grant);
                sandbox.delete_all(&root).await.map_err(engine_error)?;
                remaining += sandbox.inventory(&root).await.map_err(engine_error)?.len();
            }
        }
        // 3. The rows that named them, and the report, once.
        let id = case_id.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            if !db::take(conn, &id, db::DESTROY)? {
                return Ok(false);
            }
            let act = RECORDER.change(scope, None, now);
            for grant in &inventory.grant_ids {
                for table in db::workspace::list(conn, scope, grant)? {
                    db::workspace::delete(conn, scope, grant, &table.table.name)?;
                    act.emit(
                        conn,
                        api::WORKSPACE_TABLE_DELETED,
                        &format!("{grant}/{}", table.table.name),
                        &crate::workspace::changed(&table.table, &table.operator),
                    )?;
                }
            }
            let products: Vec<String> = datasets.iter().map(|(p, _, _)| p.clone()).collect();
            db::delivery::delete_datasets(conn, scope, &products)?;
            let report = api::OperatorDataDestroyed {
                remaining: remaining as i64,
                destroyed_at: Some(timestamp(now)),
                ..inventory
            };
            act.emit(conn, api::OPERATOR_DATA_DESTROYED, &report.case_id, &report)?;
            Ok(true)
        })
        .await
    }
}
