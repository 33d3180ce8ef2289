//! A termination case (终止处置) and the order of its steps: the operator's data destroyed, the
//! destruction witnessed by a supervisor, the handover acknowledged by the bureau, then closed.
//! Access is cut before any of these (第二十九条): the agreement's end itself cuts it, and the
//! case shows each cut with its time.

use pdp_kit::error::StepRefused;
use pdp_proto::pdp::termination::v1 as api;
use sha2::{Digest, Sha256};

/// The state the API shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseState {
    Open,
    Closed,
}

impl CaseState {
    pub fn from_api(state: i32) -> Option<Self> {
        match api::TerminationCaseState::try_from(state).ok()? {
            api::TerminationCaseState::Open => Some(Self::Open),
            api::TerminationCaseState::Closed => Some(Self::Closed),
            api::TerminationCaseState::Unspecified => None,
        }
    }

    pub fn to_api(self) -> api::TerminationCaseState {
        match self {
            Self::Open => api::TerminationCaseState::Open,
            Self::Closed => api::TerminationCaseState::Closed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Closed => "CLOSED",
        }
    }
}

/// Where an open case stands: the next step it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    AwaitingDestruction,
    AwaitingWitness,
    AwaitingHandover,
    ReadyToClose,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Requests reported the data destroyed.
    Destroyed,
    Witness,
    AcknowledgeHandover,
    Close,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Self::Destroyed => "recording the destruction",
            Self::Witness => ":witness-destruction",
            Self::AcknowledgeHandover => ":acknowledge-handover",
            Self::Close => ":close",
        }
    }
}

impl Stage {
    pub fn of(c: &api::TerminationCase) -> Self {
        let d = c.destruction.as_ref();
        if CaseState::from_api(c.state) == Some(CaseState::Closed) {
            Self::Closed
        } else if d.is_none() {
            Self::AwaitingDestruction
        } else if d.is_some_and(|d| d.witnessed_at.is_none()) {
            Self::AwaitingWitness
        } else if c.handover.is_none() {
            Self::AwaitingHandover
        } else {
            Self::ReadyToClose
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::AwaitingDestruction => "awaiting the destruction",
            Self::AwaitingWitness => "awaiting its witness",
            Self::AwaitingHandover => "awaiting the handover",
            Self::ReadyToClose => "ready to close",
            Self::Closed => "CLOSED",
        }
    }

    /// The stage after `step`, or what has to happen first.
    pub fn after(self, step: Step, subject: &str) -> Result<Self, StepRefused> {
        use Stage::*;
        let next = match (self, step) {
            (AwaitingDestruction, Step::Destroyed) => Some(AwaitingWitness),
            (AwaitingWitness, Step::Witness) => Some(AwaitingHandover),
            (AwaitingHandover, Step::AcknowledgeHandover) => Some(ReadyToClose),
            (ReadyToClose, Step::Close) => Some(Closed),
            _ => None,
        };
        next.ok_or_else(|| StepRefused {
            aggregate: "termination case",
            state: self.name(),
            step: step.verb(),
            reason: "CASE_STEP_OUT_OF_ORDER",
            missing: match self {
                AwaitingDestruction => {
                    "the operator's data is being destroyed; the requests service reports it \
                     (pdp.requests.operator_data.destroyed)"
                }
                AwaitingWitness => {
                    "a supervisor witnesses the destruction record first \
                                    (:witness-destruction)"
                }
                AwaitingHandover => {
                    "the bureau acknowledges the handover bundle first \
                                     (:acknowledge-handover)"
                }
                ReadyToClose => "every step is done: the bureau closes the case (:close)",
                Closed => "the case is closed",
            },
            subject: subject.to_string(),
        })
    }
}

/// The digest a witness signs: over each destroyed object's location, size and SHA-256, in the
/// record's order, and what was found remaining.
pub fn destruction_digest(d: &api::DestructionRecord) -> String {
    let mut h = Sha256::new();
    for o in &d.objects {
        h.update(format!("{}\n{}\n{}\n", o.location, o.size_bytes, o.sha256).as_bytes());
    }
    h.update(format!("remaining {}\n", d.remaining).as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_go_in_order_and_a_step_too_early_names_the_one_missing() {
        let mut c = api::TerminationCase {
            state: api::TerminationCaseState::Open as i32,
            ..Default::default()
        };
        assert_eq!(Stage::of(&c), Stage::AwaitingDestruction);
        let refused = Stage::of(&c)
            .after(Step::Close, "termination-cases/c1")
            .unwrap_err();
        assert!(refused.missing.contains("requests"), "{refused}");
        c.destruction = Some(api::DestructionRecord::default());
        let refused = Stage::of(&c)
            .after(Step::AcknowledgeHandover, "c")
            .unwrap_err();
        assert!(
            refused.missing.contains(":witness-destruction"),
            "{refused}"
        );
        assert_eq!(
            Stage::of(&c).after(Step::Witness, "c"),
            Ok(Stage::AwaitingHandover)
        );
        c.destruction.as_mut().unwrap().witnessed_at = Some(Default::default());
        let refused = Stage::of(&c).after(Step::Close, "c").unwrap_err();
        assert!(
            refused.missing.contains(":acknowledge-handover"),
            "{refused}"
        );
        c.handover = Some(api::Handover::default());
        assert_eq!(Stage::of(&c).after(Step::Close, "c"), Ok(Stage::Closed));
    }

    #[test]
    fn the_digest_covers_every_object_and_what_remained() {
        let mut d = api::DestructionRecord {
            objects: vec![api::DestroyedObject {
                location: "a".into(),
                size_bytes: 1,
                sha256: "00".into(),
            }],
            ..Default::default()
        };
        let first = destruction_digest(&d);
        d.remaining = 1;
        assert_ne!(first, destruction_digest(&d));
        d.remaining = 0;
        d.objects[0].size_bytes = 2;
        assert_ne!(first, destruction_digest(&d));
    }
}
