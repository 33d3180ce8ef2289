//! Oversight's dated work, claimed item by item so that it happens once whatever the replicas:
//! rectification deadlines, agreements nearing their end without a passed evaluation, and the
//! annual report's reminder and flag.

use pdp_kit::calendar::civil_date;
use pdp_kit::identity::TenantCode;
use pdp_kit::service::Operations;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_proto::pdp::oversight::v1 as api;

use crate::follow::{AUTHORIZATION, EXPIRING, REPORT_DUE, REPORT_OVERDUE};
use crate::inspections::ORDER_DUE;
use crate::service::{Oversight, Result, Signal, own_evidence, raise};
use crate::store as db;

/// Agreement `id` is within the watch of its end: without a passed evaluation, the bureau is
/// alerted (第二十八条: evaluated before any renewal).
fn expiring(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    let Some(fact) = db::fact(conn, scope, AUTHORIZATION, id)? else {
        return Ok(false);
    };
    let state = serde_json::from_str::<serde_json::Value>(&fact.body)
        .ok()
        .and_then(|b| b.get("state").and_then(|s| s.as_str()).map(str::to_string));
    if state.as_deref() != Some("ACTIVE") || crate::evaluations::passed(conn, scope, id)? {
        return Ok(false);
    }
    let signal = Signal::builtin(
        "agreement-expiring-unevaluated",
        "An agreement nears its end with no passed evaluation",
        api::Severity::Medium,
        &[],
        "第二十五条, 第二十八条",
    );
    let evidence = own_evidence(
        format!("agreements/{id}"),
        format!("{} ends on {}", fact.party, fact.last_day),
        now,
    );
    raise(conn, scope, &signal, id, evidence, now)
}

impl Oversight {
    /// Does the work that has come due; how much.
    pub async fn run_due(&self) -> Result<usize> {
        let today = civil_date(self.clock.now());
        let due = self.store.run(move |conn| db::due(conn, today)).await?;
        let mut done = 0;
        for (kind, id, tenant) in due {
            let Ok(code) = tenant.parse::<TenantCode>() else {
                continue;
            };
            let scope = TenantScope::system(code);
            let did = self
                .in_scope(&scope, move |conn, scope, now| {
                    if !db::take(conn, &kind, &id, &tenant)? {
                        return Ok(false);
                    }
                    match kind.as_str() {
                        ORDER_DUE => crate::inspections::order_due(conn, scope, &id, now),
                        EXPIRING => expiring(conn, scope, &id, now),
                        REPORT_DUE => crate::disclosure::report_due(conn, scope, &id, false, now),
                        REPORT_OVERDUE => {
                            crate::disclosure::report_due(conn, scope, &id, true, now)
                        }
                        _ => Ok(false),
                    }
                })
                .await?;
            done += usize::from(did);
        }
        Ok(done)
    }
}
