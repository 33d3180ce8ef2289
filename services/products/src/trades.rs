//! What the exchanges answer (第二十四条), once their signature is verified: the receipt of a
//! listing, and each trade with the buyer's entitlement and the shares of its revenue
//! (第二十三条: 谁投入、谁贡献、谁受益).

use chrono::{DateTime, Months, Utc};
use pdp_kit::change::{Recorder, timestamp};
use pdp_kit::identity::Identity;
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::exchange::v1 as exchange;
use pdp_proto::pdp::products::v1 as api;
use uuid::Uuid;

use crate::ProductError;
use crate::pricing::sharing_of;
use crate::service::Products;
use crate::store as db;
use crate::{SERVICE, TOPIC};

type Result<T> = std::result::Result<T, ProductError>;

const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

/// A refusal of what an exchange sent: the event is parked with it, never applied.
fn refused(what: String) -> ProductError {
    ProductError::precondition("exchange", what)
}

/// Applies an exchange's receipt of the listing of `r.product_id`. A receipt for a listing
/// answered the same way already, or delisted since, changes nothing.
pub fn apply_receipt(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    r: &exchange::ListingReceipt,
    accepted: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut p = db::find(conn, scope, &r.product_id)?.ok_or_else(|| {
        refused(format!(
            "no product {} in tenant {}",
            r.product_id,
            scope.tenant()
        ))
    })?;
    let Some(listing) = p
        .listings
        .iter_mut()
        .find(|l| l.exchange_id == r.exchange_id)
    else {
        return Err(refused(format!(
            "product {} was never released to {}",
            r.product_id, r.exchange_id
        )));
    };
    let (state, ty) = if accepted {
        (api::ListingState::Accepted, api::LISTING_ACCEPTED)
    } else {
        (api::ListingState::Rejected, api::LISTING_REJECTED)
    };
    if listing.state() != api::ListingState::Pending {
        return Ok(());
    }
    if accepted && r.exchange_listing_id.trim().is_empty() {
        return Err(refused(
            "an accepting receipt names the exchange's listing id".into(),
        ));
    }
    listing.state = state as i32;
    listing.exchange_listing_id = r.exchange_listing_id.clone();
    listing.reason = r.reason.clone();
    listing.update_time = Some(timestamp(now));
    let answered = api::ListingAnswered {
        product_id: p.id.clone(),
        exchange_id: r.exchange_id.clone(),
        state: state as i32,
        exchange_listing_id: r.exchange_listing_id.clone(),
        reason: r.reason.clone(),
    };
    p.update_time = Some(timestamp(now));
    db::save(conn, scope, &p, now)?;
    RECORDER
        .change(scope, None, now)
        .emit(conn, ty, &p.id, &answered)?;
    Ok(())
}

/// What `quantity` units of a product sold by `unit` entitle a buyer to from `at`.
pub fn entitlement(unit: api::PriceUnit, quantity: u32, at: DateTime<Utc>) -> api::Entitlement {
    let mut e = api::Entitlement::default();
    match unit {
        api::PriceUnit::PerCall => e.calls = u64::from(quantity),
        api::PriceUnit::PerDelivery => e.deliveries = u64::from(quantity),
        api::PriceUnit::PerMonth | api::PriceUnit::Unspecified => {
            let until = at.checked_add_months(Months::new(quantity)).unwrap_or(at);
            e.valid_until = Some(timestamp(until));
        }
    }
    e
}

/// `amount_fen` shared by `sharing` (unset: all to the operator). Rounding down each share, the
/// remainder goes to the operator, so the shares add up to the amount exactly.
pub fn shares(
    amount_fen: i64,
    sharing: Option<&api::RevenueSharing>,
    operator: &str,
    developer: &str,
) -> Vec<api::RevenueShare> {
    let s = sharing.cloned().unwrap_or(api::RevenueSharing {
        provider_units_bp: 0,
        operator_bp: 10_000,
        developer_bp: 0,
    });
    let part = |bp: u32| amount_fen.saturating_mul(i64::from(bp)) / 10_000;
    let providers = part(s.provider_units_bp);
    let developers = if developer.is_empty() {
        0
    } else {
        part(s.developer_bp)
    };
    let mut out = vec![api::RevenueShare {
        party: api::Party::ProviderUnits as i32,
        organization: String::new(),
        amount_fen: providers,
    }];
    out.push(api::RevenueShare {
        party: api::Party::Operator as i32,
        organization: operator.to_string(),
        amount_fen: amount_fen - providers - developers,
    });
    if !developer.is_empty() {
        out.push(api::RevenueShare {
            party: api::Party::Developer as i32,
            organization: developer.to_string(),
            amount_fen: developers,
        });
    }
    out
}

/// Records trade `t` once (by exchange and trade id) with the buyer's entitlement and the shares
/// of its revenue; `false` when it was recorded before.
pub fn apply_trade(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    t: &exchange::TradeCompleted,
    now: DateTime<Utc>,
) -> Result<bool> {
    let p = db::find(conn, scope, &t.product_id)?.ok_or_else(|| {
        refused(format!(
            "no product {} in tenant {}",
            t.product_id,
            scope.tenant()
        ))
    })?;
    let listed = p.listings.iter().any(|l| {
        l.exchange_id == t.exchange_id
            && matches!(
                l.state(),
                api::ListingState::Pending | api::ListingState::Accepted
            )
    });
    if !listed {
        return Err(refused(format!(
            "product {} is not listed on {}: nothing of it can be traded there",
            p.id, t.exchange_id
        )));
    }
    let at = DateTime::parse_from_rfc3339(&t.trade_time)
        .map_err(|_| refused(format!("trade_time `{}` is no RFC 3339 time", t.trade_time)))?
        .with_timezone(&Utc);
    if t.quantity == 0 || t.amount_fen < 0 || t.buyer_organization.trim().is_empty() {
        return Err(refused(
            "a trade has a buyer_organization, a quantity of at least 1 and an amount of at \
             least 0"
                .into(),
        ));
    }
    let unit = p.price.as_ref().map(|pr| pr.unit()).unwrap_or_default();
    let rules = db::pricing_rules(conn, scope)?;
    let trade = api::Trade {
        trade_id: t.trade_id.clone(),
        exchange_id: t.exchange_id.clone(),
        product_id: p.id.clone(),
        registration_code: p
            .registration
            .as_ref()
            .map(|r| r.code.clone())
            .unwrap_or_default(),
        operator: p.operator.clone(),
        developer: p.developer.clone(),
        buyer_organization: t.buyer_organization.trim().to_string(),
        quantity: t.quantity,
        unit: unit as i32,
        amount_fen: t.amount_fen,
        trade_time: Some(timestamp(at)),
        entitlement: Some(entitlement(unit, t.quantity, at)),
        shares: shares(
            t.amount_fen,
            sharing_of(&rules, &p.operator),
            &p.operator,
            &p.developer,
        ),
        record_time: Some(timestamp(now)),
    };
    let year = crate::revenue::civil_year(at);
    if !db::insert_trade(conn, scope, &Uuid::now_v7().to_string(), year, &trade)? {
        return Ok(false);
    }
    let recorded = api::TradeRecorded {
        trade_id: trade.trade_id.clone(),
        trade: Some(trade.clone()),
    };
    RECORDER.change(scope, None, now).emit(
        conn,
        api::TRADE_RECORDED,
        &trade.trade_id,
        &recorded,
    )?;
    crate::revenue::check_cap(conn, scope, &trade.operator, year, now)?;
    Ok(true)
}

impl Products {
    /// Trades newest first: staff see all; an operator its own; a developer those of its products.
    pub async fn trades(
        &self,
        who: &Identity,
        tenant: &str,
        product_id: Option<String>,
        cursor: Cursor,
    ) -> Result<(Vec<api::Trade>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let Some(visible) = crate::service::visible_to(who) else {
            return Ok((Vec::new(), String::new()));
        };
        self.in_scope(&scope, move |conn, scope, _| {
            let rows = db::list_trades(conn, scope, &visible, product_id.as_deref(), &cursor)?;
            let next = cursor.next_token(&rows, |(id, _)| id);
            Ok((rows.into_iter().map(|(_, t)| t).collect(), next))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_a_product_without_developer_gives_its_share_to_the_operator() {
        let sharing = api::RevenueSharing {
            provider_units_bp: 1_000,
            operator_bp: 7_000,
            developer_bp: 2_000,
        };
        let with = shares(999, Some(&sharing), "beta", "delta");
        let amounts: Vec<i64> = with.iter().map(|s| s.amount_fen).collect();
        assert_eq!(amounts, [99, 701, 199]);
        let without = shares(1_000, Some(&sharing), "beta", "");
        let amounts: Vec<i64> = without.iter().map(|s| s.amount_fen).collect();
        assert_eq!(amounts, [100, 900]);
        assert_eq!(shares(500, None, "beta", "")[1].amount_fen, 500);
    }

    #[test]
    fn a_month_bought_ends_a_calendar_month_later() {
        let at = DateTime::parse_from_rfc3339("2026-01-31T08:00:00Z")
            .unwrap()
            .to_utc();
        let e = entitlement(api::PriceUnit::PerMonth, 1, at);
        assert_eq!(
            e.valid_until.unwrap().seconds,
            at.checked_add_months(Months::new(1)).unwrap().timestamp()
        );
        assert_eq!(entitlement(api::PriceUnit::PerCall, 300, at).calls, 300);
    }
}
