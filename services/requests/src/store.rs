//! Requests' rows. Every function takes the connection of a transaction that entered the
//! tenant's scope; the schedule is the one table read across tenants.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use pdp_kit::paging::Cursor;
use pdp_kit::store::{AnyConnection, TenantScope};
use pdp_kit::tenant_table;
use pdp_proto::pdp::requests::v1 as api;
use prost::Message;

use crate::RequestError;
use crate::developer::ApprovalState;
use crate::request::{AgreementFacts, RequestState, ResourceFacts};
use crate::ticket::TicketState;

/// A grant's workspace tables.
pub mod delivery;
pub mod destruction;
pub mod workspace;

diesel::table! {
    data_requests (id) {
        id -> Text,
        tenant -> Text,
        operator -> Text,
        state -> Text,
        overdue -> Bool,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    request_reviewers (tenant, reviewer, request_id) {
        tenant -> Text,
        request_id -> Text,
        reviewer -> Text,
    }
}

diesel::table! {
    grants (id) {
        id -> Text,
        tenant -> Text,
        operator -> Text,
        agreement_id -> Text,
        state -> Text,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    request_resources (tenant, resource_id) {
        tenant -> Text,
        resource_id -> Text,
        provider -> Text,
        provider_unit -> Text,
        fields -> Text,
        kinds -> Text,
        classification -> Integer,
        sensitivity -> Integer,
    }
}

diesel::table! {
    request_agreements (tenant, agreement_id) {
        tenant -> Text,
        agreement_id -> Text,
        operator -> Text,
        active -> Bool,
        resource_ids -> Text,
        first_day -> Text,
        last_day -> Text,
    }
}

diesel::table! {
    review_periods (tenant) {
        tenant -> Text,
        provider_review_working_days -> Integer,
        ticket_working_days -> Integer,
    }
}

diesel::table! {
    quality_tickets (id) {
        id -> Text,
        tenant -> Text,
        operator -> Text,
        provider -> Text,
        resource_id -> Text,
        state -> Text,
        overdue -> Bool,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    developers (id) {
        id -> Text,
        tenant -> Text,
        organization -> Text,
        operator -> Text,
        state -> Text,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    development_needs (id) {
        id -> Text,
        tenant -> Text,
        developer_id -> Text,
        state -> Text,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    resource_loads (id) {
        id -> Text,
        tenant -> Text,
        resource_id -> Text,
        state -> Text,
        version -> Integer,
        body -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    sandbox_settings (tenant) {
        tenant -> Text,
        min_group_size -> Integer,
        epsilon_per_query -> Double,
        grant_budget -> Double,
        queries_per_minute -> Integer,
    }
}

diesel::table! {
    grant_budgets (tenant, grant_id) {
        tenant -> Text,
        grant_id -> Text,
        secret -> Text,
        epsilon_spent -> Double,
        window_start -> Text,
        window_queries -> Integer,
    }
}

diesel::table! {
    request_schedule (item, action) {
        item -> Text,
        tenant -> Text,
        action -> Text,
        due_on -> Text,
    }
}

tenant_table!(data_requests::table, data_requests::tenant);
tenant_table!(request_reviewers::table, request_reviewers::tenant);
tenant_table!(grants::table, grants::tenant);
tenant_table!(request_resources::table, request_resources::tenant);
tenant_table!(request_agreements::table, request_agreements::tenant);
tenant_table!(review_periods::table, review_periods::tenant);
tenant_table!(quality_tickets::table, quality_tickets::tenant);
tenant_table!(developers::table, developers::tenant);
tenant_table!(resource_loads::table, resource_loads::tenant);
tenant_table!(grant_budgets::table, grant_budgets::tenant);
tenant_table!(sandbox_settings::table, sandbox_settings::tenant);
tenant_table!(development_needs::table, development_needs::tenant);

type Result<T> = std::result::Result<T, RequestError>;

/// A request read back from its row; a state number that names no state is refused with the
/// row named, never read as a draft.
fn decode_request(bytes: &[u8]) -> Result<api::DataRequest> {
    let r = api::DataRequest::decode(bytes).map_err(|e| RequestError::Corrupt(e.to_string()))?;
    if RequestState::from_api(r.state).is_none() {
        return Err(RequestError::Corrupt(format!(
            "requests/{}: state {} is not a request state",
            r.id, r.state
        )));
    }
    Ok(r)
}

fn decode_grant(bytes: &[u8]) -> Result<api::Grant> {
    let g = api::Grant::decode(bytes).map_err(|e| RequestError::Corrupt(e.to_string()))?;
    if api::GrantState::try_from(g.state).is_err() || g.state == 0 {
        return Err(RequestError::Corrupt(format!(
            "grants/{}: state {} is not a grant state",
            g.id, g.state
        )));
    }
    Ok(g)
}

/// Whether a review of the request is still pending past its day.
fn is_overdue(r: &api::DataRequest) -> bool {
    r.reviews
        .iter()
        .any(|rv| rv.overdue && rv.outcome == api::ReviewOutcome::Pending as i32)
}

pub fn insert_request(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    r: &api::DataRequest,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(data_requests::table)
        .values((
            data_requests::id.eq(&r.id),
            data_requests::tenant.eq(scope.tenant().as_str()),
            data_requests::operator.eq(&r.operator),
            data_requests::state.eq(RequestState::of(r).name()),
            data_requests::overdue.eq(is_overdue(r)),
            data_requests::body.eq(r.encode_to_vec()),
            data_requests::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save_request(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    r: &api::DataRequest,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        scope
            .rows(data_requests::table)
            .filter(data_requests::id.eq(&r.id)),
    )
    .set((
        data_requests::state.eq(RequestState::of(r).name()),
        data_requests::overdue.eq(is_overdue(r)),
        data_requests::body.eq(r.encode_to_vec()),
        data_requests::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(())
}

/// Names the provider units that review `request_id`: what lets them see it.
pub fn add_reviewers(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    request_id: &str,
    reviewers: &[String],
) -> Result<()> {
    for reviewer in reviewers {
        diesel::insert_into(request_reviewers::table)
            .values((
                request_reviewers::tenant.eq(scope.tenant().as_str()),
                request_reviewers::request_id.eq(request_id),
                request_reviewers::reviewer.eq(reviewer),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn find_request(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::DataRequest>> {
    let body = scope
        .rows(data_requests::table)
        .filter(data_requests::id.eq(id))
        .select(data_requests::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode_request(&b)).transpose()
}

/// Whose requests a caller may list.
#[derive(Debug, Clone)]
pub enum Visible {
    All,
    /// An operator's own.
    Operator(String),
    /// Those a provider unit reviews.
    Reviewer(String),
}

pub fn list_requests(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    visible: &Visible,
    state: Option<RequestState>,
    overdue_only: bool,
    page: &Cursor,
) -> Result<Vec<api::DataRequest>> {
    let mut query = scope
        .rows(data_requests::table)
        .select(data_requests::body)
        .order(data_requests::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(data_requests::id.gt(after.clone()));
    }
    match visible {
        Visible::All => {}
        Visible::Operator(org) => query = query.filter(data_requests::operator.eq(org.clone())),
        Visible::Reviewer(org) => {
            // Every request the provider reviews after the cursor: the page's limit applies
            // below, after the state and overdue filters, so that a filtered page is never cut
            // short (and the listing never ends early).
            let mut reviewed = scope
                .rows(request_reviewers::table)
                .filter(request_reviewers::reviewer.eq(org.clone()))
                .select(request_reviewers::request_id)
                .into_boxed();
            if let Some(after) = &page.after {
                reviewed = reviewed.filter(request_reviewers::request_id.gt(after.clone()));
            }
            let ids = reviewed.load::<String>(conn)?;
            query = query.filter(data_requests::id.eq_any(ids));
        }
    }
    if let Some(state) = state {
        query = query.filter(data_requests::state.eq(state.name()));
    }
    if overdue_only {
        query = query.filter(data_requests::overdue.eq(true));
    }
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode_request(b))
        .collect()
}

// --- grants --------------------------------------------------------------------------------------

fn grant_state_name(g: &api::Grant) -> &'static str {
    if g.state == api::GrantState::Valid as i32 {
        "VALID"
    } else {
        "ENDED"
    }
}

pub fn insert_grant(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    g: &api::Grant,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(grants::table)
        .values((
            grants::id.eq(&g.id),
            grants::tenant.eq(scope.tenant().as_str()),
            grants::operator.eq(&g.operator),
            grants::agreement_id.eq(&g.agreement_id),
            grants::state.eq(grant_state_name(g)),
            grants::body.eq(g.encode_to_vec()),
            grants::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save_grant(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    g: &api::Grant,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(scope.rows(grants::table).filter(grants::id.eq(&g.id)))
        .set((
            grants::state.eq(grant_state_name(g)),
            grants::body.eq(g.encode_to_vec()),
            grants::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_grant(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::Grant>> {
    let body = scope
        .rows(grants::table)
        .filter(grants::id.eq(id))
        .select(grants::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode_grant(&b)).transpose()
}

pub fn list_grants(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: Option<&str>,
    valid_only: Option<bool>,
    page: &Cursor,
) -> Result<Vec<api::Grant>> {
    let mut query = scope
        .rows(grants::table)
        .select(grants::body)
        .order(grants::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(grants::id.gt(after.clone()));
    }
    if let Some(operator) = operator {
        query = query.filter(grants::operator.eq(operator.to_string()));
    }
    if let Some(valid) = valid_only {
        query = query.filter(grants::state.eq(if valid { "VALID" } else { "ENDED" }));
    }
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode_grant(b))
        .collect()
}

/// The valid grants of `operator`, or of `agreement_id`.
/// Every grant ever issued under `agreement_id`, whatever its state: (id, operator).
pub fn grants_of_agreement(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    agreement_id: &str,
) -> Result<Vec<(String, String)>> {
    Ok(scope
        .rows(grants::table)
        .filter(grants::agreement_id.eq(agreement_id))
        .order(grants::id)
        .select((grants::id, grants::operator))
        .load(conn)?)
}

pub fn valid_grants(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: Option<&str>,
    agreement_id: Option<&str>,
) -> Result<Vec<api::Grant>> {
    let mut query = scope
        .rows(grants::table)
        .filter(grants::state.eq("VALID"))
        .select(grants::body)
        .order(grants::id)
        .into_boxed();
    if let Some(operator) = operator {
        query = query.filter(grants::operator.eq(operator.to_string()));
    }
    if let Some(agreement) = agreement_id {
        query = query.filter(grants::agreement_id.eq(agreement.to_string()));
    }
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode_grant(b))
        .collect()
}

// --- tickets -------------------------------------------------------------------------------------

fn decode_ticket(bytes: &[u8]) -> Result<api::QualityTicket> {
    let t = api::QualityTicket::decode(bytes).map_err(|e| RequestError::Corrupt(e.to_string()))?;
    if TicketState::from_api(t.state).is_none() {
        return Err(RequestError::Corrupt(format!(
            "quality-tickets/{}: state {} is not a ticket state",
            t.id, t.state
        )));
    }
    Ok(t)
}

pub fn insert_ticket(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    t: &api::QualityTicket,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(quality_tickets::table)
        .values((
            quality_tickets::id.eq(&t.id),
            quality_tickets::tenant.eq(scope.tenant().as_str()),
            quality_tickets::operator.eq(&t.operator),
            quality_tickets::provider.eq(&t.provider),
            quality_tickets::resource_id.eq(&t.resource_id),
            quality_tickets::state.eq(TicketState::of(t).name()),
            quality_tickets::overdue.eq(t.overdue),
            quality_tickets::body.eq(t.encode_to_vec()),
            quality_tickets::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save_ticket(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    t: &api::QualityTicket,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        scope
            .rows(quality_tickets::table)
            .filter(quality_tickets::id.eq(&t.id)),
    )
    .set((
        quality_tickets::state.eq(TicketState::of(t).name()),
        quality_tickets::overdue.eq(t.overdue),
        quality_tickets::body.eq(t.encode_to_vec()),
        quality_tickets::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn find_ticket(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::QualityTicket>> {
    let body = scope
        .rows(quality_tickets::table)
        .filter(quality_tickets::id.eq(id))
        .select(quality_tickets::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode_ticket(&b)).transpose()
}

pub fn list_tickets(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    visible: &Visible,
    overdue_only: bool,
    page: &Cursor,
) -> Result<Vec<api::QualityTicket>> {
    let mut query = scope
        .rows(quality_tickets::table)
        .select(quality_tickets::body)
        .order(quality_tickets::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(quality_tickets::id.gt(after.clone()));
    }
    match visible {
        Visible::All => {}
        Visible::Operator(org) => query = query.filter(quality_tickets::operator.eq(org.clone())),
        Visible::Reviewer(org) => query = query.filter(quality_tickets::provider.eq(org.clone())),
    }
    if overdue_only {
        query = query.filter(quality_tickets::overdue.eq(true));
    }
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode_ticket(b))
        .collect()
}

/// Every ticket on `resource_id`: a resource's record.
pub fn tickets_of_resource(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    resource_id: &str,
) -> Result<Vec<api::QualityTicket>> {
    scope
        .rows(quality_tickets::table)
        .filter(quality_tickets::resource_id.eq(resource_id))
        .select(quality_tickets::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode_ticket(b))
        .collect()
}

// --- developers ----------------------------------------------------------------------------------

fn approval_name(state: i32) -> &'static str {
    ApprovalState::from_api(state)
        .map(ApprovalState::name)
        .unwrap_or("PENDING")
}

fn decode_developer(bytes: &[u8]) -> Result<api::Developer> {
    let d = api::Developer::decode(bytes).map_err(|e| RequestError::Corrupt(e.to_string()))?;
    if ApprovalState::from_api(d.state).is_none() {
        return Err(RequestError::Corrupt(format!(
            "developers/{}: state {} is not an approval state",
            d.id, d.state
        )));
    }
    Ok(d)
}

fn decode_need(bytes: &[u8]) -> Result<api::DevelopmentNeed> {
    let n =
        api::DevelopmentNeed::decode(bytes).map_err(|e| RequestError::Corrupt(e.to_string()))?;
    if ApprovalState::from_api(n.state).is_none() {
        return Err(RequestError::Corrupt(format!(
            "development-needs/{}: state {} is not an approval state",
            n.id, n.state
        )));
    }
    Ok(n)
}

/// Inserts or replaces developer `d`.
pub fn put_developer(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    d: &api::Developer,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(developers::table)
            .filter(developers::id.eq(&d.id)),
    )
    .execute(conn)?;
    diesel::insert_into(developers::table)
        .values((
            developers::id.eq(&d.id),
            developers::tenant.eq(scope.tenant().as_str()),
            developers::organization.eq(&d.organization),
            developers::operator.eq(&d.operator),
            developers::state.eq(approval_name(d.state)),
            developers::body.eq(d.encode_to_vec()),
            developers::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_developer(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::Developer>> {
    let body = scope
        .rows(developers::table)
        .filter(developers::id.eq(id))
        .select(developers::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode_developer(&b)).transpose()
}

/// Whether `organization` is a developer the operator `operator` approved (第二十条(三)).
pub fn is_approved_developer(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    organization: &str,
    operator: &str,
) -> Result<bool> {
    let n: i64 = scope
        .rows(developers::table)
        .filter(developers::organization.eq(organization))
        .filter(developers::operator.eq(operator))
        .filter(developers::state.eq(ApprovalState::Approved.name()))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Whose developers a caller may list.
#[derive(Debug, Clone)]
pub enum DeveloperView {
    All,
    /// Those registered with an operator.
    Operator(String),
    /// A developer organization's own registrations.
    Own(String),
}

pub fn list_developers(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    view: &DeveloperView,
    page: &Cursor,
) -> Result<Vec<api::Developer>> {
    let mut query = scope
        .rows(developers::table)
        .select(developers::body)
        .order(developers::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(developers::id.gt(after.clone()));
    }
    match view {
        DeveloperView::All => {}
        DeveloperView::Operator(org) => query = query.filter(developers::operator.eq(org.clone())),
        DeveloperView::Own(org) => query = query.filter(developers::organization.eq(org.clone())),
    }
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode_developer(b))
        .collect()
}

/// Every registration of `organization` with `operator`.
pub fn registrations(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    organization: &str,
    operator: &str,
) -> Result<Vec<api::Developer>> {
    scope
        .rows(developers::table)
        .filter(developers::organization.eq(organization))
        .filter(developers::operator.eq(operator))
        .select(developers::body)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode_developer(b))
        .collect()
}

/// Inserts or replaces need `n`.
pub fn put_need(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    n: &api::DevelopmentNeed,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(development_needs::table)
            .filter(development_needs::id.eq(&n.id)),
    )
    .execute(conn)?;
    diesel::insert_into(development_needs::table)
        .values((
            development_needs::id.eq(&n.id),
            development_needs::tenant.eq(scope.tenant().as_str()),
            development_needs::developer_id.eq(&n.developer_id),
            development_needs::state.eq(approval_name(n.state)),
            development_needs::body.eq(n.encode_to_vec()),
            development_needs::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_need(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::DevelopmentNeed>> {
    let body = scope
        .rows(development_needs::table)
        .filter(development_needs::id.eq(id))
        .select(development_needs::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode_need(&b)).transpose()
}

pub fn needs_of(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    developer_id: &str,
    page: &Cursor,
) -> Result<Vec<api::DevelopmentNeed>> {
    let mut query = scope
        .rows(development_needs::table)
        .filter(development_needs::developer_id.eq(developer_id.to_string()))
        .select(development_needs::body)
        .order(development_needs::id)
        .limit(i64::from(page.size))
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(development_needs::id.gt(after.clone()));
    }
    query
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|b| decode_need(b))
        .collect()
}

// --- sandbox -------------------------------------------------------------------------------------

fn decode_load(bytes: &[u8]) -> Result<api::Load> {
    let l = api::Load::decode(bytes).map_err(|e| RequestError::Corrupt(e.to_string()))?;
    if api::LoadState::try_from(l.state).is_err() || l.state == 0 {
        return Err(RequestError::Corrupt(format!(
            "loads/{}: state {} is not a load state",
            l.id, l.state
        )));
    }
    Ok(l)
}

/// Inserts or replaces load `l`.
pub fn put_load(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    l: &api::Load,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(resource_loads::table)
            .filter(resource_loads::id.eq(&l.id)),
    )
    .execute(conn)?;
    let state = if l.state == api::LoadState::Committed as i32 {
        "COMMITTED"
    } else {
        "OPEN"
    };
    diesel::insert_into(resource_loads::table)
        .values((
            resource_loads::id.eq(&l.id),
            resource_loads::tenant.eq(scope.tenant().as_str()),
            resource_loads::resource_id.eq(&l.resource_id),
            resource_loads::state.eq(state),
            resource_loads::version.eq(l.version as i32),
            resource_loads::body.eq(l.encode_to_vec()),
            resource_loads::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_load(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<api::Load>> {
    let body = scope
        .rows(resource_loads::table)
        .filter(resource_loads::id.eq(id))
        .select(resource_loads::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode_load(&b)).transpose()
}

/// How many loads of `resource_id` are still open.
pub fn open_loads(conn: &mut AnyConnection, scope: &TenantScope, resource_id: &str) -> Result<i64> {
    Ok(scope
        .rows(resource_loads::table)
        .filter(resource_loads::resource_id.eq(resource_id))
        .filter(resource_loads::state.eq("OPEN"))
        .count()
        .get_result(conn)?)
}

/// The committed load of `resource_id` with the highest version: its current data.
pub fn current_load(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    resource_id: &str,
) -> Result<Option<api::Load>> {
    let body = scope
        .rows(resource_loads::table)
        .filter(resource_loads::resource_id.eq(resource_id))
        .filter(resource_loads::state.eq("COMMITTED"))
        .order(resource_loads::version.desc())
        .select(resource_loads::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode_load(&b)).transpose()
}

/// The committed load of `resource_id` whose version is `version`.
pub fn committed_load(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    resource_id: &str,
    version: u32,
) -> Result<Option<api::Load>> {
    let body = scope
        .rows(resource_loads::table)
        .filter(resource_loads::resource_id.eq(resource_id))
        .filter(resource_loads::state.eq("COMMITTED"))
        .filter(resource_loads::version.eq(i32::try_from(version).unwrap_or(i32::MAX)))
        .select(resource_loads::body)
        .first::<Vec<u8>>(conn)
        .optional()?;
    body.map(|b| decode_load(&b)).transpose()
}

/// Groups of 10, ε 1 an answer, 10 a grant, unless the bureau says otherwise.
pub const DEFAULT_SANDBOX: api::SandboxSettings = api::SandboxSettings {
    min_group_size: 10,
    epsilon_per_query: 1.0,
    grant_budget: 10.0,
    queries_per_minute: 30,
};

pub fn sandbox_settings(
    conn: &mut AnyConnection,
    scope: &TenantScope,
) -> Result<api::SandboxSettings> {
    let row = scope
        .rows(sandbox_settings::table)
        .select((
            sandbox_settings::min_group_size,
            sandbox_settings::epsilon_per_query,
            sandbox_settings::grant_budget,
            sandbox_settings::queries_per_minute,
        ))
        .first::<(i32, f64, f64, i32)>(conn)
        .optional()?;
    Ok(row
        .map(|(k, epsilon, budget, rate)| api::SandboxSettings {
            min_group_size: k as u32,
            epsilon_per_query: epsilon,
            grant_budget: budget,
            queries_per_minute: rate as u32,
        })
        .unwrap_or(DEFAULT_SANDBOX))
}

pub fn put_sandbox_settings(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    s: &api::SandboxSettings,
) -> Result<()> {
    diesel::delete(scope.rows(sandbox_settings::table)).execute(conn)?;
    diesel::insert_into(sandbox_settings::table)
        .values((
            sandbox_settings::tenant.eq(scope.tenant().as_str()),
            sandbox_settings::min_group_size.eq(s.min_group_size as i32),
            sandbox_settings::epsilon_per_query.eq(s.epsilon_per_query),
            sandbox_settings::grant_budget.eq(s.grant_budget),
            sandbox_settings::queries_per_minute.eq(s.queries_per_minute as i32),
        ))
        .execute(conn)?;
    Ok(())
}

/// A grant's secret and what it has spent, created with `secret` on first use.
pub fn budget(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    secret: &str,
) -> Result<(String, f64)> {
    let row = scope
        .rows(grant_budgets::table)
        .filter(grant_budgets::grant_id.eq(grant_id))
        .select((grant_budgets::secret, grant_budgets::epsilon_spent))
        .first::<(String, f64)>(conn)
        .optional()?;
    if let Some(row) = row {
        return Ok(row);
    }
    diesel::insert_into(grant_budgets::table)
        .values((
            grant_budgets::tenant.eq(scope.tenant().as_str()),
            grant_budgets::grant_id.eq(grant_id),
            grant_budgets::secret.eq(secret),
            grant_budgets::epsilon_spent.eq(0.0),
        ))
        .execute(conn)?;
    Ok((secret.to_string(), 0.0))
}

/// Charges `epsilon` to `grant_id` if it stays within `budget`, in one statement (parallel
/// queries cannot both take the last of it); whether it did.
pub fn charge(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    epsilon: f64,
    budget: f64,
) -> Result<bool> {
    let charged = diesel::update(
        scope
            .rows(grant_budgets::table)
            .filter(grant_budgets::grant_id.eq(grant_id))
            .filter((grant_budgets::epsilon_spent + epsilon).le(budget + 1e-9)),
    )
    .set(grant_budgets::epsilon_spent.eq(grant_budgets::epsilon_spent + epsilon))
    .execute(conn)?;
    Ok(charged == 1)
}

/// Counts one statement of `grant_id` in the window `minute` (`2026-11-30T10:15`) if fewer than
/// `limit` ran in it, in one statement (parallel queries cannot both take the last); whether it
/// did. The grant's row exists: [`budget`] made it.
pub fn count_statement(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    minute: &str,
    limit: u32,
) -> Result<bool> {
    let row = || {
        scope
            .rows(grant_budgets::table)
            .filter(grant_budgets::grant_id.eq(grant_id))
    };
    // A new window starts at one; the current one counts on while below the limit.
    let opened = diesel::update(row().filter(grant_budgets::window_start.ne(minute)))
        .set((
            grant_budgets::window_start.eq(minute),
            grant_budgets::window_queries.eq(1),
        ))
        .execute(conn)?;
    if opened == 1 {
        return Ok(true);
    }
    let counted = diesel::update(
        row()
            .filter(grant_budgets::window_start.eq(minute))
            .filter(grant_budgets::window_queries.lt(limit as i32)),
    )
    .set(grant_budgets::window_queries.eq(grant_budgets::window_queries + 1))
    .execute(conn)?;
    Ok(counted == 1)
}

/// Gives back `epsilon` an answer did not spend.
pub fn refund(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    grant_id: &str,
    epsilon: f64,
) -> Result<()> {
    diesel::update(
        scope
            .rows(grant_budgets::table)
            .filter(grant_budgets::grant_id.eq(grant_id)),
    )
    .set(grant_budgets::epsilon_spent.eq(grant_budgets::epsilon_spent - epsilon))
    .execute(conn)?;
    Ok(())
}

// --- read models ---------------------------------------------------------------------------------

pub fn put_resource(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    r: &ResourceFacts,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(request_resources::table)
            .filter(request_resources::resource_id.eq(&r.id)),
    )
    .execute(conn)?;
    diesel::insert_into(request_resources::table)
        .values((
            request_resources::tenant.eq(scope.tenant().as_str()),
            request_resources::resource_id.eq(&r.id),
            request_resources::provider.eq(&r.provider),
            request_resources::provider_unit.eq(&r.provider_unit),
            request_resources::fields.eq(serde_json::to_string(&r.fields).unwrap_or_default()),
            request_resources::kinds.eq(serde_json::to_string(&r.kinds).unwrap_or_default()),
            request_resources::classification.eq(r.classification),
            request_resources::sensitivity.eq(r.sensitivity),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn resources(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    ids: &[String],
) -> Result<HashMap<String, ResourceFacts>> {
    let rows = scope
        .rows(request_resources::table)
        .filter(request_resources::resource_id.eq_any(ids))
        .select((
            request_resources::resource_id,
            request_resources::provider,
            request_resources::provider_unit,
            request_resources::fields,
            request_resources::kinds,
            request_resources::classification,
            request_resources::sensitivity,
        ))
        .load::<(String, String, String, String, String, i32, i32)>(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, provider, provider_unit, fields, kinds, classification, sensitivity)| {
                let facts = ResourceFacts {
                    id: id.clone(),
                    provider,
                    provider_unit,
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                    kinds: serde_json::from_str(&kinds).unwrap_or_default(),
                    classification,
                    sensitivity,
                };
                (id, facts)
            },
        )
        .collect())
}

pub fn put_agreement(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    a: &AgreementFacts,
) -> Result<()> {
    diesel::delete(
        scope
            .rows(request_agreements::table)
            .filter(request_agreements::agreement_id.eq(&a.id)),
    )
    .execute(conn)?;
    diesel::insert_into(request_agreements::table)
        .values((
            request_agreements::tenant.eq(scope.tenant().as_str()),
            request_agreements::agreement_id.eq(&a.id),
            request_agreements::operator.eq(&a.operator),
            request_agreements::active.eq(a.active),
            request_agreements::resource_ids
                .eq(serde_json::to_string(&a.resource_ids).unwrap_or_default()),
            request_agreements::first_day.eq(a.first_day.to_string()),
            request_agreements::last_day.eq(a.last_day.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

type AgreementRow = (String, String, bool, String, String, String);

fn facts_of(row: AgreementRow) -> AgreementFacts {
    let (id, operator, active, resource_ids, first_day, last_day) = row;
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or(NaiveDate::MIN);
    AgreementFacts {
        id,
        operator,
        active,
        resource_ids: serde_json::from_str(&resource_ids).unwrap_or_default(),
        first_day: day(&first_day),
        last_day: day(&last_day),
    }
}

/// The agreements of `operator` that are active now.
pub fn active_agreements(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
) -> Result<Vec<AgreementFacts>> {
    let rows = scope
        .rows(request_agreements::table)
        .filter(request_agreements::operator.eq(operator))
        .filter(request_agreements::active.eq(true))
        .order(request_agreements::agreement_id)
        .select((
            request_agreements::agreement_id,
            request_agreements::operator,
            request_agreements::active,
            request_agreements::resource_ids,
            request_agreements::first_day,
            request_agreements::last_day,
        ))
        .load::<AgreementRow>(conn)?;
    Ok(rows.into_iter().map(facts_of).collect())
}

pub fn agreement(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
) -> Result<Option<AgreementFacts>> {
    let row = scope
        .rows(request_agreements::table)
        .filter(request_agreements::agreement_id.eq(id))
        .select((
            request_agreements::agreement_id,
            request_agreements::operator,
            request_agreements::active,
            request_agreements::resource_ids,
            request_agreements::first_day,
            request_agreements::last_day,
        ))
        .first::<AgreementRow>(conn)
        .optional()?;
    Ok(row.map(facts_of))
}

// --- settings ------------------------------------------------------------------------------------

/// Providers answer a request within 10 working days, a ticket within 5, unless the bureau says
/// otherwise.
pub const DEFAULT_PERIODS: api::ReviewPeriods = api::ReviewPeriods {
    provider_review_working_days: 10,
    ticket_working_days: 5,
};

pub fn periods(conn: &mut AnyConnection, scope: &TenantScope) -> Result<api::ReviewPeriods> {
    let row = scope
        .rows(review_periods::table)
        .select((
            review_periods::provider_review_working_days,
            review_periods::ticket_working_days,
        ))
        .first::<(i32, i32)>(conn)
        .optional()?;
    Ok(row
        .map(|(review, ticket)| api::ReviewPeriods {
            provider_review_working_days: review as u32,
            ticket_working_days: ticket as u32,
        })
        .unwrap_or(DEFAULT_PERIODS))
}

pub fn put_periods(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    p: &api::ReviewPeriods,
) -> Result<()> {
    diesel::delete(scope.rows(review_periods::table)).execute(conn)?;
    diesel::insert_into(review_periods::table)
        .values((
            review_periods::tenant.eq(scope.tenant().as_str()),
            review_periods::provider_review_working_days.eq(p.provider_review_working_days as i32),
            review_periods::ticket_working_days.eq(p.ticket_working_days as i32),
        ))
        .execute(conn)?;
    Ok(())
}

// --- schedule ------------------------------------------------------------------------------------

/// A provider's review becomes overdue (item: `<request id>/<provider>`).
pub const REVIEW_DUE: &str = "review_due";
/// A grant's last day has passed (item: the grant id).
pub const GRANT_EXPIRES: &str = "grant_expires";
/// A ticket's period has passed (item: the ticket id).
pub const TICKET_DUE: &str = "ticket_due";
/// A termination case ordered the destruction of an agreement's data (the item is the case).
pub const DESTROY: &str = "destroy";

pub fn schedule(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    item: &str,
    action: &str,
    due_on: NaiveDate,
) -> Result<()> {
    diesel::insert_into(request_schedule::table)
        .values((
            request_schedule::item.eq(item),
            request_schedule::tenant.eq(scope.tenant().as_str()),
            request_schedule::action.eq(action),
            request_schedule::due_on.eq(due_on.format("%Y-%m-%d").to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Work due on or before `today`, across tenants: (tenant, item, action).
pub fn due(conn: &mut AnyConnection, today: NaiveDate) -> Result<Vec<(String, String, String)>> {
    Ok(request_schedule::table
        .filter(request_schedule::due_on.le(today.format("%Y-%m-%d").to_string()))
        .order(request_schedule::due_on)
        .select((
            request_schedule::tenant,
            request_schedule::item,
            request_schedule::action,
        ))
        .load(conn)?)
}

/// Drops a scheduled item that is no longer due (a ticket's period starts again on reopening).
pub fn unschedule(conn: &mut AnyConnection, item: &str, action: &str) -> Result<()> {
    diesel::delete(
        request_schedule::table
            .filter(request_schedule::item.eq(item))
            .filter(request_schedule::action.eq(action)),
    )
    .execute(conn)?;
    Ok(())
}

/// Takes a due item; `false` when another replica took it first.
pub fn take(conn: &mut AnyConnection, item: &str, action: &str) -> Result<bool> {
    let n = diesel::delete(
        request_schedule::table
            .filter(request_schedule::item.eq(item))
            .filter(request_schedule::action.eq(action)),
    )
    .execute(conn)?;
    Ok(n == 1)
}

/// How many requests wait on an overdue review, and how many open tickets are past their
/// deadline (the flags the scheduler sets; a request's clears once its reviews are answered).
pub fn overdue_counts(conn: &mut AnyConnection, scope: &TenantScope) -> Result<(i64, i64)> {
    let reviews = scope
        .rows(data_requests::table)
        .filter(data_requests::overdue.eq(true))
        .count()
        .get_result(conn)?;
    let tickets = scope
        .rows(quality_tickets::table)
        .filter(quality_tickets::overdue.eq(true))
        .filter(quality_tickets::state.eq(TicketState::Open.name()))
        .count()
        .get_result(conn)?;
    Ok((reviews, tickets))
}
