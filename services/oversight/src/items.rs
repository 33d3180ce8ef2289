//! How each of oversight's aggregates is kept as a row: its kind, its state's name (refusing
//! one that names none), the party lists filter by, and what it is found by.

use pdp_proto::pdp::oversight::v1 as api;

use crate::alert::AlertState;
use crate::rectification::OrderState;
use crate::store::Item;

impl Item for api::Alert {
    const KIND: &'static str = "alert";
    fn id(&self) -> &str {
        &self.id
    }
    fn state_name(&self) -> Option<&'static str> {
        AlertState::of(self).map(AlertState::name)
    }
    fn party(&self) -> &str {
        &self.group_key
    }
    fn reference(&self) -> String {
        format!("{}|{}", self.rule_id, self.group_key)
    }
}

impl Item for api::Inspection {
    const KIND: &'static str = "inspection";
    fn id(&self) -> &str {
        &self.id
    }
    fn state_name(&self) -> Option<&'static str> {
        match api::InspectionState::try_from(self.state).ok()? {
            api::InspectionState::Open => Some("OPEN"),
            api::InspectionState::Closed => Some("CLOSED"),
            api::InspectionState::Unspecified => None,
        }
    }
    fn party(&self) -> &str {
        &self.target
    }
    fn reference(&self) -> String {
        self.agreement_id.clone()
    }
}

impl Item for api::RectificationOrder {
    const KIND: &'static str = "rectification";
    fn id(&self) -> &str {
        &self.id
    }
    fn state_name(&self) -> Option<&'static str> {
        OrderState::of(self).map(OrderState::name)
    }
    fn party(&self) -> &str {
        &self.operator
    }
    fn reference(&self) -> String {
        self.agreement_id.clone()
    }
}

impl Item for api::Incident {
    const KIND: &'static str = "incident";
    fn id(&self) -> &str {
        &self.id
    }
    fn state_name(&self) -> Option<&'static str> {
        Some(if self.major { "MAJOR" } else { "REPORTED" })
    }
    fn party(&self) -> &str {
        &self.operator
    }
}

impl Item for api::SecurityDocument {
    const KIND: &'static str = "security-document";
    fn id(&self) -> &str {
        &self.id
    }
    fn state_name(&self) -> Option<&'static str> {
        match api::SecurityDocumentKind::try_from(self.kind).ok()? {
            api::SecurityDocumentKind::Regime => Some("REGIME"),
            api::SecurityDocumentKind::ResponsePlan => Some("RESPONSE_PLAN"),
            api::SecurityDocumentKind::Unspecified => None,
        }
    }
    fn party(&self) -> &str {
        &self.operator
    }
}

impl Item for api::RiskAssessment {
    const KIND: &'static str = "risk-assessment";
    fn id(&self) -> &str {
        &self.id
    }
    fn state_name(&self) -> Option<&'static str> {
        Some("RECORDED")
    }
    fn party(&self) -> &str {
        &self.subject
    }
}

impl Item for api::Evaluation {
    const KIND: &'static str = "evaluation";
    fn id(&self) -> &str {
        &self.id
    }
    fn state_name(&self) -> Option<&'static str> {
        match api::EvaluationOutcome::try_from(self.outcome).ok()? {
            api::EvaluationOutcome::Unspecified => None,
            _ if self.passed => Some(PASSED),
            _ => Some("NOT_PASSED"),
        }
    }
    fn party(&self) -> &str {
        &self.subject
    }
    fn reference(&self) -> String {
        self.agreement_id.clone()
    }
}

/// The state of an evaluation a renewal may rest on.
pub const PASSED: &str = "PASSED";
