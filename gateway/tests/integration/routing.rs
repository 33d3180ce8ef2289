//! The TenantRoute watcher against a mocked Kubernetes API (tower-test, as kube's own tests do):
//! an initial list, then watch events that add and remove routes without a restart.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use pdp_gateway::Upstreams;
use pdp_gateway::routing::{TenantRoutes, watch};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn route(name: &str, tenant: &str, instance: &str) -> serde_json::Value {
    json!({
        "apiVersion": "pdp.hlj.gov.cn/v1",
        "kind": "TenantRoute",
        "metadata": {"name": name, "namespace": "pdp", "resourceVersion": "2"},
        "spec": {
            "tenant": tenant,
            "instance": instance,
            "services": {"planning": format!("http://planning.{instance}:50051")},
        },
    })
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn routes_follow_the_cluster_without_a_restart() {
    let (service, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "pdp");
    let routes = Arc::new(TenantRoutes::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watch(
        client,
        Some("pdp".into()),
        routes.clone(),
        shutdown.clone(),
    ));

    let harbin = "230100".parse().unwrap();
    let qiqihar = "230200".parse().unwrap();

    // The initial list: every city on the shared instance.
    let (request, reply) = api.next_request().await.expect("the watcher lists");
    assert!(
        request
            .uri()
            .path()
            .ends_with("/namespaces/pdp/tenantroutes"),
        "{}",
        request.uri()
    );
    assert!(
        !request
            .uri()
            .query()
            .unwrap_or_default()
            .contains("watch=true")
    );
    let list = json!({
        "apiVersion": "pdp.hlj.gov.cn/v1",
        "kind": "TenantRouteList",
        "metadata": {"resourceVersion": "1"},
        "items": [route("harbin", "230100", "shared"), route("qiqihar", "230200", "shared")],
    });
    reply.send_response(Response::new(Body::from(
        serde_json::to_vec(&list).unwrap(),
    )));
    wait_for("the initial routes", || {
        routes.instance(&harbin).as_deref() == Some("shared")
    })
    .await;
    assert!(routes.upstream(&qiqihar, "planning").is_some());

    // Then the watch: Harbin moves to its own instance, Qiqihar's route is deleted.
    let (request, reply) = api.next_request().await.expect("the watcher watches");
    assert!(
        request
            .uri()
            .query()
            .unwrap_or_default()
            .contains("watch=true"),
        "{}",
        request.uri()
    );
    let events = [
        json!({"type": "MODIFIED", "object": route("harbin", "230100", "harbin")}),
        json!({"type": "DELETED", "object": route("qiqihar", "230200", "shared")}),
    ];
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(&e).unwrap());
        body.push(b'\n');
    }
    reply.send_response(Response::new(Body::from(body)));
    wait_for("Harbin's own instance", || {
        routes.instance(&harbin).as_deref() == Some("harbin")
    })
    .await;
    wait_for("Qiqihar unrouted", || routes.instance(&qiqihar).is_none()).await;

    shutdown.cancel();
    task.await.unwrap();
}
