//! The selection procedure (运营机构遴选): one state machine, the rules of a call, the public
//! notice period (公示, at least 5 working days counted as the Civil Code counts periods) and
//! the ranking of the shortlist.

use chrono::{DateTime, NaiveDate, Utc};
use pdp_kit::calendar::{CalendarError, WorkingCalendar, end_of_day};
use pdp_kit::error::{FieldViolation, StepRefused};
use pdp_proto::pdp::selection::v1 as api;

/// The shortest public notice, in working days (R-SEL-3).
pub const NOTICE_WORKING_DAYS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionState {
    Draft,
    /// The call is public; applications are taken within its window.
    Published,
    /// Eligible applications are ranked and the operator(s) proposed.
    Shortlisted,
    /// The result is in public notice; objections may be raised until it ends.
    InNotice,
    Concluded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Publish,
    Shortlist,
    PublishNotice,
    /// An objection was upheld: the result goes back to shortlisting.
    UpholdObjection,
    Conclude,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Self::Publish => ":publish",
            Self::Shortlist => ":shortlist",
            Self::PublishNotice => "publishing the notice",
            Self::UpholdObjection => "upholding an objection",
            Self::Conclude => ":conclude",
        }
    }
}

impl SelectionState {
    /// The one transition function of a selection.
    pub fn after(self, step: Step, subject: &str) -> Result<Self, StepRefused> {
        use SelectionState::*;
        let next = match (self, step) {
            (Draft, Step::Publish) => Some(Published),
            // Shortlisting again re-ranks (after more evaluations, or an upheld objection).
            (Published | Shortlisted, Step::Shortlist) => Some(Shortlisted),
            (Shortlisted, Step::PublishNotice) => Some(InNotice),
            (InNotice, Step::UpholdObjection) => Some(Shortlisted),
            (InNotice, Step::Conclude) => Some(Concluded),
            _ => None,
        };
        next.ok_or_else(|| StepRefused {
            aggregate: "selection",
            state: self.name(),
            step: step.verb(),
            reason: "SELECTION_STEP_OUT_OF_ORDER",
            missing: match self {
                Draft => "the call must be published first (:publish)",
                Published => "the applications must be shortlisted first (:shortlist)",
                Shortlisted => "the result must be in public notice first (POST …/notices)",
                InNotice => "the result is in public notice; conclude it when the notice has ended",
                Concluded => "the selection is concluded",
            },
            subject: subject.into(),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Published => "PUBLISHED",
            Self::Shortlisted => "SHORTLISTED",
            Self::InNotice => "IN_NOTICE",
            Self::Concluded => "CONCLUDED",
        }
    }

    /// The states a call is public in: every one after the draft.
    pub const PUBLIC: [Self; 4] = [
        Self::Published,
        Self::Shortlisted,
        Self::InNotice,
        Self::Concluded,
    ];

    pub const ALL: [Self; 5] = [
        Self::Draft,
        Self::Published,
        Self::Shortlisted,
        Self::InNotice,
        Self::Concluded,
    ];

    pub fn to_api(self) -> api::SelectionState {
        match self {
            Self::Draft => api::SelectionState::Draft,
            Self::Published => api::SelectionState::Published,
            Self::Shortlisted => api::SelectionState::Shortlisted,
            Self::InNotice => api::SelectionState::InNotice,
            Self::Concluded => api::SelectionState::Concluded,
        }
    }

    pub fn of(selection: &api::Selection) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.to_api() as i32 == selection.state)
            .unwrap_or(Self::Draft)
    }
}

/// Every problem of a call, in one list (第十三条).
pub fn call_violations(selection: &api::Selection) -> Vec<FieldViolation> {
    let mut v = evaluator_violations("selection.evaluators", &selection.evaluators, &[]);
    if selection.plan_id.trim().is_empty() {
        v.push(FieldViolation::new(
            "selection.plan_id",
            "required: the effective plan the operator is selected for (第十三条)",
        ));
    }
    if selection.name.trim().is_empty() {
        v.push(FieldViolation::new("selection.name", "required"));
    }
    let method = api::SelectionMethod::try_from(selection.method).unwrap_or_default();
    match method {
        api::SelectionMethod::Unspecified => v.push(FieldViolation::new(
            "selection.method",
            "open tender, invited tender or negotiation: a fair competitive method (第十三条)",
        )),
        api::SelectionMethod::InvitedTender if selection.invited_organizations.is_empty() => v
            .push(FieldViolation::new(
                "selection.invited_organizations",
                "an invited tender names the organizations it invites",
            )),
        _ => {}
    }
    if selection.criteria.is_empty() {
        v.push(FieldViolation::new(
            "selection.criteria",
            "at least one published scoring criterion",
        ));
    } else {
        let total: u32 = selection.criteria.iter().map(|c| c.weight).sum();
        if total != 100 {
            v.push(FieldViolation::new(
                "selection.criteria",
                format!("the weights add up to {total}; they must add up to 100"),
            ));
        }
        for (i, c) in selection.criteria.iter().enumerate() {
            if c.name.trim().is_empty() {
                v.push(FieldViolation::new(
                    format!("selection.criteria[{i}].name"),
                    "required",
                ));
            }
        }
    }
    match (&selection.opens_at, &selection.closes_at) {
        (Some(open), Some(close)) if close.seconds <= open.seconds => v.push(FieldViolation::new(
            "selection.closes_at",
            "the application window must close after it opens",
        )),
        (Some(_), Some(_)) => {}
        _ => v.push(FieldViolation::new(
            "selection.opens_at",
            "required: the application window (opens_at and closes_at)",
        )),
    }
    if selection.procedure.trim().is_empty() {
        v.push(FieldViolation::new(
            "selection.procedure",
            "required: how the selection proceeds (第十三条)",
        ));
    }
    v
}

/// The earliest last day of a notice published on `starts_on`: the 5th working day after it.
pub fn earliest_notice_end(
    calendar: &WorkingCalendar,
    starts_on: NaiveDate,
) -> Result<NaiveDate, CalendarError> {
    calendar.working_days_after(starts_on, NOTICE_WORKING_DAYS)
}

/// Checks a notice and returns when it ends: 24:00 Asia/Shanghai of its last day. A period
/// shorter than 5 working days is refused with the earliest allowed last day.
pub fn notice_end(
    calendar: &WorkingCalendar,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
    today: NaiveDate,
) -> Result<DateTime<Utc>, FieldViolation> {
    if starts_on < today {
        return Err(FieldViolation::new(
            "notice.starts_on",
            format!("a notice cannot start in the past (today is {today})"),
        ));
    }
    let earliest = earliest_notice_end(calendar, starts_on)
        .map_err(|e| FieldViolation::new("notice.ends_on", e.to_string()))?;
    if ends_on < earliest {
        return Err(FieldViolation::new(
            "notice.ends_on",
            format!(
                "a public notice lasts at least {NOTICE_WORKING_DAYS} working days, not counting the day of publication (R-SEL-3; 民法典 第二百零一条): the earliest last day for a notice published on {starts_on} is {earliest}"
            ),
        ));
    }
    Ok(end_of_day(ends_on))
}

/// The weighted total of one evaluation, 0–100.
pub fn weighted_total(criteria: &[api::Criterion], scores: &[api::Score]) -> f64 {
    criteria
        .iter()
        .map(|c| {
            let score = scores
                .iter()
                .find(|s| s.criterion == c.name)
                .map_or(0, |s| s.score);
            f64::from(c.weight) * f64::from(score) / 100.0
        })
        .sum()
}

/// Every problem of an evaluation: each published criterion scored once, 0–100.
pub fn evaluation_violations(
    criteria: &[api::Criterion],
    scores: &[api::Score],
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    for c in criteria {
        if !scores.iter().any(|s| s.criterion == c.name) {
            v.push(FieldViolation::new(
                "evaluation.scores",
                format!("criterion `{}` is not scored", c.name),
            ));
        }
    }
    for (i, s) in scores.iter().enumerate() {
        if !criteria.iter().any(|c| c.name == s.criterion) {
            v.push(FieldViolation::new(
                format!("evaluation.scores[{i}].criterion"),
                format!(
                    "`{}` is not a published criterion of this selection",
                    s.criterion
                ),
            ));
        }
        if s.score > 100 {
            v.push(FieldViolation::new(
                format!("evaluation.scores[{i}].score"),
                "a score is 0 to 100",
            ));
        }
    }
    v
}

// === what applicants see (第十三条: the result is made public by the notice, not before) ===

/// A selection as someone outside the bureau's staff sees it: before the public notice no
/// shortlist at all (no scores, ranks or proposed result); from the notice on only what the notice
/// publishes, the proposed organizations, with nobody's score or rank; never the evaluators (so
/// that nobody lobbies them).
pub fn as_seen_from_outside(mut selection: api::Selection) -> api::Selection {
    let published = matches!(
        SelectionState::of(&selection),
        SelectionState::InNotice | SelectionState::Concluded
    );
    if published {
        selection.shortlist.retain(|e| e.proposed);
        for entry in &mut selection.shortlist {
            entry.score = 0.0;
            entry.rank = 0;
        }
    } else {
        selection.shortlist.clear();
    }
    selection.evaluators.clear();
    selection
}

// === objections during the notice (公示) ===

/// Objections one objector (a subject; the public by address) may file to one selection.
pub const OBJECTIONS_PER_OBJECTOR: i64 = 3;
/// Objections a selection takes in an hour from everyone together.
pub const OBJECTIONS_PER_HOUR: i64 = 60;

/// Why another objection is not taken now, or `None`: one objector cannot bury a selection's
/// notice, and a flood waits.
pub fn objection_refusal(filed_by_objector: i64, filed_last_hour: i64) -> Option<String> {
    if filed_by_objector >= OBJECTIONS_PER_OBJECTOR {
        return Some(format!(
            "you have filed {filed_by_objector} objections to this selection, the most one \
             objector may; the bureau answers each"
        ));
    }
    if filed_last_hour >= OBJECTIONS_PER_HOUR {
        return Some(format!(
            "this selection took {OBJECTIONS_PER_HOUR} objections in the last hour; try again later"
        ));
    }
    None
}

// === evaluators (评审, 第十三条: the bureau selects, with the departments concerned) ===

const FAIR: &str = "第十三条: the bureau's selection, judged by those it names and by no applicant";

/// Every problem of a list of evaluators: each with subject, name, organization and kind, named
/// once, and none of an applicant's organization.
pub fn evaluator_violations(
    field: &str,
    evaluators: &[api::Evaluator],
    applicants: &[&str],
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    for (i, e) in evaluators.iter().enumerate() {
        let field = format!("{field}[{i}]");
        for (name, value) in [
            ("subject", &e.subject),
            ("name", &e.name),
            ("organization", &e.organization),
        ] {
            if value.trim().is_empty() {
                v.push(FieldViolation::new(
                    format!("{field}.{name}"),
                    "required: who evaluates, and for which organization",
                ));
            }
        }
        if api::EvaluatorKind::try_from(e.kind).unwrap_or_default()
            == api::EvaluatorKind::Unspecified
        {
            v.push(FieldViolation::new(
                format!("{field}.kind"),
                "staff or expert",
            ));
        }
        if evaluators[..i].iter().any(|o| o.subject == e.subject) {
            v.push(FieldViolation::new(
                format!("{field}.subject"),
                format!("`{}` is named twice", e.subject),
            ));
        }
        if applicants.contains(&e.organization.as_str()) {
            v.push(FieldViolation::new(
                format!("{field}.organization"),
                format!(
                    "`{}` has applied to this selection; its people do not evaluate it ({FAIR})",
                    e.organization
                ),
            ));
        }
    }
    v
}

/// Why `subject` of `organization` may not evaluate the applications of `selection`, or `None`
/// when it may: it is named, and neither its appointment nor its token ties it to an applicant.
pub fn evaluator_refusal(
    selection: &api::Selection,
    subject: &str,
    organization: &str,
    applicants: &[&str],
) -> Option<(&'static str, String)> {
    let Some(named) = selection.evaluators.iter().find(|e| e.subject == subject) else {
        return Some((
            "NOT_AN_EVALUATOR",
            format!(
                "only the evaluators the bureau named for this selection evaluate its \
                 applications ({FAIR}); :appointEvaluators names them"
            ),
        ));
    };
    [named.organization.as_str(), organization]
        .into_iter()
        .find(|org| applicants.contains(org))
        .map(|org| {
            (
                "EVALUATOR_TIED_TO_APPLICANT",
                format!(
                    "`{org}` has applied to this selection; its people do not evaluate it ({FAIR})"
                ),
            )
        })
}

/// Ranks eligible, evaluated applications by their mean weighted total (ties: the earlier
/// application first) and proposes the first `wanted`.
pub fn rank(applications: &[api::Application], wanted: u32) -> Vec<api::ShortlistEntry> {
    let mut scored: Vec<(f64, &api::Application)> = applications
        .iter()
        .filter(|a| a.eligible && !a.evaluations.is_empty())
        .map(|a| {
            let mean =
                a.evaluations.iter().map(|e| e.total).sum::<f64>() / a.evaluations.len() as f64;
            (mean, a)
        })
        .collect();
    scored.sort_by(|(x, a), (y, b)| y.total_cmp(x).then_with(|| a.id.cmp(&b.id)));
    scored
        .into_iter()
        .enumerate()
        .map(|(i, (score, a))| api::ShortlistEntry {
            application_id: a.id.clone(),
            organization: a.organization.clone(),
            score,
            rank: i as u32 + 1,
            proposed: (i as u32) < wanted.max(1),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluator(subject: &str, org: &str) -> api::Evaluator {
        api::Evaluator {
            subject: subject.into(),
            name: "Li".into(),
            organization: org.into(),
            kind: api::EvaluatorKind::Expert as i32,
        }
    }

    #[test]
    fn evaluators_are_named_once_complete_and_never_of_an_applicant() {
        let v = evaluator_violations(
            "evaluators",
            &[
                evaluator("e1", "university"),
                evaluator("e1", "acme"),
                api::Evaluator::default(),
            ],
            &["acme"],
        );
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "evaluators[1].subject",
                "evaluators[1].organization",
                "evaluators[2].subject",
                "evaluators[2].name",
                "evaluators[2].organization",
                "evaluators[2].kind",
            ]
        );
        assert!(
            v[1].description.contains("第十三条"),
            "{}",
            v[1].description
        );
    }

    #[test]
    fn only_a_named_evaluator_untied_to_applicants_evaluates() {
        let selection = api::Selection {
            evaluators: vec![evaluator("e1", "university"), evaluator("e2", "acme")],
            ..Default::default()
        };
        assert_eq!(
            evaluator_refusal(&selection, "e1", "university", &["acme"]),
            None
        );
        let (reason, _) = evaluator_refusal(&selection, "op", "beta", &["acme"]).unwrap();
        assert_eq!(reason, "NOT_AN_EVALUATOR");
        let (reason, text) = evaluator_refusal(&selection, "e2", "acme", &["acme"]).unwrap();
        assert_eq!(reason, "EVALUATOR_TIED_TO_APPLICANT");
        assert!(text.contains("acme"), "{text}");
        // Named for the university, but its token says it acts for an applicant.
        let (reason, _) = evaluator_refusal(&selection, "e1", "acme", &["acme"]).unwrap();
        assert_eq!(reason, "EVALUATOR_TIED_TO_APPLICANT");
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_procedure_runs_in_order_and_an_upheld_objection_goes_back() {
        let mut s = SelectionState::Draft;
        for step in [Step::Publish, Step::Shortlist, Step::PublishNotice] {
            s = s.after(step, "selections/x").unwrap();
        }
        assert_eq!(s, SelectionState::InNotice);
        assert_eq!(
            s.after(Step::UpholdObjection, "x").unwrap(),
            SelectionState::Shortlisted
        );
        let refused = SelectionState::Published
            .after(Step::Conclude, "x")
            .unwrap_err();
        assert!(refused.to_string().contains(":shortlist"), "{refused}");
        let refused = SelectionState::Draft
            .after(Step::Shortlist, "x")
            .unwrap_err();
        assert!(refused.to_string().contains(":publish"), "{refused}");
    }

    #[test]
    fn a_notice_lasts_five_working_days_after_its_publication() {
        let cal = WorkingCalendar::shipped();
        // Published Monday 2026-11-23: Tue..Mon → last day Monday 2026-11-30.
        assert_eq!(
            earliest_notice_end(&cal, day("2026-11-23")).unwrap(),
            day("2026-11-30")
        );
        // Across National Day 2026 (10-01..10-07 off, Sat 10-10 worked): published Wed 09-30,
        // working days 10-08, 10-09, 10-10 (Sat, adjusted), 10-12, 10-13.
        assert_eq!(
            earliest_notice_end(&cal, day("2026-09-30")).unwrap(),
            day("2026-10-13")
        );
        // Across the Spring Festival 2026 (02-15..02-23 off, Sat 02-14 and Sat 02-28 worked):
        // published Fri 02-13, working days 02-14 (Sat), 02-24, 02-25, 02-26, 02-27.
        assert_eq!(
            earliest_notice_end(&cal, day("2026-02-13")).unwrap(),
            day("2026-02-27")
        );
        // Published Thu 02-26: 02-27, 02-28 (Sat, adjusted), 03-02, 03-03, 03-04.
        assert_eq!(
            earliest_notice_end(&cal, day("2026-02-26")).unwrap(),
            day("2026-03-04")
        );
    }

    #[test]
    fn a_short_notice_is_refused_with_the_earliest_last_day() {
        let cal = WorkingCalendar::shipped();
        let err = notice_end(
            &cal,
            day("2026-09-30"),
            day("2026-10-12"),
            day("2026-09-30"),
        )
        .unwrap_err();
        assert_eq!(err.field, "notice.ends_on");
        assert!(
            err.description.contains("2026-10-13"),
            "{}",
            err.description
        );
        let end = notice_end(
            &cal,
            day("2026-09-30"),
            day("2026-10-13"),
            day("2026-09-30"),
        )
        .unwrap();
        // 24:00 of 10-13 in Shanghai is 16:00 UTC that day.
        assert_eq!(end.to_rfc3339(), "2026-10-13T16:00:00+00:00");
    }

    #[test]
    fn ranking_proposes_the_best_eligible_applications() {
        let app = |id: &str, eligible: bool, totals: &[f64]| api::Application {
            id: id.into(),
            organization: format!("org-{id}"),
            eligible,
            evaluations: totals
                .iter()
                .map(|t| api::Evaluation {
                    total: *t,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let ranked = rank(
            &[
                app("a", true, &[70.0, 80.0]),
                app("b", true, &[90.0]),
                app("c", false, &[99.0]),
                app("d", true, &[]),
            ],
            1,
        );
        assert_eq!(ranked.len(), 2);
        assert_eq!(
            (ranked[0].application_id.as_str(), ranked[0].proposed),
            ("b", true)
        );
        assert_eq!(
            (
                ranked[1].application_id.as_str(),
                ranked[1].score,
                ranked[1].proposed
            ),
            ("a", 75.0, false)
        );
    }

    #[test]
    fn a_call_names_every_missing_part_and_weights_add_up() {
        let v = call_violations(&api::Selection {
            method: api::SelectionMethod::InvitedTender as i32,
            criteria: vec![api::Criterion {
                name: "plan".into(),
                weight: 60,
                ..Default::default()
            }],
            ..Default::default()
        });
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "selection.plan_id",
                "selection.name",
                "selection.invited_organizations",
                "selection.criteria",
                "selection.opens_at",
                "selection.procedure"
            ]
        );
    }
}
