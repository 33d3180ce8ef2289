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
        division: None,
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

/// A policy store of its own on the test PostgreSQL, and the test Redis's URL.
fn servers() -> (Store, String) {
    let database = url(
        "TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let store = Store::open(&database, &schema, 4).expect("PostgreSQL answers (see README)");
    store
        .migrate(&[KIT_MIGRATIONS, policy::MIGRATIONS])
        .unwrap();
    (store, url("TEST_REDIS_URL", "redis://127.0.0.1:6379"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_reload_a_changed_policy_within_a_second() {
    let (store, redis) = servers();

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_redis_connection_drops_reconnects_and_catches_up() {
    let (store, redis) = servers();
    policy::replace(&store, "p, auditor, *, pdp.*/*, read")
        .await
        .unwrap();
    let authz = Arc::new(
        CasbinAuthorizer::new(&policy::load(&store).await.unwrap(), &Tenants::shipped())
            .await
            .unwrap(),
    );
    // The follower selects a database of its own (pub/sub is not per database), so that the
    // test finds and kills its connection and no other test's.
    let shutdown = CancellationToken::new();
    policy::follow(
        &format!("{redis}/13"),
        store.clone(),
        authz.clone(),
        shutdown.clone(),
    )
    .await
    .expect("Redis answers (see README)");
    assert!(allowed(&authz));

    let mut admin = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    let ids: Vec<String> = clients
        .lines()
        .filter(|line| line.contains(" db=13 "))
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix("id="))
        })
        .map(str::to_string)
        .collect();
    assert!(
        !ids.is_empty(),
        "the follower's connection is listed: {clients}"
    );
    for id in &ids {
        let _: () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .unwrap();
    }

    // Changed and announced while the follower may still be away: it must catch up anyway.
    policy::replace(&store, "p, auditor, *, pdp.oversight.v1.*/*, read")
        .await
        .unwrap();
    policy::announce(&redis).await.unwrap();
    let changed = Instant::now();
    while allowed(&authz) {
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "the replica has the new policy within seconds of losing its connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
}
