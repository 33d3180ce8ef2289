//! Requests' part of the domain gauges: work past its deadline and still open (`pdp_overdue`):
//! data requests whose review is overdue (第十八条's time limit), and data-quality tickets a
//! provider has not answered in time.

use chrono::{DateTime, Utc};
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::telemetry::metrics::OVERDUE;

use crate::RequestError;

pub fn measure(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    _now: DateTime<Utc>,
    _window_days: u32,
) -> Result<(), RequestError> {
    let (reviews, tickets) = crate::store::overdue_counts(conn, scope)?;
    let tenant = scope.tenant().as_str();
    OVERDUE
        .with_label_values(&[tenant, "request_review"])
        .set(reviews);
    OVERDUE
        .with_label_values(&[tenant, "quality_ticket"])
        .set(tickets);
    Ok(())
}
