//! Everything agreements refuses, mapped once to a gRPC status by kit's [`ServiceError`].

use pdp_kit::error::{ErrorCode, FieldViolation, PreconditionViolation, ServiceError};
use pdp_kit::store::{ScopeError, StoreError};

use crate::agreement::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum AgreementError {
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
    #[error("{who} may not sign as {party}")]
    NotAParty { who: String, party: &'static str },
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

impl From<diesel::result::Error> for AgreementError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

impl AgreementError {
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

impl ServiceError for AgreementError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } => ErrorCode::InvalidArgument,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::Transition(_) | Self::Precondition { .. } => ErrorCode::FailedPrecondition,
            Self::NotAParty { .. } => ErrorCode::PermissionDenied,
            Self::Scope(e) => e.code(),
            Self::Store(_) | Self::Corrupt(_) => ErrorCode::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "INVALID_ARGUMENT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Transition(_) => "AGREEMENT_STEP_OUT_OF_ORDER",
            Self::Precondition { .. } => "PRECONDITION_FAILED",
            Self::NotAParty { .. } => "NOT_A_PARTY",
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

impl From<AgreementError> for tonic::Status {
    fn from(e: AgreementError) -> Self {
        e.to_status()
    }
}
