//! Agreements' rules, end to end through the service and a real store.

use pdp_kit::error::ServiceError;
use pdp_kit::paging::Cursor;
use pdp_proto::pdp::agreements::v1 as api;

use crate::support::*;

const HARBIN: &str = "230100";

pub async fn an_agreement_needs_a_concluded_selection_and_complete_terms(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", "harbin-bureau");
    let err = i
        .agreements
        .create(&bureau, HARBIN, draft("2026-12-01", "2027-11-30"))
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::FailedPrecondition);
    assert!(err.to_string().contains(":conclude"), "{err}");
    i.concluded_selection().await;

    let mut wrong = draft("2026-12-01", "2029-12-01");
    wrong.operator = "acme".into();
    let scope = wrong.terms.as_mut().unwrap().scope.as_mut().unwrap();
    scope.resource_ids.push("r9".into());
    wrong.terms.as_mut().unwrap().liability.clear();
    let err = i
        .agreements
        .create(&bureau, HARBIN, wrong)
        .await
        .unwrap_err();
    let v = err.field_violations();
    let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "agreement.operator",
            "agreement.terms.scope.resource_ids[1]",
            "agreement.terms.term.last_day",
            "agreement.terms.liability"
        ]
    );
    assert!(
        v[2].description.contains("2029-11-30"),
        "the latest allowed last day: {}",
        v[2].description
    );
    let (listed, _) = i
        .agreements
        .list(&bureau, HARBIN, None, Cursor::parse(0, "").unwrap())
        .await
        .unwrap();
    assert!(listed.is_empty(), "a refusal writes nothing");

    let a = i
        .agreements
        .create(&bureau, HARBIN, draft("2026-12-01", "2029-11-30"))
        .await
        .unwrap();
    assert_eq!(
        (state(&a), a.plan_id.as_str()),
        (api::AgreementState::Draft, "plan-1")
    );
}

pub async fn signing_activation_and_expiry_happen_on_time(backend: Backend) {
    let i = Instance::new(&backend);
    i.concluded_selection().await;
    let bureau = caller("city_bureau", "harbin-bureau");
    let beta = caller("operator", "beta");
    let a = i
        .agreements
        .create(&bureau, HARBIN, draft("2026-12-01", "2027-11-30"))
        .await
        .unwrap();
    let id = a.id.clone();
    let err = i
        .agreements
        .sign(
            &caller("operator", "acme"),
            HARBIN,
            id.clone(),
            api::Party::Operator,
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
    let err = i
        .agreements
        .sign(&beta, HARBIN, id.clone(), api::Party::Bureau)
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
    let a = i
        .agreements
        .sign(&bureau, HARBIN, id.clone(), api::Party::Bureau)
        .await
        .unwrap();
    assert_eq!(state(&a), api::AgreementState::Draft);
    assert!(
        i.agreements
            .sign(&bureau, HARBIN, id.clone(), api::Party::Bureau)
            .await
            .is_err()
    );
    let a = i
        .agreements
        .sign(&beta, HARBIN, id.clone(), api::Party::Operator)
        .await
        .unwrap();
    assert_eq!(state(&a), api::AgreementState::Signed);

    let check = |org: &str, r: &str| i.agreements.check(&bureau, HARBIN, org.into(), r.into());
    assert!(
        !check("beta", "r1").await.unwrap().authorized,
        "signed is not active"
    );
    assert_eq!(i.agreements.run_schedule().await.unwrap(), 0);
    i.set("2026-12-01 00:00");
    assert_eq!(i.agreements.run_schedule().await.unwrap(), 1);
    assert_eq!(i.agreements.run_schedule().await.unwrap(), 0, "once");
    assert_eq!(
        state(&i.agreements.get(&bureau, HARBIN, id.clone()).await.unwrap()),
        api::AgreementState::Active
    );
    assert!(check("beta", "r1").await.unwrap().authorized);
    let outside = check("beta", "r2").await.unwrap();
    assert!(
        !outside.authorized && outside.reason.contains("r2"),
        "{outside:?}"
    );
    assert!(!check("acme", "r1").await.unwrap().authorized);
    assert_eq!(
        i.agreements
            .authorized_resources(&beta, HARBIN)
            .await
            .unwrap()
            .resource_ids,
        ["r1"]
    );
    // Operators see their own agreements only.
    let (own, _) = i
        .agreements
        .list(
            &caller("operator", "acme"),
            HARBIN,
            None,
            Cursor::parse(0, "").unwrap(),
        )
        .await
        .unwrap();
    assert!(own.is_empty());
    let public = caller("public", "public");
    let (disclosed, _) = i
        .agreements
        .public_list(&public, HARBIN, Cursor::parse(0, "").unwrap())
        .await
        .unwrap();
    assert_eq!(
        (
            disclosed[0].operator.as_str(),
            disclosed[0].last_day.as_str()
        ),
        ("beta", "2027-11-30")
    );

    i.set("2027-11-30 23:59");
    assert_eq!(
        i.agreements.run_schedule().await.unwrap(),
        0,
        "the last day is still in the term"
    );
    i.set("2027-12-01 00:00");
    assert_eq!(i.agreements.run_schedule().await.unwrap(), 1);
    assert_eq!(
        state(&i.agreements.get(&bureau, HARBIN, id).await.unwrap()),
        api::AgreementState::Expired
    );
    assert!(!check("beta", "r1").await.unwrap().authorized);
    pdp_kit::testing::assert_events_documented(&i.store, pdp_agreements::TOPIC).await;
}

pub async fn renewal_stays_within_three_uninterrupted_years(backend: Backend) {
    let i = Instance::new(&backend);
    i.concluded_selection().await;
    let bureau = caller("city_bureau", "harbin-bureau");
    let beta = caller("operator", "beta");
    let a = i
        .agreements
        .create(&bureau, HARBIN, draft("2026-11-26", "2027-11-25"))
        .await
        .unwrap();
    i.agreements
        .sign(&bureau, HARBIN, a.id.clone(), api::Party::Bureau)
        .await
        .unwrap();
    let a = i
        .agreements
        .sign(&beta, HARBIN, a.id.clone(), api::Party::Operator)
        .await
        .unwrap();
    assert_eq!(
        state(&a),
        api::AgreementState::Active,
        "the first day has come: active at once"
    );

    // Not without a passed evaluation of the term (第二十八条).
    let err = i
        .agreements
        .renew(&bureau, HARBIN, a.id.clone(), "2028-11-25".into())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("passed evaluation"), "{err}");
    i.evaluated(&a.id).await;
    let err = i
        .agreements
        .renew(&bureau, HARBIN, a.id.clone(), "2029-11-26".into())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("2029-11-25") && err.to_string().contains("new selection"),
        "{err}"
    );
    let renewed = i
        .agreements
        .renew(&bureau, HARBIN, a.id.clone(), "2028-11-25".into())
        .await
        .unwrap();
    let term = renewed.terms.as_ref().unwrap().term.clone().unwrap();
    assert_eq!(
        (term.first_day.as_str(), renewed.renews.as_str()),
        ("2027-11-26", a.id.as_str())
    );
    assert_eq!(state(&renewed), api::AgreementState::Draft);
    i.agreements
        .sign(&bureau, HARBIN, renewed.id.clone(), api::Party::Bureau)
        .await
        .unwrap();
    i.agreements
        .sign(&beta, HARBIN, renewed.id.clone(), api::Party::Operator)
        .await
        .unwrap();
    i.evaluated(&renewed.id).await;
    // The chain started on 2026-11-26: a second renewal may reach 2029-11-25, not beyond.
    let err = i
        .agreements
        .renew(&bureau, HARBIN, renewed.id.clone(), "2029-11-26".into())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("since 2026-11-26"), "{err}");
    i.agreements
        .renew(&bureau, HARBIN, renewed.id, "2029-11-25".into())
        .await
        .unwrap();
}

/// The bureau suspends an active agreement (the operator is authorized for nothing meanwhile),
/// resumes it, and terminates it early on a decision; each with its reason, each a step the state
/// machine allows, and a suspended agreement still ends with its term.
pub async fn the_bureau_suspends_resumes_and_terminates_on_a_decision(backend: Backend) {
    let i = Instance::new(&backend);
    i.concluded_selection().await;
    let bureau = caller("city_bureau", "harbin-bureau");
    let beta = caller("operator", "beta");
    let active = |first: &'static str, last: &'static str| {
        let (i, bureau, beta) = (&i, bureau.clone(), beta.clone());
        async move {
            let a = i
                .agreements
                .create(&bureau, HARBIN, draft(first, last))
                .await
                .unwrap();
            for (who, party) in [(&bureau, api::Party::Bureau), (&beta, api::Party::Operator)] {
                i.agreements
                    .sign(who, HARBIN, a.id.clone(), party)
                    .await
                    .unwrap();
            }
            a.id
        }
    };
    i.set("2026-12-01 09:00");
    let id = active("2026-12-01", "2027-11-30").await;
    let check = || {
        i.agreements
            .check(&bureau, HARBIN, "beta".into(), "r1".into())
    };
    assert!(check().await.unwrap().authorized);

    let err = i
        .agreements
        .suspend(&beta, HARBIN, id.clone(), "audit".into())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
    let err = i
        .agreements
        .suspend(&bureau, HARBIN, id.clone(), " ".into())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::InvalidArgument);
    assert!(err.to_string().contains("reason"), "{err}");
    let a = i
        .agreements
        .suspend(&bureau, HARBIN, id.clone(), "security audit".into())
        .await
        .unwrap();
    assert_eq!(state(&a), api::AgreementState::Suspended);
    assert_eq!(a.suspension_reason, "security audit");
    assert!(
        !check().await.unwrap().authorized,
        "suspended authorizes nothing"
    );
    let err = i
        .agreements
        .suspend(&bureau, HARBIN, id.clone(), "again".into())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::FailedPrecondition);
    assert!(err.to_string().contains("suspended"), "{err}");
    let a = i
        .agreements
        .resume(&bureau, HARBIN, id.clone(), "audit passed".into())
        .await
        .unwrap();
    assert_eq!(state(&a), api::AgreementState::Active);
    assert!(a.suspension_reason.is_empty());
    assert!(check().await.unwrap().authorized);

    // Termination rests on a decision: every missing part is named.
    let terminate = |ground: api::TerminationGround, decision: Option<api::Decision>| {
        let request = api::TerminateAgreementRequest {
            tenant: HARBIN.into(),
            id: id.clone(),
            ground: ground as i32,
            reason: "rectification order 7 overdue".into(),
            decision,
        };
        let (i, bureau) = (&i, bureau.clone());
        async move { i.agreements.terminate(&bureau, HARBIN, request).await }
    };
    let err = terminate(
        api::TerminationGround::Unspecified,
        Some(api::Decision {
            digest: "md5:abc".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    let named: Vec<String> = err
        .field_violations()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        named,
        [
            "ground",
            "decision.title",
            "decision.reference",
            "decision.digest"
        ]
    );
    let decision = api::Decision {
        title: "关于终止授权运营协议的决定".into(),
        reference: "哈数据〔2027〕12号".into(),
        digest: format!("sha256:{}", "ab".repeat(32)),
    };
    // For a breach, only once oversight recorded the rectification failed (第三十条).
    let err = terminate(
        api::TerminationGround::BreachNotRectified,
        Some(decision.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::FailedPrecondition);
    assert!(err.to_string().contains("failed rectification"), "{err}");
    i.rectification_failed(&id).await;
    let a = terminate(
        api::TerminationGround::BreachNotRectified,
        Some(decision.clone()),
    )
    .await
    .unwrap();
    assert_eq!(state(&a), api::AgreementState::Terminated);
    let t = a.termination.unwrap();
    assert_eq!(t.decision, Some(decision.clone()));
    assert_eq!(t.decided_by, bureau.subject);
    assert!(!check().await.unwrap().authorized);
    let err = terminate(api::TerminationGround::BreachNotRectified, Some(decision))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("terminated"), "{err}");
    let err = i
        .agreements
        .resume(&bureau, HARBIN, id.clone(), "changed our mind".into())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::FailedPrecondition);

    // A suspended agreement still expires at the end of its last day.
    let short = active("2026-12-01", "2026-12-31").await;
    i.agreements
        .suspend(&bureau, HARBIN, short.clone(), "audit".into())
        .await
        .unwrap();
    i.set("2027-01-01 00:00");
    assert_eq!(i.agreements.run_schedule().await.unwrap(), 1);
    let a = i.agreements.get(&bureau, HARBIN, short).await.unwrap();
    assert_eq!(state(&a), api::AgreementState::Expired);
    pdp_kit::testing::assert_events_documented(&i.store, pdp_agreements::TOPIC).await;
}
