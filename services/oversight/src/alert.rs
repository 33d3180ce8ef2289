//! An alert (预警) and the order of its handling: raised open, acknowledged, assigned, closed
//! with a note. Hits keep coming to it while it is not closed.

use pdp_kit::error::StepRefused;
use pdp_proto::pdp::oversight::v1 as api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Open,
    Acknowledged,
    Closed,
}

impl AlertState {
    pub fn of(a: &api::Alert) -> Option<Self> {
        match api::AlertState::try_from(a.state).ok()? {
            api::AlertState::Open => Some(Self::Open),
            api::AlertState::Acknowledged => Some(Self::Acknowledged),
            api::AlertState::Closed => Some(Self::Closed),
            api::AlertState::Unspecified => None,
        }
    }

    pub fn to_api(self) -> api::AlertState {
        match self {
            Self::Open => api::AlertState::Open,
            Self::Acknowledged => api::AlertState::Acknowledged,
            Self::Closed => api::AlertState::Closed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Acknowledged => "ACKNOWLEDGED",
            Self::Closed => "CLOSED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Acknowledge,
    Assign,
    Close,
}

/// Where `step` takes an alert in `state`.
pub fn transition(state: AlertState, step: Step, id: &str) -> Result<AlertState, StepRefused> {
    let refused = |step: &'static str, missing: &'static str, reason: &'static str| StepRefused {
        aggregate: "alert",
        state: state.name(),
        step,
        missing,
        subject: format!("alerts/{id}"),
        reason,
    };
    match (state, step) {
        (AlertState::Open, Step::Acknowledge) => Ok(AlertState::Acknowledged),
        (AlertState::Acknowledged, Step::Acknowledge) => Err(refused(
            ":acknowledge",
            "it is acknowledged already; assign it (:assign) or close it (:close)",
            "ALERT_ALREADY_ACKNOWLEDGED",
        )),
        // Assigning an open alert acknowledges it: someone now handles it.
        (AlertState::Open | AlertState::Acknowledged, Step::Assign) => Ok(AlertState::Acknowledged),
        (AlertState::Open | AlertState::Acknowledged, Step::Close) => Ok(AlertState::Closed),
        (AlertState::Closed, step) => Err(refused(
            match step {
                Step::Acknowledge => ":acknowledge",
                Step::Assign => ":assign",
                Step::Close => ":close",
            },
            "it is closed; a new hit of its rule raises a new alert",
            "ALERT_CLOSED",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_acknowledged_assigned_and_closed_once() {
        let s = transition(AlertState::Open, Step::Acknowledge, "a").unwrap();
        assert_eq!(s, AlertState::Acknowledged);
        assert_eq!(
            transition(s, Step::Assign, "a").unwrap(),
            AlertState::Acknowledged
        );
        let closed = transition(s, Step::Close, "a").unwrap();
        let e = transition(closed, Step::Assign, "a").unwrap_err();
        assert_eq!(e.reason, "ALERT_CLOSED");
        assert_eq!(
            transition(s, Step::Acknowledge, "a").unwrap_err().reason,
            "ALERT_ALREADY_ACKNOWLEDGED"
        );
    }
}
