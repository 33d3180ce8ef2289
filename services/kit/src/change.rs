//! Recording a domain change: its event on the owning service's topic and its audit record on
//! `pdp.audit`, both through the outbox in the transaction that makes the change — so that a change
//! is announced and audited exactly when it happens.

use chrono::{DateTime, Utc};
use diesel::QueryResult;

use crate::audit;
use crate::events::{Event, to_json};
use crate::identity::Identity;
use crate::outbox;
use crate::store::{AnyConnection, TenantScope};
use pdp_proto::{EventPayload, EventType};

/// Who changes what, in which tenant, when.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The owning service (`planning`): the event's source and type prefix.
    pub service: &'a str,
    /// The service's topic (`pdp.planning`).
    pub topic: &'a str,
    pub scope: &'a TenantScope,
    /// `None` for work nobody asked for (schedulers, event handlers).
    pub actor: Option<&'a Identity>,
    pub now: DateTime<Utc>,
}

/// The service changes are recorded for: its name (the events' source and type prefix) and its
/// topic. Each service holds one as a constant.
#[derive(Debug, Clone, Copy)]
pub struct Recorder {
    pub service: &'static str,
    pub topic: &'static str,
}

impl Recorder {
    /// A change made by `actor` (`None` for schedulers and event handlers) in `scope` at `now`.
    pub fn change<'a>(
        &self,
        scope: &'a TenantScope,
        actor: Option<&'a Identity>,
        now: DateTime<Utc>,
    ) -> Change<'a> {
        Change {
            service: self.service,
            topic: self.topic,
            scope,
            actor,
            now,
        }
    }
}

impl Change<'_> {
    /// Writes event `ty` about `subject` (the aggregate id, also the record key) with `payload` as
    /// its data, and the audit record of the same action.
    pub fn emit<P: EventPayload>(
        &self,
        conn: &mut AnyConnection,
        ty: EventType<P>,
        subject: &str,
        payload: &P,
    ) -> QueryResult<()> {
        let name = ty.name();
        let (aggregate, verb) = name
            .strip_prefix("pdp.")
            .and_then(|rest| rest.strip_prefix(self.service))
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.split_once('.'))
            .unwrap_or_else(|| panic!("{name} is not an event type of {}", self.service));
        self.record(conn, aggregate, verb, subject, to_json(payload))
    }

    /// Writes `pdp.<service>.<aggregate>.<verb>` about `subject` (the aggregate id, also the
    /// record key) with `data`, and the audit record of the same action.
    pub fn record(
        &self,
        conn: &mut AnyConnection,
        aggregate: &str,
        verb: &str,
        subject: &str,
        data: serde_json::Value,
    ) -> QueryResult<()> {
        let tenant = self.scope.tenant();
        let event = Event::new(
            self.service,
            tenant,
            aggregate,
            verb,
            subject,
            self.now,
            data.clone(),
        );
        outbox::enqueue(conn, self.topic, &event)?;
        audit::record(
            conn,
            audit::Action {
                service: self.service,
                tenant,
                actor: self.actor,
                action: &format!("{aggregate}.{verb}"),
                target: format!("{aggregate}s/{subject}"),
                time: self.now,
                details: data,
            },
        )
    }
}

/// An instant as the protobuf `Timestamp` the APIs carry.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf `Timestamp` as an instant; `None` when absent or out of range.
pub fn instant(at: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    at.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
}
