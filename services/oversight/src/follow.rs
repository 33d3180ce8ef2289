//! What oversight keeps of other services' facts, from their events: authorizations (for the
//! report, inspections and the expiry watch), products and trades (for the report), and what
//! provider units contributed (resources registered, tickets answered or overdue).

use chrono::{Datelike, Days, NaiveDate};
use pdp_kit::calendar::civil_date;
use pdp_kit::change::instant;
use pdp_kit::events::Event;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::planning::v1 as planning;
use pdp_proto::pdp::products::v1 as products;
use pdp_proto::pdp::requests::v1 as requests;
use serde_json::json;

use crate::service::Result;
use crate::store as db;

pub const AUTHORIZATION: &str = "authorization";
pub const PRODUCT: &str = "product";
pub const TRADE: &str = "trade";
pub const RESOURCE_REGISTERED: &str = "resource-registered";
pub const TICKET_ANSWERED: &str = "ticket-answered";
pub const TICKET_OVERDUE: &str = "ticket-overdue";

/// The schedule's kinds: an agreement coming to its end, a year's report due and overdue.
pub const EXPIRING: &str = "agreement-expiring";
pub const REPORT_DUE: &str = "annual-report-due";
pub const REPORT_OVERDUE: &str = "annual-report-overdue";

/// The agreement events that change what is disclosed: those of an authorization in force or
/// ended (a draft or a signed agreement authorizes nothing yet).
const AUTHORIZING: [pdp_proto::EventType<agreements::AgreementChanged>; 6] = [
    agreements::AGREEMENT_ACTIVATED,
    agreements::AGREEMENT_RENEWED,
    agreements::AGREEMENT_SUSPENDED,
    agreements::AGREEMENT_RESUMED,
    agreements::AGREEMENT_EXPIRED,
    agreements::AGREEMENT_TERMINATED,
];

fn state_name(state: i32) -> String {
    agreements::AgreementState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("AGREEMENT_STATE_")
                .to_string()
        })
        .unwrap_or_default()
}

/// Keeps what `event` says, if it is a fact oversight follows; `expiring_within_days` places the
/// expiry watch.
pub fn follow(conn: &mut AnyConnection, event: &Event, expiring_within_days: u32) -> Result<()> {
    let scope = TenantScope::system(event.tenant.clone());
    for ty in AUTHORIZING {
        if let Some(a) = event.data_of(ty)? {
            scope.enter(conn)?;
            return authorization(
                conn,
                &scope,
                &a,
                expiring_within_days,
                civil_date(event.time),
            );
        }
    }
    let day = civil_date(event.time).to_string();
    for ty in [
        products::PRODUCT_REGISTERED,
        products::PRODUCT_PRICED,
        products::PRODUCT_WITHDRAWN,
    ] {
        if let Some(p) = event.data_of(ty)? {
            scope.enter(conn)?;
            let known = db::fact(conn, &scope, PRODUCT, &p.product_id)?;
            let mut body: serde_json::Value = known
                .as_ref()
                .and_then(|f| serde_json::from_str(&f.body).ok())
                .unwrap_or_else(|| json!({}));
            let first = known.as_ref().map_or(day.clone(), |f| f.first_day.clone());
            let mut last = known.map(|f| f.last_day).unwrap_or_default();
            let state = products::ProductState::try_from(p.state)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("PRODUCT_STATE_")
                        .to_string()
                })
                .unwrap_or_default();
            body["state"] = json!(state);
            if !p.registration_code.is_empty() {
                body["registrationCode"] = json!(p.registration_code);
            }
            if let Some(price) = &p.price {
                body["priceFen"] = json!(price.amount_fen);
                body["priceUnit"] = json!(
                    products::PriceUnit::try_from(price.unit)
                        .map(|u| u
                            .as_str_name()
                            .trim_start_matches("PRICE_UNIT_")
                            .to_string())
                        .unwrap_or_default()
                );
            }
            if ty.name() == products::PRODUCT_WITHDRAWN.name() {
                last = day.clone();
            }
            return db::put_fact(
                conn,
                &scope,
                PRODUCT,
                &p.product_id,
                &p.operator,
                &first,
                &last,
                &body,
            );
        }
    }
    if let Some(l) = event.data_of(products::PRODUCT_LISTED)? {
        scope.enter(conn)?;
        // The name comes with the listing; a listing of a product not registered yet (its events
        // on another partition) keeps the name for when it is.
        let known = db::fact(conn, &scope, PRODUCT, &l.product_id)?;
        let mut body: serde_json::Value = known
            .as_ref()
            .and_then(|f| serde_json::from_str(&f.body).ok())
            .unwrap_or_else(|| json!({}));
        body["name"] = json!(l.name);
        let (first, last) =
            known.map_or((day.clone(), String::new()), |f| (f.first_day, f.last_day));
        return db::put_fact(
            conn,
            &scope,
            PRODUCT,
            &l.product_id,
            &l.operator,
            &first,
            &last,
            &body,
        );
    }
    if let Some(t) = event.data_of(products::TRADE_RECORDED)? {
        let Some(trade) = t.trade else { return Ok(()) };
        scope.enter(conn)?;
        let on = instant(trade.trade_time.as_ref()).map_or(day, |at| civil_date(at).to_string());
        let shares: Vec<_> = trade
            .shares
            .iter()
            .map(|s| {
                let party = products::Party::try_from(s.party)
                    .map(|p| p.as_str_name().trim_start_matches("PARTY_").to_string())
                    .unwrap_or_default();
                json!({"party": party, "organization": s.organization, "amountFen": s.amount_fen})
            })
            .collect();
        let body =
            json!({"amountFen": trade.amount_fen, "productId": trade.product_id, "shares": shares});
        return db::put_fact(
            conn,
            &scope,
            TRADE,
            &t.trade_id,
            &trade.operator,
            &on,
            &on,
            &body,
        );
    }
    if let Some(r) = event.data_of(planning::RESOURCE_REGISTERED)? {
        scope.enter(conn)?;
        let party = &r.provider_organization;
        return db::put_fact(
            conn,
            &scope,
            RESOURCE_REGISTERED,
            &r.resource_id,
            party,
            &day,
            &day,
            &json!({}),
        );
    }
    for (ty, kind) in [
        (requests::TICKET_ANSWERED, TICKET_ANSWERED),
        (requests::TICKET_OVERDUE, TICKET_OVERDUE),
    ] {
        if let Some(t) = event.data_of(ty)? {
            scope.enter(conn)?;
            return db::put_fact(
                conn,
                &scope,
                kind,
                &t.ticket_id,
                &t.provider,
                &day,
                &day,
                &json!({}),
            );
        }
    }
    Ok(())
}

fn authorization(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    a: &agreements::AgreementChanged,
    expiring_within_days: u32,
    today: NaiveDate,
) -> Result<()> {
    let body = json!({
        "resourceIds": a.resource_ids,
        "state": state_name(a.state),
    });
    db::put_fact(
        conn,
        scope,
        AUTHORIZATION,
        &a.agreement_id,
        &a.operator,
        &a.first_day,
        &a.last_day,
        &body,
    )?;
    let (Ok(first), Ok(last)) = (
        NaiveDate::parse_from_str(&a.first_day, "%Y-%m-%d"),
        NaiveDate::parse_from_str(&a.last_day, "%Y-%m-%d"),
    ) else {
        return Ok(());
    };
    if state_name(a.state) == "ACTIVE" {
        let watch_from = last
            .checked_sub_days(Days::new(u64::from(expiring_within_days)))
            .unwrap_or(last);
        db::schedule(conn, scope, EXPIRING, &a.agreement_id, watch_from)?;
    }
    // Each year the authorization is in force is disclosed in the report of the year after
    // (by 31 March): remind from February, flag from April.
    for year in first.year()..=last.year() {
        if let (Some(due), Some(overdue)) = (
            NaiveDate::from_ymd_opt(year + 1, 2, 1),
            NaiveDate::from_ymd_opt(year + 1, 4, 1),
        ) && overdue > today
        {
            db::schedule(conn, scope, REPORT_DUE, &year.to_string(), due)?;
            db::schedule(conn, scope, REPORT_OVERDUE, &year.to_string(), overdue)?;
        }
    }
    Ok(())
}
