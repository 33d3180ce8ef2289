//! Requests' rules, end to end through the service and a real store.

use pdp_kit::error::{ErrorCode, ServiceError};
use pdp_kit::paging::Cursor;
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::requests::v1 as api;

use crate::support::*;

fn fields(err: &pdp_requests::RequestError) -> Vec<String> {
    err.field_violations()
        .into_iter()
        .map(|v| v.field)
        .collect()
}

fn first_page() -> Cursor {
    Cursor::parse(0, "").unwrap()
}

fn state(r: &api::DataRequest) -> api::RequestState {
    api::RequestState::try_from(r.state).unwrap()
}

pub async fn a_request_lies_within_an_active_agreement_and_says_what_article_17_asks(
    backend: Backend,
) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let gamma = caller("operator", "gamma");
    // No agreement, no request.
    let err = i
        .requests
        .create(&gamma, HARBIN, request())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("no ACTIVE agreement"), "{err}");
    // Outside the agreement's scope, a field the resource lacks, past the agreement's last day.
    let mut wrong = request();
    wrong.resources[0].fields.push("colour".into());
    wrong.resources.push(api::RequestedResource {
        resource_id: "tax".into(),
        fields: vec!["taxpayer".into()],
    });
    wrong.period.as_mut().unwrap().last_day = "2027-07-31".into();
    let err = i.requests.create(&beta, HARBIN, wrong).await.unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "request.resources[0].fields[2]",
            "request.resources[2].resource_id",
            "request.period.last_day"
        ]
    );
    assert!(
        err.to_string().contains("第十七条")
            || format!("{:?}", err.field_violations()).contains("第十七条")
    );
    // A draft may be incomplete; submitting it names every missing part.
    let draft = api::DataRequest {
        scenario: request().scenario,
        ..Default::default()
    };
    let d = i.requests.create(&beta, HARBIN, draft).await.unwrap();
    assert_eq!(state(&d), api::RequestState::Draft);
    assert_eq!(d.operator, "beta");
    assert_eq!(d.agreement_id, "agr-1");
    let err = i
        .requests
        .submit(&beta, HARBIN, d.id.clone())
        .await
        .unwrap_err();
    let missing = fields(&err);
    for part in [
        "request.resources",
        "request.purposes",
        "request.feasibility",
        "request.compliance.legal_basis",
    ] {
        assert!(missing.iter().any(|f| f == part), "{part} in {missing:?}");
    }
    // Personal information asked for is declared and its protection said.
    let mut personal = request();
    personal.resources[0].fields.push("card_no".into());
    let d = i
        .requests
        .update(&beta, HARBIN, d.id.clone(), personal)
        .await
        .unwrap();
    let err = i
        .requests
        .submit(&beta, HARBIN, d.id.clone())
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "request.compliance.personal_information_fields",
            "request.compliance.personal_information_protection"
        ]
    );
    // Another operator neither sees nor edits it; the bureau sees it.
    let other = caller("operator", "acme");
    let err = i
        .requests
        .get(&other, HARBIN, d.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let err = i
        .requests
        .update(&other, HARBIN, d.id.clone(), request())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(
        i.requests
            .get(&bureau(), HARBIN, d.id.clone())
            .await
            .is_ok()
    );
    let d = i
        .requests
        .update(&beta, HARBIN, d.id.clone(), request())
        .await
        .unwrap();
    let s = i
        .requests
        .submit(&beta, HARBIN, d.id.clone())
        .await
        .unwrap();
    assert_eq!(state(&s), api::RequestState::InReview);
    // Submitted, it no longer changes by its operator's hand.
    let err = i
        .requests
        .update(&beta, HARBIN, d.id.clone(), request())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_requests::TOPIC).await;
}

pub async fn the_bureau_and_each_provider_review_and_the_grant_is_what_all_approved(
    backend: Backend,
) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let transport = caller("provider", "transport-org");
    let health = caller("provider", "health-org");
    let tax = caller("provider", "tax-org");
    let d = i.requests.create(&beta, HARBIN, request()).await.unwrap();
    let r = i
        .requests
        .submit(&beta, HARBIN, d.id.clone())
        .await
        .unwrap();
    let reviewers: Vec<&str> = r
        .reviews
        .iter()
        .map(|rv| rv.reviewer_organization.as_str())
        .collect();
    assert_eq!(reviewers, [HARBIN, "health-org", "transport-org"]);
    // 10 working days after Thursday 2026-11-26.
    assert_eq!(r.reviews[1].due_on, "2026-12-10");

    // Providers see what touches their resources only.
    let (seen, _) = i
        .requests
        .list(&transport, HARBIN, None, false, first_page())
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    let (seen, _) = i
        .requests
        .list(&tax, HARBIN, None, false, first_page())
        .await
        .unwrap();
    assert!(seen.is_empty());
    let err = i
        .requests
        .review(
            &tax,
            HARBIN,
            r.id.clone(),
            decision(api::ReviewOutcome::Approved, "ok", None),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    // A provider narrows only its own resources.
    let clinic_only = api::ReviewConditions {
        resources: vec![api::ResourceConditions {
            resource_id: "bus".into(),
            fields: vec!["stop_id".into()],
            masked_fields: vec![],
        }],
        last_day: String::new(),
    };
    let err = i
        .requests
        .review(
            &health,
            HARBIN,
            r.id.clone(),
            decision(
                api::ReviewOutcome::ApprovedWithConditions,
                "x",
                Some(clinic_only),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["review.conditions.resources[0].resource_id"]);
    // The operator reviews nothing.
    let err = i
        .requests
        .review(
            &beta,
            HARBIN,
            r.id.clone(),
            decision(api::ReviewOutcome::Approved, "ok", None),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);

    let r1 = i
        .requests
        .review(
            &bureau(),
            HARBIN,
            r.id.clone(),
            decision(api::ReviewOutcome::Approved, "lawful purpose", None),
        )
        .await
        .unwrap();
    assert_eq!(
        state(&r1),
        api::RequestState::InReview,
        "the providers have not decided"
    );
    let narrower = api::ReviewConditions {
        resources: vec![api::ResourceConditions {
            resource_id: "bus".into(),
            fields: vec!["stop_id".into(), "arrival".into()],
            masked_fields: vec!["stop_id".into()],
        }],
        last_day: "2027-03-31".into(),
    };
    i.requests
        .review(
            &transport,
            HARBIN,
            r.id.clone(),
            decision(
                api::ReviewOutcome::ApprovedWithConditions,
                "stops masked",
                Some(narrower),
            ),
        )
        .await
        .unwrap();
    let err = i
        .requests
        .review(
            &transport,
            HARBIN,
            r.id.clone(),
            decision(api::ReviewOutcome::Approved, "again", None),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("reviewed this request already"),
        "{err}"
    );
    let done = i
        .requests
        .review(
            &health,
            HARBIN,
            r.id.clone(),
            decision(api::ReviewOutcome::Approved, "fine", None),
        )
        .await
        .unwrap();
    assert_eq!(state(&done), api::RequestState::Approved);
    let grant = i
        .requests
        .grant(&beta, HARBIN, done.grant_id.clone())
        .await
        .unwrap();
    assert_eq!(grant.valid_from, "2026-12-01");
    assert_eq!(
        grant.valid_to, "2027-03-31",
        "the shortest period any reviewer set"
    );
    assert_eq!(grant.resources[0].masked_fields, ["stop_id"]);
    assert_eq!(grant.resources[1].fields, ["clinic_id", "visits"]);
    // Another operator does not see it.
    let err = i
        .requests
        .grant(&caller("operator", "acme"), HARBIN, grant.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);

    // The sandbox's question, before the grant's first day and within it.
    let ask = |fields: &[&str]| api::CheckGrantRequest {
        tenant: HARBIN.into(),
        organization: "beta".into(),
        resource_id: "bus".into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
    };
    let early = i
        .requests
        .check(&beta, HARBIN, ask(&["stop_id"]))
        .await
        .unwrap();
    assert!(!early.granted, "{early:?}");
    i.set("2026-12-02 09:00");
    let yes = i
        .requests
        .check(&beta, HARBIN, ask(&["stop_id", "arrival"]))
        .await
        .unwrap();
    assert!(yes.granted, "{yes:?}");
    assert_eq!(yes.masked_fields, ["stop_id"]);
    let no = i
        .requests
        .check(&beta, HARBIN, ask(&["card_no"]))
        .await
        .unwrap();
    assert!(!no.granted && no.reason.contains("card_no"), "{no:?}");
    let err = i
        .requests
        .check(&caller("operator", "acme"), HARBIN, ask(&["stop_id"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);

    // The agreement suspended: the grant allows nothing, yet stands; resumed, it allows again.
    let agreement = |ty| i.agreement("agr-1", "beta", ty, &["bus", "clinic"]);
    agreement(agreements::AGREEMENT_SUSPENDED).await;
    let paused = i
        .requests
        .check(&beta, HARBIN, ask(&["stop_id"]))
        .await
        .unwrap();
    assert!(!paused.granted, "{paused:?}");
    let standing = i
        .requests
        .grant(&beta, HARBIN, grant.id.clone())
        .await
        .unwrap();
    assert_eq!(standing.state, api::GrantState::Valid as i32);
    agreement(agreements::AGREEMENT_RESUMED).await;
    let back = i
        .requests
        .check(&beta, HARBIN, ask(&["stop_id"]))
        .await
        .unwrap();
    assert!(back.granted, "{back:?}");

    // The agreement terminated early: the grant ends at once, whatever anyone cached.
    agreement(agreements::AGREEMENT_TERMINATED).await;
    let ended = i
        .requests
        .grant(&beta, HARBIN, grant.id.clone())
        .await
        .unwrap();
    assert_eq!(ended.state, api::GrantState::Ended as i32);
    assert_eq!(ended.end, api::GrantEnd::AgreementEnded as i32);
    assert!(ended.end_reason.contains("TERMINATED"), "{ended:?}");
    let after = i
        .requests
        .check(&beta, HARBIN, ask(&["stop_id"]))
        .await
        .unwrap();
    assert!(!after.granted, "{after:?}");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_requests::TOPIC).await;
}

pub async fn one_rejection_rejects_with_every_reason_shown(backend: Backend) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let d = i.requests.create(&beta, HARBIN, request()).await.unwrap();
    i.requests
        .submit(&beta, HARBIN, d.id.clone())
        .await
        .unwrap();
    let err = i
        .requests
        .review(
            &bureau(),
            HARBIN,
            d.id.clone(),
            decision(api::ReviewOutcome::Rejected, " ", None),
        )
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["review.reasons"]);
    let rejected = i
        .requests
        .review(
            &caller("provider", "health-org"),
            HARBIN,
            d.id.clone(),
            decision(
                api::ReviewOutcome::Rejected,
                "visits are too fine-grained",
                None,
            ),
        )
        .await
        .unwrap();
    assert_eq!(state(&rejected), api::RequestState::Rejected);
    let seen = i.requests.get(&beta, HARBIN, d.id.clone()).await.unwrap();
    let reasons: Vec<&String> = seen.reviews.iter().flat_map(|rv| &rv.reasons).collect();
    assert_eq!(reasons, ["visits are too fine-grained"]);
    assert!(seen.grant_id.is_empty());
    let err = i
        .requests
        .review(
            &bureau(),
            HARBIN,
            d.id.clone(),
            decision(api::ReviewOutcome::Approved, "ok", None),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);
    // A provider's filtered listing is never cut short by the rows the filter drops.
    let second = i.requests.create(&beta, HARBIN, request()).await.unwrap();
    i.requests
        .submit(&beta, HARBIN, second.id.clone())
        .await
        .unwrap();
    let health = caller("provider", "health-org");
    let one = Cursor::parse(1, "").unwrap();
    let in_review = Some(pdp_requests::request::RequestState::InReview);
    let (page, _) = i
        .requests
        .list(&health, HARBIN, in_review, false, one)
        .await
        .unwrap();
    let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [second.id.as_str()]);
}

pub async fn an_unanswered_review_is_overdue_and_grants_end_on_time_or_on_revocation(
    backend: Backend,
) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    // The bureau gives providers 3 working days here.
    let err = i
        .requests
        .update_periods(
            &beta,
            HARBIN,
            api::ReviewPeriods {
                provider_review_working_days: 3,
                ticket_working_days: 5,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let err = i
        .requests
        .update_periods(
            &bureau(),
            HARBIN,
            api::ReviewPeriods {
                provider_review_working_days: 0,
                ticket_working_days: 5,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["periods.provider_review_working_days"]);
    i.requests
        .update_periods(
            &bureau(),
            HARBIN,
            api::ReviewPeriods {
                provider_review_working_days: 3,
                ticket_working_days: 5,
            },
        )
        .await
        .unwrap();
    let d = i.requests.create(&beta, HARBIN, request()).await.unwrap();
    let r = i
        .requests
        .submit(&beta, HARBIN, d.id.clone())
        .await
        .unwrap();
    // Thursday + 3 working days: Friday, Monday, Tuesday.
    assert_eq!(r.reviews[1].due_on, "2026-12-01");
    i.set("2026-12-01 23:00");
    assert_eq!(
        i.requests.run_schedule().await.unwrap(),
        0,
        "the last day is still the period"
    );
    let (overdue, _) = i
        .requests
        .list(&bureau(), HARBIN, None, true, first_page())
        .await
        .unwrap();
    assert!(overdue.is_empty());
    i.set("2026-12-02 08:00");
    assert_eq!(
        i.requests.run_schedule().await.unwrap(),
        2,
        "both providers are late"
    );
    assert_eq!(i.requests.run_schedule().await.unwrap(), 0, "once");
    let (overdue, _) = i
        .requests
        .list(&bureau(), HARBIN, None, true, first_page())
        .await
        .unwrap();
    assert_eq!(overdue.len(), 1);
    assert!(overdue[0].reviews[1].overdue && overdue[0].reviews[2].overdue);

    // Late answers still count; then the grant runs to its last day.
    i.approve_by_every_reviewer(&d.id).await;
    let (overdue, _) = i
        .requests
        .list(&bureau(), HARBIN, None, true, first_page())
        .await
        .unwrap();
    assert!(overdue.is_empty(), "answered, no longer waiting");
    let approved = i.requests.get(&beta, HARBIN, d.id.clone()).await.unwrap();
    let grant = approved.grant_id.clone();
    i.set("2027-05-31 23:00");
    i.requests.run_schedule().await.unwrap();
    let g = i
        .requests
        .grant(&beta, HARBIN, grant.clone())
        .await
        .unwrap();
    assert_eq!(
        g.state,
        api::GrantState::Valid as i32,
        "valid through its last day"
    );
    i.set("2027-06-01 00:30");
    assert_eq!(i.requests.run_schedule().await.unwrap(), 1);
    let g = i
        .requests
        .grant(&beta, HARBIN, grant.clone())
        .await
        .unwrap();
    assert_eq!(g.end, api::GrantEnd::Expired as i32);

    // A second grant, revoked by the bureau with its reason.
    i.set("2026-12-03 10:00");
    let d = i.requests.create(&beta, HARBIN, request()).await.unwrap();
    i.requests
        .submit(&beta, HARBIN, d.id.clone())
        .await
        .unwrap();
    i.approve_by_every_reviewer(&d.id).await;
    let grant = i
        .requests
        .get(&beta, HARBIN, d.id.clone())
        .await
        .unwrap()
        .grant_id;
    let err = i
        .requests
        .revoke(&bureau(), HARBIN, grant.clone(), "".into())
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["reason"]);
    let err = i
        .requests
        .revoke(&beta, HARBIN, grant.clone(), "mine".into())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let g = i
        .requests
        .revoke(
            &bureau(),
            HARBIN,
            grant.clone(),
            "used beyond its purpose".into(),
        )
        .await
        .unwrap();
    assert_eq!(
        (g.end, g.end_reason.as_str()),
        (api::GrantEnd::Revoked as i32, "used beyond its purpose")
    );
    let (valid, _) = i
        .requests
        .grants(&beta, HARBIN, Some(api::GrantState::Valid), first_page())
        .await
        .unwrap();
    assert!(valid.is_empty());
    pdp_kit::testing::assert_events_documented(&i.store, pdp_requests::TOPIC).await;
}

pub async fn a_ticket_answered_late_is_overdue_and_the_record_says_so(backend: Backend) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let transport = caller("provider", "transport-org");
    let ticket = |resource: &str, fields: &[&str]| api::QualityTicket {
        resource_id: resource.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        kind: api::TicketKind::Stale as i32,
        description: "arrivals lag by an hour".into(),
        evidence: "stop 1042 on 2026-11-25".into(),
        ..Default::default()
    };
    // Only on a resource of the caller's agreement, and fields it has.
    let err = i
        .requests
        .raise(&beta, HARBIN, ticket("tax", &["taxpayer"]))
        .await
        .unwrap_err();
    assert!(
        format!("{:?}", err.field_violations()).contains("第十九条"),
        "{err}"
    );
    let err = i
        .requests
        .raise(&beta, HARBIN, ticket("bus", &["colour"]))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["ticket.fields[0]"]);
    let t = i
        .requests
        .raise(&beta, HARBIN, ticket("bus", &["arrival"]))
        .await
        .unwrap();
    assert_eq!(t.provider, "transport-org");
    // Thursday 2026-11-26 + 5 working days.
    assert_eq!(t.due_on, "2026-12-03");
    // Only the resource's provider answers; the health provider does not even see it.
    let health = caller("provider", "health-org");
    let err = i
        .requests
        .answer(&health, HARBIN, t.id.clone(), "x".into(), true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let err = i
        .requests
        .confirm(&beta, HARBIN, t.id.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(":answer"), "{err}");

    i.set("2026-12-04 09:00");
    assert_eq!(i.requests.run_schedule().await.unwrap(), 1);
    let (late, _) = i
        .requests
        .tickets(&bureau(), HARBIN, true, first_page())
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    let record = i
        .requests
        .quality_record(&bureau(), HARBIN, "bus".into())
        .await
        .unwrap();
    assert_eq!((record.raised, record.open, record.overdue), (1, 1, 1));

    let answered = i
        .requests
        .answer(
            &transport,
            HARBIN,
            t.id.clone(),
            "feed restarted".into(),
            true,
        )
        .await
        .unwrap();
    assert!(answered.answers[0].late);
    // Not fixed for the operator: reopened with a reason, a new period from today.
    let err = i
        .requests
        .reopen(&beta, HARBIN, t.id.clone(), " ".into())
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["reason"]);
    let reopened = i
        .requests
        .reopen(&beta, HARBIN, t.id.clone(), "still an hour behind".into())
        .await
        .unwrap();
    assert_eq!(reopened.due_on, "2026-12-11");
    assert!(!reopened.overdue);
    i.requests
        .answer(
            &transport,
            HARBIN,
            t.id.clone(),
            "clock skew fixed".into(),
            true,
        )
        .await
        .unwrap();
    let closed = i
        .requests
        .confirm(&beta, HARBIN, t.id.clone())
        .await
        .unwrap();
    assert_eq!(closed.state, api::TicketState::Confirmed as i32);
    let record = i
        .requests
        .quality_record(&transport, HARBIN, "bus".into())
        .await
        .unwrap();
    assert_eq!(
        (
            record.answered_late,
            record.answered_in_time,
            record.reopened,
            record.confirmed,
            record.open
        ),
        (1, 1, 1, 1, 0)
    );
    let err = i
        .requests
        .quality_record(&health, HARBIN, "bus".into())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "another provider's record");
    i.set("2026-12-12 09:00");
    assert_eq!(
        i.requests.run_schedule().await.unwrap(),
        0,
        "answered tickets are never overdue"
    );
    // One operator holds at most 20 unconfirmed tickets on one resource.
    for _ in 0..20 {
        let raised = i
            .requests
            .raise(&beta, HARBIN, ticket("bus", &["arrival"]))
            .await;
        raised.unwrap();
    }
    let err = i
        .requests
        .raise(&beta, HARBIN, ticket("bus", &["arrival"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 20"), "{err}");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_requests::TOPIC).await;
}

pub async fn developers_register_with_an_operator_that_reviews_them_and_their_needs(
    backend: Backend,
) {
    let i = Instance::new(&backend).await;
    let beta = caller("operator", "beta");
    let labs = caller("developer", "labs");
    let registration = |operator: &str| api::Developer {
        operator: operator.into(),
        name: "Harbin Labs".into(),
        qualifications: vec!["ISO 27001".into()],
        contact: "dev@labs".into(),
        ..Default::default()
    };
    // With an operator that holds an active agreement, never with oneself.
    let err = i
        .requests
        .register_developer(&labs, HARBIN, registration("acme"))
        .await
        .unwrap_err();
    assert!(
        format!("{:?}", err.field_violations()).contains("no ACTIVE agreement"),
        "{err}"
    );
    let beta_as_developer = caller("developer", "beta");
    let err = i
        .requests
        .register_developer(&beta_as_developer, HARBIN, registration("beta"))
        .await
        .unwrap_err();
    assert!(
        format!("{:?}", err.field_violations()).contains("第二十条(一)"),
        "{err}"
    );
    let d = i
        .requests
        .register_developer(&labs, HARBIN, registration("beta"))
        .await
        .unwrap();
    assert_eq!(d.state, api::ApprovalState::Pending as i32);
    let again = i
        .requests
        .register_developer(&labs, HARBIN, registration("beta"))
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("registered with beta already"),
        "{again}"
    );
    // Needs wait for the operator's approval of the registration.
    let need = api::DevelopmentNeed {
        scenario: request().scenario,
        data_needs: vec!["beta's arrival API, hourly aggregates".into()],
        ..Default::default()
    };
    let err = i
        .requests
        .submit_need(&labs, HARBIN, d.id.clone(), need.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(":review"), "{err}");
    // Only beta reviews it; another operator does not see it.
    let approve = api::Approval {
        approved: true,
        reasons: vec!["qualified".into()],
    };
    let err = i
        .requests
        .review_developer(
            &caller("operator", "acme"),
            HARBIN,
            d.id.clone(),
            approve.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let d = i
        .requests
        .review_developer(&beta, HARBIN, d.id.clone(), approve.clone())
        .await
        .unwrap();
    assert_eq!(d.state, api::ApprovalState::Approved as i32);
    let err = i
        .requests
        .review_developer(&beta, HARBIN, d.id.clone(), approve.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);
    let n = i
        .requests
        .submit_need(&labs, HARBIN, d.id.clone(), need)
        .await
        .unwrap();
    let reject = api::Approval {
        approved: false,
        reasons: vec!["needs raw card numbers".into()],
    };
    let n = i
        .requests
        .review_need(&beta, HARBIN, d.id.clone(), n.id.clone(), reject)
        .await
        .unwrap();
    assert_eq!(n.state, api::ApprovalState::Rejected as i32);
    let (needs, _) = i
        .requests
        .needs(&labs, HARBIN, d.id.clone(), first_page())
        .await
        .unwrap();
    assert_eq!(needs[0].reasons, ["needs raw card numbers"]);
    // A developer never requests raw data.
    let err = i
        .requests
        .create(&labs, HARBIN, request())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("第二十一条"), "{err}");
    let (seen, _) = i
        .requests
        .developers(&caller("operator", "acme"), HARBIN, first_page())
        .await
        .unwrap();
    assert!(seen.is_empty());
    pdp_kit::testing::assert_events_documented(&i.store, pdp_requests::TOPIC).await;
}

pub async fn providers_load_data_and_operators_query_only_what_their_grant_names(backend: Backend) {
    let i = Instance::new(&backend).await;
    let transport = caller("provider", "transport-org");
    let beta = caller("operator", "beta");
    // The provider of the resource loads it; nobody else may.
    let err = i
        .requests
        .create_load(&beta, HARBIN, "bus".into())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let err = i
        .requests
        .create_load(&caller("provider", "health-org"), HARBIN, "bus".into())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let load = i
        .requests
        .create_load(&transport, HARBIN, "bus".into())
        .await
        .unwrap();
    let header = "stop_id,arrival,card_no,delay".to_string();
    let lines = |from: usize, n: usize, bad: Option<usize>| -> Vec<String> {
        (from..from + n)
            .map(|k| {
                let delay = if Some(k) == bad {
                    "late".to_string()
                } else {
                    (k % 7).to_string()
                };
                format!("S{},08:{:02},C{k:05},{delay}", k % 3, k % 60)
            })
            .collect()
    };
    let append = |lines: Vec<String>| {
        i.requests.append_rows(
            &transport,
            HARBIN,
            "bus".into(),
            load.id.clone(),
            header.clone(),
            lines,
        )
    };
    append(lines(0, 30, None)).await.unwrap();
    // A chunk with a value that does not fit is refused whole, its line counted over the load.
    let err = append(lines(30, 30, Some(34))).await.unwrap_err();
    let violations = format!("{:?}", err.field_violations());
    assert!(
        violations.contains("line 36") && violations.contains("`delay`"),
        "{violations}"
    );
    let loaded = append(lines(30, 30, None)).await.unwrap();
    assert_eq!((loaded.rows, loaded.chunks), (60, 2));
    let committed = i
        .requests
        .commit_load(&transport, HARBIN, "bus".into(), load.id.clone())
        .await
        .unwrap();
    assert_eq!(committed.version, 1);
    // One line per item: a line break cannot carry more lines than the bound.
    let second = i
        .requests
        .create_load(&transport, HARBIN, "bus".into())
        .await
        .unwrap();
    let smuggled = vec!["S1,08:00,C1,1\nS1,08:00,C2,1".to_string()];
    let err = i
        .requests
        .append_rows(
            &transport,
            HARBIN,
            "bus".into(),
            second.id,
            header.clone(),
            smuggled,
        )
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["lines[0]"]);
    // At most five open loads of one resource.
    for _ in 0..4 {
        i.requests
            .create_load(&transport, HARBIN, "bus".into())
            .await
            .unwrap();
    }
    let err = i
        .requests
        .create_load(&transport, HARBIN, "bus".into())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("5 loads"), "{err}");

    let grant = i.bus_grant().await;
    let query = |who: pdp_kit::identity::Identity, sql: &str| {
        let (grant, sql) = (grant.clone(), sql.to_string());
        let requests = i.requests.clone();
        async move { requests.run_query(&who, HARBIN, grant, sql).await }
    };
    let aggregate =
        r#"SELECT stop_id, count(*) AS n, avg(delay) AS mean FROM "bus" GROUP BY stop_id"#;
    // Before the grant's first day it allows nothing.
    let err = query(beta.clone(), aggregate).await.unwrap_err();
    assert!(err.to_string().contains("allows nothing"), "{err}");
    i.set("2026-12-02 09:00");
    let answer = query(beta.clone(), aggregate).await.unwrap();
    assert_eq!(answer.columns, ["stop_id", "n", "mean"]);
    assert_eq!(answer.rows.len(), 3, "three stops of 20 records each");
    assert_eq!(answer.epsilon_left, 9.0);
    // Rows never leave, and a refusal costs nothing.
    let err = query(beta.clone(), r#"SELECT * FROM "bus""#)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    assert!(
        format!("{:?}", err.field_violations()).contains("第二十二条"),
        "{err}"
    );
    // A field the grant does not name does not exist.
    let err = query(
        beta.clone(),
        r#"SELECT card_no, count(*) FROM "bus" GROUP BY card_no"#,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    // Another operator cannot use beta's grant.
    let err = query(caller("operator", "acme"), aggregate)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    // The budget: ten answers in all, then no more.
    for left in (0..9).rev() {
        let answer = query(beta.clone(), aggregate).await.unwrap();
        assert_eq!(answer.epsilon_left, f64::from(left));
    }
    let err = query(beta.clone(), aggregate).await.unwrap_err();
    assert!(err.to_string().contains("privacy budget"), "{err}");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_requests::TOPIC).await;
}

/// A whole file streamed into a load (`UploadLoadData`): pieces that cut lines anywhere, parts
/// written as they come; a misfit line, a broken stream or a wrong content type leaves the load
/// empty and the store without a part of it; a filled load takes no second upload.
pub async fn providers_stream_whole_files_into_loads(backend: Backend) {
    use futures::stream;
    let i = Instance::new(&backend).await;
    let transport = caller("provider", "transport-org");
    let load = i
        .requests
        .create_load(&transport, HARBIN, "bus".into())
        .await
        .unwrap();
    let file = |n: usize, bad: Option<usize>| -> Vec<u8> {
        let mut csv = String::from("delay,stop_id,arrival,card_no\r\n");
        for k in 0..n {
            let delay = if Some(k) == bad {
                "late".to_string()
            } else {
                (k % 7).to_string()
            };
            csv.push_str(&format!("{delay},S{},08:00,C{k:06}\r\n", k % 3));
        }
        csv.into_bytes()
    };
    // Pieces of 1 000 bytes: lines cut anywhere, as a network delivers them.
    let pieces = |bytes: Vec<u8>| {
        let pieces: Vec<Result<Vec<u8>, pdp_kit::error::DomainError>> =
            bytes.chunks(1000).map(|c| Ok(c.to_vec())).collect();
        stream::iter(pieces)
    };
    let upload = |content_type: &'static str, data| {
        let requests = i.requests.clone();
        let (who, id) = (transport.clone(), load.id.clone());
        async move {
            requests
                .upload_data(&who, HARBIN, "bus".into(), id, content_type, data)
                .await
        }
    };
    let parts = || async {
        let dir = i
            .sandbox_dir()
            .join(format!("tenants/{HARBIN}/resources/bus/loads/{}", load.id));
        std::fs::read_dir(dir).map(Iterator::count).unwrap_or(0)
    };
    // A misfit in the third part: the two parts written before it are removed.
    let bad = pieces(file(250_000, Some(230_000)));
    let err = upload("text/csv", bad).await.unwrap_err();
    let violations = format!("{:?}", err.field_violations());
    assert!(
        violations.contains("line 230002") && violations.contains("`delay`"),
        "{violations}"
    );
    assert_eq!(parts().await, 0);
    // A stream that breaks off half-way leaves nothing either.
    let mut broken: Vec<Result<Vec<u8>, pdp_kit::error::DomainError>> = file(150_000, None)
        .chunks(1000)
        .map(|c| Ok(c.to_vec()))
        .collect();
    broken.truncate(broken.len() - 10);
    broken.push(Err(pdp_kit::error::DomainError::invalid(
        "upload",
        vec![pdp_kit::error::FieldViolation::new("data", "broke off")],
    )));
    let err = upload("text/csv", stream::iter(broken)).await.unwrap_err();
    assert!(err.to_string().contains("broke off"), "{err}");
    assert_eq!(parts().await, 0);
    let err = upload("application/json", pieces(file(10, None)))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["content-type"]);
    // Another provider cannot upload into this load.
    let err = i
        .requests
        .upload_data(
            &caller("provider", "health-org"),
            HARBIN,
            "bus".into(),
            load.id.clone(),
            "text/csv",
            pieces(file(10, None)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);

    let loaded = upload("text/csv", pieces(file(250_000, None)))
        .await
        .unwrap();
    assert_eq!((loaded.rows, loaded.chunks), (250_000, 3));
    assert_eq!(parts().await, 3);
    let err = upload("text/csv", pieces(file(10, None)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");
    i.requests
        .commit_load(&transport, HARBIN, "bus".into(), load.id.clone())
        .await
        .unwrap();

    // A Parquet file: spooled, then checked column by column and row by row.
    let load = i
        .requests
        .create_load(&transport, HARBIN, "bus".into())
        .await
        .unwrap();
    let put = |data: Vec<u8>| {
        let requests = i.requests.clone();
        let (who, id) = (transport.clone(), load.id.clone());
        async move {
            requests
                .upload_data(
                    &who,
                    HARBIN,
                    "bus".into(),
                    id,
                    "application/vnd.apache.parquet",
                    pieces(data),
                )
                .await
        }
    };
    let err = put(b"PAR1 but not Parquet".to_vec()).await.unwrap_err();
    assert!(err.to_string().contains("not a Parquet file"), "{err}");
    let err = put(parquet(5_000, true, false)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("column `delay` holds text, not a registered integer"),
        "{err}"
    );
    let err = put(parquet(5_000, false, true)).await.unwrap_err();
    assert!(err.to_string().contains("missing [\"card_no\"]"), "{err}");
    let loaded = put(parquet(20_000, false, false)).await.unwrap();
    assert_eq!((loaded.rows, loaded.chunks), (20_000, 1));
    let dir = i
        .sandbox_dir()
        .join(format!("tenants/{HARBIN}/resources/bus/loads/{}", load.id));
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
    // Nothing stays behind in staging, refused or loaded.
    let staged = std::fs::read_dir(i.sandbox_dir().join("staging"))
        .map(Iterator::count)
        .unwrap_or(0);
    assert_eq!(staged, 0);
}

/// A Parquet file of `n` bus arrivals; `delay` as text instead of an integer, or without
/// `card_no`, when asked.
fn parquet(n: usize, delay_as_text: bool, without_card: bool) -> Vec<u8> {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
    use datafusion::parquet::arrow::ArrowWriter;
    let text = |f: &dyn Fn(usize) -> String| -> ArrayRef {
        Arc::new(StringArray::from((0..n).map(f).collect::<Vec<_>>()))
    };
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("stop_id", text(&|k| format!("S{}", k % 3))),
        ("arrival", text(&|_| "08:00".to_string())),
    ];
    if !without_card {
        columns.push(("card_no", text(&|k| format!("C{k:06}"))));
    }
    let delay: ArrayRef = if delay_as_text {
        text(&|k| (k % 7).to_string())
    } else {
        Arc::new(Int32Array::from(
            (0..n).map(|k| (k % 7) as i32).collect::<Vec<_>>(),
        ))
    };
    columns.push(("delay", delay));
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// An operator pins the version of a resource its grant reads, so that its figures do not move
/// when the provider loads again; 0 follows the newest again.
pub async fn operators_pin_the_version_their_grant_reads(backend: Backend) {
    let i = Instance::new(&backend).await;
    let transport = caller("provider", "transport-org");
    let beta = caller("operator", "beta");
    i.load_bus(60).await;
    // Version 2: four stops where version 1 had three.
    let load = i
        .requests
        .create_load(&transport, HARBIN, "bus".into())
        .await
        .unwrap();
    let lines = (0..80)
        .map(|k| format!("S{},08:00,C{k:05},{}", k % 4, k % 7))
        .collect();
    i.requests
        .append_rows(
            &transport,
            HARBIN,
            "bus".into(),
            load.id.clone(),
            "stop_id,arrival,card_no,delay".into(),
            lines,
        )
        .await
        .unwrap();
    i.requests
        .commit_load(&transport, HARBIN, "bus".into(), load.id)
        .await
        .unwrap();
    let grant = i.bus_grant().await;
    i.set("2026-12-02 09:00");
    let stops = || async {
        let sql = r#"SELECT stop_id, count(*) AS n FROM "bus" GROUP BY stop_id"#;
        let answer = i
            .requests
            .run_query(&beta, HARBIN, grant.clone(), sql.into())
            .await
            .unwrap();
        answer.rows.len()
    };
    let pin = |who: pdp_kit::identity::Identity, resource: &str, version: u32| {
        let (requests, grant, resource) = (i.requests.clone(), grant.clone(), resource.to_string());
        async move {
            requests
                .pin_version(&who, HARBIN, grant, resource, version)
                .await
        }
    };
    assert_eq!(stops().await, 4, "the newest version");
    let pinned = pin(beta.clone(), "bus", 1).await.unwrap();
    assert_eq!(pinned.resources[0].pinned_version, 1);
    assert_eq!(stops().await, 3, "version 1, pinned");
    let err = pin(beta.clone(), "bus", 3).await.unwrap_err();
    assert_eq!(fields(&err), ["version"]);
    assert!(err.to_string().contains("from 1 to 2"), "{err}");
    let err = pin(beta.clone(), "tax", 1).await.unwrap_err();
    assert_eq!(fields(&err), ["resource_id"]);
    let err = pin(caller("operator", "acme"), "bus", 2).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let err = pin(transport.clone(), "bus", 2).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    pin(beta.clone(), "bus", 0).await.unwrap();
    assert_eq!(stops().await, 4, "the newest again");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_requests::TOPIC).await;
}

/// A grant's workspace holds at most its quota in the store: the table that would pass it is
/// refused (RESOURCE_EXHAUSTED) and nothing of it stays; a table replaced by one of its name counts
/// once.
pub async fn a_grants_workspace_holds_at_most_its_quota(backend: Backend) {
    let quota = 16 << 10;
    let i = Instance::with_workspace_quota(&backend, quota).await;
    i.load_bus(1000).await;
    let grant = i.bus_grant().await;
    i.set("2026-12-02 09:00");
    let beta = caller("operator", "beta");
    let run = |sql: String| {
        let (grant, beta) = (grant.clone(), beta.clone());
        let requests = i.requests.clone();
        async move { requests.run_query(&beta, HARBIN, grant, sql).await }
    };
    let derive = |name: &str| {
        run(format!(
            r#"CREATE TABLE workspace.{name} AS SELECT stop_id, delay FROM "bus""#
        ))
    };
    let first = derive("t0").await.unwrap().derived.unwrap();
    assert!(first.bytes > 0, "{first:?}");
    // The same name again replaces it: it counts once.
    let again = derive("t0").await.unwrap().derived.unwrap();
    assert_eq!(again.bytes, first.bytes);
    let mut refused = None;
    for n in 1..20 {
        match derive(&format!("t{n}")).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((n, e));
                break;
            }
        }
    }
    let (n, err) = refused.expect("the quota refuses a table before the 20th");
    assert_eq!(err.code(), ErrorCode::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("delete a table first"), "{err}");
    let listed = i
        .requests
        .list_workspace_tables(&beta, HARBIN, grant.clone())
        .await
        .unwrap();
    assert_eq!(listed.len(), n, "t0..t{} kept, t{n} not", n - 1);
    let held: u64 = listed.iter().map(|t| t.bytes).sum();
    assert!(
        held <= quota && held + first.bytes > quota,
        "{held} of {quota}"
    );
    // Nothing of the refused table stays in the store.
    let workspace = i
        .sandbox_dir()
        .join(format!("tenants/{HARBIN}/grants/{grant}/workspace/t{n}"));
    let left = std::fs::read_dir(&workspace)
        .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
        .unwrap_or(0);
    assert_eq!(left, 0, "{}", workspace.display());
}

/// A deployment with no store for the sandbox's data (a cluster without `sandbox.store_url`)
/// refuses loads and queries, saying why, instead of keeping data in one pod.
pub async fn without_a_sandbox_store_loads_and_queries_are_refused(backend: Backend) {
    let i = Instance::new(&backend).await;
    let without = pdp_requests::Requests::new(
        i.store.clone(),
        std::sync::Arc::new(i.clock.clone()),
        std::sync::Arc::new(pdp_kit::calendar::WorkingCalendar::shipped()),
        None,
    );
    let transport = caller("provider", "transport-org");
    let load = without
        .create_load(&transport, HARBIN, "bus".into())
        .await
        .unwrap();
    let lines = vec!["S1,08:00,C00001,3".to_string()];
    let header = "stop_id,arrival,card_no,delay".to_string();
    let err = without
        .append_rows(&transport, HARBIN, "bus".into(), load.id, header, lines)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);
    assert!(err.to_string().contains("S3-compatible"), "{err}");
    let err = without
        .run_query(
            &caller("operator", "beta"),
            HARBIN,
            "g".into(),
            "SELECT 1".into(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("S3-compatible"), "{err}");
}

pub async fn the_bureau_sets_the_group_size_and_the_privacy_budget(backend: Backend) {
    let i = Instance::new(&backend).await;
    let settings = |k, epsilon, budget| api::SandboxSettings {
        min_group_size: k,
        epsilon_per_query: epsilon,
        grant_budget: budget,
        queries_per_minute: 0,
    };
    let beta = caller("operator", "beta");
    let err = i
        .requests
        .update_sandbox_settings(&beta, HARBIN, settings(20, 1.0, 10.0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let err = i
        .requests
        .update_sandbox_settings(&bureau(), HARBIN, settings(3, 0.0, 0.0))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "settings.min_group_size",
            "settings.epsilon_per_query",
            "settings.grant_budget"
        ]
    );
    assert_eq!(
        i.requests
            .sandbox_settings(&beta, HARBIN)
            .await
            .unwrap()
            .min_group_size,
        10,
        "the default"
    );
    i.requests
        .update_sandbox_settings(&bureau(), HARBIN, settings(25, 2.0, 4.0))
        .await
        .unwrap();
    i.load_bus(60).await;
    let grant = i.bus_grant().await;
    i.set("2026-12-02 09:00");
    let sql = r#"SELECT stop_id, count(*) AS n FROM "bus" GROUP BY stop_id"#;
    // Groups of 20 are under the tenant's 25: nothing leaves; two answers of ε 2 spend 4.
    let answer = i
        .requests
        .run_query(&beta, HARBIN, grant.clone(), sql.into())
        .await
        .unwrap();
    assert_eq!((answer.rows.len(), answer.suppressed_groups), (0, 3));
    assert_eq!(answer.epsilon_left, 2.0);
    let answer = i
        .requests
        .run_query(&beta, HARBIN, grant.clone(), sql.into())
        .await
        .unwrap();
    assert_eq!(answer.epsilon_left, 0.0);
    let err = i
        .requests
        .run_query(&beta, HARBIN, grant, sql.into())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("privacy budget"), "{err}");
}

/// An operator keeps derived tables and its own data in the grant's workspace: row level inside,
/// labelled with the strictest label of their inputs, read only by queries on that grant under
/// the same disclosure control; and a grant runs at most the tenant's statements per minute.
pub async fn operators_keep_tables_in_the_grants_workspace_at_the_tenants_rate(backend: Backend) {
    let i = Instance::new(&backend).await;
    i.load_bus(60).await;
    let grant = i.bus_grant().await;
    i.set("2026-12-02 09:00");
    let beta = caller("operator", "beta");
    let run = |sql: &str| {
        let (grant, sql, beta) = (grant.clone(), sql.to_string(), beta.clone());
        let requests = i.requests.clone();
        async move { requests.run_query(&beta, HARBIN, grant, sql).await }
    };
    let answer =
        run(r#"CREATE TABLE workspace.late AS SELECT stop_id, delay FROM "bus" WHERE delay > 0"#)
            .await
            .unwrap();
    assert!(
        answer.rows.is_empty() && answer.columns.is_empty(),
        "nothing of it leaves"
    );
    assert_eq!(answer.epsilon_left, 10.0, "a derivation spends no ε");
    let late = answer.derived.unwrap();
    assert_eq!(late.name, "late");
    assert_eq!(late.source, api::WorkspaceTableSource::Derived as i32);
    assert_eq!(late.inputs, ["bus"]);
    assert_eq!(
        (late.classification, late.sensitivity),
        (2, 2),
        "labelled as the resource it came from"
    );
    assert!(
        !late.personal_information,
        "the grant names no personal field"
    );
    // Read only as aggregates: 51 late arrivals over three stops.
    let answer =
        run("SELECT stop_id, count(*) AS n FROM workspace.late GROUP BY stop_id ORDER BY stop_id")
            .await
            .unwrap();
    assert_eq!(answer.rows.len(), 3);
    let err = run("SELECT * FROM workspace.late").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);

    // The operator's own data: declared by its first chunk, refused whole when a line misfits.
    let column = |name: &str, ty: &str| api::WorkspaceColumn {
        name: name.into(),
        r#type: ty.into(),
        personal_information: false,
    };
    let upload = |name: &str, columns: Vec<api::WorkspaceColumn>, lines: &[&str]| {
        let request = api::AppendWorkspaceRowsRequest {
            tenant: HARBIN.into(),
            grant_id: grant.clone(),
            name: name.into(),
            columns,
            header: "stop_id,district,platforms".into(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        };
        let (requests, beta) = (i.requests.clone(), beta.clone());
        async move { requests.append_workspace_rows(&beta, HARBIN, request).await }
    };
    let declared = vec![
        column("stop_id", "string"),
        column("district", "string"),
        column("platforms", "integer"),
    ];
    let err = upload("stops", declared.clone(), &["S0,Daoli,2", "S1,Daoli,many"])
        .await
        .unwrap_err();
    let violations = format!("{:?}", err.field_violations());
    assert!(
        violations.contains("line 3") && violations.contains("`platforms`"),
        "{violations}"
    );
    let err = upload("Stops!", vec![column("stop_id", "text")], &["S0"])
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["name"]);
    let err = upload("stops", vec![column("stop_id", "text")], &["S0"])
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["columns[0].type"]);
    let stops = upload("stops", declared, &["S0,Daoli,2", "S1,Daoli,1"])
        .await
        .unwrap();
    assert_eq!(stops.source, api::WorkspaceTableSource::Uploaded as i32);
    assert_eq!(
        stops.classification, 0,
        "the operator's own data carries no public label"
    );
    upload("stops", Vec::new(), &["S2,Nangang,3"])
        .await
        .unwrap();
    // Joined under the same rules: the derived label is the strictest of both.
    let joined = run(
        "CREATE TABLE workspace.by_district AS SELECT s.district, l.delay \
         FROM workspace.late l JOIN workspace.stops s ON l.stop_id = s.stop_id",
    )
    .await
    .unwrap()
    .derived
    .unwrap();
    assert_eq!(joined.inputs, ["workspace.late", "workspace.stops"]);
    assert_eq!(joined.classification, 2);
    let answer = run(
        "SELECT district, count(*) AS n FROM workspace.by_district GROUP BY district \
         ORDER BY district",
    )
    .await
    .unwrap();
    assert_eq!(answer.rows.len(), 2, "Daoli (S0, S1) and Nangang (S2)");
    // A name holds one kind of table.
    let err = upload("late", Vec::new(), &["S0,Daoli,2"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");
    let err = run(r#"CREATE TABLE workspace.stops AS SELECT stop_id FROM "bus""#)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");

    // Who sees the workspace: its operator and those who watch, nobody else.
    let names = |tables: Vec<api::WorkspaceTable>| -> Vec<String> {
        tables.into_iter().map(|t| t.name).collect()
    };
    let listed = i
        .requests
        .list_workspace_tables(&beta, HARBIN, grant.clone())
        .await
        .unwrap();
    assert_eq!(names(listed), ["by_district", "late", "stops"]);
    assert!(
        i.requests
            .list_workspace_tables(&bureau(), HARBIN, grant.clone())
            .await
            .is_ok()
    );
    let err = i
        .requests
        .list_workspace_tables(&caller("operator", "acme"), HARBIN, grant.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let err = i
        .requests
        .delete_workspace_table(
            &caller("operator", "acme"),
            HARBIN,
            grant.clone(),
            "stops".into(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    i.requests
        .delete_workspace_table(&beta, HARBIN, grant.clone(), "stops".into())
        .await
        .unwrap();
    let listed = i
        .requests
        .list_workspace_tables(&beta, HARBIN, grant.clone())
        .await
        .unwrap();
    assert_eq!(names(listed), ["by_district", "late"]);
    let err = run("SELECT district, count(*) FROM workspace.stops GROUP BY district")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::InvalidArgument,
        "a deleted table is no table: {err}"
    );

    // The operator's approved developers upload their data too; until approved they find no
    // such grant.
    let labs = caller("developer", "labs");
    let registration = api::Developer {
        operator: "beta".into(),
        name: "Harbin Labs".into(),
        qualifications: vec!["ISO 27001".into()],
        contact: "dev@labs".into(),
        ..Default::default()
    };
    let d = i
        .requests
        .register_developer(&labs, HARBIN, registration)
        .await
        .unwrap();
    let footfall = api::AppendWorkspaceRowsRequest {
        tenant: HARBIN.into(),
        grant_id: grant.clone(),
        name: "footfall".into(),
        columns: vec![column("stop_id", "string"), column("riders", "integer")],
        header: "stop_id,riders".into(),
        lines: vec!["S0,120".into(), "S1,80".into()],
    };
    let err = i
        .requests
        .append_workspace_rows(&labs, HARBIN, footfall.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    let approve = api::Approval {
        approved: true,
        reasons: vec!["qualified".into()],
    };
    i.requests
        .review_developer(&beta, HARBIN, d.id, approve)
        .await
        .unwrap();
    let uploaded = i
        .requests
        .append_workspace_rows(&labs, HARBIN, footfall)
        .await
        .unwrap();
    assert_eq!(uploaded.created_by, labs.subject);
    let listed = i
        .requests
        .list_workspace_tables(&labs, HARBIN, grant.clone())
        .await
        .unwrap();
    assert_eq!(names(listed), ["by_district", "footfall", "late"]);

    // The rate: three statements a minute, the fourth refused until the next minute.
    i.requests
        .update_sandbox_settings(
            &bureau(),
            HARBIN,
            api::SandboxSettings {
                min_group_size: 10,
                epsilon_per_query: 0.1,
                grant_budget: 10.0,
                queries_per_minute: 3,
            },
        )
        .await
        .unwrap();
    i.set("2026-12-02 10:00");
    let sql = r#"SELECT stop_id, count(*) AS n FROM "bus" GROUP BY stop_id"#;
    for _ in 0..3 {
        run(sql).await.unwrap();
    }
    let err = run(sql).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ResourceExhausted, "{err}");
    assert_eq!(err.reason(), "QUERY_RATE");
    i.set("2026-12-02 10:01");
    run(sql).await.unwrap();
    // Uploaded chunks count against the same rate.
    let declared = vec![
        column("stop_id", "string"),
        column("district", "string"),
        column("platforms", "integer"),
    ];
    upload("extra", declared, &["S0,Daoli,2"]).await.unwrap();
    upload("extra", Vec::new(), &["S1,Daoli,1"]).await.unwrap();
    let err = upload("extra", Vec::new(), &["S2,Nangang,3"])
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "QUERY_RATE", "{err}");
    pdp_kit::testing::assert_events_documented(&i.store, pdp_requests::TOPIC).await;
}

/// An API product's query: arrivals per stop, other than the excluded one.
const ARRIVALS_EXCEPT: &str =
    r#"SELECT stop_id, count(*) AS n FROM "bus" WHERE stop_id <> :excluded GROUP BY stop_id"#;

/// A product's buyer calls what its trade entitles it to, answered under disclosure control on
/// the grant the product is built on; nothing more than it bought, nothing after withdrawal.
pub async fn a_buyer_calls_what_its_trade_entitles_under_disclosure_control(backend: Backend) {
    use pdp_kit::events::Event;
    use pdp_proto::pdp::products::v1 as products;
    let i = Instance::new(&backend).await;
    i.load_bus(1000).await;
    let grant = i.bus_grant().await;
    i.set("2026-12-02 09:00");
    let harbin = HARBIN.parse().unwrap();
    let registered = products::ProductChanged {
        product_id: "p1".into(),
        operator: "beta".into(),
        grant_ids: vec![grant.clone()],
        form: products::ProductForm::Api as i32,
        query: ARRIVALS_EXCEPT.into(),
        parameters: vec![products::ApiParameter {
            name: "excluded".into(),
            r#type: products::ParameterType::String as i32,
            description: String::new(),
        }],
        ..Default::default()
    };
    let now = at("2026-12-02 09:00");
    i.apply(Event::typed(
        &harbin,
        products::PRODUCT_REGISTERED,
        "p1",
        now,
        &registered,
    ))
    .await;
    let buyer = caller("buyer", "91230100MA1BUYER01");
    let call = |value: &str| {
        let values = [("excluded".to_string(), value.to_string())].into();
        let (requests, buyer) = (i.requests.clone(), buyer.clone());
        async move {
            requests
                .call_product(&buyer, HARBIN, "p1".into(), values)
                .await
        }
    };
    // No trade yet: nothing is delivered.
    let err = call("S1").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    assert!(err.to_string().contains("no entitlement"), "{err}");
    // The exchange sold two calls.
    let trade = products::Trade {
        trade_id: "T-1".into(),
        product_id: "p1".into(),
        buyer_organization: "91230100MA1BUYER01".into(),
        entitlement: Some(products::Entitlement {
            calls: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    let recorded = products::TradeRecorded {
        trade_id: "T-1".into(),
        trade: Some(trade),
    };
    i.apply(Event::typed(
        &harbin,
        products::TRADE_RECORDED,
        "T-1",
        now,
        &recorded,
    ))
    .await;
    // A value its type does not allow is refused and uses no call; a quote stays in the literal.
    let err = call("S1\u{0}").await.unwrap_err();
    assert_eq!(fields(&err), ["parameters.excluded"], "{err}");
    let answer = call("S1").await.unwrap();
    assert_eq!(answer.columns, ["stop_id", "n"], "{answer:?}");
    let mut stops: Vec<&str> = answer.rows.iter().map(|r| r.values[0].as_str()).collect();
    stops.sort();
    assert_eq!(stops, ["S0", "S2"], "{answer:?}");
    assert!(answer.epsilon_spent > 0.0, "{answer:?}");
    let answer = call("S1' OR stop_id = 'S1").await.unwrap();
    assert_eq!(answer.rows.len(), 3, "nothing was excluded: {answer:?}");
    let err = call("S1").await.unwrap_err();
    assert!(
        err.to_string().contains("no entitlement"),
        "two calls bought, two made: {err}"
    );
    // Another organization has none of it.
    let other = caller("buyer", "91230100MA1OTHER02");
    let err = i
        .requests
        .call_product(
            &other,
            HARBIN,
            "p1".into(),
            [("excluded".into(), "S1".into())].into(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    // Withdrawn, it is delivered no more.
    i.apply(Event::typed(
        &harbin,
        products::PRODUCT_WITHDRAWN,
        "p1",
        now,
        &registered,
    ))
    .await;
    let err = call("S1").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");
}

/// A dataset product is computed when registered and again on its schedule, once whatever the
/// replicas; a buyer fetches the latest computation as many times as it bought.
pub async fn a_dataset_is_computed_on_its_schedule_and_fetched_as_bought(backend: Backend) {
    use pdp_kit::events::Event;
    use pdp_proto::pdp::products::v1 as products;
    let i = Instance::new(&backend).await;
    i.load_bus(1000).await;
    let grant = i.bus_grant().await;
    i.set("2026-12-02 09:00");
    let harbin = HARBIN.parse().unwrap();
    let now = at("2026-12-02 09:00");
    let registered = products::ProductChanged {
        product_id: "d1".into(),
        operator: "beta".into(),
        grant_ids: vec![grant],
        form: products::ProductForm::Dataset as i32,
        query: r#"SELECT stop_id, count(*) AS n FROM "bus" GROUP BY stop_id"#.into(),
        refresh_hours: 24,
        ..Default::default()
    };
    i.apply(Event::typed(
        &harbin,
        products::PRODUCT_REGISTERED,
        "d1",
        now,
        &registered,
    ))
    .await;
    let buyer = caller("buyer", "91230100MA1BUYER01");
    let fetch = || i.requests.fetch_dataset(&buyer, HARBIN, "d1".into());
    let err = fetch().await.unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::Unavailable,
        "not computed yet: {err}"
    );
    assert_eq!(i.requests.refresh_datasets().await.unwrap(), 1);
    assert_eq!(
        i.requests.refresh_datasets().await.unwrap(),
        0,
        "not due again yet"
    );
    let err = fetch().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err}");
    let trade = products::Trade {
        trade_id: "T-9".into(),
        product_id: "d1".into(),
        buyer_organization: "91230100MA1BUYER01".into(),
        entitlement: Some(products::Entitlement {
            deliveries: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let recorded = products::TradeRecorded {
        trade_id: "T-9".into(),
        trade: Some(trade),
    };
    i.apply(Event::typed(
        &harbin,
        products::TRADE_RECORDED,
        "T-9",
        now,
        &recorded,
    ))
    .await;
    let delivered = fetch().await.unwrap();
    assert_eq!(delivered.version, 1);
    let answer = delivered.answer.unwrap();
    assert_eq!(answer.columns, ["stop_id", "n"], "{answer:?}");
    assert_eq!(answer.rows.len(), 3, "{answer:?}");
    let err = fetch().await.unwrap_err();
    assert!(
        err.to_string().contains("no entitlement"),
        "one delivery bought: {err}"
    );
    // A day later it is computed again.
    i.set("2026-12-03 09:01");
    assert_eq!(i.requests.refresh_datasets().await.unwrap(), 1);
    // Withdrawn: no longer computed or delivered.
    i.apply(Event::typed(
        &harbin,
        products::PRODUCT_WITHDRAWN,
        "d1",
        now,
        &registered,
    ))
    .await;
    i.set("2026-12-05 09:01");
    assert_eq!(i.requests.refresh_datasets().await.unwrap(), 0);
    let err = fetch().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
}
