//! Agreements' part of the domain gauges: agreements in force whose term ends within the window
//! (`pdp_agreements_expiring`), which the bureau must evaluate before renewing (第二十八条).

use chrono::{DateTime, Days, Utc};
use pdp_kit::calendar::civil_date;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::telemetry::metrics::AGREEMENTS_EXPIRING;

use crate::AgreementError;

pub fn measure(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    now: DateTime<Utc>,
    window_days: u32,
) -> Result<(), AgreementError> {
    let today = civil_date(now);
    let horizon = today
        .checked_add_days(Days::new(u64::from(window_days)))
        .unwrap_or(today);
    let count = crate::store::active_ending_between(conn, scope, today, horizon)?;
    AGREEMENTS_EXPIRING
        .with_label_values(&[scope.tenant().as_str()])
        .set(count);
    Ok(())
}
