//! The annual disclosure (第二十条(四), 第五条(四); the national rule: by the end of March): each
//! tenant's report of a year — authorizations in force, products and prices, revenue and its
//! shares, evaluations, rectifications — generated from the records, reviewed and published by
//! the bureau; public as JSON and as a printable page.

use chrono::{Datelike, NaiveDate};
use pdp_kit::calendar::civil_date;
use pdp_kit::change::{instant, timestamp};
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::Identity;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::oversight::v1 as api;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::OversightError;
use crate::follow::{AUTHORIZATION, PRODUCT, TRADE};
use crate::service::{BUREAU, Oversight, RECORDER, Result, STAFF};
use crate::store as db;

/// The first year a report may be of.
const FIRST_YEAR: u32 = 2020;
const DRAFT: &str = "DRAFT";
const PUBLISHED: &str = "PUBLISHED";

fn subject(year: u32) -> String {
    format!("annual-reports/{year}")
}

/// Hex SHA-256 of the report's content: everything but its state, digest and publication.
pub fn digest(r: &api::AnnualReport) -> String {
    let content = api::AnnualReport {
        state: 0,
        digest: String::new(),
        published_at: None,
        published_by: String::new(),
        ..r.clone()
    };
    hex::encode(Sha256::digest(content.encode_to_vec()))
}

fn text_of(body: &serde_json::Value, key: &str) -> String {
    body.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn int_of(body: &serde_json::Value, key: &str) -> i64 {
    body.get(key)
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or_default()
}

/// Builds the report of `year` from what oversight keeps.
pub fn assemble(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    year: u32,
) -> Result<api::AnnualReport> {
    let y = i32::try_from(year).unwrap_or(i32::MAX);
    let (from, to) = (
        NaiveDate::from_ymd_opt(y, 1, 1).unwrap_or_default(),
        NaiveDate::from_ymd_opt(y, 12, 31).unwrap_or_default(),
    );
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_default();
    let authorizations = db::facts_meeting(conn, scope, AUTHORIZATION, from, to)?
        .into_iter()
        .map(|f| {
            let body = json(&f.body);
            api::DisclosedAuthorization {
                agreement_id: f.id,
                operator: f.party,
                resource_ids: body
                    .get("resourceIds")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                first_day: f.first_day,
                last_day: f.last_day,
                state: text_of(&body, "state"),
            }
        })
        .collect();
    let products = db::facts_meeting(conn, scope, PRODUCT, from, to)?
        .into_iter()
        // A product listed but never registered is no product of the year.
        .filter(|f| !text_of(&json(&f.body), "registrationCode").is_empty())
        .map(|f| {
            let body = json(&f.body);
            api::DisclosedProduct {
                product_id: f.id,
                operator: f.party,
                name: text_of(&body, "name"),
                registration_code: text_of(&body, "registrationCode"),
                price_fen: int_of(&body, "priceFen"),
                price_unit: text_of(&body, "priceUnit"),
                state: text_of(&body, "state"),
            }
        })
        .collect();
    let mut revenue = api::DisclosedRevenue::default();
    let mut shares: std::collections::BTreeMap<String, i64> = Default::default();
    for f in db::facts_meeting(conn, scope, TRADE, from, to)? {
        let body = json(&f.body);
        revenue.trades += 1;
        revenue.total_fen += int_of(&body, "amountFen");
        for s in body
            .get("shares")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let party = match text_of(s, "organization") {
                o if o.is_empty() => text_of(s, "party"),
                o => format!("{} {o}", text_of(s, "party")),
            };
            *shares.entry(party).or_default() += int_of(s, "amountFen");
        }
    }
    revenue.shares = shares
        .into_iter()
        .map(|(party, amount_fen)| api::RevenueShareTotal { party, amount_fen })
        .collect();
    let in_year = |at: Option<&prost_types::Timestamp>| {
        instant(at).is_some_and(|at| civil_date(at).year() == y)
    };
    let evaluations = db::all::<api::Evaluation>(conn, scope)?
        .into_iter()
        .filter(|e| in_year(e.recorded_at.as_ref()))
        .map(|e| api::DisclosedEvaluation {
            evaluation_id: e.id,
            subject: e.subject,
            agreement_id: e.agreement_id,
            total: e.total,
            outcome: e.outcome,
        })
        .collect();
    let rectifications = db::all::<api::RectificationOrder>(conn, scope)?
        .into_iter()
        .filter(|o| in_year(o.issued_at.as_ref()))
        .map(|o| api::DisclosedRectification {
            order_id: o.id,
            operator: o.operator,
            requirement: o.requirement,
            state: o.state,
        })
        .collect();
    Ok(api::AnnualReport {
        tenant: scope.tenant().to_string(),
        year,
        state: api::ReportState::Draft as i32,
        authorizations,
        products,
        revenue: Some(revenue),
        evaluations,
        rectifications,
        ..Default::default()
    })
}

impl Oversight {
    fn check_year(&self, year: u32) -> Result<()> {
        let this_year = u32::try_from(civil_date(self.clock.now()).year()).unwrap_or(0);
        if !(FIRST_YEAR..=this_year).contains(&year) {
            return Err(OversightError::invalid(
                "annual report",
                vec![FieldViolation::new(
                    "year",
                    format!("{FIRST_YEAR} to {this_year}"),
                )],
            ));
        }
        Ok(())
    }

    pub async fn generate_report(
        &self,
        who: &Identity,
        tenant: &str,
        year: u32,
    ) -> Result<api::AnnualReport> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, BUREAU, "generating the annual report")?;
        self.check_year(year)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            if db::report(conn, scope, year)?
                .is_some_and(|r| r.state == api::ReportState::Published as i32)
            {
                return Err(OversightError::precondition(
                    subject(year),
                    "the report is published: a published report is not regenerated",
                ));
            }
            let mut r = assemble(conn, scope, year)?;
            r.generated_at = Some(timestamp(now));
            r.generated_by = who.subject.clone();
            r.digest = digest(&r);
            db::put_report(conn, scope, &r, DRAFT)?;
            emit(
                conn,
                scope,
                Some(&who),
                now,
                api::ANNUAL_REPORT_GENERATED,
                &r,
            )?;
            Ok(r)
        })
        .await
    }

    pub async fn get_report(
        &self,
        who: &Identity,
        tenant: &str,
        year: u32,
    ) -> Result<api::AnnualReport> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        OversightError::unless_role(who, STAFF, "reading a report before it is published")?;
        self.in_scope(&scope, move |conn, scope, _| {
            db::report(conn, scope, year)?
                .ok_or_else(|| OversightError::not_found("annual report", year.to_string()))
        })
        .await
    }

    pub async fn publish_report(
        &self,
        who: &Identity,
        tenant: &str,
        year: u32,
        reviewed: String,
    ) -> Result<api::AnnualReport> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, BUREAU, "publishing the annual report")?;
        if reviewed.is_empty() {
            return Err(OversightError::invalid(
                "publication",
                vec![FieldViolation::new(
                    "digest",
                    "required: the digest of the draft reviewed",
                )],
            ));
        }
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let Some(mut r) = db::report(conn, scope, year)? else {
                return Err(OversightError::precondition(
                    subject(year),
                    "no draft: generate it first (POST …/annual-reports)",
                ));
            };
            if r.state == api::ReportState::Published as i32 {
                return Err(OversightError::precondition(
                    subject(year),
                    "published already",
                ));
            }
            if r.digest != reviewed {
                return Err(OversightError::precondition(
                    subject(year),
                    "the draft is not the one reviewed (its digest differs): review the current \
                     draft",
                ));
            }
            r.state = api::ReportState::Published as i32;
            r.published_at = Some(timestamp(now));
            r.published_by = who.subject.clone();
            db::put_report(conn, scope, &r, PUBLISHED)?;
            emit(
                conn,
                scope,
                Some(&who),
                now,
                api::ANNUAL_REPORT_PUBLISHED,
                &r,
            )?;
            Ok(r)
        })
        .await
    }

    /// A published report, for anyone.
    pub async fn published_report(&self, tenant: &str, year: u32) -> Result<api::AnnualReport> {
        let tenant = tenant
            .parse()
            .map_err(|_| OversightError::not_found("annual report", year.to_string()))?;
        let scope = TenantScope::system(tenant);
        self.in_scope(&scope, move |conn, scope, _| {
            db::report(conn, scope, year)?
                .filter(|r| r.state == api::ReportState::Published as i32)
                .ok_or_else(|| OversightError::not_found("annual report", year.to_string()))
        })
        .await
    }
}

fn emit(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    who: Option<&Identity>,
    now: chrono::DateTime<chrono::Utc>,
    ty: pdp_proto::EventType<api::AnnualReportChanged>,
    r: &api::AnnualReport,
) -> Result<()> {
    let event = api::AnnualReportChanged {
        year: r.year,
        state: r.state,
        digest: r.digest.clone(),
    };
    RECORDER
        .change(scope, who, now)
        .emit(conn, ty, &r.year.to_string(), &event)?;
    Ok(())
}

/// The report's year came due (`overdue`: past 31 March) unpublished: the bureau is reminded or
/// flagged, once per year and stage.
pub(crate) fn report_due(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    year: &str,
    overdue: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    let Ok(year) = year.parse::<u32>() else {
        return Ok(false);
    };
    if db::report(conn, scope, year)?.is_some_and(|r| r.state == api::ReportState::Published as i32)
    {
        return Ok(false);
    }
    let (ty, signal) = if overdue {
        (
            api::ANNUAL_REPORT_OVERDUE,
            crate::service::Signal::builtin(
                "annual-report-overdue",
                "The year's report of authorized operation is not published by 31 March",
                api::Severity::High,
                &[],
                "第二十条(四)",
            ),
        )
    } else {
        (
            api::ANNUAL_REPORT_DUE,
            crate::service::Signal::builtin(
                "annual-report-due",
                "The year's report of authorized operation is due by 31 March",
                api::Severity::Low,
                &[],
                "第二十条(四)",
            ),
        )
    };
    let r = api::AnnualReport {
        year,
        ..Default::default()
    };
    emit(conn, scope, None, now, ty, &r)?;
    let evidence =
        crate::service::own_evidence(subject(year), format!("the report of {year}"), now);
    crate::service::raise(conn, scope, &signal, &year.to_string(), evidence, now)?;
    Ok(true)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's only style: a table per section, printable.
const PAGE_STYLE: &str = "body{font-family:sans-serif;margin:2em}\
    table{border-collapse:collapse;width:100%}\
    td,th{border:1px solid #999;padding:4px;text-align:left}\
    @media print{body{margin:0}}";

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, (fen % 100).abs())
}

fn table(out: &mut String, caption: &str, head: &[&str], rows: Vec<Vec<String>>) {
    out.push_str(&format!("<h2>{}</h2>\n", escape(caption)));
    if rows.is_empty() {
        out.push_str("<p>None.</p>\n");
        return;
    }
    out.push_str("<table>\n<tr>");
    for h in head {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(&cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// The report as a printable page: HTML with its styles inline and no script; every value
/// escaped (names come from operators).
pub fn page(r: &api::AnnualReport) -> String {
    let outcome = |o: i32| {
        api::EvaluationOutcome::try_from(o)
            .map(|o| {
                o.as_str_name()
                    .trim_start_matches("EVALUATION_OUTCOME_")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let state = |s: i32| {
        api::RectificationState::try_from(s)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("RECTIFICATION_STATE_")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let title = format!("公共数据资源授权运营年度公开 — {} — {}", r.tenant, r.year);
    let title = escape(&title);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let published = instant(r.published_at.as_ref())
        .map(|t| civil_date(t).to_string())
        .unwrap_or_default();
    out.push_str(&format!(
        "<p>Published {} · SHA-256 {}</p>\n",
        escape(&published),
        escape(&r.digest)
    ));
    table(
        &mut out,
        "授权情况 Authorizations",
        &["Agreement", "Operator", "Resources", "From", "To", "State"],
        r.authorizations
            .iter()
            .map(|a| {
                vec![
                    a.agreement_id.clone(),
                    a.operator.clone(),
                    a.resource_ids.join(", "),
                    a.first_day.clone(),
                    a.last_day.clone(),
                    a.state.clone(),
                ]
            })
            .collect(),
    );
    table(
        &mut out,
        "产品和服务 Products and prices",
        &[
            "Product",
            "Registration",
            "Operator",
            "Price (yuan)",
            "Unit",
            "State",
        ],
        r.products
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.registration_code.clone(),
                    p.operator.clone(),
                    yuan(p.price_fen),
                    p.price_unit.clone(),
                    p.state.clone(),
                ]
            })
            .collect(),
    );
    let revenue = r.revenue.clone().unwrap_or_default();
    out.push_str(&format!(
        "<h2>收益 Revenue</h2>\n<p>{} trades, {} yuan in all.</p>\n",
        revenue.trades,
        yuan(revenue.total_fen)
    ));
    table(
        &mut out,
        "收益分配 Shares",
        &["Party", "Yuan"],
        revenue
            .shares
            .iter()
            .map(|s| vec![s.party.clone(), yuan(s.amount_fen)])
            .collect(),
    );
    table(
        &mut out,
        "评估 Evaluations",
        &["Subject", "Agreement", "Total", "Outcome"],
        r.evaluations
            .iter()
            .map(|e| {
                vec![
                    e.subject.clone(),
                    e.agreement_id.clone(),
                    e.total.to_string(),
                    outcome(e.outcome),
                ]
            })
            .collect(),
    );
    table(
        &mut out,
        "整改 Rectifications",
        &["Operator", "Requirement", "State"],
        r.rectifications
            .iter()
            .map(|o| vec![o.operator.clone(), o.requirement.clone(), state(o.state)])
            .collect(),
    );
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_operators_wrote() {
        let r = api::AnnualReport {
            tenant: "230100".into(),
            year: 2026,
            products: vec![api::DisclosedProduct {
                name: "<script>alert(1)</script>".into(),
                price_fen: 12345,
                ..Default::default()
            }],
            ..Default::default()
        };
        let html = page(&r);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("123.45"));
    }

    #[test]
    fn the_digest_covers_content_not_publication() {
        let mut r = api::AnnualReport {
            year: 2026,
            ..Default::default()
        };
        let d = digest(&r);
        r.state = api::ReportState::Published as i32;
        r.published_by = "bureau".into();
        assert_eq!(digest(&r), d);
        r.products.push(api::DisclosedProduct::default());
        assert_ne!(digest(&r), d);
    }
}
