//! Policy changes in a cluster: stored in PostgreSQL, announced on Redis, and in force on every
//! gateway replica within a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pdp_gateway::authz::CasbinAuthorizer;
use pdp_gateway::policy;
use pdp_gateway::tenants::Tenants;
use pdp_gateway::{Action, Authorizer};
use pdp_kit::identity::Identity;
use pdp_kit::store::{KIT_MIGRATIONS, Store};
use tokio_util::sync::CancellationToken;

const OP: &str = "pdp.planning.v1.PlanService/GetPlan";

fn url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn auditor() -> Identity {
    Identity {
        subject: "a-1".into(),
        organization: "audit-office".into(),
        roles: vec!["auditor".into()],
        tenant: "230100".parse().unwrap(),
    }
}

fn allowed(authz: &CasbinAuthorizer) -> bool {
    authz.allows(
        Some(&auditor()),
        &"230100".parse().unwrap(),
        OP,
        Action::Read,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_reload_a_changed_policy_within_a_second() {
    let database = url(
        "TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let redis = url("TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let store = Store::open(&database, &schema, 4).expect("PostgreSQL answers (see README)");
    store
        .migrate(&[KIT_MIGRATIONS, policy::MIGRATIONS])
        .unwrap();

    let before = "p, auditor, *, pdp.*/*, read";
    policy::replace(&store, before).await.unwrap();
    let tenants = Tenants::shipped();
    let shutdown = CancellationToken::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let stored = policy::load(&store).await.unwrap();
        let authz = Arc::new(CasbinAuthorizer::new(&stored, &tenants).await.unwrap());
        policy::follow(&redis, store.clone(), authz.clone(), shutdown.clone())
            .await
            .expect("Redis answers (see README)");
        assert!(allowed(&authz));
        replicas.push(authz);
    }

    // The auditor loses planning: a policy without that line.
    policy::replace(&store, "p, auditor, *, pdp.oversight.v1.*/*, read")
        .await
        .unwrap();
    let announced = Instant::now();
    policy::announce(&redis).await.unwrap();
    while replicas.iter().any(|r| allowed(r)) {
        assert!(
            announced.elapsed() < Duration::from_secs(1),
            "every replica reloads within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
}

#[tokio::test]
async fn a_policy_that_does_not_load_leaves_the_old_one_in_force() {
    let authz = CasbinAuthorizer::new("p, auditor, *, pdp.*/*, read", &Tenants::shipped())
        .await
        .unwrap();
    assert!(authz.reload("p, only-two-fields").await.is_err());
    assert!(allowed(&authz));
}
