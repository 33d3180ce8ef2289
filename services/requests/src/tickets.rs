//! The operations on data-quality tickets (第十九条): raised by an operator on a resource of its
//! agreement, answered by the resource's provider unit within the tenant's period of working
//! days, confirmed or reopened by the operator; each resource's record.

use chrono::Days;
use pdp_kit::calendar::civil_date;
use pdp_kit::change::{Change, timestamp};
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::EventType;
use pdp_proto::pdp::requests::v1 as api;
use uuid::Uuid;

use crate::RequestError;
use crate::service::{RECORDER, Requests, STAFF};
use crate::store::{self as db, Visible};
use crate::ticket::{self as rules, Step, TicketState};

type Result<T> = std::result::Result<T, RequestError>;

/// Tickets one operator may hold open on one resource.
const MAX_OPEN_TICKETS: usize = 20;

fn subject(t: &api::QualityTicket) -> String {
    format!("quality-tickets/{}", t.id)
}

fn emit(
    conn: &mut AnyConnection,
    act: &Change<'_>,
    ty: EventType<api::TicketChanged>,
    t: &api::QualityTicket,
) -> Result<()> {
    let payload = api::TicketChanged {
        ticket_id: t.id.clone(),
        resource_id: t.resource_id.clone(),
        operator: t.operator.clone(),
        provider: t.provider.clone(),
        state: t.state,
        due_on: t.due_on.clone(),
        overdue: t.overdue,
    };
    act.emit(conn, ty, &t.id, &payload)?;
    Ok(())
}

fn advance(t: &mut api::QualityTicket, step: Step) -> Result<()> {
    let next = TicketState::of(t).after(step, &subject(t))?;
    t.state = next.to_api() as i32;
    Ok(())
}

fn sees(visible: &Visible, t: &api::QualityTicket) -> bool {
    match visible {
        Visible::All => true,
        Visible::Operator(org) => &t.operator == org,
        Visible::Reviewer(org) => &t.provider == org,
    }
}

fn required(field: &str, value: &str, what: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(RequestError::invalid(
            "ticket",
            vec![FieldViolation::new(
                field,
                format!("required: {what} (第十九条)"),
            )],
        ));
    }
    Ok(())
}

impl Requests {
    /// Starts the provider's period of working days on `today`: the ticket is overdue from the
    /// day after its last day.
    fn start_period(
        &self,
        conn: &mut AnyConnection,
        scope: &TenantScope,
        t: &mut api::QualityTicket,
        today: chrono::NaiveDate,
    ) -> Result<()> {
        let days = db::periods(conn, scope)?.ticket_working_days;
        let due = self
            .calendar()
            .working_days_after(today, days)
            .map_err(|e| RequestError::precondition(subject(t), e.to_string()))?;
        t.due_on = due.to_string();
        t.overdue = false;
        db::unschedule(conn, &t.id, db::TICKET_DUE)?;
        let overdue_on = due.checked_add_days(Days::new(1)).unwrap_or(due);
        db::schedule(conn, scope, &t.id, db::TICKET_DUE, overdue_on)
    }

    pub async fn raise(
        &self,
        who: &Identity,
        tenant: &str,
        input: api::QualityTicket,
    ) -> Result<api::QualityTicket> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Operator], "raising a data-quality ticket")?;
        let who = who.clone();
        let this = self.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let agreements = db::active_agreements(conn, scope, &who.organization)?;
            let resource = db::resources(conn, scope, std::slice::from_ref(&input.resource_id))?
                .remove(&input.resource_id);
            let v = rules::raise_violations(&input, &agreements, resource.as_ref());
            RequestError::check("ticket", v)?;
            // One operator cannot bury a provider in tickets on one resource.
            let open = db::tickets_of_resource(conn, scope, &input.resource_id)?
                .iter()
                .filter(|t| t.operator == who.organization)
                .filter(|t| TicketState::of(t) != TicketState::Confirmed)
                .count();
            if open >= MAX_OPEN_TICKETS {
                return Err(RequestError::precondition(
                    format!("resources/{}", input.resource_id),
                    format!(
                        "{} has {open} tickets on this resource not yet confirmed: settle them \
                         before raising more (at most {MAX_OPEN_TICKETS})",
                        who.organization
                    ),
                ));
            }
            let provider = resource.map(|r| r.provider).unwrap_or_default();
            let mut t = api::QualityTicket {
                id: Uuid::now_v7().to_string(),
                tenant: scope.tenant().to_string(),
                operator: who.organization.clone(),
                resource_id: input.resource_id,
                provider,
                fields: input.fields,
                kind: input.kind,
                description: input.description.trim().to_string(),
                evidence: input.evidence.trim().to_string(),
                state: TicketState::Open.to_api() as i32,
                raised_by: who.subject.clone(),
                raise_time: Some(timestamp(now)),
                update_time: Some(timestamp(now)),
                ..Default::default()
            };
            this.start_period(conn, scope, &mut t, civil_date(now))?;
            db::insert_ticket(conn, scope, &t, now)?;
            emit(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                api::TICKET_RAISED,
                &t,
            )?;
            Ok(t)
        })
        .await
    }

    pub async fn ticket(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::QualityTicket> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let visible = Self::visible(who);
        self.in_scope(&scope, move |conn, scope, _| {
            db::find_ticket(conn, scope, &id)?
                .filter(|t| sees(&visible, t))
                .ok_or_else(|| RequestError::not_found("ticket", &id))
        })
        .await
    }

    pub async fn tickets(
        &self,
        who: &Identity,
        tenant: &str,
        overdue_only: bool,
        cursor: Cursor,
    ) -> Result<(Vec<api::QualityTicket>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let visible = Self::visible(who);
        self.in_scope(&scope, move |conn, scope, _| {
            let items = db::list_tickets(conn, scope, &visible, overdue_only, &cursor)?;
            let next = cursor.next_token(&items, |t| &t.id);
            Ok((items, next))
        })
        .await
    }

    /// The provider unit's answer; given after the period, it is recorded as late.
    pub async fn answer(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        text: String,
        fixed: bool,
    ) -> Result<api::QualityTicket> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Provider], ":answer")?;
        required("text", &text, "what the provider found and did")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut t = db::find_ticket(conn, scope, &id)?
                .filter(|t| t.provider == who.organization)
                .ok_or_else(|| RequestError::not_found("ticket", &id))?;
            advance(&mut t, Step::Answer)?;
            let today = civil_date(now).to_string();
            t.answers.push(api::TicketAnswer {
                text: text.trim().to_string(),
                fixed,
                answered_by: who.subject.clone(),
                answer_time: Some(timestamp(now)),
                late: today > t.due_on,
            });
            t.overdue = false;
            t.update_time = Some(timestamp(now));
            db::unschedule(conn, &t.id, db::TICKET_DUE)?;
            db::save_ticket(conn, scope, &t, now)?;
            emit(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                api::TICKET_ANSWERED,
                &t,
            )?;
            Ok(t)
        })
        .await
    }

    pub async fn confirm(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::QualityTicket> {
        self.operator_step(who, tenant, id, Step::Confirm, String::new())
            .await
    }

    pub async fn reopen(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        reason: String,
    ) -> Result<api::QualityTicket> {
        required("reason", &reason, "why the answer is not accepted")?;
        self.operator_step(who, tenant, id, Step::Reopen, reason)
            .await
    }

    async fn operator_step(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        step: Step,
        reason: String,
    ) -> Result<api::QualityTicket> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        let what = if step == Step::Confirm {
            ":confirm"
        } else {
            ":reopen"
        };
        RequestError::unless_role(who, &[Role::Operator], what)?;
        let who = who.clone();
        let this = self.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut t = db::find_ticket(conn, scope, &id)?
                .filter(|t| t.operator == who.organization)
                .ok_or_else(|| RequestError::not_found("ticket", &id))?;
            advance(&mut t, step)?;
            let ty = if step == Step::Reopen {
                t.reopen_reasons.push(reason.trim().to_string());
                this.start_period(conn, scope, &mut t, civil_date(now))?;
                api::TICKET_REOPENED
            } else {
                api::TICKET_CONFIRMED
            };
            t.update_time = Some(timestamp(now));
            db::save_ticket(conn, scope, &t, now)?;
            emit(conn, &RECORDER.change(scope, Some(&who), now), ty, &t)?;
            Ok(t)
        })
        .await
    }

    /// A resource's record: the staff's, and its provider unit's own.
    pub async fn quality_record(
        &self,
        who: &Identity,
        tenant: &str,
        resource_id: String,
    ) -> Result<api::QualityRecord> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let staff = who.has_any(STAFF);
        let org = who.organization.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            let provider = db::resources(conn, scope, std::slice::from_ref(&resource_id))?
                .remove(&resource_id)
                .map(|r| r.provider)
                .filter(|p| staff || *p == org)
                .ok_or_else(|| RequestError::not_found("resource", &resource_id))?;
            let tickets = db::tickets_of_resource(conn, scope, &resource_id)?;
            Ok(rules::record(&resource_id, &provider, &tickets))
        })
        .await
    }
}

/// Marks a ticket still waiting for its answer overdue, and tells the bureau.
pub(crate) fn ticket_overdue(conn: &mut AnyConnection, act: &Change<'_>, id: &str) -> Result<bool> {
    let Some(mut t) = db::find_ticket(conn, act.scope, id)? else {
        return Ok(false);
    };
    if TicketState::of(&t) != TicketState::Open || t.overdue {
        return Ok(false);
    }
    t.overdue = true;
    t.update_time = Some(timestamp(act.now));
    db::save_ticket(conn, act.scope, &t, act.now)?;
    emit(conn, act, api::TICKET_OVERDUE, &t)?;
    Ok(true)
}
