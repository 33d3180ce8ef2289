//! The conditions of 第十二条 (and the bureau's own) an application is judged against. What the
//! applicant submits can make a condition fail at once (no evidence, a declared listing or a
//! recent incident), never pass: the bureau's staff judge every condition on the evidence, and
//! the credit condition on a lookup they (or the deployment's [`CreditChecker`]) record.

use chrono::{DateTime, Months, NaiveDate, Utc};
use pdp_kit::change::timestamp;
use pdp_kit::error::FieldViolation;
use pdp_proto::pdp::selection::v1 as api;

/// The conditions of 第十二条 every application is judged against, as the call publishes them:
/// the name before the colon is what a judgment names.
pub const STATUTORY_CONDITIONS: &[&str] = &[
    "premises_and_equipment: office conditions, hardware and software (第十二条(一))",
    "qualifications: professional qualifications (第十二条(一))",
    "staff: people and technical capability (第十二条(一))",
    "legal_knowledge: knows the national and provincial laws, regulations and policies on data \
     and its authorized operation (第十二条(二))",
    "experience: system building, data processing and product development, operations (第十二条(二))",
    "security_regime: data security management and capability (第十二条(三))",
    "no_security_incident_in_three_years: no network or data security incident in the last 3 years (第十二条(三))",
    "credit: good credit, no serious violation, not on the serious-dishonesty or judgment-defaulter lists (第十二条(四))",
];

pub const CREDIT: &str = "credit";
const INCIDENTS: &str = "no_security_incident_in_three_years";
/// Who judged a failure the application itself shows.
const AUTOMATIC: &str = "automatic";
/// Who judged a condition on the deployment's credit lookup.
const CREDIT_CHECKER: &str = "credit-checker";

/// Looks up an organization's credit standing (全国信用信息公共服务平台, the dishonesty and
/// judgment-defaulter lists) when an application arrives. A deployment with access to the
/// national platform plugs its own in; its lookup is recorded like a staff member's.
pub trait CreditChecker: Send + Sync + std::fmt::Debug {
    /// The lookup of `organization` on `day`, or `None` when this checker cannot make one.
    fn lookup(&self, organization: &str, day: NaiveDate) -> Option<api::CreditLookup>;
}

/// The default: no automatic lookup; the bureau's staff record one with their judgment.
#[derive(Debug, Clone, Default)]
pub struct RecordedByStaff;

impl CreditChecker for RecordedByStaff {
    fn lookup(&self, _organization: &str, _day: NaiveDate) -> Option<api::CreditLookup> {
        None
    }
}

/// The condition's name: what precedes the colon in the call's list.
fn name(condition: &str) -> &str {
    condition.split(':').next().unwrap_or(condition).trim()
}

fn result(condition: &str, state: api::ConditionState, reason: String) -> api::ConditionResult {
    api::ConditionResult {
        condition: condition.into(),
        passed: state == api::ConditionState::Passed,
        reason,
        state: state as i32,
        ..Default::default()
    }
}

fn failed(condition: &str, reason: String, at: DateTime<Utc>) -> api::ConditionResult {
    api::ConditionResult {
        judged_by: AUTOMATIC.into(),
        judge_time: Some(timestamp(at)),
        ..result(condition, api::ConditionState::Failed, reason)
    }
}

fn pending(condition: &str, article: &str) -> api::ConditionResult {
    result(
        condition,
        api::ConditionState::Pending,
        format!("awaiting the bureau's judgment on the evidence ({article})"),
    )
}

/// Whether the applicant gave evidence for `condition`: text, or a document for it.
fn has_evidence(evidence: &api::Evidence, condition: &str, text: &str) -> bool {
    !text.trim().is_empty() || evidence.documents.iter().any(|d| d.condition == condition)
}

/// The conditions of an application submitted at `at`, each PENDING unless the application
/// itself makes it fail, or the credit checker's lookup decides the credit condition.
pub fn initial(
    organization: &str,
    evidence: &api::Evidence,
    additional: &[String],
    at: DateTime<Utc>,
    applied_on: NaiveDate,
    credit: &dyn CreditChecker,
    recorded_incidents: &[NaiveDate],
) -> Vec<api::ConditionResult> {
    let texts = [
        (
            "premises_and_equipment",
            &evidence.premises_and_equipment,
            "第十二条(一)",
        ),
        ("qualifications", &evidence.qualifications, "第十二条(一)"),
        ("staff", &evidence.staff, "第十二条(一)"),
        ("legal_knowledge", &evidence.legal_knowledge, "第十二条(二)"),
        ("experience", &evidence.experience, "第十二条(二)"),
        ("security_regime", &evidence.security_regime, "第十二条(三)"),
    ];
    let mut results: Vec<_> = texts
        .iter()
        .map(|(condition, text, article)| {
            if has_evidence(evidence, condition, text) {
                pending(condition, article)
            } else {
                failed(condition, format!("no evidence submitted ({article})"), at)
            }
        })
        .collect();
    results.push(incidents(evidence, recorded_incidents, at, applied_on));
    results.push(credit_condition(
        organization,
        evidence,
        at,
        applied_on,
        credit,
    ));
    for condition in additional {
        let text = evidence
            .additional
            .get(condition)
            .map(String::as_str)
            .unwrap_or_default();
        let article = "a condition the bureau added to the call (第十二条(五))";
        results.push(if has_evidence(evidence, condition, text) {
            pending(condition, article)
        } else {
            failed(condition, format!("no evidence submitted ({article})"), at)
        });
    }
    results
}

/// 近3年: an incident on a day after the same date three years before the application fails
/// the condition at once, declared or recorded by oversight (an operator's report to the
/// supervisors); none leaves it to the staff, who check the declaration.
fn incidents(
    evidence: &api::Evidence,
    recorded: &[NaiveDate],
    at: DateTime<Utc>,
    applied_on: NaiveDate,
) -> api::ConditionResult {
    let horizon = applied_on
        .checked_sub_months(Months::new(36))
        .unwrap_or(NaiveDate::MIN);
    let mut recent = Vec::new();
    let mut unreadable = Vec::new();
    for incident in &evidence.incidents {
        match NaiveDate::parse_from_str(&incident.occurred_on, "%Y-%m-%d") {
            Ok(day) if day > horizon => recent.push(day),
            Ok(_) => {}
            Err(_) => unreadable.push(incident.occurred_on.clone()),
        }
    }
    if let Some(day) = recorded.iter().find(|d| **d > horizon) {
        return failed(
            INCIDENTS,
            format!(
                "a security incident on {day} recorded on the platform (reported to the \
                 supervisors), within three years before the application on {applied_on} \
                 (第十二条(三))"
            ),
            at,
        );
    }
    if let Some(day) = recent.first() {
        failed(
            INCIDENTS,
            format!(
                "a network or data security incident on {day}, within three years before the \
                 application on {applied_on} (第十二条(三))"
            ),
            at,
        )
    } else if !unreadable.is_empty() {
        failed(
            INCIDENTS,
            format!("incident dates {unreadable:?} are not YYYY-MM-DD dates"),
            at,
        )
    } else {
        pending(INCIDENTS, "第十二条(三): none declared after the horizon")
    }
}

fn credit_condition(
    organization: &str,
    evidence: &api::Evidence,
    at: DateTime<Utc>,
    applied_on: NaiveDate,
    credit: &dyn CreditChecker,
) -> api::ConditionResult {
    if let Some(why) = declared_listing(evidence) {
        return failed(CREDIT, format!("{why} (第十二条(四))"), at);
    }
    match credit.lookup(organization, applied_on) {
        Some(lookup) => api::ConditionResult {
            judged_by: CREDIT_CHECKER.into(),
            judge_time: Some(timestamp(at)),
            ..credit_judged(lookup)
        },
        None => pending(CREDIT, "第十二条(四): a lookup is recorded by the bureau"),
    }
}

/// The credit condition judged on `lookup`.
fn credit_judged(lookup: api::CreditLookup) -> api::ConditionResult {
    let (state, reason) = if lookup.clean {
        (api::ConditionState::Passed, "no adverse record")
    } else {
        (api::ConditionState::Failed, "an adverse record")
    };
    let reason = format!(
        "the lookup of {} on {} ({}) found {reason} (第十二条(四))",
        lookup.source, lookup.checked_on, lookup.reference
    );
    api::ConditionResult {
        credit_lookup: Some(lookup),
        ..result(CREDIT, state, reason)
    }
}

/// What the applicant itself declares that rules it out.
fn declared_listing(evidence: &api::Evidence) -> Option<&'static str> {
    [
        (
            evidence.on_serious_dishonesty_list,
            "the organization declares it is on the list of seriously dishonest enterprises",
        ),
        (
            evidence.legal_representative_on_dishonesty_list,
            "the organization declares its legal representative has a serious illegal or \
             dishonesty record",
        ),
        (
            evidence.on_judgment_defaulter_list,
            "the organization declares it is on the judgment-defaulter list",
        ),
    ]
    .into_iter()
    .find_map(|(on, why)| on.then_some(why))
}

/// What the applicant attached that the platform cannot keep: documents that name no condition
/// of the call, or carry no title or no sha256 digest.
pub fn document_violations(evidence: &api::Evidence, conditions: &[String]) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    for (i, d) in evidence.documents.iter().enumerate() {
        let field = |part: &str| format!("application.evidence.documents[{i}].{part}");
        if !conditions.iter().any(|c| name(c) == d.condition) {
            v.push(FieldViolation::new(
                field("condition"),
                format!("`{}` is no condition of this call", d.condition),
            ));
        }
        if d.title.trim().is_empty() || d.kind.trim().is_empty() {
            v.push(FieldViolation::new(
                field("title"),
                "a document needs its kind and title",
            ));
        }
        let hex = d.digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            v.push(FieldViolation::new(
                field("digest"),
                "sha256:<64 lowercase hex digits> of the document",
            ));
        }
    }
    v
}

/// A staff member's judgment of one condition.
#[derive(Debug, Clone, Default)]
pub struct Judgment {
    /// The condition, as the call names it before the colon.
    pub condition: String,
    pub passed: bool,
    pub reason: String,
    /// For the credit condition: the lookup judged on.
    pub credit_lookup: Option<api::CreditLookup>,
}

/// Records `judgment` by `judge` on `today` in `conditions`, or says why it cannot stand: a
/// condition the application itself failed stays failed, and credit is judged on a lookup.
pub fn judge(
    conditions: &mut [api::ConditionResult],
    judgment: Judgment,
    judge: &str,
    at: DateTime<Utc>,
    today: NaiveDate,
) -> Result<(), Vec<FieldViolation>> {
    let Some(current) = conditions
        .iter_mut()
        .find(|c| c.condition == judgment.condition)
    else {
        let known: Vec<&str> = conditions.iter().map(|c| c.condition.as_str()).collect();
        return Err(vec![FieldViolation::new(
            "condition",
            format!(
                "`{}` is no condition of this application; its conditions: {known:?}",
                judgment.condition
            ),
        )]);
    };
    let mut v = Vec::new();
    if judgment.reason.trim().is_empty() {
        v.push(FieldViolation::new(
            "reason",
            "required: a judgment says why (第十二条)",
        ));
    }
    if current.judged_by == AUTOMATIC && judgment.passed {
        v.push(FieldViolation::new(
            "passed",
            format!(
                "the application itself fails `{}`: {} — it cannot be passed",
                current.condition, current.reason
            ),
        ));
    }
    let judged = if judgment.condition == CREDIT {
        match judgment.credit_lookup {
            None => {
                v.push(FieldViolation::new(
                    "credit_lookup",
                    "required: credit is judged on a lookup of 全国信用信息公共服务平台 and the \
                     judgment-defaulter list, with its source, date and reference (第十二条(四))",
                ));
                None
            }
            Some(lookup) => {
                v.extend(lookup_violations(&lookup, today));
                if lookup.clean != judgment.passed {
                    v.push(FieldViolation::new(
                        "passed",
                        "must agree with credit_lookup.clean",
                    ));
                }
                Some(credit_judged(lookup))
            }
        }
    } else {
        let state = if judgment.passed {
            api::ConditionState::Passed
        } else {
            api::ConditionState::Failed
        };
        Some(result(&judgment.condition, state, String::new()))
    };
    if !v.is_empty() {
        return Err(v);
    }
    let mut judged = judged.expect("without a violation there is a judgment");
    judged.reason = if judged.reason.is_empty() {
        judgment.reason.trim().to_string()
    } else {
        format!("{}; {}", judgment.reason.trim(), judged.reason)
    };
    judged.judged_by = judge.to_string();
    judged.judge_time = Some(timestamp(at));
    *current = judged;
    Ok(())
}

fn lookup_violations(lookup: &api::CreditLookup, today: NaiveDate) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    for (field, value) in [("source", &lookup.source), ("reference", &lookup.reference)] {
        if value.trim().is_empty() {
            v.push(FieldViolation::new(
                format!("credit_lookup.{field}"),
                "required (第十二条(四))",
            ));
        }
    }
    match NaiveDate::parse_from_str(&lookup.checked_on, "%Y-%m-%d") {
        Ok(day) if day > today => v.push(FieldViolation::new(
            "credit_lookup.checked_on",
            format!("{day} is after today ({today}): a lookup is recorded once made"),
        )),
        Ok(_) => {}
        Err(_) => v.push(FieldViolation::new(
            "credit_lookup.checked_on",
            "a YYYY-MM-DD date",
        )),
    }
    v
}

/// The conditions still awaiting a judgment.
pub fn pending_conditions(conditions: &[api::ConditionResult]) -> Vec<&str> {
    conditions
        .iter()
        .filter(|c| c.state == api::ConditionState::Pending as i32)
        .map(|c| c.condition.as_str())
        .collect()
}

/// Whether any condition failed: such an application is not evaluated.
pub fn any_failed(conditions: &[api::ConditionResult]) -> bool {
    conditions
        .iter()
        .any(|c| c.state == api::ConditionState::Failed as i32)
}

/// Whether every condition passed.
pub fn all_passed(conditions: &[api::ConditionResult]) -> bool {
    conditions
        .iter()
        .all(|c| c.state == api::ConditionState::Passed as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> api::Evidence {
        api::Evidence {
            premises_and_equipment: "office in Harbin".into(),
            qualifications: "CMMI 3".into(),
            staff: "40 engineers".into(),
            legal_knowledge: "training records on the Data Security Law".into(),
            experience: "5 data products".into(),
            security_regime: "ISO 27001".into(),
            credit_record: "no adverse record".into(),
            ..Default::default()
        }
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at() -> DateTime<Utc> {
        day("2026-11-26").and_hms_opt(2, 0, 0).unwrap().and_utc()
    }

    fn in_state(results: &[api::ConditionResult], state: api::ConditionState) -> Vec<&str> {
        results
            .iter()
            .filter(|r| r.state == state as i32)
            .map(|r| r.condition.as_str())
            .collect()
    }

    fn initial_of(e: &api::Evidence, additional: &[String]) -> Vec<api::ConditionResult> {
        initial(
            "acme",
            e,
            additional,
            at(),
            day("2026-11-26"),
            &RecordedByStaff,
            &[],
        )
    }

    fn lookup(clean: bool) -> api::CreditLookup {
        api::CreditLookup {
            source: "信用中国".into(),
            checked_on: "2026-11-25".into(),
            clean,
            reference: "Q-1".into(),
        }
    }

    #[test]
    fn complete_evidence_passes_nothing_by_itself() {
        let r = initial_of(&complete(), &[]);
        assert_eq!(r.len(), STATUTORY_CONDITIONS.len());
        for (result, published) in r.iter().zip(STATUTORY_CONDITIONS) {
            assert_eq!(result.condition, name(published));
        }
        assert_eq!(
            in_state(&r, api::ConditionState::Pending).len(),
            r.len(),
            "{r:?}"
        );
        assert!(!all_passed(&r) && !any_failed(&r));
    }

    #[test]
    fn an_incident_oversight_recorded_fails_whatever_the_application_declares() {
        let recorded = [day("2025-06-01")];
        let r = initial(
            "acme",
            &complete(),
            &[],
            at(),
            day("2026-11-26"),
            &RecordedByStaff,
            &recorded,
        );
        assert_eq!(in_state(&r, api::ConditionState::Failed), [INCIDENTS]);
        let old = [day("2023-11-20")];
        let r = initial(
            "acme",
            &complete(),
            &[],
            at(),
            day("2026-11-26"),
            &RecordedByStaff,
            &old,
        );
        assert!(in_state(&r, api::ConditionState::Failed).is_empty());
    }

    #[test]
    fn an_incident_within_three_years_fails_at_once() {
        let mut e = complete();
        e.incidents.push(api::SecurityIncident {
            occurred_on: "2024-11-20".into(),
            description: "ransomware".into(),
        });
        let r = initial_of(&e, &[]);
        assert_eq!(in_state(&r, api::ConditionState::Failed), [INCIDENTS]);
        assert!(r.iter().any(|c| c.reason.contains("2024-11-20")));
        // Exactly three years before the application day is outside the window.
        e.incidents[0].occurred_on = "2023-11-26".into();
        let r = initial_of(&e, &[]);
        assert!(
            in_state(&r, api::ConditionState::Failed).is_empty(),
            "{r:?}"
        );
    }

    #[test]
    fn declarations_and_missing_evidence_fail_by_name() {
        let mut e = complete();
        e.on_judgment_defaulter_list = true;
        e.staff.clear();
        e.legal_knowledge.clear();
        let r = initial_of(&e, &["local office".to_string()]);
        assert_eq!(
            in_state(&r, api::ConditionState::Failed),
            ["staff", "legal_knowledge", "credit", "local office"]
        );
        assert!(r.iter().any(|c| c.reason.contains("judgment-defaulter")));
        // A document for a condition is evidence for it.
        let mut e = complete();
        e.staff.clear();
        e.documents.push(api::Document {
            condition: "staff".into(),
            kind: "roster".into(),
            title: "engineers 2026".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
        });
        let r = initial_of(&e, &[]);
        assert!(
            in_state(&r, api::ConditionState::Failed).is_empty(),
            "{r:?}"
        );
    }

    #[test]
    fn a_declared_listing_cannot_be_passed_by_a_clean_lookup() {
        let mut e = complete();
        e.on_judgment_defaulter_list = true;
        let mut r = initial_of(&e, &[]);
        let judgment = Judgment {
            condition: CREDIT.into(),
            passed: true,
            reason: "checked".into(),
            credit_lookup: Some(lookup(true)),
        };
        let err = judge(&mut r, judgment, "staff-1", at(), day("2026-11-26")).unwrap_err();
        assert_eq!(err[0].field, "passed");
        assert!(err[0].description.contains("judgment-defaulter"), "{err:?}");
    }

    #[test]
    fn credit_is_judged_on_a_lookup_that_agrees() {
        let mut r = initial_of(&complete(), &[]);
        let judgment = |passed, credit_lookup| Judgment {
            condition: CREDIT.into(),
            passed,
            reason: "looked up".into(),
            credit_lookup,
        };
        let today = day("2026-11-26");
        let err = judge(&mut r, judgment(true, None), "s", at(), today).unwrap_err();
        assert_eq!(err[0].field, "credit_lookup");
        let err = judge(
            &mut r,
            judgment(true, Some(lookup(false))),
            "s",
            at(),
            today,
        )
        .unwrap_err();
        assert_eq!(err[0].field, "passed");
        let mut ahead = lookup(true);
        ahead.checked_on = "2026-12-01".into();
        let err = judge(&mut r, judgment(true, Some(ahead)), "s", at(), today).unwrap_err();
        assert_eq!(err[0].field, "credit_lookup.checked_on");
        assert_eq!(
            in_state(&r, api::ConditionState::Pending).len(),
            r.len(),
            "refusals change nothing"
        );

        judge(
            &mut r,
            judgment(true, Some(lookup(true))),
            "staff-1",
            at(),
            today,
        )
        .unwrap();
        let credit = r.iter().find(|c| c.condition == CREDIT).unwrap();
        assert_eq!(credit.state, api::ConditionState::Passed as i32);
        assert_eq!(credit.judged_by, "staff-1");
        assert_eq!(credit.credit_lookup.as_ref().unwrap().reference, "Q-1");
        assert!(credit.reason.contains("信用中国"), "{}", credit.reason);
    }

    #[test]
    fn a_checker_lookup_decides_credit_and_staff_decide_the_rest() {
        #[derive(Debug)]
        struct Listed;
        impl CreditChecker for Listed {
            fn lookup(&self, _: &str, _: NaiveDate) -> Option<api::CreditLookup> {
                Some(lookup(false))
            }
        }
        let r = initial(
            "acme",
            &complete(),
            &[],
            at(),
            day("2026-11-26"),
            &Listed,
            &[],
        );
        assert_eq!(in_state(&r, api::ConditionState::Failed), [CREDIT]);
        let mut r = initial_of(&complete(), &[]);
        for c in STATUTORY_CONDITIONS
            .iter()
            .map(|c| name(c))
            .filter(|c| *c != CREDIT)
        {
            let judgment = Judgment {
                condition: c.into(),
                passed: true,
                reason: "the evidence shows it".into(),
                credit_lookup: None,
            };
            judge(&mut r, judgment, "staff-1", at(), day("2026-11-26")).unwrap();
        }
        assert_eq!(pending_conditions(&r), [CREDIT]);
        let unknown = Judgment {
            condition: "charm".into(),
            passed: true,
            reason: "x".into(),
            credit_lookup: None,
        };
        assert!(judge(&mut r, unknown, "s", at(), day("2026-11-26")).is_err());
    }

    #[test]
    fn documents_name_a_condition_and_carry_a_digest() {
        let mut e = complete();
        e.documents.push(api::Document {
            condition: "charm".into(),
            kind: "letter".into(),
            title: "".into(),
            digest: "md5:abc".into(),
        });
        let conditions: Vec<String> = STATUTORY_CONDITIONS.iter().map(|c| c.to_string()).collect();
        let v = document_violations(&e, &conditions);
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "application.evidence.documents[0].condition",
                "application.evidence.documents[0].title",
                "application.evidence.documents[0].digest"
            ]
        );
    }
}
