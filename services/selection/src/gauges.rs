//! Selection's part of the domain gauges: open selections (`pdp_selections_open`) and public
//! notices ending soon (`pdp_notices_ending`): a call whose application window closes, or a
//! result notice whose objection period ends, within the window.

use chrono::{DateTime, Duration, Utc};
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::telemetry::metrics::{NOTICES_ENDING, SELECTIONS_OPEN};
use pdp_proto::pdp::selection::v1 as api;

use crate::SelectionError;
use crate::selection::SelectionState;

pub fn measure(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    now: DateTime<Utc>,
    window_days: u32,
) -> Result<(), SelectionError> {
    let open = crate::store::selections_in(
        conn,
        scope,
        &[
            SelectionState::Published,
            SelectionState::Shortlisted,
            SelectionState::InNotice,
        ],
    )?;
    let horizon = now + Duration::days(i64::from(window_days));
    let ending = open
        .iter()
        .filter_map(period_end)
        .filter(|end| *end >= now && *end <= horizon)
        .count();
    let tenant = scope.tenant().as_str();
    SELECTIONS_OPEN
        .with_label_values(&[tenant])
        .set(open.len() as i64);
    NOTICES_ENDING
        .with_label_values(&[tenant])
        .set(ending as i64);
    Ok(())
}

/// When the public period a selection is in ends: the call's window, or the result's notice.
fn period_end(selection: &api::Selection) -> Option<DateTime<Utc>> {
    let end = match api::SelectionState::try_from(selection.state).ok()? {
        api::SelectionState::Published => selection.closes_at.as_ref()?,
        api::SelectionState::InNotice => selection.notice.as_ref()?.ends_at.as_ref()?,
        _ => return None,
    };
    DateTime::from_timestamp(end.seconds, u32::try_from(end.nanos).unwrap_or(0))
}
