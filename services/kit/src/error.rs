//! One way from a domain error to `tonic::Status` (with google.rpc details) and from a status to
//! the HTTP JSON body the gateway answers.
//!
//! Domain services answer with [`DomainError`] (its state machines refuse with [`StepRefused`]);
//! other parts implement [`ServiceError`] on their own enum: a code from the small [`ErrorCode`]
//! table, a stable reason, and the details that help a client fix the call (every violated field
//! with its rule; the missing step of a state machine). The mapping to gRPC and to HTTP lives
//! here, once.

use serde::Serialize;
use tonic_types::{ErrorDetails, StatusExt};

/// The error domain of every pdp `ErrorInfo`.
pub const ERROR_DOMAIN: &str = "pdp.hlj.gov.cn";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidArgument,
    FailedPrecondition,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    Aborted,
    Unavailable,
    DeadlineExceeded,
    Internal,
}

impl ErrorCode {
    pub fn grpc(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Aborted => tonic::Code::Aborted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Self::Internal => tonic::Code::Internal,
        }
    }
}

/// The standard mapping of gRPC codes to HTTP statuses (google/rpc/code.proto).
pub fn http_status(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        Ok => 200,
        Cancelled => 499,
        Unknown | Internal | DataLoss => 500,
        InvalidArgument | OutOfRange => 400,
        FailedPrecondition => 400,
        DeadlineExceeded => 504,
        NotFound => 404,
        AlreadyExists | Aborted => 409,
        PermissionDenied => 403,
        Unauthenticated => 401,
        ResourceExhausted => 429,
        Unimplemented => 501,
        Unavailable => 503,
    }
}

/// A field that failed validation, and the rule it broke (with the article where the regulation
/// is the rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// A precondition that a state transition needs and does not have: the missing step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreconditionViolation {
    /// What kind of precondition, e.g. `STATE`.
    pub kind: String,
    /// What it concerns, e.g. `plans/0191…`.
    pub subject: String,
    pub description: String,
}

/// Implemented by each service's error enum.
pub trait ServiceError: std::error::Error {
    fn code(&self) -> ErrorCode;

    /// A stable machine-readable reason (`PLAN_NOT_REVIEWED`), UPPER_SNAKE_CASE.
    fn reason(&self) -> &'static str;

    fn field_violations(&self) -> Vec<FieldViolation> {
        Vec::new()
    }

    fn precondition_violations(&self) -> Vec<PreconditionViolation> {
        Vec::new()
    }

    /// The status a handler returns. Internal errors are logged in full and answered without
    /// their detail, so no SQL or stack leaks to a caller.
    fn to_status(&self) -> tonic::Status {
        let code = self.code();
        let message = if code == ErrorCode::Internal {
            tracing::error!(error = %self, reason = self.reason(), "internal error");
            "internal error".to_string()
        } else {
            self.to_string()
        };
        let mut details = ErrorDetails::new();
        details.set_error_info(
            self.reason(),
            ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        let fields = self.field_violations();
        if !fields.is_empty() {
            details.set_bad_request(
                fields
                    .into_iter()
                    .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                    .collect::<Vec<_>>(),
            );
        }
        let preconditions = self.precondition_violations();
        if !preconditions.is_empty() {
            details.set_precondition_failure(
                preconditions
                    .into_iter()
                    .map(|v| {
                        tonic_types::PreconditionViolation::new(v.kind, v.subject, v.description)
                    })
                    .collect::<Vec<_>>(),
            );
        }
        tonic::Status::with_error_details(code.grpc(), message, details)
    }
}

/// A step a state machine does not allow from where its aggregate stands, with what has to
/// happen first. Each service's state machine (one enum, one transition function) returns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step} is not allowed while the {aggregate} is {state}: {missing}")]
pub struct StepRefused {
    /// `plan`, `selection`, `agreement`.
    pub aggregate: &'static str,
    /// The state it is in, as the API names it (`SUBMITTED`).
    pub state: &'static str,
    /// The step asked for, as a caller knows it (`:decide`).
    pub step: &'static str,
    /// What is missing, in words a caller can act on ("… first (:review)").
    pub missing: &'static str,
    /// `plans/0192…/versions/1`.
    pub subject: String,
    /// The stable reason (`PLAN_NOT_REVIEWED`).
    pub reason: &'static str,
}

/// What a domain service refuses. The shapes of refusal are the platform's, so every service
/// answers with this one enum; which rule was broken is the service's, in the texts it puts in.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Every violated field with its rule, in one answer.
    #[error("invalid {what}: {}", summary(.violations))]
    Invalid {
        what: &'static str,
        violations: Vec<FieldViolation>,
    },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error(transparent)]
    OutOfOrder(#[from] StepRefused),
    /// A precondition that is not the aggregate's state (an unregistered resource, a notice that
    /// still runs, an objection not yet resolved).
    #[error("{description}")]
    Precondition {
        subject: String,
        description: String,
    },
    /// The caller may call this operation (the gateway said so) but not on this row: ownership,
    /// an invitation, a party to an agreement.
    #[error("{message}")]
    Forbidden {
        reason: &'static str,
        message: String,
    },
    /// A limit of use the caller reached (a rate, a quota): it may try again later.
    #[error("{message}")]
    Exhausted {
        reason: &'static str,
        message: String,
    },
    /// A part the operation needs is out of reach for now (a compute cluster): nothing was
    /// done, and the same call may succeed later.
    #[error("{message}")]
    Unavailable {
        reason: &'static str,
        message: String,
    },
    #[error(transparent)]
    Scope(#[from] crate::store::ScopeError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

fn summary(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Event data that is not what its type says: unreadable, as a damaged row is.
impl From<crate::events::PayloadError> for DomainError {
    fn from(e: crate::events::PayloadError) -> Self {
        Self::Corrupt(e.to_string())
    }
}

impl From<diesel::result::Error> for DomainError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

impl DomainError {
    pub fn invalid(what: &'static str, violations: Vec<FieldViolation>) -> Self {
        Self::Invalid { what, violations }
    }

    /// `Ok` when nothing was violated, else every violation at once.
    pub fn check(what: &'static str, violations: Vec<FieldViolation>) -> Result<(), Self> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Self::invalid(what, violations))
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn precondition(subject: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Precondition {
            subject: subject.into(),
            description: description.into(),
        }
    }

    /// The service's own check of the caller's role for a state-changing `step`, behind the
    /// gateway's policy (so that one too broad a policy line is not enough): PERMISSION_DENIED,
    /// reason ROLE_NOT_ALLOWED, unless the caller holds one of `roles`.
    pub fn unless_role(
        who: &crate::identity::Identity,
        roles: &[crate::identity::Role],
        step: &str,
    ) -> Result<(), Self> {
        if who.has_any(roles) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(Self::forbidden(
            "ROLE_NOT_ALLOWED",
            format!(
                "{step} is for {}; the caller holds {}",
                allowed.join(" or "),
                if who.roles.is_empty() {
                    "no role".to_string()
                } else {
                    who.roles.join(", ")
                }
            ),
        ))
    }

    pub fn forbidden(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            reason,
            message: message.into(),
        }
    }

    /// UNAVAILABLE (HTTP 503) with `reason`: nothing was done; try again later.
    pub fn unavailable(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            reason,
            message: message.into(),
        }
    }

    /// RESOURCE_EXHAUSTED (HTTP 429) with `reason`.
    pub fn exhausted(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Exhausted {
            reason,
            message: message.into(),
        }
    }
}

impl ServiceError for DomainError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } => ErrorCode::InvalidArgument,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::OutOfOrder(_) | Self::Precondition { .. } => ErrorCode::FailedPrecondition,
            Self::Forbidden { .. } => ErrorCode::PermissionDenied,
            Self::Exhausted { .. } => ErrorCode::ResourceExhausted,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::Scope(e) => e.code(),
            Self::Store(_) | Self::Corrupt(_) => ErrorCode::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "INVALID_ARGUMENT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::OutOfOrder(refused) => refused.reason,
            Self::Precondition { .. } => "PRECONDITION_FAILED",
            Self::Forbidden { reason, .. }
            | Self::Exhausted { reason, .. }
            | Self::Unavailable { reason, .. } => reason,
            Self::Scope(e) => e.reason(),
            Self::Store(_) | Self::Corrupt(_) => "INTERNAL",
        }
    }

    fn field_violations(&self) -> Vec<FieldViolation> {
        match self {
            Self::Invalid { violations, .. } => violations.clone(),
            _ => Vec::new(),
        }
    }

    fn precondition_violations(&self) -> Vec<PreconditionViolation> {
        let (subject, description) = match self {
            Self::OutOfOrder(refused) => (refused.subject.clone(), refused.to_string()),
            Self::Precondition {
                subject,
                description,
            } => (subject.clone(), description.clone()),
            _ => return Vec::new(),
        };
        vec![PreconditionViolation {
            kind: "STATE".into(),
            subject,
            description,
        }]
    }
}

impl From<DomainError> for tonic::Status {
    fn from(e: DomainError) -> Self {
        e.to_status()
    }
}

/// The HTTP answer for a status: its HTTP code and a google.rpc.Status JSON body, the shape the
/// gateway returns for every error.
pub fn status_to_http(status: &tonic::Status) -> (u16, serde_json::Value) {
    let details = status.get_error_details();
    let mut out = Vec::new();
    if let Some(info) = details.error_info() {
        out.push(serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": info.reason,
            "domain": info.domain,
            "metadata": info.metadata,
        }));
    }
    if let Some(bad) = details.bad_request() {
        out.push(serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": bad.field_violations.iter().map(|v| serde_json::json!({
                "field": v.field,
                "description": v.description,
            })).collect::<Vec<_>>(),
        }));
    }
    if let Some(pre) = details.precondition_failure() {
        out.push(serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
            "violations": pre.violations.iter().map(|v| serde_json::json!({
                "type": v.r#type,
                "subject": v.subject,
                "description": v.description,
            })).collect::<Vec<_>>(),
        }));
    }
    let body = serde_json::json!({
        "code": status.code() as i32,
        "status": format!("{:?}", status.code()),
        "message": status.message(),
        "details": out,
    });
    (http_status(status.code()), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum PlanError {
        #[error("plan is invalid: {} sections", .0.len())]
        Invalid(Vec<FieldViolation>),
        #[error("plan has not been reviewed")]
        NotReviewed,
        #[error("database is on fire: password=hunter2")]
        Store,
    }

    impl ServiceError for PlanError {
        fn code(&self) -> ErrorCode {
            match self {
                Self::Invalid(_) => ErrorCode::InvalidArgument,
                Self::NotReviewed => ErrorCode::FailedPrecondition,
                Self::Store => ErrorCode::Internal,
            }
        }

        fn reason(&self) -> &'static str {
            match self {
                Self::Invalid(_) => "PLAN_INVALID",
                Self::NotReviewed => "PLAN_NOT_REVIEWED",
                Self::Store => "STORE",
            }
        }

        fn field_violations(&self) -> Vec<FieldViolation> {
            match self {
                Self::Invalid(v) => v.clone(),
                _ => Vec::new(),
            }
        }

        fn precondition_violations(&self) -> Vec<PreconditionViolation> {
            match self {
                Self::NotReviewed => vec![PreconditionViolation {
                    kind: "STATE".into(),
                    subject: "plans/1".into(),
                    description: "review the plan before the collective decision".into(),
                }],
                _ => Vec::new(),
            }
        }
    }

    #[test]
    fn every_violation_reaches_the_status_and_the_http_body() {
        let err = PlanError::Invalid(vec![
            FieldViolation::new("name", "required (第十一条)"),
            FieldViolation::new("scope", "at least one registered resource (第十一条(四))"),
        ]);
        let status = err.to_status();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let (http, body) = status_to_http(&status);
        assert_eq!(http, 400);
        let violations = &body["details"][1]["fieldViolations"];
        assert_eq!(violations.as_array().unwrap().len(), 2);
        assert_eq!(violations[1]["field"], "scope");
        assert_eq!(body["details"][0]["reason"], "PLAN_INVALID");
    }

    #[test]
    fn precondition_failure_names_the_missing_step() {
        let (http, body) = status_to_http(&PlanError::NotReviewed.to_status());
        assert_eq!(http, 400);
        assert_eq!(body["status"], "FailedPrecondition");
        assert_eq!(
            body["details"][1]["violations"][0]["description"],
            "review the plan before the collective decision"
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_detail() {
        let status = PlanError::Store.to_status();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("hunter2"));
        assert_eq!(status_to_http(&status).0, 500);
    }

    #[test]
    fn a_step_out_of_order_names_what_is_missing_and_keeps_its_reason() {
        let refused = DomainError::from(StepRefused {
            aggregate: "plan",
            state: "SUBMITTED",
            step: ":decide",
            missing: "the feasibility review must be recorded first (:review)",
            subject: "plans/1/versions/1".into(),
            reason: "PLAN_NOT_REVIEWED",
        });
        assert_eq!(
            refused.to_string(),
            ":decide is not allowed while the plan is SUBMITTED: the feasibility review must be recorded first (:review)"
        );
        let (http, body) = status_to_http(&refused.to_status());
        assert_eq!(http, 400);
        assert_eq!(body["details"][0]["reason"], "PLAN_NOT_REVIEWED");
        assert_eq!(
            body["details"][1]["violations"][0]["subject"],
            "plans/1/versions/1"
        );
    }

    #[test]
    fn forbidden_rows_answer_403_with_their_reason_and_nothing_invalid_passes_the_check() {
        let status = DomainError::forbidden("NOT_OWNER", "resource r belongs to x").to_status();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            status_to_http(&status).1["details"][0]["reason"],
            "NOT_OWNER"
        );
        assert!(DomainError::check("plan", Vec::new()).is_ok());
        let err = DomainError::check("plan", vec![FieldViolation::new("plan.name", "required")])
            .unwrap_err();
        assert_eq!(err.field_violations().len(), 1);
        assert_eq!(err.to_string(), "invalid plan: plan.name: required");
    }
}
