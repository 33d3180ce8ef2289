//! Authorization agreements (授权运营协议): the one state machine, the thirteen items of 第十四条
//! and the three-year term (R-AGR-1, R-AGR-2).

use std::collections::HashSet;

use chrono::{Days, Months, NaiveDate};
use pdp_kit::error::{FieldViolation, StepRefused};
use pdp_proto::pdp::agreements::v1 as api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgreementState {
    Draft,
    /// Both parties signed.
    Signed,
    /// Within its term: the operator is authorized (R-AGR-3).
    Active,
    Expired,
    Suspended,
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The second signature.
    CompleteSigning,
    /// The first day has come.
    Activate,
    /// The last day has passed.
    Expire,
    Suspend,
    Resume,
    Terminate,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Self::CompleteSigning => "completing the signatures",
            Self::Activate => "activation",
            Self::Expire => "expiry",
            Self::Suspend => "suspension",
            Self::Resume => "resumption",
            Self::Terminate => "termination",
        }
    }
}

impl AgreementState {
    /// The one transition function of an agreement.
    pub fn after(self, step: Step, subject: &str) -> Result<Self, StepRefused> {
        use AgreementState::*;
        let next = match (self, step) {
            (Draft, Step::CompleteSigning) => Some(Signed),
            (Signed, Step::Activate) | (Suspended, Step::Resume) => Some(Active),
            // A suspended agreement still ends with its term.
            (Active | Suspended, Step::Expire) => Some(Expired),
            (Active, Step::Suspend) => Some(Suspended),
            (Active | Suspended | Signed, Step::Terminate) => Some(Terminated),
            _ => None,
        };
        next.ok_or_else(|| StepRefused {
            aggregate: "agreement",
            state: self.name(),
            step: step.verb(),
            reason: "AGREEMENT_STEP_OUT_OF_ORDER",
            missing: match self {
                Draft => "both parties must sign first (:sign)",
                Signed => "the agreement takes effect on its first day",
                Active => "the agreement is active",
                Expired => "the agreement has expired; renew it (:renew) or select again",
                Suspended => "the agreement is suspended",
                Terminated => "the agreement is terminated",
            },
            subject: subject.into(),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Signed => "SIGNED",
            Self::Active => "ACTIVE",
            Self::Expired => "EXPIRED",
            Self::Suspended => "SUSPENDED",
            Self::Terminated => "TERMINATED",
        }
    }

    /// The states disclosed to the public: every one after the draft (R-OPS-7).
    pub const DISCLOSED: [Self; 5] = [
        Self::Signed,
        Self::Active,
        Self::Expired,
        Self::Suspended,
        Self::Terminated,
    ];

    pub const ALL: [Self; 6] = [
        Self::Draft,
        Self::Signed,
        Self::Active,
        Self::Expired,
        Self::Suspended,
        Self::Terminated,
    ];

    pub fn to_api(self) -> api::AgreementState {
        match self {
            Self::Draft => api::AgreementState::Draft,
            Self::Signed => api::AgreementState::Signed,
            Self::Active => api::AgreementState::Active,
            Self::Expired => api::AgreementState::Expired,
            Self::Suspended => api::AgreementState::Suspended,
            Self::Terminated => api::AgreementState::Terminated,
        }
    }

    pub fn of(agreement: &api::Agreement) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.to_api() as i32 == agreement.state)
            .unwrap_or(Self::Draft)
    }
}

/// The last day a term starting on `first_day` may have: the day before the third anniversary
/// of its first day (2026-03-01 → 2029-02-28). An anniversary that does not exist (29 February)
/// falls on the month's last day, as the Civil Code counts periods by years (第二百零二条).
pub fn latest_last_day(first_day: NaiveDate) -> NaiveDate {
    let anniversary = first_day
        .checked_add_months(Months::new(36))
        .unwrap_or(NaiveDate::MAX);
    anniversary
        .checked_sub_days(Days::new(1))
        .unwrap_or(anniversary)
}

fn date(v: &mut Vec<FieldViolation>, field: &str, value: &str) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            v.push(FieldViolation::new(
                field,
                format!("`{value}` is not a date of the form YYYY-MM-DD (第十四条(二))"),
            ));
            None
        }
    }
}

/// The term's days, or why it is refused: at most three years (R-AGR-2).
pub fn term_violations(
    term: Option<&api::Term>,
) -> (Vec<FieldViolation>, Option<(NaiveDate, NaiveDate)>) {
    let mut v = Vec::new();
    let Some(term) = term else {
        v.push(FieldViolation::new(
            "agreement.terms.term",
            "required: the term of operation (第十四条(二))",
        ));
        return (v, None);
    };
    let first = date(&mut v, "agreement.terms.term.first_day", &term.first_day);
    let last = date(&mut v, "agreement.terms.term.last_day", &term.last_day);
    let (Some(first), Some(last)) = (first, last) else {
        return (v, None);
    };
    if last < first {
        v.push(FieldViolation::new(
            "agreement.terms.term.last_day",
            format!("cannot be before the first day {first}"),
        ));
    }
    let latest = latest_last_day(first);
    if last > latest {
        v.push(FieldViolation::new(
            "agreement.terms.term.last_day",
            format!("the term is at most 3 years (第十四条(二), R-AGR-2): the latest last day for a term from {first} is {latest}"),
        ));
    }
    if v.is_empty() {
        (v, Some((first, last)))
    } else {
        (v, None)
    }
}

fn required(v: &mut Vec<FieldViolation>, field: &str, value: &str, item: &str) {
    if value.trim().is_empty() {
        v.push(FieldViolation::new(
            format!("agreement.terms.{field}"),
            format!("required: 第十四条({item})"),
        ));
    }
}

/// Every missing item of 第十四条, and every resource outside the plan's scope, in one list.
pub fn terms_violations(
    terms: &api::AgreementTerms,
    plan_scope: &HashSet<String>,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    match &terms.scope {
        Some(scope) if !scope.resource_ids.is_empty() => {
            for (i, id) in scope.resource_ids.iter().enumerate() {
                if !plan_scope.contains(id) {
                    v.push(FieldViolation::new(
                        format!("agreement.terms.scope.resource_ids[{i}]"),
                        format!("resource {id} is not in the scope of the plan the selection was made for (第十四条(一), R-AGR-3)"),
                    ));
                }
            }
            required(&mut v, "scope.catalog", &scope.catalog, "一");
        }
        _ => v.push(FieldViolation::new(
            "agreement.terms.scope.resource_ids",
            "at least one registered resource of the plan's scope: 第十四条(一)",
        )),
    }
    v.extend(term_violations(terms.term.as_ref()).0);
    match &terms.products {
        Some(p) => {
            if p.products.is_empty() {
                v.push(FieldViolation::new(
                    "agreement.terms.products.products",
                    "at least one: 第十四条(三)",
                ));
            }
            required(
                &mut v,
                "products.technical_standards",
                &p.technical_standards,
                "三",
            );
            required(&mut v, "products.security_review", &p.security_review, "三");
            required(&mut v, "products.business_review", &p.business_review, "三");
        }
        None => v.push(FieldViolation::new(
            "agreement.terms.products",
            "required: 第十四条(三)",
        )),
    }
    required(
        &mut v,
        "technical_platform",
        &terms.technical_platform,
        "四",
    );
    match &terms.assets {
        Some(a) => {
            required(&mut v, "assets.equipment", &a.equipment, "五");
            required(&mut v, "assets.products", &a.products, "五");
        }
        None => v.push(FieldViolation::new(
            "agreement.terms.assets",
            "required: 第十四条(五)",
        )),
    }
    required(&mut v, "disclosure_duties", &terms.disclosure_duties, "六");
    match &terms.accounting {
        Some(a) => {
            required(
                &mut v,
                "accounting.cost_and_revenue_accounting",
                &a.cost_and_revenue_accounting,
                "七",
            );
            required(
                &mut v,
                "accounting.revenue_sharing",
                &a.revenue_sharing,
                "七",
            );
        }
        None => v.push(FieldViolation::new(
            "agreement.terms.accounting",
            "required: 第十四条(七)",
        )),
    }
    match &terms.security {
        Some(s) => {
            required(&mut v, "security.data_security", &s.data_security, "八");
            required(
                &mut v,
                "security.personal_information_protection",
                &s.personal_information_protection,
                "八",
            );
            required(&mut v, "security.risk_monitoring", &s.risk_monitoring, "八");
            required(
                &mut v,
                "security.emergency_response",
                &s.emergency_response,
                "八",
            );
        }
        None => v.push(FieldViolation::new(
            "agreement.terms.security",
            "required: 第十四条(八)",
        )),
    }
    match &terms.evaluation {
        Some(e) => {
            required(&mut v, "evaluation.evaluation", &e.evaluation, "九");
            required(&mut v, "evaluation.renewal", &e.renewal, "九");
            required(&mut v, "evaluation.exit", &e.exit, "九");
        }
        None => v.push(FieldViolation::new(
            "agreement.terms.evaluation",
            "required: 第十四条(九)",
        )),
    }
    required(&mut v, "liability", &terms.liability, "十");
    required(
        &mut v,
        "dispute_resolution",
        &terms.dispute_resolution,
        "十一",
    );
    required(
        &mut v,
        "change_and_termination",
        &terms.change_and_termination,
        "十二",
    );
    required(&mut v, "other_matters", &terms.other_matters, "十三");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_term_ends_at_latest_the_day_before_the_third_anniversary() {
        assert_eq!(latest_last_day(day("2026-03-01")), day("2029-02-28"));
        assert_eq!(latest_last_day(day("2027-01-01")), day("2029-12-31"));
        // A leap-day start: the anniversary falls on 28 February.
        assert_eq!(latest_last_day(day("2028-02-29")), day("2031-02-27"));
        let ok = api::Term {
            first_day: "2026-03-01".into(),
            last_day: "2029-02-28".into(),
        };
        assert!(term_violations(Some(&ok)).0.is_empty());
        let long = api::Term {
            first_day: "2026-03-01".into(),
            last_day: "2029-03-01".into(),
        };
        let (v, _) = term_violations(Some(&long));
        assert!(
            v[0].description.contains("2029-02-28") && v[0].description.contains("R-AGR-2"),
            "{v:?}"
        );
    }

    #[test]
    fn every_missing_item_of_article_14_is_named() {
        let v = terms_violations(&api::AgreementTerms::default(), &HashSet::new());
        let text = format!("{v:?}");
        for item in [
            "(一)", "(二)", "(三)", "(四)", "(五)", "(六)", "(七)", "(八)", "(九)", "(十)",
            "(十一)", "(十二)", "(十三)",
        ] {
            assert!(text.contains(item), "{item} missing in {text}");
        }
    }

    #[test]
    fn resources_outside_the_plan_are_refused_by_id() {
        let terms = api::AgreementTerms {
            scope: Some(api::ResourceScope {
                resource_ids: vec!["a".into(), "z".into()],
                catalog: "c".into(),
            }),
            ..Default::default()
        };
        let scope: HashSet<String> = ["a".to_string()].into();
        let v = terms_violations(&terms, &scope);
        assert_eq!(v[0].field, "agreement.terms.scope.resource_ids[1]");
        assert!(v[0].description.contains("resource z"));
    }

    #[test]
    fn only_signing_activates_and_only_an_active_agreement_expires() {
        let s = AgreementState::Draft
            .after(Step::CompleteSigning, "a")
            .unwrap();
        let s = s.after(Step::Activate, "a").unwrap();
        assert_eq!(s.after(Step::Expire, "a").unwrap(), AgreementState::Expired);
        let refused = AgreementState::Draft
            .after(Step::Activate, "a")
            .unwrap_err();
        assert!(refused.to_string().contains(":sign"), "{refused}");
        assert!(AgreementState::Expired.after(Step::Activate, "a").is_err());
    }
}
