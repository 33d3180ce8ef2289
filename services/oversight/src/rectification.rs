//! A rectification order (责令整改, 第二十六条, 第三十条) and the order of its steps: issued, answered
//! by the operator, judged by the supervisor — accepted (rectified) or rejected (answered again).
//! Rejected twice, or not answered by its deadline, it fails: the bureau is asked to terminate.

use pdp_kit::error::StepRefused;
use pdp_proto::pdp::oversight::v1 as api;

/// Rejections after which a rectification has failed.
pub const REJECTIONS_TO_FAIL: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    Issued,
    Answered,
    Rectified,
    Failed,
}

impl OrderState {
    pub fn of(o: &api::RectificationOrder) -> Option<Self> {
        match api::RectificationState::try_from(o.state).ok()? {
            api::RectificationState::Issued => Some(Self::Issued),
            api::RectificationState::Answered => Some(Self::Answered),
            api::RectificationState::Rectified => Some(Self::Rectified),
            api::RectificationState::Failed => Some(Self::Failed),
            api::RectificationState::Unspecified => None,
        }
    }

    pub fn to_api(self) -> api::RectificationState {
        match self {
            Self::Issued => api::RectificationState::Issued,
            Self::Answered => api::RectificationState::Answered,
            Self::Rectified => api::RectificationState::Rectified,
            Self::Failed => api::RectificationState::Failed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Issued => "ISSUED",
            Self::Answered => "ANSWERED",
            Self::Rectified => "RECTIFIED",
            Self::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Respond,
    Accept,
    /// A rejection, with the rejections before it and whether the deadline has passed.
    Reject {
        earlier: u32,
        past_deadline: bool,
    },
    /// The scheduler found the deadline passed.
    DeadlinePassed,
}

/// Where `step` takes an order in `state`; `None` for a deadline that passes an order already
/// answered or done (nothing happens).
pub fn transition(
    state: OrderState,
    step: Step,
    id: &str,
) -> Result<Option<OrderState>, StepRefused> {
    let refused = |step: &'static str, missing: &'static str, reason: &'static str| StepRefused {
        aggregate: "rectification order",
        state: state.name(),
        step,
        missing,
        subject: format!("rectification-orders/{id}"),
        reason,
    };
    use OrderState::*;
    match (state, step) {
        (Issued, Step::Respond) => Ok(Some(Answered)),
        (Answered, Step::Respond) => Err(refused(
            ":respond",
            "the last answer awaits the supervisor's judgment (:judge)",
            "RECTIFICATION_AWAITS_JUDGMENT",
        )),
        (Answered, Step::Accept) => Ok(Some(Rectified)),
        (
            Answered,
            Step::Reject {
                earlier,
                past_deadline,
            },
        ) => Ok(Some(
            if earlier + 1 >= REJECTIONS_TO_FAIL || past_deadline {
                Failed
            } else {
                Issued
            },
        )),
        (Issued, Step::Accept | Step::Reject { .. }) => Err(refused(
            ":judge",
            "the operator has not answered yet (:respond)",
            "RECTIFICATION_NOT_ANSWERED",
        )),
        (Issued, Step::DeadlinePassed) => Ok(Some(Failed)),
        (Answered | Rectified | Failed, Step::DeadlinePassed) => Ok(None),
        (Rectified | Failed, _) => Err(refused(
            match step {
                Step::Respond => ":respond",
                _ => ":judge",
            },
            "the order is concluded",
            "RECTIFICATION_CONCLUDED",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderState::*;

    fn reject(earlier: u32, past_deadline: bool) -> Step {
        Step::Reject {
            earlier,
            past_deadline,
        }
    }

    #[test]
    fn answered_accepted_is_rectified() {
        let s = transition(Issued, Step::Respond, "o").unwrap().unwrap();
        assert_eq!(transition(s, Step::Accept, "o").unwrap(), Some(Rectified));
    }

    #[test]
    fn the_second_rejection_or_one_past_the_deadline_fails_it() {
        assert_eq!(
            transition(Answered, reject(0, false), "o").unwrap(),
            Some(Issued)
        );
        assert_eq!(
            transition(Answered, reject(1, false), "o").unwrap(),
            Some(Failed)
        );
        assert_eq!(
            transition(Answered, reject(0, true), "o").unwrap(),
            Some(Failed)
        );
    }

    #[test]
    fn the_deadline_fails_only_an_unanswered_order() {
        assert_eq!(
            transition(Issued, Step::DeadlinePassed, "o").unwrap(),
            Some(Failed)
        );
        assert_eq!(
            transition(Answered, Step::DeadlinePassed, "o").unwrap(),
            None
        );
        assert_eq!(
            transition(Rectified, Step::DeadlinePassed, "o").unwrap(),
            None
        );
    }

    #[test]
    fn steps_out_of_order_name_what_is_missing() {
        let e = transition(Issued, Step::Accept, "o").unwrap_err();
        assert_eq!(e.reason, "RECTIFICATION_NOT_ANSWERED");
        assert!(e.missing.contains(":respond"));
        let e = transition(Answered, Step::Respond, "o").unwrap_err();
        assert!(e.missing.contains(":judge"));
        let e = transition(Failed, Step::Respond, "o").unwrap_err();
        assert_eq!(e.reason, "RECTIFICATION_CONCLUDED");
    }
}
