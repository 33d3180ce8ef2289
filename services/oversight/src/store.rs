//! Oversight's tables. Its aggregates share one table of typed rows (an [`Item`] each: the kind,
//! the state and the party a list filters by, and the message); a row whose state names none of
//! its kind's states is refused on reading.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use pdp_kit::paging::Cursor;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use prost::Message;

use crate::OversightError;

type Result<T> = std::result::Result<T, OversightError>;

diesel::table! {
    oversight_items (id) {
        id -> Text,
        tenant -> Text,
        kind -> Text,
        state -> Text,
        party -> Text,
        #[sql_name = "ref"]
        reference -> Text,
        body -> Binary,
    }
}

diesel::table! {
    rule_hits (tenant, rule_id, event_id) {
        tenant -> Text,
        rule_id -> Text,
        group_key -> Text,
        event_id -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    followed_facts (tenant, kind, id) {
        tenant -> Text,
        kind -> Text,
        id -> Text,
        party -> Text,
        first_day -> Text,
        last_day -> Text,
        body -> Text,
    }
}

diesel::table! {
    annual_reports (tenant, year) {
        tenant -> Text,
        year -> Integer,
        state -> Text,
        body -> Binary,
    }
}

diesel::table! {
    oversight_schedule (kind, id, tenant) {
        kind -> Text,
        id -> Text,
        tenant -> Text,
        due_on -> Text,
    }
}

tenant_table!(oversight_items::table, oversight_items::tenant);
tenant_table!(rule_hits::table, rule_hits::tenant);
tenant_table!(followed_facts::table, followed_facts::tenant);
tenant_table!(annual_reports::table, annual_reports::tenant);

/// One of oversight's aggregates as a row of `oversight_items`.
pub trait Item: Message + Default {
    /// `alert`, `inspection`, …
    const KIND: &'static str;
    fn id(&self) -> &str;
    /// Its state as the API names it; `None` when the message holds none of its kind's.
    fn state_name(&self) -> Option<&'static str>;
    /// The organization a list filters by (the operator, the inspected).
    fn party(&self) -> &str;
    /// What it is found by besides its id (an alert's rule and group, an evaluation's
    /// agreement); empty when nothing.
    fn reference(&self) -> String {
        String::new()
    }
}

fn decode<T: Item>(bytes: &[u8]) -> Result<T> {
    let item = T::decode(bytes).map_err(|e| OversightError::Corrupt(e.to_string()))?;
    if item.state_name().is_none() {
        return Err(OversightError::Corrupt(format!(
            "{}s/{}: its state is not one of a {}'s",
            T::KIND,
            item.id(),
            T::KIND
        )));
    }
    Ok(item)
}

fn state_of<T: Item>(item: &T) -> Result<&'static str> {
    item.state_name().ok_or_else(|| {
        OversightError::Corrupt(format!(
            "{}s/{}: written without a state",
            T::KIND,
            item.id()
        ))
    })
}

pub fn insert<T: Item>(conn: &mut AnyConnection, scope: &TenantScope, item: &T) -> Result<()> {
    diesel::insert_into(oversight_items::table)
        .values((
            oversight_items::id.eq(item.id()),
            oversight_items::tenant.eq(scope.tenant().as_str()),
            oversight_items::kind.eq(T::KIND),
            oversight_items::state.eq(state_of(item)?),
            oversight_items::party.eq(item.party()),
            oversight_items::reference.eq(item.reference()),
            oversight_items::body.eq(item.encode_to_vec()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save<T: Item>(conn: &mut AnyConnection, scope: &TenantScope, item: &T) -> Result<()> {
    diesel::update(
        scope
            .rows(oversight_items::table)
            .filter(oversight_items::id.eq(item.id()))
            .filter(oversight_items::kind.eq(T::KIND)),
    )
    .set((
        oversight_items::state.eq(state_of(item)?),
        oversight_items::reference.eq(item.reference()),
        oversight_items::body.eq(item.encode_to_vec()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn get<T: Item>(conn: &mut AnyConnection, scope: &TenantScope, id: &str) -> Result<Option<T>> {
    scope
        .rows(oversight_items::table)
        .filter(oversight_items::id.eq(id))
        .filter(oversight_items::kind.eq(T::KIND))
        .select(oversight_items::body)
        .first::<Vec<u8>>(conn)
        .optional()?
        .map(|b| decode(&b))
        .transpose()
}

/// The items of `T` found by `reference` in any of `states` (every state when empty).
pub fn by_reference<T: Item>(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    reference: &str,
    states: &[&str],
) -> Result<Vec<T>> {
    let mut q = scope
        .rows(oversight_items::table)
        .filter(oversight_items::kind.eq(T::KIND))
        .filter(oversight_items::reference.eq(reference))
        .into_boxed();
    if !states.is_empty() {
        q = q.filter(oversight_items::state.eq_any(states.to_vec()));
    }
    q.order(oversight_items::id)
        .select(oversight_items::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

/// What a list keeps: of one party, in some states.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub party: Option<&'a str>,
    pub states: Vec<&'static str>,
}

/// A page of `T`, newest first.
pub fn list<T: Item>(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    filter: &Filter<'_>,
    cursor: &Cursor,
) -> Result<Vec<T>> {
    let mut q = scope
        .rows(oversight_items::table)
        .filter(oversight_items::kind.eq(T::KIND))
        .into_boxed();
    if let Some(party) = filter.party {
        q = q.filter(oversight_items::party.eq(party.to_string()));
    }
    if !filter.states.is_empty() {
        q = q.filter(oversight_items::state.eq_any(filter.states.clone()));
    }
    if let Some(after) = &cursor.after {
        q = q.filter(oversight_items::id.lt(after.clone()));
    }
    q.order(oversight_items::id.desc())
        .limit(i64::from(cursor.size))
        .select(oversight_items::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

/// Every `T` of the tenant (for the annual report: a tenant's rectifications and evaluations of
/// a year are a few hundred at most).
pub fn all<T: Item>(conn: &mut AnyConnection, scope: &TenantScope) -> Result<Vec<T>> {
    scope
        .rows(oversight_items::table)
        .filter(oversight_items::kind.eq(T::KIND))
        .order(oversight_items::id)
        .select(oversight_items::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

fn naive(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

/// Counts `event_id` for `rule_id` and `group_key` at `at` (once); how many hits the group has in
/// `(from, to]`.
pub fn hit(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    rule_id: &str,
    group_key: &str,
    event_id: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let known = scope
        .rows(rule_hits::table)
        .filter(rule_hits::rule_id.eq(rule_id))
        .filter(rule_hits::event_id.eq(event_id))
        .count()
        .get_result::<i64>(conn)?;
    if known == 0 {
        diesel::insert_into(rule_hits::table)
            .values((
                rule_hits::tenant.eq(scope.tenant().as_str()),
                rule_hits::rule_id.eq(rule_id),
                rule_hits::group_key.eq(group_key),
                rule_hits::event_id.eq(event_id),
                rule_hits::at.eq(naive(at)),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The hits of `rule_id` for `group_key` after `from` and up to `to`.
pub fn hits_between(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    rule_id: &str,
    group_key: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<u32> {
    let n = scope
        .rows(rule_hits::table)
        .filter(rule_hits::rule_id.eq(rule_id))
        .filter(rule_hits::group_key.eq(group_key))
        .filter(rule_hits::at.gt(naive(from)))
        .filter(rule_hits::at.le(naive(to)))
        .count()
        .get_result::<i64>(conn)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Forgets the scope's tenant's hits before `before` (no window reaches back that far).
pub fn forget_hits(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    before: DateTime<Utc>,
) -> Result<usize> {
    let old = scope
        .rows(rule_hits::table)
        .filter(rule_hits::at.lt(naive(before)));
    Ok(diesel::delete(old).execute(conn)?)
}

/// A fact followed from another service's events.
#[derive(Debug, Clone, Queryable)]
pub struct Fact {
    pub id: String,
    pub party: String,
    pub first_day: String,
    pub last_day: String,
    pub body: String,
}

#[allow(clippy::too_many_arguments)]
pub fn put_fact(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    kind: &str,
    id: &str,
    party: &str,
    first_day: &str,
    last_day: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let body = body.to_string();
    let updated = diesel::update(
        scope
            .rows(followed_facts::table)
            .filter(followed_facts::kind.eq(kind))
            .filter(followed_facts::id.eq(id)),
    )
    .set((
        followed_facts::party.eq(party),
        followed_facts::first_day.eq(first_day),
        followed_facts::last_day.eq(last_day),
        followed_facts::body.eq(&body),
    ))
    .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(followed_facts::table)
            .values((
                followed_facts::tenant.eq(scope.tenant().as_str()),
                followed_facts::kind.eq(kind),
                followed_facts::id.eq(id),
                followed_facts::party.eq(party),
                followed_facts::first_day.eq(first_day),
                followed_facts::last_day.eq(last_day),
                followed_facts::body.eq(&body),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn fact(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    kind: &str,
    id: &str,
) -> Result<Option<Fact>> {
    Ok(scope
        .rows(followed_facts::table)
        .filter(followed_facts::kind.eq(kind))
        .filter(followed_facts::id.eq(id))
        .select((
            followed_facts::id,
            followed_facts::party,
            followed_facts::first_day,
            followed_facts::last_day,
            followed_facts::body,
        ))
        .first(conn)
        .optional()?)
}

/// Facts of `kind` whose span `[first_day, last_day]` (YYYY-MM-DD; an empty last day is open)
/// meets `[from, to]`.
pub fn facts_meeting(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    kind: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Fact>> {
    let (from, to) = (from.to_string(), to.to_string());
    Ok(scope
        .rows(followed_facts::table)
        .filter(followed_facts::kind.eq(kind))
        .filter(followed_facts::first_day.le(to))
        .filter(
            followed_facts::last_day
                .ge(from)
                .or(followed_facts::last_day.eq("")),
        )
        .order(followed_facts::id)
        .select((
            followed_facts::id,
            followed_facts::party,
            followed_facts::first_day,
            followed_facts::last_day,
            followed_facts::body,
        ))
        .load(conn)?)
}

/// How many facts of `kind` name `party`.
pub fn count_facts(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    kind: &str,
    party: &str,
) -> Result<u32> {
    let n = scope
        .rows(followed_facts::table)
        .filter(followed_facts::kind.eq(kind))
        .filter(followed_facts::party.eq(party))
        .count()
        .get_result::<i64>(conn)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

pub fn report(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    year: u32,
) -> Result<Option<pdp_proto::pdp::oversight::v1::AnnualReport>> {
    let year = i32::try_from(year).unwrap_or(i32::MAX);
    scope
        .rows(annual_reports::table)
        .filter(annual_reports::year.eq(year))
        .select(annual_reports::body)
        .first::<Vec<u8>>(conn)
        .optional()?
        .map(|b| {
            pdp_proto::pdp::oversight::v1::AnnualReport::decode(&b[..])
                .map_err(|e| OversightError::Corrupt(e.to_string()))
        })
        .transpose()
}

pub fn put_report(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    report: &pdp_proto::pdp::oversight::v1::AnnualReport,
    state: &str,
) -> Result<()> {
    let year = i32::try_from(report.year).unwrap_or(i32::MAX);
    let body = report.encode_to_vec();
    let updated = diesel::update(
        scope
            .rows(annual_reports::table)
            .filter(annual_reports::year.eq(year)),
    )
    .set((
        annual_reports::state.eq(state),
        annual_reports::body.eq(&body),
    ))
    .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(annual_reports::table)
            .values((
                annual_reports::tenant.eq(scope.tenant().as_str()),
                annual_reports::year.eq(year),
                annual_reports::state.eq(state),
                annual_reports::body.eq(&body),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Schedules work `kind` on `id` for `due_on` (a later schedule of the same replaces it).
pub fn schedule(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    kind: &str,
    id: &str,
    due_on: NaiveDate,
) -> Result<()> {
    let tenant = scope.tenant().as_str();
    diesel::delete(
        oversight_schedule::table
            .filter(oversight_schedule::kind.eq(kind))
            .filter(oversight_schedule::id.eq(id))
            .filter(oversight_schedule::tenant.eq(tenant)),
    )
    .execute(conn)?;
    diesel::insert_into(oversight_schedule::table)
        .values((
            oversight_schedule::kind.eq(kind),
            oversight_schedule::id.eq(id),
            oversight_schedule::tenant.eq(tenant),
            oversight_schedule::due_on.eq(due_on.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Work due by `today`: (kind, id, tenant).
pub fn due(conn: &mut AnyConnection, today: NaiveDate) -> Result<Vec<(String, String, String)>> {
    Ok(oversight_schedule::table
        .filter(oversight_schedule::due_on.le(today.to_string()))
        .order(oversight_schedule::due_on)
        .select((
            oversight_schedule::kind,
            oversight_schedule::id,
            oversight_schedule::tenant,
        ))
        .load(conn)?)
}

/// Claims a due item: true for the one transaction that removed it.
pub fn take(conn: &mut AnyConnection, kind: &str, id: &str, tenant: &str) -> Result<bool> {
    Ok(diesel::delete(
        oversight_schedule::table
            .filter(oversight_schedule::kind.eq(kind))
            .filter(oversight_schedule::id.eq(id))
            .filter(oversight_schedule::tenant.eq(tenant)),
    )
    .execute(conn)?
        == 1)
}

/// Removes work `kind` on `id` of the scope's tenant from the schedule.
pub fn unschedule_all(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    kind: &str,
    id: &str,
) -> Result<()> {
    take(conn, kind, id, scope.tenant().as_str())?;
    Ok(())
}
