//! The CloudEvents 1.0 envelope in the Kafka binary binding: attributes as `ce_*` headers, the
//! data as the JSON value, the aggregate id as the key. W3C trace context travels in
//! `traceparent`/`tracestate` headers.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::TenantCode;

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE: &str = "application/json";
/// The type of the stand-in for a record that is no event ([`Event::unreadable`]).
pub const UNREADABLE: &str = "pdp.kit.record.unreadable";

/// Headers of a record, as strings (every CloudEvents attribute pdp writes is a string).
pub type EventHeaders = BTreeMap<String, String>;

/// One domain event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UUIDv7: unique, and ordered by creation.
    pub id: String,
    /// `/tenants/<code>/<service>`.
    pub source: String,
    /// `pdp.<service>.<aggregate>.<past-tense verb>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The aggregate id; also the record key.
    pub subject: String,
    pub time: DateTime<Utc>,
    /// The `tenant` extension attribute.
    pub tenant: TenantCode,
    pub data: serde_json::Value,
    /// W3C trace context of the work that caused the event.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trace: BTreeMap<String, String>,
}

impl Event {
    /// A new event of `service` about `aggregate` `subject`, named by the architecture's rule.
    /// The current trace context is attached.
    pub fn new(
        service: &str,
        tenant: &TenantCode,
        aggregate: &str,
        verb: &str,
        subject: impl Into<String>,
        time: DateTime<Utc>,
        data: serde_json::Value,
    ) -> Self {
        let mut event = Self {
            id: Uuid::now_v7().to_string(),
            source: format!("/tenants/{tenant}/{service}"),
            event_type: format!("pdp.{service}.{aggregate}.{verb}"),
            subject: subject.into(),
            // `ce_time` carries microseconds; an event equals itself after a round trip.
            time: time.trunc_subsecs(6),
            tenant: tenant.clone(),
            data,
            trace: BTreeMap::new(),
        };
        crate::telemetry::inject_current(&mut crate::telemetry::RecordHeadersMut(&mut event.trace));
        event
    }

    /// The record key.
    pub fn key(&self) -> &str {
        &self.subject
    }

    /// The Kafka binary-mode headers.
    pub fn headers(&self) -> EventHeaders {
        let mut h = EventHeaders::new();
        h.insert("ce_specversion".into(), SPEC_VERSION.into());
        h.insert("ce_id".into(), self.id.clone());
        h.insert("ce_source".into(), self.source.clone());
        h.insert("ce_type".into(), self.event_type.clone());
        h.insert("ce_subject".into(), self.subject.clone());
        h.insert(
            "ce_time".into(),
            self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        h.insert("ce_tenant".into(), self.tenant.to_string());
        h.insert("content-type".into(), CONTENT_TYPE.into());
        for (k, v) in &self.trace {
            h.insert(k.clone(), v.clone());
        }
        h
    }

    /// The record value.
    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(&self.data).expect("JSON values serialize")
    }

    /// A record that is no event: what a subscription delivers in its place, so that the consumer
    /// parks it as a dead letter (with `reason`) instead of failing on it forever or guessing
    /// what it meant. Its id is its place in the log.
    pub fn unreadable(
        topic: &str,
        partition: i32,
        offset: i64,
        reason: String,
        payload: &[u8],
    ) -> Self {
        Self {
            id: format!("{topic}/{partition}/{offset}"),
            source: format!("/{topic}"),
            event_type: UNREADABLE.to_string(),
            subject: String::new(),
            time: Utc::now().trunc_subsecs(6),
            tenant: TenantCode::province(),
            data: serde_json::json!({
                "reason": reason,
                "payload": String::from_utf8_lossy(payload),
            }),
            trace: BTreeMap::new(),
        }
    }

    /// Why the record could not be read, when it is [`Event::unreadable`].
    pub fn unreadable_reason(&self) -> Option<&str> {
        (self.event_type == UNREADABLE)
            .then(|| self.data["reason"].as_str().unwrap_or("unreadable"))
    }

    /// Reads an event back from a record's headers and value.
    pub fn from_record(headers: &EventHeaders, payload: &[u8]) -> Result<Self, String> {
        let get = |name: &str| {
            headers
                .get(name)
                .cloned()
                .ok_or_else(|| format!("missing header {name}"))
        };
        let version = get("ce_specversion")?;
        if version != SPEC_VERSION {
            return Err(format!("unsupported ce_specversion {version}"));
        }
        let time = DateTime::parse_from_rfc3339(&get("ce_time")?)
            .map_err(|e| format!("ce_time: {e}"))?
            .with_timezone(&Utc);
        let tenant = get("ce_tenant")?
            .parse()
            .map_err(|e| format!("ce_tenant: {e}"))?;
        let data = serde_json::from_slice(payload).map_err(|e| format!("data: {e}"))?;
        let trace = ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|k| headers.get(k).map(|v| (k.to_string(), v.clone())))
            .collect();
        Ok(Self {
            id: get("ce_id")?,
            source: get("ce_source")?,
            event_type: get("ce_type")?,
            subject: get("ce_subject")?,
            time,
            tenant,
            data,
            trace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_binding_round_trips_and_names_follow_the_rule() {
        let tenant: TenantCode = "230100".parse().unwrap();
        let event = Event::new(
            "planning",
            &tenant,
            "plan",
            "approved",
            "plan-1",
            "2026-03-02T08:00:00.123456Z".parse().unwrap(),
            serde_json::json!({"version": 2}),
        );
        assert_eq!(event.event_type, "pdp.planning.plan.approved");
        assert_eq!(event.source, "/tenants/230100/planning");
        assert_eq!(event.key(), "plan-1");
        let headers = event.headers();
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_tenant"], "230100");
        assert_eq!(headers["content-type"], "application/json");
        let back = Event::from_record(&headers, &event.payload()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn a_record_without_attributes_is_rejected() {
        let err = Event::from_record(&EventHeaders::new(), b"{}").unwrap_err();
        assert!(err.contains("ce_specversion"), "{err}");
    }

    #[test]
    fn a_record_that_is_no_event_stands_in_as_unreadable_with_its_place_and_reason() {
        let stand_in =
            Event::unreadable("pdp.planning", 2, 41, "missing header ce_id".into(), b"{x");
        assert_eq!(stand_in.id, "pdp.planning/2/41");
        assert_eq!(stand_in.unreadable_reason(), Some("missing header ce_id"));
        assert_eq!(stand_in.data["payload"], "{x");
        let tenant: TenantCode = "230100".parse().unwrap();
        let ordinary = Event::new(
            "planning",
            &tenant,
            "plan",
            "approved",
            "p",
            Utc::now(),
            serde_json::json!({}),
        );
        assert_eq!(ordinary.unreadable_reason(), None);
    }
}
