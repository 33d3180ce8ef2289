//! The OpenAPI document: valid by an independent validator, and complete for the routes.

use actix_web::App;
use actix_web::test as web_test;
use pdp_gateway::openapi::document;
use pdp_gateway::transcode::routes::RouteTable;

fn widgets_document() -> serde_json::Value {
    let pool = prost_reflect::DescriptorPool::decode(crate::TESTING_DESCRIPTOR).unwrap();
    document(&RouteTable::from_pool(&pool).unwrap(), "test")
}

/// Runs the Python `openapi-spec-validator` (installed by `.ci/run`) on the document.
fn validate(doc: &serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let doc = widgets_document();
    assert_eq!(doc["openapi"], "3.1.0");
    validate(&doc);
    // The platform's own document too (its routes grow with each service).
    let pool = prost_reflect::DescriptorPool::decode(pdp_proto::FILE_DESCRIPTOR_SET).unwrap();
    validate(&document(&RouteTable::from_pool(&pool).unwrap(), "test"));
}

#[test]
fn every_route_parameter_body_and_security_is_documented() {
    let doc = widgets_document();
    let paths = doc["paths"].as_object().unwrap();
    let submit = &paths["/api/v1/tenants/{tenant}/widgets/{id}:submit"]["post"];
    assert_eq!(submit["operationId"], "WidgetService_SubmitWidget");
    assert_eq!(
        submit["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/pdp.testing.v1.SubmitWidgetRequest"
    );
    let update = &paths["/api/v1/tenants/{tenant}/widgets/{widget.id}"]["patch"];
    let names: Vec<&str> = update["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["tenant", "widget.id"]);

    let list = &paths["/api/v1/tenants/{tenant}/widgets"]["get"];
    let query: Vec<(&str, &serde_json::Value)> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| (p["name"].as_str().unwrap(), &p["schema"]))
        .collect();
    let names: Vec<&str> = query.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, vec!["page_size", "tags", "state", "since"]);
    assert_eq!(query[1].1["type"], "array");
    assert_eq!(query[3].1["format"], "date-time");

    let widget = &doc["components"]["schemas"]["pdp.testing.v1.Widget"]["properties"];
    assert_eq!(
        widget["count"]["type"], "string",
        "int64 is a string in proto3 JSON"
    );
    assert_eq!(widget["displayName"]["type"], "string", "JSON names");
    assert_eq!(widget["state"]["enum"][1], "WIDGET_STATE_DRAFT");

    let public = &paths["/api/v1/tenants/{tenant}/public/widgets/{id}"]["get"];
    assert_eq!(
        public["security"],
        serde_json::json!([]),
        "public routes need no token"
    );
    assert!(
        submit.get("security").is_none(),
        "the document's default: bearer JWT"
    );
    assert!(
        !paths.keys().any(|p| p.contains("InternalOnly")),
        "RPCs without an HTTP rule are not in the document"
    );
    assert!(paths.contains_key("/api/v1/tenants"));
}

#[actix_web::test]
async fn the_gateway_serves_the_document() {
    let fixture = crate::transcoding::start().await;
    let app =
        web_test::init_service(App::new().configure(fixture.gateway.clone().configure())).await;
    let resp = web_test::call_service(
        &app,
        web_test::TestRequest::get()
            .uri("/openapi.json")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = web_test::read_body_json(resp).await;
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .contains_key("/api/v1/tenants/{tenant}/widgets")
    );
}
