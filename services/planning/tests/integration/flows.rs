//! Planning's rules, end to end through the service and a real store.

use pdp_kit::clock::Clock;
use pdp_kit::error::ServiceError;
use pdp_kit::paging::Cursor;
use pdp_planning::PlanningError;
use pdp_planning::plan::PlanState;
use pdp_proto::pdp::planning::v1 as api;

use crate::support::*;

const HARBIN: &str = "230100";
const QIQIHAR: &str = "230200";
const PROVINCE: &str = "230000";

fn all() -> Cursor {
    Cursor::parse(0, "").unwrap()
}

pub async fn registration_needs_complete_metadata_and_numbers_are_stable(backend: Backend) {
    let i = Instance::new(&backend);
    let provider = caller("provider", HARBIN);
    let sparse = i
        .planning
        .create_resource(
            &provider,
            HARBIN,
            api::DataResource {
                name: "Taxi trips".into(),
                provider_unit: "Harbin Transport Bureau".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let refused = i
        .planning
        .register_resource(&provider, HARBIN, sparse.id.clone())
        .await
        .unwrap_err();
    let fields: Vec<_> = refused
        .field_violations()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(refused.to_status().code(), tonic::Code::InvalidArgument);
    for field in [
        "resource.sector",
        "resource.schema",
        "resource.classification",
        "resource.sensitivity",
        "resource.update_frequency",
        "resource.quality_statement",
    ] {
        assert!(fields.contains(&field.to_string()), "{field} in {fields:?}");
    }
    let unchanged = i
        .planning
        .get_resource(&provider, HARBIN, sparse.id.clone())
        .await
        .unwrap();
    assert!(
        unchanged.registration_number.is_empty(),
        "a refusal changes nothing"
    );
    assert_eq!(unchanged.owner_organization, provider.organization);

    // Another provider unit of the same city manages its own resources, not this one.
    let mut other = caller("provider", HARBIN);
    other.organization = "harbin-water".into();
    let err = i
        .planning
        .register_resource(&other, HARBIN, sparse.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
    let err = i
        .planning
        .update_resource(&other, HARBIN, sparse.id.clone(), resource("Renamed"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "NOT_OWNER");

    let mut complete = resource("Taxi trips");
    complete.name.clear();
    i.planning
        .update_resource(&provider, HARBIN, sparse.id.clone(), complete)
        .await
        .unwrap();
    let first = i
        .planning
        .register_resource(&provider, HARBIN, sparse.id.clone())
        .await
        .unwrap();
    assert_eq!(first.registration_number, "HLJ-230100-2026-000001");
    assert_eq!(first.registered_by, provider.subject);
    let again = i
        .planning
        .register_resource(&provider, HARBIN, sparse.id.clone())
        .await
        .unwrap();
    assert_eq!(
        again.registration_number, first.registration_number,
        "stable"
    );
    let second = registered(&i.planning, HARBIN, "Bus stops").await;
    assert_eq!(second.registration_number, "HLJ-230100-2026-000002");
    let qiqihar = registered(&i.planning, QIQIHAR, "Rail").await;
    assert_eq!(
        qiqihar.registration_number, "HLJ-230200-2026-000001",
        "numbered per tenant"
    );
    i.assert_events_documented().await;
}

pub async fn ineligible_resources_never_enter_a_scope(backend: Backend) {
    let i = Instance::new(&backend);
    let provider = caller("provider", HARBIN);
    let bureau = caller("city_bureau", HARBIN);
    let mut core = resource("Grid dispatch");
    core.classification = api::DataClass::Core as i32;
    let core = i
        .planning
        .create_resource(&provider, HARBIN, core)
        .await
        .unwrap();
    let core = i
        .planning
        .register_resource(&provider, HARBIN, core.id)
        .await
        .unwrap();
    let mut shared = resource("Provincial health records");
    shared.shared_origin = Some(api::SharedOrigin {
        source: "Heilongjiang Health Commission".into(),
        consented: false,
        consent_reference: String::new(),
    });
    let shared = i
        .planning
        .create_resource(&provider, HARBIN, shared)
        .await
        .unwrap();
    let shared = i
        .planning
        .register_resource(&provider, HARBIN, shared.id)
        .await
        .unwrap();

    let refused = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Energy", &[&core, &shared]))
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains(&core.id) && text.contains("R-DATA-2"),
        "{text}"
    );
    assert!(
        text.contains(&shared.id) && text.contains("R-DATA-3"),
        "{text}"
    );
    let (plans, _) = i
        .planning
        .list_plans(&bureau, HARBIN, None, all())
        .await
        .unwrap();
    assert!(plans.is_empty(), "nothing was written");

    // Consent recorded: the resource may enter.
    let consent = api::DataResource {
        shared_origin: Some(api::SharedOrigin {
            source: "Heilongjiang Health Commission".into(),
            consented: true,
            consent_reference: "黑卫函〔2026〕3号".into(),
        }),
        ..Default::default()
    };
    i.planning
        .update_resource(&provider, HARBIN, shared.id.clone(), consent)
        .await
        .unwrap();
    i.planning
        .create_plan(&bureau, HARBIN, draft("Health", &[&shared]))
        .await
        .unwrap();
}

pub async fn a_plan_walks_the_chain_and_is_filed_with_the_province(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let r = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let plan = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Harbin transit", &[&r]))
        .await
        .unwrap();
    assert_eq!(state(&plan), api::PlanState::Draft);
    let effective = make_effective(&i.planning, HARBIN, &plan.id).await;
    assert_eq!(state(&effective), api::PlanState::Effective);
    assert!(effective.review.is_some() && effective.decision.is_some());
    assert_eq!(
        effective.approval.as_ref().unwrap().recorded_by,
        bureau.subject
    );

    i.deliver().await;
    let province = caller("provincial_bureau", PROVINCE);
    let (filings, _) = i
        .planning
        .list_filings(&province, PROVINCE, None, all())
        .await
        .unwrap();
    assert_eq!(filings.len(), 1, "{filings:?}");
    let filing = &filings[0];
    assert_eq!(
        (
            filing.city.as_str(),
            filing.plan_id.as_str(),
            filing.plan_version
        ),
        (HARBIN, plan.id.as_str(), 1)
    );
    assert_eq!(filing.approval_document, "哈政函〔2026〕88号");
    assert_eq!(
        filing.receive_time,
        Some(pdp_kit::change::timestamp(i.clock.now())),
        "received at the service's clock, not the wall clock"
    );
    i.deliver().await;
    let (again, _) = i
        .planning
        .list_filings(&province, PROVINCE, None, all())
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "a redelivered event files nothing twice");

    let acked = i
        .planning
        .acknowledge_filing(&province, PROVINCE, filing.id.clone(), "filed".into())
        .await
        .unwrap();
    assert_eq!(acked.state, api::FilingState::Acknowledged as i32);
    let twice = i
        .planning
        .acknowledge_filing(&province, PROVINCE, filing.id.clone(), String::new())
        .await
        .unwrap_err();
    assert_eq!(twice.to_status().code(), tonic::Code::FailedPrecondition);
    let (received, _) = i
        .planning
        .list_filings(&province, PROVINCE, Some(api::FilingState::Received), all())
        .await
        .unwrap();
    assert!(received.is_empty());

    // The city's own users see no filings: they live in the province's tenant.
    assert!(
        i.planning
            .list_filings(&bureau, PROVINCE, None, all())
            .await
            .is_err()
    );
    i.assert_events_documented().await;
}

pub async fn steps_out_of_order_name_the_missing_step(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let r = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let plan = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Transit", &[&r]))
        .await
        .unwrap();
    let err = i
        .planning
        .approve_plan(
            &bureau,
            HARBIN,
            plan.id.clone(),
            Some(approval("2026-11-26")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::FailedPrecondition);
    assert!(err.to_string().contains(":submit"), "{err}");
    i.planning
        .submit_plan(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap();
    let err = i
        .planning
        .decide_plan(&bureau, HARBIN, plan.id.clone(), Some(decision()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(":review"), "{err}");
    assert_eq!(err.reason(), "PLAN_NOT_REVIEWED");
    let preconditions = err.precondition_violations();
    assert_eq!(
        preconditions[0].subject,
        format!("plans/{}/versions/1", plan.id)
    );

    // Bad input for the right step names its fields and changes nothing.
    let err = i
        .planning
        .review_plan(&bureau, HARBIN, plan.id.clone(), None)
        .await
        .unwrap_err();
    let fields: Vec<_> = err
        .field_violations()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        [
            "review.summary",
            "review.departments_consulted",
            "review.reviewed_on"
        ]
    );
    let still = i
        .planning
        .get_plan(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap();
    assert_eq!(state(&still), api::PlanState::Submitted);

    let rejected = i
        .planning
        .reject_plan(
            &bureau,
            HARBIN,
            plan.id.clone(),
            vec!["scope too wide".into()],
        )
        .await
        .unwrap();
    assert_eq!(state(&rejected), api::PlanState::Rejected);
    assert_eq!(
        rejected.rejection.unwrap().at,
        api::PlanState::Submitted as i32
    );
    let err = i
        .planning
        .review_plan(&bureau, HARBIN, plan.id.clone(), Some(review()))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "PLAN_REJECTED");

    // An incomplete draft cannot be submitted; the answer lists every section.
    let sparse = i
        .planning
        .create_plan(
            &bureau,
            HARBIN,
            api::Plan {
                name: "Sparse".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = i
        .planning
        .submit_plan(&bureau, HARBIN, sparse.id.clone())
        .await
        .unwrap_err();
    assert!(err.field_violations().len() >= 11, "{err}");
    i.assert_events_documented().await;
}

pub async fn a_major_amendment_goes_through_the_chain_again(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let a = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let b = registered(&i.planning, HARBIN, "Metro ridership").await;
    let plan = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Transit", &[&a]))
        .await
        .unwrap();
    make_effective(&i.planning, HARBIN, &plan.id).await;

    let amendment = i
        .planning
        .amend_plan(
            &bureau,
            HARBIN,
            plan.id.clone(),
            api::AmendPlanRequest {
                kind: api::AmendmentKind::Major as i32,
                reason: "add metro data".into(),
                sections: Some(api::PlanSections {
                    scope: sections(&[&a, &b]).scope,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((amendment.from_version, amendment.to_version), (1, 2));
    assert_eq!(amendment.changed_sections, ["scope"]);
    let versions = i
        .planning
        .plan_versions(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap();
    assert_eq!(
        versions.iter().map(state).collect::<Vec<_>>(),
        [api::PlanState::Effective, api::PlanState::Draft]
    );
    // Operators keep seeing the version in force.
    let operator = caller("operator", HARBIN);
    let seen = i
        .planning
        .get_plan(&operator, HARBIN, plan.id.clone())
        .await
        .unwrap();
    assert_eq!((seen.version, state(&seen)), (1, api::PlanState::Effective));
    // A second change waits for the first.
    let err = i
        .planning
        .amend_plan(
            &bureau,
            HARBIN,
            plan.id.clone(),
            api::AmendPlanRequest {
                kind: 2,
                reason: "x".into(),
                name: "Other".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::FailedPrecondition);

    make_effective(&i.planning, HARBIN, &plan.id).await;
    let versions = i
        .planning
        .plan_versions(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap();
    assert_eq!(
        versions.iter().map(state).collect::<Vec<_>>(),
        [api::PlanState::Superseded, api::PlanState::Effective]
    );
    assert_eq!(
        versions[0]
            .sections
            .as_ref()
            .unwrap()
            .scope
            .as_ref()
            .unwrap()
            .items
            .len(),
        1,
        "v1 reads as it was"
    );
    let amendments = i
        .planning
        .list_amendments(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap();
    assert_eq!(amendments.len(), 1);

    i.deliver().await;
    let province = caller("provincial_bureau", PROVINCE);
    let (filings, _) = i
        .planning
        .list_filings(&province, PROVINCE, None, all())
        .await
        .unwrap();
    assert_eq!(
        filings.iter().map(|f| f.plan_version).collect::<Vec<_>>(),
        [1, 2],
        "each version that took effect is filed"
    );
    i.assert_events_documented().await;
}

pub async fn a_minor_amendment_applies_with_its_record(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let a = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let plan = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Transit", &[&a]))
        .await
        .unwrap();
    make_effective(&i.planning, HARBIN, &plan.id).await;
    let refused = i
        .planning
        .amend_plan(
            &bureau,
            HARBIN,
            plan.id.clone(),
            api::AmendPlanRequest {
                kind: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.field_violations()[0].field, "reason");
    let minor = |reason: &str, sections: api::PlanSections| api::AmendPlanRequest {
        kind: api::AmendmentKind::Minor as i32,
        reason: reason.into(),
        decided_by: "bureau director".into(),
        sections: Some(sections),
        ..Default::default()
    };
    // Supervision is an obligation: not a minor change, whatever the caller calls it.
    let mut contact = sections(&[&a]).supervision.unwrap();
    contact.supervision = "monthly inspection".into();
    let supervision = api::PlanSections {
        supervision: Some(contact),
        ..Default::default()
    };
    let refused = i
        .planning
        .amend_plan(
            &bureau,
            HARBIN,
            plan.id.clone(),
            minor("inspection frequency", supervision),
        )
        .await
        .unwrap_err();
    let violation = &refused.field_violations()[0];
    assert_eq!(violation.field, "sections.supervision");
    assert!(
        violation.description.contains("第十条"),
        "{}",
        violation.description
    );
    let typo = api::PlanSections {
        other_matters: "supervised by the Harbin Data Bureau".into(),
        ..Default::default()
    };
    let amendment = i
        .planning
        .amend_plan(
            &bureau,
            HARBIN,
            plan.id.clone(),
            minor("a typo in the supervising office's name", typo),
        )
        .await
        .unwrap();
    assert_eq!(amendment.changed_sections, ["other_matters"]);
    assert_eq!(amendment.decided_by, "bureau director");
    let versions = i
        .planning
        .plan_versions(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap();
    assert_eq!(
        versions.iter().map(state).collect::<Vec<_>>(),
        [api::PlanState::Superseded, api::PlanState::Effective]
    );
    assert_eq!(
        versions[1].approval, versions[0].approval,
        "the approval carries over"
    );
}

pub async fn the_effective_date_is_kept_by_the_scheduler(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let a = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let plan = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Transit", &[&a]))
        .await
        .unwrap();
    i.planning
        .submit_plan(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap();
    i.planning
        .review_plan(&bureau, HARBIN, plan.id.clone(), Some(review()))
        .await
        .unwrap();
    i.planning
        .decide_plan(&bureau, HARBIN, plan.id.clone(), Some(decision()))
        .await
        .unwrap();
    let approved = i
        .planning
        .approve_plan(
            &bureau,
            HARBIN,
            plan.id.clone(),
            Some(approval("2026-12-01")),
        )
        .await
        .unwrap();
    assert_eq!(state(&approved), api::PlanState::Approved);
    assert_eq!(i.planning.take_effect_due().await.unwrap(), 0);
    // 2026-11-30 23:59 in Shanghai: not yet.
    i.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-11-30T23:59:00+08:00")
            .unwrap()
            .into(),
    );
    assert_eq!(i.planning.take_effect_due().await.unwrap(), 0);
    i.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00+08:00")
            .unwrap()
            .into(),
    );
    assert_eq!(i.planning.take_effect_due().await.unwrap(), 1);
    assert_eq!(i.planning.take_effect_due().await.unwrap(), 0, "once");
    let plan = i
        .planning
        .get_plan(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap();
    assert_eq!(state(&plan), api::PlanState::Effective);
}

pub async fn no_tenant_sees_another_tenants_rows(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let r = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let plan = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Transit", &[&r]))
        .await
        .unwrap();

    let qiqihar = caller("city_bureau", QIQIHAR);
    // In Qiqihar's own tenant, Harbin's ids do not exist.
    let err = i
        .planning
        .get_plan(&qiqihar, QIQIHAR, plan.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::NotFound);
    let err = i
        .planning
        .get_resource(&qiqihar, QIQIHAR, r.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::NotFound);
    let (plans, _) = i
        .planning
        .list_plans(&qiqihar, QIQIHAR, None, all())
        .await
        .unwrap();
    assert!(plans.is_empty());
    // Naming Harbin's tenant is refused outright.
    let err = i
        .planning
        .get_plan(&qiqihar, HARBIN, plan.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
    let err = i
        .planning
        .submit_plan(&qiqihar, HARBIN, plan.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
    // A resource of Qiqihar cannot enter a Harbin plan even by id.
    let theirs = registered(&i.planning, QIQIHAR, "Rail").await;
    let err = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Mixed", &[&theirs]))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not in this tenant's catalog"),
        "{err}"
    );

    // The province reads the city (supervision) and writes nothing there.
    let province = caller("provincial_bureau", PROVINCE);
    let seen = i
        .planning
        .get_plan(&province, HARBIN, plan.id.clone())
        .await
        .unwrap();
    assert_eq!(seen.id, plan.id);
    let err = i
        .planning
        .submit_plan(&province, HARBIN, plan.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
    // Operators see drafts nowhere.
    let operator = caller("operator", HARBIN);
    let err = i
        .planning
        .get_plan(&operator, HARBIN, plan.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::NotFound);
    let (plans, _) = i
        .planning
        .list_plans(&operator, HARBIN, Some(PlanState::Draft), all())
        .await
        .unwrap();
    assert!(plans.is_empty());
}

pub async fn the_public_sees_effective_plans_and_no_personal_information(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let r = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let unregistered = i
        .planning
        .create_resource(&caller("provider", HARBIN), HARBIN, resource("Draft data"))
        .await
        .unwrap();
    let plan = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Transit", &[&r]))
        .await
        .unwrap();
    i.planning
        .create_plan(&bureau, HARBIN, draft("Still a draft", &[&r]))
        .await
        .unwrap();
    let public = caller("public", HARBIN);
    let (plans, _) = i
        .planning
        .list_public_plans(&public, HARBIN, all())
        .await
        .unwrap();
    assert!(plans.is_empty());
    make_effective(&i.planning, HARBIN, &plan.id).await;
    let (plans, _) = i
        .planning
        .list_public_plans(&public, HARBIN, all())
        .await
        .unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].scope[0].registration_number, r.registration_number);
    assert_eq!(plans[0].approval_document, "哈政函〔2026〕88号");

    let (resources, _) = i
        .planning
        .list_public_resources(&public, HARBIN, all())
        .await
        .unwrap();
    assert_eq!(resources.len(), 1, "only registered resources");
    assert_ne!(resources[0].id, unregistered.id);
    assert!(resources[0].schema.iter().all(|f| !f.personal_information));
    assert_eq!(resources[0].schema.len(), 1);
}

pub async fn lists_page_with_tokens(backend: Backend) {
    let i = Instance::new(&backend);
    let provider = caller("provider", HARBIN);
    for n in 0..5 {
        i.planning
            .create_resource(&provider, HARBIN, resource(&format!("R{n}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = i
            .planning
            .list_resources(&provider, HARBIN, None, Cursor::parse(2, &token).unwrap())
            .await
            .unwrap();
        seen.extend(page.into_iter().map(|r| r.name));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen, ["R0", "R1", "R2", "R3", "R4"]);
}

pub async fn a_stored_state_that_does_not_decode_is_an_error(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let r = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let mut plan = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Transit", &[&r]))
        .await
        .unwrap();
    // A state number no release of pdp defines, as a damaged or newer row would hold.
    plan.state = 42;
    let scope = scope_of(HARBIN);
    let inner = scope.clone();
    let damaged = plan.clone();
    let now = i.clock.now();
    i.store
        .scoped(&scope, move |conn| {
            pdp_planning::store::save_plan_version(conn, &inner, &damaged, now)
        })
        .await
        .unwrap();
    let err = i
        .planning
        .get_plan(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::Internal, "{err}");
    let text = err.to_string();
    assert!(text.contains(&plan.id) && text.contains("42"), "{text}");
    let err = i
        .planning
        .submit_plan(&bureau, HARBIN, plan.id.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_status().code(),
        tonic::Code::Internal,
        "never taken for a draft: {err}"
    );
}

fn scope_of(tenant: &str) -> pdp_kit::store::TenantScope {
    pdp_kit::store::TenantScope::system(tenant.parse().unwrap())
}

/// With a state filter one plan can show several versions (two superseded ones here), and a page
/// may end between them: the next page still starts at the version after the last one shown.
pub async fn a_state_filtered_list_pages_through_every_version(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let a = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let plan = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Transit", &[&a]))
        .await
        .unwrap();
    make_effective(&i.planning, HARBIN, &plan.id).await;
    for name in ["Transit v2", "Transit v3"] {
        i.planning
            .amend_plan(
                &bureau,
                HARBIN,
                plan.id.clone(),
                api::AmendPlanRequest {
                    kind: api::AmendmentKind::Major as i32,
                    reason: "a new name".into(),
                    name: name.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        make_effective(&i.planning, HARBIN, &plan.id).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = i
            .planning
            .list_plans(
                &bureau,
                HARBIN,
                Some(PlanState::Superseded),
                Cursor::parse(1, &token).unwrap(),
            )
            .await
            .unwrap();
        seen.extend(page.into_iter().map(|p| (p.id, p.version)));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen, [(plan.id.clone(), 1), (plan.id.clone(), 2)]);
}

/// Review ≤ decision ≤ approval ≤ effective date, and none dated after the day it is recorded but
/// the effective date (第十条).
pub async fn the_chain_s_records_are_in_time_order(backend: Backend) {
    let i = Instance::new(&backend);
    let bureau = caller("city_bureau", HARBIN);
    let r = registered(&i.planning, HARBIN, "Bus arrivals").await;
    let id = i
        .planning
        .create_plan(&bureau, HARBIN, draft("Transit", &[&r]))
        .await
        .unwrap()
        .id;
    i.planning
        .submit_plan(&bureau, HARBIN, id.clone())
        .await
        .unwrap();
    let field = |err: PlanningError| {
        assert_eq!(
            err.to_status().code(),
            tonic::Code::InvalidArgument,
            "{err}"
        );
        let v = err.field_violations();
        assert!(v[0].description.contains("第十条"), "{}", v[0].description);
        v[0].field.clone()
    };
    let mut ahead = review();
    ahead.reviewed_on = "2026-11-27".into(); // the clock reads 2026-11-26
    let err = i
        .planning
        .review_plan(&bureau, HARBIN, id.clone(), Some(ahead))
        .await
        .unwrap_err();
    assert_eq!(field(err), "review.reviewed_on");
    i.planning
        .review_plan(&bureau, HARBIN, id.clone(), Some(review()))
        .await
        .unwrap();
    let mut early = decision();
    early.decided_on = "2026-11-19".into(); // the review is of 2026-11-20
    let err = i
        .planning
        .decide_plan(&bureau, HARBIN, id.clone(), Some(early))
        .await
        .unwrap_err();
    assert_eq!(field(err), "decision.decided_on");
    i.planning
        .decide_plan(&bureau, HARBIN, id.clone(), Some(decision()))
        .await
        .unwrap();
    let mut before = approval("2026-12-01");
    before.approved_on = "2026-11-21".into(); // the decision is of 2026-11-22
    let err = i
        .planning
        .approve_plan(&bureau, HARBIN, id.clone(), Some(before))
        .await
        .unwrap_err();
    assert_eq!(field(err), "approval.approved_on");
    let approved = i
        .planning
        .approve_plan(&bureau, HARBIN, id.clone(), Some(approval("2026-12-01")))
        .await
        .unwrap();
    assert_eq!(
        state(&approved),
        api::PlanState::Approved,
        "effective later"
    );
}
