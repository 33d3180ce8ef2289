//! Agreements' operations: each checks the caller's tenant, loads what it needs, applies the
//! rules, and writes the change with its domain event and audit record in one transaction.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Days, NaiveDate};
use pdp_kit::calendar::civil_date;
use pdp_kit::change::{Change, Recorder, timestamp};
use pdp_kit::clock::Clock;
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role, TenantCode};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, Store, TenantScope};
use pdp_proto::EventType;
use pdp_proto::pdp::agreements::v1 as api;
use uuid::Uuid;

use crate::AgreementError;
use crate::agreement::{self as rules, AgreementState, Step};
use crate::store as db;
use crate::{SERVICE, TOPIC};

type Result<T> = std::result::Result<T, AgreementError>;

const STAFF: &[Role] = &Role::STAFF;
const BUREAU: &[Role] = &Role::BUREAU;

#[derive(Debug, Clone)]
pub struct Agreements {
    store: Store,
    clock: Arc<dyn Clock>,
}

/// Records this service's changes: their events on its topic and their audit records.
const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

/// Records `ty` of agreement `a`: its event and its audit record.
fn emit(
    conn: &mut AnyConnection,
    change: &Change<'_>,
    ty: EventType<api::AgreementChanged>,
    a: &api::Agreement,
) -> Result<()> {
    change.emit(conn, ty, &a.id, &agreement_changed(a))?;
    Ok(())
}

fn term_of(a: &api::Agreement) -> (NaiveDate, NaiveDate) {
    let term = a
        .terms
        .as_ref()
        .and_then(|t| t.term.clone())
        .unwrap_or_default();
    let parse = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or(NaiveDate::MIN);
    (parse(&term.first_day), parse(&term.last_day))
}

fn resource_ids(a: &api::Agreement) -> Vec<String> {
    a.terms
        .as_ref()
        .and_then(|t| t.scope.as_ref())
        .map(|s| s.resource_ids.clone())
        .unwrap_or_default()
}

fn agreement_changed(a: &api::Agreement) -> api::AgreementChanged {
    let (first, last) = term_of(a);
    api::AgreementChanged {
        agreement_id: a.id.clone(),
        operator: a.operator.clone(),
        selection_id: a.selection_id.clone(),
        plan_id: a.plan_id.clone(),
        state: a.state,
        resource_ids: resource_ids(a),
        first_day: first.to_string(),
        last_day: last.to_string(),
        reason: match &a.termination {
            Some(t) => t.reason.clone(),
            None => a.suspension_reason.clone(),
        },
        ground: a.termination.as_ref().map_or(0, |t| t.ground),
        decision: a.termination.as_ref().and_then(|t| t.decision.clone()),
    }
}

/// A required reason, or the violation naming it.
fn reason_of(reason: &str, step: &str) -> Result<String> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AgreementError::invalid(
            "agreement",
            vec![FieldViolation::new(
                "reason",
                format!("required: {step} is recorded with its reason"),
            )],
        ));
    }
    Ok(reason.to_string())
}

/// What a termination rests on, every missing part named.
fn termination_violations(
    ground: api::TerminationGround,
    reason: &str,
    decision: Option<&api::Decision>,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if ground == api::TerminationGround::Unspecified {
        v.push(FieldViolation::new(
            "ground",
            "required: TERMINATION_GROUND_BREACH_NOT_RECTIFIED, _OPERATOR_REQUEST or \
             _OPERATOR_DISSOLVED",
        ));
    }
    if reason.trim().is_empty() {
        v.push(FieldViolation::new(
            "reason",
            "required: a termination is recorded with its reason",
        ));
    }
    let d = decision.cloned().unwrap_or_default();
    if d.title.trim().is_empty() {
        v.push(FieldViolation::new(
            "decision.title",
            "required: the bureau's decision the termination rests on",
        ));
    }
    if d.reference.trim().is_empty() {
        v.push(FieldViolation::new(
            "decision.reference",
            "required: the decision's document number (文号)",
        ));
    }
    let hex = d.digest.strip_prefix("sha256:").unwrap_or("");
    let digest_ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !d.digest.is_empty() && !digest_ok {
        v.push(FieldViolation::new(
            "decision.digest",
            "`sha256:` and 64 hexadecimal digits, or nothing",
        ));
    }
    v
}

fn advance(a: &mut api::Agreement, step: Step) -> Result<()> {
    let next = AgreementState::of(a).after(step, &format!("agreements/{}", a.id))?;
    a.state = next.to_api() as i32;
    Ok(())
}

/// Activates a signed agreement and schedules its expiry at the end of its last day.
fn activate(conn: &mut AnyConnection, act: &Change<'_>, a: &mut api::Agreement) -> Result<()> {
    advance(a, Step::Activate)?;
    a.activate_time = Some(timestamp(act.now));
    a.update_time = Some(timestamp(act.now));
    db::save(conn, act.scope, a, act.now)?;
    let (_, last) = term_of(a);
    let day_after = last.checked_add_days(Days::new(1)).unwrap_or(last);
    db::schedule(conn, act.scope, &a.id, db::EXPIRE, day_after)?;
    emit(conn, act, api::AGREEMENT_ACTIVATED, a)
}

impl Operations for Agreements {
    type Error = AgreementError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

/// 第二十八条: the result of the evaluation decides whether an agreement is renewed.
const UNEVALUATED: &str = "a renewal needs a passed evaluation of the current term (第二十八条): \
                           the bureau records one first (POST …/evaluations, outcome CONTINUE)";

impl Agreements {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    fn load(conn: &mut AnyConnection, scope: &TenantScope, id: &str) -> Result<api::Agreement> {
        db::find(conn, scope, id)?.ok_or_else(|| AgreementError::not_found("agreement", id))
    }

    pub async fn create(
        &self,
        who: &Identity,
        tenant: &str,
        input: api::Agreement,
    ) -> Result<api::Agreement> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        AgreementError::unless_role(who, BUREAU, "drafting an agreement")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let Some((plan_id, plan_version, selected)) = db::concluded(conn, scope, &input.selection_id)? else {
                return Err(AgreementError::precondition(
                    format!("selections/{}", input.selection_id),
                    format!("selection {} has not concluded in tenant {}: an agreement follows a concluded selection (:conclude)", input.selection_id, scope.tenant()),
                ));
            };
            let mut v = Vec::new();
            if !selected.contains(&input.operator) {
                v.push(FieldViolation::new(
                    "agreement.operator",
                    format!("`{}` was not selected; the selection chose {selected:?} (第十三条)", input.operator),
                ));
            }
            let plan_scope: HashSet<String> = db::plan_scope(conn, scope, &plan_id, plan_version)?
                .unwrap_or_default()
                .into_iter()
                .collect();
            v.extend(rules::terms_violations(&input.terms.clone().unwrap_or_default(), &plan_scope));
            if !v.is_empty() {
                return Err(AgreementError::invalid("agreement", v));
            }
            let agreement = api::Agreement {
                id: Uuid::now_v7().to_string(),
                tenant: scope.tenant().to_string(),
                plan_id,
                plan_version: plan_version as u32,
                state: AgreementState::Draft.to_api() as i32,
                signatures: Vec::new(),
                renews: String::new(),
                created_by: who.subject.clone(),
                create_time: Some(timestamp(now)),
                update_time: Some(timestamp(now)),
                activate_time: None,
                expire_time: None,
                ..input
            };
            db::insert(conn, scope, &agreement, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            emit(conn, &act, api::AGREEMENT_CREATED, &agreement)?;
            Ok(agreement)
        })
        .await
    }

    /// Staff see every agreement; an operator its own.
    pub async fn get(&self, who: &Identity, tenant: &str, id: String) -> Result<api::Agreement> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let staff = who.has_any(STAFF);
        let org = who.organization.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            let a = Self::load(conn, scope, &id)?;
            if !staff && a.operator != org {
                return Err(AgreementError::not_found("agreement", &id));
            }
            Ok(a)
        })
        .await
    }

    pub async fn list(
        &self,
        who: &Identity,
        tenant: &str,
        state: Option<AgreementState>,
        cursor: Cursor,
    ) -> Result<(Vec<api::Agreement>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let operator = (!who.has_any(STAFF)).then(|| who.organization.clone());
        self.in_scope(&scope, move |conn, scope, _| {
            let states = state.map(|s| vec![s]);
            let items = db::list(conn, scope, operator.as_deref(), states.as_deref(), &cursor)?;
            let next = cursor.next_token(&items, |a| &a.id);
            Ok((items, next))
        })
        .await
    }

    pub async fn sign(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        party: api::Party,
    ) -> Result<api::Agreement> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut a = Self::load(conn, scope, &id)?;
            let allowed = match party {
                api::Party::Bureau => who.has_any(BUREAU),
                api::Party::Operator => who.has(Role::Operator) && who.organization == a.operator,
                api::Party::Unspecified => {
                    return Err(AgreementError::invalid(
                        "signature",
                        vec![FieldViolation::new(
                            "party",
                            "PARTY_BUREAU or PARTY_OPERATOR",
                        )],
                    ));
                }
            };
            if !allowed {
                return Err(AgreementError::forbidden(
                    "NOT_A_PARTY",
                    format!(
                        "{} may not sign as {}",
                        who.organization,
                        party.as_str_name()
                    ),
                ));
            }
            if AgreementState::of(&a) != AgreementState::Draft {
                return Err(AgreementError::precondition(
                    format!("agreements/{id}"),
                    format!(
                        "the agreement is {}; only a draft is signed",
                        AgreementState::of(&a).name()
                    ),
                ));
            }
            if a.signatures.iter().any(|s| s.party == party as i32) {
                return Err(AgreementError::precondition(
                    format!("agreements/{id}"),
                    format!("{} has signed already", party.as_str_name()),
                ));
            }
            a.signatures.push(api::Signature {
                party: party as i32,
                signer: who.subject.clone(),
                organization: who.organization.clone(),
                sign_time: Some(timestamp(now)),
            });
            a.update_time = Some(timestamp(now));
            let act = RECORDER.change(scope, Some(&who), now);
            let both = [api::Party::Bureau, api::Party::Operator]
                .iter()
                .all(|p| a.signatures.iter().any(|s| s.party == *p as i32));
            if both {
                advance(&mut a, Step::CompleteSigning)?;
            }
            db::save(conn, scope, &a, now)?;
            emit(conn, &act, api::AGREEMENT_SIGNED, &a)?;
            if both {
                let (first, _) = term_of(&a);
                if first <= civil_date(now) {
                    activate(conn, &act, &mut a)?;
                } else {
                    db::schedule(conn, scope, &a.id, db::ACTIVATE, first)?;
                }
            }
            Ok(a)
        })
        .await
    }

    pub async fn renew(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        last_day: String,
    ) -> Result<api::Agreement> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        AgreementError::unless_role(who, BUREAU, "renewing an agreement")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let current = Self::load(conn, scope, &id)?;
            if !matches!(AgreementState::of(&current), AgreementState::Signed | AgreementState::Active) {
                return Err(AgreementError::precondition(format!("agreements/{id}"), format!("only a signed or active agreement is renewed; it is {}", AgreementState::of(&current).name())));
            }
            // 第二十八条: the result of the evaluation decides whether it is renewed.
            if !db::evaluated(conn, scope, &id)? {
                return Err(AgreementError::precondition(format!("agreements/{id}"), UNEVALUATED));
            }
            let (_, current_last) = term_of(&current);
            let first = current_last.checked_add_days(Days::new(1)).unwrap_or(current_last);
            // The uninterrupted term starts with the first agreement of the chain of renewals.
            let mut chain_start = term_of(&current).0;
            let mut link = current.clone();
            while !link.renews.is_empty() {
                let Some(previous) = db::find(conn, scope, &link.renews)? else { break };
                let (p_first, p_last) = term_of(&previous);
                if p_last.checked_add_days(Days::new(1)) != Some(term_of(&link).0) {
                    break;
                }
                chain_start = p_first;
                link = previous;
            }
            let Ok(last) = NaiveDate::parse_from_str(&last_day, "%Y-%m-%d") else {
                return Err(AgreementError::invalid("renewal", vec![FieldViolation::new("last_day", format!("`{last_day}` is not a date of the form YYYY-MM-DD"))]));
            };
            let latest = rules::latest_last_day(chain_start);
            if last < first || last > latest {
                return Err(AgreementError::invalid(
                    "renewal",
                    vec![FieldViolation::new(
                        "last_day",
                        format!("the renewed term runs from {first}; the uninterrupted term since {chain_start} may last until {latest} at most (R-AGR-2): beyond it, a new selection is needed"),
                    )],
                ));
            }
            let mut terms = current.terms.clone().unwrap_or_default();
            terms.term = Some(api::Term { first_day: first.to_string(), last_day: last.to_string() });
            let renewed = api::Agreement {
                id: Uuid::now_v7().to_string(),
                terms: Some(terms),
                state: AgreementState::Draft.to_api() as i32,
                signatures: Vec::new(),
                renews: current.id.clone(),
                created_by: who.subject.clone(),
                create_time: Some(timestamp(now)),
                update_time: Some(timestamp(now)),
                activate_time: None,
                expire_time: None,
                ..current
            };
            db::insert(conn, scope, &renewed, now)?;
            emit(conn, &RECORDER.change(scope, Some(&who), now), api::AGREEMENT_RENEWED, &renewed)?;
            Ok(renewed)
        })
        .await
    }

    /// Suspends active agreement `id`: the operator is authorized for nothing until resumed.
    pub async fn suspend(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        reason: String,
    ) -> Result<api::Agreement> {
        self.pause(who, tenant, id, reason, Step::Suspend).await
    }

    /// Resumes suspended agreement `id` within its term.
    pub async fn resume(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        reason: String,
    ) -> Result<api::Agreement> {
        self.pause(who, tenant, id, reason, Step::Resume).await
    }

    /// Suspends or resumes agreement `id`, with the bureau's reason.
    async fn pause(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        reason: String,
        step: Step,
    ) -> Result<api::Agreement> {
        let (call, what, ty) = match step {
            Step::Suspend => (":suspend", "a suspension", api::AGREEMENT_SUSPENDED),
            _ => (":resume", "a resumption", api::AGREEMENT_RESUMED),
        };
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        AgreementError::unless_role(who, BUREAU, call)?;
        let reason = reason_of(&reason, what)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut a = Self::load(conn, scope, &id)?;
            advance(&mut a, step)?;
            a.suspension_reason = if step == Step::Suspend {
                reason.clone()
            } else {
                String::new()
            };
            a.update_time = Some(timestamp(now));
            db::save(conn, scope, &a, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            let event = api::AgreementChanged {
                reason,
                ..agreement_changed(&a)
            };
            act.emit(conn, ty, &a.id, &event)?;
            Ok(a)
        })
        .await
    }

    /// Ends agreement `id` before its term on the bureau's decision; its operator's access ends
    /// at once with the event (第二十九条).
    pub async fn terminate(
        &self,
        who: &Identity,
        tenant: &str,
        request: api::TerminateAgreementRequest,
    ) -> Result<api::Agreement> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        AgreementError::unless_role(who, BUREAU, ":terminate")?;
        let v =
            termination_violations(request.ground(), &request.reason, request.decision.as_ref());
        AgreementError::check("termination", v)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut a = Self::load(conn, scope, &request.id)?;
            advance(&mut a, Step::Terminate)?;
            // 第三十条: what ends an agreement for a breach is a rectification that failed.
            if request.ground() == api::TerminationGround::BreachNotRectified
                && !db::rectification_failed(conn, scope, &request.id)?
            {
                return Err(AgreementError::precondition(
                    format!("agreements/{}", request.id),
                    "a termination for a breach not rectified rests on a failed rectification of \
                     this agreement, and oversight has recorded none (第三十条): order rectification \
                     first (POST …/rectification-orders)",
                ));
            }
            a.suspension_reason.clear();
            a.termination = Some(api::Termination {
                ground: request.ground,
                reason: request.reason.trim().to_string(),
                decision: request.decision.clone(),
                decided_by: who.subject.clone(),
                time: Some(timestamp(now)),
            });
            a.update_time = Some(timestamp(now));
            db::save(conn, scope, &a, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            emit(conn, &act, api::AGREEMENT_TERMINATED, &a)?;
            Ok(a)
        })
        .await
    }

    /// Activations and expiries whose day has come; each happens once whatever the replicas.
    pub async fn run_schedule(&self) -> Result<usize> {
        let today = civil_date(self.clock.now());
        let due = self.store.run(move |conn| db::due(conn, today)).await?;
        let mut done = 0;
        for (tenant, id, action) in due {
            let Ok(tenant) = tenant.parse::<TenantCode>() else {
                continue;
            };
            let scope = TenantScope::system(tenant);
            let applied = self
                .in_scope(&scope, move |conn, scope, now| {
                    if !db::take(conn, &id, &action)? {
                        return Ok(false);
                    }
                    let mut a = Self::load(conn, scope, &id)?;
                    let act = RECORDER.change(scope, None, now);
                    match (action.as_str(), AgreementState::of(&a)) {
                        (db::ACTIVATE, AgreementState::Signed) => activate(conn, &act, &mut a)?,
                        (db::EXPIRE, AgreementState::Active | AgreementState::Suspended) => {
                            advance(&mut a, Step::Expire)?;
                            a.expire_time = Some(timestamp(now));
                            a.update_time = Some(timestamp(now));
                            db::save(conn, scope, &a, now)?;
                            emit(conn, &act, api::AGREEMENT_EXPIRED, &a)?;
                        }
                        // Suspended or terminated meanwhile: nothing is due any more.
                        _ => return Ok(false),
                    }
                    Ok(true)
                })
                .await?;
            done += usize::from(applied);
        }
        Ok(done)
    }

    /// Is `organization` authorized for `resource` in the tenant now (R-AGR-3)?
    pub async fn check(
        &self,
        who: &Identity,
        tenant: &str,
        organization: String,
        resource: String,
    ) -> Result<api::CheckAuthorizationResponse> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            let active = db::active_of(conn, scope, &organization)?;
            Ok(
                match active.iter().find(|a| resource_ids(a).contains(&resource)) {
                    Some(a) => api::CheckAuthorizationResponse {
                        authorized: true,
                        agreement_id: a.id.clone(),
                        reason: "an active agreement covers the resource".into(),
                    },
                    None if active.is_empty() => api::CheckAuthorizationResponse {
                        authorized: false,
                        agreement_id: String::new(),
                        reason: format!(
                            "{organization} has no active agreement in tenant {}",
                            scope.tenant()
                        ),
                    },
                    None => api::CheckAuthorizationResponse {
                        authorized: false,
                        agreement_id: String::new(),
                        reason: format!(
                            "no active agreement of {organization} covers resource {resource}"
                        ),
                    },
                },
            )
        })
        .await
    }

    pub async fn authorized_resources(
        &self,
        who: &Identity,
        tenant: &str,
    ) -> Result<api::ListAuthorizedResourcesResponse> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let org = who.organization.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            let active = db::active_of(conn, scope, &org)?;
            let mut ids: Vec<String> = active.iter().flat_map(resource_ids).collect();
            ids.sort();
            ids.dedup();
            Ok(api::ListAuthorizedResourcesResponse {
                resource_ids: ids,
                agreement_ids: active.into_iter().map(|a| a.id).collect(),
            })
        })
        .await
    }

    /// Who is or was authorized, for what and until when: every agreement past its draft.
    pub async fn public_list(
        &self,
        who: &Identity,
        tenant: &str,
        cursor: Cursor,
    ) -> Result<(Vec<api::PublicAuthorization>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        self.in_scope(&scope, move |conn, scope, _| {
            let items = db::list(conn, scope, None, Some(&AgreementState::DISCLOSED), &cursor)?;
            let next = cursor.next_token(&items, |a| &a.id);
            let out = items
                .into_iter()
                .map(|a| {
                    let terms = a.terms.clone().unwrap_or_default();
                    let term = terms.term.unwrap_or_default();
                    api::PublicAuthorization {
                        agreement_id: a.id.clone(),
                        operator: a.operator.clone(),
                        products: terms.products.map(|p| p.products).unwrap_or_default(),
                        resource_ids: resource_ids(&a),
                        catalog: terms.scope.map(|s| s.catalog).unwrap_or_default(),
                        first_day: term.first_day,
                        last_day: term.last_day,
                        state: a.state,
                    }
                })
                .collect();
            Ok((out, next))
        })
        .await
    }
}
