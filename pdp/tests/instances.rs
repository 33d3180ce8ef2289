//! Filing across two separately started instances, as a city with its own platform runs:
//! `pdp serve planning` for Harbin (municipal) and for the province (shared), each process with
//! its own PostgreSQL database, both on the provincial Kafka (`TEST_KAFKA_BROKERS`). Calls go to
//! their gRPC APIs with the identity the gateway would sign. A missing server fails the test.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::sync::Arc;

use pdp_kit::clock::SystemClock;
use pdp_kit::identity::{Identity, IdentityKey};
use pdp_proto::pdp::planning::v1 as api;
use serde_json::json;
use tonic::transport::Channel;

mod support;
use support::*;

const KEY: &str = "instances-test-hmac-key-of-at-least-32-characters";

/// A message of `pdp-proto` from its proto3 JSON, as the gateway would transcode it.
fn message<M: prost::Message + Default>(full_name: &str, value: serde_json::Value) -> M {
    let pool = prost_reflect::DescriptorPool::decode(pdp_proto::FILE_DESCRIPTOR_SET).unwrap();
    let descriptor = pool.get_message_by_name(full_name).unwrap();
    prost_reflect::DynamicMessage::deserialize(descriptor, value)
        .unwrap()
        .transcode_to()
        .unwrap()
}

fn signed<T>(who: &Identity, body: T) -> tonic::Request<T> {
    let key = IdentityKey::new(
        KEY.as_bytes(),
        chrono::Duration::seconds(60),
        Arc::new(SystemClock),
    );
    let mut request = tonic::Request::new(body);
    key.sign_into(who, request.metadata_mut());
    request
}

fn who(role: &str, tenant: &str) -> Identity {
    Identity {
        subject: format!("{role}-{tenant}"),
        organization: format!("org-{tenant}"),
        roles: vec![role.into()],
        tenant: tenant.parse().unwrap(),
    }
}

/// The filings an instance holds for the province, as the provincial bureau lists them.
async fn province_filings(
    client: &api::filing_service_client::FilingServiceClient<Channel>,
) -> Vec<api::Filing> {
    let province = who("provincial_bureau", "230000");
    let request = api::ListFilingsRequest {
        tenant: "230000".into(),
        ..Default::default()
    };
    client
        .clone()
        .list_filings(signed(&province, request))
        .await
        .unwrap()
        .into_inner()
        .filings
}

struct Instance {
    child: std::process::Child,
    dir: tempfile::TempDir,
    grpc: Channel,
}

fn start(name: &str, mode: &str) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let url = database(name);
    let brokers =
        std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    let (grpc_port, http_port) = (free_port(), free_port());
    let grpc = format!("127.0.0.1:{grpc_port}");
    let http = format!("127.0.0.1:{http_port}");
    let mut child = start_serve(
        dir.path(),
        "planning",
        &[
            ("PDP_MODE", "cluster"),
            ("PDP_STORE__URL", &url),
            ("PDP_EVENTS__BROKERS", &brokers),
            ("PDP_EVENTS__REPLICATION_FACTOR", "1"),
            ("PDP_IDENTITY__HMAC_KEY", KEY),
            ("PDP_INSTANCE__MODE", mode),
            ("PDP_GRPC__LISTEN", &grpc),
            ("PDP_HTTP__LISTEN", &http),
        ],
    );
    wait_ready(&mut child, http_port);
    Instance {
        child,
        dir,
        grpc: Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect_lazy(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_instance_files_with_the_provincial_instance_through_kafka() {
    let harbin = start("harbin", "municipal");
    let shared = start("shared", "shared");

    let provider = who("provider", "230100");
    let bureau = who("city_bureau", "230100");
    let mut resources =
        api::resource_service_client::ResourceServiceClient::new(harbin.grpc.clone());
    let r = resources
        .create_resource(signed(&provider, message("pdp.planning.v1.CreateResourceRequest", json!({
            "tenant": "230100",
            "resource": {
                "name": "Bus arrivals", "provider_unit": "Harbin Transport Bureau", "sector": "transport",
                "schema": [{"name": "stop_id", "type": "string"}], "classification": "DATA_CLASS_GENERAL",
                "sensitivity": "SENSITIVITY_LOW", "update_frequency": "UPDATE_FREQUENCY_DAILY", "quality_statement": "daily"
            }
        }))))
        .await
        .unwrap()
        .into_inner();
    resources
        .register_resource(signed(
            &provider,
            api::RegisterResourceRequest {
                tenant: "230100".into(),
                id: r.id.clone(),
            },
        ))
        .await
        .unwrap();

    let mut plans = api::plan_service_client::PlanServiceClient::new(harbin.grpc.clone());
    let plan = plans
        .create_plan(signed(
            &bureau,
            message(
                "pdp.planning.v1.CreatePlanRequest",
                json!({"tenant": "230100", "plan": plan_body(&r.id)}),
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    let today = today_in_shanghai();
    let step = |name: &str, body: serde_json::Value| {
        let mut body = body;
        body["tenant"] = json!("230100");
        body["id"] = json!(plan.id);
        (name.to_string(), body)
    };
    for (name, body) in [
        step("Submit", json!({})),
        step(
            "Review",
            json!({"review": {"summary": "feasible", "departments_consulted": ["Transport"], "reviewed_on": today}}),
        ),
        step(
            "Decide",
            json!({"decision": {"decided_on": today, "body": "party group", "outcome": "DECISION_OUTCOME_AGREED"}}),
        ),
        step(
            "Approve",
            json!({"approval": {"document_number": "哈政函〔2026〕9号", "approved_on": today, "effective_on": today}}),
        ),
    ] {
        let answer = match name.as_str() {
            "Submit" => {
                plans
                    .submit_plan(signed(
                        &bureau,
                        message("pdp.planning.v1.SubmitPlanRequest", body),
                    ))
                    .await
            }
            "Review" => {
                plans
                    .review_plan(signed(
                        &bureau,
                        message("pdp.planning.v1.ReviewPlanRequest", body),
                    ))
                    .await
            }
            "Decide" => {
                plans
                    .decide_plan(signed(
                        &bureau,
                        message("pdp.planning.v1.DecidePlanRequest", body),
                    ))
                    .await
            }
            _ => {
                plans
                    .approve_plan(signed(
                        &bureau,
                        message("pdp.planning.v1.ApprovePlanRequest", body),
                    ))
                    .await
            }
        };
        let state = answer
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .into_inner()
            .state;
        if name == "Approve" {
            assert_eq!(state, api::PlanState::Effective as i32);
        }
    }

    // The filing reaches the provincial instance through Kafka, and is acknowledged there.
    let province = who("provincial_bureau", "230000");
    let mut filings = api::filing_service_client::FilingServiceClient::new(shared.grpc.clone());
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
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let filing = found.expect("the filing reached the provincial instance within 60 s");
    assert_eq!((filing.city.as_str(), filing.plan_version), ("230100", 1));
    let acked = filings
        .acknowledge_filing(signed(
            &province,
            api::AcknowledgeFilingRequest {
                tenant: "230000".into(),
                id: filing.id,
                note: "received".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.state, api::FilingState::Acknowledged as i32);

    // Harbin's instance keeps no filings; the shared one has no Harbin plan; unsigned calls fail.
    let harbin_filings = api::filing_service_client::FilingServiceClient::new(harbin.grpc.clone());
    let none = province_filings(&harbin_filings).await;
    assert!(none.is_empty());
    let mut shared_plans = api::plan_service_client::PlanServiceClient::new(shared.grpc.clone());
    let missing = shared_plans
        .get_plan(signed(
            &bureau,
            api::GetPlanRequest {
                tenant: "230100".into(),
                id: plan.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let unsigned = plans
        .get_plan(tonic::Request::new(api::GetPlanRequest {
            tenant: "230100".into(),
            id: plan.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unsigned.code(), tonic::Code::Unauthenticated);

    for instance in [harbin, shared] {
        assert_eq!(
            interrupt_and_wait(instance.child, instance.dir.path()).code(),
            Some(0)
        );
    }
}
