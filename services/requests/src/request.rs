//! Data requests (数据使用申请): the one state machine, what a request must say (第十七条), how
//! its reviewers decide (第十八条), and the grant their decisions leave: the intersection of what
//! each approved.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use pdp_kit::error::{FieldViolation, StepRefused};
use pdp_proto::pdp::requests::v1 as api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Draft,
    InReview,
    Approved,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Edit,
    Submit,
    /// Every reviewer approved.
    Approve,
    /// A reviewer rejected.
    Reject,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Self::Edit => "editing",
            Self::Submit => ":submit",
            Self::Approve => "approval",
            Self::Reject => "rejection",
        }
    }
}

impl RequestState {
    pub const ALL: [Self; 4] = [Self::Draft, Self::InReview, Self::Approved, Self::Rejected];

    /// The one transition function of a request.
    pub fn after(self, step: Step, subject: &str) -> Result<Self, StepRefused> {
        use RequestState::*;
        let next = match (self, step) {
            (Draft, Step::Edit) => Some(Draft),
            (Draft, Step::Submit) => Some(InReview),
            (InReview, Step::Approve) => Some(Approved),
            (InReview, Step::Reject) => Some(Rejected),
            _ => None,
        };
        next.ok_or_else(|| StepRefused {
            aggregate: "request",
            state: self.name(),
            step: step.verb(),
            reason: "REQUEST_STEP_OUT_OF_ORDER",
            missing: match self {
                Draft => "the request must be submitted first (:submit)",
                InReview => "the request is under review; only reviews change it now",
                Approved => "the request is approved: its grant is issued",
                Rejected => "the request was rejected: file a new one",
            },
            subject: subject.into(),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::InReview => "IN_REVIEW",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
        }
    }

    pub fn to_api(self) -> api::RequestState {
        match self {
            Self::Draft => api::RequestState::Draft,
            Self::InReview => api::RequestState::InReview,
            Self::Approved => api::RequestState::Approved,
            Self::Rejected => api::RequestState::Rejected,
        }
    }

    pub fn from_api(state: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_api() as i32 == state)
    }

    pub fn of(request: &api::DataRequest) -> Self {
        Self::from_api(request.state).unwrap_or(Self::Draft)
    }
}

/// What requests know of an agreement, from its events.
#[derive(Debug, Clone)]
pub struct AgreementFacts {
    pub id: String,
    pub operator: String,
    pub active: bool,
    pub resource_ids: Vec<String>,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
}

/// What requests know of a resource, from planning's events.
#[derive(Debug, Clone, Default)]
pub struct ResourceFacts {
    pub id: String,
    /// The organization that answers for it: it reviews requests for it.
    pub provider: String,
    pub provider_unit: String,
    /// Field name → holds personal information.
    pub fields: BTreeMap<String, bool>,
    /// Field name → its registered type (string, integer, decimal, date, boolean).
    pub kinds: BTreeMap<String, String>,
    /// 分类 and 分级 (planning's DataClass and Sensitivity numbers): tables derived from it carry
    /// the strictest of their inputs'.
    pub classification: i32,
    pub sensitivity: i32,
}

const ART17: &str = "第十七条";

fn day(field: &str, value: &str, v: &mut Vec<FieldViolation>) -> Option<NaiveDate> {
    if value.is_empty() {
        return None;
    }
    // Only the canonical form: grants and their checks compare these dates as text.
    let parsed = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|d| d.to_string() == value);
    if parsed.is_none() {
        v.push(FieldViolation::new(
            field,
            format!("`{value}` is not a YYYY-MM-DD date"),
        ));
    }
    parsed
}

/// What is wrong in what a request says, draft or not: resources outside the agreement or
/// unknown, fields a resource does not have, a period outside the agreement's term.
pub fn content_violations(
    r: &api::DataRequest,
    agreement: &AgreementFacts,
    resources: &HashMap<String, ResourceFacts>,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, wanted) in r.resources.iter().enumerate() {
        let field = |part: &str| format!("request.resources[{i}].{part}");
        if !seen.insert(wanted.resource_id.as_str()) {
            v.push(FieldViolation::new(
                field("resource_id"),
                "named twice: one entry per resource",
            ));
            continue;
        }
        if !agreement.resource_ids.contains(&wanted.resource_id) {
            v.push(FieldViolation::new(
                field("resource_id"),
                format!(
                    "`{}` lies outside the scope of agreement {} ({ART17}: a request stays within \
                     the authorized resources)",
                    wanted.resource_id, agreement.id
                ),
            ));
            continue;
        }
        let Some(resource) = resources.get(&wanted.resource_id) else {
            v.push(FieldViolation::new(
                field("resource_id"),
                format!(
                    "resource `{}` is not in the catalog of this tenant",
                    wanted.resource_id
                ),
            ));
            continue;
        };
        if resource.provider.is_empty() {
            // Nobody could review it (第十八条): the catalog must say who answers for it.
            v.push(FieldViolation::new(
                field("resource_id"),
                format!(
                    "resource `{}` names no provider organization to review requests for it",
                    resource.id
                ),
            ));
        }
        let mut fields = BTreeSet::new();
        for (j, name) in wanted.fields.iter().enumerate() {
            if !resource.fields.contains_key(name) {
                let known: Vec<&String> = resource.fields.keys().collect();
                v.push(FieldViolation::new(
                    format!("request.resources[{i}].fields[{j}]"),
                    format!(
                        "resource `{}` has no field `{name}`; its fields: {known:?} ({ART17})",
                        resource.id
                    ),
                ));
            } else if !fields.insert(name) {
                v.push(FieldViolation::new(
                    format!("request.resources[{i}].fields[{j}]"),
                    "named twice",
                ));
            }
        }
    }
    let period = r.period.clone().unwrap_or_default();
    let first = day("request.period.first_day", &period.first_day, &mut v);
    let last = day("request.period.last_day", &period.last_day, &mut v);
    if let (Some(first), Some(last)) = (first, last) {
        if last < first {
            v.push(FieldViolation::new(
                "request.period.last_day",
                format!("{last} is before the first day {first}"),
            ));
        }
    }
    if first.is_some_and(|f| f < agreement.first_day) {
        v.push(FieldViolation::new(
            "request.period.first_day",
            format!(
                "before agreement {}'s first day {} ({ART17})",
                agreement.id, agreement.first_day
            ),
        ));
    }
    if last.is_some_and(|l| l > agreement.last_day) {
        v.push(FieldViolation::new(
            "request.period.last_day",
            format!(
                "past agreement {}'s last day {}: a request's period lies within its term \
                 ({ART17})",
                agreement.id, agreement.last_day
            ),
        ));
    }
    v
}

/// The parts 第十七条 requires that a submitted request lacks.
pub fn missing_parts(
    r: &api::DataRequest,
    resources: &HashMap<String, ResourceFacts>,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    let mut need = |field: &str, present: bool, what: &str| {
        if !present {
            v.push(FieldViolation::new(
                field,
                format!("required: {what} ({ART17})"),
            ));
        }
    };
    let blank = |s: &str| s.trim().is_empty();
    let scenario = r.scenario.clone().unwrap_or_default();
    need(
        "request.scenario.name",
        !blank(&scenario.name),
        "the application scenario",
    );
    need(
        "request.scenario.description",
        !blank(&scenario.description),
        "what the scenario does",
    );
    need(
        "request.scenario.serves",
        !blank(&scenario.serves),
        "the product or service it serves",
    );
    need(
        "request.resources",
        !r.resources.is_empty(),
        "the resources needed",
    );
    for (i, wanted) in r.resources.iter().enumerate() {
        need(
            &format!("request.resources[{i}].fields"),
            !wanted.fields.is_empty(),
            "the fields needed, the minimum necessary",
        );
    }
    need(
        "request.purposes",
        r.purposes.iter().any(|p| !blank(p)),
        "the purposes of use",
    );
    need(
        "request.scope_of_use",
        !blank(&r.scope_of_use),
        "the scope of use",
    );
    let period = r.period.clone().unwrap_or_default();
    need(
        "request.period.first_day",
        !blank(&period.first_day),
        "the period of use",
    );
    need(
        "request.period.last_day",
        !blank(&period.last_day),
        "the period of use",
    );
    need(
        "request.feasibility",
        !blank(&r.feasibility),
        "the feasibility analysis",
    );
    let value = r.expected_value.clone().unwrap_or_default();
    need(
        "request.expected_value.economic",
        !blank(&value.economic),
        "the expected economic value",
    );
    need(
        "request.expected_value.social",
        !blank(&value.social),
        "the expected social value",
    );
    let compliance = r.compliance.clone().unwrap_or_default();
    need(
        "request.compliance.legal_basis",
        !blank(&compliance.legal_basis),
        "the legal basis",
    );
    need(
        "request.compliance.security_measures",
        !blank(&compliance.security_measures),
        "the security measures",
    );
    // Personal information among the fields asked for must be declared, and its protection said.
    let personal: Vec<String> = r
        .resources
        .iter()
        .filter_map(|w| resources.get(&w.resource_id).map(|res| (w, res)))
        .flat_map(|(w, res)| {
            w.fields
                .iter()
                .filter(|f| res.fields.get(*f).copied().unwrap_or(false))
                .map(move |f| format!("{}.{f}", res.id))
        })
        .collect();
    for field in &personal {
        let bare = field.rsplit('.').next().unwrap_or(field);
        let declared = compliance
            .personal_information_fields
            .iter()
            .any(|d| d == field || d == bare);
        if !declared {
            v.push(FieldViolation::new(
                "request.compliance.personal_information_fields",
                format!(
                    "`{field}` is personal information (个人信息): declare it and how it is \
                     protected ({ART17})"
                ),
            ));
        }
    }
    if !personal.is_empty() && blank(&compliance.personal_information_protection) {
        v.push(FieldViolation::new(
            "request.compliance.personal_information_protection",
            format!("required: the request asks for personal information ({ART17})"),
        ));
    }
    v
}

/// The reviews a submitted request needs: the bureau's on the whole, and each provider unit's
/// on its own resources, due `provider_due_on`.
pub fn reviews_for(
    r: &api::DataRequest,
    tenant: &str,
    resources: &HashMap<String, ResourceFacts>,
    provider_due_on: NaiveDate,
) -> Vec<api::Review> {
    let all: Vec<String> = r.resources.iter().map(|w| w.resource_id.clone()).collect();
    let mut reviews = vec![api::Review {
        kind: api::ReviewerKind::Bureau as i32,
        reviewer_organization: tenant.to_string(),
        resource_ids: all,
        outcome: api::ReviewOutcome::Pending as i32,
        ..Default::default()
    }];
    let mut by_provider: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for wanted in &r.resources {
        if let Some(res) = resources.get(&wanted.resource_id) {
            by_provider
                .entry(&res.provider)
                .or_default()
                .push(res.id.clone());
        }
    }
    for (provider, resource_ids) in by_provider {
        reviews.push(api::Review {
            kind: api::ReviewerKind::Provider as i32,
            reviewer_organization: provider.to_string(),
            resource_ids,
            outcome: api::ReviewOutcome::Pending as i32,
            due_on: provider_due_on.to_string(),
            ..Default::default()
        });
    }
    reviews
}

/// What is wrong with a reviewer's decision on `review` of request `r`.
pub fn decision_violations(
    r: &api::DataRequest,
    review: &api::Review,
    d: &api::ReviewDecision,
) -> Vec<FieldViolation> {
    use api::ReviewOutcome as O;
    let mut v = Vec::new();
    let outcome = O::try_from(d.outcome).unwrap_or(O::Unspecified);
    if matches!(outcome, O::Unspecified | O::Pending) {
        v.push(FieldViolation::new(
            "review.outcome",
            "APPROVED, APPROVED_WITH_CONDITIONS or REJECTED (第十八条)",
        ));
    }
    if d.reasons.iter().all(|r| r.trim().is_empty()) {
        v.push(FieldViolation::new(
            "review.reasons",
            "required: every decision gives its reasons (第十八条)",
        ));
    }
    let conditions = d.conditions.clone().unwrap_or_default();
    let narrows = !conditions.resources.is_empty() || !conditions.last_day.is_empty();
    if outcome == O::ApprovedWithConditions && !narrows {
        v.push(FieldViolation::new(
            "review.conditions",
            "required with APPROVED_WITH_CONDITIONS: what is narrowed",
        ));
    }
    if outcome != O::ApprovedWithConditions && narrows {
        v.push(FieldViolation::new(
            "review.conditions",
            "only with APPROVED_WITH_CONDITIONS",
        ));
    }
    for (i, c) in conditions.resources.iter().enumerate() {
        let field = |part: &str| format!("review.conditions.resources[{i}].{part}");
        if !review.resource_ids.contains(&c.resource_id) {
            v.push(FieldViolation::new(
                field("resource_id"),
                format!(
                    "`{}` is not among the resources this reviewer decides on: {:?}",
                    c.resource_id, review.resource_ids
                ),
            ));
            continue;
        }
        let requested: BTreeSet<&String> = r
            .resources
            .iter()
            .filter(|w| w.resource_id == c.resource_id)
            .flat_map(|w| &w.fields)
            .collect();
        for f in c.fields.iter().chain(&c.masked_fields) {
            if !requested.contains(f) {
                v.push(FieldViolation::new(
                    field("fields"),
                    format!("`{f}` was not requested: conditions only narrow what was asked"),
                ));
            }
        }
    }
    let field = "review.conditions.last_day";
    if let Some(last) = day(field, &conditions.last_day, &mut v) {
        let period = r.period.clone().unwrap_or_default();
        let within = [&period.first_day, &period.last_day]
            .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        if let [Some(first), Some(end)] = within {
            if last < first || last > end {
                v.push(FieldViolation::new(
                    field,
                    format!("{last} must lie within the requested period {first}..{end}"),
                ));
            }
        }
    }
    v
}

/// Where the reviews leave a request in review.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A reviewer has not decided yet.
    Pending,
    Rejected,
    /// Every reviewer approved: what they all approved.
    Approved(Vec<api::GrantedResource>, String),
    /// Every reviewer approved, but their conditions leave no field of any resource.
    NothingLeft,
}

/// The verdict of `reviews` on `r`: one reject rejects; all approved grant the intersection of
/// the fields each approved, every field any of them masks masked, until the earliest last day.
pub fn verdict(r: &api::DataRequest, reviews: &[api::Review]) -> Verdict {
    use api::ReviewOutcome as O;
    let outcome = |rv: &api::Review| O::try_from(rv.outcome).unwrap_or(O::Unspecified);
    if reviews.iter().any(|rv| outcome(rv) == O::Rejected) {
        return Verdict::Rejected;
    }
    if reviews
        .iter()
        .any(|rv| !matches!(outcome(rv), O::Approved | O::ApprovedWithConditions))
    {
        return Verdict::Pending;
    }
    let mut last = r.period.clone().unwrap_or_default().last_day;
    let mut granted = Vec::new();
    for wanted in &r.resources {
        let mut fields: BTreeSet<String> = wanted.fields.iter().cloned().collect();
        let mut masked = BTreeSet::new();
        for rv in reviews
            .iter()
            .filter(|rv| rv.resource_ids.contains(&wanted.resource_id))
        {
            let conditions = rv.conditions.clone().unwrap_or_default();
            for c in conditions
                .resources
                .iter()
                .filter(|c| c.resource_id == wanted.resource_id)
            {
                if !c.fields.is_empty() {
                    let approved: BTreeSet<String> = c.fields.iter().cloned().collect();
                    fields = fields.intersection(&approved).cloned().collect();
                }
                masked.extend(c.masked_fields.iter().cloned());
            }
        }
        if fields.is_empty() {
            continue;
        }
        let masked: Vec<String> = masked.into_iter().filter(|m| fields.contains(m)).collect();
        granted.push(api::GrantedResource {
            resource_id: wanted.resource_id.clone(),
            fields: fields.into_iter().collect(),
            masked_fields: masked,
            // The newest load until the operator pins one.
            pinned_version: 0,
        });
    }
    for rv in reviews {
        let day = rv.conditions.clone().unwrap_or_default().last_day;
        if !day.is_empty() && day < last {
            last = day;
        }
    }
    if granted.is_empty() {
        Verdict::NothingLeft
    } else {
        Verdict::Approved(granted, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> (AgreementFacts, HashMap<String, ResourceFacts>) {
        let agreement = AgreementFacts {
            id: "agr-1".into(),
            operator: "beta".into(),
            active: true,
            resource_ids: vec!["bus".into(), "clinic".into()],
            first_day: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            last_day: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        };
        let resource = |id: &str, provider: &str, fields: &[(&str, bool)]| ResourceFacts {
            id: id.into(),
            provider: provider.into(),
            provider_unit: format!("{provider} unit"),
            fields: fields.iter().map(|(f, p)| (f.to_string(), *p)).collect(),
            kinds: fields
                .iter()
                .map(|(f, _)| (f.to_string(), "string".to_string()))
                .collect(),
            ..ResourceFacts::default()
        };
        let resources = [
            resource(
                "bus",
                "transport",
                &[("stop_id", false), ("arrival", false), ("card_no", true)],
            ),
            resource(
                "clinic",
                "health",
                &[("clinic_id", false), ("visits", false)],
            ),
            resource("outside", "transport", &[("x", false)]),
        ]
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
        (agreement, resources)
    }

    fn request() -> api::DataRequest {
        api::DataRequest {
            scenario: Some(api::Scenario {
                name: "arrival prediction".into(),
                description: "predicts bus arrivals".into(),
                serves: "arrival API".into(),
            }),
            resources: vec![
                api::RequestedResource {
                    resource_id: "bus".into(),
                    fields: vec!["stop_id".into(), "arrival".into()],
                },
                api::RequestedResource {
                    resource_id: "clinic".into(),
                    fields: vec!["clinic_id".into(), "visits".into()],
                },
            ],
            purposes: vec!["public transit information".into()],
            scope_of_use: "Harbin".into(),
            period: Some(api::Period {
                first_day: "2026-04-01".into(),
                last_day: "2026-10-31".into(),
            }),
            feasibility: "tested on samples".into(),
            expected_value: Some(api::ExpectedValue {
                economic: "fees".into(),
                social: "less waiting".into(),
            }),
            compliance: Some(api::Compliance {
                legal_basis: "the agreement".into(),
                security_measures: "sandbox only".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn fields_of(v: &[FieldViolation]) -> Vec<&str> {
        v.iter().map(|f| f.field.as_str()).collect()
    }

    #[test]
    fn a_complete_request_within_the_agreement_passes() {
        let (agreement, resources) = facts();
        let r = request();
        assert!(content_violations(&r, &agreement, &resources).is_empty());
        assert!(missing_parts(&r, &resources).is_empty());
    }

    #[test]
    fn outside_the_scope_unknown_fields_and_a_late_period_are_named() {
        let (agreement, resources) = facts();
        let mut r = request();
        r.resources[0].fields.push("colour".into());
        r.resources.push(api::RequestedResource {
            resource_id: "outside".into(),
            fields: vec!["x".into()],
        });
        r.period = Some(api::Period {
            first_day: "2026-04-01".into(),
            last_day: "2027-01-31".into(),
        });
        let v = content_violations(&r, &agreement, &resources);
        assert_eq!(
            fields_of(&v),
            [
                "request.resources[0].fields[2]",
                "request.resources[2].resource_id",
                "request.period.last_day"
            ]
        );
        assert!(
            v.iter().all(|f| f.description.contains("第十七条")),
            "{v:?}"
        );
        assert!(v[0].description.contains("colour") && v[2].description.contains("2026-12-31"));
    }

    #[test]
    fn dates_are_in_their_one_canonical_form() {
        let (agreement, resources) = facts();
        let mut r = request();
        r.period.as_mut().unwrap().first_day = "2026-4-1".into();
        let v = content_violations(&r, &agreement, &resources);
        assert_eq!(fields_of(&v), ["request.period.first_day"]);
    }

    #[test]
    fn a_resource_nobody_answers_for_cannot_be_requested() {
        let (agreement, mut resources) = facts();
        resources.get_mut("clinic").unwrap().provider.clear();
        let v = content_violations(&request(), &agreement, &resources);
        assert_eq!(fields_of(&v), ["request.resources[1].resource_id"]);
        assert!(v[0].description.contains("no provider"), "{v:?}");
    }

    #[test]
    fn personal_information_must_be_declared_and_protected() {
        let (_, resources) = facts();
        let mut r = request();
        r.resources[0].fields.push("card_no".into());
        let v = missing_parts(&r, &resources);
        assert_eq!(
            fields_of(&v),
            [
                "request.compliance.personal_information_fields",
                "request.compliance.personal_information_protection"
            ]
        );
        let compliance = r.compliance.as_mut().unwrap();
        compliance.personal_information_fields = vec!["bus.card_no".into()];
        compliance.personal_information_protection = "hashed, never shown".into();
        assert!(missing_parts(&r, &resources).is_empty());
        let empty = missing_parts(&api::DataRequest::default(), &resources);
        assert!(empty.len() >= 10, "{empty:?}");
    }

    fn decided(
        mut rv: api::Review,
        outcome: api::ReviewOutcome,
        conditions: Option<api::ReviewConditions>,
    ) -> api::Review {
        rv.outcome = outcome as i32;
        rv.reasons = vec!["fine".into()];
        rv.conditions = conditions;
        rv
    }

    #[test]
    fn the_grant_is_the_intersection_of_what_every_reviewer_approved() {
        let (_, resources) = facts();
        let r = request();
        let due = NaiveDate::from_ymd_opt(2026, 4, 15).unwrap();
        let reviews = reviews_for(&r, "230100", &resources, due);
        let orgs: Vec<&str> = reviews
            .iter()
            .map(|rv| rv.reviewer_organization.as_str())
            .collect();
        assert_eq!(orgs, ["230100", "health", "transport"]);
        assert_eq!(verdict(&r, &reviews), Verdict::Pending);

        let narrower = api::ReviewConditions {
            resources: vec![api::ResourceConditions {
                resource_id: "bus".into(),
                fields: vec!["stop_id".into()],
                masked_fields: vec!["stop_id".into()],
            }],
            last_day: "2026-09-30".into(),
        };
        let bureau = decided(reviews[0].clone(), api::ReviewOutcome::Approved, None);
        let health = decided(reviews[1].clone(), api::ReviewOutcome::Approved, None);
        let transport = reviews[2].clone();
        let d = api::ReviewDecision {
            outcome: api::ReviewOutcome::ApprovedWithConditions as i32,
            reasons: vec!["only stops".into()],
            conditions: Some(narrower.clone()),
        };
        assert!(decision_violations(&r, &transport, &d).is_empty());
        let transport = decided(
            transport,
            api::ReviewOutcome::ApprovedWithConditions,
            Some(narrower),
        );
        let Verdict::Approved(granted, last) =
            verdict(&r, &[bureau.clone(), health.clone(), transport.clone()])
        else {
            panic!("approved");
        };
        assert_eq!(last, "2026-09-30");
        assert_eq!(granted[0].fields, ["stop_id"]);
        assert_eq!(granted[0].masked_fields, ["stop_id"]);
        assert_eq!(granted[1].fields, ["clinic_id", "visits"]);

        let rejected = decided(health, api::ReviewOutcome::Rejected, None);
        assert_eq!(
            verdict(&r, &[bureau, rejected, transport]),
            Verdict::Rejected
        );
    }

    #[test]
    fn a_provider_narrows_only_its_own_resources_and_only_what_was_asked() {
        let (_, resources) = facts();
        let r = request();
        let reviews = reviews_for(
            &r,
            "230100",
            &resources,
            NaiveDate::from_ymd_opt(2026, 4, 15).unwrap(),
        );
        let d = api::ReviewDecision {
            outcome: api::ReviewOutcome::ApprovedWithConditions as i32,
            reasons: vec![],
            conditions: Some(api::ReviewConditions {
                resources: vec![
                    api::ResourceConditions {
                        resource_id: "clinic".into(),
                        fields: vec!["clinic_id".into()],
                        masked_fields: vec![],
                    },
                    api::ResourceConditions {
                        resource_id: "bus".into(),
                        fields: vec!["card_no".into()],
                        masked_fields: vec![],
                    },
                ],
                last_day: "2027-01-01".into(),
            }),
        };
        let v = decision_violations(&r, &reviews[2], &d);
        assert_eq!(
            fields_of(&v),
            [
                "review.reasons",
                "review.conditions.resources[0].resource_id",
                "review.conditions.resources[1].fields",
                "review.conditions.last_day"
            ]
        );
    }

    #[test]
    fn steps_out_of_order_name_the_missing_one() {
        let err = RequestState::Draft
            .after(Step::Approve, "requests/1")
            .unwrap_err();
        assert!(err.missing.contains(":submit"));
        assert_eq!(
            RequestState::Draft.after(Step::Submit, "r").unwrap(),
            RequestState::InReview
        );
        assert!(RequestState::InReview.after(Step::Edit, "r").is_err());
    }
}
