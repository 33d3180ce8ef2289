//! Planning's operations: each one checks the caller's tenant, loads what it needs, applies the
//! domain rules, and writes the change, its domain event and its audit record in one transaction.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use pdp_kit::calendar::civil_date;
use pdp_kit::change::{Change, Recorder, timestamp};
use pdp_kit::clock::Clock;
use pdp_kit::error::FieldViolation;
use pdp_kit::events::Event;
use pdp_kit::identity::{Identity, Role, TenantCode};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, Store, TenantScope};
use pdp_proto::pdp::planning::v1 as api;
use uuid::Uuid;

use crate::PlanningError;
use crate::plan::{self, PlanState, Step};
use crate::resource::{self, ScopeCheck};
use crate::store as db;
use crate::{SERVICE, TOPIC};

type Result<T> = std::result::Result<T, PlanningError>;

/// Roles that manage every resource of their tenant; a provider unit manages its own.
const BUREAU: &[Role] = &Role::BUREAU;
/// Who lists and registers resources: their provider units, and the data bureau.
const LISTS_RESOURCES: &[Role] = &[Role::ProvincialBureau, Role::CityBureau, Role::Provider];

/// Ownership is the service's to decide (the gateway decides role × tenant × operation).
fn may_manage(who: &Identity, resource: &api::DataResource) -> Result<()> {
    if who.has_any(BUREAU) || resource.owner_organization == who.organization {
        Ok(())
    } else {
        Err(PlanningError::forbidden(
            "NOT_OWNER",
            format!(
                "resource {} belongs to {}; only its provider unit or the data bureau changes it",
                resource.id, resource.owner_organization
            ),
        ))
    }
}

/// Roles that see plans before they take effect; everyone else sees effective plans only.
const SEES_UNPUBLISHED: &[Role] = &Role::STAFF;

#[derive(Debug, Clone)]
pub struct Planning {
    store: Store,
    clock: Arc<dyn Clock>,
}

/// Records this service's changes: their events on its topic and their audit records.
const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

/// The state of a plan read from the store, which refuses a row whose state names none (so the
/// fallback is never taken for a stored plan).
fn state_of(plan: &api::Plan) -> PlanState {
    let state = api::PlanState::try_from(plan.state)
        .ok()
        .and_then(PlanState::from_api);
    debug_assert!(state.is_some(), "stored plans carry a known state");
    state.unwrap_or(PlanState::Draft)
}

fn plan_subject(plan: &api::Plan) -> String {
    format!("plans/{}/versions/{}", plan.id, plan.version)
}

fn plan_changed(plan: &api::Plan) -> api::PlanChanged {
    api::PlanChanged {
        plan_id: plan.id.clone(),
        version: plan.version,
        name: plan.name.clone(),
        state: plan.state,
        mode: plan.mode,
    }
}

fn resource_changed(resource: &api::DataResource) -> api::ResourceChanged {
    api::ResourceChanged {
        resource_id: resource.id.clone(),
        name: resource.name.clone(),
        registration_number: resource.registration_number.clone(),
        provider_unit: resource.provider_unit.clone(),
        provider_organization: resource.owner_organization.clone(),
        schema: resource.schema.clone(),
        classification: resource.classification,
        sensitivity: resource.sensitivity,
    }
}

fn filing_changed(filing: &api::Filing) -> api::FilingChanged {
    api::FilingChanged {
        filing_id: filing.id.clone(),
        city: filing.city.clone(),
        plan_id: filing.plan_id.clone(),
        plan_version: filing.plan_version,
    }
}

/// The resources a scope names, loaded once for the rules to look at.
struct Catalog(HashMap<String, api::DataResource>);

impl ScopeCheck for Catalog {
    fn resource(&self, id: &str) -> Option<api::DataResource> {
        self.0.get(id).cloned()
    }
}

fn catalog_for(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    sections: &api::PlanSections,
) -> Result<Catalog> {
    let mut found = HashMap::new();
    for item in sections.scope.iter().flat_map(|s| &s.items) {
        if let Some(r) = db::find_resource(conn, scope, &item.resource_id)? {
            found.insert(r.id.clone(), r);
        }
    }
    Ok(Catalog(found))
}

impl Operations for Planning {
    type Error = PlanningError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

impl Planning {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    fn today(&self) -> NaiveDate {
        civil_date(self.clock.now())
    }

    // --- catalog -------------------------------------------------------------------------------

    pub async fn create_resource(
        &self,
        who: &Identity,
        tenant: &str,
        mut resource: api::DataResource,
    ) -> Result<api::DataResource> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        PlanningError::unless_role(who, LISTS_RESOURCES, "listing a resource")?;
        PlanningError::check("resource", resource::creation_violations(&resource))?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            resource.id = Uuid::now_v7().to_string();
            resource.tenant = scope.tenant().to_string();
            resource.owner_organization = who.organization.clone();
            resource.registration_number.clear();
            resource.registered_by.clear();
            resource.registered_at = None;
            resource.create_time = Some(timestamp(now));
            resource.update_time = Some(timestamp(now));
            db::insert_resource(conn, scope, &resource, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            act.emit(
                conn,
                api::RESOURCE_CREATED,
                &resource.id,
                &resource_changed(&resource),
            )?;
            Ok(resource)
        })
        .await
    }

    pub async fn update_resource(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        change: api::DataResource,
    ) -> Result<api::DataResource> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        PlanningError::unless_role(who, LISTS_RESOURCES, "changing a resource")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut resource = db::find_resource(conn, scope, &id)?
                .ok_or_else(|| PlanningError::not_found("resource", &id))?;
            may_manage(&who, &resource)?;
            resource::merge(&mut resource, change);
            PlanningError::check("resource", resource::creation_violations(&resource))?;
            if !resource.registration_number.is_empty() {
                // A registered resource stays complete: a change may not remove what
                // registration required.
                PlanningError::check("resource", resource::registration_violations(&resource))?;
            }
            resource.update_time = Some(timestamp(now));
            db::save_resource(conn, scope, &resource, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            act.emit(
                conn,
                api::RESOURCE_UPDATED,
                &resource.id,
                &resource_changed(&resource),
            )?;
            Ok(resource)
        })
        .await
    }

    pub async fn register_resource(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::DataResource> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        PlanningError::unless_role(who, LISTS_RESOURCES, "registering a resource")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut resource = db::find_resource(conn, scope, &id)?
                .ok_or_else(|| PlanningError::not_found("resource", &id))?;
            may_manage(&who, &resource)?;
            if !resource.registration_number.is_empty() {
                // Registration is stable: asking again returns the number given.
                return Ok(resource);
            }
            PlanningError::check("resource", resource::registration_violations(&resource))?;
            let year = chrono::Datelike::year(&civil_date(now));
            let sequence = db::next_registration_sequence(conn, scope, year)?;
            resource.registration_number =
                resource::registration_number(scope.tenant(), year, sequence);
            resource.registered_by = who.subject.clone();
            resource.registered_at = Some(timestamp(now));
            resource.update_time = Some(timestamp(now));
            db::save_resource(conn, scope, &resource, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            act.emit(
                conn,
                api::RESOURCE_REGISTERED,
                &resource.id,
                &resource_changed(&resource),
            )?;
            Ok(resource)
        })
        .await
    }

    pub async fn get_resource(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::DataResource> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            db::find_resource(conn, scope, &id)?
                .ok_or_else(|| PlanningError::not_found("resource", &id))
        })
        .await
    }

    pub async fn list_resources(
        &self,
        who: &Identity,
        tenant: &str,
        registered: Option<bool>,
        cursor: Cursor,
    ) -> Result<(Vec<api::DataResource>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            let items = db::list_resources(conn, scope, registered, &cursor)?;
            let next = cursor.next_token(&items, |r| &r.id);
            Ok((items, next))
        })
        .await
    }

    /// The registered catalog without personal-information fields (public).
    pub async fn list_public_resources(
        &self,
        who: &Identity,
        tenant: &str,
        cursor: Cursor,
    ) -> Result<(Vec<api::DataResource>, String)> {
        let (items, next) = self.list_resources(who, tenant, Some(true), cursor).await?;
        Ok((items.into_iter().map(resource::public_view).collect(), next))
    }

    // --- plans ---------------------------------------------------------------------------------

    pub async fn create_plan(
        &self,
        who: &Identity,
        tenant: &str,
        input: api::Plan,
    ) -> Result<api::Plan> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        PlanningError::unless_role(who, BUREAU, "drafting a plan")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let sections = input.sections.unwrap_or_default();
            let mut v = Vec::new();
            if input.name.trim().is_empty() {
                v.push(FieldViolation::new(
                    "plan.name",
                    "required: the name of the authorized operation (第十一条(一))",
                ));
            }
            if input.mode != 0 {
                v.extend(plan::mode_violations(scope.tenant(), input.mode));
            }
            if let Some(s) = &sections.scope {
                v.extend(resource::scope_violations(
                    s,
                    &catalog_for(conn, scope, &sections)?,
                ));
            }
            PlanningError::check("plan", v)?;
            let plan = api::Plan {
                id: Uuid::now_v7().to_string(),
                version: 1,
                tenant: scope.tenant().to_string(),
                state: PlanState::Draft.to_api() as i32,
                name: input.name,
                mode: input.mode,
                sections: Some(sections),
                created_by: who.subject.clone(),
                create_time: Some(timestamp(now)),
                update_time: Some(timestamp(now)),
                ..Default::default()
            };
            db::insert_plan_version(conn, scope, &plan, now)?;
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::PLAN_CREATED,
                &plan.id,
                &plan_changed(&plan),
            )?;
            Ok(plan)
        })
        .await
    }

    pub async fn update_plan(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        change: api::Plan,
    ) -> Result<api::Plan> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        PlanningError::unless_role(who, BUREAU, "changing a plan")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut plan = db::latest_plan(conn, scope, &id)?
                .ok_or_else(|| PlanningError::not_found("plan", &id))?;
            if state_of(&plan) != PlanState::Draft {
                return Err(PlanningError::Precondition {
                    subject: plan_subject(&plan),
                    description: format!(
                        "only a draft changes by update; this version is {}{}",
                        state_of(&plan).name(),
                        if state_of(&plan).is_approved() {
                            ": record an amendment (POST …/amendments)"
                        } else {
                            ""
                        }
                    ),
                });
            }
            if !change.name.is_empty() {
                plan.name = change.name;
            }
            let mut v = Vec::new();
            if change.mode != 0 {
                plan.mode = change.mode;
                v.extend(plan::mode_violations(scope.tenant(), plan.mode));
            }
            if let Some(sections) = change.sections {
                if let Some(s) = &sections.scope {
                    v.extend(resource::scope_violations(
                        s,
                        &catalog_for(conn, scope, &sections)?,
                    ));
                }
                plan::merge_sections(plan.sections.get_or_insert_default(), sections);
            }
            PlanningError::check("plan", v)?;
            plan.update_time = Some(timestamp(now));
            db::save_plan_version(conn, scope, &plan, now)?;
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::PLAN_UPDATED,
                &plan.id,
                &plan_changed(&plan),
            )?;
            Ok(plan)
        })
        .await
    }

    /// Whether `who` may see versions that have not taken effect.
    fn sees_unpublished(who: &Identity) -> bool {
        who.has_any(SEES_UNPUBLISHED)
    }

    pub async fn get_plan(&self, who: &Identity, tenant: &str, id: String) -> Result<api::Plan> {
        let versions = self.plan_versions(who, tenant, id.clone()).await?;
        versions
            .into_iter()
            .last()
            .ok_or_else(|| PlanningError::not_found("plan", &id))
    }

    /// Every version the caller may see, oldest first.
    pub async fn plan_versions(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<Vec<api::Plan>> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let all = Self::sees_unpublished(who);
        self.in_scope(&scope, move |conn, scope, _| {
            let versions: Vec<_> = db::plan_versions(conn, scope, &id)?
                .into_iter()
                .filter(|p| all || state_of(p) == PlanState::Effective)
                .collect();
            if versions.is_empty() {
                return Err(PlanningError::not_found("plan", &id));
            }
            Ok(versions)
        })
        .await
    }

    pub async fn plan_version(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        version: u32,
    ) -> Result<api::Plan> {
        self.plan_versions(who, tenant, id.clone())
            .await?
            .into_iter()
            .find(|p| p.version == version)
            .ok_or_else(|| {
                PlanningError::not_found("plan version", format!("{id}/versions/{version}"))
            })
    }

    pub async fn list_plans(
        &self,
        who: &Identity,
        tenant: &str,
        state: Option<PlanState>,
        cursor: Cursor,
    ) -> Result<(Vec<api::Plan>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let states: Option<Vec<PlanState>> = match (Self::sees_unpublished(who), state) {
            (true, state) => state.map(|s| vec![s]),
            (false, None | Some(PlanState::Effective)) => Some(vec![PlanState::Effective]),
            (false, Some(_)) => Some(Vec::new()),
        };
        self.in_scope(&scope, move |conn, scope, _| {
            let items = match &states {
                Some(s) if s.is_empty() => Vec::new(),
                s => db::list_plans(conn, scope, s.as_deref(), &cursor)?,
            };
            let next = cursor.next_token_by(&items, db::plan_page_key);
            Ok((items, next))
        })
        .await
    }

    pub async fn list_amendments(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<Vec<api::Amendment>> {
        // Reading the plan first applies its visibility to its amendments.
        self.get_plan(who, tenant, id.clone()).await?;
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            db::amendments(conn, scope, &id)
        })
        .await
    }

    /// One step of the chain on the newest version: `record` checks and records what the step
    /// needs (and may pick a different step, as a decision that does not agree rejects).
    async fn step<F>(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        step: Step,
        record: F,
    ) -> Result<api::Plan>
    where
        F: FnOnce(&mut api::Plan, &Identity, DateTime<Utc>, NaiveDate) -> Result<Step>
            + Send
            + 'static,
    {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        PlanningError::unless_role(who, BUREAU, "the approval chain")?;
        let who = who.clone();
        let today = self.today();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut plan = db::latest_plan(conn, scope, &id)?
                .ok_or_else(|| PlanningError::not_found("plan", &id))?;
            let subject = plan_subject(&plan);
            // The state is checked before the input, so that a step out of order names the
            // missing step rather than complaining about fields.
            state_of(&plan).after(step, &subject)?;
            if step == Step::Submit {
                let sections = plan.sections.clone().unwrap_or_default();
                let catalog = catalog_for(conn, scope, &sections)?;
                PlanningError::check(
                    "plan",
                    plan::submission_violations(
                        scope.tenant(),
                        &plan.name,
                        plan.mode,
                        &sections,
                        &catalog,
                    ),
                )?;
            }
            let step = record(&mut plan, &who, now, today)?;
            let next = state_of(&plan).after(step, &subject)?;
            plan.state = next.to_api() as i32;
            plan.update_time = Some(timestamp(now));
            db::save_plan_version(conn, scope, &plan, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            let ty = match next {
                PlanState::Submitted => api::PLAN_SUBMITTED,
                PlanState::Reviewed => api::PLAN_REVIEWED,
                PlanState::Decided => api::PLAN_DECIDED,
                PlanState::Approved => api::PLAN_APPROVED,
                PlanState::Rejected => api::PLAN_REJECTED,
                other => {
                    return Err(PlanningError::Corrupt(format!(
                        "{subject}: a step of the chain cannot lead to {}",
                        other.name()
                    )));
                }
            };
            act.emit(conn, ty, &plan.id, &plan_changed(&plan))?;
            if next == PlanState::Approved {
                let approval = plan.approval.clone().unwrap_or_default();
                let effective_on = NaiveDate::parse_from_str(&approval.effective_on, "%Y-%m-%d")
                    .map_err(|e| PlanningError::Corrupt(e.to_string()))?;
                if effective_on <= today {
                    take_effect(conn, &act, &mut plan)?;
                } else {
                    db::schedule_effective(conn, scope, &plan.id, plan.version, effective_on)?;
                }
            }
            Ok(plan)
        })
        .await
    }

    pub async fn submit_plan(&self, who: &Identity, tenant: &str, id: String) -> Result<api::Plan> {
        self.step(who, tenant, id, Step::Submit, |_, _, _, _| Ok(Step::Submit))
            .await
    }

    pub async fn review_plan(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        review: Option<api::FeasibilityReview>,
    ) -> Result<api::Plan> {
        self.step(who, tenant, id, Step::Review, move |plan, who, _, today| {
            let mut review = review.unwrap_or_default();
            PlanningError::check("review", plan::review_violations(&review, today))?;
            review.reviewed_by = who.subject.clone();
            plan.review = Some(review);
            Ok(Step::Review)
        })
        .await
    }

    pub async fn decide_plan(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        decision: Option<api::CollectiveDecision>,
    ) -> Result<api::Plan> {
        self.step(
            who,
            tenant,
            id,
            Step::Decide,
            move |plan, who, now, today| {
                let mut decision = decision.unwrap_or_default();
                let reviewed_on = plan
                    .review
                    .as_ref()
                    .and_then(|r| plan::recorded_on(&r.reviewed_on));
                let outcome = plan::decision_outcome(&decision, reviewed_on, today)
                    .map_err(|v| PlanningError::invalid("decision", v))?;
                decision.recorded_by = who.subject.clone();
                plan.decision = Some(decision);
                if outcome == api::DecisionOutcome::NotAgreed {
                    plan.rejection = Some(api::Rejection {
                        at: api::PlanState::Reviewed as i32,
                        reasons: vec![plan::NOT_AGREED.into()],
                        rejected_by: who.subject.clone(),
                        reject_time: Some(timestamp(now)),
                    });
                    return Ok(Step::Reject);
                }
                Ok(Step::Decide)
            },
        )
        .await
    }

    pub async fn approve_plan(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        approval: Option<api::GovernmentApproval>,
    ) -> Result<api::Plan> {
        self.step(
            who,
            tenant,
            id,
            Step::Approve,
            move |plan, who, _, today| {
                let mut approval = approval.unwrap_or_default();
                let decided_on = plan
                    .decision
                    .as_ref()
                    .and_then(|d| plan::recorded_on(&d.decided_on));
                PlanningError::check(
                    "approval",
                    plan::approval_violations(&approval, decided_on, today),
                )?;
                approval.recorded_by = who.subject.clone();
                plan.approval = Some(approval);
                Ok(Step::Approve)
            },
        )
        .await
    }

    pub async fn reject_plan(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        reasons: Vec<String>,
    ) -> Result<api::Plan> {
        self.step(who, tenant, id, Step::Reject, move |plan, who, now, _| {
            let reasons = plan::rejection_reasons(reasons)
                .map_err(|v| PlanningError::invalid("rejection", v))?;
            plan.rejection = Some(api::Rejection {
                at: plan.state,
                reasons,
                rejected_by: who.subject.clone(),
                reject_time: Some(timestamp(now)),
            });
            Ok(Step::Reject)
        })
        .await
    }

    pub async fn amend_plan(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        request: api::AmendPlanRequest,
    ) -> Result<api::Amendment> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        PlanningError::unless_role(who, BUREAU, "amending a plan")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let current = db::latest_plan(conn, scope, &id)?
                .ok_or_else(|| PlanningError::not_found("plan", &id))?;
            let kind = api::AmendmentKind::try_from(request.kind).unwrap_or_default();
            PlanningError::check(
                "amendment",
                plan::amendment_violations(kind, &request.reason),
            )?;
            if let Some(description) = plan::not_amendable(state_of(&current), current.version) {
                return Err(PlanningError::precondition(
                    plan_subject(&current),
                    description,
                ));
            }
            let (mut next, changed) = plan::amended(
                &current,
                &request.name,
                request.sections.clone().unwrap_or_default(),
            )
            .map_err(|v| PlanningError::invalid("amendment", v))?;
            let sections = next.sections.clone().unwrap_or_default();
            let catalog = catalog_for(conn, scope, &sections)?;
            let act = RECORDER.change(scope, Some(&who), now);
            next.update_time = Some(timestamp(now));
            next.create_time = Some(timestamp(now));
            next.created_by = who.subject.clone();
            if kind == api::AmendmentKind::Minor {
                PlanningError::check(
                    "amendment",
                    plan::minor_amendment_violations(&changed, &request.decided_by),
                )?;
                // A minor change keeps the approval and takes effect with its record.
                PlanningError::check(
                    "plan",
                    plan::submission_violations(
                        scope.tenant(),
                        &next.name,
                        next.mode,
                        &sections,
                        &catalog,
                    ),
                )?;
                next.state = PlanState::Approved.to_api() as i32;
                db::insert_plan_version(conn, scope, &next, now)?;
                take_effect(conn, &act, &mut next)?;
            } else {
                if let Some(s) = &sections.scope {
                    PlanningError::check("plan", resource::scope_violations(s, &catalog))?;
                }
                next.state = PlanState::Draft.to_api() as i32;
                next.review = None;
                next.decision = None;
                next.approval = None;
                next.effective_time = None;
                db::insert_plan_version(conn, scope, &next, now)?;
            }
            let amendment = api::Amendment {
                id: Uuid::now_v7().to_string(),
                plan_id: id.clone(),
                kind: kind as i32,
                reason: request.reason,
                from_version: current.version,
                to_version: next.version,
                changed_sections: changed,
                recorded_by: who.subject.clone(),
                record_time: Some(timestamp(now)),
                decided_by: if kind == api::AmendmentKind::Minor {
                    request.decided_by.clone()
                } else {
                    String::new()
                },
            };
            db::insert_amendment(conn, scope, &amendment, now)?;
            act.emit(
                conn,
                api::PLAN_AMENDED,
                &next.id,
                &api::PlanAmended {
                    plan_id: id.clone(),
                    kind: kind as i32,
                    from_version: amendment.from_version,
                    to_version: amendment.to_version,
                    changed_sections: amendment.changed_sections.clone(),
                },
            )?;
            Ok(amendment)
        })
        .await
    }

    /// Plans whose effective date has come take effect: run by the scheduler, once per due
    /// version whatever the replica count (the schedule row is taken in the same transaction).
    pub async fn take_effect_due(&self) -> Result<usize> {
        let today = self.today();
        let due = self.store.run(move |conn| db::due(conn, today)).await?;
        let mut done = 0;
        for (tenant, id, version) in due {
            let Ok(tenant) = tenant.parse::<TenantCode>() else {
                continue;
            };
            let scope = TenantScope::system(tenant);
            let applied = self
                .in_scope(&scope, move |conn, scope, now| {
                    if !db::take_due(conn, &id, version)? {
                        return Ok(false);
                    }
                    let Some(mut plan) = db::plan_versions(conn, scope, &id)?
                        .into_iter()
                        .find(|p| p.version == version)
                    else {
                        return Ok(false);
                    };
                    if state_of(&plan) != PlanState::Approved {
                        return Ok(false);
                    }
                    take_effect(conn, &RECORDER.change(scope, None, now), &mut plan)?;
                    Ok(true)
                })
                .await?;
            done += usize::from(applied);
        }
        Ok(done)
    }

    // --- filings -------------------------------------------------------------------------------

    pub async fn list_filings(
        &self,
        who: &Identity,
        tenant: &str,
        state: Option<api::FilingState>,
        cursor: Cursor,
    ) -> Result<(Vec<api::Filing>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            let items = db::list_filings(conn, scope, state, &cursor)?;
            let next = cursor.next_token(&items, |f| &f.id);
            Ok((items, next))
        })
        .await
    }

    pub async fn get_filing(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::Filing> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            db::find_filing(conn, scope, &id)?
                .ok_or_else(|| PlanningError::not_found("filing", &id))
        })
        .await
    }

    pub async fn acknowledge_filing(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        note: String,
    ) -> Result<api::Filing> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        PlanningError::unless_role(who, BUREAU, "acknowledging a filing")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut filing = db::find_filing(conn, scope, &id)?
                .ok_or_else(|| PlanningError::not_found("filing", &id))?;
            if filing.state == api::FilingState::Acknowledged as i32 {
                return Err(PlanningError::Precondition {
                    subject: format!("filings/{id}"),
                    description: format!(
                        "filing {id} was acknowledged already by {}",
                        filing.acknowledged_by
                    ),
                });
            }
            filing.state = api::FilingState::Acknowledged as i32;
            filing.acknowledged_by = who.subject.clone();
            filing.acknowledge_time = Some(timestamp(now));
            filing.note = note;
            db::save_filing(conn, scope, &filing, now)?;
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::FILING_ACKNOWLEDGED,
                &filing.id,
                &filing_changed(&filing),
            )?;
            Ok(filing)
        })
        .await
    }

    /// Records the filing of a city plan version that took effect, in the province's tenant.
    /// Called by the filings consumer inside its inbox transaction.
    pub fn receive_filing(
        conn: &mut AnyConnection,
        event: &Event,
        effective: &api::PlanTookEffect,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if event.tenant.is_province() {
            return Ok(());
        }
        let filing = api::Filing {
            id: Uuid::now_v7().to_string(),
            tenant: TenantCode::PROVINCE.into(),
            city: event.tenant.to_string(),
            plan_id: effective.plan_id.clone(),
            plan_version: effective.version,
            plan_name: effective.name.clone(),
            mode: effective.mode,
            approval_document: effective.approval_document.clone(),
            effective_on: effective.effective_on.clone(),
            state: api::FilingState::Received as i32,
            receive_time: Some(timestamp(now)),
            ..Default::default()
        };
        let scope = TenantScope::system(TenantCode::province());
        scope.enter(conn)?;
        if db::insert_filing(conn, &scope, &filing, now)? {
            RECORDER.change(&scope, None, now).emit(
                conn,
                api::FILING_RECEIVED,
                &filing.id,
                &filing_changed(&filing),
            )?;
        }
        Ok(())
    }

    // --- public --------------------------------------------------------------------------------

    pub async fn list_public_plans(
        &self,
        who: &Identity,
        tenant: &str,
        cursor: Cursor,
    ) -> Result<(Vec<api::PublicPlan>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            let plans = db::list_plans(conn, scope, Some(&[PlanState::Effective]), &cursor)?;
            let next = cursor.next_token_by(&plans, db::plan_page_key);
            let mut out = Vec::with_capacity(plans.len());
            for plan in plans {
                let sections = plan.sections.clone().unwrap_or_default();
                let mut scope_items = Vec::new();
                for item in sections.scope.iter().flat_map(|s| &s.items) {
                    if let Some(r) = db::find_resource(conn, scope, &item.resource_id)? {
                        scope_items.push(api::PublicScopeItem {
                            registration_number: r.registration_number,
                            name: r.name,
                            update_frequency: item.update_frequency,
                        });
                    }
                }
                let implementation = sections.implementation.unwrap_or_default();
                let approval = plan.approval.unwrap_or_default();
                out.push(api::PublicPlan {
                    id: plan.id,
                    version: plan.version,
                    tenant: plan.tenant,
                    name: plan.name,
                    mode: plan.mode,
                    operator_conditions: sections.operator_conditions,
                    scope: scope_items,
                    period_start: implementation.period_start,
                    period_end: implementation.period_end,
                    scenarios: sections.scenarios,
                    products: sections.products,
                    approval_document: approval.document_number,
                    effective_on: approval.effective_on,
                });
            }
            Ok((out, next))
        })
        .await
    }
}

/// An approved version takes effect: the version it replaces (if any) is superseded, and the
/// event that files it with the province is written.
fn take_effect(conn: &mut AnyConnection, act: &Change<'_>, plan: &mut api::Plan) -> Result<()> {
    let subject = plan_subject(plan);
    let next = state_of(plan).after(Step::TakeEffect, &subject)?;
    plan.state = next.to_api() as i32;
    plan.effective_time = Some(timestamp(act.now));
    plan.update_time = Some(timestamp(act.now));
    db::save_plan_version(conn, act.scope, plan, act.now)?;
    for mut older in db::plan_versions(conn, act.scope, &plan.id)? {
        if older.version < plan.version && state_of(&older) == PlanState::Effective {
            let older_subject = plan_subject(&older);
            older.state = state_of(&older)
                .after(Step::Supersede, &older_subject)?
                .to_api() as i32;
            older.update_time = Some(timestamp(act.now));
            db::save_plan_version(conn, act.scope, &older, act.now)?;
            act.emit(conn, api::PLAN_SUPERSEDED, &older.id, &plan_changed(&older))?;
        }
    }
    let approval = plan.approval.clone().unwrap_or_default();
    // The scope travels with the event: agreements check that theirs lies within it.
    let resource_ids = plan
        .sections
        .iter()
        .flat_map(|s| s.scope.iter())
        .flat_map(|s| s.items.iter())
        .map(|i| i.resource_id.clone())
        .collect();
    let effective = api::PlanTookEffect {
        plan_id: plan.id.clone(),
        version: plan.version,
        name: plan.name.clone(),
        mode: plan.mode,
        approval_document: approval.document_number,
        effective_on: approval.effective_on,
        resource_ids,
    };
    act.emit(conn, api::PLAN_BECAME_EFFECTIVE, &plan.id, &effective)?;
    Ok(())
}
