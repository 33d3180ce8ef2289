//! Filing across two separately started instances: Harbin's own (municipal) and the provincial
//! shared one, each with its own PostgreSQL schema, both on one Kafka log — what a city with its
//! own platform runs. Calls go over gRPC with the identity the gateway would sign.

use std::sync::Arc;
use std::time::Duration;

use pdp_kit::calendar::{WorkingCalendar, civil_date};
use pdp_kit::clock::SystemClock;
use pdp_kit::config::{Config, InstanceMode};
use pdp_kit::events::{EventLog, KafkaLog};
use pdp_kit::identity::{Identity, IdentityKey};
use pdp_kit::outbox::OutboxRelay;
use pdp_kit::service::{Context, serve_grpc};
use pdp_proto::pdp::planning::v1 as api;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::support::{Backend, approval, caller, decision, draft, resource, review};

const KEY: &[u8] = b"instances-test-key-of-at-least-32-bytes";

fn key() -> IdentityKey {
    IdentityKey::new(KEY, chrono::Duration::seconds(60), Arc::new(SystemClock))
}

fn signed<T>(who: &Identity, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    key().sign_into(who, request.metadata_mut());
    request
}

/// Starts planning as `pdp serve planning` does, on a free port; returns its channel.
async fn start(
    backend: &Backend,
    name: &str,
    mode: InstanceMode,
    shutdown: &CancellationToken,
) -> Channel {
    let brokers = std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let log: Arc<dyn EventLog> = Arc::new(KafkaLog::connect(&brokers, 3, 1).unwrap());
    log.create_topic(pdp_kit::audit::TOPIC).await.unwrap();
    let store = backend.store(name);
    let mut config = Config::default();
    config.instance.mode = mode;
    let context = Context {
        config,
        store: store.clone(),
        log: log.clone(),
        identity_key: key(),
        clock: Arc::new(SystemClock),
        calendar: Arc::new(WorkingCalendar::shipped()),
        shutdown: shutdown.clone(),
    };
    let running = pdp_planning::start(&context).await.unwrap();
    tokio::spawn(OutboxRelay::new(store, log).run(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve_grpc(listener, running.routes, shutdown.clone()));
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy()
}

async fn province_filings(
    client: &api::filing_service_client::FilingServiceClient<Channel>,
) -> Vec<api::Filing> {
    let province = caller("provincial_bureau", "230000");
    client
        .clone()
        .list_filings(signed(
            &province,
            api::ListFilingsRequest {
                tenant: "230000".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .filings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_instance_files_with_the_provincial_instance_through_kafka() {
    let backend = Backend::postgres();
    let shutdown = CancellationToken::new();
    let harbin = start(&backend, "harbin", InstanceMode::Municipal, &shutdown).await;
    let shared = start(&backend, "shared", InstanceMode::Shared, &shutdown).await;

    let provider = caller("provider", "230100");
    let bureau = caller("city_bureau", "230100");
    let mut resources = api::resource_service_client::ResourceServiceClient::new(harbin.clone());
    let r = resources
        .create_resource(signed(
            &provider,
            api::CreateResourceRequest {
                tenant: "230100".into(),
                resource: Some(resource("Bus arrivals")),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let r = resources
        .register_resource(signed(
            &provider,
            api::RegisterResourceRequest {
                tenant: "230100".into(),
                id: r.id,
            },
        ))
        .await
        .unwrap()
        .into_inner();

    let mut plans = api::plan_service_client::PlanServiceClient::new(harbin.clone());
    let t = || "230100".to_string();
    let plan = plans
        .create_plan(signed(
            &bureau,
            api::CreatePlanRequest {
                tenant: t(),
                plan: Some(draft("Harbin transit", &[&r])),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let id = || plan.id.clone();
    plans
        .submit_plan(signed(
            &bureau,
            api::SubmitPlanRequest {
                tenant: t(),
                id: id(),
            },
        ))
        .await
        .unwrap();
    plans
        .review_plan(signed(
            &bureau,
            api::ReviewPlanRequest {
                tenant: t(),
                id: id(),
                review: Some(review()),
            },
        ))
        .await
        .unwrap();
    plans
        .decide_plan(signed(
            &bureau,
            api::DecidePlanRequest {
                tenant: t(),
                id: id(),
                decision: Some(decision()),
            },
        ))
        .await
        .unwrap();
    let today = civil_date(chrono::Utc::now())
        .format("%Y-%m-%d")
        .to_string();
    let mut approve = approval(&today);
    approve.approved_on = today.clone();
    let effective = plans
        .approve_plan(signed(
            &bureau,
            api::ApprovePlanRequest {
                tenant: t(),
                id: id(),
                approval: Some(approve),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(effective.state, api::PlanState::Effective as i32);

    let mut filings = api::filing_service_client::FilingServiceClient::new(shared.clone());
    let mut found = None;
    for _ in 0..120 {
        if let Some(f) = province_filings(&filings)
            .await
            .into_iter()
            .find(|f| f.plan_id == plan.id)
        {
            found = Some(f);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let filing = found.expect("the filing reached the provincial instance within 60 s");
    assert_eq!(filing.city, "230100");
    let acked = filings
        .acknowledge_filing(signed(
            &caller("provincial_bureau", "230000"),
            api::AcknowledgeFilingRequest {
                tenant: "230000".into(),
                id: filing.id.clone(),
                note: "received".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.state, api::FilingState::Acknowledged as i32);

    // The municipal instance keeps no filings of its own, and the shared one has no Harbin plan.
    let harbin_filings = api::filing_service_client::FilingServiceClient::new(harbin.clone());
    assert!(province_filings(&harbin_filings).await.is_empty());
    let mut shared_plans = api::plan_service_client::PlanServiceClient::new(shared.clone());
    let missing = shared_plans
        .get_plan(signed(
            &bureau,
            api::GetPlanRequest {
                tenant: t(),
                id: id(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // And no call without the gateway's signature is served.
    let unsigned = plans
        .get_plan(tonic::Request::new(api::GetPlanRequest {
            tenant: t(),
            id: id(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unsigned.code(), tonic::Code::Unauthenticated);
    shutdown.cancel();
}
