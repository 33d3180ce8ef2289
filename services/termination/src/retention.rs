//! How long the archive keeps records (第二十九条: logs at least two years after the authorization
//! ends), and which legal holds keep them longer.

use chrono::{DateTime, Duration, Utc};
use pdp_kit::error::FieldViolation;

/// An authorization period: from its activation to its end (expiry or termination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
}

/// The instant before which a tenant's records may be purged at `now`: older than the
/// retention, and older than the start of every period that has not been over for the retention
/// yet, and older than the start of every active legal hold.
pub fn purge_before(
    now: DateTime<Utc>,
    retention: Duration,
    periods: &[Period],
    hold_starts: &[DateTime<Utc>],
) -> DateTime<Utc> {
    let kept = periods
        .iter()
        .filter(|p| p.ended.is_none_or(|end| end + retention > now))
        .map(|p| p.started);
    kept.chain(hold_starts.iter().copied())
        .fold(now - retention, DateTime::min)
}

/// What a legal hold needs, every violation named.
pub fn hold_violations(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    reason: &str,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if from.is_none() {
        v.push(FieldViolation::new(
            "hold.from",
            "required: the start of the records held",
        ));
    }
    if to.is_none() {
        v.push(FieldViolation::new(
            "hold.to",
            "required: the end of the records held",
        ));
    }
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        v.push(FieldViolation::new("hold.to", "must be after hold.from"));
    }
    if reason.trim().is_empty() {
        v.push(FieldViolation::new(
            "hold.reason",
            "required: why the records are held and on whose authority",
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap() + Duration::days(n)
    }

    const TWO_YEARS: i64 = 730;

    #[test]
    fn records_go_two_years_after_their_period_ends_and_not_before() {
        let retention = Duration::days(TWO_YEARS);
        let period = Period {
            started: day(100),
            ended: Some(day(400)),
        };
        // A day short of two years after the end: the period's records stay.
        let now = day(400 + TWO_YEARS - 1);
        assert_eq!(purge_before(now, retention, &[period], &[]), day(100));
        // Two years and a day after: they may go.
        let now = day(400 + TWO_YEARS + 1);
        assert_eq!(purge_before(now, retention, &[period], &[]), day(401));
    }

    #[test]
    fn a_running_period_and_a_hold_keep_everything_from_their_start() {
        let retention = Duration::days(TWO_YEARS);
        let now = day(5000);
        let running = Period {
            started: day(3000),
            ended: None,
        };
        assert_eq!(purge_before(now, retention, &[running], &[]), day(3000));
        assert_eq!(purge_before(now, retention, &[], &[day(10)]), day(10));
        assert_eq!(
            purge_before(now, retention, &[], &[]),
            day(5000 - TWO_YEARS)
        );
    }

    #[test]
    fn a_hold_names_what_it_lacks() {
        let v = hold_violations(Some(day(2)), Some(day(1)), " ");
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["hold.to", "hold.reason"]);
    }
}
