//! The authorization matrix: every role against operations in its own tenant and in another,
//! with the shipped policy. Each expectation is written out, so a policy change shows here.

use std::collections::BTreeMap;

use pdp_gateway::authz::{CasbinAuthorizer, DEV_POLICY};
use pdp_gateway::tenants::Tenants;
use pdp_gateway::transcode::routes::RouteTable;
use pdp_gateway::{Action, Authorizer};
use pdp_kit::identity::{Identity, TenantCode};

const SUBMIT_PLAN: (&str, Action) = ("pdp.planning.v1.PlanService/SubmitPlan", Action::Write);
const GET_PLAN: (&str, Action) = ("pdp.planning.v1.PlanService/GetPlan", Action::Read);
const CREATE_RESOURCE: (&str, Action) = (
    "pdp.planning.v1.ResourceService/CreateResource",
    Action::Write,
);
const OPEN_INSPECTION: (&str, Action) = (
    "pdp.oversight.v1.InspectionService/OpenInspection",
    Action::Write,
);
const REQUEST_DATA: (&str, Action) = (
    "pdp.requests.v1.RequestService/CreateRequest",
    Action::Write,
);
const REVIEW_PRODUCT: (&str, Action) = (
    "pdp.products.v1.ProductService/ReviewProduct",
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
        division: None,
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
        REVIEW_PRODUCT,
    ];
    // role, home, tenant called, [submit plan, get plan, open inspection, request data, public
    // notices, create resource, review product]
    let matrix: &[(&str, &str, &str, [bool; 7])] = &[
        (
            "provincial_bureau",
            "230000",
            "230000",
            [true, true, true, false, true, true, true],
        ),
        // Supervision of a city: read only.
        (
            "provincial_bureau",
            "230000",
            "230100",
            [false, true, false, false, true, false, false],
        ),
        (
            "city_bureau",
            "230100",
            "230100",
            [true, true, true, false, true, true, true],
        ),
        (
            "city_bureau",
            "230100",
            "230200",
            [false, false, false, false, true, false, false],
        ),
        (
            "city_bureau",
            "230100",
            "230000",
            [false, false, false, false, true, false, false],
        ),
        (
            "provider",
            "230100",
            "230100",
            [false, false, false, false, true, true, false],
        ),
        (
            "provider",
            "230100",
            "230200",
            [false, false, false, false, true, false, false],
        ),
        // Bureaus and providers review data requests, never file them. Operators read
        // (effective) plans; data requests need an active agreement (see below);
        // what the public may do, a caller with a token may do too, in any tenant.
        (
            "operator",
            "230100",
            "230100",
            [false, true, false, false, true, false, false],
        ),
        (
            "operator",
            "230100",
            "230200",
            [false, false, false, false, true, false, false],
        ),
        (
            "developer",
            "230100",
            "230100",
            [false, false, false, false, true, false, false],
        ),
        (
            "supervisor",
            "230100",
            "230100",
            [false, true, true, false, true, false, false],
        ),
        (
            "supervisor",
            "230100",
            "230200",
            [false, false, false, false, true, false, false],
        ),
        (
            "auditor",
            "230100",
            "230100",
            [false, true, false, false, true, false, false],
        ),
        (
            "auditor",
            "230100",
            "230000",
            [false, false, false, false, true, false, false],
        ),
        (
            "root",
            "230100",
            "230100",
            [false, false, false, false, true, false, false],
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
    // Neither judges an application: operators never, bureaus only where named (the service).
    let evaluate = "pdp.selection.v1.ApplicationService/EvaluateApplication";
    assert!(!authz.allows(Some(&operator), &harbin, evaluate, Action::Write));
    assert!(!authz.allows(Some(&bureau), &harbin, apply, Action::Write));
}

/// The rows of `gateway/policy/decisions.md`: operation → (role → allowed).
fn decision_table() -> (Vec<String>, BTreeMap<String, Vec<bool>>) {
    let text = include_str!("../../policy/decisions.md");
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut lines = text.lines().skip_while(|l| !l.starts_with("| operation |"));
    let header = cells(lines.next().expect("the table has a header"));
    // Between the operation and the condition: one column per role.
    let roles = header[1..header.len() - 1].to_vec();
    lines.next();
    let mut rows = BTreeMap::new();
    for line in lines.take_while(|l| l.starts_with('|')) {
        let row = cells(line);
        let decisions: Vec<bool> = row[1..=roles.len()]
            .iter()
            .map(|c| match c.as_str() {
                "yes" => true,
                "-" => false,
                other => panic!("{}: `{other}` is neither `yes` nor `-`", row[0]),
            })
            .collect();
        assert!(
            rows.insert(row[0].clone(), decisions).is_none(),
            "{} twice",
            row[0]
        );
    }
    (roles, rows)
}

#[tokio::test]
async fn the_policy_decides_every_operation_as_the_decision_table_says() {
    let authz = CasbinAuthorizer::new(DEV_POLICY, &Tenants::shipped())
        .await
        .unwrap();
    authz.set_grants([("230100".to_string(), "granted".to_string())].into());
    let pool = prost_reflect::DescriptorPool::decode(pdp_proto::FILE_DESCRIPTOR_SET).unwrap();
    let routes = RouteTable::from_pool(&pool).unwrap();
    let (roles, rows) = decision_table();
    let mut decided = std::collections::BTreeSet::new();
    for route in routes.routes() {
        let op = route.operation();
        let action = Action::of(&route.method);
        let expected = rows
            .get(op)
            .unwrap_or_else(|| panic!("{op} is not in gateway/policy/decisions.md"));
        for (role, want) in roles.iter().zip(expected) {
            let (who, tenant) = match role.as_str() {
                "public" => (None, "230100"),
                "provincial_bureau" => (Some(caller(role, "230000")), "230000"),
                "authorized_operator" => {
                    let mut granted = caller("operator", "230100");
                    granted.organization = "granted".into();
                    (Some(granted), "230100")
                }
                _ => (Some(caller(role, "230100")), "230100"),
            };
            let got = authz.allows(who.as_ref(), &code(tenant), op, action);
            assert_eq!(got, *want, "{role} → {op} ({action:?})");
        }
        decided.insert(op.to_string());
    }
    let unknown: Vec<_> = rows.keys().filter(|op| !decided.contains(*op)).collect();
    assert!(
        unknown.is_empty(),
        "decisions.md lists operations the API does not have: {unknown:?}"
    );
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
