//! Products' rows. Every function takes the connection of a transaction that entered the
//! tenant's scope.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use pdp_kit::paging::Cursor;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use pdp_proto::pdp::products::v1 as api;
use prost::Message;

use crate::ProductError;
use crate::product::ProductState;

diesel::table! {
    products (id) {
        id -> Text,
        tenant -> Text,
        operator -> Text,
        developer -> Text,
        state -> Text,
        registration_code -> Nullable<Text>,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    price_changes (tenant, product_id, seq) {
        tenant -> Text,
        product_id -> Text,
        seq -> Integer,
        body -> Binary,
    }
}

diesel::table! {
    pricing_rules (tenant) {
        tenant -> Text,
        body -> Binary,
    }
}

diesel::table! {
    registration_sequences (tenant, year) {
        tenant -> Text,
        year -> Integer,
        last -> Integer,
    }
}

diesel::table! {
    grants (tenant, grant_id) {
        tenant -> Text,
        grant_id -> Text,
        operator -> Text,
        valid -> Bool,
        valid_to -> Text,
    }
}

diesel::table! {
    workspace_tables (tenant, grant_id, name) {
        tenant -> Text,
        grant_id -> Text,
        name -> Text,
    }
}

diesel::table! {
    developers (tenant, organization, operator) {
        tenant -> Text,
        organization -> Text,
        operator -> Text,
        approved -> Bool,
    }
}

tenant_table!(products::table, products::tenant);
tenant_table!(price_changes::table, price_changes::tenant);
tenant_table!(pricing_rules::table, pricing_rules::tenant);
tenant_table!(
    registration_sequences::table,
    registration_sequences::tenant
);
tenant_table!(grants::table, grants::tenant);
tenant_table!(workspace_tables::table, workspace_tables::tenant);
tenant_table!(developers::table, developers::tenant);

type Result<T> = std::result::Result<T, ProductError>;

/// A product read back from its row; a state number that names no state is refused with the
/// row named, instead of being read as a draft.
fn decode(bytes: &[u8]) -> Result<api::Product> {
    let p = api::Product::decode(bytes).map_err(|e| ProductError::Corrupt(e.to_string()))?;
    if ProductState::from_api(p.state).is_none() {
        return Err(ProductError::Corrupt(format!(
            "products/{}: state {} is not a product state",
            p.id, p.state
        )));
    }
    Ok(p)
}

fn code_of(p: &api::Product) -> Option<String> {
    p.registration.as_ref().map(|r| r.code.clone())
}

pub fn insert(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    p: &api::Product,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(products::table)
        .values((
            products::id.eq(&p.id),
            products::tenant.eq(scope.tenant().as_str()),
            products::operator.eq(&p.operator),
            products::developer.eq(&p.developer),
            products::state.eq(ProductState::of(p).name()),
            products::registration_code.eq(code_of(p)),
            products::body.eq(p.encode_to_vec()),
            products::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    p: &api::Product,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(scope.rows(products::table).filter(products::id.eq(&p.id)))
        .set((
            products::state.eq(ProductState::of(p).name()),
            products::registration_code.eq(code_of(p)),
            products::body.eq(p.encode_to_vec()),
            products::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::Product>> {
    let body = scope
        .rows(products::table)
        .filter(products::id.eq(id))
        .select(products::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode(&b)).transpose()
}

pub fn find_registered(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    code: &str,
) -> Result<Option<api::Product>> {
    let body = scope
        .rows(products::table)
        .filter(products::registration_code.eq(code))
        .select(products::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode(&b)).transpose()
}

/// Whose products a list shows.
#[derive(Debug, Clone)]
pub enum Visible {
    All,
    /// An operator: its own and its developers'.
    Operator(String),
    Developer(String),
}

pub fn list(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    visible: &Visible,
    states: Option<&[ProductState]>,
    page: &Cursor,
) -> Result<Vec<api::Product>> {
    let mut query = scope
        .rows(products::table)
        .select(products::body)
        .order(products::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(products::id.gt(after.clone()));
    }
    match visible {
        Visible::All => {}
        Visible::Operator(org) => query = query.filter(products::operator.eq(org.clone())),
        Visible::Developer(org) => query = query.filter(products::developer.eq(org.clone())),
    }
    if let Some(states) = states {
        query = query.filter(products::state.eq_any(states.iter().map(|s| s.name())));
    }
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

/// The products of `operator` in `states`, all of them (a termination withdraws every one).
pub fn of_operator(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
    states: &[ProductState],
) -> Result<Vec<api::Product>> {
    scope
        .rows(products::table)
        .filter(products::operator.eq(operator))
        .filter(products::state.eq_any(states.iter().map(|s| s.name())))
        .select(products::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

// --- prices ------------------------------------------------------------------------------------

pub fn add_price(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    product_id: &str,
    price: &api::Price,
) -> Result<()> {
    let last = scope
        .rows(price_changes::table)
        .filter(price_changes::product_id.eq(product_id))
        .select(diesel::dsl::max(price_changes::seq))
        .first::<Option<i32>>(conn)?
        .unwrap_or(0);
    diesel::insert_into(price_changes::table)
        .values((
            price_changes::tenant.eq(scope.tenant().as_str()),
            price_changes::product_id.eq(product_id),
            price_changes::seq.eq(last + 1),
            price_changes::body.eq(price.encode_to_vec()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn prices(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    product_id: &str,
) -> Result<Vec<api::Price>> {
    scope
        .rows(price_changes::table)
        .filter(price_changes::product_id.eq(product_id))
        .order(price_changes::seq)
        .select(price_changes::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| api::Price::decode(b.as_slice()).map_err(|e| ProductError::Corrupt(e.to_string())))
        .collect()
}

// --- pricing rules and registration numbers ----------------------------------------------------

pub fn pricing_rules(conn: &mut AnyConnection, scope: &TenantScope) -> Result<api::PricingRules> {
    let body = scope
        .rows(pricing_rules::table)
        .select(pricing_rules::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    match body {
        Some(b) => api::PricingRules::decode(b.as_slice())
            .map_err(|e| ProductError::Corrupt(format!("pricing_rules/{}: {e}", scope.tenant()))),
        // No rule yet: welfare products free, no ceiling, so no industry product can be priced.
        None => Ok(api::PricingRules {
            tenant: scope.tenant().to_string(),
            ..Default::default()
        }),
    }
}

pub fn put_pricing_rules(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    rules: &api::PricingRules,
) -> Result<()> {
    diesel::delete(scope.rows(pricing_rules::table)).execute(conn)?;
    diesel::insert_into(pricing_rules::table)
        .values((
            pricing_rules::tenant.eq(scope.tenant().as_str()),
            pricing_rules::body.eq(rules.encode_to_vec()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The next registration number of the tenant in `year`, taken in this transaction. Of two
/// registrations at once, the second finds the number gone (its conditional update changes no
/// row, or its insert meets the first's key) and is refused as retryable: a number is never given
/// twice.
pub fn next_registration(conn: &mut AnyConnection, scope: &TenantScope, year: i32) -> Result<i64> {
    let last = scope
        .rows(registration_sequences::table)
        .filter(registration_sequences::year.eq(year))
        .select(registration_sequences::last)
        .first::<i32>(conn)
        .optional()?;
    let next = last.unwrap_or(0) + 1;
    if last.is_some() {
        let taken = diesel::update(
            scope
                .rows(registration_sequences::table)
                .filter(registration_sequences::year.eq(year))
                .filter(registration_sequences::last.eq(next - 1)),
        )
        .set(registration_sequences::last.eq(next))
        .execute(conn)?;
        if taken == 0 {
            return Err(ProductError::unavailable(
                "REGISTRATION_CONFLICT",
                "another registration took the number at the same moment; retry",
            ));
        }
    } else {
        diesel::insert_into(registration_sequences::table)
            .values((
                registration_sequences::tenant.eq(scope.tenant().as_str()),
                registration_sequences::year.eq(year),
                registration_sequences::last.eq(next),
            ))
            .execute(conn)?;
    }
    Ok(i64::from(next))
}

// --- read models -------------------------------------------------------------------------------

pub fn put_grant(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    operator: &str,
    valid: bool,
    valid_to: &str,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(grants::table)
            .filter(grants::grant_id.eq(grant_id)),
    )
    .execute(conn)?;
    diesel::insert_into(grants::table)
        .values((
            grants::tenant.eq(scope.tenant().as_str()),
            grants::grant_id.eq(grant_id),
            grants::operator.eq(operator),
            grants::valid.eq(valid),
            grants::valid_to.eq(valid_to),
        ))
        .execute(conn)?;
    Ok(())
}

/// (operator, valid, last day) of a grant.
pub fn grant(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
) -> Result<Option<(String, bool, String)>> {
    Ok(scope
        .rows(grants::table)
        .filter(grants::grant_id.eq(grant_id))
        .select((grants::operator, grants::valid, grants::valid_to))
        .first(conn)
        .optional()?)
}

pub fn put_workspace_table(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    name: &str,
    present: bool,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(workspace_tables::table)
            .filter(workspace_tables::grant_id.eq(grant_id))
            .filter(workspace_tables::name.eq(name)),
    )
    .execute(conn)?;
    if present {
        diesel::insert_into(workspace_tables::table)
            .values((
                workspace_tables::tenant.eq(scope.tenant().as_str()),
                workspace_tables::grant_id.eq(grant_id),
                workspace_tables::name.eq(name),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn has_workspace_table(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    name: &str,
) -> Result<bool> {
    let n = scope
        .rows(workspace_tables::table)
        .filter(workspace_tables::grant_id.eq(grant_id))
        .filter(workspace_tables::name.eq(name))
        .count()
        .get_result::<i64>(conn)?;
    Ok(n > 0)
}

pub fn put_developer(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    organization: &str,
    operator: &str,
    approved: bool,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(developers::table)
            .filter(developers::organization.eq(organization))
            .filter(developers::operator.eq(operator)),
    )
    .execute(conn)?;
    diesel::insert_into(developers::table)
        .values((
            developers::tenant.eq(scope.tenant().as_str()),
            developers::organization.eq(organization),
            developers::operator.eq(operator),
            developers::approved.eq(approved),
        ))
        .execute(conn)?;
    Ok(())
}

/// Whether `organization` is a developer `operator` approved.
pub fn is_developer_of(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    organization: &str,
    operator: &str,
) -> Result<bool> {
    let n = scope
        .rows(developers::table)
        .filter(developers::organization.eq(organization))
        .filter(developers::operator.eq(operator))
        .filter(developers::approved.eq(true))
        .count()
        .get_result::<i64>(conn)?;
    Ok(n > 0)
}

// --- trades ------------------------------------------------------------------------------------

diesel::table! {
    trades (tenant, exchange_id, trade_id) {
        tenant -> Text,
        exchange_id -> Text,
        trade_id -> Text,
        product_id -> Text,
        operator -> Text,
        developer -> Text,
        trade_year -> Integer,
        amount_fen -> BigInt,
        record_id -> Text,
        body -> Binary,
    }
}

tenant_table!(trades::table, trades::tenant);

/// Records `trade` unless the exchange reported it before; `false` when it had (a redelivery or a
/// replay by the exchange changes nothing).
pub fn insert_trade(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    record_id: &str,
    year: i32,
    trade: &api::Trade,
) -> Result<bool> {
    let known = scope
        .rows(trades::table)
        .filter(trades::exchange_id.eq(&trade.exchange_id))
        .filter(trades::trade_id.eq(&trade.trade_id))
        .count()
        .get_result::<i64>(conn)?;
    if known > 0 {
        return Ok(false);
    }
    diesel::insert_into(trades::table)
        .values((
            trades::tenant.eq(scope.tenant().as_str()),
            trades::exchange_id.eq(&trade.exchange_id),
            trades::trade_id.eq(&trade.trade_id),
            trades::product_id.eq(&trade.product_id),
            trades::operator.eq(&trade.operator),
            trades::developer.eq(&trade.developer),
            trades::trade_year.eq(year),
            trades::amount_fen.eq(trade.amount_fen),
            trades::record_id.eq(record_id),
            trades::body.eq(trade.encode_to_vec()),
        ))
        .execute(conn)?;
    Ok(true)
}

/// Trades newest first; the page token is the last row's record id.
pub fn list_trades(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    visible: &Visible,
    product_id: Option<&str>,
    page: &Cursor,
) -> Result<Vec<(String, api::Trade)>> {
    let mut query = scope
        .rows(trades::table)
        .select((trades::record_id, trades::body))
        .order(trades::record_id.desc())
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(trades::record_id.lt(after.clone()));
    }
    match visible {
        Visible::All => {}
        Visible::Operator(org) => query = query.filter(trades::operator.eq(org.clone())),
        Visible::Developer(org) => query = query.filter(trades::developer.eq(org.clone())),
    }
    if let Some(id) = product_id {
        query = query.filter(trades::product_id.eq(id.to_string()));
    }
    query
        .load::<(String, Vec<u8>)>(conn)?
        .into_iter()
        .map(|(id, b)| {
            api::Trade::decode(b.as_slice())
                .map(|t| (id, t))
                .map_err(|e| ProductError::Corrupt(e.to_string()))
        })
        .collect()
}

/// The trades of `operator`'s products in `year` (civil year of the trade, Asia/Shanghai).
pub fn trades_of_year(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
    year: i32,
) -> Result<Vec<api::Trade>> {
    scope
        .rows(trades::table)
        .filter(trades::operator.eq(operator))
        .filter(trades::trade_year.eq(year))
        .select(trades::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| api::Trade::decode(b.as_slice()).map_err(|e| ProductError::Corrupt(e.to_string())))
        .collect()
}

/// What `operator`'s products brought in `year`.
pub fn traded_revenue(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
    year: i32,
) -> Result<i64> {
    // Added up here: SUM(bigint) is numeric in PostgreSQL and integer in SQLite.
    let amounts = scope
        .rows(trades::table)
        .filter(trades::operator.eq(operator))
        .filter(trades::trade_year.eq(year))
        .select(trades::amount_fen)
        .load::<i64>(conn)?;
    Ok(amounts.iter().fold(0i64, |a, b| a.saturating_add(*b)))
}

// --- revenue reports and caps -------------------------------------------------------------------

diesel::table! {
    revenue_reports (tenant, operator, period, version) {
        tenant -> Text,
        operator -> Text,
        period -> Text,
        version -> Integer,
        body -> Binary,
    }
}

diesel::table! {
    revenue_caps (tenant, operator, year) {
        tenant -> Text,
        operator -> Text,
        year -> Integer,
        permitted_fen -> BigInt,
        exceeded -> Bool,
    }
}

tenant_table!(revenue_reports::table, revenue_reports::tenant);
tenant_table!(revenue_caps::table, revenue_caps::tenant);

/// Keeps `report` as the next version of its period; answers that version.
pub fn add_report(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    report: &api::PeriodReport,
) -> Result<u32> {
    let last = scope
        .rows(revenue_reports::table)
        .filter(revenue_reports::operator.eq(&report.operator))
        .filter(revenue_reports::period.eq(&report.period))
        .select(diesel::dsl::max(revenue_reports::version))
        .first::<Option<i32>>(conn)?
        .unwrap_or(0);
    let version = last + 1;
    let stored = api::PeriodReport {
        version: version as u32,
        ..report.clone()
    };
    diesel::insert_into(revenue_reports::table)
        .values((
            revenue_reports::tenant.eq(scope.tenant().as_str()),
            revenue_reports::operator.eq(&report.operator),
            revenue_reports::period.eq(&report.period),
            revenue_reports::version.eq(version),
            revenue_reports::body.eq(stored.encode_to_vec()),
        ))
        .execute(conn)?;
    Ok(version as u32)
}

/// The latest version of each period's report, oldest period first; of `operator` and of `year`
/// where given.
pub fn latest_reports(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: Option<&str>,
    year: Option<u32>,
) -> Result<Vec<api::PeriodReport>> {
    let mut query = scope
        .rows(revenue_reports::table)
        .select((
            revenue_reports::operator,
            revenue_reports::period,
            revenue_reports::body,
        ))
        .order((
            revenue_reports::period,
            revenue_reports::operator,
            revenue_reports::version.desc(),
        ))
        .into_boxed();
    if let Some(o) = operator {
        query = query.filter(revenue_reports::operator.eq(o.to_string()));
    }
    if let Some(y) = year {
        query = query.filter(revenue_reports::period.like(format!("{y}-Q%")));
    }
    let mut out: Vec<api::PeriodReport> = Vec::new();
    let mut last: Option<(String, String)> = None;
    for (o, p, body) in query.load::<(String, String, Vec<u8>)>(conn)? {
        let key = Some((o, p));
        if key == last {
            continue;
        }
        last = key;
        out.push(
            api::PeriodReport::decode(body.as_slice())
                .map_err(|e| ProductError::Corrupt(e.to_string()))?,
        );
    }
    Ok(out)
}

/// (permitted revenue, whether the exceeding was told) of `operator` in `year`.
pub fn cap(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
    year: i32,
) -> Result<Option<(i64, bool)>> {
    Ok(scope
        .rows(revenue_caps::table)
        .filter(revenue_caps::operator.eq(operator))
        .filter(revenue_caps::year.eq(year))
        .select((revenue_caps::permitted_fen, revenue_caps::exceeded))
        .first(conn)
        .optional()?)
}

pub fn put_cap(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
    year: i32,
    permitted_fen: i64,
    exceeded: bool,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(revenue_caps::table)
            .filter(revenue_caps::operator.eq(operator))
            .filter(revenue_caps::year.eq(year)),
    )
    .execute(conn)?;
    diesel::insert_into(revenue_caps::table)
        .values((
            revenue_caps::tenant.eq(scope.tenant().as_str()),
            revenue_caps::operator.eq(operator),
            revenue_caps::year.eq(year),
            revenue_caps::permitted_fen.eq(permitted_fen),
            revenue_caps::exceeded.eq(exceeded),
        ))
        .execute(conn)?;
    Ok(())
}
