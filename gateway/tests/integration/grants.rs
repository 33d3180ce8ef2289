//! Authorization by agreement in a cluster: the agreements' events on the broker, the grants in
//! the shared PostgreSQL store, and every gateway replica refusing an operator within seconds of
//! its agreement's termination (第二十九条: access is cut at once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pdp_gateway::authz::CasbinAuthorizer;
use pdp_gateway::tenants::Tenants;
use pdp_gateway::{Action, Authorizer, grants, policy};
use pdp_kit::events::{Event, EventLog, KafkaLog};
use pdp_kit::identity::Identity;
use pdp_kit::store::{KIT_MIGRATIONS, Store};
use pdp_proto::pdp::agreements::v1 as agreements;
use tokio_util::sync::CancellationToken;

const QUERY: &str = "pdp.requests.v1.SandboxService/RunQuery";

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn operator(org: &str) -> Identity {
    Identity {
        subject: format!("{org}-analyst"),
        organization: org.into(),
        roles: vec!["operator".into()],
        tenant: "230100".parse().unwrap(),
        division: None,
    }
}

fn agreement(ty: pdp_proto::EventType<agreements::AgreementChanged>, org: &str) -> Event {
    Event::typed(
        &"230100".parse().unwrap(),
        ty,
        format!("agreement-of-{org}"),
        chrono::Utc::now(),
        &agreements::AgreementChanged {
            agreement_id: format!("agreement-of-{org}"),
            operator: org.into(),
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_refuses_a_terminated_operator_within_seconds() {
    let database = var(
        "TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let store =
        Store::open(&database, &format!("t_{suffix}"), 4).expect("PostgreSQL answers (see README)");
    store
        .migrate(&[KIT_MIGRATIONS, policy::MIGRATIONS])
        .unwrap();
    let brokers = var("TEST_KAFKA_BROKERS", "127.0.0.1:9092");
    // tansu holds an empty fetch for the whole wait (`events.fetch_wait_ms`).
    let log: Arc<dyn EventLog> = Arc::new(
        KafkaLog::connect(&brokers, 1, 1)
            .expect("the broker answers (see README)")
            .with_fetch_wait_ms(100),
    );
    let org = format!("beta-{suffix}");
    let who = operator(&org);
    let policy = "p, authorized_operator, *, pdp.requests.v1.SandboxService/RunQuery, write";

    // Two replicas of one gateway deployment: one consumer group, one store, each its own
    // authorizer reloading the grants.
    let shutdown = CancellationToken::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let authz = Arc::new(
            CasbinAuthorizer::new(policy, &Tenants::shipped())
                .await
                .unwrap(),
        );
        grants::follow(
            store.clone(),
            log.clone(),
            format!("gateway-{suffix}"),
            authz.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        replicas.push(authz);
    }
    let allowed = |authz: &CasbinAuthorizer| {
        authz.allows(Some(&who), &"230100".parse().unwrap(), QUERY, Action::Write)
    };
    let until = |want: bool, within: Duration, what: &str| {
        let replicas = replicas.clone();
        let started = Instant::now();
        let what = what.to_string();
        async move {
            while replicas.iter().any(|r| allowed(r) != want) {
                assert!(started.elapsed() < within, "{what}: not within {within:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            started.elapsed()
        }
    };
    assert!(
        replicas.iter().all(|r| !allowed(r)),
        "nothing before an agreement"
    );
    log.publish(
        grants::TOPIC,
        &[agreement(agreements::AGREEMENT_ACTIVATED, &org)],
    )
    .await
    .unwrap();
    // The first delivery waits for the group to form; what is measured is the termination.
    until(true, Duration::from_secs(60), "authorized on activation").await;

    log.publish(
        grants::TOPIC,
        &[agreement(agreements::AGREEMENT_TERMINATED, &org)],
    )
    .await
    .unwrap();
    let took = until(false, Duration::from_secs(5), "refused on every replica").await;
    println!("every replica refused the terminated operator after {took:?}");
    shutdown.cancel();
}
