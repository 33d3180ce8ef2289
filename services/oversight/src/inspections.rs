//! Inspections, findings and referrals, and rectification orders with their deadline in working
//! days (第二十六条, 第三十条). A failed rectification asks the bureau to terminate: an alert for it
//! and the event `pdp.oversight.rectification.failed`.

use chrono::{Days, NaiveDate};
use pdp_kit::calendar::civil_date;
use pdp_kit::change::{Change, timestamp};
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::oversight::v1 as api;

use crate::OversightError;
use crate::rectification::{OrderState, Step, transition};
use crate::service::{
    Oversight, RECORDER, Result, SUPERVISING, Signal, asked_states, check_document, is_severity,
    new_id, own_evidence, raise,
};
use crate::store as db;

/// The longest a rectification may be given, in working days.
pub const MAX_RECTIFICATION_WORKING_DAYS: u32 = 60;
/// The schedule's kind for orders falling due.
pub const ORDER_DUE: &str = "rectification-due";

fn inspection_subject(id: &str) -> String {
    format!("inspections/{id}")
}

fn order_subject(id: &str) -> String {
    format!("rectification-orders/{id}")
}

fn emit_inspection(
    conn: &mut AnyConnection,
    change: &Change<'_>,
    ty: pdp_proto::EventType<api::InspectionChanged>,
    i: &api::Inspection,
) -> Result<()> {
    let event = api::InspectionChanged {
        inspection_id: i.id.clone(),
        target: i.target.clone(),
        agreement_id: i.agreement_id.clone(),
        state: i.state,
    };
    change.emit(conn, ty, &i.id, &event)?;
    Ok(())
}

fn emit_order(
    conn: &mut AnyConnection,
    change: &Change<'_>,
    ty: pdp_proto::EventType<api::RectificationChanged>,
    o: &api::RectificationOrder,
) -> Result<()> {
    let event = api::RectificationChanged {
        order_id: o.id.clone(),
        operator: o.operator.clone(),
        agreement_id: o.agreement_id.clone(),
        state: o.state,
        deadline: o.deadline.clone(),
        failure: o.failure.clone(),
    };
    change.emit(conn, ty, &o.id, &event)?;
    Ok(())
}

fn failed_signal() -> Signal {
    Signal::builtin(
        "rectification-failed",
        "A rectification failed: the bureau is asked to terminate the agreement",
        api::Severity::Critical,
        &[],
        "第三十条",
    )
}

/// Fails `o` for `why`: the event, and the alert asking the bureau to terminate.
fn fail(
    conn: &mut AnyConnection,
    change: &Change<'_>,
    o: &mut api::RectificationOrder,
    why: &str,
) -> Result<()> {
    o.state = OrderState::Failed.to_api() as i32;
    o.failure = why.to_string();
    o.failed_at = Some(timestamp(change.now));
    db::save(conn, change.scope, o)?;
    emit_order(conn, change, api::RECTIFICATION_FAILED, o)?;
    let group = if o.agreement_id.is_empty() {
        &o.operator
    } else {
        &o.agreement_id
    };
    let evidence = own_evidence(
        order_subject(&o.id),
        format!("{}: {why}", o.operator),
        change.now,
    );
    raise(
        conn,
        change.scope,
        &failed_signal(),
        group,
        evidence,
        change.now,
    )?;
    Ok(())
}

fn check_inspection(i: &api::Inspection, own_departments: Option<&[i32]>) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if !matches!(i.target_kind.as_str(), "operator" | "provider") {
        v.push(FieldViolation::new(
            "inspection.target_kind",
            "`operator` or `provider` (第二十六条)",
        ));
    }
    if i.target.trim().is_empty() {
        v.push(FieldViolation::new(
            "inspection.target",
            "required: the inspected organization",
        ));
    }
    if i.purpose.trim().is_empty() {
        v.push(FieldViolation::new(
            "inspection.purpose",
            "required: what the inspection looks into",
        ));
    }
    match api::Department::try_from(i.department) {
        Err(_) => v.push(FieldViolation::new(
            "inspection.department",
            "not a supervising department",
        )),
        Ok(api::Department::Unspecified) if own_departments.is_some() => {
            v.push(FieldViolation::new(
                "inspection.department",
                "required: the department whose duty the inspection serves (R-ROLE-6)",
            ))
        }
        Ok(d) => {
            if let Some(own) = own_departments
                && d != api::Department::Unspecified
                && !own.contains(&(d as i32))
            {
                v.push(FieldViolation::new(
                    "inspection.department",
                    "not a department the caller's organization acts for (R-ROLE-6)",
                ));
            }
        }
    }
    v
}

fn check_finding(f: &api::Finding) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if f.description.trim().is_empty() {
        v.push(FieldViolation::new("finding.description", "required"));
    }
    if !is_severity(f.severity) {
        v.push(FieldViolation::new(
            "finding.severity",
            "LOW, MEDIUM, HIGH or CRITICAL",
        ));
    }
    for (i, e) in f.evidence.iter().enumerate() {
        v.extend(check_document(
            &format!("finding.evidence[{i}]"),
            Some(e),
            true,
        ));
    }
    if let Some(r) = &f.referral {
        if r.authority.trim().is_empty() {
            v.push(FieldViolation::new(
                "finding.referral.authority",
                "required: the competent authority it is referred to (第三十条)",
            ));
        }
        if r.reference.trim().is_empty() {
            v.push(FieldViolation::new(
                "finding.referral.reference",
                "required: the referral's document number",
            ));
        }
    }
    v
}

impl Oversight {
    pub async fn open_inspection(
        &self,
        who: &Identity,
        tenant: &str,
        mut i: api::Inspection,
    ) -> Result<api::Inspection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, SUPERVISING, "opening an inspection")?;
        let own = self.duties_of(who).filter(|_| who.has(Role::Supervisor));
        OversightError::check("inspection", check_inspection(&i, own.as_deref()))?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            if !i.agreement_id.is_empty() {
                let known = db::fact(conn, scope, crate::follow::AUTHORIZATION, &i.agreement_id)?;
                if known.as_ref().is_none_or(|f| f.party != i.target) {
                    return Err(OversightError::invalid(
                        "inspection",
                        vec![FieldViolation::new(
                            "inspection.agreement_id",
                            format!(
                                "no authorization of {} by this id is known in the tenant",
                                i.target
                            ),
                        )],
                    ));
                }
            }
            i.id = new_id();
            i.state = api::InspectionState::Open as i32;
            i.findings.clear();
            i.opened_by = who.subject.clone();
            i.opened_at = Some(timestamp(now));
            i.conclusion.clear();
            i.closed_at = None;
            db::insert(conn, scope, &i)?;
            emit_inspection(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                api::INSPECTION_OPENED,
                &i,
            )?;
            Ok(i)
        })
        .await
    }

    pub async fn get_inspection(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::Inspection> {
        self.visible(who, tenant, id, "inspection").await
    }

    pub async fn list_inspections(
        &self,
        who: &Identity,
        tenant: &str,
        state: i32,
        cursor: Cursor,
    ) -> Result<(Vec<api::Inspection>, String)> {
        let asked = api::Inspection {
            state,
            ..Default::default()
        };
        let states = asked_states(&asked, state)?;
        self.page(who, tenant, String::new(), states, cursor).await
    }

    pub async fn record_finding(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        mut f: api::Finding,
    ) -> Result<api::Inspection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, SUPERVISING, "recording a finding")?;
        OversightError::check("finding", check_finding(&f))?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut i = db::get::<api::Inspection>(conn, scope, &id)?
                .ok_or_else(|| OversightError::not_found("inspection", id.clone()))?;
            if i.state != api::InspectionState::Open as i32 {
                return Err(OversightError::precondition(
                    inspection_subject(&id),
                    "the inspection is closed: findings are recorded while it is open",
                ));
            }
            f.id = new_id();
            f.recorded_by = who.subject.clone();
            f.recorded_at = Some(timestamp(now));
            let referred = f.referral.is_some();
            if let Some(r) = f.referral.as_mut() {
                r.referred_at = Some(timestamp(now));
            }
            i.findings.push(f);
            db::save(conn, scope, &i)?;
            let change = RECORDER.change(scope, Some(&who), now);
            emit_inspection(conn, &change, api::INSPECTION_FINDING_RECORDED, &i)?;
            if referred {
                emit_inspection(conn, &change, api::INSPECTION_REFERRED, &i)?;
            }
            Ok(i)
        })
        .await
    }

    pub async fn close_inspection(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        conclusion: String,
    ) -> Result<api::Inspection> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, SUPERVISING, "closing an inspection")?;
        if conclusion.trim().is_empty() {
            return Err(OversightError::invalid(
                "inspection",
                vec![FieldViolation::new(
                    "conclusion",
                    "required: what the inspection concluded",
                )],
            ));
        }
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut i = db::get::<api::Inspection>(conn, scope, &id)?
                .ok_or_else(|| OversightError::not_found("inspection", id.clone()))?;
            if i.state != api::InspectionState::Open as i32 {
                return Err(OversightError::precondition(
                    inspection_subject(&id),
                    "the inspection is closed already",
                ));
            }
            i.state = api::InspectionState::Closed as i32;
            i.conclusion = conclusion;
            i.closed_at = Some(timestamp(now));
            db::save(conn, scope, &i)?;
            emit_inspection(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                api::INSPECTION_CLOSED,
                &i,
            )?;
            Ok(i)
        })
        .await
    }

    pub async fn issue_order(
        &self,
        who: &Identity,
        tenant: &str,
        mut o: api::RectificationOrder,
    ) -> Result<api::RectificationOrder> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, SUPERVISING, "ordering rectification")?;
        let mut v = Vec::new();
        if o.inspection_id.is_empty() {
            v.push(FieldViolation::new(
                "order.inspection_id",
                "required: the inspection whose finding is to be rectified",
            ));
        }
        if o.finding_id.is_empty() {
            v.push(FieldViolation::new(
                "order.finding_id",
                "required: the finding to rectify",
            ));
        }
        if o.requirement.trim().is_empty() {
            v.push(FieldViolation::new(
                "order.requirement",
                "required: what the operator must do",
            ));
        }
        if !(1..=MAX_RECTIFICATION_WORKING_DAYS).contains(&o.working_days) {
            v.push(FieldViolation::new(
                "order.working_days",
                format!("1 to {MAX_RECTIFICATION_WORKING_DAYS} working days"),
            ));
        }
        OversightError::check("rectification order", v)?;
        let calendar = self.calendar.clone();
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let i = db::get::<api::Inspection>(conn, scope, &o.inspection_id)?
                .ok_or_else(|| OversightError::not_found("inspection", o.inspection_id.clone()))?;
            if i.target_kind != "operator" {
                return Err(OversightError::precondition(
                    inspection_subject(&i.id),
                    "rectification is ordered to an operator; this inspection is of a provider \
                     unit",
                ));
            }
            if !i.findings.iter().any(|f| f.id == o.finding_id) {
                let wrong = format!("not a finding of inspection {}", i.id);
                return Err(OversightError::invalid(
                    "rectification order",
                    vec![FieldViolation::new("order.finding_id", wrong)],
                ));
            }
            let today = civil_date(now);
            let deadline = calendar
                .working_days_after(today, o.working_days)
                .map_err(|e| {
                    OversightError::precondition(inspection_subject(&i.id), e.to_string())
                })?;
            o.id = new_id();
            o.operator = i.target.clone();
            o.agreement_id = i.agreement_id.clone();
            o.deadline = deadline.to_string();
            o.state = OrderState::Issued.to_api() as i32;
            o.responses.clear();
            o.rejections = 0;
            o.issued_by = who.subject.clone();
            o.issued_at = Some(timestamp(now));
            o.failure.clear();
            o.failed_at = None;
            db::insert(conn, scope, &o)?;
            let due = deadline.checked_add_days(Days::new(1)).unwrap_or(deadline);
            db::schedule(conn, scope, ORDER_DUE, &o.id, due)?;
            let change = RECORDER.change(scope, Some(&who), now);
            emit_order(conn, &change, api::RECTIFICATION_ISSUED, &o)?;
            Ok(o)
        })
        .await
    }

    pub async fn get_order(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::RectificationOrder> {
        self.visible(who, tenant, id, "rectification order").await
    }

    pub async fn list_orders(
        &self,
        who: &Identity,
        tenant: &str,
        state: i32,
        cursor: Cursor,
    ) -> Result<(Vec<api::RectificationOrder>, String)> {
        let asked = api::RectificationOrder {
            state,
            ..Default::default()
        };
        let states = asked_states(&asked, state)?;
        self.page(who, tenant, String::new(), states, cursor).await
    }

    pub async fn respond_to_order(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        text: String,
        evidence: Vec<api::DocumentRef>,
    ) -> Result<api::RectificationOrder> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, &[Role::Operator], "answering a rectification order")?;
        let mut v = Vec::new();
        if text.trim().is_empty() {
            v.push(FieldViolation::new(
                "text",
                "required: what the operator did",
            ));
        }
        for (i, e) in evidence.iter().enumerate() {
            v.extend(check_document(&format!("evidence[{i}]"), Some(e), true));
        }
        OversightError::check("rectification response", v)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut o = match db::get::<api::RectificationOrder>(conn, scope, &id)? {
                Some(o) if o.operator == who.organization => o,
                _ => return Err(OversightError::not_found("rectification order", id)),
            };
            let state =
                OrderState::of(&o).ok_or_else(|| OversightError::Corrupt(order_subject(&id)))?;
            let next = transition(state, Step::Respond, &id)?.unwrap_or(state);
            o.state = next.to_api() as i32;
            o.responses.push(api::RectificationResponse {
                text,
                evidence,
                responded_by: who.subject.clone(),
                responded_at: Some(timestamp(now)),
                ..Default::default()
            });
            db::save(conn, scope, &o)?;
            emit_order(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                api::RECTIFICATION_ANSWERED,
                &o,
            )?;
            Ok(o)
        })
        .await
    }

    pub async fn judge_order(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        accepted: bool,
        note: String,
    ) -> Result<api::RectificationOrder> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, SUPERVISING, "judging a rectification")?;
        if !accepted && note.trim().is_empty() {
            return Err(OversightError::invalid(
                "judgment",
                vec![FieldViolation::new(
                    "note",
                    "required when rejecting: what is still missing",
                )],
            ));
        }
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut o = db::get::<api::RectificationOrder>(conn, scope, &id)?
                .ok_or_else(|| OversightError::not_found("rectification order", id.clone()))?;
            let state =
                OrderState::of(&o).ok_or_else(|| OversightError::Corrupt(order_subject(&id)))?;
            let past_deadline = NaiveDate::parse_from_str(&o.deadline, "%Y-%m-%d")
                .is_ok_and(|d| civil_date(now) > d);
            let step = if accepted {
                Step::Accept
            } else {
                Step::Reject {
                    earlier: o.rejections,
                    past_deadline,
                }
            };
            let next = transition(state, step, &id)?.unwrap_or(state);
            if let Some(last) = o.responses.last_mut() {
                last.accepted = accepted;
                last.judgment_note = note;
                last.judged_by = who.subject.clone();
                last.judged_at = Some(timestamp(now));
            }
            if !accepted {
                o.rejections += 1;
            }
            let change = RECORDER.change(scope, Some(&who), now);
            match next {
                OrderState::Failed => {
                    let why = if past_deadline {
                        "rejected after its deadline"
                    } else {
                        "rejected twice"
                    };
                    db::unschedule_all(conn, scope, ORDER_DUE, &o.id)?;
                    fail(conn, &change, &mut o, why)?;
                }
                _ => {
                    o.state = next.to_api() as i32;
                    if next == OrderState::Rectified {
                        db::unschedule_all(conn, scope, ORDER_DUE, &o.id)?;
                    }
                    db::save(conn, scope, &o)?;
                    let ty = if accepted {
                        api::RECTIFICATION_RECTIFIED
                    } else {
                        api::RECTIFICATION_REJECTED
                    };
                    emit_order(conn, &change, ty, &o)?;
                }
            }
            Ok(o)
        })
        .await
    }
}

/// The deadline of order `id` passed (the schedule's item, claimed): an unanswered order fails.
pub(crate) fn order_due(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    let Some(mut o) = db::get::<api::RectificationOrder>(conn, scope, id)? else {
        return Ok(false);
    };
    let state = OrderState::of(&o).ok_or_else(|| OversightError::Corrupt(order_subject(id)))?;
    if transition(state, Step::DeadlinePassed, id)? != Some(OrderState::Failed) {
        return Ok(false);
    }
    let change = RECORDER.change(scope, None, now);
    fail(
        conn,
        &change,
        &mut o,
        "overdue: not answered by its deadline",
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inspection_names_every_missing_field() {
        let v = check_inspection(&api::Inspection::default(), Some(&[]));
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "inspection.target_kind",
                "inspection.target",
                "inspection.purpose",
                "inspection.department"
            ]
        );
    }

    #[test]
    fn a_referral_names_its_authority_and_reference() {
        let f = api::Finding {
            description: "kept raw data outside the sandbox".into(),
            severity: api::Severity::High as i32,
            referral: Some(api::Referral::default()),
            ..Default::default()
        };
        let fields: Vec<_> = check_finding(&f).into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            ["finding.referral.authority", "finding.referral.reference"]
        );
    }
}
