//! What operators earn and spend (第二十条(六), 第二十三条): their quarterly reports, the year's
//! permitted revenue the bureau sets (发改价格〔2025〕65号: an operator's total revenue from public
//! data products is capped, and what passes the cap is trued up), and each year's summary of the
//! recorded trades against both.

use chrono::{DateTime, Datelike, Utc};
use pdp_kit::calendar::civil_date;
use pdp_kit::change::{Recorder, timestamp};
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::products::v1 as api;

use crate::ProductError;
use crate::service::Products;
use crate::store as db;
use crate::{SERVICE, TOPIC};

type Result<T> = std::result::Result<T, ProductError>;

const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

/// (year, quarter) of `YYYY-Qn`.
pub fn parse_period(period: &str) -> Option<(i32, u32)> {
    let (year, quarter) = period.split_once("-Q")?;
    let year: i32 = year.parse().ok().filter(|y| (2000..=2100).contains(y))?;
    let quarter: u32 = quarter.parse().ok().filter(|q| (1..=4).contains(q))?;
    (year.to_string().len() == 4).then_some((year, quarter))
}

/// Every violation of a quarterly report made on `today`'s date.
pub fn report_violations(r: &api::PeriodReport, today: chrono::NaiveDate) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    match parse_period(&r.period) {
        None => v.push(FieldViolation::new(
            "report.period",
            "a quarter, `YYYY-Qn` (e.g. 2026-Q4)",
        )),
        Some((year, quarter)) => {
            let begun = (year, quarter) <= (today.year(), today.month0() / 3 + 1);
            if !begun {
                v.push(FieldViolation::new(
                    "report.period",
                    format!(
                        "{} has not begun: a quarter is reported once it runs",
                        r.period
                    ),
                ));
            }
        }
    }
    for (field, amount) in [
        ("report.costs_fen", r.costs_fen),
        ("report.revenue_fen", r.revenue_fen),
        ("report.expenditure_fen", r.expenditure_fen),
    ] {
        if amount < 0 {
            v.push(FieldViolation::new(field, "never negative (fen)"));
        }
    }
    if r.note.chars().count() > 20_000 {
        v.push(FieldViolation::new(
            "report.note",
            "at most 20000 characters",
        ));
    }
    v
}

/// The year of an instant as Heilongjiang counts it.
pub fn civil_year(at: DateTime<Utc>) -> i32 {
    civil_date(at).year()
}

/// After a trade of `operator` in `year`: when its revenue first passes the permitted revenue,
/// the bureau is told once (`pdp.products.revenue_cap.exceeded`).
pub fn check_cap(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
    year: i32,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some((permitted, told)) = db::cap(conn, scope, operator, year)? else {
        return Ok(());
    };
    let traded = db::traded_revenue(conn, scope, operator, year)?;
    if told || traded <= permitted {
        return Ok(());
    }
    db::put_cap(conn, scope, operator, year, permitted, true)?;
    let exceeded = api::RevenueCapChanged {
        operator: operator.to_string(),
        year: year as u32,
        permitted_revenue_fen: permitted,
        traded_revenue_fen: traded,
        excess_fen: traded - permitted,
    };
    let subject = format!("{operator}/{year}");
    RECORDER
        .change(scope, None, now)
        .emit(conn, api::REVENUE_CAP_EXCEEDED, &subject, &exceeded)?;
    Ok(())
}

fn summary(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
    year: u32,
) -> Result<api::RevenueSummary> {
    let y = year as i32;
    let trades = db::trades_of_year(conn, scope, operator, y)?;
    let mut shares: Vec<api::RevenueShare> = Vec::new();
    for s in trades.iter().flat_map(|t| t.shares.iter()) {
        match shares
            .iter_mut()
            .find(|x| x.party == s.party && x.organization == s.organization)
        {
            Some(x) => x.amount_fen = x.amount_fen.saturating_add(s.amount_fen),
            None => shares.push(s.clone()),
        }
    }
    let traded = trades
        .iter()
        .fold(0i64, |a, t| a.saturating_add(t.amount_fen));
    let reports = db::latest_reports(conn, scope, Some(operator), Some(year))?;
    let sum =
        |f: fn(&api::PeriodReport) -> i64| reports.iter().fold(0i64, |a, r| a.saturating_add(f(r)));
    let cap = db::cap(conn, scope, operator, y)?;
    let permitted = cap.map_or(0, |(p, _)| p);
    Ok(api::RevenueSummary {
        operator: operator.to_string(),
        year,
        traded_revenue_fen: traded,
        shares,
        trades: trades.len() as u32,
        reported_costs_fen: sum(|r| r.costs_fen),
        reported_revenue_fen: sum(|r| r.revenue_fen),
        reported_expenditure_fen: sum(|r| r.expenditure_fen),
        permitted_set: cap.is_some(),
        permitted_revenue_fen: permitted,
        excess_fen: if cap.is_some() {
            (traded - permitted).max(0)
        } else {
            0
        },
    })
}

fn year_violations(year: u32) -> Vec<FieldViolation> {
    if (2000..=2100).contains(&year) {
        Vec::new()
    } else {
        vec![FieldViolation::new("year", "a year from 2000 to 2100")]
    }
}

impl Products {
    /// An operator reports quarter `report.period`; a correction is the next version.
    pub async fn report_period(
        &self,
        who: &Identity,
        tenant: &str,
        report: api::PeriodReport,
    ) -> Result<api::PeriodReport> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(who, &[Role::Operator], "reporting a period")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            ProductError::check("report", report_violations(&report, civil_date(now)))?;
            let mut report = api::PeriodReport {
                operator: who.organization.clone(),
                reported_by: who.subject.clone(),
                report_time: Some(timestamp(now)),
                note: report.note.trim().to_string(),
                ..report
            };
            report.version = db::add_report(conn, scope, &report)?;
            let subject = format!("{}/{}", report.operator, report.period);
            let reported = api::PeriodReported {
                operator: report.operator.clone(),
                report: Some(report.clone()),
            };
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::REVENUE_REPORT_SUBMITTED,
                &subject,
                &reported,
            )?;
            Ok(report)
        })
        .await
    }

    pub async fn period_reports(
        &self,
        who: &Identity,
        tenant: &str,
        operator: String,
        year: u32,
    ) -> Result<Vec<api::PeriodReport>> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let operator = if who.has_any(&Role::STAFF) {
            (!operator.is_empty()).then_some(operator)
        } else if who.has(Role::Operator) {
            Some(who.organization.clone())
        } else {
            return Ok(Vec::new());
        };
        self.in_scope(&scope, move |conn, scope, _| {
            db::latest_reports(
                conn,
                scope,
                operator.as_deref(),
                (year != 0).then_some(year),
            )
        })
        .await
    }

    /// The bureau sets `operator`'s permitted revenue in `year`; if its trades already pass it,
    /// the exceeding is told at once.
    pub async fn set_permitted_revenue(
        &self,
        who: &Identity,
        tenant: &str,
        request: api::SetPermittedRevenueRequest,
    ) -> Result<api::RevenueSummary> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        ProductError::unless_role(who, &Role::BUREAU, "setting the permitted revenue")?;
        let mut v = year_violations(request.year);
        if request.permitted_revenue_fen < 0 {
            v.push(FieldViolation::new(
                "permitted_revenue_fen",
                "never negative (fen)",
            ));
        }
        if request.operator.trim().is_empty() {
            v.push(FieldViolation::new("operator", "required"));
        }
        ProductError::check("permitted revenue", v)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let (operator, year) = (request.operator.trim().to_string(), request.year as i32);
            let permitted = request.permitted_revenue_fen;
            db::put_cap(conn, scope, &operator, year, permitted, false)?;
            let traded = db::traded_revenue(conn, scope, &operator, year)?;
            let set = api::RevenueCapChanged {
                operator: operator.clone(),
                year: request.year,
                permitted_revenue_fen: permitted,
                traded_revenue_fen: traded,
                excess_fen: (traded - permitted).max(0),
            };
            let subject = format!("{operator}/{year}");
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::REVENUE_CAP_SET,
                &subject,
                &set,
            )?;
            check_cap(conn, scope, &operator, year, now)?;
            summary(conn, scope, &operator, request.year)
        })
        .await
    }

    /// Staff see any operator's year; an operator its own (another's is NOT_FOUND).
    pub async fn revenue_summary(
        &self,
        who: &Identity,
        tenant: &str,
        operator: String,
        year: u32,
    ) -> Result<api::RevenueSummary> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        ProductError::check("revenue summary", year_violations(year))?;
        let own = who.has(Role::Operator) && who.organization == operator;
        if !(who.has_any(&Role::STAFF) || own) {
            return Err(ProductError::not_found(
                "revenue summary",
                format!("{operator}/{year}"),
            ));
        }
        self.in_scope(&scope, move |conn, scope, _| {
            summary(conn, scope, &operator, year)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_is_reported_once_it_has_begun() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let report = |period: &str| api::PeriodReport {
            period: period.into(),
            ..Default::default()
        };
        assert!(report_violations(&report("2026-Q4"), today).is_empty());
        assert!(report_violations(&report("2026-Q3"), today).is_empty());
        assert_eq!(report_violations(&report("2027-Q1"), today).len(), 1);
        for bad in ["2026-Q5", "2026Q1", "26-Q1", "2026-Q0"] {
            assert_eq!(report_violations(&report(bad), today).len(), 1, "{bad}");
        }
    }
}
