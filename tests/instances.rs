//! Two platform instances as a province with one city of its own runs them: the shared provincial
//! instance and Harbin's municipal one, each with planning, selection and agreements as separate
//! `pdp serve` processes on its own PostgreSQL database, all on the provincial Kafka
//! (`TEST_KAFKA_BROKERS`). Calls go to their gRPC APIs with the identity the gateway would sign.
//!
//! What it shows: every instance consumes in groups of its own, so each receives every event; it
//! applies those of its own tenants and skips the others; the shared instance files Harbin's
//! plans for the province. A missing server fails the test.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::sync::Arc;

use pdp_kit::clock::SystemClock;
use pdp_kit::identity::{Identity, IdentityKey};
use pdp_proto::pdp::planning::v1 as api;
use pdp_proto::pdp::selection::v1 as sel;
use serde_json::json;
use tonic::transport::Channel;

mod support;
use support::*;

const KEY: &str = "instances-test-hmac-key-of-at-least-32-characters";
const HARBIN: &str = "230100";
const PROVINCE: &str = "230000";
/// Every tenant but Harbin, which has its own instance.
const SHARED_TENANTS: &str = r#"["230000", "230200", "230300", "230400", "230500", "230600",
    "230700", "230800", "230900", "231000", "231100", "231200", "232700"]"#;

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
        division: None,
    }
}

fn bureau(tenant: &str) -> Identity {
    who(
        if tenant == PROVINCE {
            "provincial_bureau"
        } else {
            "city_bureau"
        },
        tenant,
    )
}

/// The filings an instance holds for the province, as the provincial bureau lists them.
async fn province_filings(
    client: &api::filing_service_client::FilingServiceClient<Channel>,
) -> Vec<api::Filing> {
    let request = api::ListFilingsRequest {
        tenant: PROVINCE.into(),
        ..Default::default()
    };
    client
        .clone()
        .list_filings(signed(&bureau(PROVINCE), request))
        .await
        .unwrap()
        .into_inner()
        .filings
}

/// One `pdp serve <service>` process.
struct Process {
    child: Running,
    dir: tempfile::TempDir,
    http_port: u16,
    grpc: Channel,
}

/// One platform instance: a process per service, one database.
struct Instance {
    planning: Process,
    selection: Process,
    agreements: Process,
}

fn start(name: &str, mode: &str, tenants: &str) -> Instance {
    let url = database(name);
    // As the chart's Job does before the pods start: serving processes never migrate.
    let migrated = pdp(&["migrate"], &[("PDP_STORE__URL", &url)]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let brokers =
        std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    // A new name per run: the groups of an earlier run's instance hold offsets of its own.
    let instance = format!("{name}-{}", std::process::id());
    let serve = |service: &str| {
        let dir = tempfile::tempdir().unwrap();
        let (grpc_port, http_port) = (free_port(), free_port());
        let grpc = format!("127.0.0.1:{grpc_port}");
        let http = format!("127.0.0.1:{http_port}");
        let mut child = start_serve(
            dir.path(),
            service,
            &[
                ("PDP_MODE", "cluster"),
                ("PDP_STORE__URL", &url),
                ("PDP_EVENTS__BROKERS", &brokers),
                // tansu holds an empty fetch for the whole wait.
                ("PDP_EVENTS__FETCH_WAIT_MS", "100"),
                ("PDP_EVENTS__REPLICATION_FACTOR", "1"),
                ("PDP_IDENTITY__HMAC_KEY", KEY),
                ("PDP_INSTANCE__NAME", &instance),
                ("PDP_INSTANCE__MODE", mode),
                ("PDP_INSTANCE__TENANTS", tenants),
                ("PDP_INSTANCE__SCHEDULER_INTERVAL_SECS", "1"),
                ("PDP_GRPC__LISTEN", &grpc),
                ("PDP_HTTP__LISTEN", &http),
            ],
        );
        wait_ready(&mut child, http_port);
        Process {
            child,
            dir,
            http_port,
            grpc: Channel::from_shared(format!("http://{grpc}"))
                .unwrap()
                .connect_lazy(),
        }
    };
    Instance {
        planning: serve("planning"),
        selection: serve("selection"),
        agreements: serve("agreements"),
    }
}

impl Instance {
    fn stop(self) {
        for process in [self.planning, self.selection, self.agreements] {
            assert_eq!(
                interrupt_and_wait(process.child, process.dir.path()).code(),
                Some(0)
            );
        }
    }
}

/// A registered resource and an effective plan with it in scope, made in `tenant` through
/// `planning`.
async fn effective_plan(planning: &Channel, tenant: &str) -> api::Plan {
    let provider = who("provider", tenant);
    let bureau = bureau(tenant);
    let mut resources = api::resource_service_client::ResourceServiceClient::new(planning.clone());
    let r = resources
        .create_resource(signed(&provider, message("pdp.planning.v1.CreateResourceRequest", json!({
            "tenant": tenant,
            "resource": {
                "name": "Bus arrivals", "provider_unit": "Transport Bureau", "sector": "transport",
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
                tenant: tenant.into(),
                id: r.id.clone(),
            },
        ))
        .await
        .unwrap();

    let mut body = plan_body(&r.id);
    if tenant == PROVINCE {
        body["mode"] = json!("AUTHORIZATION_MODE_WHOLE");
    }
    let mut plans = api::plan_service_client::PlanServiceClient::new(planning.clone());
    let plan = plans
        .create_plan(signed(
            &bureau,
            message(
                "pdp.planning.v1.CreatePlanRequest",
                json!({"tenant": tenant, "plan": body}),
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    let today = today_in_shanghai();
    let id = plan.id.clone();
    fn step<M: prost::Message + Default>(
        full_name: &str,
        tenant: &str,
        id: &str,
        mut body: serde_json::Value,
    ) -> M {
        body["tenant"] = json!(tenant);
        body["id"] = json!(id);
        message(full_name, body)
    }
    plans
        .submit_plan(signed(
            &bureau,
            step("pdp.planning.v1.SubmitPlanRequest", tenant, &id, json!({})),
        ))
        .await
        .unwrap();
    let review = json!({"review": {
        "summary": "feasible", "departments_consulted": ["Transport"], "reviewed_on": today
    }});
    let review = step("pdp.planning.v1.ReviewPlanRequest", tenant, &id, review);
    plans.review_plan(signed(&bureau, review)).await.unwrap();
    let decision = json!({"decision": {
        "decided_on": today, "body": "party group", "outcome": "DECISION_OUTCOME_AGREED"
    }});
    let decision = step("pdp.planning.v1.DecidePlanRequest", tenant, &id, decision);
    plans.decide_plan(signed(&bureau, decision)).await.unwrap();
    let approval = json!({"approval": {
        "document_number": "政函〔2026〕9号", "approved_on": today, "effective_on": today
    }});
    let approval = step("pdp.planning.v1.ApprovePlanRequest", tenant, &id, approval);
    let approved = plans
        .approve_plan(signed(&bureau, approval))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.state, api::PlanState::Effective as i32);
    approved
}

/// Opens a call for `plan_id` in `tenant` through `selection`: what only an instance that applied
/// the plan's `became_effective` event accepts.
async fn open_call(
    selection: &Channel,
    tenant: &str,
    plan_id: &str,
) -> Result<sel::Selection, tonic::Status> {
    let now = chrono::Utc::now();
    let request: sel::CreateSelectionRequest = message(
        "pdp.selection.v1.CreateSelectionRequest",
        json!({"tenant": tenant, "selection": {
            "plan_id": plan_id, "name": "Operator for transit data",
            "method": "SELECTION_METHOD_OPEN_TENDER",
            "criteria": [{"name": "plan", "weight": 60}, {"name": "security", "weight": 40}],
            "opens_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "closes_at": (now + chrono::Duration::days(10)).to_rfc3339(),
            "procedure": "open tender", "operators_wanted": 1
        }}),
    );
    sel::selection_service_client::SelectionServiceClient::new(selection.clone())
        .create_selection(signed(&bureau(tenant), request))
        .await
        .map(tonic::Response::into_inner)
}

/// Waits up to 60 s for `selection` to accept a call for `plan_id`.
async fn call_opens(selection: &Channel, tenant: &str, plan_id: &str) -> sel::Selection {
    let mut last = None;
    for _ in 0..120 {
        match open_call(selection, tenant, plan_id).await {
            Ok(call) => return call,
            Err(status) => last = Some(status),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("no call for {plan_id} within 60 s: {last:?}");
}

/// How many events a consumer of the process at `http_port` counted with `outcome`.
fn events_counted(http_port: u16, consumer: &str, outcome: &str) -> u64 {
    let (_, text) = get(http_port, "/metrics").unwrap();
    let series =
        format!("pdp_events_applied_total{{consumer=\"{consumer}\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// `other`'s selection received the events of `tenant`'s plan, counted them as skipped, and
/// applied nothing of them: it refuses a call for the plan.
async fn skipped_by(other: &Instance, tenant: &str, plan_id: &str) {
    eventually(60, "the other instance's selection skips the plan", || {
        let skipped = events_counted(other.selection.http_port, "selection-plans", "skipped");
        (skipped > 0).then_some(())
    });
    let refused = open_call(&other.selection.grpc, tenant, plan_id)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_applies_its_own_tenants_events_and_the_province_keeps_the_filings() {
    let harbin = start("harbin", "municipal", &format!("[\"{HARBIN}\"]"));
    let shared = start("shared", "shared", SHARED_TENANTS);

    // Harbin's plan takes effect in Harbin's instance: Harbin's selection hears of it and opens
    // a call; the shared selection receives the same event and skips it.
    let harbin_plan = effective_plan(&harbin.planning.grpc, HARBIN).await;
    let call = call_opens(&harbin.selection.grpc, HARBIN, &harbin_plan.id).await;
    assert_eq!(call.plan_version, 1);
    skipped_by(&shared, HARBIN, &harbin_plan.id).await;

    // The province's plan takes effect in the shared instance: the mirror image.
    let province_plan = effective_plan(&shared.planning.grpc, PROVINCE).await;
    call_opens(&shared.selection.grpc, PROVINCE, &province_plan.id).await;
    skipped_by(&harbin, PROVINCE, &province_plan.id).await;
    // Agreements follow plans in each instance too, and skip the other's.
    eventually(
        60,
        "each instance's agreements skip the other's plan",
        || {
            (events_counted(harbin.agreements.http_port, "agreements-follow", "skipped") > 0
                && events_counted(shared.agreements.http_port, "agreements-follow", "skipped") > 0)
                .then_some(())
        },
    );

    // The filing reaches the provincial instance through Kafka, and is acknowledged there.
    let province = bureau(PROVINCE);
    let mut filings =
        api::filing_service_client::FilingServiceClient::new(shared.planning.grpc.clone());
    let mut found = None;
    for _ in 0..120 {
        if let Some(f) = province_filings(&filings)
            .await
            .into_iter()
            .find(|f| f.plan_id == harbin_plan.id)
        {
            found = Some(f);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let filing = found.expect("the filing reached the provincial instance within 60 s");
    assert_eq!((filing.city.as_str(), filing.plan_version), (HARBIN, 1));
    let acked = filings
        .acknowledge_filing(signed(
            &province,
            api::AcknowledgeFilingRequest {
                tenant: PROVINCE.into(),
                id: filing.id,
                note: "received".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.state, api::FilingState::Acknowledged as i32);

    // Harbin's instance keeps no filings; the shared one has no Harbin plan; unsigned calls fail.
    let harbin_filings =
        api::filing_service_client::FilingServiceClient::new(harbin.planning.grpc.clone());
    assert!(province_filings(&harbin_filings).await.is_empty());
    let mut shared_plans =
        api::plan_service_client::PlanServiceClient::new(shared.planning.grpc.clone());
    let missing = shared_plans
        .get_plan(signed(
            &bureau(HARBIN),
            api::GetPlanRequest {
                tenant: HARBIN.into(),
                id: harbin_plan.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let unsigned = api::plan_service_client::PlanServiceClient::new(harbin.planning.grpc.clone())
        .get_plan(tonic::Request::new(api::GetPlanRequest {
            tenant: HARBIN.into(),
            id: harbin_plan.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unsigned.code(), tonic::Code::Unauthenticated);

    harbin.stop();
    shared.stop();
}
