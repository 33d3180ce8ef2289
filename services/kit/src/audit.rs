//! Audit records of what a service did to its data, written in the same transaction as the change
//! (through the outbox), beside the gateway's one record per request. Both go to `pdp.audit`.

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use serde_json::json;

use crate::events::Event;
use crate::identity::{Identity, TenantCode};
use crate::outbox;
use crate::store::AnyConnection;

pub const TOPIC: &str = "pdp.audit";

/// One action on one aggregate, by a verified caller or by the platform itself.
#[derive(Debug, Clone)]
pub struct Action<'a> {
    /// The service that did it (`planning`).
    pub service: &'a str,
    pub tenant: &'a TenantCode,
    /// `None` for work nobody asked for (schedulers, event handlers).
    pub actor: Option<&'a Identity>,
    /// What was done, in the service's terms: `plan.submitted`.
    pub action: &'a str,
    /// The aggregate, e.g. `plans/0192…/versions/2`.
    pub target: String,
    pub time: DateTime<Utc>,
    pub details: serde_json::Value,
}

/// Records `action` in the caller's transaction: it is audited exactly when it happens.
pub fn record(conn: &mut AnyConnection, action: Action<'_>) -> QueryResult<()> {
    let (subject, organization, roles) = match action.actor {
        Some(who) => (
            who.subject.as_str(),
            who.organization.as_str(),
            who.roles.clone(),
        ),
        None => ("system", "pdp", Vec::new()),
    };
    let event = Event::new(
        action.service,
        action.tenant,
        "action",
        "recorded",
        action.target.clone(),
        action.time,
        json!({
            "action": action.action,
            "target": action.target,
            "subject": subject,
            "organization": organization,
            "roles": roles,
            "details": action.details,
        }),
    );
    outbox::enqueue(conn, TOPIC, &event)
}
