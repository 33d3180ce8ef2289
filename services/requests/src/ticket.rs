//! Data-quality tickets (第十九条): the one state machine, what a ticket must say, and a
//! resource's quality record.

use pdp_kit::error::{FieldViolation, StepRefused};
use pdp_proto::pdp::requests::v1 as api;

use crate::request::{AgreementFacts, ResourceFacts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    Open,
    Answered,
    Confirmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Answer,
    Confirm,
    Reopen,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Self::Answer => ":answer",
            Self::Confirm => ":confirm",
            Self::Reopen => ":reopen",
        }
    }
}

impl TicketState {
    pub const ALL: [Self; 3] = [Self::Open, Self::Answered, Self::Confirmed];

    /// The one transition function of a ticket.
    pub fn after(self, step: Step, subject: &str) -> Result<Self, StepRefused> {
        use TicketState::*;
        let next = match (self, step) {
            (Open, Step::Answer) => Some(Answered),
            (Answered, Step::Confirm) => Some(Confirmed),
            (Answered, Step::Reopen) => Some(Open),
            _ => None,
        };
        next.ok_or_else(|| StepRefused {
            aggregate: "ticket",
            state: self.name(),
            step: step.verb(),
            reason: "TICKET_STEP_OUT_OF_ORDER",
            missing: match self {
                Open => "the provider unit must answer first (:answer)",
                Answered => "the ticket is answered: the operator confirms or reopens it",
                Confirmed => "the ticket is closed: raise a new one",
            },
            subject: subject.into(),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Answered => "ANSWERED",
            Self::Confirmed => "CONFIRMED",
        }
    }

    pub fn to_api(self) -> api::TicketState {
        match self {
            Self::Open => api::TicketState::Open,
            Self::Answered => api::TicketState::Answered,
            Self::Confirmed => api::TicketState::Confirmed,
        }
    }

    pub fn from_api(state: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_api() as i32 == state)
    }

    pub fn of(ticket: &api::QualityTicket) -> Self {
        Self::from_api(ticket.state).unwrap_or(Self::Open)
    }
}

const ART19: &str = "第十九条";

/// What is wrong with a ticket an operator raises under `agreements` on `resource`.
pub fn raise_violations(
    t: &api::QualityTicket,
    agreements: &[AgreementFacts],
    resource: Option<&ResourceFacts>,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if !agreements
        .iter()
        .any(|a| a.resource_ids.contains(&t.resource_id))
    {
        v.push(FieldViolation::new(
            "ticket.resource_id",
            format!(
                "`{}` lies outside the caller's active agreements: tickets are raised on \
                 authorized resources ({ART19})",
                t.resource_id
            ),
        ));
    } else if let Some(resource) = resource {
        for (i, f) in t.fields.iter().enumerate() {
            if !resource.fields.contains_key(f) {
                v.push(FieldViolation::new(
                    format!("ticket.fields[{i}]"),
                    format!("resource `{}` has no field `{f}`", resource.id),
                ));
            }
        }
    } else {
        v.push(FieldViolation::new(
            "ticket.resource_id",
            format!(
                "resource `{}` is not in the catalog of this tenant",
                t.resource_id
            ),
        ));
    }
    if t.fields.is_empty() {
        v.push(FieldViolation::new(
            "ticket.fields",
            format!("required: the fields at fault ({ART19})"),
        ));
    }
    let kind = api::TicketKind::try_from(t.kind).unwrap_or(api::TicketKind::Unspecified);
    if kind == api::TicketKind::Unspecified {
        v.push(FieldViolation::new(
            "ticket.kind",
            "MISSING, WRONG, STALE or FORMAT",
        ));
    }
    if t.description.trim().is_empty() {
        v.push(FieldViolation::new(
            "ticket.description",
            format!("required: what is wrong ({ART19})"),
        ));
    }
    if t.evidence.trim().is_empty() {
        v.push(FieldViolation::new(
            "ticket.evidence",
            format!("required: what shows it ({ART19})"),
        ));
    }
    v
}

/// A resource's record from its tickets.
pub fn record(
    resource_id: &str,
    provider: &str,
    tickets: &[api::QualityTicket],
) -> api::QualityRecord {
    let mut r = api::QualityRecord {
        resource_id: resource_id.to_string(),
        provider: provider.to_string(),
        ..Default::default()
    };
    for t in tickets {
        r.raised += 1;
        for a in &t.answers {
            if a.late {
                r.answered_late += 1;
            } else {
                r.answered_in_time += 1;
            }
        }
        r.reopened += t.reopen_reasons.len() as u32;
        match TicketState::of(t) {
            TicketState::Open => {
                r.open += 1;
                r.overdue += u32::from(t.overdue);
            }
            TicketState::Confirmed => r.confirmed += 1,
            TicketState::Answered => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::NaiveDate;

    use super::*;

    #[test]
    fn a_ticket_names_authorized_fields_kind_and_evidence() {
        let agreement = AgreementFacts {
            id: "agr-1".into(),
            operator: "beta".into(),
            active: true,
            resource_ids: vec!["bus".into()],
            first_day: NaiveDate::MIN,
            last_day: NaiveDate::MAX,
        };
        let bus = ResourceFacts {
            id: "bus".into(),
            provider: "transport".into(),
            provider_unit: "unit".into(),
            fields: BTreeMap::from([("stop_id".to_string(), false)]),
            ..ResourceFacts::default()
        };
        let t = api::QualityTicket {
            resource_id: "bus".into(),
            fields: vec!["stop_id".into(), "colour".into()],
            ..Default::default()
        };
        let v = raise_violations(&t, std::slice::from_ref(&agreement), Some(&bus));
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "ticket.fields[1]",
                "ticket.kind",
                "ticket.description",
                "ticket.evidence"
            ]
        );
        let outside = api::QualityTicket {
            resource_id: "tax".into(),
            ..t
        };
        let v = raise_violations(&outside, &[agreement], None);
        assert!(v[0].description.contains("第十九条"), "{v:?}");
    }

    #[test]
    fn answered_tickets_are_confirmed_or_reopened_never_answered_twice() {
        let answered = TicketState::Open.after(Step::Answer, "t").unwrap();
        assert_eq!(
            answered.after(Step::Reopen, "t").unwrap(),
            TicketState::Open
        );
        assert!(answered.after(Step::Answer, "t").is_err());
        let err = TicketState::Open.after(Step::Confirm, "t").unwrap_err();
        assert!(err.missing.contains(":answer"));
    }
}
