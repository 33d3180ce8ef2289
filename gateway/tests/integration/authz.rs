//! The authorization matrix: every role against operations in its own tenant and in another,
//! with the shipped policy. Each expectation is written out, so a policy change shows here.

use pdp_gateway::authz::{CasbinAuthorizer, DEV_POLICY};
use pdp_gateway::tenants::Tenants;
use pdp_gateway::{Action, Authorizer};
use pdp_kit::identity::{Identity, TenantCode};

const SUBMIT_PLAN: (&str, Action) = ("pdp.planning.v1.PlanService/SubmitPlan", Action::Write);
const GET_PLAN: (&str, Action) = ("pdp.planning.v1.PlanService/GetPlan", Action::Read);
const CREATE_RESOURCE: (&str, Action) = (
    "pdp.planning.v1.ResourceService/CreateResource",
    Action::Write,
);
const OPEN_INSPECTION: (&str, Action) = (
    "pdp.oversight.v1.InspectionService/CreateInspection",
    Action::Write,
);
const REQUEST_DATA: (&str, Action) = (
    "pdp.requests.v1.DataRequestService/CreateRequest",
    Action::Write,
);
const PUBLIC_NOTICES: (&str, Action) = (
    "pdp.selection.v1.PublicSelectionService/ListPublicSelections",
    Action::Read,
);

fn code(s: &str) -> TenantCode {
    s.parse().unwrap()
}

fn caller(role: &str, home: &str) -> Identity {
    Identity {
        subject: format!("{role}-user"),
        organization: "org".into(),
        roles: vec![role.into()],
        tenant: code(home),
    }
}

#[tokio::test]
async fn every_role_in_its_own_tenant_and_in_another() {
    let authz = CasbinAuthorizer::new(DEV_POLICY, &Tenants::shipped())
        .await
        .unwrap();
    let ops = [
        SUBMIT_PLAN,
        GET_PLAN,
        OPEN_INSPECTION,
        REQUEST_DATA,
        PUBLIC_NOTICES,
        CREATE_RESOURCE,
    ];
    // role, home, tenant called, [submit plan, get plan, open inspection, request data, public notices, create resource]
    let matrix: &[(&str, &str, &str, [bool; 6])] = &[
        (
            "provincial_bureau",
            "230000",
            "230000",
            [true, true, true, true, true, true],
        ),
        // Supervision of a city: read only.
        (
            "provincial_bureau",
            "230000",
            "230100",
            [false, true, false, false, true, false],
        ),
        (
            "city_bureau",
            "230100",
            "230100",
            [true, true, true, true, true, true],
        ),
        (
            "city_bureau",
            "230100",
            "230200",
            [false, false, false, false, false, false],
        ),
        (
            "city_bureau",
            "230100",
            "230000",
            [false, false, false, false, false, false],
        ),
        (
            "provider",
            "230100",
            "230100",
            [false, false, false, true, false, true],
        ),
        (
            "provider",
            "230100",
            "230200",
            [false, false, false, false, false, false],
        ),
        // Operators read (effective) plans; data requests need an active agreement (see below);
        // the public routes need no token, so a token's roles do not reach them.
        (
            "operator",
            "230100",
            "230100",
            [false, true, false, false, false, false],
        ),
        (
            "operator",
            "230100",
            "230200",
            [false, false, false, false, false, false],
        ),
        (
            "developer",
            "230100",
            "230100",
            [false, false, false, false, false, false],
        ),
        (
            "supervisor",
            "230100",
            "230100",
            [false, true, true, false, true, false],
        ),
        (
            "supervisor",
            "230100",
            "230200",
            [false, false, false, false, false, false],
        ),
        (
            "auditor",
            "230100",
            "230100",
            [false, true, false, false, true, false],
        ),
        (
            "auditor",
            "230100",
            "230000",
            [false, false, false, false, false, false],
        ),
        (
            "root",
            "230100",
            "230100",
            [false, false, false, false, false, false],
        ),
    ];
    for (role, home, tenant, expected) in matrix {
        let who = caller(role, home);
        for ((op, action), want) in ops.iter().zip(expected) {
            let got = authz.allows(Some(&who), &code(tenant), op, *action);
            assert_eq!(got, *want, "{role}@{home} in {tenant}: {op}");
        }
    }
}

#[tokio::test]
async fn the_public_reads_public_services_of_any_tenant_and_nothing_else() {
    let authz = CasbinAuthorizer::new(DEV_POLICY, &Tenants::shipped())
        .await
        .unwrap();
    for tenant in ["230000", "230100", "232700"] {
        let (op, _) = PUBLIC_NOTICES;
        assert!(
            authz.allows(None, &code(tenant), op, Action::Read),
            "{tenant}"
        );
        assert!(
            !authz.allows(None, &code(tenant), op, Action::Write),
            "{tenant}"
        );
        assert!(!authz.allows(None, &code(tenant), GET_PLAN.0, Action::Read));
        // …and objects to a selection's result during its notice.
        let objection = "pdp.selection.v1.PublicSelectionService/FileObjection";
        assert!(authz.allows(None, &code(tenant), objection, Action::Write));
        assert!(!authz.allows(
            None,
            &code(tenant),
            "pdp.selection.v1.SelectionService/ConcludeSelection",
            Action::Write
        ));
    }
}

#[tokio::test]
async fn operators_apply_to_selections_but_do_not_run_them() {
    let authz = CasbinAuthorizer::new(DEV_POLICY, &Tenants::shipped())
        .await
        .unwrap();
    let operator = caller("operator", "230100");
    let harbin = code("230100");
    let apply = "pdp.selection.v1.ApplicationService/SubmitApplication";
    assert!(authz.allows(Some(&operator), &harbin, apply, Action::Write));
    let read = "pdp.selection.v1.SelectionService/GetSelection";
    assert!(authz.allows(Some(&operator), &harbin, read, Action::Read));
    let create = "pdp.selection.v1.SelectionService/CreateSelection";
    assert!(!authz.allows(Some(&operator), &harbin, create, Action::Write));
    let bureau = caller("city_bureau", "230100");
    assert!(authz.allows(Some(&bureau), &harbin, create, Action::Write));
}

#[tokio::test]
async fn only_an_active_agreement_authorizes_an_operator() {
    let authz = CasbinAuthorizer::new(DEV_POLICY, &Tenants::shipped())
        .await
        .unwrap();
    let mut acme = caller("operator", "230100");
    acme.organization = "acme".into();
    let harbin = code("230100");
    let (request, action) = REQUEST_DATA;
    assert!(
        !authz.allows(Some(&acme), &harbin, request, action),
        "no agreement yet"
    );

    authz.set_grants([("230100".to_string(), "acme".to_string())].into());
    assert!(
        authz.allows(Some(&acme), &harbin, request, action),
        "agreement active"
    );
    let mut other = acme.clone();
    other.organization = "beta".into();
    assert!(
        !authz.allows(Some(&other), &harbin, request, action),
        "another organization"
    );
    let mut elsewhere = acme.clone();
    elsewhere.tenant = code("230200");
    assert!(
        !authz.allows(Some(&elsewhere), &code("230200"), request, action),
        "another tenant"
    );

    authz.set_grants(Default::default());
    assert!(
        !authz.allows(Some(&acme), &harbin, request, action),
        "agreement expired"
    );

    // A token cannot claim what only an agreement grants.
    let mut forged = acme.clone();
    forged.roles = vec!["authorized_operator".into()];
    assert!(!authz.allows(Some(&forged), &harbin, request, action));
}

#[tokio::test]
async fn any_role_of_several_may_allow_and_nothing_is_allowed_by_default() {
    let authz = CasbinAuthorizer::new("", &Tenants::shipped())
        .await
        .unwrap();
    let who = caller("provincial_bureau", "230000");
    assert!(
        !authz.allows(Some(&who), &code("230000"), GET_PLAN.0, Action::Read),
        "empty policy denies"
    );

    let authz = CasbinAuthorizer::new(DEV_POLICY, &Tenants::shipped())
        .await
        .unwrap();
    let mut both = caller("developer", "230100");
    both.roles.push("auditor".into());
    assert!(authz.allows(Some(&both), &code("230100"), GET_PLAN.0, Action::Read));
}
