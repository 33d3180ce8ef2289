//! Selection's rows. Every function takes the connection of a transaction that entered the
//! tenant's scope, and every query of a tenant table starts from that scope.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use pdp_kit::paging::Cursor;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use pdp_proto::pdp::selection::v1 as api;
use prost::Message;

use crate::SelectionError;
use crate::selection::SelectionState;

diesel::table! {
    recorded_incidents (tenant, incident_id) {
        tenant -> Text,
        incident_id -> Text,
        organization -> Text,
        occurred_on -> Text,
    }
}

diesel::table! {
    selections (id) {
        id -> Text,
        tenant -> Text,
        state -> Text,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    applications (id) {
        id -> Text,
        tenant -> Text,
        selection_id -> Text,
        organization -> Text,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    objections (id) {
        id -> Text,
        tenant -> Text,
        selection_id -> Text,
        state -> Text,
        body -> Binary,
        updated_at -> Timestamp,
        filed_by -> Text,
        filed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    effective_plans (tenant, plan_id) {
        plan_id -> Text,
        tenant -> Text,
        version -> Integer,
        name -> Text,
    }
}

tenant_table!(selections::table, selections::tenant);
tenant_table!(applications::table, applications::tenant);
tenant_table!(objections::table, objections::tenant);
tenant_table!(effective_plans::table, effective_plans::tenant);
tenant_table!(recorded_incidents::table, recorded_incidents::tenant);

type Result<T> = std::result::Result<T, SelectionError>;

/// A message stored as a row's body. What the encoding cannot refuse (a state number that names
/// no state) is refused on reading, with the row named, instead of being read as a default.
trait Row: Message + Default {
    fn problem(&self) -> Option<String> {
        None
    }
}

impl Row for api::Application {}

impl Row for api::Selection {
    fn problem(&self) -> Option<String> {
        let known = SelectionState::ALL
            .iter()
            .any(|s| s.to_api() as i32 == self.state);
        (!known).then(|| {
            format!(
                "selections/{}: state {} is not a selection state",
                self.id, self.state
            )
        })
    }
}

impl Row for api::Objection {
    fn problem(&self) -> Option<String> {
        let known = api::ObjectionState::try_from(self.state)
            .is_ok_and(|s| s != api::ObjectionState::Unspecified);
        (!known).then(|| {
            format!(
                "objections/{}: state {} is not an objection state",
                self.id, self.state
            )
        })
    }
}

fn decode<M: Row>(bytes: &[u8]) -> Result<M> {
    let row = M::decode(bytes).map_err(|e| SelectionError::Corrupt(e.to_string()))?;
    match row.problem() {
        Some(problem) => Err(SelectionError::Corrupt(problem)),
        None => Ok(row),
    }
}

fn decode_all<M: Row>(rows: Vec<Vec<u8>>) -> Result<Vec<M>> {
    rows.iter().map(|b| decode(b)).collect()
}

// --- selections --------------------------------------------------------------------------------

pub fn insert_selection(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    s: &api::Selection,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(selections::table)
        .values((
            selections::id.eq(&s.id),
            selections::tenant.eq(scope.tenant().as_str()),
            selections::state.eq(SelectionState::of(s).name()),
            selections::body.eq(s.encode_to_vec()),
            selections::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save_selection(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    s: &api::Selection,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        scope
            .rows(selections::table)
            .filter(selections::id.eq(&s.id)),
    )
    .set((
        selections::state.eq(SelectionState::of(s).name()),
        selections::body.eq(s.encode_to_vec()),
        selections::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn find_selection(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::Selection>> {
    let body = scope
        .rows(selections::table)
        .filter(selections::id.eq(id))
        .select(selections::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode(&b)).transpose()
}

pub fn list_selections(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    states: Option<&[SelectionState]>,
    page: &Cursor,
) -> Result<Vec<api::Selection>> {
    let mut query = scope
        .rows(selections::table)
        .select(selections::body)
        .order(selections::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(selections::id.gt(after.clone()));
    }
    if let Some(states) = states {
        query = query.filter(selections::state.eq_any(states.iter().map(|s| s.name())));
    }
    decode_all(query.load::<Vec<u8>>(conn)?)
}

/// Every selection of the tenant in one of `states` (few are open at a time: the gauges count
/// them).
pub fn selections_in(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    states: &[SelectionState],
) -> Result<Vec<api::Selection>> {
    let rows = scope
        .rows(selections::table)
        .filter(selections::state.eq_any(states.iter().map(|s| s.name())))
        .select(selections::body)
        .load::<Vec<u8>>(conn)?;
    decode_all(rows)
}

// --- applications ------------------------------------------------------------------------------

/// Inserts an application; `false` when the organization already applied to that selection.
pub fn insert_application(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    a: &api::Application,
    now: DateTime<Utc>,
) -> Result<bool> {
    let exists = scope
        .rows(applications::table)
        .filter(applications::selection_id.eq(&a.selection_id))
        .filter(applications::organization.eq(&a.organization))
        .count()
        .get_result::<i64>(conn)?;
    if exists > 0 {
        return Ok(false);
    }
    diesel::insert_into(applications::table)
        .values((
            applications::id.eq(&a.id),
            applications::tenant.eq(scope.tenant().as_str()),
            applications::selection_id.eq(&a.selection_id),
            applications::organization.eq(&a.organization),
            applications::body.eq(a.encode_to_vec()),
            applications::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn save_application(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    a: &api::Application,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        scope
            .rows(applications::table)
            .filter(applications::id.eq(&a.id)),
    )
    .set((
        applications::body.eq(a.encode_to_vec()),
        applications::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn applications_of(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    selection_id: &str,
) -> Result<Vec<api::Application>> {
    let rows = scope
        .rows(applications::table)
        .filter(applications::selection_id.eq(selection_id))
        .order(applications::id)
        .select(applications::body)
        .load::<Vec<u8>>(conn)?;
    decode_all(rows)
}

// --- objections --------------------------------------------------------------------------------

fn objection_state(o: &api::Objection) -> &'static str {
    api::ObjectionState::try_from(o.state)
        .unwrap_or_default()
        .as_str_name()
}

/// Inserts an objection filed by `filed_by` (a subject, or `anonymous@<address>`).
pub fn insert_objection(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    o: &api::Objection,
    filed_by: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(objections::table)
        .values((
            objections::id.eq(&o.id),
            objections::tenant.eq(scope.tenant().as_str()),
            objections::selection_id.eq(&o.selection_id),
            objections::state.eq(objection_state(o)),
            objections::body.eq(o.encode_to_vec()),
            objections::updated_at.eq(now.naive_utc()),
            objections::filed_by.eq(filed_by),
            objections::filed_at.eq(Some(now.naive_utc())),
        ))
        .execute(conn)?;
    Ok(())
}

/// How many objections to `selection_id` `filed_by` has filed, and how many anyone filed since
/// `since`.
pub fn objections_filed(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    selection_id: &str,
    filed_by: &str,
    since: DateTime<Utc>,
) -> Result<(i64, i64)> {
    let by = scope
        .rows(objections::table)
        .filter(objections::selection_id.eq(selection_id))
        .filter(objections::filed_by.eq(filed_by))
        .count()
        .get_result::<i64>(conn)?;
    let recent = scope
        .rows(objections::table)
        .filter(objections::selection_id.eq(selection_id))
        .filter(objections::filed_at.ge(since.naive_utc()))
        .count()
        .get_result::<i64>(conn)?;
    Ok((by, recent))
}

/// A page of a selection's objections, oldest first.
pub fn objections_page(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    selection_id: &str,
    page: &Cursor,
) -> Result<Vec<api::Objection>> {
    let mut query = scope
        .rows(objections::table)
        .filter(objections::selection_id.eq(selection_id))
        .order(objections::id)
        .limit(i64::from(page.size))
        .select(objections::body)
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(objections::id.gt(after.clone()));
    }
    decode_all(query.load::<Vec<u8>>(conn)?)
}

pub fn save_objection(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    o: &api::Objection,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        scope
            .rows(objections::table)
            .filter(objections::id.eq(&o.id)),
    )
    .set((
        objections::state.eq(objection_state(o)),
        objections::body.eq(o.encode_to_vec()),
        objections::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn objections_of(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    selection_id: &str,
) -> Result<Vec<api::Objection>> {
    let rows = scope
        .rows(objections::table)
        .filter(objections::selection_id.eq(selection_id))
        .order(objections::id)
        .select(objections::body)
        .load::<Vec<u8>>(conn)?;
    decode_all(rows)
}

// --- effective plans (read model) ----------------------------------------------------------------

/// Records that `plan_id` is in force at `version` (a newer version replaces an older one).
pub fn plan_in_force(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    plan_id: &str,
    version: i32,
    name: &str,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(effective_plans::table)
            .filter(effective_plans::plan_id.eq(plan_id))
            .filter(effective_plans::version.lt(version)),
    )
    .execute(conn)?;
    let present = scope
        .rows(effective_plans::table)
        .filter(effective_plans::plan_id.eq(plan_id))
        .count()
        .get_result::<i64>(conn)?;
    if present == 0 {
        diesel::insert_into(effective_plans::table)
            .values((
                effective_plans::plan_id.eq(plan_id),
                effective_plans::tenant.eq(scope.tenant().as_str()),
                effective_plans::version.eq(version),
                effective_plans::name.eq(name),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// A version that is no longer in force (superseded).
pub fn plan_out_of_force(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    plan_id: &str,
    version: i32,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(effective_plans::table)
            .filter(effective_plans::plan_id.eq(plan_id))
            .filter(effective_plans::version.eq(version)),
    )
    .execute(conn)?;
    Ok(())
}

/// The version of `plan_id` in force in the scope's tenant, if any.
pub fn effective_plan(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    plan_id: &str,
) -> Result<Option<i32>> {
    Ok(scope
        .rows(effective_plans::table)
        .filter(effective_plans::plan_id.eq(plan_id))
        .select(effective_plans::version)
        .first::<i32>(conn)
        .optional()?)
}

/// Keeps an incident oversight recorded (once).
pub fn put_incident(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    incident_id: &str,
    organization: &str,
    occurred_on: &str,
) -> Result<()> {
    let present = scope
        .rows(recorded_incidents::table)
        .filter(recorded_incidents::incident_id.eq(incident_id))
        .count()
        .get_result::<i64>(conn)?;
    if present == 0 {
        diesel::insert_into(recorded_incidents::table)
            .values((
                recorded_incidents::tenant.eq(scope.tenant().as_str()),
                recorded_incidents::incident_id.eq(incident_id),
                recorded_incidents::organization.eq(organization),
                recorded_incidents::occurred_on.eq(occurred_on),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The days of the incidents oversight recorded of `organization`.
pub fn incidents_of(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    organization: &str,
) -> Result<Vec<chrono::NaiveDate>> {
    let days: Vec<String> = scope
        .rows(recorded_incidents::table)
        .filter(recorded_incidents::organization.eq(organization))
        .select(recorded_incidents::occurred_on)
        .load(conn)?;
    Ok(days
        .iter()
        .filter_map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .collect())
}
