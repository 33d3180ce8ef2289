//! Monitoring and early warning (第二十六条, 第二十七条): every event and audit record is run
//! through the tenant's rules; a rule that fires raises an alert with the events as evidence;
//! supervisors acknowledge, assign and close alerts.

use chrono::{DateTime, Duration, Utc};
use pdp_kit::change::timestamp;
use pdp_kit::error::FieldViolation;
use pdp_kit::events::Event;
use pdp_kit::identity::{Identity, TenantCode};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::oversight::v1 as api;

use crate::OversightError;
use crate::alert::{AlertState, Step, transition};
use crate::rules::Rule;
use crate::service::{
    Oversight, RECORDER, Result, STAFF, SUPERVISING, Signal, asked_states, emit_alert, raise,
};
use crate::store as db;

fn summary(rule: &Rule, group: &str, event: &Event) -> String {
    let what = ["action", "operation"]
        .iter()
        .find_map(|k| event.data.get(*k).and_then(|v| v.as_str()))
        .unwrap_or(&event.event_type);
    format!("{} {group}: {what}", rule.api.group_by)
}

/// Runs `event` through the tenant's rules, in the consumer's transaction.
pub fn watch(
    conn: &mut AnyConnection,
    oversight: &Oversight,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<()> {
    // Oversight's own events and records raise nothing: an alert is no evidence of itself.
    if event.source.ends_with("/oversight") {
        return Ok(());
    }
    let rules = oversight.rules.of(event.tenant.as_str());
    let matched: Vec<(&Rule, String)> = rules
        .iter()
        .filter_map(|r| r.group_of(event).map(|g| (r, g)))
        .collect();
    if matched.is_empty() {
        return Ok(());
    }
    let scope = TenantScope::system(event.tenant.clone());
    scope.enter(conn)?;
    for (rule, group) in matched {
        db::hit(conn, &scope, rule.id(), &group, &event.id, event.time)?;
        let window = Duration::seconds(i64::from(rule.api.window_secs));
        let count = db::hits_between(
            conn,
            &scope,
            rule.id(),
            &group,
            event.time - window,
            event.time,
        )?;
        let usual = if rule.compares_with_usual() {
            let windows = rule.api.baseline_windows.max(1);
            let start = event.time - window * (windows as i32 + 1);
            let before =
                db::hits_between(conn, &scope, rule.id(), &group, start, event.time - window)?;
            Some(f64::from(before) / f64::from(windows))
        } else {
            None
        };
        if !rule.fires(count, usual) {
            continue;
        }
        let evidence = api::Evidence {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            time: Some(timestamp(event.time)),
            subject: event.subject.clone(),
            summary: summary(rule, &group, event),
        };
        raise(
            conn,
            &scope,
            &Signal::of_rule(&rule.api),
            &group,
            evidence,
            now,
        )?;
    }
    Ok(())
}

fn subject(id: &str) -> String {
    format!("alerts/{id}")
}

impl Oversight {
    pub async fn list_rules(
        &self,
        who: &Identity,
        tenant: &str,
    ) -> Result<Vec<api::MonitoringRule>> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        OversightError::unless_role(who, STAFF, "reading the monitoring rules")?;
        Ok(self
            .rules
            .of(scope.tenant().as_str())
            .iter()
            .map(|r| r.api.clone())
            .collect())
    }

    pub async fn list_alerts(
        &self,
        who: &Identity,
        tenant: &str,
        state: i32,
        min_severity: i32,
        cursor: Cursor,
    ) -> Result<(Vec<api::Alert>, String)> {
        OversightError::unless_role(who, STAFF, "reading alerts")?;
        let asked = api::Alert {
            state,
            ..Default::default()
        };
        let states = asked_states(&asked, state)?;
        let (alerts, next) = self
            .page::<api::Alert>(who, tenant, String::new(), states, cursor)
            .await?;
        // A supervisor sees its departments' duties: the page is filtered after reading, so it
        // may hold fewer than asked; the token goes on from the last row read.
        let alerts = alerts
            .into_iter()
            .filter(|a| a.severity >= min_severity && self.sees(who, &a.duties))
            .collect();
        Ok((alerts, next))
    }

    async fn visible_alert(
        &self,
        who: &Identity,
        scope: &TenantScope,
        id: String,
    ) -> Result<api::Alert> {
        let found = self
            .in_scope(scope, move |conn, scope, _| {
                db::get::<api::Alert>(conn, scope, &id).map(|a| (a, id))
            })
            .await?;
        match found {
            (Some(a), _) if self.sees(who, &a.duties) => Ok(a),
            (_, id) => Err(OversightError::not_found("alert", id)),
        }
    }

    pub async fn get_alert(&self, who: &Identity, tenant: &str, id: String) -> Result<api::Alert> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        OversightError::unless_role(who, STAFF, "reading alerts")?;
        self.visible_alert(who, &scope, id).await
    }

    /// Acknowledges, assigns or closes an alert `who` sees.
    pub async fn handle_alert(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        step: Step,
        text: String,
    ) -> Result<api::Alert> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, SUPERVISING, "handling an alert")?;
        let field = match step {
            Step::Assign => Some(("assignee", "the subject who handles it")),
            Step::Close => Some(("note", "what was done about it")),
            Step::Acknowledge => None,
        };
        if let Some((field, rule)) = field
            && text.trim().is_empty()
        {
            return Err(OversightError::invalid(
                "alert",
                vec![FieldViolation::new(field, format!("required: {rule}"))],
            ));
        }
        // Visibility first: an alert of another department's duty is not found.
        self.visible_alert(who, &scope, id.clone()).await?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut a = db::get::<api::Alert>(conn, scope, &id)?
                .ok_or_else(|| OversightError::not_found("alert", id.clone()))?;
            let state = AlertState::of(&a).ok_or_else(|| OversightError::Corrupt(subject(&id)))?;
            let next = transition(state, step, &id)?;
            a.state = next.to_api() as i32;
            let ty = match step {
                Step::Acknowledge => api::ALERT_ACKNOWLEDGED,
                Step::Assign => api::ALERT_ASSIGNED,
                Step::Close => api::ALERT_CLOSED,
            };
            if a.acknowledged_by.is_empty() {
                a.acknowledged_by = who.subject.clone();
                a.acknowledged_at = Some(timestamp(now));
            }
            match step {
                Step::Assign => a.assignee = text,
                Step::Close => {
                    a.closed_by = who.subject.clone();
                    a.closed_at = Some(timestamp(now));
                    a.close_note = text;
                }
                Step::Acknowledge => {}
            }
            db::save(conn, scope, &a)?;
            emit_alert(conn, &RECORDER.change(scope, Some(&who), now), ty, &a)?;
            Ok(a)
        })
        .await
    }

    /// Forgets rule hits no window reaches any more, tenant by tenant: on PostgreSQL a tenant's
    /// rows are reachable only in its scope.
    pub async fn forget_hits(&self, tenants: &[TenantCode]) -> Result<usize> {
        let now = self.clock.now();
        let before = now - Duration::seconds(self.rules.longest_memory_secs());
        let mut forgotten = 0;
        for tenant in tenants {
            let scope = TenantScope::system(tenant.clone());
            forgotten += self
                .store
                .operate(&scope, now, move |conn, scope, _| {
                    db::forget_hits(conn, scope, before)
                })
                .await?;
        }
        Ok(forgotten)
    }
}
