//! Everything planning refuses, mapped once to a gRPC status by kit's [`ServiceError`].

use pdp_kit::error::{ErrorCode, FieldViolation, PreconditionViolation, ServiceError};
use pdp_kit::store::{ScopeError, StoreError};

use crate::plan::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum PlanningError {
    /// Every violated field with its rule, in one answer.
    #[error("invalid {what}: {}", summary(.violations))]
    Invalid {
        what: &'static str,
        violations: Vec<FieldViolation>,
    },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error(transparent)]
    Transition(#[from] Refusal),
    /// A precondition that is not the plan's state (an unregistered resource, a filing already
    /// acknowledged).
    #[error("{description}")]
    Precondition {
        subject: String,
        description: String,
    },
    #[error(
        "resource {resource} belongs to {owner}; only its provider unit or the data bureau changes it"
    )]
    NotOwner { resource: String, owner: String },
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    Store(#[from] StoreError),
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

impl From<diesel::result::Error> for PlanningError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

impl PlanningError {
    pub fn invalid(what: &'static str, violations: Vec<FieldViolation>) -> Self {
        Self::Invalid { what, violations }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }
}

impl ServiceError for PlanningError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } => ErrorCode::InvalidArgument,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::Transition(_) | Self::Precondition { .. } => ErrorCode::FailedPrecondition,
            Self::NotOwner { .. } => ErrorCode::PermissionDenied,
            Self::Scope(e) => e.code(),
            Self::Store(_) | Self::Corrupt(_) => ErrorCode::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "INVALID_ARGUMENT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Transition(refusal) => refusal.reason(),
            Self::Precondition { .. } => "PRECONDITION_FAILED",
            Self::NotOwner { .. } => "NOT_OWNER",
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
        match self {
            Self::Transition(refusal) => vec![refusal.violation()],
            Self::Precondition {
                subject,
                description,
            } => vec![PreconditionViolation {
                kind: "STATE".into(),
                subject: subject.clone(),
                description: description.clone(),
            }],
            _ => Vec::new(),
        }
    }
}

impl From<PlanningError> for tonic::Status {
    fn from(e: PlanningError) -> Self {
        e.to_status()
    }
}
