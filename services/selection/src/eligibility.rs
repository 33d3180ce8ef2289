//! The eligibility check of an application against the conditions of 第十二条 and the bureau's
//! own: per condition, passed or not and why. The credit lookup is pluggable ([`CreditChecker`]).

use chrono::{Months, NaiveDate};
use pdp_proto::pdp::selection::v1 as api;

/// The conditions of 第十二条 every application is checked against, as the call publishes them.
pub const STATUTORY_CONDITIONS: &[&str] = &[
    "premises_and_equipment: office conditions, hardware and software (第十二条(一))",
    "qualifications: professional qualifications (第十二条(一))",
    "staff: people and technical capability (第十二条(一))",
    "experience: system building, data processing and product development, operations (第十二条(二))",
    "security_regime: data security management and capability (第十二条(三))",
    "no_security_incident_in_three_years: no network or data security incident in the last 3 years (第十二条(三))",
    "credit: good credit, no serious violation, not on the serious-dishonesty or judgment-defaulter lists (第十二条(四))",
];

/// Looks up an organization's credit standing (全国信用信息公共服务平台, the dishonesty and
/// judgment-defaulter lists). A deployment with access to the national platform plugs its own in.
pub trait CreditChecker: Send + Sync + std::fmt::Debug {
    /// `Ok(())` when the organization is in good standing, else why not.
    fn check(&self, organization: &str, evidence: &api::Evidence) -> Result<(), String>;
}

/// The default checker: the evidence submitted, and a recorded lookup result when one is
/// attached (which then decides).
#[derive(Debug, Clone, Default)]
pub struct EvidenceCreditChecker;

impl CreditChecker for EvidenceCreditChecker {
    fn check(&self, _organization: &str, evidence: &api::Evidence) -> Result<(), String> {
        if let Some(lookup) = &evidence.credit_lookup {
            return if lookup.clean {
                Ok(())
            } else {
                Err(format!(
                    "the credit lookup of {} on {} ({}) found an adverse record (第十二条(四))",
                    lookup.source, lookup.checked_on, lookup.reference
                ))
            };
        }
        let listed = [
            (
                evidence.on_serious_dishonesty_list,
                "the organization is on the list of seriously dishonest enterprises",
            ),
            (
                evidence.legal_representative_on_dishonesty_list,
                "its legal representative has a serious illegal or dishonesty record",
            ),
            (
                evidence.on_judgment_defaulter_list,
                "the organization is on the judgment-defaulter list",
            ),
        ];
        if let Some((_, why)) = listed.iter().find(|(on, _)| *on) {
            return Err(format!("{why} (第十二条(四))"));
        }
        if evidence.credit_record.trim().is_empty() {
            return Err("no credit record was submitted (第十二条(四))".into());
        }
        Ok(())
    }
}

fn present(condition: &str, value: &str, article: &str) -> api::ConditionResult {
    let passed = !value.trim().is_empty();
    api::ConditionResult {
        condition: condition.into(),
        passed,
        reason: if passed {
            "evidence submitted".into()
        } else {
            format!("no evidence submitted ({article})")
        },
    }
}

/// The check of `evidence`, submitted on `applied_on`, against the conditions of 第十二条 and
/// `additional` ones. The application is eligible when every condition passed.
pub fn check(
    organization: &str,
    evidence: &api::Evidence,
    additional: &[String],
    applied_on: NaiveDate,
    credit: &dyn CreditChecker,
) -> Vec<api::ConditionResult> {
    let mut results = vec![
        present(
            "premises_and_equipment",
            &evidence.premises_and_equipment,
            "第十二条(一)",
        ),
        present("qualifications", &evidence.qualifications, "第十二条(一)"),
        present("staff", &evidence.staff, "第十二条(一)"),
        present("experience", &evidence.experience, "第十二条(二)"),
        present("security_regime", &evidence.security_regime, "第十二条(三)"),
    ];
    // 近3年: an incident on a day after the same date three years before the application.
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
    results.push(api::ConditionResult {
        condition: "no_security_incident_in_three_years".into(),
        passed: recent.is_empty() && unreadable.is_empty(),
        reason: if let Some(day) = recent.first() {
            format!(
                "a network or data security incident on {day}, within three years before the application on {applied_on} (第十二条(三))"
            )
        } else if !unreadable.is_empty() {
            format!("incident dates {unreadable:?} are not YYYY-MM-DD dates")
        } else {
            format!("no incident after {horizon} (第十二条(三))")
        },
    });
    let standing = credit.check(organization, evidence);
    results.push(api::ConditionResult {
        condition: "credit".into(),
        passed: standing.is_ok(),
        reason: standing
            .err()
            .unwrap_or_else(|| "good standing (第十二条(四))".into()),
    });
    for condition in additional {
        let value = evidence
            .additional
            .get(condition)
            .map(String::as_str)
            .unwrap_or_default();
        results.push(present(
            condition,
            value,
            "a condition the bureau added to the call",
        ));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> api::Evidence {
        api::Evidence {
            premises_and_equipment: "office in Harbin".into(),
            qualifications: "CMMI 3".into(),
            staff: "40 engineers".into(),
            experience: "5 data products".into(),
            security_regime: "ISO 27001".into(),
            credit_record: "no adverse record".into(),
            ..Default::default()
        }
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn failed(results: &[api::ConditionResult]) -> Vec<&str> {
        results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.condition.as_str())
            .collect()
    }

    #[test]
    fn complete_evidence_passes_every_condition() {
        let r = check(
            "acme",
            &complete(),
            &[],
            day("2026-11-26"),
            &EvidenceCreditChecker,
        );
        assert!(failed(&r).is_empty(), "{r:?}");
    }

    #[test]
    fn an_incident_within_three_years_makes_an_application_ineligible() {
        let mut e = complete();
        e.incidents.push(api::SecurityIncident {
            occurred_on: "2024-11-20".into(),
            description: "ransomware".into(),
        });
        let r = check("acme", &e, &[], day("2026-11-26"), &EvidenceCreditChecker);
        assert_eq!(failed(&r), ["no_security_incident_in_three_years"]);
        assert!(r.iter().any(|c| c.reason.contains("2024-11-20")));
        // Exactly three years before the application day is outside the window.
        e.incidents[0].occurred_on = "2023-11-26".into();
        let r = check("acme", &e, &[], day("2026-11-26"), &EvidenceCreditChecker);
        assert!(failed(&r).is_empty(), "{r:?}");
    }

    #[test]
    fn listed_entities_missing_evidence_and_added_conditions_fail_by_name() {
        let mut e = complete();
        e.on_judgment_defaulter_list = true;
        e.staff.clear();
        let r = check(
            "acme",
            &e,
            &["local office".to_string()],
            day("2026-11-26"),
            &EvidenceCreditChecker,
        );
        assert_eq!(failed(&r), ["staff", "credit", "local office"]);
        assert!(r.iter().any(|c| c.reason.contains("judgment-defaulter")));
    }

    #[test]
    fn a_recorded_lookup_decides_the_credit_condition() {
        let mut e = complete();
        e.credit_lookup = Some(api::CreditLookup {
            source: "全国信用信息公共服务平台".into(),
            checked_on: "2026-11-20".into(),
            clean: false,
            reference: "Q-1".into(),
        });
        let r = check("acme", &e, &[], day("2026-11-26"), &EvidenceCreditChecker);
        assert_eq!(failed(&r), ["credit"]);
    }
}
