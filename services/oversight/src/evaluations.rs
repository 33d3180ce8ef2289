//! Evaluations (第二十五条, 第二十八条, R-OPS-11): of each authorization — security, conformity and
//! results, at least yearly and before any renewal — and of provider units' contribution, scored
//! against the published criteria. A passed evaluation (continue, at least the pass mark) of an
//! agreement is what its renewal needs; agreements follows `pdp.oversight.evaluation.recorded`.

use chrono::NaiveDate;
use pdp_kit::change::timestamp;
use pdp_kit::config::{CriterionConfig, OversightConfig};
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::Identity;
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, TenantScope};
use pdp_proto::pdp::oversight::v1 as api;

use crate::OversightError;
use crate::follow::{AUTHORIZATION, RESOURCE_REGISTERED, TICKET_ANSWERED, TICKET_OVERDUE};
use crate::items::PASSED;
use crate::service::{BUREAU, Oversight, RECORDER, Result, check_document, new_id, party_filter};
use crate::store as db;

/// An evaluation names an authorization oversight has seen activated.
const UNKNOWN_AGREEMENT: &str =
    "no authorization by this id is known in the tenant (an agreement is evaluated once active)";

fn criterion(name: &str, description: &str, weight: u32) -> CriterionConfig {
    CriterionConfig {
        name: name.into(),
        description: description.into(),
        weight,
    }
}

fn shipped_authorization() -> Vec<CriterionConfig> {
    vec![
        criterion(
            "security",
            "data security: regime, incidents, sandbox conduct (第二十八条)",
            40,
        ),
        criterion(
            "conformity",
            "conformity with the agreement and the plan (第二十八条)",
            30,
        ),
        criterion(
            "results",
            "products, services and their public value (第二十八条)",
            30,
        ),
    ]
}

fn shipped_provider() -> Vec<CriterionConfig> {
    vec![
        criterion(
            "supply",
            "resources supplied and kept current (R-OPS-11)",
            40,
        ),
        criterion(
            "quality",
            "data-quality tickets answered in time (第十九条)",
            30,
        ),
        criterion("use", "use of its resources in products and services", 30),
    ]
}

fn read(list: &[CriterionConfig], key: &str) -> std::result::Result<Vec<api::Criterion>, String> {
    if list.is_empty() {
        return Err(format!("oversight.{key}: at least one criterion"));
    }
    let total: u32 = list.iter().map(|c| c.weight).sum();
    if total != 100 {
        return Err(format!(
            "oversight.{key}: the weights sum to {total}, not 100"
        ));
    }
    let mut names = std::collections::HashSet::new();
    for c in list {
        if c.name.trim().is_empty() || !names.insert(c.name.as_str()) {
            return Err(format!(
                "oversight.{key}: `{}` is no name or used twice",
                c.name
            ));
        }
    }
    Ok(list
        .iter()
        .map(|c| api::Criterion {
            name: c.name.clone(),
            description: c.description.clone(),
            weight: c.weight,
        })
        .collect())
}

/// The published criteria: configured, or the shipped ones.
pub fn criteria(config: &OversightConfig) -> std::result::Result<api::EvaluationCriteria, String> {
    let authorization = config
        .authorization_criteria
        .clone()
        .unwrap_or_else(shipped_authorization);
    let provider = config
        .provider_criteria
        .clone()
        .unwrap_or_else(shipped_provider);
    if config.pass_mark == 0 || config.pass_mark > 100 {
        return Err(format!(
            "oversight.pass_mark = {}: 1 to 100",
            config.pass_mark
        ));
    }
    Ok(api::EvaluationCriteria {
        authorization: read(&authorization, "authorization_criteria")?,
        provider: read(&provider, "provider_criteria")?,
        pass_mark: config.pass_mark,
    })
}

/// The weighted total of `scores` (of 100), and every violation of the criteria.
pub fn score(criteria: &[api::Criterion], scores: &[api::Score]) -> (u32, Vec<FieldViolation>) {
    let mut v = Vec::new();
    for (i, s) in scores.iter().enumerate() {
        if !criteria.iter().any(|c| c.name == s.criterion) {
            v.push(FieldViolation::new(
                format!("evaluation.scores[{i}].criterion"),
                format!("`{}` is not a published criterion", s.criterion),
            ));
        }
        if s.score > 100 {
            v.push(FieldViolation::new(
                format!("evaluation.scores[{i}].score"),
                "0 to 100",
            ));
        }
    }
    let mut weighted = 0;
    for c in criteria {
        match scores.iter().filter(|s| s.criterion == c.name).count() {
            1 => {}
            0 => v.push(FieldViolation::new(
                "evaluation.scores",
                format!(
                    "no score for the criterion `{}`: every published criterion is scored",
                    c.name
                ),
            )),
            _ => v.push(FieldViolation::new(
                "evaluation.scores",
                format!("the criterion `{}` is scored twice", c.name),
            )),
        }
        if let Some(s) = scores.iter().find(|s| s.criterion == c.name) {
            weighted += c.weight * s.score.min(100);
        }
    }
    // Rounded half up, in whole points.
    ((weighted + 50) / 100, v)
}

fn day(field: &str, value: &str, v: &mut Vec<FieldViolation>) -> Option<NaiveDate> {
    let parsed = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok();
    if parsed.is_none() {
        v.push(FieldViolation::new(field, "a date YYYY-MM-DD"));
    }
    parsed
}

impl Oversight {
    pub fn criteria(&self, who: &Identity, tenant: &str) -> Result<api::EvaluationCriteria> {
        TenantScope::for_call(who, tenant, Access::Read)?;
        Ok((*self.criteria).clone())
    }

    pub async fn record_evaluation(
        &self,
        who: &Identity,
        tenant: &str,
        mut e: api::Evaluation,
    ) -> Result<api::Evaluation> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, BUREAU, "recording an evaluation")?;
        let published = self.criteria(who, tenant)?;
        let kind = api::EvaluationKind::try_from(e.kind).unwrap_or_default();
        let mut v = Vec::new();
        let list = match kind {
            api::EvaluationKind::Authorization => {
                if e.agreement_id.is_empty() {
                    v.push(FieldViolation::new(
                        "evaluation.agreement_id",
                        "required: the authorization evaluated (第二十八条)",
                    ));
                }
                &published.authorization
            }
            api::EvaluationKind::Provider => {
                if e.subject.trim().is_empty() {
                    v.push(FieldViolation::new(
                        "evaluation.subject",
                        "required: the provider unit evaluated (R-OPS-11)",
                    ));
                }
                &published.provider
            }
            api::EvaluationKind::Unspecified => {
                v.push(FieldViolation::new(
                    "evaluation.kind",
                    "AUTHORIZATION or PROVIDER",
                ));
                &published.authorization
            }
        };
        let first = day("evaluation.period_first_day", &e.period_first_day, &mut v);
        let last = day("evaluation.period_last_day", &e.period_last_day, &mut v);
        if let (Some(first), Some(last)) = (first, last)
            && last < first
        {
            v.push(FieldViolation::new(
                "evaluation.period_last_day",
                "before the period's first day",
            ));
        }
        if e.evaluator.trim().is_empty() {
            v.push(FieldViolation::new(
                "evaluation.evaluator",
                "required: the bureau or the third party it named (第二十八条)",
            ));
        }
        let (total, problems) = score(list, &e.scores);
        v.extend(problems);
        let outcome = api::EvaluationOutcome::try_from(e.outcome).unwrap_or_default();
        match outcome {
            api::EvaluationOutcome::Unspecified => {
                v.push(FieldViolation::new(
                    "evaluation.outcome",
                    "CONTINUE, RECTIFY or TERMINATE",
                ));
            }
            api::EvaluationOutcome::Continue if total < published.pass_mark && v.is_empty() => {
                v.push(FieldViolation::new(
                    "evaluation.outcome",
                    format!(
                        "CONTINUE needs at least the pass mark {}; the total is {total}: RECTIFY \
                         or TERMINATE (第二十八条)",
                        published.pass_mark
                    ),
                ));
            }
            _ => {}
        }
        v.extend(check_document(
            "evaluation.report",
            e.report.as_ref(),
            false,
        ));
        OversightError::check("evaluation", v)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            if kind == api::EvaluationKind::Authorization {
                let Some(fact) = db::fact(conn, scope, AUTHORIZATION, &e.agreement_id)? else {
                    return Err(OversightError::invalid(
                        "evaluation",
                        vec![FieldViolation::new(
                            "evaluation.agreement_id",
                            UNKNOWN_AGREEMENT,
                        )],
                    ));
                };
                e.subject = fact.party;
            } else {
                e.agreement_id.clear();
                e.contribution = Some(contribution(conn, scope, &e.subject)?);
            }
            e.id = new_id();
            e.total = total;
            e.passed = outcome == api::EvaluationOutcome::Continue && total >= published.pass_mark;
            e.recorded_by = who.subject.clone();
            e.recorded_at = Some(timestamp(now));
            db::insert(conn, scope, &e)?;
            let event = api::EvaluationRecorded {
                evaluation_id: e.id.clone(),
                kind: e.kind,
                agreement_id: e.agreement_id.clone(),
                subject: e.subject.clone(),
                outcome: e.outcome,
                passed: e.passed,
                total: e.total,
                period_last_day: e.period_last_day.clone(),
            };
            let change = RECORDER.change(scope, Some(&who), now);
            change.emit(conn, api::EVALUATION_RECORDED, &e.id, &event)?;
            Ok(e)
        })
        .await
    }

    pub async fn list_evaluations(
        &self,
        who: &Identity,
        tenant: &str,
        agreement_id: String,
        cursor: Cursor,
    ) -> Result<(Vec<api::Evaluation>, String)> {
        if agreement_id.is_empty() {
            return self.page(who, tenant, String::new(), vec![], cursor).await;
        }
        // An agreement's evaluations are a handful: all of them, newest first.
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let party = party_filter(who).map(str::to_string);
        self.in_scope(&scope, move |conn, scope, _| {
            let all: Vec<api::Evaluation> = db::by_reference(conn, scope, &agreement_id, &[])?;
            let seen = all
                .into_iter()
                .filter(|e| party.as_ref().is_none_or(|p| *p == e.subject))
                .rev()
                .collect();
            Ok((seen, String::new()))
        })
        .await
    }
}

/// What `provider` contributed, counted from the events followed.
fn contribution(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    provider: &str,
) -> Result<api::Contribution> {
    Ok(api::Contribution {
        resources_registered: db::count_facts(conn, scope, RESOURCE_REGISTERED, provider)?,
        tickets_answered: db::count_facts(conn, scope, TICKET_ANSWERED, provider)?,
        tickets_overdue: db::count_facts(conn, scope, TICKET_OVERDUE, provider)?,
    })
}

/// Whether agreement `id` has a passed evaluation.
pub fn passed(conn: &mut AnyConnection, scope: &TenantScope, id: &str) -> Result<bool> {
    Ok(!db::by_reference::<api::Evaluation>(conn, scope, id, &[PASSED])?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(list: &[(&str, u32)]) -> Vec<api::Score> {
        list.iter()
            .map(|(c, s)| api::Score {
                criterion: (*c).into(),
                score: *s,
                note: String::new(),
            })
            .collect()
    }

    #[test]
    fn the_total_weighs_every_published_criterion() {
        let c = criteria(&OversightConfig::default()).unwrap();
        let (total, v) = score(
            &c.authorization,
            &scores(&[("security", 80), ("conformity", 70), ("results", 50)]),
        );
        assert!(v.is_empty(), "{v:?}");
        // 0.4 × 80 + 0.3 × 70 + 0.3 × 50 = 68.
        assert_eq!(total, 68);
    }

    #[test]
    fn a_missing_unknown_or_doubled_criterion_is_named() {
        let c = criteria(&OversightConfig::default()).unwrap();
        let (_, v) = score(
            &c.authorization,
            &scores(&[("security", 80), ("security", 90), ("charm", 101)]),
        );
        let text = format!("{v:?}");
        for needle in [
            "`charm` is not a published criterion",
            "0 to 100",
            "`conformity`",
            "scored twice",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }

    #[test]
    fn criteria_that_do_not_sum_to_100_are_refused() {
        let config = OversightConfig {
            authorization_criteria: Some(vec![criterion("security", "", 50)]),
            ..Default::default()
        };
        assert!(criteria(&config).unwrap_err().contains("sum to 50"));
    }
}
