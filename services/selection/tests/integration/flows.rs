//! Selection's rules, end to end through the service and a real store.

use pdp_kit::error::{ErrorCode, ServiceError};
use pdp_kit::identity::Identity;
use pdp_kit::paging::Cursor;
use pdp_proto::pdp::selection::v1 as api;

use crate::support::*;
use pdp_selection::Judgment;
use pdp_selection::service::Resolution;

fn eligibility_failed(a: &api::Application) -> bool {
    a.eligibility
        .iter()
        .any(|c| c.state == api::ConditionState::Failed as i32)
}

fn state(s: &api::Selection) -> api::SelectionState {
    api::SelectionState::try_from(s.state).unwrap()
}

pub async fn no_call_without_an_effective_plan(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN, "harbin-bureau");
    let err = i
        .selections
        .create(&bureau, HARBIN, call("plan-1"))
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::FailedPrecondition);
    assert!(err.to_string().contains("R-PLAN-6"), "{err}");
    // In force in another tenant is not in force here.
    i.plan_event("230200", "became_effective", "plan-1", 1)
        .await;
    assert!(
        i.selections
            .create(&bureau, HARBIN, call("plan-1"))
            .await
            .is_err()
    );
    i.plan_event(HARBIN, "became_effective", "plan-1", 1).await;
    let s = i
        .selections
        .create(&bureau, HARBIN, call("plan-1"))
        .await
        .unwrap();
    assert_eq!((s.plan_version, state(&s)), (1, api::SelectionState::Draft));
    // A newer version in force replaces the old; superseding the old keeps the plan in force.
    i.plan_event(HARBIN, "became_effective", "plan-1", 2).await;
    i.plan_event(HARBIN, "superseded", "plan-1", 1).await;
    assert_eq!(
        i.selections
            .create(&bureau, HARBIN, call("plan-1"))
            .await
            .unwrap()
            .plan_version,
        2
    );
    i.plan_event(HARBIN, "superseded", "plan-1", 2).await;
    assert!(
        i.selections
            .create(&bureau, HARBIN, call("plan-1"))
            .await
            .is_err()
    );

    let mut bad = call("plan-1");
    bad.criteria[0].weight = 10;
    bad.procedure.clear();
    let err = i.selections.create(&bureau, HARBIN, bad).await.unwrap_err();
    let fields: Vec<_> = err
        .field_violations()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["selection.criteria", "selection.procedure"]);
}

pub async fn a_selection_from_call_to_conclusion(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN, "harbin-bureau");
    i.plan_event(HARBIN, "became_effective", "plan-1", 1).await;
    let s = i
        .selections
        .create(&bureau, HARBIN, call("plan-1"))
        .await
        .unwrap();
    let id = s.id.clone();
    let acme = caller("operator", HARBIN, "acme");
    let err = i
        .selections
        .apply(&acme, HARBIN, id.clone(), application(evidence()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not taking applications"), "{err}");
    let public = caller("public", HARBIN, "public");
    let (listed, _) = i
        .selections
        .public_list(&public, HARBIN, Cursor::parse(0, "").unwrap())
        .await
        .unwrap();
    assert!(listed.is_empty(), "a draft call is not public");
    i.selections
        .publish(&bureau, HARBIN, id.clone())
        .await
        .unwrap();
    let (listed, _) = i
        .selections
        .public_list(&public, HARBIN, Cursor::parse(0, "").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    let a = i
        .selections
        .apply(&acme, HARBIN, id.clone(), application(evidence()))
        .await
        .unwrap();
    // Complete evidence passes nothing by itself: the bureau judges every condition.
    assert!(!a.eligible, "{:?}", a.eligibility);
    assert!(
        a.eligibility
            .iter()
            .all(|c| c.state == api::ConditionState::Pending as i32),
        "{:?}",
        a.eligibility
    );
    let again = i
        .selections
        .apply(&acme, HARBIN, id.clone(), application(evidence()))
        .await
        .unwrap_err();
    assert!(
        again
            .to_string()
            .contains("applied to this selection already"),
        "{again}"
    );
    let beta = caller("operator", HARBIN, "beta");
    let b = i
        .selections
        .apply(&beta, HARBIN, id.clone(), application(evidence()))
        .await
        .unwrap();
    let gamma = caller("operator", HARBIN, "gamma");
    let mut incident = evidence();
    incident.incidents.push(api::SecurityIncident {
        occurred_on: "2024-11-23".into(),
        description: "data leak".into(),
    });
    let c = i
        .selections
        .apply(&gamma, HARBIN, id.clone(), application(incident))
        .await
        .unwrap();
    assert!(!c.eligible);
    let failed = c
        .eligibility
        .iter()
        .find(|r| r.state == api::ConditionState::Failed as i32)
        .unwrap();
    assert_eq!(failed.condition, "no_security_incident_in_three_years");
    assert!(failed.reason.contains("2024-11-23"), "{}", failed.reason);

    // Operators see their own application only.
    let own = i
        .selections
        .applications(&acme, HARBIN, id.clone())
        .await
        .unwrap();
    assert_eq!(
        own.iter()
            .map(|a| a.organization.as_str())
            .collect::<Vec<_>>(),
        ["acme"]
    );
    assert_eq!(
        i.selections
            .applications(&bureau, HARBIN, id.clone())
            .await
            .unwrap()
            .len(),
        3
    );

    // Evaluation waits for the window to close; late applications are refused.
    let early = i
        .selections
        .evaluate(&bureau, HARBIN, id.clone(), a.id.clone(), scores(80, 80))
        .await
        .unwrap_err();
    assert!(early.to_string().contains("window has closed"), "{early}");
    i.set("2026-11-25 10:00");
    let late = i
        .selections
        .apply(
            &caller("operator", HARBIN, "delta"),
            HARBIN,
            id.clone(),
            application(evidence()),
        )
        .await
        .unwrap_err();
    assert!(
        late.to_string().contains("applications are taken from"),
        "{late}"
    );
    i.selections
        .evaluate(&bureau, HARBIN, id.clone(), a.id.clone(), scores(70, 80))
        .await
        .unwrap();
    let scored = i
        .selections
        .evaluate(&bureau, HARBIN, id.clone(), b.id.clone(), scores(90, 85))
        .await
        .unwrap();
    assert_eq!(scored.evaluations[0].total, 88.0);
    let err = i
        .selections
        .evaluate(&bureau, HARBIN, id.clone(), c.id.clone(), scores(99, 99))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fails a condition"), "{err}");
    let err = i
        .selections
        .evaluate(
            &bureau,
            HARBIN,
            id.clone(),
            a.id.clone(),
            api::Evaluation::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.field_violations().len(), 2, "both criteria unscored");

    // Nobody is shortlisted while a condition awaits the bureau's judgment.
    let err = i
        .selections
        .shortlist(&bureau, HARBIN, id.clone())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&a.id) && message.contains("credit") && message.contains("第十二条"),
        "{message}"
    );
    assert!(
        !message.contains(&c.id),
        "a failed application waits for nothing: {message}"
    );
    // The applicant judges nothing, not even its own credit.
    let own_credit = Judgment {
        condition: "credit".into(),
        passed: true,
        reason: "we are clean".into(),
        credit_lookup: Some(clean_lookup("2026-11-20")),
    };
    let err = i
        .selections
        .judge(&acme, HARBIN, id.clone(), a.id.clone(), own_credit)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    let judged = i.judge_all(&bureau, &id, &a).await;
    assert!(judged.eligible, "{:?}", judged.eligibility);
    let credit = judged
        .eligibility
        .iter()
        .find(|c| c.condition == "credit")
        .unwrap();
    assert_eq!(credit.judged_by, "city_bureau-harbin-bureau");
    assert_eq!(
        credit.credit_lookup.as_ref().unwrap().reference,
        "XY-2026-0001"
    );
    i.judge_all(&bureau, &id, &b).await;
    let s = i
        .selections
        .shortlist(&bureau, HARBIN, id.clone())
        .await
        .unwrap();
    assert_eq!(
        s.shortlist.len(),
        2,
        "the ineligible application is not ranked"
    );
    assert_eq!(
        (
            s.shortlist[0].organization.as_str(),
            s.shortlist[0].proposed
        ),
        ("beta", true)
    );
    assert!(!s.shortlist[1].proposed);

    // The notice: at least 5 working days after its publication day.
    let short = api::Notice {
        starts_on: "2026-11-25".into(),
        ends_on: "2026-12-01".into(),
        ..Default::default()
    };
    let err = i
        .selections
        .publish_notice(&bureau, HARBIN, id.clone(), short)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("earliest last day") && err.to_string().contains("2026-12-02"),
        "{err}"
    );
    let notice = api::Notice {
        starts_on: "2026-11-25".into(),
        ends_on: "2026-12-02".into(),
        ..Default::default()
    };
    let s = i
        .selections
        .publish_notice(&bureau, HARBIN, id.clone(), notice)
        .await
        .unwrap();
    assert_eq!(state(&s), api::SelectionState::InNotice);
    let public_view = i
        .selections
        .public_get(&public, HARBIN, id.clone())
        .await
        .unwrap();
    assert_eq!(public_view.proposed_organizations, ["beta"]);

    i.set("2026-11-26 09:00");
    let objection = i
        .selections
        .object(
            &public,
            HARBIN,
            id.clone(),
            api::Objection {
                objector: "citizen".into(),
                reason: "beta lacks experience".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    i.set("2026-12-02 23:59");
    let err = i
        .selections
        .conclude(&bureau, HARBIN, id.clone(), Some(agreed()), departments())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("runs until"), "{err}");
    i.set("2026-12-03 00:00");
    let err = i
        .selections
        .object(
            &public,
            HARBIN,
            id.clone(),
            api::Objection {
                objector: "x".into(),
                reason: "late".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ended"), "{err}");
    let err = i
        .selections
        .conclude(&bureau, HARBIN, id.clone(), Some(agreed()), departments())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not resolved"), "{err}");
    let resolved = i
        .selections
        .resolve(
            &bureau,
            HARBIN,
            id.clone(),
            objection.id.clone(),
            Resolution {
                outcome: api::ObjectionState::Dismissed,
                reasons: vec!["experience verified".into()],
                duplicates: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(resolved.state, api::ObjectionState::Dismissed as i32);
    let err = i
        .selections
        .conclude(&bureau, HARBIN, id.clone(), None, Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::InvalidArgument);
    let violations = err.field_violations();
    let departments_rule = violations.iter().find(|v| v.field == "departments");
    assert!(
        departments_rule.is_some_and(|v| v.description.contains("第十三条")),
        "{violations:?}"
    );
    let s = i
        .selections
        .conclude(&bureau, HARBIN, id.clone(), Some(agreed()), departments())
        .await
        .unwrap();
    assert_eq!(state(&s), api::SelectionState::Concluded);
    let conclusion = s.conclusion.unwrap();
    assert_eq!(conclusion.selected_organizations, ["beta"]);
    assert_eq!(
        conclusion.departments,
        departments(),
        "the departments that took part (第十三条)"
    );
    pdp_kit::testing::assert_events_documented(&i.store, pdp_selection::TOPIC).await;
}

pub async fn an_upheld_objection_sends_the_result_back_to_shortlisting(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN, "harbin-bureau");
    let (id, notice) = i.in_notice(&bureau).await;
    let public = caller("public", HARBIN, "public");
    let o = i
        .selections
        .object(
            &public,
            HARBIN,
            id.clone(),
            api::Objection {
                objector: "rival".into(),
                reason: "scores miscounted".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = i
        .selections
        .resolve(
            &bureau,
            HARBIN,
            id.clone(),
            o.id.clone(),
            Resolution {
                outcome: api::ObjectionState::Upheld,
                reasons: vec![],
                duplicates: Vec::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.field_violations()[0].field, "reasons");
    i.selections
        .resolve(
            &bureau,
            HARBIN,
            id.clone(),
            o.id.clone(),
            Resolution {
                outcome: api::ObjectionState::Upheld,
                reasons: vec!["recount".into()],
                duplicates: Vec::new(),
            },
        )
        .await
        .unwrap();
    let s = i.selections.get(&bureau, HARBIN, id.clone()).await.unwrap();
    assert_eq!(state(&s), api::SelectionState::Shortlisted);
    assert!(s.notice.is_none() && s.shortlist.is_empty());
    let err = i
        .selections
        .conclude(&bureau, HARBIN, id.clone(), Some(agreed()), departments())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("public notice first"), "{err}");
    // Shortlisted again, a new notice, and the procedure goes on.
    i.selections
        .shortlist(&bureau, HARBIN, id.clone())
        .await
        .unwrap();
    i.selections
        .publish_notice(&bureau, HARBIN, id.clone(), notice)
        .await
        .unwrap();
}

pub async fn an_invited_tender_takes_only_the_invited(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN, "harbin-bureau");
    i.plan_event(HARBIN, "became_effective", "plan-1", 1).await;
    let mut invited = call("plan-1");
    invited.method = api::SelectionMethod::InvitedTender as i32;
    invited.invited_organizations = vec!["acme".into()];
    let id = i
        .selections
        .create(&bureau, HARBIN, invited)
        .await
        .unwrap()
        .id;
    i.selections
        .publish(&bureau, HARBIN, id.clone())
        .await
        .unwrap();
    let err = i
        .selections
        .apply(
            &caller("operator", HARBIN, "beta"),
            HARBIN,
            id.clone(),
            application(evidence()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
    let invited = i
        .selections
        .apply(
            &caller("operator", HARBIN, "acme"),
            HARBIN,
            id.clone(),
            application(evidence()),
        )
        .await
        .unwrap();
    assert!(!eligibility_failed(&invited), "{:?}", invited.eligibility);
    // Another city's operator is refused by tenancy before anything else.
    let err = i
        .selections
        .apply(
            &caller("operator", "230200", "acme"),
            HARBIN,
            id,
            application(evidence()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
}

/// Operators never evaluate (an operator could shortlist itself); among the bureau's people and
/// outside experts only those the bureau named, and none tied to an applicant; a bureau never
/// applies.
pub async fn only_named_evaluators_untied_to_applicants_evaluate(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN, "harbin-bureau");
    let id = i.published(&bureau).await;
    let acme = caller("operator", HARBIN, "acme");
    let a = i
        .selections
        .apply(&acme, HARBIN, id.clone(), application(evidence()))
        .await
        .unwrap();

    // A bureau does not apply, even one that also holds the operator role.
    let err = i
        .selections
        .apply(&bureau, HARBIN, id.clone(), application(evidence()))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ROLE_NOT_ALLOWED", "{err}");
    let mut both = bureau.clone();
    both.roles.push("operator".into());
    let err = i
        .selections
        .apply(&both, HARBIN, id.clone(), application(evidence()))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "BUREAU_DOES_NOT_APPLY", "{err}");

    // An expert of an applicant cannot be named.
    let expert = |subject: &str, org: &str| api::Evaluator {
        subject: subject.into(),
        name: "Prof. Wang".into(),
        organization: org.into(),
        kind: api::EvaluatorKind::Expert as i32,
    };
    let err = i
        .selections
        .appoint_evaluators(&bureau, HARBIN, id.clone(), vec![expert("wang", "acme")])
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.field_violations()[0].field,
        "evaluators[0].organization"
    );
    let named = i
        .selections
        .appoint_evaluators(
            &bureau,
            HARBIN,
            id.clone(),
            vec![expert("wang", "hit-university")],
        )
        .await
        .unwrap();
    assert_eq!(named.evaluators.len(), 1);

    i.set("2026-11-25 10:00");
    let err = i
        .selections
        .evaluate(&acme, HARBIN, id.clone(), a.id.clone(), scores(100, 100))
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        "ROLE_NOT_ALLOWED",
        "an operator never evaluates: {err}"
    );
    let err = i
        .selections
        .evaluate(&bureau, HARBIN, id.clone(), a.id.clone(), scores(80, 80))
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        "NOT_AN_EVALUATOR",
        "the bureau was replaced by the expert: {err}"
    );
    let mut turncoat = caller("evaluator", HARBIN, "acme");
    turncoat.subject = "wang".into();
    let err = i
        .selections
        .evaluate(&turncoat, HARBIN, id.clone(), a.id.clone(), scores(80, 80))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "EVALUATOR_TIED_TO_APPLICANT", "{err}");
    let wang = {
        let mut w = caller("evaluator", HARBIN, "hit-university");
        w.subject = "wang".into();
        w
    };
    // A named evaluator reads the applications it judges; an evaluator not named reads none.
    let read = |who: Identity| {
        let selections = i.selections.clone();
        let id = id.clone();
        async move { selections.applications(&who, HARBIN, id).await.unwrap() }
    };
    assert_eq!(read(wang.clone()).await.len(), 1);
    let mut stranger = caller("evaluator", HARBIN, "other-university");
    stranger.subject = "zhao".into();
    assert!(read(stranger).await.is_empty());
    let scored = i
        .selections
        .evaluate(&wang, HARBIN, id.clone(), a.id.clone(), scores(80, 80))
        .await
        .unwrap();
    assert_eq!(scored.evaluations[0].evaluator, "wang");

    // Once evaluation has begun the evaluators stay as named.
    let err = i
        .selections
        .appoint_evaluators(&bureau, HARBIN, id.clone(), vec![expert("li", "other")])
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::FailedPrecondition);
}

/// One objector cannot bury a notice: three objections each, sixty an hour in all; the bureau
/// pages through them and resolves those that say the same together.
pub async fn objections_are_bounded_paged_and_resolved_together(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN, "harbin-bureau");
    let (id, _) = i.in_notice(&bureau).await;
    let objection = |reason: &str| api::Objection {
        objector: "a citizen".into(),
        reason: reason.into(),
        ..Default::default()
    };
    let mut one = caller("public", HARBIN, "public");
    one.subject = "anonymous@203.0.113.9".into();
    let mut filed = Vec::new();
    for n in 0..3 {
        let o = i
            .selections
            .object(&one, HARBIN, id.clone(), objection(&format!("point {n}")))
            .await
            .unwrap();
        filed.push(o.id);
    }
    let err = i
        .selections
        .object(&one, HARBIN, id.clone(), objection("point 3"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the most one objector may"),
        "{err}"
    );
    // Others are still heard, up to the hour's bound.
    for n in 0..57 {
        let mut other = one.clone();
        other.subject = format!("anonymous@198.51.100.{n}");
        i.selections
            .object(&other, HARBIN, id.clone(), objection("same point"))
            .await
            .unwrap();
    }
    let mut late = one.clone();
    late.subject = "anonymous@192.0.2.1".into();
    let err = i
        .selections
        .object(&late, HARBIN, id.clone(), objection("one more"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in the last hour"), "{err}");
    i.set("2026-11-25 11:30");
    i.selections
        .object(&late, HARBIN, id.clone(), objection("one more"))
        .await
        .unwrap();

    // Paged, oldest first.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = i
            .selections
            .objections(
                &bureau,
                HARBIN,
                id.clone(),
                Cursor::parse(25, &token).unwrap(),
            )
            .await
            .unwrap();
        assert!(page.len() <= 25);
        seen.extend(page.into_iter().map(|o| o.id));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen.len(), 61);
    assert_eq!(seen[..3], filed[..]);

    // The same point, resolved once for all who made it.
    let resolved = i
        .selections
        .resolve(
            &bureau,
            HARBIN,
            id.clone(),
            seen[3].clone(),
            Resolution {
                outcome: api::ObjectionState::Dismissed,
                reasons: vec!["answered in the notice's annex".into()],
                duplicates: seen[4..60].to_vec(),
            },
        )
        .await
        .unwrap();
    assert_eq!(resolved.id, seen[3]);
    let (page, _) = i
        .selections
        .objections(&bureau, HARBIN, id.clone(), Cursor::parse(100, "").unwrap())
        .await
        .unwrap();
    let dismissed = page
        .iter()
        .filter(|o| o.state == api::ObjectionState::Dismissed as i32)
        .count();
    assert_eq!(dismissed, 57);
    let err = i
        .selections
        .resolve(
            &bureau,
            HARBIN,
            id.clone(),
            seen[0].clone(),
            Resolution {
                outcome: api::ObjectionState::Dismissed,
                reasons: vec!["x".into()],
                duplicates: vec![seen[4].clone()],
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("resolved already"), "{err}");
}

/// Applicants learn the result from the notice, not before: no scores, ranks or proposal while
/// the bureau shortlists; from the notice on, the proposed organizations only.
pub async fn applicants_see_the_result_only_as_the_notice_publishes_it(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN, "harbin-bureau");
    let id = i.published(&bureau).await;
    let mut apps = Vec::new();
    for org in ["acme", "beta"] {
        let a = i
            .selections
            .apply(
                &caller("operator", HARBIN, org),
                HARBIN,
                id.clone(),
                application(evidence()),
            )
            .await
            .unwrap();
        i.judge_all(&bureau, &id, &a).await;
        apps.push(a.id);
    }
    i.set("2026-11-25 10:00");
    for (a, score) in apps.iter().zip([70, 90]) {
        i.selections
            .evaluate(&bureau, HARBIN, id.clone(), a.clone(), scores(score, score))
            .await
            .unwrap();
    }
    i.selections
        .shortlist(&bureau, HARBIN, id.clone())
        .await
        .unwrap();
    let acme = caller("operator", HARBIN, "acme");
    let seen = i.selections.get(&acme, HARBIN, id.clone()).await.unwrap();
    assert!(
        seen.shortlist.is_empty(),
        "no ranks before the notice: {seen:?}"
    );
    assert!(seen.evaluators.is_empty());
    let (listed, _) = i
        .selections
        .list(&acme, HARBIN, None, Cursor::parse(0, "").unwrap())
        .await
        .unwrap();
    assert!(listed.iter().all(|s| s.shortlist.is_empty()));
    let staff = i.selections.get(&bureau, HARBIN, id.clone()).await.unwrap();
    assert_eq!(staff.shortlist.len(), 2, "the bureau sees every entry");

    let notice = api::Notice {
        starts_on: "2026-11-25".into(),
        ends_on: "2026-12-02".into(),
        ..Default::default()
    };
    i.selections
        .publish_notice(&bureau, HARBIN, id.clone(), notice)
        .await
        .unwrap();
    let seen = i.selections.get(&acme, HARBIN, id.clone()).await.unwrap();
    assert_eq!(seen.shortlist.len(), 1, "{seen:?}");
    assert_eq!(seen.shortlist[0].organization, "beta");
    assert_eq!(
        (seen.shortlist[0].score, seen.shortlist[0].rank),
        (0.0, 0),
        "the notice names the proposed, not their scores"
    );
}

pub async fn an_incident_oversight_recorded_fails_the_condition_whatever_is_declared(
    backend: Backend,
) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN, "harbin-bureau");
    let id = i.published(&bureau).await;
    i.incident_recorded("delta", "2025-05-10").await;
    i.incident_recorded("omega", "2021-05-10").await;
    let delta = caller("operator", HARBIN, "delta");
    let d = i
        .selections
        .apply(&delta, HARBIN, id.clone(), application(evidence()))
        .await
        .unwrap();
    let failed: Vec<_> = d
        .eligibility
        .iter()
        .filter(|r| r.state == api::ConditionState::Failed as i32)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].condition, "no_security_incident_in_three_years");
    assert!(
        failed[0].reason.contains("2025-05-10") && failed[0].reason.contains("recorded"),
        "{}",
        failed[0].reason
    );
    // One more than three years before counts no more.
    let omega = caller("operator", HARBIN, "omega");
    let o = i
        .selections
        .apply(&omega, HARBIN, id, application(evidence()))
        .await
        .unwrap();
    assert!(
        !o.eligibility
            .iter()
            .any(|r| r.state == api::ConditionState::Failed as i32),
        "{o:?}"
    );
}
