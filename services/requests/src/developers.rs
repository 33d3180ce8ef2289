//! The operations on developer entities (第二十一条): registration with an operator, the
//! operator's review of it and of each scenario's data needs (第二十条(三)).

use pdp_kit::change::{Change, timestamp};
use pdp_kit::identity::{Identity, Role};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::requests::v1 as api;
use uuid::Uuid;

use crate::RequestError;
use crate::developer::{self as rules, ApprovalState};
use crate::service::{RECORDER, Requests, STAFF};
use crate::store::{self as db, DeveloperView};

type Result<T> = std::result::Result<T, RequestError>;

fn developer_changed(d: &api::Developer) -> api::DeveloperChanged {
    api::DeveloperChanged {
        developer_id: d.id.clone(),
        organization: d.organization.clone(),
        operator: d.operator.clone(),
        state: d.state,
    }
}

fn view(who: &Identity) -> DeveloperView {
    if who.has_any(STAFF) {
        DeveloperView::All
    } else if who.has(Role::Developer) {
        DeveloperView::Own(who.organization.clone())
    } else {
        DeveloperView::Operator(who.organization.clone())
    }
}

fn sees(view: &DeveloperView, d: &api::Developer) -> bool {
    match view {
        DeveloperView::All => true,
        DeveloperView::Operator(org) => &d.operator == org,
        DeveloperView::Own(org) => &d.organization == org,
    }
}

/// The developer `id` as `who` may see it; an invisible one is NOT_FOUND.
fn visible(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    who: &Identity,
    id: &str,
) -> Result<api::Developer> {
    db::find_developer(conn, scope, id)?
        .filter(|d| sees(&view(who), d))
        .ok_or_else(|| RequestError::not_found("developer", id))
}

fn decide(
    state: i32,
    approval: &api::Approval,
    aggregate: &'static str,
    subject: &str,
) -> Result<ApprovalState> {
    RequestError::check("approval", rules::approval_violations(approval))?;
    let current = ApprovalState::from_api(state).unwrap_or(ApprovalState::Pending);
    Ok(current.after(approval.approved, aggregate, subject)?)
}

fn reasons(approval: &api::Approval) -> Vec<String> {
    approval
        .reasons
        .iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect()
}

impl Requests {
    pub async fn register_developer(
        &self,
        who: &Identity,
        tenant: &str,
        input: api::Developer,
    ) -> Result<api::Developer> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Developer], "registering as a developer")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let active = !db::active_agreements(conn, scope, &input.operator)?.is_empty();
            let v = rules::registration_violations(&input, &who.organization, active);
            RequestError::check("developer", v)?;
            // One standing registration per operator: a rejected one may be filed anew.
            let standing = db::registrations(conn, scope, &who.organization, &input.operator)?
                .into_iter()
                .find(|d| ApprovalState::from_api(d.state) != Some(ApprovalState::Rejected));
            if let Some(d) = standing {
                return Err(RequestError::precondition(
                    format!("developers/{}", d.id),
                    format!(
                        "{} is registered with {} already",
                        d.organization, d.operator
                    ),
                ));
            }
            let d = api::Developer {
                id: Uuid::now_v7().to_string(),
                tenant: scope.tenant().to_string(),
                organization: who.organization.clone(),
                operator: input.operator,
                name: input.name.trim().to_string(),
                qualifications: input.qualifications,
                contact: input.contact,
                state: ApprovalState::Pending.to_api() as i32,
                register_time: Some(timestamp(now)),
                ..Default::default()
            };
            db::put_developer(conn, scope, &d, now)?;
            let act = RECORDER.change(scope, Some(&who), now);
            act.emit(
                conn,
                api::DEVELOPER_REGISTERED,
                &d.id,
                &developer_changed(&d),
            )?;
            Ok(d)
        })
        .await
    }

    pub async fn developer(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::Developer> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            visible(conn, scope, &who, &id)
        })
        .await
    }

    pub async fn developers(
        &self,
        who: &Identity,
        tenant: &str,
        cursor: Cursor,
    ) -> Result<(Vec<api::Developer>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let view = view(who);
        self.in_scope(&scope, move |conn, scope, _| {
            let items = db::list_developers(conn, scope, &view, &cursor)?;
            let next = cursor.next_token(&items, |d| &d.id);
            Ok((items, next))
        })
        .await
    }

    /// The operator the developer registered with decides on it.
    pub async fn review_developer(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        approval: api::Approval,
    ) -> Result<api::Developer> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Operator], "reviewing a developer")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut d = db::find_developer(conn, scope, &id)?
                .filter(|d| d.operator == who.organization)
                .ok_or_else(|| RequestError::not_found("developer", &id))?;
            let next = decide(d.state, &approval, "developer", &format!("developers/{id}"))?;
            d.state = next.to_api() as i32;
            d.reasons = reasons(&approval);
            d.reviewed_by = who.subject.clone();
            d.review_time = Some(timestamp(now));
            db::put_developer(conn, scope, &d, now)?;
            let ty = if next == ApprovalState::Approved {
                api::DEVELOPER_APPROVED
            } else {
                api::DEVELOPER_REJECTED
            };
            let act = RECORDER.change(scope, Some(&who), now);
            act.emit(conn, ty, &d.id, &developer_changed(&d))?;
            Ok(d)
        })
        .await
    }

    /// An approved developer submits a scenario and its data needs to its operator.
    pub async fn submit_need(
        &self,
        who: &Identity,
        tenant: &str,
        developer_id: String,
        input: api::DevelopmentNeed,
    ) -> Result<api::DevelopmentNeed> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Developer], "submitting data needs")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let d = visible(conn, scope, &who, &developer_id)?;
            if ApprovalState::from_api(d.state) != Some(ApprovalState::Approved) {
                return Err(RequestError::precondition(
                    format!("developers/{}", d.id),
                    format!(
                        "the registration is {}: {} must approve it first (:review)",
                        ApprovalState::from_api(d.state)
                            .map(ApprovalState::name)
                            .unwrap_or("?"),
                        d.operator
                    ),
                ));
            }
            RequestError::check("need", rules::need_violations(&input))?;
            let n = api::DevelopmentNeed {
                id: Uuid::now_v7().to_string(),
                tenant: scope.tenant().to_string(),
                developer_id: d.id.clone(),
                developer: d.organization.clone(),
                operator: d.operator.clone(),
                scenario: input.scenario,
                data_needs: input.data_needs,
                state: ApprovalState::Pending.to_api() as i32,
                submit_time: Some(timestamp(now)),
                ..Default::default()
            };
            db::put_need(conn, scope, &n, now)?;
            emit_need(
                conn,
                &RECORDER.change(scope, Some(&who), now),
                &n,
                ApprovalState::Pending,
            )?;
            Ok(n)
        })
        .await
    }

    pub async fn needs(
        &self,
        who: &Identity,
        tenant: &str,
        developer_id: String,
        cursor: Cursor,
    ) -> Result<(Vec<api::DevelopmentNeed>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            visible(conn, scope, &who, &developer_id)?;
            let items = db::needs_of(conn, scope, &developer_id, &cursor)?;
            let next = cursor.next_token(&items, |n| &n.id);
            Ok((items, next))
        })
        .await
    }

    /// The developer's operator decides on a scenario's data needs before any development.
    pub async fn review_need(
        &self,
        who: &Identity,
        tenant: &str,
        developer_id: String,
        id: String,
        approval: api::Approval,
    ) -> Result<api::DevelopmentNeed> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Operator], "reviewing data needs")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut n = db::find_need(conn, scope, &id)?
                .filter(|n| n.developer_id == developer_id && n.operator == who.organization)
                .ok_or_else(|| RequestError::not_found("development need", &id))?;
            let subject = format!("developers/{developer_id}/needs/{id}");
            let next = decide(n.state, &approval, "development need", &subject)?;
            n.state = next.to_api() as i32;
            n.reasons = reasons(&approval);
            n.reviewed_by = who.subject.clone();
            n.review_time = Some(timestamp(now));
            db::put_need(conn, scope, &n, now)?;
            emit_need(conn, &RECORDER.change(scope, Some(&who), now), &n, next)?;
            Ok(n)
        })
        .await
    }
}

fn emit_need(
    conn: &mut AnyConnection,
    act: &Change<'_>,
    n: &api::DevelopmentNeed,
    state: ApprovalState,
) -> Result<()> {
    let ty = match state {
        ApprovalState::Pending => api::DEVELOPMENT_NEED_SUBMITTED,
        ApprovalState::Approved => api::DEVELOPMENT_NEED_APPROVED,
        ApprovalState::Rejected => api::DEVELOPMENT_NEED_REJECTED,
    };
    let payload = api::DevelopmentNeedChanged {
        need_id: n.id.clone(),
        developer_id: n.developer_id.clone(),
        operator: n.operator.clone(),
        state: n.state,
    };
    act.emit(conn, ty, &n.id, &payload)?;
    Ok(())
}
