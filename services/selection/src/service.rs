//! Selection's operations: each checks the caller's tenant, loads what it needs, applies the
//! rules, and writes the change with its domain event and audit record in one transaction.

use std::sync::Arc;

use chrono::NaiveDate;
use pdp_kit::calendar::{WorkingCalendar, civil_date};
use pdp_kit::change::{Recorder, instant, timestamp};
use pdp_kit::clock::Clock;
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, Store, TenantScope};
use pdp_proto::pdp::selection::v1 as api;
use uuid::Uuid;

use crate::SelectionError;
use crate::eligibility::{self, CreditChecker, Judgment};
use crate::selection::{self as rules, SelectionState, Step};
use crate::store as db;
use crate::{SERVICE, TOPIC};

type Result<T> = std::result::Result<T, SelectionError>;

/// Roles that see calls before they are published and every application.
const STAFF: &[Role] = &Role::STAFF;

#[derive(Debug, Clone)]
pub struct Selections {
    store: Store,
    clock: Arc<dyn Clock>,
    calendar: Arc<WorkingCalendar>,
    credit: Arc<dyn CreditChecker>,
}

const BUREAU: &[Role] = &Role::BUREAU;

/// How the bureau resolves an objection, and the open ones that say the same.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// UPHELD or DISMISSED.
    pub outcome: api::ObjectionState,
    pub reasons: Vec<String>,
    pub duplicates: Vec<String>,
}
/// Who may be named to evaluate: the bureau's staff and outside experts.
const EVALUATES: &[Role] = &[Role::ProvincialBureau, Role::CityBureau, Role::Evaluator];

/// Records this service's changes: their events on its topic and their audit records.
const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

fn is_staff(who: &Identity) -> bool {
    who.has_any(STAFF)
}

fn subject(s: &api::Selection) -> String {
    format!("selections/{}", s.id)
}

/// What every event of a selection says of it: where it stands, who is proposed and selected,
/// and when its notice ends.
fn selection_changed(s: &api::Selection) -> api::SelectionChanged {
    api::SelectionChanged {
        selection_id: s.id.clone(),
        plan_id: s.plan_id.clone(),
        plan_version: s.plan_version,
        state: s.state,
        selected_organizations: s
            .conclusion
            .as_ref()
            .map(|c| c.selected_organizations.clone())
            .unwrap_or_default(),
        proposed_organizations: s
            .shortlist
            .iter()
            .filter(|e| e.proposed)
            .map(|e| e.organization.clone())
            .collect(),
        notice_ends_at: s
            .notice
            .as_ref()
            .and_then(|n| instant(n.ends_at.as_ref()))
            .map(|at| at.to_rfc3339())
            .unwrap_or_default(),
    }
}

fn objection_changed(o: &api::Objection, s: &api::Selection) -> api::ObjectionChanged {
    api::ObjectionChanged {
        objection_id: o.id.clone(),
        selection_id: s.id.clone(),
        state: o.state,
    }
}

/// Moves `selection` by `step`, or says which step is missing.
fn advance(selection: &mut api::Selection, step: Step) -> Result<()> {
    let next = SelectionState::of(selection).after(step, &subject(selection))?;
    selection.state = next.to_api() as i32;
    Ok(())
}

impl Operations for Selections {
    type Error = SelectionError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

impl Selections {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        calendar: Arc<WorkingCalendar>,
        credit: Arc<dyn CreditChecker>,
    ) -> Self {
        Self {
            store,
            clock,
            calendar,
            credit,
        }
    }

    fn load(conn: &mut AnyConnection, scope: &TenantScope, id: &str) -> Result<api::Selection> {
        db::find_selection(conn, scope, id)?
            .ok_or_else(|| SelectionError::not_found("selection", id))
    }

    // --- the call ------------------------------------------------------------------------------

    pub async fn create(
        &self,
        who: &Identity,
        tenant: &str,
        input: api::Selection,
    ) -> Result<api::Selection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, BUREAU, "creating a selection")?;
        SelectionError::check("selection", rules::call_violations(&input))?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let Some(version) = db::effective_plan(conn, scope, &input.plan_id)? else {
                return Err(SelectionError::precondition(
                    format!("plans/{}", input.plan_id),
                    format!(
                        "plan {} is not in force in tenant {}: no selection without an effective plan (第九条, R-PLAN-6)",
                        input.plan_id,
                        scope.tenant()
                    ),
                ));
            };
            let conditions = eligibility::STATUTORY_CONDITIONS
                .iter()
                .map(|c| c.to_string())
                .chain(input.additional_conditions.iter().cloned())
                .collect();
            let selection = api::Selection {
                conditions,
                id: Uuid::now_v7().to_string(),
                tenant: scope.tenant().to_string(),
                plan_version: version as u32,
                operators_wanted: input.operators_wanted.max(1),
                state: SelectionState::Draft.to_api() as i32,
                shortlist: Vec::new(),
                notice: None,
                conclusion: None,
                created_by: who.subject.clone(),
                create_time: Some(timestamp(now)),
                update_time: Some(timestamp(now)),
                ..input
            };
            db::insert_selection(conn, scope, &selection, now)?;
            let changed = selection_changed(&selection);
            let act = RECORDER.change(scope, Some(&who), now);
            act.emit(conn, api::SELECTION_CREATED, &selection.id, &changed)?;
            Ok(selection)
        })
        .await
    }

    pub async fn get(&self, who: &Identity, tenant: &str, id: String) -> Result<api::Selection> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let staff = is_staff(who);
        self.in_scope(&scope, move |conn, scope, _| {
            let s = Self::load(conn, scope, &id)?;
            if staff {
                return Ok(s);
            }
            if SelectionState::of(&s) == SelectionState::Draft {
                return Err(SelectionError::not_found("selection", &id));
            }
            Ok(rules::as_seen_from_outside(s))
        })
        .await
    }

    pub async fn list(
        &self,
        who: &Identity,
        tenant: &str,
        state: Option<SelectionState>,
        cursor: Cursor,
    ) -> Result<(Vec<api::Selection>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let staff = is_staff(who);
        let states: Option<Vec<SelectionState>> = match state {
            Some(SelectionState::Draft) if !staff => Some(Vec::new()),
            Some(s) => Some(vec![s]),
            None if staff => None,
            None => Some(SelectionState::PUBLIC.to_vec()),
        };
        self.in_scope(&scope, move |conn, scope, _| {
            let items = match &states {
                Some(s) if s.is_empty() => Vec::new(),
                s => db::list_selections(conn, scope, s.as_deref(), &cursor)?,
            };
            let next = cursor.next_token(&items, |s| &s.id);
            let items = if staff {
                items
            } else {
                items.into_iter().map(rules::as_seen_from_outside).collect()
            };
            Ok((items, next))
        })
        .await
    }

    /// A step on the selection that needs nothing but the state machine (publishing).
    /// Names who evaluates the applications; replaces the list until the first evaluation.
    pub async fn appoint_evaluators(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        evaluators: Vec<api::Evaluator>,
    ) -> Result<api::Selection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, BUREAU, ":appointEvaluators")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut s = Self::load(conn, scope, &id)?;
            let state = SelectionState::of(&s);
            if !matches!(state, SelectionState::Draft | SelectionState::Published) {
                return Err(SelectionError::precondition(
                    subject(&s),
                    format!(
                        "evaluators are named before shortlisting; the selection is {}",
                        state.name()
                    ),
                ));
            }
            let applications = db::applications_of(conn, scope, &id)?;
            if applications.iter().any(|a| !a.evaluations.is_empty()) {
                return Err(SelectionError::precondition(
                    subject(&s),
                    "evaluation has begun: the evaluators stay as they were named",
                ));
            }
            let applicants: Vec<&str> = applications
                .iter()
                .map(|a| a.organization.as_str())
                .collect();
            SelectionError::check(
                "evaluators",
                rules::evaluator_violations("evaluators", &evaluators, &applicants),
            )?;
            s.evaluators = evaluators;
            s.update_time = Some(timestamp(now));
            db::save_selection(conn, scope, &s, now)?;
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::SELECTION_EVALUATORS_APPOINTED,
                &s.id,
                &selection_changed(&s),
            )?;
            Ok(s)
        })
        .await
    }

    pub async fn publish(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::Selection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, BUREAU, ":publish")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut s = Self::load(conn, scope, &id)?;
            advance(&mut s, Step::Publish)?;
            s.update_time = Some(timestamp(now));
            db::save_selection(conn, scope, &s, now)?;
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::SELECTION_PUBLISHED,
                &s.id,
                &selection_changed(&s),
            )?;
            Ok(s)
        })
        .await
    }

    // --- applications --------------------------------------------------------------------------

    pub async fn apply(
        &self,
        who: &Identity,
        tenant: &str,
        selection_id: String,
        input: api::Application,
    ) -> Result<api::Application> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, &[Role::Operator], "applying")?;
        if who.has_any(BUREAU) {
            return Err(SelectionError::forbidden(
                "BUREAU_DOES_NOT_APPLY",
                "a data bureau runs selections and never applies to one (第十三条)",
            ));
        }
        let who = who.clone();
        let credit = self.credit.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let s = Self::load(conn, scope, &selection_id)?;
            if SelectionState::of(&s) != SelectionState::Published {
                return Err(SelectionError::precondition(
                    subject(&s),
                    format!(
                        "the selection is {}, not taking applications",
                        SelectionState::of(&s).name()
                    ),
                ));
            }
            let (opens, closes) = (instant(s.opens_at.as_ref()), instant(s.closes_at.as_ref()));
            if opens.is_some_and(|o| now < o) || closes.is_some_and(|c| now >= c) {
                return Err(SelectionError::precondition(
                    subject(&s),
                    format!(
                        "applications are taken from {} until {}; now is {now}",
                        opens.map(|o| o.to_rfc3339()).unwrap_or_default(),
                        closes.map(|c| c.to_rfc3339()).unwrap_or_default()
                    ),
                ));
            }
            if s.method == api::SelectionMethod::InvitedTender as i32
                && !s.invited_organizations.contains(&who.organization)
            {
                return Err(SelectionError::forbidden(
                    "NOT_INVITED",
                    format!(
                        "{} is not invited to selection {} (invited tender)",
                        who.organization, s.id
                    ),
                ));
            }
            let evidence = input.evidence.unwrap_or_default();
            SelectionError::check(
                "application",
                eligibility::document_violations(&evidence, &s.conditions),
            )?;
            let recorded = db::incidents_of(conn, scope, &who.organization)?;
            let results = eligibility::initial(
                &who.organization,
                &evidence,
                &s.additional_conditions,
                now,
                civil_date(now),
                credit.as_ref(),
                &recorded,
            );
            let application = api::Application {
                id: Uuid::now_v7().to_string(),
                tenant: scope.tenant().to_string(),
                selection_id: s.id.clone(),
                organization: who.organization.clone(),
                evidence: Some(evidence),
                eligible: eligibility::all_passed(&results),
                eligibility: results,
                evaluations: Vec::new(),
                submitted_by: who.subject.clone(),
                submit_time: Some(timestamp(now)),
            };
            if !db::insert_application(conn, scope, &application, now)? {
                return Err(SelectionError::precondition(
                    subject(&s),
                    format!("{} has applied to this selection already", who.organization),
                ));
            }
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::APPLICATION_SUBMITTED,
                &application.id,
                &api::ApplicationSubmitted {
                    application_id: application.id.clone(),
                    selection_id: s.id.clone(),
                    organization: application.organization.clone(),
                    eligible: application.eligible,
                },
            )?;
            Ok(application)
        })
        .await
    }

    /// Staff see every application; an organization sees its own only.
    pub async fn applications(
        &self,
        who: &Identity,
        tenant: &str,
        selection_id: String,
    ) -> Result<Vec<api::Application>> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let staff = is_staff(who);
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            let s = Self::load(conn, scope, &selection_id)?;
            let all = db::applications_of(conn, scope, &selection_id)?;
            let applicants: Vec<&str> = all.iter().map(|a| a.organization.as_str()).collect();
            // The evaluators the bureau named read what they judge; nobody else outside the
            // staff reads anyone's application but their own organization's.
            let judges = who.has_any(EVALUATES)
                && rules::evaluator_refusal(&s, &who.subject, &who.organization, &applicants)
                    .is_none();
            let sees_all = staff || judges;
            Ok(all
                .into_iter()
                .filter(|a| sees_all || a.organization == who.organization)
                .collect())
        })
        .await
    }

    pub async fn application(
        &self,
        who: &Identity,
        tenant: &str,
        selection_id: String,
        id: String,
    ) -> Result<api::Application> {
        self.applications(who, tenant, selection_id)
            .await?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| SelectionError::not_found("application", id))
    }

    pub async fn evaluate(
        &self,
        who: &Identity,
        tenant: &str,
        selection_id: String,
        id: String,
        input: api::Evaluation,
    ) -> Result<api::Application> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, EVALUATES, "evaluating")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let s = Self::load(conn, scope, &selection_id)?;
            let state = SelectionState::of(&s);
            if !matches!(state, SelectionState::Published | SelectionState::Shortlisted) {
                return Err(SelectionError::precondition(subject(&s), format!("applications are evaluated while the selection is PUBLISHED or SHORTLISTED; it is {}", state.name())));
            }
            if instant(s.closes_at.as_ref()).is_some_and(|c| now < c) {
                return Err(SelectionError::precondition(subject(&s), "evaluation starts when the application window has closed"));
            }
            let applications = db::applications_of(conn, scope, &selection_id)?;
            let applicants: Vec<&str> =
                applications.iter().map(|a| a.organization.as_str()).collect();
            if let Some((reason, message)) =
                rules::evaluator_refusal(&s, &who.subject, &who.organization, &applicants)
            {
                return Err(SelectionError::forbidden(reason, message));
            }
            let mut a = applications
                .iter()
                .find(|a| a.id == id)
                .cloned()
                .ok_or_else(|| SelectionError::not_found("application", &id))?;
            if eligibility::any_failed(&a.eligibility) {
                let why = "an application that fails a condition of 第十二条 is not evaluated";
                return Err(SelectionError::precondition(format!("applications/{id}"), why));
            }
            SelectionError::check("evaluation", rules::evaluation_violations(&s.criteria, &input.scores))?;
            let evaluation = api::Evaluation {
                total: rules::weighted_total(&s.criteria, &input.scores),
                evaluator: who.subject.clone(),
                evaluate_time: Some(timestamp(now)),
                ..input
            };
            // One evaluation per evaluator: a second one replaces the first.
            a.evaluations.retain(|e| e.evaluator != evaluation.evaluator);
            a.evaluations.push(evaluation.clone());
            db::save_application(conn, scope, &a, now)?;
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::APPLICATION_EVALUATED,
                &a.id,
                &api::ApplicationEvaluated {
                    application_id: a.id.clone(),
                    selection_id: s.id.clone(),
                    evaluator: evaluation.evaluator.clone(),
                    total: evaluation.total,
                },
            )?;
            Ok(a)
        })
        .await
    }

    /// The bureau's staff judge one condition of an application while the selection takes or
    /// has closed applications, before the shortlist.
    pub async fn judge(
        &self,
        who: &Identity,
        tenant: &str,
        selection_id: String,
        id: String,
        judgment: Judgment,
    ) -> Result<api::Application> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, BUREAU, "judging a condition")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let s = Self::load(conn, scope, &selection_id)?;
            let state = SelectionState::of(&s);
            if state != SelectionState::Published {
                return Err(SelectionError::precondition(
                    subject(&s),
                    format!(
                        "conditions are judged while the selection is PUBLISHED, before the \
                         shortlist; it is {}",
                        state.name()
                    ),
                ));
            }
            let mut a = db::applications_of(conn, scope, &selection_id)?
                .into_iter()
                .find(|a| a.id == id)
                .ok_or_else(|| SelectionError::not_found("application", &id))?;
            let condition = judgment.condition.clone();
            eligibility::judge(
                &mut a.eligibility,
                judgment,
                &who.subject,
                now,
                civil_date(now),
            )
            .map_err(|v| SelectionError::invalid("judgment", v))?;
            a.eligible = eligibility::all_passed(&a.eligibility);
            db::save_application(conn, scope, &a, now)?;
            let state = a
                .eligibility
                .iter()
                .find(|c| c.condition == condition)
                .map(|c| c.state)
                .unwrap_or_default();
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::APPLICATION_CONDITION_JUDGED,
                &a.id,
                &api::ConditionJudged {
                    application_id: a.id.clone(),
                    selection_id: s.id.clone(),
                    condition,
                    state,
                    eligible: a.eligible,
                },
            )?;
            Ok(a)
        })
        .await
    }

    // --- shortlist, notice, objections, conclusion ----------------------------------------------

    pub async fn shortlist(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::Selection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, BUREAU, ":shortlist")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut s = Self::load(conn, scope, &id)?;
            SelectionState::of(&s).after(Step::Shortlist, &subject(&s))?;
            if instant(s.closes_at.as_ref()).is_some_and(|c| now < c) {
                return Err(SelectionError::precondition(
                    subject(&s),
                    "the application window has not closed yet",
                ));
            }
            let applications = db::applications_of(conn, scope, &id)?;
            let pending: Vec<String> = applications
                .iter()
                .filter(|a| !eligibility::any_failed(&a.eligibility))
                .filter_map(|a| {
                    let conditions = eligibility::pending_conditions(&a.eligibility);
                    (!conditions.is_empty()).then(|| {
                        format!("{} ({}): {}", a.id, a.organization, conditions.join(", "))
                    })
                })
                .collect();
            if !pending.is_empty() {
                return Err(SelectionError::precondition(
                    subject(&s),
                    format!(
                        "conditions of 第十二条 await the bureau's judgment (JudgeCondition) in \
                         applications {}",
                        pending.join("; ")
                    ),
                ));
            }
            let ranked = rules::rank(&applications, s.operators_wanted);
            if ranked.is_empty() {
                return Err(SelectionError::precondition(
                    subject(&s),
                    "no eligible application has been evaluated",
                ));
            }
            advance(&mut s, Step::Shortlist)?;
            s.shortlist = ranked;
            s.update_time = Some(timestamp(now));
            db::save_selection(conn, scope, &s, now)?;
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::SELECTION_SHORTLISTED,
                &s.id,
                &selection_changed(&s),
            )?;
            Ok(s)
        })
        .await
    }

    pub async fn publish_notice(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        notice: api::Notice,
    ) -> Result<api::Selection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, BUREAU, "a notice")?;
        let who = who.clone();
        let calendar = self.calendar.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut s = Self::load(conn, scope, &id)?;
            SelectionState::of(&s).after(Step::PublishNotice, &subject(&s))?;
            let mut v = Vec::new();
            let parse = |v: &mut Vec<FieldViolation>, field: &str, value: &str| {
                match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
                    Ok(d) => Some(d),
                    Err(_) => {
                        v.push(FieldViolation::new(
                            field,
                            format!("`{value}` is not a date of the form YYYY-MM-DD"),
                        ));
                        None
                    }
                }
            };
            let starts = parse(&mut v, "notice.starts_on", &notice.starts_on);
            let ends = parse(&mut v, "notice.ends_on", &notice.ends_on);
            SelectionError::check("notice", v)?;
            let (Some(starts), Some(ends)) = (starts, ends) else {
                unreachable!("violations returned above")
            };
            let ends_at = rules::notice_end(&calendar, starts, ends, civil_date(now))
                .map_err(|v| SelectionError::invalid("notice", vec![v]))?;
            advance(&mut s, Step::PublishNotice)?;
            s.notice = Some(api::Notice {
                starts_on: notice.starts_on,
                ends_on: notice.ends_on,
                ends_at: Some(timestamp(ends_at)),
                working_days: rules::NOTICE_WORKING_DAYS,
                publish_time: Some(timestamp(now)),
            });
            s.update_time = Some(timestamp(now));
            db::save_selection(conn, scope, &s, now)?;
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::SELECTION_NOTICE_PUBLISHED,
                &s.id,
                &selection_changed(&s),
            )?;
            Ok(s)
        })
        .await
    }

    /// Anyone may object while the notice runs (公示期内).
    pub async fn object(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        input: api::Objection,
    ) -> Result<api::Objection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let s = Self::load(conn, scope, &id)?;
            let ends_at = s.notice.as_ref().and_then(|n| instant(n.ends_at.as_ref()));
            match (SelectionState::of(&s), ends_at) {
                (SelectionState::InNotice, Some(end)) if now < end => {}
                (SelectionState::InNotice, Some(end)) => {
                    return Err(SelectionError::precondition(
                        subject(&s),
                        format!(
                            "the public notice ended at {}; objections are no longer taken",
                            end.to_rfc3339()
                        ),
                    ));
                }
                _ => {
                    return Err(SelectionError::precondition(
                        subject(&s),
                        "the selection is not in public notice",
                    ));
                }
            }
            let mut v = Vec::new();
            if input.reason.trim().is_empty() {
                v.push(FieldViolation::new(
                    "objection.reason",
                    "required: what is objected to and why",
                ));
            }
            if input.objector.trim().is_empty() {
                v.push(FieldViolation::new(
                    "objection.objector",
                    "required: who objects (a name or organization)",
                ));
            }
            SelectionError::check("objection", v)?;
            let (filed, last_hour) = db::objections_filed(
                conn,
                scope,
                &s.id,
                &who.subject,
                now - chrono::Duration::hours(1),
            )?;
            if let Some(refusal) = rules::objection_refusal(filed, last_hour) {
                return Err(SelectionError::precondition(subject(&s), refusal));
            }
            let objection = api::Objection {
                id: Uuid::now_v7().to_string(),
                selection_id: s.id.clone(),
                state: api::ObjectionState::Open as i32,
                resolution_reasons: Vec::new(),
                resolved_by: String::new(),
                file_time: Some(timestamp(now)),
                resolve_time: None,
                ..input
            };
            db::insert_objection(conn, scope, &objection, &who.subject, now)?;
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::OBJECTION_FILED,
                &objection.id,
                &objection_changed(&objection, &s),
            )?;
            Ok(objection)
        })
        .await
    }

    pub async fn objections(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        cursor: Cursor,
    ) -> Result<(Vec<api::Objection>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            Self::load(conn, scope, &id)?;
            let page = db::objections_page(conn, scope, &id, &cursor)?;
            let next = cursor.next_token(&page, |o| &o.id);
            Ok((page, next))
        })
        .await
    }

    pub async fn resolve(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        objection_id: String,
        resolution: Resolution,
    ) -> Result<api::Objection> {
        let Resolution {
            outcome,
            reasons,
            duplicates,
        } = resolution;
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, BUREAU, ":resolve")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut s = Self::load(conn, scope, &id)?;
            let all = db::objections_of(conn, scope, &id)?;
            // The objection and the duplicates resolved with it, each open and of this selection.
            let mut resolved = Vec::new();
            for (i, wanted) in std::iter::once(&objection_id)
                .chain(&duplicates)
                .enumerate()
            {
                let found = all
                    .iter()
                    .find(|o| &o.id == wanted)
                    .cloned()
                    .ok_or_else(|| SelectionError::not_found("objection", wanted))?;
                if found.state != api::ObjectionState::Open as i32 {
                    return Err(SelectionError::precondition(
                        format!("objections/{wanted}"),
                        "the objection was resolved already",
                    ));
                }
                if resolved.iter().any(|o: &api::Objection| o.id == found.id) {
                    return Err(SelectionError::invalid(
                        "resolution",
                        vec![FieldViolation::new(
                            format!("duplicates[{}]", i - 1),
                            format!("`{wanted}` is named twice"),
                        )],
                    ));
                }
                resolved.push(found);
            }
            let reasons: Vec<String> = reasons
                .into_iter()
                .filter(|r| !r.trim().is_empty())
                .collect();
            let mut v = Vec::new();
            if !matches!(
                outcome,
                api::ObjectionState::Upheld | api::ObjectionState::Dismissed
            ) {
                v.push(FieldViolation::new(
                    "outcome",
                    "OBJECTION_STATE_UPHELD or OBJECTION_STATE_DISMISSED",
                ));
            }
            if reasons.is_empty() {
                v.push(FieldViolation::new("reasons", "at least one reason"));
            }
            SelectionError::check("resolution", v)?;
            let act = RECORDER.change(scope, Some(&who), now);
            if outcome == api::ObjectionState::Upheld {
                // The result is reconsidered: back to shortlisting, with a new notice to follow.
                advance(&mut s, Step::UpholdObjection)?;
                s.notice = None;
                s.shortlist.clear();
                s.update_time = Some(timestamp(now));
                db::save_selection(conn, scope, &s, now)?;
                act.emit(
                    conn,
                    api::SELECTION_RETURNED_TO_SHORTLISTING,
                    &s.id,
                    &selection_changed(&s),
                )?;
            }
            for objection in &mut resolved {
                objection.state = outcome as i32;
                objection.resolution_reasons = reasons.clone();
                objection.resolved_by = who.subject.clone();
                objection.resolve_time = Some(timestamp(now));
                db::save_objection(conn, scope, objection, now)?;
                act.emit(
                    conn,
                    api::OBJECTION_RESOLVED,
                    &objection.id,
                    &objection_changed(objection, &s),
                )?;
            }
            Ok(resolved.swap_remove(0))
        })
        .await
    }

    pub async fn conclude(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        decision: Option<api::DecisionRecord>,
        departments: Vec<String>,
    ) -> Result<api::Selection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        SelectionError::unless_role(who, BUREAU, ":conclude")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut s = Self::load(conn, scope, &id)?;
            SelectionState::of(&s).after(Step::Conclude, &subject(&s))?;
            let ends_at = s.notice.as_ref().and_then(|n| instant(n.ends_at.as_ref()));
            if let Some(end) = ends_at.filter(|end| now < *end) {
                return Err(SelectionError::precondition(subject(&s), format!("the public notice runs until {}; conclude after it has ended", end.to_rfc3339())));
            }
            let open: Vec<String> = db::objections_of(conn, scope, &id)?
                .into_iter()
                .filter(|o| o.state == api::ObjectionState::Open as i32)
                .map(|o| o.id)
                .collect();
            if !open.is_empty() {
                return Err(SelectionError::precondition(subject(&s), format!("objections {open:?} are not resolved yet (:resolve)")));
            }
            let mut decision = decision.unwrap_or_default();
            let rule = "the collective decision (三重一大) with its date, body and outcome";
            let mut v = Vec::new();
            if NaiveDate::parse_from_str(&decision.decided_on, "%Y-%m-%d").is_err() {
                v.push(FieldViolation::new("decision.decided_on", format!("a YYYY-MM-DD date: {rule}")));
            }
            if decision.body.trim().is_empty() {
                v.push(FieldViolation::new("decision.body", format!("required: {rule}")));
            }
            if decision.outcome != "AGREED" {
                v.push(FieldViolation::new("decision.outcome", "AGREED: a selection concludes only on an agreeing decision; otherwise shortlist again"));
            }
            let departments: Vec<String> = departments
                .iter()
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect();
            if departments.is_empty() {
                v.push(FieldViolation::new(
                    "departments",
                    "at least one: the departments the bureau organized the selection with \
                     (会同有关部门, 第十三条(二))",
                ));
            }
            SelectionError::check("decision", v)?;
            decision.recorded_by = who.subject.clone();
            advance(&mut s, Step::Conclude)?;
            let selected: Vec<String> = s.shortlist.iter().filter(|e| e.proposed).map(|e| e.organization.clone()).collect();
            s.conclusion = Some(api::Conclusion {
                selected_organizations: selected.clone(),
                decision: Some(decision),
                conclude_time: Some(timestamp(now)),
                departments,
            });
            s.update_time = Some(timestamp(now));
            db::save_selection(conn, scope, &s, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            act.emit(conn, api::SELECTION_CONCLUDED, &s.id, &selection_changed(&s))?;
            Ok(s)
        })
        .await
    }

    // --- public --------------------------------------------------------------------------------

    fn public_view(s: api::Selection) -> api::PublicSelection {
        let state = SelectionState::of(&s);
        let proposed = if matches!(state, SelectionState::InNotice | SelectionState::Concluded) {
            s.shortlist
                .iter()
                .filter(|e| e.proposed)
                .map(|e| e.organization.clone())
                .collect()
        } else {
            Vec::new()
        };
        api::PublicSelection {
            id: s.id,
            tenant: s.tenant,
            name: s.name,
            method: s.method,
            additional_conditions: s.additional_conditions,
            criteria: s.criteria,
            opens_at: s.opens_at,
            closes_at: s.closes_at,
            procedure: s.procedure,
            state: s.state,
            proposed_organizations: proposed,
            notice: s.notice,
            selected_organizations: s
                .conclusion
                .map(|c| c.selected_organizations)
                .unwrap_or_default(),
            conditions: s.conditions,
        }
    }

    pub async fn public_list(
        &self,
        who: &Identity,
        tenant: &str,
        cursor: Cursor,
    ) -> Result<(Vec<api::PublicSelection>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            let items = db::list_selections(conn, scope, Some(&SelectionState::PUBLIC), &cursor)?;
            let next = cursor.next_token(&items, |s| &s.id);
            Ok((items.into_iter().map(Self::public_view).collect(), next))
        })
        .await
    }

    pub async fn public_get(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::PublicSelection> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            let s = Self::load(conn, scope, &id)?;
            if SelectionState::of(&s) == SelectionState::Draft {
                return Err(SelectionError::not_found("selection", &id));
            }
            Ok(Self::public_view(s))
        })
        .await
    }
}
