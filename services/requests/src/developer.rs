//! Developer entities (开发利用主体, 第二十一条) and their scenarios' data needs: what a
//! registration and a need must say, and the one approval state machine both go through, the
//! operator deciding (第二十条(三)).

use pdp_kit::error::{FieldViolation, StepRefused};
use pdp_proto::pdp::requests::v1 as api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalState {
    pub const ALL: [Self; 3] = [Self::Pending, Self::Approved, Self::Rejected];

    /// The one transition function: a pending item is approved or rejected, once.
    pub fn after(
        self,
        approve: bool,
        aggregate: &'static str,
        subject: &str,
    ) -> Result<Self, StepRefused> {
        match self {
            Self::Pending if approve => Ok(Self::Approved),
            Self::Pending => Ok(Self::Rejected),
            decided => Err(StepRefused {
                aggregate,
                state: decided.name(),
                step: ":review",
                reason: "DECIDED_ALREADY",
                missing: "the operator has decided already: submit anew",
                subject: subject.into(),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
        }
    }

    pub fn to_api(self) -> api::ApprovalState {
        match self {
            Self::Pending => api::ApprovalState::Pending,
            Self::Approved => api::ApprovalState::Approved,
            Self::Rejected => api::ApprovalState::Rejected,
        }
    }

    pub fn from_api(state: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_api() as i32 == state)
    }
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// What is wrong with `organization`'s registration with an operator; `operator_active` says
/// whether the operator holds an ACTIVE agreement in the tenant.
pub fn registration_violations(
    d: &api::Developer,
    organization: &str,
    operator_active: bool,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if blank(&d.operator) {
        v.push(FieldViolation::new(
            "developer.operator",
            "required: the operator it develops with",
        ));
    } else if d.operator == organization {
        v.push(FieldViolation::new(
            "developer.operator",
            "an operator takes no part in re-developing the products it delivered: it cannot be \
             its own developer (第二十条(一))",
        ));
    } else if !operator_active {
        v.push(FieldViolation::new(
            "developer.operator",
            format!(
                "`{}` holds no ACTIVE agreement in this tenant (第二十一条)",
                d.operator
            ),
        ));
    }
    if blank(&d.name) {
        v.push(FieldViolation::new("developer.name", "required"));
    }
    if d.qualifications.iter().all(|q| blank(q)) {
        v.push(FieldViolation::new(
            "developer.qualifications",
            "required: what qualifies it to develop (第二十一条)",
        ));
    }
    if blank(&d.contact) {
        v.push(FieldViolation::new("developer.contact", "required"));
    }
    v
}

/// What is wrong with a scenario's data needs.
pub fn need_violations(n: &api::DevelopmentNeed) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    let scenario = n.scenario.clone().unwrap_or_default();
    for (field, value) in [
        ("need.scenario.name", &scenario.name),
        ("need.scenario.description", &scenario.description),
        ("need.scenario.serves", &scenario.serves),
    ] {
        if blank(value) {
            v.push(FieldViolation::new(
                field,
                "required: the scenario the operator reviews (第二十条(三))",
            ));
        }
    }
    if n.data_needs.iter().all(|d| blank(d)) {
        v.push(FieldViolation::new(
            "need.data_needs",
            "required: what it needs of the operator's delivered products and services (第二十一条)",
        ));
    }
    v
}

/// What is wrong with an operator's decision.
pub fn approval_violations(a: &api::Approval) -> Vec<FieldViolation> {
    if a.reasons.iter().all(|r| blank(r)) {
        vec![FieldViolation::new(
            "approval.reasons",
            "required: every decision gives its reasons",
        )]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_is_never_its_own_developer() {
        let d = api::Developer {
            operator: "beta".into(),
            name: "Beta Labs".into(),
            qualifications: vec!["ISO 27001".into()],
            contact: "labs@beta".into(),
            ..Default::default()
        };
        let v = registration_violations(&d, "beta", true);
        assert_eq!(v.len(), 1);
        assert!(v[0].description.contains("第二十条(一)"), "{v:?}");
        assert!(registration_violations(&d, "gamma", true).is_empty());
        let v = registration_violations(&d, "gamma", false);
        assert!(v[0].description.contains("no ACTIVE agreement"), "{v:?}");
    }

    #[test]
    fn decided_once() {
        let approved = ApprovalState::Pending
            .after(true, "developer", "d")
            .unwrap();
        assert_eq!(approved, ApprovalState::Approved);
        assert!(approved.after(false, "developer", "d").is_err());
        assert_eq!(approval_violations(&api::Approval::default()).len(), 1);
        assert_eq!(need_violations(&api::DevelopmentNeed::default()).len(), 4);
    }
}
