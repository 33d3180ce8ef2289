//! Termination cases, the cuts of access reported by other services, and the schedule of cases
//! falling due.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use pdp_kit::paging::Cursor;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use pdp_proto::pdp::termination::v1 as api;
use prost::Message;

use crate::TerminationError;
use crate::case::CaseState;

type Result<T> = std::result::Result<T, TerminationError>;

diesel::table! {
    termination_cases (id) {
        id -> Text,
        tenant -> Text,
        agreement_id -> Text,
        operator -> Text,
        state -> Text,
        body -> Binary,
    }
}

diesel::table! {
    access_cuts (tenant, kind, subject) {
        tenant -> Text,
        kind -> Text,
        subject -> Text,
        operator -> Text,
        agreement_id -> Text,
        effective_at -> Timestamp,
    }
}

diesel::table! {
    case_schedule (case_id) {
        case_id -> Text,
        tenant -> Text,
        due_on -> Text,
    }
}

tenant_table!(termination_cases::table, termination_cases::tenant);
tenant_table!(access_cuts::table, access_cuts::tenant);

fn decode(bytes: &[u8]) -> Result<api::TerminationCase> {
    let c = api::TerminationCase::decode(bytes)
        .map_err(|e| TerminationError::Corrupt(e.to_string()))?;
    if CaseState::from_api(c.state).is_none() {
        return Err(TerminationError::Corrupt(format!(
            "termination-cases/{}: state {} is not a case state",
            c.id, c.state
        )));
    }
    Ok(c)
}

fn state_of(c: &api::TerminationCase) -> &'static str {
    CaseState::from_api(c.state)
        .unwrap_or(CaseState::Open)
        .name()
}

/// Inserts `c` unless its agreement has a case already; whether it did.
pub fn insert(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    c: &api::TerminationCase,
) -> Result<bool> {
    if by_agreement(conn, scope, &c.agreement_id)?.is_some() {
        return Ok(false);
    }
    diesel::insert_into(termination_cases::table)
        .values((
            termination_cases::id.eq(&c.id),
            termination_cases::tenant.eq(scope.tenant().as_str()),
            termination_cases::agreement_id.eq(&c.agreement_id),
            termination_cases::operator.eq(&c.operator),
            termination_cases::state.eq(state_of(c)),
            termination_cases::body.eq(c.encode_to_vec()),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn save(conn: &mut AnyConnection, scope: &TenantScope, c: &api::TerminationCase) -> Result<()> {
    diesel::update(
        scope
            .rows(termination_cases::table)
            .filter(termination_cases::id.eq(&c.id)),
    )
    .set((
        termination_cases::state.eq(state_of(c)),
        termination_cases::body.eq(c.encode_to_vec()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn get(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::TerminationCase>> {
    scope
        .rows(termination_cases::table)
        .filter(termination_cases::id.eq(id))
        .select(termination_cases::body)
        .first::<Vec<u8>>(conn)
        .optional()?
        .map(|b| decode(&b))
        .transpose()
}

pub fn by_agreement(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    agreement_id: &str,
) -> Result<Option<api::TerminationCase>> {
    scope
        .rows(termination_cases::table)
        .filter(termination_cases::agreement_id.eq(agreement_id))
        .select(termination_cases::body)
        .first::<Vec<u8>>(conn)
        .optional()?
        .map(|b| decode(&b))
        .transpose()
}

/// A page of cases, by id; of one operator when `operator` is given.
pub fn list(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: Option<&str>,
    state: Option<CaseState>,
    cursor: &Cursor,
) -> Result<Vec<api::TerminationCase>> {
    let mut q = scope.rows(termination_cases::table).into_boxed();
    if let Some(operator) = operator {
        q = q.filter(termination_cases::operator.eq(operator.to_string()));
    }
    if let Some(state) = state {
        q = q.filter(termination_cases::state.eq(state.name()));
    }
    if let Some(after) = &cursor.after {
        q = q.filter(termination_cases::id.gt(after.clone()));
    }
    q.order(termination_cases::id)
        .limit(i64::from(cursor.size))
        .select(termination_cases::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

/// Records that access of `kind` to `subject` ended at `at` (first report kept).
pub fn put_cut(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    kind: &str,
    subject: &str,
    operator: &str,
    agreement_id: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let known = scope
        .rows(access_cuts::table)
        .filter(access_cuts::kind.eq(kind))
        .filter(access_cuts::subject.eq(subject))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if !known {
        diesel::insert_into(access_cuts::table)
            .values((
                access_cuts::tenant.eq(scope.tenant().as_str()),
                access_cuts::kind.eq(kind),
                access_cuts::subject.eq(subject),
                access_cuts::operator.eq(operator),
                access_cuts::agreement_id.eq(agreement_id),
                access_cuts::effective_at.eq(at.naive_utc()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// A cut of an operator's access, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub kind: String,
    pub subject: String,
    /// The agreement of a grant or of the authorization; empty for a product.
    pub agreement_id: String,
    pub at: DateTime<Utc>,
}

/// Every cut of `operator`'s access, oldest first.
pub fn cuts_of(conn: &mut AnyConnection, scope: &TenantScope, operator: &str) -> Result<Vec<Cut>> {
    let rows: Vec<(String, String, String, NaiveDateTime)> = scope
        .rows(access_cuts::table)
        .filter(access_cuts::operator.eq(operator))
        .order((
            access_cuts::effective_at,
            access_cuts::kind,
            access_cuts::subject,
        ))
        .select((
            access_cuts::kind,
            access_cuts::subject,
            access_cuts::agreement_id,
            access_cuts::effective_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(kind, subject, agreement_id, at)| Cut {
            kind,
            subject,
            agreement_id,
            at: at.and_utc(),
        })
        .collect())
}

pub fn schedule(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    case_id: &str,
    due_on: NaiveDate,
) -> Result<()> {
    diesel::insert_into(case_schedule::table)
        .values((
            case_schedule::case_id.eq(case_id),
            case_schedule::tenant.eq(scope.tenant().as_str()),
            case_schedule::due_on.eq(due_on.format("%Y-%m-%d").to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Cases due by `today`: (tenant, case).
pub fn due(conn: &mut AnyConnection, today: NaiveDate) -> Result<Vec<(String, String)>> {
    Ok(case_schedule::table
        .filter(case_schedule::due_on.le(today.format("%Y-%m-%d").to_string()))
        .select((case_schedule::tenant, case_schedule::case_id))
        .load(conn)?)
}

/// Claims case `case_id`'s due date: true for the one transaction that removed it.
pub fn take(conn: &mut AnyConnection, case_id: &str) -> Result<bool> {
    Ok(
        diesel::delete(case_schedule::table.filter(case_schedule::case_id.eq(case_id)))
            .execute(conn)?
            == 1,
    )
}
