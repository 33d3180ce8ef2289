//! REST/JSON through the gateway to a real tonic service and back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, test};
use pdp_gateway::audit::OutboxAudit;
use pdp_gateway::limits::{Limit, LocalLimiter};
use pdp_gateway::tenants::Tenants;
use pdp_gateway::transcode::routes::RouteTable;
use pdp_gateway::{Action, Authenticator, Authorizer, Gateway, SingleInstance};
use pdp_kit::clock::SystemClock;
use pdp_kit::identity::{Identity, IdentityKey, RequireIdentity, TenantCode, caller};
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::widgets::widget_service_server::{WidgetService, WidgetServiceServer};
use crate::widgets::*;

const KEY: &[u8] = b"test-hmac-key";

fn key() -> IdentityKey {
    IdentityKey::new(KEY, chrono::Duration::seconds(60), Arc::new(SystemClock))
}

#[derive(Default)]
struct Widgets {
    calls: AtomicUsize,
}

fn who<T>(request: &Request<T>) -> String {
    caller(request)
        .map(|i| format!("{}@{}:{}", i.subject, i.tenant, i.roles.join("+")))
        .unwrap_or_default()
}

#[tonic::async_trait]
impl WidgetService for Arc<Widgets> {
    async fn get_widget(
        &self,
        request: Request<GetWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let caller = who(&request);
        let r = request.into_inner();
        if r.id == "slow" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Ok(Response::new(Widget {
            id: r.id,
            tenant: r.tenant,
            caller,
            state: WidgetState::Draft as i32,
            ..Default::default()
        }))
    }

    async fn list_widgets(
        &self,
        request: Request<ListWidgetsRequest>,
    ) -> Result<Response<ListWidgetsResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let r = request.into_inner();
        let widgets = r
            .tags
            .iter()
            .map(|t| Widget {
                id: t.clone(),
                tenant: r.tenant.clone(),
                count: i64::from(r.page_size),
                state: r.state,
                created_at: r.since,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(ListWidgetsResponse { widgets }))
    }

    async fn create_widget(
        &self,
        request: Request<CreateWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let r = request.into_inner();
        let mut w = r.widget.unwrap_or_default();
        w.tenant = r.tenant;
        w.id = "w-new".into();
        Ok(Response::new(w))
    }

    async fn update_widget(
        &self,
        request: Request<UpdateWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let r = request.into_inner();
        Ok(Response::new(r.widget.unwrap_or_default()))
    }

    async fn submit_widget(
        &self,
        request: Request<SubmitWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let r = request.into_inner();
        if r.fail {
            use pdp_kit::error::{ErrorCode, PreconditionViolation, ServiceError};
            #[derive(Debug, thiserror::Error)]
            #[error("widget {0} is not reviewed")]
            struct NotReviewed(String);
            impl ServiceError for NotReviewed {
                fn code(&self) -> ErrorCode {
                    ErrorCode::FailedPrecondition
                }
                fn reason(&self) -> &'static str {
                    "WIDGET_NOT_REVIEWED"
                }
                fn precondition_violations(&self) -> Vec<PreconditionViolation> {
                    vec![PreconditionViolation {
                        kind: "STATE".into(),
                        subject: format!("widgets/{}", self.0),
                        description: "review the widget before submitting it".into(),
                    }]
                }
            }
            return Err(NotReviewed(r.id).to_status());
        }
        Ok(Response::new(Widget {
            id: r.id,
            tenant: r.tenant,
            display_name: r.comment,
            state: WidgetState::Submitted as i32,
            ..Default::default()
        }))
    }

    async fn get_public_widget(
        &self,
        request: Request<GetWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        self.get_widget(request).await
    }

    async fn internal_only(
        &self,
        request: Request<GetWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        self.get_widget(request).await
    }

    /// Answers with what arrived: the content type, the bytes, the messages; a body that begins
    /// with `refuse` is refused at its first piece, before the rest arrives.
    async fn upload_attachment(
        &self,
        request: Request<tonic::Streaming<UploadAttachmentRequest>>,
    ) -> Result<Response<Widget>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let caller = who(&request);
        let mut pieces = request.into_inner();
        let first = pieces.message().await?.unwrap_or_default();
        let mut content_type = String::new();
        let (mut bytes, mut messages) = (Vec::new(), 1);
        if let Some(body) = &first.data {
            content_type.clone_from(&body.content_type);
            bytes.extend_from_slice(&body.data);
        }
        while let Some(piece) = pieces.message().await? {
            messages += 1;
            bytes.extend_from_slice(&piece.data.unwrap_or_default().data);
            if bytes.starts_with(b"refuse") {
                return Err(Status::failed_precondition("refused at its first piece"));
            }
        }
        Ok(Response::new(Widget {
            id: first.id,
            tenant: first.tenant,
            caller,
            display_name: content_type,
            count: bytes.len() as i64,
            tags: vec![
                messages.to_string(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(8)]).into(),
            ],
            ..Default::default()
        }))
    }
}

/// Stands in for token verification, which this suite does not test: the subject comes from a
/// header, and so may the home tenant and the organization's division.
struct HeaderAuthenticator;

impl Authenticator for HeaderAuthenticator {
    fn authenticate(&self, request: &HttpRequest, tenant: &TenantCode) -> Result<Identity, String> {
        let subject = request
            .headers()
            .get("x-test-subject")
            .and_then(|v| v.to_str().ok())
            .ok_or("missing bearer token")?;
        let code = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.parse::<TenantCode>().expect("a six-digit code"))
        };
        Ok(Identity {
            subject: subject.into(),
            organization: "org-1".into(),
            roles: vec!["operator".into()],
            tenant: code("x-test-home").unwrap_or_else(|| tenant.clone()),
            division: code("x-test-division"),
        })
    }
}

/// Lets everyone but `intruder` in, so the suite can check that a denial stops the call.
struct AllowButIntruder;

impl Authorizer for AllowButIntruder {
    fn allows(
        &self,
        caller: Option<&Identity>,
        _tenant: &TenantCode,
        _operation: &str,
        _action: Action,
    ) -> bool {
        caller.is_none_or(|c| c.subject != "intruder")
    }
}

pub(crate) struct Fixture {
    service: Arc<Widgets>,
    pub(crate) gateway: Arc<Gateway>,
    addr: std::net::SocketAddr,
    audit_store: pdp_kit::store::Store,
    _dir: tempfile::TempDir,
}

pub(crate) async fn start() -> Fixture {
    start_with(Limit {
        per_second: 1000.0,
        burst: 1000,
    })
    .await
}

async fn start_with(subject_limit: Limit) -> Fixture {
    start_configured(
        subject_limit,
        Limit {
            per_second: 1000.0,
            burst: 1000,
        },
        Vec::new(),
    )
    .await
}

async fn start_configured(
    subject_limit: Limit,
    tenant_limit: Limit,
    trusted_proxies: Vec<ipnet::IpNet>,
) -> Fixture {
    start_audited(subject_limit, tenant_limit, trusted_proxies, None).await
}

async fn start_audited(
    subject_limit: Limit,
    tenant_limit: Limit,
    trusted_proxies: Vec<ipnet::IpNet>,
    sink: Option<Arc<dyn pdp_gateway::audit::AuditSink>>,
) -> Fixture {
    let service = Arc::new(Widgets::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = WidgetServiceServer::with_interceptor(service.clone(), RequireIdentity(key()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let upstream = pdp_gateway::upstream::Upstream::new(&format!("http://{addr}")).unwrap();
    let pool = prost_reflect::DescriptorPool::decode(crate::TESTING_DESCRIPTOR).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit_store = pdp_kit::store::Store::open(
        &dir.path().join("platform.db").to_string_lossy(),
        "platform",
        1,
    )
    .unwrap();
    audit_store
        .migrate(&[pdp_kit::store::KIT_MIGRATIONS])
        .unwrap();
    let (audit, _writer) = OutboxAudit::spawn(
        audit_store.clone(),
        tokio_util::sync::CancellationToken::new(),
    );
    let gateway = Arc::new(Gateway {
        tenants: Tenants::shipped(),
        routes: RouteTable::from_pool(&pool).unwrap(),
        authenticator: Arc::new(HeaderAuthenticator),
        authorizer: Arc::new(AllowButIntruder),
        upstreams: Arc::new(SingleInstance(HashMap::from([(
            "testing".to_string(),
            upstream,
        )]))),
        identity_key: key(),
        upstream_timeout: Duration::from_millis(800),
        audit: sink.unwrap_or_else(|| Arc::new(audit)),
        limiter: Arc::new(LocalLimiter::default()),
        tenant_limit,
        subject_limit,
        max_body_bytes: 64 * 1024,
        max_upload_bytes: 1 << 20,
        cors_origins: vec!["https://portal.hlj.example".into()],
        trusted_proxies,
        idempotency: Arc::new(pdp_gateway::idempotency::LocalIdempotency::default()),
    });
    Fixture {
        service,
        gateway,
        addr,
        audit_store,
        _dir: dir,
    }
}

macro_rules! app {
    ($fixture:expr) => {
        test::init_service(App::new().configure($fixture.gateway.clone().configure())).await
    };
}

async fn json_of(resp: actix_web::dev::ServiceResponse) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = test::read_body(resp).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[actix_web::test]
async fn get_with_path_variables_reaches_the_service_with_a_signed_identity() {
    let f = start().await;
    let app = app!(f);
    let req = test::TestRequest::get()
        .uri("/api/v1/tenants/230100/widgets/w-1")
        .insert_header(("x-test-subject", "alice"))
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "w-1");
    assert_eq!(body["tenant"], "230100");
    assert_eq!(body["caller"], "alice@230100:operator");
    assert_eq!(body["state"], "WIDGET_STATE_DRAFT", "enums as names");
    assert_eq!(body["count"], "0", "int64 as a string, defaults present");
    assert_eq!(body["displayName"], "", "lowerCamelCase JSON names");
}

#[actix_web::test]
async fn query_parameters_fill_repeated_enum_and_well_known_fields() {
    let f = start().await;
    let app = app!(f);
    let req = test::TestRequest::get()
        .uri("/api/v1/tenants/230100/widgets?tags=a&tags=b%20c&state=WIDGET_STATE_SUBMITTED&page_size=5&since=2026-03-01T00:00:00Z")
        .insert_header(("x-test-subject", "alice"))
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 200, "{body}");
    let widgets = body["widgets"].as_array().unwrap();
    assert_eq!(widgets.len(), 2);
    assert_eq!(widgets[1]["id"], "b c");
    assert_eq!(widgets[0]["state"], "WIDGET_STATE_SUBMITTED");
    assert_eq!(widgets[0]["count"], "5");
    assert_eq!(widgets[0]["createdAt"], "2026-03-01T00:00:00Z");
}

#[actix_web::test]
async fn field_body_and_nested_path_variable() {
    let f = start().await;
    let app = app!(f);
    let req = test::TestRequest::post()
        .uri("/api/v1/tenants/230100/widgets")
        .insert_header(("x-test-subject", "alice"))
        .insert_header(("content-type", "application/json"))
        .set_payload(r#"{"displayName": "Pump data", "tags": ["water"], "count": "12"}"#)
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["displayName"], "Pump data");
    assert_eq!(body["tenant"], "230100");
    assert_eq!(body["count"], "12");

    let req = test::TestRequest::patch()
        .uri("/api/v1/tenants/230100/widgets/w-9")
        .insert_header(("x-test-subject", "alice"))
        .insert_header(("content-type", "application/json"))
        .set_payload(r#"{"displayName": "Renamed", "id": "ignored-by-path"}"#)
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["id"], "w-9",
        "the path wins over the body for a bound field"
    );
    assert_eq!(body["displayName"], "Renamed");
}

#[actix_web::test]
async fn custom_verb_with_whole_body_and_service_errors_become_google_rpc_status() {
    let f = start().await;
    let app = app!(f);
    let req = test::TestRequest::post()
        .uri("/api/v1/tenants/230100/widgets/w-2:submit")
        .insert_header(("x-test-subject", "alice"))
        .insert_header(("content-type", "application/json"))
        .set_payload(r#"{"comment": "ready"}"#)
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "WIDGET_STATE_SUBMITTED");
    assert_eq!(body["displayName"], "ready");

    let req = test::TestRequest::post()
        .uri("/api/v1/tenants/230100/widgets/w-2:submit")
        .insert_header(("x-test-subject", "alice"))
        .insert_header(("content-type", "application/json"))
        .set_payload(r#"{"fail": true}"#)
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 400, "FAILED_PRECONDITION maps to 400: {body}");
    assert_eq!(body["status"], "FailedPrecondition");
    let details = body["details"].as_array().unwrap();
    let pre = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.PreconditionFailure")
        .unwrap();
    assert_eq!(
        pre["violations"][0]["description"],
        "review the widget before submitting it"
    );
}

#[actix_web::test]
async fn unknown_routes_wrong_methods_and_bad_input_are_refused_before_the_service() {
    let f = start().await;
    let app = app!(f);
    let call = |req: test::TestRequest| req.insert_header(("x-test-subject", "alice")).to_request();

    let (status, body) = json_of(
        test::call_service(
            &app,
            call(test::TestRequest::get().uri("/api/v1/tenants/230100/gadgets")),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let resp = test::call_service(
        &app,
        call(test::TestRequest::delete().uri("/api/v1/tenants/230100/widgets/w-1")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 405);
    let allow = resp
        .headers()
        .get("allow")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(allow.contains("GET") && allow.contains("PATCH"), "{allow}");

    let (status, body) = json_of(
        test::call_service(
            &app,
            call(
                test::TestRequest::post()
                    .uri("/api/v1/tenants/230100/widgets")
                    .insert_header(("content-type", "application/json"))
                    .set_payload("{\n  \"displayName\": \"x\",\n  oops\n}"),
            ),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("line 3, column"),
        "names the position: {message}"
    );

    let (status, body) = json_of(
        test::call_service(
            &app,
            call(test::TestRequest::get().uri("/api/v1/tenants/230100/widgets?colour=red")),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["details"][1]["fieldViolations"][0]["field"], "colour");

    let (status, _) = json_of(
        test::call_service(
            &app,
            call(test::TestRequest::get().uri("/api/v1/tenants/230100/widgets?pageSize=lots")),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);

    let (status, _) = json_of(
        test::call_service(
            &app,
            call(test::TestRequest::get().uri("/api/v1/tenants/harbin/widgets/w-1")),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404, "a tenant is a six-digit code");

    // A county is served by its city's tenant: the answer says which (第十五条).
    let (status, body) = json_of(
        test::call_service(
            &app,
            call(test::TestRequest::get().uri("/api/v1/tenants/230102/widgets/w-1")),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["details"][0]["reason"], "COUNTY_NOT_A_TENANT",
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("230100") && message.contains("道里区") && message.contains("第十五条"),
        "{message}"
    );

    assert_eq!(
        f.service.calls.load(Ordering::SeqCst),
        0,
        "nothing reached the service"
    );
}

#[actix_web::test]
async fn a_county_organization_belongs_to_its_city_tenant() {
    let f = start().await;
    let app = app!(f);
    let call = |home: &str, division: &str| {
        test::TestRequest::get()
            .uri("/api/v1/tenants/230100/widgets/w-1")
            .insert_header(("x-test-subject", "alice"))
            .insert_header(("x-test-home", home))
            .insert_header(("x-test-division", division))
            .to_request()
    };
    // 道里区 lies in Harbin: its organizations are Harbin's.
    let resp = test::call_service(&app, call("230100", "230102")).await;
    assert_eq!(resp.status().as_u16(), 200);
    // A token whose tenant is the county itself is told which tenant serves it.
    let (status, body) = json_of(test::call_service(&app, call("230102", "230102")).await).await;
    assert_eq!(status, 401, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("230100") && message.contains("道里区"),
        "{message}"
    );
    // A division of another city (龙沙区, Qiqihar) does not lie in Harbin.
    let (status, body) = json_of(test::call_service(&app, call("230100", "230202")).await).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("230202"),
        "{body}"
    );
    assert_eq!(
        f.service.calls.load(Ordering::SeqCst),
        1,
        "only the first reached the service"
    );
}

#[actix_web::test]
async fn authentication_and_authorization_come_before_the_service() {
    let f = start().await;
    let app = app!(f);
    let (status, body) = json_of(
        test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/api/v1/tenants/230100/widgets/w-1")
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("missing bearer token")
    );

    let req = test::TestRequest::get()
        .uri("/api/v1/tenants/230100/widgets/w-1")
        .insert_header(("x-test-subject", "intruder"))
        .to_request();
    let (status, _) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 403);
    assert_eq!(f.service.calls.load(Ordering::SeqCst), 0);

    // A public route needs no token, and the service still sees a signed (anonymous) identity.
    let req = test::TestRequest::get()
        .uri("/api/v1/tenants/230100/public/widgets/w-1")
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caller"], "anonymous@230100:public");
}

#[actix_web::test]
async fn rpcs_without_an_http_rule_are_not_routes() {
    let f = start().await;
    let operations: Vec<String> = f
        .gateway
        .routes
        .routes()
        .iter()
        .map(|r| r.operation().to_string())
        .collect();
    assert!(operations.contains(&"pdp.testing.v1.WidgetService/SubmitWidget".to_string()));
    assert!(
        !operations.iter().any(|o| o.ends_with("/InternalOnly")),
        "{operations:?}"
    );
}

#[actix_web::test]
async fn a_slow_upstream_gets_504() {
    let f = start().await;
    let app = app!(f);
    let req = test::TestRequest::get()
        .uri("/api/v1/tenants/230100/widgets/slow")
        .insert_header(("x-test-subject", "alice"))
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 504, "{body}");
}

#[actix_web::test]
async fn an_upstream_nobody_answers_on_gets_503_and_a_later_call_connects_again() {
    let f = start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap();
    drop(closed);
    let fixture_gateway = Arc::try_unwrap(f.gateway).expect("the fixture's only gateway");
    let gateway = Arc::new(Gateway {
        upstreams: Arc::new(SingleInstance(HashMap::from([(
            "testing".to_string(),
            pdp_gateway::upstream::Upstream::new(&format!("http://{nobody}")).unwrap(),
        )]))),
        ..fixture_gateway
    });
    let app = test::init_service(App::new().configure(gateway.configure())).await;
    let get = || {
        test::TestRequest::get()
            .uri("/api/v1/tenants/230100/widgets/w-1")
            .insert_header(("x-test-subject", "alice"))
            .to_request()
    };
    let (status, body) = json_of(test::call_service(&app, get()).await).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "Unavailable", "{body}");

    // The service comes up at that address: the next call connects, nothing remembered the
    // failure.
    let listener = tokio::net::TcpListener::bind(nobody).await.unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(WidgetServiceServer::with_interceptor(
                Arc::new(Widgets::default()),
                RequireIdentity(key()),
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let (status, body) = json_of(test::call_service(&app, get()).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "w-1", "{body}");
}

#[tokio::test]
async fn the_service_refuses_a_call_that_bypasses_the_gateway() {
    let f = start().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", f.addr))
        .unwrap()
        .connect_lazy();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let request = GetWidgetRequest {
        tenant: "230100".into(),
        id: "w-1".into(),
    };
    let result: Result<Response<Widget>, Status> = grpc
        .unary(
            Request::new(request),
            http::uri::PathAndQuery::from_static("/pdp.testing.v1.WidgetService/GetWidget"),
            tonic_prost::ProstCodec::<GetWidgetRequest, Widget>::default(),
        )
        .await;
    assert_eq!(result.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert_eq!(f.service.calls.load(Ordering::SeqCst), 0);
}

#[actix_web::test]
async fn every_request_leaves_one_audit_record_whatever_the_outcome() {
    use diesel::prelude::*;
    use pdp_kit::outbox::pdp_outbox;

    let f = start().await;
    let app = app!(f);
    let requests = [
        ("/api/v1/tenants/230100/widgets/w-1", "alice", 200, "allow"),
        (
            "/api/v1/tenants/230100/widgets/w-1",
            "intruder",
            403,
            "deny",
        ),
        (
            "/api/v1/tenants/230100/nothing-here",
            "alice",
            404,
            "refused",
        ),
    ];
    for (uri, who, status, _) in requests {
        let req = test::TestRequest::get()
            .uri(uri)
            .insert_header(("x-test-subject", who))
            .insert_header(("x-request-id", format!("req-{who}-{status}")))
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(
            resp.headers().get("x-request-id").unwrap(),
            &format!("req-{who}-{status}")
        );
    }
    let mut records: Vec<Value> = Vec::new();
    for _ in 0..50 {
        let rows: Vec<(String, String)> = f
            .audit_store
            .run(|conn| {
                Ok::<_, pdp_kit::store::StoreError>(
                    pdp_outbox::table
                        .select((pdp_outbox::topic, pdp_outbox::envelope))
                        .load(conn)?,
                )
            })
            .await
            .unwrap();
        if rows.len() >= requests.len() {
            assert!(rows.iter().all(|(topic, _)| topic == "pdp.audit"));
            records = rows
                .iter()
                .map(|(_, e)| serde_json::from_str::<Value>(e).unwrap()["data"].clone())
                .collect();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(records.len(), requests.len(), "one record per request");
    for (_, who, status, decision) in requests {
        let record = records
            .iter()
            .find(|r| r["request_id"] == format!("req-{who}-{status}"))
            .unwrap_or_else(|| panic!("no record for {who} {status}: {records:?}"));
        assert_eq!(record["decision"], decision);
        assert_eq!(record["status"], status);
        assert_eq!(record["tenant"], "230100");
    }
}

#[actix_web::test]
async fn a_subject_over_its_rate_gets_429_with_retry_after() {
    let f = start_with(Limit {
        per_second: 0.5,
        burst: 2,
    })
    .await;
    let app = app!(f);
    let get = |who: &str| {
        test::TestRequest::get()
            .uri("/api/v1/tenants/230100/widgets/w-1")
            .insert_header(("x-test-subject", who.to_string()))
            .to_request()
    };
    assert_eq!(test::call_service(&app, get("alice")).await.status(), 200);
    assert_eq!(test::call_service(&app, get("alice")).await.status(), 200);
    let resp = test::call_service(&app, get("alice")).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        test::call_service(&app, get("bob")).await.status(),
        200,
        "another subject has its own bucket"
    );
}

#[actix_web::test]
async fn oversized_bodies_are_refused_and_cors_admits_only_configured_origins() {
    let f = start().await;
    let app = app!(f);
    let big = format!("{{\"displayName\": \"{}\"}}", "x".repeat(100 * 1024));
    let req = test::TestRequest::post()
        .uri("/api/v1/tenants/230100/widgets")
        .insert_header(("x-test-subject", "alice"))
        .insert_header(("content-type", "application/json"))
        .set_payload(big)
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 413);
    assert_eq!(f.service.calls.load(Ordering::SeqCst), 0);

    let preflight = |origin: &str| {
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/api/v1/tenants/230100/widgets")
            .insert_header(("origin", origin.to_string()))
            .insert_header(("access-control-request-method", "POST"))
            .to_request()
    };
    let ok = test::call_service(&app, preflight("https://portal.hlj.example")).await;
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        "https://portal.hlj.example"
    );
    let other = test::call_service(&app, preflight("https://evil.example")).await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// The audit records written so far, once there are at least `n`.
async fn audit_records(f: &Fixture, n: usize) -> Vec<Value> {
    use diesel::prelude::*;
    use pdp_kit::outbox::pdp_outbox;
    for _ in 0..100 {
        let rows: Vec<String> = f
            .audit_store
            .run(|conn| {
                Ok::<_, pdp_kit::store::StoreError>(
                    pdp_outbox::table.select(pdp_outbox::envelope).load(conn)?,
                )
            })
            .await
            .unwrap();
        if rows.len() >= n {
            return rows
                .iter()
                .map(|e| serde_json::from_str::<Value>(e).unwrap()["data"].clone())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} audit records");
}

const SLOW: Limit = Limit {
    per_second: 0.01,
    burst: 2,
};
const AMPLE: Limit = Limit {
    per_second: 1000.0,
    burst: 1000,
};

fn public_from(peer: &str, forwarded: Option<&str>) -> test::TestRequest {
    let mut req = test::TestRequest::get()
        .uri("/api/v1/tenants/230100/public/widgets/w-1")
        .peer_addr(format!("{peer}:4000").parse().unwrap());
    if let Some(xff) = forwarded {
        req = req.insert_header(("x-forwarded-for", xff.to_string()));
    }
    req
}

#[actix_web::test]
async fn anonymous_traffic_is_charged_to_its_address_whatever_it_forwards() {
    let f = start_with(SLOW).await;
    let app = app!(f);
    for xff in ["198.51.100.1", "198.51.100.2"] {
        let resp =
            test::call_service(&app, public_from("203.0.113.9", Some(xff)).to_request()).await;
        assert_eq!(resp.status(), 200);
    }
    let third = public_from("203.0.113.9", Some("198.51.100.3")).to_request();
    let resp = test::call_service(&app, third).await;
    assert_eq!(
        resp.status(),
        429,
        "a made-up X-Forwarded-For does not make a new client"
    );
}

#[actix_web::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let f = start_configured(
        Limit {
            per_second: 0.01,
            burst: 1,
        },
        AMPLE,
        vec!["10.0.0.0/24".parse().unwrap()],
    )
    .await;
    let app = app!(f);
    let through = |client: &str| public_from("10.0.0.5", Some(client)).to_request();
    assert_eq!(
        test::call_service(&app, through("198.51.100.1"))
            .await
            .status(),
        200
    );
    assert_eq!(
        test::call_service(&app, through("198.51.100.2"))
            .await
            .status(),
        200
    );
    assert_eq!(
        test::call_service(&app, through("198.51.100.1"))
            .await
            .status(),
        429
    );
}

#[actix_web::test]
async fn a_flood_of_bad_tokens_does_not_starve_the_tenants_users() {
    let f = start_configured(SLOW, SLOW, Vec::new()).await;
    let app = app!(f);
    for _ in 0..10 {
        let flood = test::TestRequest::get()
            .uri("/api/v1/tenants/230100/widgets/w-1")
            .peer_addr("203.0.113.9:4000".parse().unwrap())
            .to_request();
        let status = test::call_service(&app, flood).await.status().as_u16();
        assert!(status == 401 || status == 429, "{status}");
    }
    let alice = test::TestRequest::get()
        .uri("/api/v1/tenants/230100/widgets/w-1")
        .peer_addr("198.51.100.7:4000".parse().unwrap())
        .insert_header(("x-test-subject", "alice"))
        .to_request();
    assert_eq!(
        test::call_service(&app, alice).await.status(),
        200,
        "the tenant's limit is charged by authenticated traffic only"
    );
}

#[actix_web::test]
async fn a_path_matching_no_route_is_recorded_cut_short_and_a_flood_of_them_not_at_all() {
    let f = start_with(SLOW).await;
    let app = app!(f);
    let long = format!("/api/v1/tenants/230100/{}", "x".repeat(20_000));
    let stray = || {
        test::TestRequest::get()
            .uri(&long)
            .peer_addr("203.0.113.9:4000".parse().unwrap())
            .insert_header(("x-request-id", "r1\" level=\"ERROR"))
            .to_request()
    };
    assert_eq!(test::call_service(&app, stray()).await.status(), 404);
    assert_eq!(test::call_service(&app, stray()).await.status(), 404);
    assert_eq!(test::call_service(&app, stray()).await.status(), 429);
    let records = audit_records(&f, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records_after = audit_records(&f, 2).await;
    assert_eq!(records_after.len(), 2, "the refused flood is not recorded");
    for record in &records {
        let operation = record["operation"].as_str().unwrap();
        assert!(
            operation.chars().count() < 300 && operation.contains("…(+"),
            "{operation}"
        );
        assert_eq!(record["client_address"], "203.0.113.9");
        let id = record["request_id"].as_str().unwrap();
        assert!(
            !id.contains('\n'),
            "a client's id with a newline is replaced: {id}"
        );
    }
}

/// A create (`POST …/widgets`, body: the widget) with `payload` sent as `content_type`.
async fn create_widget(f: &Fixture, content_type: Option<&str>, payload: String) -> (u16, Value) {
    let app = app!(f);
    let mut req = test::TestRequest::post()
        .uri("/api/v1/tenants/230100/widgets")
        .insert_header(("x-test-subject", "alice"));
    if let Some(kind) = content_type {
        req = req.insert_header(("content-type", kind.to_string()));
    }
    json_of(test::call_service(&app, req.set_payload(payload).to_request()).await).await
}

#[actix_web::test]
async fn bodies_are_json_a_create_has_one_and_text_holds_no_hidden_characters() {
    let f = start().await;
    let json = Some("application/json; charset=utf-8");
    let ok = r#"{"displayName": "Pump data"}"#.to_string();
    assert_eq!(create_widget(&f, json, ok.clone()).await.0, 200);

    // A cross-site form can post text/plain without a preflight.
    let (status, body) = create_widget(&f, Some("text/plain"), ok.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("application/json"), "{body}");
    assert_eq!(create_widget(&f, None, ok).await.0, 400);

    let (status, body) = create_widget(&f, json, String::new()).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("needs a JSON body"), "{body}");

    for (text, code) in [
        ("Pump\u{0}data", "U+0000"),
        ("evil\u{202E}txt.exe", "U+202E"),
        ("zero\u{200B}width", "U+200B"),
    ] {
        let payload = serde_json::json!({ "displayName": text }).to_string();
        let (status, body) = create_widget(&f, json, payload).await;
        assert_eq!(status, 400, "{text:?}: {body}");
        let said = body.to_string();
        assert!(
            said.contains(code) && said.contains("display_name"),
            "{said}"
        );
    }
    let long = serde_json::json!({ "displayName": "x".repeat(10_001) }).to_string();
    let (status, body) = create_widget(&f, json, long).await;
    assert_eq!(status, 400);
    assert!(
        body.to_string().contains("at most 10000 characters"),
        "{body}"
    );
    let many = serde_json::json!({ "tags": vec!["t"; 1_001] }).to_string();
    assert_eq!(create_widget(&f, json, many).await.0, 400);
    let lines = serde_json::json!({ "displayName": "line one\nline two\tend" }).to_string();
    assert_eq!(
        create_widget(&f, json, lines).await.0,
        200,
        "tabs and line breaks are text"
    );

    // An enum number the enum does not define is refused, not stored and echoed.
    let (status, body) = create_widget(&f, json, r#"{"state": 7}"#.into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("7 is not a value"), "{body}");
    assert_eq!(
        f.service.calls.load(Ordering::SeqCst),
        2,
        "refusals reach no service"
    );
}

/// An audit trail that cannot be written.
struct Unwritable;

#[async_trait::async_trait]
impl pdp_gateway::audit::AuditSink for Unwritable {
    async fn record(
        &self,
        _: pdp_gateway::audit::AuditRecord,
    ) -> Result<(), pdp_gateway::audit::AuditError> {
        Err(pdp_gateway::audit::AuditError::Unavailable("test"))
    }
}

#[actix_web::test]
async fn no_read_or_refusal_is_answered_without_its_record() {
    let f = start_audited(AMPLE, AMPLE, Vec::new(), Some(Arc::new(Unwritable))).await;
    let app = app!(f);
    let read = test::TestRequest::get()
        .uri("/api/v1/tenants/230100/widgets/w-1")
        .insert_header(("x-test-subject", "alice"))
        .to_request();
    let (status, body) = json_of(test::call_service(&app, read).await).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("audit trail"), "{body}");
    let refused = test::TestRequest::get()
        .uri("/api/v1/tenants/230100/widgets/w-1")
        .to_request();
    assert_eq!(test::call_service(&app, refused).await.status(), 503);
    // A change the service made and recorded in its own transaction is still answered.
    let create = test::TestRequest::post()
        .uri("/api/v1/tenants/230100/widgets")
        .insert_header(("x-test-subject", "alice"))
        .insert_header(("content-type", "application/json"))
        .set_payload(r#"{"displayName": "x"}"#)
        .to_request();
    assert_eq!(test::call_service(&app, create).await.status(), 200);
}

#[actix_web::test]
async fn a_retried_create_with_its_idempotency_key_gets_the_first_answer() {
    let f = start().await;
    let app = app!(f);
    let create = |key: &str, body: &str| {
        test::TestRequest::post()
            .uri("/api/v1/tenants/230100/widgets")
            .insert_header(("x-test-subject", "alice"))
            .insert_header(("content-type", "application/json"))
            .insert_header(("idempotency-key", key.to_string()))
            .set_payload(body.to_string())
            .to_request()
    };
    let first = test::call_service(&app, create("k-1", r#"{"displayName": "Pump"}"#)).await;
    assert_eq!(first.status(), 200);
    let first_body = test::read_body(first).await;
    let again = test::call_service(&app, create("k-1", r#"{"displayName": "Pump"}"#)).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(test::read_body(again).await, first_body);
    assert_eq!(
        f.service.calls.load(Ordering::SeqCst),
        1,
        "one create, not two"
    );

    let other = test::call_service(&app, create("k-1", r#"{"displayName": "Other"}"#)).await;
    assert_eq!(other.status(), 422);
    let bad = test::call_service(&app, create("no spaces", r#"{"displayName": "x"}"#)).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(f.service.calls.load(Ordering::SeqCst), 1);
}

#[actix_web::test]
async fn a_streamed_body_reaches_the_service_piece_by_piece_within_its_bounds() {
    let f = start().await;
    let app = app!(f);
    let put = |content_type: &str, body: Vec<u8>| {
        test::TestRequest::put()
            .uri("/api/v1/tenants/230100/widgets/w-1/attachment")
            .insert_header(("x-test-subject", "alice"))
            .insert_header(("content-type", content_type.to_string()))
            .set_payload(body)
            .to_request()
    };
    let body: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (status, widget) =
        json_of(test::call_service(&app, put("text/csv; charset=utf-8", body)).await).await;
    assert_eq!(status, 200, "{widget}");
    assert_eq!(widget["id"], "w-1");
    assert_eq!(widget["caller"], "alice@230100:operator");
    assert_eq!(widget["displayName"], "text/csv; charset=utf-8");
    assert_eq!(widget["count"], "300000", "every byte, in order");
    assert_eq!(widget["tags"][1], "abcdefgh");
    assert!(
        widget["tags"][0].as_str().unwrap().parse::<u32>().unwrap() >= 2,
        "{widget}"
    );

    // What a cross-site form can send, or no type at all, never streams; the service is not called.
    let calls = f.service.calls.load(Ordering::SeqCst);
    for kind in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; b=1",
    ] {
        let (status, err) = json_of(test::call_service(&app, put(kind, b"x".to_vec())).await).await;
        assert_eq!(status, 400, "{kind}: {err}");
        assert!(err.to_string().contains("content-type"), "{err}");
    }
    assert_eq!(f.service.calls.load(Ordering::SeqCst), calls);

    // Past the upload bound (1 MiB here): 413, and the call is dropped, not completed.
    let (status, err) =
        json_of(test::call_service(&app, put("text/csv", vec![b'x'; (1 << 20) + 1])).await).await;
    assert_eq!(status, 413, "{err}");

    // The service may refuse before the body ends.
    let (status, err) =
        json_of(test::call_service(&app, put("text/csv", b"refuse this".to_vec())).await).await;
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("first piece"), "{err}");
}
