//! Implementation plans (实施方案): the approval chain as one state machine, and the rules a plan
//! must meet before it is submitted (第九条, 第十条, 第十一条).

use chrono::NaiveDate;
use pdp_kit::error::{FieldViolation, StepRefused};
use pdp_kit::identity::TenantCode;
use pdp_proto::pdp::planning::v1 as api;

use crate::resource::{ScopeCheck, scope_violations};

/// Where a plan version stands in the approval chain (第十条).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlanState {
    Draft,
    /// Submitted by the data bureau for review.
    Submitted,
    /// Feasibility review recorded, with the sector departments consulted.
    Reviewed,
    /// Collective decision (三重一大) recorded.
    Decided,
    /// Approved by the same-level government, with its document number.
    Approved,
    Effective,
    Rejected,
    /// Replaced by a newer version that took effect.
    Superseded,
}

/// What someone (or the scheduler) does to a plan version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Submit,
    Review,
    Decide,
    Approve,
    TakeEffect,
    Reject,
    Supersede,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Self::Submit => ":submit",
            Self::Review => ":review",
            Self::Decide => ":decide",
            Self::Approve => ":approve",
            Self::TakeEffect => "taking effect",
            Self::Reject => ":reject",
            Self::Supersede => "superseding",
        }
    }
}

impl PlanState {
    /// The one transition function of the approval chain.
    pub fn after(self, step: Step, subject: &str) -> Result<PlanState, StepRefused> {
        use PlanState::*;
        let next = match (self, step) {
            (Draft, Step::Submit) => Some(Submitted),
            (Submitted, Step::Review) => Some(Reviewed),
            (Reviewed, Step::Decide) => Some(Decided),
            (Decided, Step::Approve) => Some(Approved),
            (Approved, Step::TakeEffect) => Some(Effective),
            (Submitted | Reviewed | Decided, Step::Reject) => Some(Rejected),
            (Effective, Step::Supersede) => Some(Superseded),
            _ => None,
        };
        next.ok_or_else(|| StepRefused {
            aggregate: "plan",
            state: self.name(),
            step: step.verb(),
            missing: self.missing_before(step),
            subject: subject.into(),
            reason: self.refusal_reason(),
        })
    }

    /// The stable reason of a step refused in this state: what the plan still lacks.
    fn refusal_reason(self) -> &'static str {
        match self {
            Self::Draft => "PLAN_NOT_SUBMITTED",
            Self::Submitted => "PLAN_NOT_REVIEWED",
            Self::Reviewed => "PLAN_NOT_DECIDED",
            Self::Decided => "PLAN_NOT_APPROVED",
            Self::Approved => "PLAN_NOT_EFFECTIVE",
            Self::Effective => "PLAN_EFFECTIVE",
            Self::Rejected => "PLAN_REJECTED",
            Self::Superseded => "PLAN_SUPERSEDED",
        }
    }

    /// Why `step` cannot happen now: the next step of the chain, or why none can.
    fn missing_before(self, step: Step) -> &'static str {
        use PlanState::*;
        match self {
            Draft if step == Step::Reject => {
                "a draft is not under review; submit it (:submit) or keep editing it"
            }
            Draft => "the plan must be submitted first (:submit)",
            Submitted => "the feasibility review must be recorded first (:review)",
            Reviewed => "the collective decision (三重一大) must be recorded first (:decide)",
            Decided => "the government's approval must be recorded first (:approve)",
            Approved => "the plan is approved and waits for its effective date",
            Effective => {
                "an approved plan does not change; record an amendment (POST …/amendments)"
            }
            Rejected => "the plan was rejected; draft a new plan",
            Superseded => "this version was superseded by a newer one",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Submitted => "SUBMITTED",
            Self::Reviewed => "REVIEWED",
            Self::Decided => "DECIDED",
            Self::Approved => "APPROVED",
            Self::Effective => "EFFECTIVE",
            Self::Rejected => "REJECTED",
            Self::Superseded => "SUPERSEDED",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub const ALL: [PlanState; 8] = [
        Self::Draft,
        Self::Submitted,
        Self::Reviewed,
        Self::Decided,
        Self::Approved,
        Self::Effective,
        Self::Rejected,
        Self::Superseded,
    ];

    /// Approved versions are immutable: they change only by amendment.
    pub fn is_approved(self) -> bool {
        matches!(self, Self::Approved | Self::Effective)
    }

    pub fn to_api(self) -> api::PlanState {
        match self {
            Self::Draft => api::PlanState::Draft,
            Self::Submitted => api::PlanState::Submitted,
            Self::Reviewed => api::PlanState::Reviewed,
            Self::Decided => api::PlanState::Decided,
            Self::Approved => api::PlanState::Approved,
            Self::Effective => api::PlanState::Effective,
            Self::Rejected => api::PlanState::Rejected,
            Self::Superseded => api::PlanState::Superseded,
        }
    }

    pub fn from_api(state: api::PlanState) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_api() == state)
    }
}

fn required(violations: &mut Vec<FieldViolation>, field: &str, value: &str, rule: &str) {
    if value.trim().is_empty() {
        violations.push(FieldViolation::new(field, format!("required: {rule}")));
    }
}

/// Parses a civil date field, recording a violation when it is missing or malformed.
pub fn date_field(
    violations: &mut Vec<FieldViolation>,
    field: &str,
    value: &str,
    rule: &str,
) -> Option<NaiveDate> {
    if value.trim().is_empty() {
        violations.push(FieldViolation::new(field, format!("required: {rule}")));
        return None;
    }
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(day) => Some(day),
        Err(_) => {
            violations.push(FieldViolation::new(
                field,
                format!("`{value}` is not a date of the form YYYY-MM-DD"),
            ));
            None
        }
    }
}

const ART_9: &str = "第九条";

/// The authorization mode rule: set, and whole (整体) for the province's plans (第九条, R-PLAN-1).
pub fn mode_violations(tenant: &TenantCode, mode: i32) -> Vec<FieldViolation> {
    let mode = api::AuthorizationMode::try_from(mode).unwrap_or_default();
    if mode == api::AuthorizationMode::Unspecified {
        return vec![FieldViolation::new(
            "plan.mode",
            format!("required: whole, by domain or by scenario ({ART_9})"),
        )];
    }
    if tenant.is_province() && mode != api::AuthorizationMode::Whole {
        return vec![FieldViolation::new(
            "plan.mode",
            format!("the province's plans use the whole mode (整体授权, {ART_9})"),
        )];
    }
    Vec::new()
}

/// Every missing or invalid section of a plan about to be submitted, each naming its clause of
/// 第十一条, in one list. `scope` answers for the resources the scope names.
pub fn submission_violations(
    tenant: &TenantCode,
    name: &str,
    mode: i32,
    sections: &api::PlanSections,
    scope: &dyn ScopeCheck,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    required(
        &mut v,
        "plan.name",
        name,
        "the name of the authorized operation (第十一条(一))",
    );
    v.extend(mode_violations(tenant, mode));

    let rule = "necessity and feasibility (第十一条(二))";
    match &sections.necessity {
        None => v.push(FieldViolation::new(
            "plan.sections.necessity",
            format!("required: {rule}"),
        )),
        Some(n) => {
            for (field, value) in [
                ("lifecycle_management", &n.lifecycle_management),
                ("social_demand", &n.social_demand),
                ("market_size", &n.market_size),
                ("expected_results", &n.expected_results),
                ("benefits", &n.benefits),
                ("risk_control", &n.risk_control),
            ] {
                required(
                    &mut v,
                    &format!("plan.sections.necessity.{field}"),
                    value,
                    rule,
                );
            }
        }
    }

    let rule = "the operator's conditions: funds, management, technology, service, security (第十一条(三))";
    match &sections.operator_conditions {
        None => v.push(FieldViolation::new(
            "plan.sections.operator_conditions",
            format!("required: {rule}"),
        )),
        Some(c) => {
            for (field, value) in [
                ("funding", &c.funding),
                ("management", &c.management),
                ("technology", &c.technology),
                ("service", &c.service),
                ("security", &c.security),
            ] {
                required(
                    &mut v,
                    &format!("plan.sections.operator_conditions.{field}"),
                    value,
                    rule,
                );
            }
        }
    }

    let rule = "the resources in scope, with update frequency and quality (第十一条(四))";
    match &sections.scope {
        Some(s) if !s.items.is_empty() => {
            for (i, item) in s.items.iter().enumerate() {
                let field = format!("plan.sections.scope.items[{i}]");
                if api::UpdateFrequency::try_from(item.update_frequency).unwrap_or_default()
                    == api::UpdateFrequency::Unspecified
                {
                    v.push(FieldViolation::new(
                        format!("{field}.update_frequency"),
                        format!("required: {rule}"),
                    ));
                }
                required(
                    &mut v,
                    &format!("{field}.data_quality"),
                    &item.data_quality,
                    rule,
                );
            }
            v.extend(scope_violations(s, scope));
        }
        _ => v.push(FieldViolation::new(
            "plan.sections.scope.items",
            format!("at least one registered resource: {rule}"),
        )),
    }

    let rule = "period, construction, technical safeguards, schedule, evaluation standards, exit \
                mechanism and asset management (第十一条(五))";
    match &sections.implementation {
        None => v.push(FieldViolation::new(
            "plan.sections.implementation",
            format!("required: {rule}"),
        )),
        Some(im) => {
            let f = "plan.sections.implementation";
            let start = date_field(&mut v, &format!("{f}.period_start"), &im.period_start, rule);
            let end = date_field(&mut v, &format!("{f}.period_end"), &im.period_end, rule);
            if let (Some(start), Some(end)) = (start, end)
                && end <= start
            {
                v.push(FieldViolation::new(
                    format!("{f}.period_end"),
                    format!("must be after period_start {start} (第十一条(五))"),
                ));
            }
            for (field, value) in [
                ("construction", &im.construction),
                ("technical_safeguards", &im.technical_safeguards),
                ("schedule", &im.schedule),
                ("evaluation_standards", &im.evaluation_standards),
                ("exit_mechanism", &im.exit_mechanism),
                ("asset_management", &im.asset_management),
            ] {
                required(&mut v, &format!("{f}.{field}"), value, rule);
            }
        }
    }

    let rule = "the application scenarios (第十一条(六))";
    match &sections.scenarios {
        Some(s) if !s.items.is_empty() => {
            for (i, item) in s.items.iter().enumerate() {
                required(
                    &mut v,
                    &format!("plan.sections.scenarios.items[{i}].name"),
                    &item.name,
                    rule,
                );
            }
        }
        _ => v.push(FieldViolation::new(
            "plan.sections.scenarios.items",
            format!("at least one: {rule}"),
        )),
    }

    v.extend(product_violations(sections.products.as_ref()));

    let rule = "cost and revenue accounting and revenue distribution (第十一条(八))";
    match &sections.accounting {
        None => v.push(FieldViolation::new(
            "plan.sections.accounting",
            format!("required: {rule}"),
        )),
        Some(a) => {
            for (field, value) in [
                ("cost_accounting", &a.cost_accounting),
                ("revenue_accounting", &a.revenue_accounting),
                ("revenue_distribution", &a.revenue_distribution),
            ] {
                required(
                    &mut v,
                    &format!("plan.sections.accounting.{field}"),
                    value,
                    rule,
                );
            }
        }
    }

    let rule =
        "data security, personal-information protection and emergency measures (第十一条(九))";
    match &sections.security {
        None => v.push(FieldViolation::new(
            "plan.sections.security",
            format!("required: {rule}"),
        )),
        Some(s) => {
            for (field, value) in [
                ("data_security", &s.data_security),
                (
                    "personal_information_protection",
                    &s.personal_information_protection,
                ),
                ("emergency_response", &s.emergency_response),
            ] {
                required(
                    &mut v,
                    &format!("plan.sections.security.{field}"),
                    value,
                    rule,
                );
            }
        }
    }

    let rule = "rights and duties of the parties and incentives (第十一条(十))";
    match &sections.rights_and_duties {
        None => v.push(FieldViolation::new(
            "plan.sections.rights_and_duties",
            format!("required: {rule}"),
        )),
        Some(r) => {
            required(
                &mut v,
                "plan.sections.rights_and_duties.rights_and_duties",
                &r.rights_and_duties,
                rule,
            );
            required(
                &mut v,
                "plan.sections.rights_and_duties.incentives",
                &r.incentives,
                rule,
            );
        }
    }

    let rule = "supervision and evaluation requirements (第十一条(十一))";
    match &sections.supervision {
        None => v.push(FieldViolation::new(
            "plan.sections.supervision",
            format!("required: {rule}"),
        )),
        Some(s) => {
            required(
                &mut v,
                "plan.sections.supervision.supervision",
                &s.supervision,
                rule,
            );
            required(
                &mut v,
                "plan.sections.supervision.evaluation",
                &s.evaluation,
                rule,
            );
        }
    }

    required(
        &mut v,
        "plan.sections.other_matters",
        &sections.other_matters,
        "other matters, or a statement that there are none (第十一条(十二))",
    );
    v
}

/// The product list covers both classes (第十一条(七), R-PLAN-2).
fn product_violations(products: Option<&api::Products>) -> Vec<FieldViolation> {
    let rule = "the products and services, covering public governance and welfare and industry \
                development (第十一条(七))";
    let mut v = Vec::new();
    let items = products.map(|p| p.items.as_slice()).unwrap_or_default();
    if items.is_empty() {
        v.push(FieldViolation::new(
            "plan.sections.products.items",
            format!("at least one of each class: {rule}"),
        ));
        return v;
    }
    for (i, item) in items.iter().enumerate() {
        required(
            &mut v,
            &format!("plan.sections.products.items[{i}].name"),
            &item.name,
            rule,
        );
        if api::ProductClass::try_from(item.class).unwrap_or_default()
            == api::ProductClass::Unspecified
        {
            v.push(FieldViolation::new(
                format!("plan.sections.products.items[{i}].class"),
                format!("required: {rule}"),
            ));
        }
    }
    for (class, label) in [
        (
            api::ProductClass::PublicGovernanceAndWelfare,
            "public governance and public welfare (公共治理、公益事业)",
        ),
        (
            api::ProductClass::IndustryDevelopment,
            "industry development (产业发展、行业发展)",
        ),
    ] {
        if !items.iter().any(|p| p.class == class as i32) {
            v.push(FieldViolation::new(
                "plan.sections.products.items",
                format!("no product of the class {label}: the list must cover both classes (第十一条(七))"),
            ));
        }
    }
    v
}

/// Replaces the sections present in `change` (an update of a draft or an amendment) and names
/// them, so that an amendment records what it changed.
pub fn merge_sections(base: &mut api::PlanSections, change: api::PlanSections) -> Vec<String> {
    let mut changed = Vec::new();
    macro_rules! take {
        ($($field:ident),*) => {$(
            if let Some(value) = change.$field {
                if base.$field.as_ref() != Some(&value) {
                    changed.push(stringify!($field).to_string());
                }
                base.$field = Some(value);
            }
        )*};
    }
    take!(
        necessity,
        operator_conditions,
        scope,
        implementation,
        scenarios,
        products,
        accounting,
        security,
        rights_and_duties,
        supervision
    );
    if !change.other_matters.is_empty() && change.other_matters != base.other_matters {
        changed.push("other_matters".into());
        base.other_matters = change.other_matters;
    }
    changed
}

// === the records of the approval chain (第十条) ===

const CHAIN: &str = "第十条";
const DATED_WHEN_DONE: &str = "a record of the chain is dated when it happened";

/// The chain's records are dated when they happened: never after the day they are recorded, and
/// each on or after the record it rests on (第十条: review, then decision, then approval).
fn in_time_order(
    v: &mut Vec<FieldViolation>,
    field: &str,
    day: Option<NaiveDate>,
    rests_on: Option<(&str, NaiveDate)>,
    today: NaiveDate,
) {
    let Some(day) = day else { return };
    if day > today {
        v.push(FieldViolation::new(
            field,
            format!("{day} is after today ({today}): {DATED_WHEN_DONE} ({CHAIN})"),
        ));
    }
    if let Some((what, earlier)) = rests_on
        && day < earlier
    {
        v.push(FieldViolation::new(
            field,
            format!("{day} is before the {what} of {earlier} it rests on ({CHAIN})"),
        ));
    }
}

/// The day of a record already on the plan (checked when it was recorded).
pub fn recorded_on(day: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

/// What a feasibility review lacks: its summary, the sector departments consulted and its date,
/// not after `today`.
pub fn review_violations(review: &api::FeasibilityReview, today: NaiveDate) -> Vec<FieldViolation> {
    let rule = format!("the feasibility review, with the sector departments consulted ({CHAIN})");
    let mut v = Vec::new();
    required(&mut v, "review.summary", &review.summary, &rule);
    if review
        .departments_consulted
        .iter()
        .all(|d| d.trim().is_empty())
    {
        v.push(FieldViolation::new(
            "review.departments_consulted",
            format!("at least one: {rule}"),
        ));
    }
    let day = date_field(&mut v, "review.reviewed_on", &review.reviewed_on, &rule);
    in_time_order(&mut v, "review.reviewed_on", day, None, today);
    v
}

/// What a collective decision lacks; when it is complete, whether it agreed (a decision that does
/// not agree rejects the plan).
pub fn decision_outcome(
    decision: &api::CollectiveDecision,
    reviewed_on: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<api::DecisionOutcome, Vec<FieldViolation>> {
    let rule =
        format!("the collective decision (三重一大) with its date, body and outcome ({CHAIN})");
    let mut v = Vec::new();
    let day = date_field(&mut v, "decision.decided_on", &decision.decided_on, &rule);
    let review = reviewed_on.map(|d| ("feasibility review", d));
    in_time_order(&mut v, "decision.decided_on", day, review, today);
    required(&mut v, "decision.body", &decision.body, &rule);
    let outcome = api::DecisionOutcome::try_from(decision.outcome).unwrap_or_default();
    if outcome == api::DecisionOutcome::Unspecified {
        v.push(FieldViolation::new(
            "decision.outcome",
            format!("agreed or not agreed: {rule}"),
        ));
    }
    if v.is_empty() { Ok(outcome) } else { Err(v) }
}

/// The reason recorded when the collective decision does not agree.
pub const NOT_AGREED: &str = "the collective decision (三重一大) did not agree";

/// What a government approval lacks: its document number, its date, and an effective date not
/// before it.
/// Not after today, and on or after the decision it rests on; the effective date alone may be
/// ahead.
pub fn approval_violations(
    approval: &api::GovernmentApproval,
    decided_on: Option<NaiveDate>,
    today: NaiveDate,
) -> Vec<FieldViolation> {
    let rule = format!("the same-level government's approval ({CHAIN})");
    let mut v = Vec::new();
    required(
        &mut v,
        "approval.document_number",
        &approval.document_number,
        &rule,
    );
    let approved = date_field(&mut v, "approval.approved_on", &approval.approved_on, &rule);
    let decision = decided_on.map(|d| ("collective decision", d));
    in_time_order(&mut v, "approval.approved_on", approved, decision, today);
    let effective = date_field(
        &mut v,
        "approval.effective_on",
        &approval.effective_on,
        "the day the plan takes effect",
    );
    if let (Some(a), Some(e)) = (approved, effective)
        && e < a
    {
        v.push(FieldViolation::new(
            "approval.effective_on",
            format!("cannot be before approved_on {a}"),
        ));
    }
    v
}

/// The reasons of a rejection, blank ones dropped; at least one is required.
pub fn rejection_reasons(reasons: Vec<String>) -> Result<Vec<String>, Vec<FieldViolation>> {
    let reasons: Vec<String> = reasons
        .into_iter()
        .filter(|r| !r.trim().is_empty())
        .collect();
    if reasons.is_empty() {
        return Err(vec![FieldViolation::new("reasons", "at least one reason")]);
    }
    Ok(reasons)
}

// === amendments (第十条: an approved plan changes only by amendment) ===

/// What an amendment request lacks: its kind and its reason.
pub fn amendment_violations(kind: api::AmendmentKind, reason: &str) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if kind == api::AmendmentKind::Unspecified {
        v.push(FieldViolation::new(
            "kind",
            format!(
                "minor or major ({CHAIN}: a major change goes through the approval chain again)"
            ),
        ));
    }
    if reason.trim().is_empty() {
        v.push(FieldViolation::new(
            "reason",
            format!("required: why the approved plan changes ({CHAIN})"),
        ));
    }
    v
}

/// What a minor amendment may change: wording that changes no obligation. Everything else — the
/// data scope and its resources, the products and their classes, the operator's conditions, the
/// term and implementation, the scenarios, accounting and revenue, security, supervision, rights
/// and duties, the mode — changes what someone must do, and goes through the chain again (第十条).
pub const MINOR_MAY_CHANGE: [&str; 3] = ["name", "necessity", "other_matters"];

/// What makes a minor amendment not minor: a change outside [`MINOR_MAY_CHANGE`], named; and a
/// minor one still says who decided it.
pub fn minor_amendment_violations(changed: &[String], decided_by: &str) -> Vec<FieldViolation> {
    let mut v: Vec<FieldViolation> = changed
        .iter()
        .filter(|c| !MINOR_MAY_CHANGE.contains(&c.as_str()))
        .map(|c| {
            let field = if c == "name" {
                c.clone()
            } else {
                format!("sections.{c}")
            };
            FieldViolation::new(
                field,
                format!(
                    "`{c}` changes what someone must do: amend it as major, through the chain \
                     again ({CHAIN}); a minor amendment changes only {}",
                    MINOR_MAY_CHANGE.join(", ")
                ),
            )
        })
        .collect();
    if decided_by.trim().is_empty() {
        v.push(FieldViolation::new(
            "decided_by",
            format!("required: who decided the minor change ({CHAIN})"),
        ));
    }
    v
}

/// Why a plan version in `state` cannot be amended, or `None` when it can: only the version in
/// effect is amended.
pub fn not_amendable(state: PlanState, version: u32) -> Option<String> {
    match state {
        PlanState::Effective => None,
        s if s.is_approved() => {
            Some("the plan is approved but not yet effective; amend it once it takes effect".into())
        }
        PlanState::Superseded | PlanState::Rejected => Some(format!(
            "version {version} is {}; nothing to amend",
            state.name()
        )),
        s => Some(format!(
            "version {version} is {} and goes through the approval chain; change it there (PATCH \
             while a draft) and amend only what took effect",
            s.name()
        )),
    }
}

/// The next version of `current` with the amendment's name and sections applied, and the names of
/// what changed; refused when it changes nothing.
pub fn amended(
    current: &api::Plan,
    name: &str,
    sections: api::PlanSections,
) -> Result<(api::Plan, Vec<String>), Vec<FieldViolation>> {
    let mut next = current.clone();
    next.version = current.version + 1;
    if !name.is_empty() {
        next.name = name.to_string();
    }
    let mut changed = merge_sections(next.sections.get_or_insert_default(), sections);
    if next.name != current.name {
        changed.insert(0, "name".into());
    }
    if changed.is_empty() {
        return Err(vec![FieldViolation::new(
            "sections",
            "the amendment changes nothing",
        )]);
    }
    Ok((next, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> String {
        s.to_string()
    }

    /// The day the records of these tests are made.
    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
    }

    #[test]
    fn the_chain_is_in_time_order_and_nothing_is_dated_ahead_but_the_effective_date() {
        let review = api::FeasibilityReview {
            summary: "feasible".into(),
            departments_consulted: vec!["Transport".into()],
            reviewed_on: day("2026-03-11"),
            ..Default::default()
        };
        let v = review_violations(&review, today());
        assert_eq!(v.len(), 1);
        assert!(
            v[0].description.contains("after today (2026-03-10)"),
            "{}",
            v[0].description
        );

        let decision = api::CollectiveDecision {
            decided_on: day("2026-03-03"),
            body: "party group".into(),
            outcome: api::DecisionOutcome::Agreed as i32,
            ..Default::default()
        };
        let reviewed = NaiveDate::from_ymd_opt(2026, 3, 4);
        let err = decision_outcome(&decision, reviewed, today()).unwrap_err();
        assert_eq!(err[0].field, "decision.decided_on");
        assert!(
            err[0]
                .description
                .contains("before the feasibility review of 2026-03-04"),
            "{}",
            err[0].description
        );

        let mut approval = api::GovernmentApproval {
            document_number: "哈政函〔2026〕1号".into(),
            approved_on: day("2026-03-05"),
            effective_on: day("2026-04-01"),
            ..Default::default()
        };
        let decided = NaiveDate::from_ymd_opt(2026, 3, 6);
        let v = approval_violations(&approval, decided, today());
        assert_eq!(v[0].field, "approval.approved_on");
        assert!(
            v[0].description
                .contains("collective decision of 2026-03-06")
        );
        approval.approved_on = day("2026-03-06");
        assert!(
            approval_violations(&approval, decided, today()).is_empty(),
            "the same day, and an effective date ahead, are in order"
        );
    }

    #[test]
    fn a_review_needs_its_summary_departments_and_date() {
        let fields = |v: Vec<FieldViolation>| v.into_iter().map(|v| v.field).collect::<Vec<_>>();
        assert_eq!(
            fields(review_violations(
                &api::FeasibilityReview::default(),
                today()
            )),
            [
                "review.summary",
                "review.departments_consulted",
                "review.reviewed_on"
            ]
        );
        let review = api::FeasibilityReview {
            summary: "feasible".into(),
            departments_consulted: vec!["Transport".into()],
            reviewed_on: day("2026-03-02"),
            ..Default::default()
        };
        assert!(review_violations(&review, today()).is_empty());
    }

    #[test]
    fn a_decision_is_complete_before_its_outcome_counts() {
        let err = decision_outcome(&api::CollectiveDecision::default(), None, today()).unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
        assert!(
            err.iter().all(|v| v.description.contains("第十条")),
            "{err:?}"
        );
        let mut decision = api::CollectiveDecision {
            decided_on: day("2026-03-03"),
            body: "party group".into(),
            outcome: api::DecisionOutcome::NotAgreed as i32,
            ..Default::default()
        };
        assert_eq!(
            decision_outcome(&decision, None, today()).unwrap(),
            api::DecisionOutcome::NotAgreed
        );
        decision.decided_on = day("3 March");
        assert_eq!(
            decision_outcome(&decision, None, today()).unwrap_err()[0].field,
            "decision.decided_on"
        );
    }

    #[test]
    fn an_approval_takes_effect_no_earlier_than_it_is_given() {
        let mut approval = api::GovernmentApproval {
            document_number: "哈政函〔2026〕1号".into(),
            approved_on: day("2026-03-04"),
            effective_on: day("2026-03-03"),
            ..Default::default()
        };
        let v = approval_violations(&approval, None, today());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "approval.effective_on");
        approval.effective_on = day("2026-03-04");
        assert!(approval_violations(&approval, None, today()).is_empty());
        assert_eq!(
            approval_violations(&api::GovernmentApproval::default(), None, today()).len(),
            3
        );
    }

    #[test]
    fn a_minor_amendment_changes_no_obligation_and_says_who_decided() {
        let changed = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            minor_amendment_violations(&changed(&["name", "necessity"]), "bureau office")
                .is_empty()
        );
        let v = minor_amendment_violations(&changed(&["other_matters", "scope", "security"]), "");
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["sections.scope", "sections.security", "decided_by"]
        );
        assert!(
            v[0].description.contains("amend it as major"),
            "{}",
            v[0].description
        );
    }

    #[test]
    fn a_rejection_gives_a_reason() {
        assert!(rejection_reasons(vec![" ".into()]).is_err());
        assert_eq!(
            rejection_reasons(vec!["".into(), "incomplete".into()]).unwrap(),
            ["incomplete"]
        );
    }

    #[test]
    fn only_the_version_in_effect_is_amended_and_only_by_a_change() {
        assert!(not_amendable(PlanState::Effective, 1).is_none());
        assert!(
            not_amendable(PlanState::Approved, 1)
                .unwrap()
                .contains("not yet effective")
        );
        assert!(
            not_amendable(PlanState::Draft, 2)
                .unwrap()
                .contains("approval chain")
        );
        let v = amendment_violations(api::AmendmentKind::Unspecified, "");
        assert_eq!(
            v.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(),
            ["kind", "reason"]
        );

        let current = api::Plan {
            name: "Transit".into(),
            version: 1,
            ..Default::default()
        };
        let err = amended(&current, "", api::PlanSections::default()).unwrap_err();
        assert_eq!(err[0].field, "sections");
        let (next, changed) =
            amended(&current, "Transit and metro", api::PlanSections::default()).unwrap();
        assert_eq!((next.version, changed), (2, vec!["name".to_string()]));
    }

    #[test]
    fn the_chain_runs_in_order_and_a_skipped_step_is_named() {
        let mut state = PlanState::Draft;
        for step in [
            Step::Submit,
            Step::Review,
            Step::Decide,
            Step::Approve,
            Step::TakeEffect,
        ] {
            state = state.after(step, "plans/p").unwrap();
        }
        assert_eq!(state, PlanState::Effective);

        let refused = PlanState::Submitted
            .after(Step::Decide, "plans/p")
            .unwrap_err();
        assert!(refused.to_string().contains(":review"), "{refused}");
        assert_eq!(refused.reason, "PLAN_NOT_REVIEWED");
        let refused = PlanState::Draft
            .after(Step::Approve, "plans/p")
            .unwrap_err();
        assert!(refused.to_string().contains(":submit"), "{refused}");
        let refused = PlanState::Effective
            .after(Step::Submit, "plans/p")
            .unwrap_err();
        assert!(refused.to_string().contains("amendment"), "{refused}");
    }

    #[test]
    fn rejection_is_reachable_from_each_review_step_only() {
        for state in PlanState::ALL {
            let allowed = state.after(Step::Reject, "p").is_ok();
            let expected = matches!(
                state,
                PlanState::Submitted | PlanState::Reviewed | PlanState::Decided
            );
            assert_eq!(allowed, expected, "{state:?}");
        }
    }

    struct NoResources;
    impl ScopeCheck for NoResources {
        fn resource(&self, _: &str) -> Option<api::DataResource> {
            None
        }
    }

    #[test]
    fn an_empty_plan_is_refused_with_every_section_of_article_11() {
        let v = submission_violations(
            &"230100".parse().unwrap(),
            "",
            0,
            &api::PlanSections::default(),
            &NoResources,
        );
        let text = format!("{v:?}");
        for clause in [
            "(一)",
            "(二)",
            "(三)",
            "(四)",
            "(五)",
            "(六)",
            "(七)",
            "(八)",
            "(九)",
            "(十)",
            "(十一)",
            "(十二)",
            "第九条",
        ] {
            assert!(text.contains(clause), "{clause} missing in {text}");
        }
    }

    #[test]
    fn the_product_list_covers_both_classes() {
        let one_class = api::Products {
            items: vec![api::ProductItem {
                name: "Traffic index".into(),
                class: api::ProductClass::IndustryDevelopment as i32,
                form: "API".into(),
            }],
        };
        let v = product_violations(Some(&one_class));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].description.contains("public governance"), "{v:?}");
    }

    #[test]
    fn the_province_uses_the_whole_mode() {
        let province = TenantCode::province();
        let city: TenantCode = "230100".parse().unwrap();
        let by_domain = api::AuthorizationMode::ByDomain as i32;
        assert_eq!(mode_violations(&province, by_domain).len(), 1);
        assert!(mode_violations(&city, by_domain).is_empty());
        assert!(mode_violations(&province, api::AuthorizationMode::Whole as i32).is_empty());
    }

    #[test]
    fn merging_names_only_what_changed() {
        let mut base = api::PlanSections {
            other_matters: "none".into(),
            ..Default::default()
        };
        let changed = merge_sections(
            &mut base,
            api::PlanSections {
                accounting: Some(api::Accounting::default()),
                other_matters: "none".into(),
                ..Default::default()
            },
        );
        assert_eq!(changed, vec!["accounting".to_string()]);
    }
}
