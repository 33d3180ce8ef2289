//! Requests' operations: each checks the caller's tenant, loads what it needs, applies the
//! rules, and writes the change with its domain event and audit record in one transaction.

use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, Utc};
use pdp_kit::calendar::{WorkingCalendar, civil_date};
use pdp_kit::change::{Change, Recorder, timestamp};
use pdp_kit::clock::Clock;
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role, TenantCode};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, Store, TenantScope};
use pdp_proto::EventType;
use pdp_proto::pdp::requests::v1 as api;
use pdp_sandbox::Sandbox;
use uuid::Uuid;

use crate::RequestError;
use crate::request::{self as rules, AgreementFacts, RequestState, Step, Verdict};
use crate::store::{self as db, Visible};
use crate::{SERVICE, TOPIC};

type Result<T> = std::result::Result<T, RequestError>;

pub(crate) const STAFF: &[Role] = &Role::STAFF;
const BUREAU: &[Role] = &Role::BUREAU;
/// Who reviews a request: the bureau, and the provider units of its resources (第十八条).
const REVIEWERS: &[Role] = &[Role::ProvincialBureau, Role::CityBureau, Role::Provider];
/// The longest period a bureau may give providers, in working days.
const MAX_PERIOD_WORKING_DAYS: u32 = 60;

pub(crate) const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

#[derive(Debug, Clone)]
pub struct Requests {
    store: Store,
    clock: Arc<dyn Clock>,
    calendar: Arc<WorkingCalendar>,
    /// None where no store for the sandbox's data is configured (a cluster without
    /// `sandbox.store_url`): loads and queries are then refused.
    pub(crate) sandbox: Option<Arc<Sandbox>>,
}

impl Operations for Requests {
    type Error = RequestError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

fn subject(r: &api::DataRequest) -> String {
    format!("requests/{}", r.id)
}

fn request_changed(r: &api::DataRequest, review: Option<&api::Review>) -> api::RequestChanged {
    api::RequestChanged {
        request_id: r.id.clone(),
        operator: r.operator.clone(),
        agreement_id: r.agreement_id.clone(),
        state: r.state,
        resource_ids: r.resources.iter().map(|w| w.resource_id.clone()).collect(),
        reviewer_organization: review
            .map(|rv| rv.reviewer_organization.clone())
            .unwrap_or_default(),
        outcome: review.map(|rv| rv.outcome).unwrap_or_default(),
    }
}

fn grant_changed(g: &api::Grant) -> api::GrantChanged {
    api::GrantChanged {
        grant_id: g.id.clone(),
        operator: g.operator.clone(),
        request_id: g.request_id.clone(),
        agreement_id: g.agreement_id.clone(),
        state: g.state,
        end: g.end,
        resources: g.resources.clone(),
        valid_from: g.valid_from.clone(),
        valid_to: g.valid_to.clone(),
    }
}

fn emit(
    conn: &mut AnyConnection,
    change: &Change<'_>,
    ty: EventType<api::RequestChanged>,
    r: &api::DataRequest,
    review: Option<&api::Review>,
) -> Result<()> {
    change.emit(conn, ty, &r.id, &request_changed(r, review))?;
    Ok(())
}

fn advance(r: &mut api::DataRequest, step: Step) -> Result<()> {
    let next = RequestState::of(r).after(step, &subject(r))?;
    r.state = next.to_api() as i32;
    Ok(())
}

/// The content a caller may set: everything but what the platform decides.
fn content_of(input: api::DataRequest) -> api::DataRequest {
    api::DataRequest {
        scenario: input.scenario,
        resources: input.resources,
        purposes: input.purposes,
        scope_of_use: input.scope_of_use,
        period: input.period,
        feasibility: input.feasibility,
        expected_value: input.expected_value,
        compliance: input.compliance,
        ..Default::default()
    }
}

/// The active agreement of `operator` a request lies within: the one whose scope holds every
/// resource it names, else the first (so that the refusal names what lies outside).
fn agreement_for(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    operator: &str,
    r: &api::DataRequest,
) -> Result<AgreementFacts> {
    let active = db::active_agreements(conn, scope, operator)?;
    let covers = |a: &AgreementFacts| {
        r.resources
            .iter()
            .all(|w| a.resource_ids.contains(&w.resource_id))
    };
    let chosen = active
        .iter()
        .find(|a| covers(a))
        .or(active.first())
        .cloned();
    chosen.ok_or_else(|| {
        RequestError::precondition(
            format!("tenants/{}", scope.tenant()),
            format!(
                "{operator} has no ACTIVE agreement in tenant {}: data is requested within one \
                 (第十七条, R-AGR-3)",
                scope.tenant()
            ),
        )
    })
}

fn check_content(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    r: &api::DataRequest,
    agreement: &AgreementFacts,
    complete: bool,
) -> Result<()> {
    let ids: Vec<String> = r.resources.iter().map(|w| w.resource_id.clone()).collect();
    let resources = db::resources(conn, scope, &ids)?;
    let mut v = rules::content_violations(r, agreement, &resources);
    if complete {
        v.extend(rules::missing_parts(r, &resources));
    }
    RequestError::check("request", v)
}

/// Ends `g` for `end`, with its event; nothing when it ended already.
fn end_grant(
    conn: &mut AnyConnection,
    act: &Change<'_>,
    mut g: api::Grant,
    end: api::GrantEnd,
    reason: String,
) -> Result<Option<api::Grant>> {
    if g.state != api::GrantState::Valid as i32 {
        return Ok(None);
    }
    g.state = api::GrantState::Ended as i32;
    g.end = end as i32;
    g.end_reason = reason;
    g.end_time = Some(timestamp(act.now));
    db::save_grant(conn, act.scope, &g, act.now)?;
    act.emit(conn, api::GRANT_ENDED, &g.id, &grant_changed(&g))?;
    Ok(Some(g))
}

/// Ends every valid grant of `agreement_id` at once: its agreement is no longer ACTIVE. Called by
/// the follower of the agreements' events, in the transaction that applies the event.
pub fn end_grants_of_agreement(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    agreement_id: &str,
    state: &str,
    at: DateTime<Utc>,
) -> Result<usize> {
    let act = RECORDER.change(scope, None, at);
    let mut ended = 0;
    for g in db::valid_grants(conn, scope, None, Some(agreement_id))? {
        let reason = format!("agreement {agreement_id} is {state}, no longer ACTIVE (R-AGR-3)");
        ended +=
            usize::from(end_grant(conn, &act, g, api::GrantEnd::AgreementEnded, reason)?.is_some());
    }
    Ok(ended)
}

impl Requests {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        calendar: Arc<WorkingCalendar>,
        sandbox: Option<Arc<Sandbox>>,
    ) -> Self {
        Self {
            store,
            clock,
            calendar,
            sandbox,
        }
    }

    pub(crate) fn sandbox(&self) -> Result<&Sandbox> {
        self.sandbox.as_deref().ok_or_else(|| {
            RequestError::precondition(
                "sandbox",
                "this deployment keeps no sandbox data: a cluster needs an S3-compatible bucket \
                 (`sandbox.store_url`, the chart's `sandbox.store`)",
            )
        })
    }

    pub(crate) fn calendar(&self) -> &WorkingCalendar {
        &self.calendar
    }

    fn load(conn: &mut AnyConnection, scope: &TenantScope, id: &str) -> Result<api::DataRequest> {
        db::find_request(conn, scope, id)?.ok_or_else(|| RequestError::not_found("request", id))
    }

    /// The caller's own request; another's is NOT_FOUND.
    fn own(
        conn: &mut AnyConnection,
        scope: &TenantScope,
        who: &Identity,
        id: &str,
    ) -> Result<api::DataRequest> {
        let r = Self::load(conn, scope, id)?;
        if r.operator != who.organization {
            return Err(RequestError::not_found("request", id));
        }
        Ok(r)
    }

    pub(crate) fn visible(who: &Identity) -> Visible {
        if who.has_any(STAFF) {
            Visible::All
        } else if who.has(Role::Provider) {
            Visible::Reviewer(who.organization.clone())
        } else {
            Visible::Operator(who.organization.clone())
        }
    }

    fn sees(who: &Identity, r: &api::DataRequest) -> bool {
        match Self::visible(who) {
            Visible::All => true,
            Visible::Operator(org) => r.operator == org,
            Visible::Reviewer(org) => r.reviews.iter().any(|rv| {
                rv.kind == api::ReviewerKind::Provider as i32 && rv.reviewer_organization == org
            }),
        }
    }

    // --- requests ----------------------------------------------------------------------------

    pub async fn create(
        &self,
        who: &Identity,
        tenant: &str,
        input: api::DataRequest,
    ) -> Result<api::DataRequest> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        if who.has(Role::Developer) && !who.has(Role::Operator) {
            return Err(RequestError::forbidden(
                "DEVELOPER_NO_RAW_DATA",
                "a developer builds on the products and services its operator delivers, never on \
                 raw resources (第二十一条)",
            ));
        }
        RequestError::unless_role(who, &[Role::Operator], "requesting data")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let content = content_of(input);
            let agreement = agreement_for(conn, scope, &who.organization, &content)?;
            check_content(conn, scope, &content, &agreement, false)?;
            let r = api::DataRequest {
                id: Uuid::now_v7().to_string(),
                tenant: scope.tenant().to_string(),
                operator: who.organization.clone(),
                agreement_id: agreement.id.clone(),
                state: RequestState::Draft.to_api() as i32,
                created_by: who.subject.clone(),
                create_time: Some(timestamp(now)),
                update_time: Some(timestamp(now)),
                ..content
            };
            db::insert_request(conn, scope, &r, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            emit(conn, &act, api::REQUEST_CREATED, &r, None)?;
            Ok(r)
        })
        .await
    }

    pub async fn update(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        input: api::DataRequest,
    ) -> Result<api::DataRequest> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Operator], "editing a request")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let current = Self::own(conn, scope, &who, &id)?;
            RequestState::of(&current).after(Step::Edit, &subject(&current))?;
            let content = content_of(input);
            let agreement = agreement_for(conn, scope, &who.organization, &content)?;
            check_content(conn, scope, &content, &agreement, false)?;
            let r = api::DataRequest {
                id: current.id,
                tenant: current.tenant,
                operator: current.operator,
                agreement_id: agreement.id,
                state: current.state,
                created_by: current.created_by,
                create_time: current.create_time,
                update_time: Some(timestamp(now)),
                ..content
            };
            db::save_request(conn, scope, &r, now)?;
            emit(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                api::REQUEST_UPDATED,
                &r,
                None,
            )?;
            Ok(r)
        })
        .await
    }

    pub async fn get(&self, who: &Identity, tenant: &str, id: String) -> Result<api::DataRequest> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            let r = Self::load(conn, scope, &id)?;
            if !Self::sees(&who, &r) {
                return Err(RequestError::not_found("request", &id));
            }
            Ok(r)
        })
        .await
    }

    pub async fn list(
        &self,
        who: &Identity,
        tenant: &str,
        state: Option<RequestState>,
        overdue_only: bool,
        cursor: Cursor,
    ) -> Result<(Vec<api::DataRequest>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let visible = Self::visible(who);
        self.in_scope(&scope, move |conn, scope, _| {
            let items = db::list_requests(conn, scope, &visible, state, overdue_only, &cursor)?;
            let next = cursor.next_token(&items, |r| &r.id);
            Ok((items, next))
        })
        .await
    }

    /// Starts review: the bureau on the whole, each provider unit on its resources, due within
    /// the tenant's period of working days (第十八条).
    pub async fn submit(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::DataRequest> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Operator], ":submit")?;
        let who = who.clone();
        let calendar = self.calendar.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut r = Self::own(conn, scope, &who, &id)?;
            RequestState::of(&r).after(Step::Submit, &subject(&r))?;
            let agreement = agreement_for(conn, scope, &who.organization, &r)?;
            check_content(conn, scope, &r, &agreement, true)?;
            let periods = db::periods(conn, scope)?;
            let today = civil_date(now);
            let due = calendar
                .working_days_after(today, periods.provider_review_working_days)
                .map_err(|e| RequestError::precondition(subject(&r), e.to_string()))?;
            let ids: Vec<String> = r.resources.iter().map(|w| w.resource_id.clone()).collect();
            let resources = db::resources(conn, scope, &ids)?;
            r.reviews = rules::reviews_for(&r, scope.tenant().as_str(), &resources, due);
            r.agreement_id = agreement.id;
            advance(&mut r, Step::Submit)?;
            r.submit_time = Some(timestamp(now));
            r.update_time = Some(timestamp(now));
            db::save_request(conn, scope, &r, now)?;
            let providers: Vec<String> = r
                .reviews
                .iter()
                .filter(|rv| rv.kind == api::ReviewerKind::Provider as i32)
                .map(|rv| rv.reviewer_organization.clone())
                .collect();
            db::add_reviewers(conn, scope, &r.id, &providers)?;
            // Overdue from the day after the last working day.
            let overdue_on = due.checked_add_days(Days::new(1)).unwrap_or(due);
            for provider in &providers {
                let item = format!("{}/{provider}", r.id);
                db::schedule(conn, scope, &item, db::REVIEW_DUE, overdue_on)?;
            }
            emit(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                api::REQUEST_SUBMITTED,
                &r,
                None,
            )?;
            Ok(r)
        })
        .await
    }

    /// One reviewer's decision. The bureau decides on the whole request, a provider unit on its
    /// own resources; one rejection rejects the request, the last approval issues the grant.
    pub async fn review(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        decision: api::ReviewDecision,
    ) -> Result<api::DataRequest> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, REVIEWERS, "reviewing a request")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut r = Self::load(conn, scope, &id)?;
            let bureau = who.has_any(BUREAU);
            if !bureau && !Self::sees(&who, &r) {
                return Err(RequestError::not_found("request", &id));
            }
            if RequestState::of(&r) != RequestState::InReview {
                return Err(RequestError::precondition(
                    subject(&r),
                    format!(
                        "the request is {}; reviews are given while it is IN_REVIEW",
                        RequestState::of(&r).name()
                    ),
                ));
            }
            let (kind, reviewer) = if bureau {
                (api::ReviewerKind::Bureau, scope.tenant().to_string())
            } else {
                (api::ReviewerKind::Provider, who.organization.clone())
            };
            let Some(at) = r
                .reviews
                .iter()
                .position(|rv| rv.kind == kind as i32 && rv.reviewer_organization == reviewer)
            else {
                return Err(RequestError::not_found("request", &id));
            };
            if r.reviews[at].outcome != api::ReviewOutcome::Pending as i32 {
                return Err(RequestError::precondition(
                    subject(&r),
                    format!("{reviewer} has reviewed this request already"),
                ));
            }
            let v = rules::decision_violations(&r, &r.reviews[at], &decision);
            RequestError::check("review", v)?;
            let review = &mut r.reviews[at];
            review.outcome = decision.outcome;
            review.reasons = decision
                .reasons
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            review.conditions = decision.conditions;
            review.reviewed_by = who.subject.clone();
            review.review_time = Some(timestamp(now));
            let review = review.clone();
            r.update_time = Some(timestamp(now));
            let act = RECORDER.change(scope, Some(&who), now);
            match rules::verdict(&r, &r.reviews) {
                Verdict::Pending => {
                    db::save_request(conn, scope, &r, now)?;
                    emit(conn, &act, api::REQUEST_REVIEWED, &r, Some(&review))?;
                }
                Verdict::Rejected | Verdict::NothingLeft => {
                    advance(&mut r, Step::Reject)?;
                    r.decide_time = Some(timestamp(now));
                    db::save_request(conn, scope, &r, now)?;
                    emit(conn, &act, api::REQUEST_REVIEWED, &r, Some(&review))?;
                    emit(conn, &act, api::REQUEST_REJECTED, &r, None)?;
                }
                Verdict::Approved(resources, last_day) => {
                    let grant = issue_grant(conn, &act, &mut r, resources, &last_day)?;
                    emit(conn, &act, api::REQUEST_REVIEWED, &r, Some(&review))?;
                    emit(conn, &act, api::REQUEST_APPROVED, &r, None)?;
                    act.emit(conn, api::GRANT_ISSUED, &grant.id, &grant_changed(&grant))?;
                }
            }
            Ok(r)
        })
        .await
    }

    // --- review periods ----------------------------------------------------------------------

    pub async fn periods(&self, who: &Identity, tenant: &str) -> Result<api::ReviewPeriods> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, |conn, scope, _| db::periods(conn, scope))
            .await
    }

    pub async fn update_periods(
        &self,
        who: &Identity,
        tenant: &str,
        periods: api::ReviewPeriods,
    ) -> Result<api::ReviewPeriods> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, BUREAU, "setting the review periods")?;
        let mut v = Vec::new();
        for (field, days) in [
            (
                "periods.provider_review_working_days",
                periods.provider_review_working_days,
            ),
            ("periods.ticket_working_days", periods.ticket_working_days),
        ] {
            if days == 0 || days > MAX_PERIOD_WORKING_DAYS {
                v.push(FieldViolation::new(
                    field,
                    format!("from 1 to {MAX_PERIOD_WORKING_DAYS} working days"),
                ));
            }
        }
        RequestError::check("periods", v)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            db::put_periods(conn, scope, &periods)?;
            let tenant = scope.tenant().to_string();
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::REVIEW_PERIODS_UPDATED,
                &tenant,
                &api::ReviewPeriodsChanged {
                    tenant: tenant.clone(),
                    periods: Some(periods),
                },
            )?;
            Ok(periods)
        })
        .await
    }

    // --- grants --------------------------------------------------------------------------------

    pub async fn grant(&self, who: &Identity, tenant: &str, id: String) -> Result<api::Grant> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let staff = who.has_any(STAFF);
        let org = who.organization.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            let g = db::find_grant(conn, scope, &id)?
                .filter(|g| staff || g.operator == org)
                .ok_or_else(|| RequestError::not_found("grant", &id))?;
            Ok(g)
        })
        .await
    }

    pub async fn grants(
        &self,
        who: &Identity,
        tenant: &str,
        state: Option<api::GrantState>,
        cursor: Cursor,
    ) -> Result<(Vec<api::Grant>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let operator = (!who.has_any(STAFF)).then(|| who.organization.clone());
        self.in_scope(&scope, move |conn, scope, _| {
            let valid = state.map(|s| s == api::GrantState::Valid);
            let items = db::list_grants(conn, scope, operator.as_deref(), valid, &cursor)?;
            let next = cursor.next_token(&items, |g| &g.id);
            Ok((items, next))
        })
        .await
    }

    pub async fn revoke(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        reason: String,
    ) -> Result<api::Grant> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, BUREAU, ":revoke")?;
        if reason.trim().is_empty() {
            return Err(RequestError::invalid(
                "revocation",
                vec![FieldViolation::new(
                    "reason",
                    "required: a grant is revoked with its reason",
                )],
            ));
        }
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let g = db::find_grant(conn, scope, &id)?
                .ok_or_else(|| RequestError::not_found("grant", &id))?;
            let act = RECORDER.change(scope, Some(&who), now);
            end_grant(
                conn,
                &act,
                g,
                api::GrantEnd::Revoked,
                reason.trim().to_string(),
            )?
            .ok_or_else(|| {
                RequestError::precondition(format!("grants/{id}"), "the grant has ended already")
            })
        })
        .await
    }

    /// Pins the version of `resource_id` the grant `id`'s queries read (0: the newest).
    pub async fn pin_version(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        resource_id: String,
        version: u32,
    ) -> Result<api::Grant> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Operator], ":pin")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut g = db::find_grant(conn, scope, &id)?
                .filter(|g| g.operator == who.organization)
                .ok_or_else(|| RequestError::not_found("grant", &id))?;
            if g.state != api::GrantState::Valid as i32 {
                return Err(RequestError::precondition(
                    format!("grants/{id}"),
                    "the grant has ended: it reads nothing",
                ));
            }
            let Some(granted) = g
                .resources
                .iter_mut()
                .find(|r| r.resource_id == resource_id)
            else {
                return Err(RequestError::invalid(
                    "pin",
                    vec![FieldViolation::new(
                        "resource_id",
                        format!("`{resource_id}` is not one of the grant's resources"),
                    )],
                ));
            };
            if version > 0 && db::committed_load(conn, scope, &resource_id, version)?.is_none() {
                let newest = db::current_load(conn, scope, &resource_id)?.map_or(0, |l| l.version);
                return Err(RequestError::invalid(
                    "pin",
                    vec![FieldViolation::new(
                        "version",
                        format!(
                            "{resource_id} has no committed version {version}: its versions \
                             run from 1 to {newest}"
                        ),
                    )],
                ));
            }
            granted.pinned_version = version;
            db::save_grant(conn, scope, &g, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            act.emit(conn, api::GRANT_PINNED, &g.id, &grant_changed(&g))?;
            Ok(g)
        })
        .await
    }

    /// May `organization` read `fields` of `resource` now? From the grants as they stand: a
    /// grant that ended, lies outside its days, or whose agreement is no longer ACTIVE allows
    /// nothing.
    pub async fn check(
        &self,
        who: &Identity,
        tenant: &str,
        request: api::CheckGrantRequest,
    ) -> Result<api::CheckGrantResponse> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        if !who.has_any(STAFF) && request.organization != who.organization {
            return Err(RequestError::forbidden(
                "NOT_OWN_ORGANIZATION",
                "an operator asks about its own organization's grants only",
            ));
        }
        self.in_scope(&scope, move |conn, scope, now| {
            let today = civil_date(now).to_string();
            let org = &request.organization;
            let mut partial = Vec::new();
            for g in db::valid_grants(conn, scope, Some(org), None)? {
                if g.valid_from.as_str() > today.as_str() || g.valid_to.as_str() < today.as_str() {
                    continue;
                }
                if !db::agreement(conn, scope, &g.agreement_id)?.is_some_and(|a| a.active) {
                    continue;
                }
                let Some(granted) = g
                    .resources
                    .iter()
                    .find(|gr| gr.resource_id == request.resource_id)
                else {
                    continue;
                };
                let missing: Vec<&String> = request
                    .fields
                    .iter()
                    .filter(|f| !granted.fields.contains(f))
                    .collect();
                if missing.is_empty() {
                    let masked = request
                        .fields
                        .iter()
                        .filter(|f| granted.masked_fields.contains(f))
                        .cloned()
                        .collect();
                    return Ok(api::CheckGrantResponse {
                        granted: true,
                        grant_id: g.id.clone(),
                        masked_fields: masked,
                        reason: format!("grant {} allows it until {}", g.id, g.valid_to),
                    });
                }
                partial.push(format!("grant {} does not cover fields {missing:?}", g.id));
            }
            let reason = if partial.is_empty() {
                format!(
                    "no valid grant of {org} covers resource {} on {today}",
                    request.resource_id
                )
            } else {
                partial.join("; ")
            };
            Ok(api::CheckGrantResponse {
                granted: false,
                reason,
                ..Default::default()
            })
        })
        .await
    }

    // --- schedule ------------------------------------------------------------------------------

    /// Reviews and tickets that became overdue, and grants whose last day passed; each happens
    /// once whatever the replicas.
    pub async fn run_schedule(&self) -> Result<usize> {
        let today = civil_date(self.clock.now());
        let due = self.store.run(move |conn| db::due(conn, today)).await?;
        let mut done = 0;
        for (tenant, item, action) in due {
            // Destructions reach the sandbox's store: `destroy_ordered` carries them out.
            if action == db::DESTROY {
                continue;
            }
            let Ok(tenant) = tenant.parse::<TenantCode>() else {
                continue;
            };
            let scope = TenantScope::system(tenant);
            let applied = self
                .in_scope(&scope, move |conn, scope, now| {
                    if !db::take(conn, &item, &action)? {
                        return Ok(false);
                    }
                    let act = RECORDER.change(scope, None, now);
                    match action.as_str() {
                        db::REVIEW_DUE => review_overdue(conn, &act, &item),
                        db::TICKET_DUE => crate::tickets::ticket_overdue(conn, &act, &item),
                        db::GRANT_EXPIRES => {
                            let Some(g) = db::find_grant(conn, scope, &item)? else {
                                return Ok(false);
                            };
                            let reason = format!("its last day {} has passed", g.valid_to);
                            Ok(end_grant(conn, &act, g, api::GrantEnd::Expired, reason)?.is_some())
                        }
                        _ => Ok(false),
                    }
                })
                .await?;
            done += usize::from(applied);
        }
        Ok(done)
    }
}

/// Approves `r` and issues its grant: `resources` from `valid_from` to the earliest of
/// `last_day` and the agreement's last day, expiring the day after.
fn issue_grant(
    conn: &mut AnyConnection,
    act: &Change<'_>,
    r: &mut api::DataRequest,
    resources: Vec<api::GrantedResource>,
    last_day: &str,
) -> Result<api::Grant> {
    let agreement = db::agreement(conn, act.scope, &r.agreement_id)?.filter(|a| a.active);
    let Some(agreement) = agreement else {
        return Err(RequestError::precondition(
            subject(r),
            format!(
                "agreement {} is no longer ACTIVE: nothing is granted under it (R-AGR-3)",
                r.agreement_id
            ),
        ));
    };
    advance(r, Step::Approve)?;
    r.decide_time = Some(timestamp(act.now));
    let parsed = NaiveDate::parse_from_str(last_day, "%Y-%m-%d").unwrap_or(agreement.last_day);
    let last = parsed.min(agreement.last_day);
    let grant = api::Grant {
        id: Uuid::now_v7().to_string(),
        tenant: act.scope.tenant().to_string(),
        operator: r.operator.clone(),
        request_id: r.id.clone(),
        agreement_id: r.agreement_id.clone(),
        resources,
        purposes: r.purposes.clone(),
        valid_from: r.period.clone().unwrap_or_default().first_day,
        valid_to: last.to_string(),
        state: api::GrantState::Valid as i32,
        create_time: Some(timestamp(act.now)),
        ..Default::default()
    };
    r.grant_id = grant.id.clone();
    db::save_request(conn, act.scope, r, act.now)?;
    db::insert_grant(conn, act.scope, &grant, act.now)?;
    let expires_on = last.checked_add_days(Days::new(1)).unwrap_or(last);
    db::schedule(conn, act.scope, &grant.id, db::GRANT_EXPIRES, expires_on)?;
    Ok(grant)
}

/// Marks a provider's review overdue when it is still pending, and tells the bureau.
fn review_overdue(conn: &mut AnyConnection, act: &Change<'_>, item: &str) -> Result<bool> {
    let Some((request_id, provider)) = item.split_once('/') else {
        return Ok(false);
    };
    let Some(mut r) = db::find_request(conn, act.scope, request_id)? else {
        return Ok(false);
    };
    if RequestState::of(&r) != RequestState::InReview {
        return Ok(false);
    }
    let Some(review) = r.reviews.iter_mut().find(|rv| {
        rv.kind == api::ReviewerKind::Provider as i32
            && rv.reviewer_organization == provider
            && rv.outcome == api::ReviewOutcome::Pending as i32
    }) else {
        return Ok(false);
    };
    review.overdue = true;
    let payload = api::ReviewOverdue {
        request_id: r.id.clone(),
        reviewer_organization: provider.to_string(),
        resource_ids: review.resource_ids.clone(),
        due_on: review.due_on.clone(),
    };
    r.update_time = Some(timestamp(act.now));
    db::save_request(conn, act.scope, &r, act.now)?;
    act.emit(conn, api::REVIEW_OVERDUE, &r.id, &payload)?;
    Ok(true)
}
