//! Agreements' rows. Every function takes the connection of a transaction that entered the
//! tenant's scope; the schedule is the one table read across tenants.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use pdp_kit::paging::Cursor;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use pdp_proto::pdp::agreements::v1 as api;
use prost::Message;

use crate::AgreementError;
use crate::agreement::AgreementState;

diesel::table! {
    failed_rectifications (tenant, order_id) {
        tenant -> Text,
        order_id -> Text,
        agreement_id -> Text,
    }
}

diesel::table! {
    passed_evaluations (tenant, evaluation_id) {
        tenant -> Text,
        evaluation_id -> Text,
        agreement_id -> Text,
    }
}

diesel::table! {
    agreements (id) {
        id -> Text,
        tenant -> Text,
        operator -> Text,
        state -> Text,
        first_day -> Text,
        last_day -> Text,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    plan_scopes (tenant, plan_id, version) {
        tenant -> Text,
        plan_id -> Text,
        version -> Integer,
        resource_ids -> Text,
    }
}

diesel::table! {
    concluded_selections (tenant, selection_id) {
        tenant -> Text,
        selection_id -> Text,
        plan_id -> Text,
        plan_version -> Integer,
        organizations -> Text,
    }
}

diesel::table! {
    agreement_schedule (agreement_id, action) {
        agreement_id -> Text,
        tenant -> Text,
        action -> Text,
        due_on -> Text,
    }
}

tenant_table!(agreements::table, agreements::tenant);
tenant_table!(plan_scopes::table, plan_scopes::tenant);
tenant_table!(concluded_selections::table, concluded_selections::tenant);
tenant_table!(passed_evaluations::table, passed_evaluations::tenant);
tenant_table!(failed_rectifications::table, failed_rectifications::tenant);

type Result<T> = std::result::Result<T, AgreementError>;

/// An agreement read back from its row; a state number that names no state is refused with the
/// row named, instead of being read as a draft.
fn decode(bytes: &[u8]) -> Result<api::Agreement> {
    let a = api::Agreement::decode(bytes).map_err(|e| AgreementError::Corrupt(e.to_string()))?;
    if !AgreementState::ALL
        .iter()
        .any(|s| s.to_api() as i32 == a.state)
    {
        return Err(AgreementError::Corrupt(format!(
            "agreements/{}: state {} is not an agreement state",
            a.id, a.state
        )));
    }
    Ok(a)
}

fn days(a: &api::Agreement) -> (String, String) {
    let term = a
        .terms
        .as_ref()
        .and_then(|t| t.term.clone())
        .unwrap_or_default();
    (term.first_day, term.last_day)
}

pub fn insert(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    a: &api::Agreement,
    now: DateTime<Utc>,
) -> Result<()> {
    let (first, last) = days(a);
    diesel::insert_into(agreements::table)
        .values((
            agreements::id.eq(&a.id),
            agreements::tenant.eq(scope.tenant().as_str()),
            agreements::operator.eq(&a.operator),
            agreements::state.eq(AgreementState::of(a).name()),
            agreements::first_day.eq(first),
            agreements::last_day.eq(last),
            agreements::body.eq(a.encode_to_vec()),
            agreements::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    a: &api::Agreement,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        scope
            .rows(agreements::table)
            .filter(agreements::id.eq(&a.id)),
    )
    .set((
        agreements::state.eq(AgreementState::of(a).name()),
        agreements::body.eq(a.encode_to_vec()),
        agreements::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn find(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::Agreement>> {
    let body = scope
        .rows(agreements::table)
        .filter(agreements::id.eq(id))
        .select(agreements::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode(&b)).transpose()
}

pub fn list(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: Option<&str>,
    states: Option<&[AgreementState]>,
    page: &Cursor,
) -> Result<Vec<api::Agreement>> {
    let mut query = scope
        .rows(agreements::table)
        .select(agreements::body)
        .order(agreements::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(agreements::id.gt(after.clone()));
    }
    if let Some(operator) = operator {
        query = query.filter(agreements::operator.eq(operator.to_string()));
    }
    if let Some(states) = states {
        query = query.filter(agreements::state.eq_any(states.iter().map(|s| s.name())));
    }
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

/// The active agreements of `operator`.
pub fn active_of(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
) -> Result<Vec<api::Agreement>> {
    scope
        .rows(agreements::table)
        .filter(agreements::operator.eq(operator))
        .filter(agreements::state.eq(AgreementState::Active.name()))
        .select(agreements::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

// --- read models -------------------------------------------------------------------------------

pub fn put_plan_scope(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    plan_id: &str,
    version: i32,
    resource_ids: &[String],
) -> Result<()> {
    let present = scope
        .rows(plan_scopes::table)
        .filter(plan_scopes::plan_id.eq(plan_id))
        .filter(plan_scopes::version.eq(version))
        .count()
        .get_result::<i64>(conn)?;
    if present == 0 {
        diesel::insert_into(plan_scopes::table)
            .values((
                plan_scopes::tenant.eq(scope.tenant().as_str()),
                plan_scopes::plan_id.eq(plan_id),
                plan_scopes::version.eq(version),
                plan_scopes::resource_ids
                    .eq(serde_json::to_string(resource_ids).unwrap_or_default()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn plan_scope(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    plan_id: &str,
    version: i32,
) -> Result<Option<Vec<String>>> {
    let ids = scope
        .rows(plan_scopes::table)
        .filter(plan_scopes::plan_id.eq(plan_id))
        .filter(plan_scopes::version.eq(version))
        .select(plan_scopes::resource_ids)
        .first::<String>(conn)
        .optional()?;
    Ok(ids.map(|s| serde_json::from_str(&s).unwrap_or_default()))
}

pub fn put_concluded(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    selection_id: &str,
    plan_id: &str,
    plan_version: i32,
    organizations: &[String],
) -> Result<()> {
    let present = scope
        .rows(concluded_selections::table)
        .filter(concluded_selections::selection_id.eq(selection_id))
        .count()
        .get_result::<i64>(conn)?;
    if present == 0 {
        diesel::insert_into(concluded_selections::table)
            .values((
                concluded_selections::tenant.eq(scope.tenant().as_str()),
                concluded_selections::selection_id.eq(selection_id),
                concluded_selections::plan_id.eq(plan_id),
                concluded_selections::plan_version.eq(plan_version),
                concluded_selections::organizations
                    .eq(serde_json::to_string(organizations).unwrap_or_default()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// (plan id, plan version, selected organizations) of a concluded selection.
pub fn concluded(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    selection_id: &str,
) -> Result<Option<(String, i32, Vec<String>)>> {
    let row = scope
        .rows(concluded_selections::table)
        .filter(concluded_selections::selection_id.eq(selection_id))
        .select((
            concluded_selections::plan_id,
            concluded_selections::plan_version,
            concluded_selections::organizations,
        ))
        .first::<(String, i32, String)>(conn)
        .optional()?;
    Ok(row.map(|(p, v, o)| (p, v, serde_json::from_str(&o).unwrap_or_default())))
}

// --- schedule ----------------------------------------------------------------------------------

pub const ACTIVATE: &str = "activate";
pub const EXPIRE: &str = "expire";

pub fn schedule(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    agreement_id: &str,
    action: &str,
    due_on: NaiveDate,
) -> Result<()> {
    diesel::insert_into(agreement_schedule::table)
        .values((
            agreement_schedule::agreement_id.eq(agreement_id),
            agreement_schedule::tenant.eq(scope.tenant().as_str()),
            agreement_schedule::action.eq(action),
            agreement_schedule::due_on.eq(due_on.format("%Y-%m-%d").to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Work due on or before `today`, across tenants: (tenant, agreement id, action).
pub fn due(conn: &mut AnyConnection, today: NaiveDate) -> Result<Vec<(String, String, String)>> {
    Ok(agreement_schedule::table
        .filter(agreement_schedule::due_on.le(today.format("%Y-%m-%d").to_string()))
        .order(agreement_schedule::due_on)
        .select((
            agreement_schedule::tenant,
            agreement_schedule::agreement_id,
            agreement_schedule::action,
        ))
        .load(conn)?)
}

/// Takes a due item; `false` when another replica took it first.
pub fn take(conn: &mut AnyConnection, agreement_id: &str, action: &str) -> Result<bool> {
    let n = diesel::delete(
        agreement_schedule::table
            .filter(agreement_schedule::agreement_id.eq(agreement_id))
            .filter(agreement_schedule::action.eq(action)),
    )
    .execute(conn)?;
    Ok(n == 1)
}

/// Keeps that oversight's evaluation `evaluation_id` of `agreement_id` passed (once).
pub fn put_passed_evaluation(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    evaluation_id: &str,
    agreement_id: &str,
) -> Result<()> {
    let present = scope
        .rows(passed_evaluations::table)
        .filter(passed_evaluations::evaluation_id.eq(evaluation_id))
        .count()
        .get_result::<i64>(conn)?;
    if present == 0 {
        diesel::insert_into(passed_evaluations::table)
            .values((
                passed_evaluations::tenant.eq(scope.tenant().as_str()),
                passed_evaluations::evaluation_id.eq(evaluation_id),
                passed_evaluations::agreement_id.eq(agreement_id),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Whether agreement `agreement_id` has a passed evaluation.
pub fn evaluated(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    agreement_id: &str,
) -> Result<bool> {
    let n = scope
        .rows(passed_evaluations::table)
        .filter(passed_evaluations::agreement_id.eq(agreement_id))
        .count()
        .get_result::<i64>(conn)?;
    Ok(n > 0)
}

/// Keeps that oversight's rectification order `order_id` of `agreement_id` failed (once).
pub fn put_failed_rectification(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    order_id: &str,
    agreement_id: &str,
) -> Result<()> {
    let present = scope
        .rows(failed_rectifications::table)
        .filter(failed_rectifications::order_id.eq(order_id))
        .count()
        .get_result::<i64>(conn)?;
    if present == 0 {
        diesel::insert_into(failed_rectifications::table)
            .values((
                failed_rectifications::tenant.eq(scope.tenant().as_str()),
                failed_rectifications::order_id.eq(order_id),
                failed_rectifications::agreement_id.eq(agreement_id),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Whether a rectification ordered under `agreement_id` failed.
pub fn rectification_failed(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    agreement_id: &str,
) -> Result<bool> {
    let n = scope
        .rows(failed_rectifications::table)
        .filter(failed_rectifications::agreement_id.eq(agreement_id))
        .count()
        .get_result::<i64>(conn)?;
    Ok(n > 0)
}

/// How many agreements in force end on a day from `first` to `last`.
pub fn active_ending_between(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    first: chrono::NaiveDate,
    last: chrono::NaiveDate,
) -> Result<i64> {
    // Days are stored as YYYY-MM-DD, which order as the days do.
    Ok(scope
        .rows(agreements::table)
        .filter(agreements::state.eq(crate::agreement::AgreementState::Active.name()))
        .filter(agreements::last_day.ge(first.to_string()))
        .filter(agreements::last_day.le(last.to_string()))
        .count()
        .get_result(conn)?)
}
