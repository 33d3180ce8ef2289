//! Products and services (公共数据产品和服务): the one state machine, from definition through the
//! pre-release reviews (第二十条(三)) and registration (第二十条(四)) to release on the data
//! exchanges (第二十四条) and withdrawal; and what a definition must hold.

use pdp_kit::error::{FieldViolation, StepRefused};
use pdp_proto::pdp::planning::v1::ProductClass;
use pdp_proto::pdp::products::v1 as api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductState {
    Draft,
    /// A developer's product before its operator.
    OperatorReview,
    BureauReview,
    /// Back with a review's findings.
    Returned,
    Registered,
    Listed,
    Withdrawn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A definition changed.
    Revise,
    /// Sent to review: a developer's to its operator first.
    Submit {
        by_developer: bool,
    },
    /// The operator approved its developer's product.
    OperatorApprove,
    /// The bureau approved: the product is registered.
    Register,
    /// A review returned it.
    Return,
    /// Released to an exchange.
    Release,
    Withdraw,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Self::Revise => "revision",
            Self::Submit { .. } => "submission (:submit)",
            Self::OperatorApprove => "the operator's approval (:review)",
            Self::Register => "the bureau's approval and registration (:review)",
            Self::Return => "returning it (:review)",
            Self::Release => "release to an exchange (:release)",
            Self::Withdraw => "withdrawal (:withdraw)",
        }
    }
}

impl ProductState {
    /// The one transition function of a product.
    pub fn after(self, step: Step, subject: &str) -> Result<Self, StepRefused> {
        use ProductState::*;
        let next = match (self, step) {
            (Draft | Returned, Step::Revise) => Some(self),
            (Draft | Returned, Step::Submit { by_developer: true }) => Some(OperatorReview),
            (
                Draft | Returned,
                Step::Submit {
                    by_developer: false,
                },
            ) => Some(BureauReview),
            (OperatorReview, Step::OperatorApprove) => Some(BureauReview),
            (OperatorReview | BureauReview, Step::Return) => Some(Returned),
            (BureauReview, Step::Register) => Some(Registered),
            (Registered | Listed, Step::Release) => Some(Listed),
            (Registered | Listed, Step::Withdraw) => Some(Withdrawn),
            _ => None,
        };
        next.ok_or_else(|| StepRefused {
            aggregate: "product",
            state: self.name(),
            step: step.verb(),
            reason: "PRODUCT_STEP_OUT_OF_ORDER",
            missing: match self {
                Draft | Returned => "the product must be submitted to review first (:submit)",
                OperatorReview => {
                    "its operator must review the developer's product first (:review)"
                }
                BureauReview => "the bureau must approve and register it first (:review)",
                Registered => "the product is registered; it is released (:release) or withdrawn",
                Listed => {
                    "the product is released; it is withdrawn (:withdraw) before anything else"
                }
                Withdrawn => "the product is withdrawn; define a new one",
            },
            subject: subject.into(),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::OperatorReview => "OPERATOR_REVIEW",
            Self::BureauReview => "BUREAU_REVIEW",
            Self::Returned => "RETURNED",
            Self::Registered => "REGISTERED",
            Self::Listed => "LISTED",
            Self::Withdrawn => "WITHDRAWN",
        }
    }

    pub const ALL: [Self; 7] = [
        Self::Draft,
        Self::OperatorReview,
        Self::BureauReview,
        Self::Returned,
        Self::Registered,
        Self::Listed,
        Self::Withdrawn,
    ];

    /// On the public list (第二十条(四)): registered, released, and withdrawn (a registration stays
    /// public once made).
    pub const PUBLIC: [Self; 3] = [Self::Registered, Self::Listed, Self::Withdrawn];

    pub fn to_api(self) -> api::ProductState {
        match self {
            Self::Draft => api::ProductState::Draft,
            Self::OperatorReview => api::ProductState::OperatorReview,
            Self::BureauReview => api::ProductState::BureauReview,
            Self::Returned => api::ProductState::Returned,
            Self::Registered => api::ProductState::Registered,
            Self::Listed => api::ProductState::Listed,
            Self::Withdrawn => api::ProductState::Withdrawn,
        }
    }

    pub fn from_api(state: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_api() as i32 == state)
    }

    pub fn of(product: &api::Product) -> Self {
        Self::from_api(product.state).unwrap_or(Self::Draft)
    }

    /// Its definition can still change.
    pub fn editable(self) -> bool {
        matches!(self, Self::Draft | Self::Returned)
    }
}

const NAME_MAX: usize = 200;
const TEXT_MAX: usize = 20_000;
const QUERY_MAX: usize = 20_000;
const PARAMETERS_MAX: usize = 20;
const INPUTS_MAX: usize = 20;

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// Every violation of a product's definition at once. Whether its inputs lie within the
/// operator's grants is the service's to check (it needs the read model).
pub fn definition_violations(p: &api::Product) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    let name = p.name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX {
        v.push(FieldViolation::new(
            "product.name",
            format!("required, at most {NAME_MAX} characters"),
        ));
    }
    if !matches!(
        p.class(),
        ProductClass::PublicGovernanceAndWelfare | ProductClass::IndustryDevelopment
    ) {
        v.push(FieldViolation::new(
            "product.class",
            "PRODUCT_CLASS_PUBLIC_GOVERNANCE_AND_WELFARE or PRODUCT_CLASS_INDUSTRY_DEVELOPMENT: \
             the two classes of the plan's products and services (R-PLAN-2)",
        ));
    }
    if p.description.trim().is_empty() || p.description.chars().count() > TEXT_MAX {
        v.push(FieldViolation::new(
            "product.description",
            format!("required, at most {TEXT_MAX} characters: what the product is and answers"),
        ));
    }
    if p.terms_of_use.trim().is_empty() || p.terms_of_use.chars().count() > TEXT_MAX {
        v.push(FieldViolation::new(
            "product.terms_of_use",
            format!(
                "required, at most {TEXT_MAX} characters: what a buyer may do with it (第二十二条 \
                 forbids passing public data to third parties)"
            ),
        ));
    }
    v.extend(input_violations(&p.inputs));
    let query = p.query.trim();
    if query.is_empty() || query.len() > QUERY_MAX {
        v.push(FieldViolation::new(
            "product.query",
            format!(
                "required, at most {QUERY_MAX} bytes: the SQL aggregate query whose \
                 disclosure-controlled answer the product delivers"
            ),
        ));
    }
    match p.form() {
        api::ProductForm::Dataset => {
            if !(1..=8760).contains(&p.refresh_hours) {
                v.push(FieldViolation::new(
                    "product.refresh_hours",
                    "a dataset is refreshed every 1 to 8760 hours",
                ));
            }
            if !p.parameters.is_empty() {
                v.push(FieldViolation::new(
                    "product.parameters",
                    "a dataset has no parameters; an API product has",
                ));
            }
        }
        api::ProductForm::Api => v.extend(parameter_violations(p)),
        api::ProductForm::Unspecified => v.push(FieldViolation::new(
            "product.form",
            "PRODUCT_FORM_DATASET or PRODUCT_FORM_API",
        )),
    }
    v
}

fn input_violations(inputs: &[api::ProductInput]) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if inputs.is_empty() || inputs.len() > INPUTS_MAX {
        v.push(FieldViolation::new(
            "product.inputs",
            format!(
                "1 to {INPUTS_MAX} inputs: the grants (and their workspace tables) or registered \
                 products it is built from"
            ),
        ));
    }
    let grants = inputs
        .iter()
        .filter(|i| !i.grant_id.trim().is_empty())
        .count();
    if !inputs.is_empty() && grants != 1 {
        v.push(FieldViolation::new(
            "product.inputs",
            format!(
                "exactly one grant_id, not {grants}: the sandbox computes a product on one grant's \
                 data (its resources and workspace tables); products it builds on are further \
                 inputs"
            ),
        ));
    }
    for (i, input) in inputs.iter().enumerate() {
        let grant = !input.grant_id.trim().is_empty();
        let product = !input.product_id.trim().is_empty();
        if grant == product {
            v.push(FieldViolation::new(
                format!("product.inputs[{i}]"),
                "names either a grant_id (with its workspace tables) or a product_id",
            ));
        }
        if product && !input.tables.is_empty() {
            v.push(FieldViolation::new(
                format!("product.inputs[{i}].tables"),
                "tables belong to a grant's workspace; a product input names none",
            ));
        }
        for (j, table) in input.tables.iter().enumerate() {
            if !is_identifier(table) {
                v.push(FieldViolation::new(
                    format!("product.inputs[{i}].tables[{j}]"),
                    "a workspace table's name: lower-case letters, digits and _, at most 63",
                ));
            }
        }
    }
    v
}

fn parameter_violations(p: &api::Product) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if p.parameters.len() > PARAMETERS_MAX {
        v.push(FieldViolation::new(
            "product.parameters",
            format!("at most {PARAMETERS_MAX}"),
        ));
    }
    if p.refresh_hours != 0 {
        v.push(FieldViolation::new(
            "product.refresh_hours",
            "an API product answers each call; only a dataset is refreshed",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, param) in p.parameters.iter().enumerate() {
        let field = format!("product.parameters[{i}]");
        if !is_identifier(&param.name) || !seen.insert(param.name.as_str()) {
            v.push(FieldViolation::new(
                format!("{field}.name"),
                "a unique name of lower-case letters, digits and _",
            ));
        } else if !mentions(&p.query, &param.name) {
            v.push(FieldViolation::new(
                format!("{field}.name"),
                format!("the query never uses :{}", param.name),
            ));
        }
        if param.r#type() == api::ParameterType::Unspecified {
            v.push(FieldViolation::new(
                format!("{field}.type"),
                "PARAMETER_TYPE_STRING, _INTEGER, _NUMBER or _DATE",
            ));
        }
    }
    v
}

/// Whether `query` names `:name` as a whole parameter (not the start of a longer one).
fn mentions(query: &str, name: &str) -> bool {
    let needle = format!(":{name}");
    query.match_indices(&needle).any(|(at, _)| {
        query[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

/// Every violation of a review: an outcome, one finding per aspect, an approval with every
/// aspect passed, a return with the reason.
pub fn review_violations(
    outcome: api::ReviewOutcome,
    findings: &[api::ReviewFinding],
    note: &str,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if outcome == api::ReviewOutcome::Unspecified {
        v.push(FieldViolation::new(
            "outcome",
            "REVIEW_OUTCOME_APPROVED or REVIEW_OUTCOME_RETURNED",
        ));
    }
    let aspects = [
        api::ReviewAspect::Compliance,
        api::ReviewAspect::Security,
        api::ReviewAspect::PlanConformity,
    ];
    for aspect in aspects {
        let n = findings.iter().filter(|f| f.aspect() == aspect).count();
        if n != 1 {
            v.push(FieldViolation::new(
                "findings",
                format!(
                    "exactly one finding on {} (第二十条(三): compliance, security and conformity \
                     with the plan's products are each reviewed before release)",
                    aspect.as_str_name()
                ),
            ));
        }
    }
    if findings
        .iter()
        .any(|f| f.aspect() == api::ReviewAspect::Unspecified)
    {
        v.push(FieldViolation::new(
            "findings",
            "every finding names its aspect",
        ));
    }
    if outcome == api::ReviewOutcome::Approved && findings.iter().any(|f| !f.passed) {
        v.push(FieldViolation::new(
            "outcome",
            "an approval has every aspect passed; return the product with its findings instead",
        ));
    }
    if outcome == api::ReviewOutcome::Returned && note.trim().is_empty() {
        v.push(FieldViolation::new(
            "note",
            "required: a product is returned with what its maker must change",
        ));
    }
    v
}

/// The registration code of the `sequence`-th product registered in `tenant` in `year`.
pub fn registration_code(tenant: &str, year: i32, sequence: i64) -> String {
    format!("{tenant}-{year}-{sequence:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_product() -> api::Product {
        api::Product {
            name: "Arrivals by stop".into(),
            class: ProductClass::IndustryDevelopment as i32,
            description: "Mean delay per stop".into(),
            terms_of_use: "Internal use".into(),
            inputs: vec![api::ProductInput {
                grant_id: "g1".into(),
                tables: vec!["by_stop".into()],
                product_id: String::new(),
            }],
            form: api::ProductForm::Api as i32,
            query: "SELECT stop, avg(delay) FROM workspace.by_stop WHERE day = :day GROUP BY stop"
                .into(),
            parameters: vec![api::ApiParameter {
                name: "day".into(),
                r#type: api::ParameterType::Date as i32,
                description: String::new(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_complete_api_product_passes_and_every_gap_is_named() {
        assert!(definition_violations(&api_product()).is_empty());
        let bare = api::Product::default();
        let fields: Vec<_> = definition_violations(&bare)
            .into_iter()
            .map(|v| v.field)
            .collect();
        for f in [
            "product.name",
            "product.class",
            "product.description",
            "product.terms_of_use",
            "product.inputs",
            "product.query",
            "product.form",
        ] {
            assert!(fields.contains(&f.to_string()), "{f} missing in {fields:?}");
        }
    }

    #[test]
    fn a_parameter_the_query_never_uses_is_refused() {
        let mut p = api_product();
        p.parameters[0].name = "da".into();
        let v = definition_violations(&p);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].description.contains(":da"), "{v:?}");
    }

    #[test]
    fn steps_follow_the_reviews() {
        use ProductState::*;
        let s = Draft
            .after(Step::Submit { by_developer: true }, "p")
            .unwrap();
        assert_eq!(s, OperatorReview);
        let refused = s.after(Step::Register, "p").unwrap_err();
        assert!(refused.missing.contains("operator"), "{refused:?}");
        let s = s.after(Step::OperatorApprove, "p").unwrap();
        let s = s.after(Step::Register, "p").unwrap();
        assert_eq!(s.after(Step::Release, "p").unwrap(), Listed);
        assert!(Draft.after(Step::Release, "p").is_err());
        assert!(Withdrawn.after(Step::Release, "p").is_err());
    }

    #[test]
    fn registration_codes_sort_and_stay_unique_per_tenant_and_year() {
        assert_eq!(registration_code("230100", 2026, 7), "230100-2026-000007");
    }
}
