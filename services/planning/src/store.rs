//! Planning's rows. Every function takes the connection of a transaction that has entered the
//! tenant's scope (`Store::scoped`), and every query of a tenant table starts from that scope.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};
use pdp_kit::paging::Cursor as Page;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use prost::Message;

use crate::PlanningError;
use crate::plan::PlanState;
use pdp_proto::pdp::planning::v1 as api;

diesel::table! {
    resources (id) {
        id -> Text,
        tenant -> Text,
        registration_number -> Nullable<Text>,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    plans (id, version) {
        id -> Text,
        version -> Integer,
        tenant -> Text,
        state -> Text,
        latest -> Bool,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    plan_amendments (id) {
        id -> Text,
        tenant -> Text,
        plan_id -> Text,
        body -> Binary,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    filings (id) {
        id -> Text,
        tenant -> Text,
        plan_id -> Text,
        plan_version -> Integer,
        state -> Text,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    plan_schedule (plan_id, version) {
        plan_id -> Text,
        version -> Integer,
        tenant -> Text,
        effective_on -> Text,
    }
}

tenant_table!(resources::table, resources::tenant);
tenant_table!(plans::table, plans::tenant);
tenant_table!(plan_amendments::table, plan_amendments::tenant);
tenant_table!(filings::table, filings::tenant);

type Result<T> = std::result::Result<T, PlanningError>;

/// A message stored as a row's body. What the encoding cannot refuse (a state number that names
/// no state) is refused on reading, with the row named, instead of being read as a default.
trait Row: Message + Default {
    fn problem(&self) -> Option<String> {
        None
    }
}

impl Row for api::DataResource {}
impl Row for api::Amendment {}

impl Row for api::Plan {
    fn problem(&self) -> Option<String> {
        let known = api::PlanState::try_from(self.state)
            .ok()
            .and_then(PlanState::from_api);
        known.is_none().then(|| {
            format!(
                "plans/{} version {}: state {} is not a plan state",
                self.id, self.version, self.state
            )
        })
    }
}

impl Row for api::Filing {
    fn problem(&self) -> Option<String> {
        let known = api::FilingState::try_from(self.state)
            .is_ok_and(|s| s != api::FilingState::Unspecified);
        (!known).then(|| {
            format!(
                "filings/{}: state {} is not a filing state",
                self.id, self.state
            )
        })
    }
}

fn decode<M: Row>(bytes: &[u8]) -> Result<M> {
    let row = M::decode(bytes).map_err(|e| PlanningError::Corrupt(e.to_string()))?;
    match row.problem() {
        Some(problem) => Err(PlanningError::Corrupt(problem)),
        None => Ok(row),
    }
}

// --- resources -------------------------------------------------------------------------------

pub fn insert_resource(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    resource: &api::DataResource,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(resources::table)
        .values((
            resources::id.eq(&resource.id),
            resources::tenant.eq(scope.tenant().as_str()),
            resources::registration_number.eq(None::<String>),
            resources::body.eq(resource.encode_to_vec()),
            resources::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save_resource(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    resource: &api::DataResource,
    now: DateTime<Utc>,
) -> Result<()> {
    let number =
        (!resource.registration_number.is_empty()).then_some(&resource.registration_number);
    diesel::update(
        scope
            .rows(resources::table)
            .filter(resources::id.eq(&resource.id)),
    )
    .set((
        resources::registration_number.eq(number),
        resources::body.eq(resource.encode_to_vec()),
        resources::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn find_resource(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::DataResource>> {
    let body = scope
        .rows(resources::table)
        .filter(resources::id.eq(id))
        .select(resources::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode(&b)).transpose()
}

pub fn list_resources(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    registered: Option<bool>,
    page: &Page,
) -> Result<Vec<api::DataResource>> {
    let mut query = scope
        .rows(resources::table)
        .select(resources::body)
        .order(resources::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(resources::id.gt(after.clone()));
    }
    query = match registered {
        Some(true) => query.filter(resources::registration_number.is_not_null()),
        Some(false) => query.filter(resources::registration_number.is_null()),
        None => query,
    };
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

#[derive(QueryableByName)]
struct Last {
    #[diesel(sql_type = BigInt)]
    last: i64,
}

/// The next registration sequence number of `scope`'s tenant in `year`; the row lock of the
/// upsert makes concurrent registrations wait for each other instead of sharing a number.
pub fn next_registration_sequence(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    year: i32,
) -> Result<i64> {
    let row: Last = diesel::sql_query(
        "INSERT INTO registration_sequences (tenant, year, last) VALUES ($1, $2, 1) \
         ON CONFLICT (tenant, year) DO UPDATE SET last = registration_sequences.last + 1 \
         RETURNING last",
    )
    .bind::<Text, _>(scope.tenant().as_str())
    .bind::<Integer, _>(year)
    .get_result(conn)?;
    Ok(row.last)
}

// --- plans -----------------------------------------------------------------------------------

fn state_of(plan: &api::Plan) -> &'static str {
    api::PlanState::try_from(plan.state)
        .ok()
        .and_then(PlanState::from_api)
        .unwrap_or(PlanState::Draft)
        .name()
}

/// Inserts a new version, which becomes the plan's newest.
pub fn insert_plan_version(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    plan: &api::Plan,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        scope
            .rows(plans::table)
            .filter(plans::id.eq(&plan.id))
            .filter(plans::latest.eq(true)),
    )
    .set(plans::latest.eq(false))
    .execute(conn)?;
    diesel::insert_into(plans::table)
        .values((
            plans::id.eq(&plan.id),
            plans::version.eq(plan.version as i32),
            plans::tenant.eq(scope.tenant().as_str()),
            plans::state.eq(state_of(plan)),
            plans::latest.eq(true),
            plans::body.eq(plan.encode_to_vec()),
            plans::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save_plan_version(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    plan: &api::Plan,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        scope
            .rows(plans::table)
            .filter(plans::id.eq(&plan.id))
            .filter(plans::version.eq(plan.version as i32)),
    )
    .set((
        plans::state.eq(state_of(plan)),
        plans::body.eq(plan.encode_to_vec()),
        plans::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn latest_plan(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::Plan>> {
    let body = scope
        .rows(plans::table)
        .filter(plans::id.eq(id))
        .order(plans::version.desc())
        .select(plans::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode(&b)).transpose()
}

pub fn plan_versions(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Vec<api::Plan>> {
    scope
        .rows(plans::table)
        .filter(plans::id.eq(id))
        .order(plans::version.asc())
        .select(plans::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

/// Where a page of [`list_plans`] ends: the plan and its version, since with a state filter one
/// plan can show several versions and a page may end between them.
pub fn plan_page_key(plan: &api::Plan) -> String {
    format!("{}@{}", plan.id, plan.version)
}

/// The newest version of each plan, or every version in one of `states`.
pub fn list_plans(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    states: Option<&[PlanState]>,
    page: &Page,
) -> Result<Vec<api::Plan>> {
    let mut query = scope
        .rows(plans::table)
        .select(plans::body)
        .order((plans::id, plans::version))
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        // A token of an older release names the plan alone: continue after all its versions.
        query = match after.split_once('@') {
            Some((id, version)) => {
                let version: i32 = version.parse().map_err(|_| {
                    PlanningError::invalid(
                        "page",
                        vec![pdp_kit::error::FieldViolation::new(
                            "page.page_token",
                            "not a token this service issued",
                        )],
                    )
                })?;
                // `(id, version) > (key)`, written so that `id >= key` bounds the index range:
                // as `id > key OR (id = key AND …)` PostgreSQL read every row before the page
                // and filtered it (the scale bench: 2 701 rows for a page of 50).
                query.filter(
                    plans::id
                        .ge(id.to_string())
                        .and(plans::id.gt(id.to_string()).or(plans::version.gt(version))),
                )
            }
            None => query.filter(plans::id.gt(after.clone())),
        };
    }
    query = match states {
        // One state as `=`: PostgreSQL reads `state = ANY(array)` as possibly several values and
        // so cannot take the page's order from the index — it read every EFFECTIVE plan and
        // sorted them for each public page (the scale bench: 3 000 plans for a page of 50).
        Some([state]) => query.filter(plans::state.eq(state.name())),
        Some(states) => query.filter(plans::state.eq_any(states.iter().map(|s| s.name()))),
        None => query.filter(plans::latest.eq(true)),
    };
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

/// How many plans are in each state (the latest version of each).
pub fn plans_by_state(conn: &mut AnyConnection, scope: &TenantScope) -> Result<Vec<(String, i64)>> {
    Ok(scope
        .rows(plans::table)
        .filter(plans::latest.eq(true))
        .group_by(plans::state)
        .select((plans::state, diesel::dsl::count_star()))
        .load(conn)?)
}

pub fn insert_amendment(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    amendment: &api::Amendment,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(plan_amendments::table)
        .values((
            plan_amendments::id.eq(&amendment.id),
            plan_amendments::tenant.eq(scope.tenant().as_str()),
            plan_amendments::plan_id.eq(&amendment.plan_id),
            plan_amendments::body.eq(amendment.encode_to_vec()),
            plan_amendments::recorded_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn amendments(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    plan_id: &str,
) -> Result<Vec<api::Amendment>> {
    scope
        .rows(plan_amendments::table)
        .filter(plan_amendments::plan_id.eq(plan_id))
        .order(plan_amendments::id)
        .select(plan_amendments::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

// --- the effective-date schedule ---------------------------------------------------------------

pub fn schedule_effective(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    plan_id: &str,
    version: u32,
    on: NaiveDate,
) -> Result<()> {
    diesel::insert_into(plan_schedule::table)
        .values((
            plan_schedule::plan_id.eq(plan_id),
            plan_schedule::version.eq(version as i32),
            plan_schedule::tenant.eq(scope.tenant().as_str()),
            plan_schedule::effective_on.eq(on.format("%Y-%m-%d").to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Plans due on or before `today`, across tenants: (tenant, plan id, version).
pub fn due(conn: &mut AnyConnection, today: NaiveDate) -> Result<Vec<(String, String, u32)>> {
    let rows = plan_schedule::table
        .filter(plan_schedule::effective_on.le(today.format("%Y-%m-%d").to_string()))
        .order(plan_schedule::effective_on)
        .select((
            plan_schedule::tenant,
            plan_schedule::plan_id,
            plan_schedule::version,
        ))
        .load::<(String, String, i32)>(conn)?;
    Ok(rows
        .into_iter()
        .map(|(t, id, v)| (t, id, v as u32))
        .collect())
}

/// Takes a due entry off the schedule; `false` when another replica took it first.
pub fn take_due(conn: &mut AnyConnection, plan_id: &str, version: u32) -> Result<bool> {
    let n = diesel::delete(
        plan_schedule::table
            .filter(plan_schedule::plan_id.eq(plan_id))
            .filter(plan_schedule::version.eq(version as i32)),
    )
    .execute(conn)?;
    Ok(n == 1)
}

// --- filings -----------------------------------------------------------------------------------

/// Records a filing unless that plan version was filed already; `false` for a repeat.
pub fn insert_filing(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    filing: &api::Filing,
    now: DateTime<Utc>,
) -> Result<bool> {
    let exists = scope
        .rows(filings::table)
        .filter(filings::plan_id.eq(&filing.plan_id))
        .filter(filings::plan_version.eq(filing.plan_version as i32))
        .count()
        .get_result::<i64>(conn)?;
    if exists > 0 {
        return Ok(false);
    }
    diesel::insert_into(filings::table)
        .values((
            filings::id.eq(&filing.id),
            filings::tenant.eq(scope.tenant().as_str()),
            filings::plan_id.eq(&filing.plan_id),
            filings::plan_version.eq(filing.plan_version as i32),
            filings::state.eq(filing_state(filing)),
            filings::body.eq(filing.encode_to_vec()),
            filings::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(true)
}

fn filing_state(filing: &api::Filing) -> &'static str {
    api::FilingState::try_from(filing.state)
        .unwrap_or_default()
        .as_str_name()
}

pub fn save_filing(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    filing: &api::Filing,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        scope
            .rows(filings::table)
            .filter(filings::id.eq(&filing.id)),
    )
    .set((
        filings::state.eq(filing_state(filing)),
        filings::body.eq(filing.encode_to_vec()),
        filings::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn find_filing(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::Filing>> {
    let body = scope
        .rows(filings::table)
        .filter(filings::id.eq(id))
        .select(filings::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode(&b)).transpose()
}

pub fn list_filings(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    state: Option<api::FilingState>,
    page: &Page,
) -> Result<Vec<api::Filing>> {
    let mut query = scope
        .rows(filings::table)
        .select(filings::body)
        .order(filings::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(filings::id.gt(after.clone()));
    }
    if let Some(state) = state {
        query = query.filter(filings::state.eq(state.as_str_name()));
    }
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}
