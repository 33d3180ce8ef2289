//! Planning's part of the domain gauges: the tenant's plans by state (`pdp_plans`), the latest
//! version of each.

use chrono::{DateTime, Utc};
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::telemetry::metrics::PLANS;

use crate::PlanningError;
use crate::plan::PlanState;

pub fn measure(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    _now: DateTime<Utc>,
    _window_days: u32,
) -> Result<(), PlanningError> {
    let counts = crate::store::plans_by_state(conn, scope)?;
    let tenant = scope.tenant().as_str();
    for state in PlanState::ALL {
        let count = counts
            .iter()
            .find(|(name, _)| name == state.name())
            .map_or(0, |(_, n)| *n);
        PLANS.with_label_values(&[tenant, state.name()]).set(count);
    }
    Ok(())
}
