//! The gateway: the one door into pdp. Front ends call it with REST/JSON; it finds the route in
//! the descriptor set, the tenant in the path, authenticates and authorizes the caller, and
//! forwards the call over gRPC to the service with the verified identity signed.
//!
//! Every step is a type with one job: [`transcode`] (routes and messages), [`Authenticator`]
//! (who calls), [`Authorizer`] (may they), [`Upstreams`] (where the service runs). Nothing reaches
//! an upstream without both answers.

pub mod audit;
pub mod auth;
pub mod authz;
pub mod client;
pub mod grants;
pub mod idempotency;
pub mod limits;
pub mod openapi;
pub mod policy;
mod replicas;
pub mod routing;
mod start;
mod trace;
/// The tenants, kept in kit: every part of pdp knows them.
pub use pdp_kit::tenants;
pub mod transcode;
pub mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use pdp_kit::error::{ErrorCode, FieldViolation, ServiceError, status_to_http};
use pdp_kit::identity::{Identity, IdentityKey, TenantCode};
use tonic::metadata::MetadataMap;
use tracing::Instrument as _;

use audit::{AuditRecord, AuditSink, Decision};
pub use start::{Handle, identity_secret, start};
use transcode::message::{TranscodeError, request_message, response_json};
use transcode::routes::{BodyBinding, Resolution, Route, RouteTable};

/// Answers who is calling.
pub trait Authenticator: Send + Sync {
    /// The verified caller of `request` in `tenant`, or why not.
    fn authenticate(&self, request: &HttpRequest, tenant: &TenantCode) -> Result<Identity, String>;
}

/// What a call does to the data: reads are GETs, everything else writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
}

impl Action {
    pub fn of(method: &actix_web::http::Method) -> Self {
        if method == actix_web::http::Method::GET {
            Self::Read
        } else {
            Self::Write
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// Answers whether a caller may run an operation in a tenant. Deny unless a policy allows.
pub trait Authorizer: Send + Sync {
    /// `caller` is `None` on public routes.
    fn allows(
        &self,
        caller: Option<&Identity>,
        tenant: &TenantCode,
        operation: &str,
        action: Action,
    ) -> bool;
}

/// Where each service of the instance serving a tenant answers.
pub trait Upstreams: Send + Sync {
    fn upstream(&self, tenant: &TenantCode, service: &str) -> Option<upstream::Upstream>;
}

/// One endpoint per service, whatever the tenant: a single instance (`pdp dev`, tests).
#[derive(Debug, Clone, Default)]
pub struct SingleInstance(pub HashMap<String, upstream::Upstream>);

impl Upstreams for SingleInstance {
    fn upstream(&self, _tenant: &TenantCode, service: &str) -> Option<upstream::Upstream> {
        self.0.get(service).cloned()
    }
}

pub struct Gateway {
    pub tenants: tenants::Tenants,
    pub routes: RouteTable,
    pub authenticator: Arc<dyn Authenticator>,
    pub authorizer: Arc<dyn Authorizer>,
    pub upstreams: Arc<dyn Upstreams>,
    pub identity_key: IdentityKey,
    pub upstream_timeout: Duration,
    pub audit: Arc<dyn AuditSink>,
    pub limiter: Arc<dyn limits::RateLimiter>,
    pub tenant_limit: limits::Limit,
    pub subject_limit: limits::Limit,
    pub max_body_bytes: usize,
    /// Largest streamed body (an upload) accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Origins front ends call from; empty allows none.
    pub cors_origins: Vec<String>,
    /// The proxies whose `X-Forwarded-For` is believed (see [`client`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Keys of retried writes and their first answers (see [`idempotency`]).
    pub idempotency: Arc<dyn idempotency::IdempotencyStore>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.routes.routes().len())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Mounts the gateway on an actix app: every path not served otherwise is an API call.
    pub fn configure(self: Arc<Self>) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
        move |cfg| {
            let mut cors = actix_cors::Cors::default()
                .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
                .allowed_headers([
                    "authorization",
                    "content-type",
                    "x-request-id",
                    "traceparent",
                ])
                .expose_headers(["x-request-id", "retry-after"])
                .max_age(600);
            for origin in &self.cors_origins {
                cors = cors.allowed_origin(origin);
            }
            let document =
                web::Data::new(openapi::document(&self.routes, env!("CARGO_PKG_VERSION")));
            cfg.app_data(document)
                .route("/openapi.json", web::get().to(openapi_json));
            cfg.service(
                web::scope("/api")
                    .wrap(cors)
                    .app_data(web::Data::from(self.clone()))
                    .route("/v1/tenants", web::get().to(list_tenants))
                    .default_service(web::to(proxy)),
            );
        }
    }
}

/// Why the gateway answered instead of the service.
#[derive(Debug, thiserror::Error)]
enum GatewayError {
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("{method} is not allowed here; allowed: {allowed}")]
    MethodNotAllowed { method: String, allowed: String },
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    /// Counties have no tenant of their own (第十五条): the caller is told which serves them.
    #[error(
        "{county} ({name}) is a county-level division, not a tenant: tenant {city} ({city_name}) \
         serves it (第十五条)"
    )]
    CountyNotATenant {
        county: String,
        name: String,
        city: String,
        city_name: String,
    },
    #[error("invalid request: {0}")]
    BadRequest(TranscodeError),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("{operation} is not allowed for this caller in tenant {tenant}")]
    Denied { operation: String, tenant: String },
    #[error("no platform instance serves service `{service}` for tenant {tenant}")]
    NoUpstream { service: String, tenant: String },
    #[error("too many requests for this {scope}; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        scope: &'static str,
        retry_after: Duration,
    },
}

impl ServiceError for GatewayError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NoRoute { .. } | Self::UnknownTenant(_) | Self::CountyNotATenant { .. } => {
                ErrorCode::NotFound
            }
            Self::MethodNotAllowed { .. } => ErrorCode::InvalidArgument,
            Self::BadRequest(_) => ErrorCode::InvalidArgument,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::Denied { .. } => ErrorCode::PermissionDenied,
            Self::NoUpstream { .. } => ErrorCode::Unavailable,
            Self::RateLimited { .. } => ErrorCode::ResourceExhausted,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "NO_ROUTE",
            Self::MethodNotAllowed { .. } => "METHOD_NOT_ALLOWED",
            Self::UnknownTenant(_) => "UNKNOWN_TENANT",
            Self::CountyNotATenant { .. } => "COUNTY_NOT_A_TENANT",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Denied { .. } => "PERMISSION_DENIED",
            Self::NoUpstream { .. } => "NO_UPSTREAM",
            Self::RateLimited { .. } => "RATE_LIMITED",
        }
    }

    fn field_violations(&self) -> Vec<FieldViolation> {
        match self {
            Self::BadRequest(e) => vec![FieldViolation::new(e.field(), e.to_string())],
            _ => Vec::new(),
        }
    }
}

fn answer(status: &tonic::Status, override_http: Option<StatusCode>) -> HttpResponse {
    let (code, body) = status_to_http(status);
    let code = override_http
        .unwrap_or_else(|| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    HttpResponse::build(code).json(body)
}

fn refuse(err: &GatewayError) -> HttpResponse {
    let http = match err {
        GatewayError::MethodNotAllowed { .. } => Some(StatusCode::METHOD_NOT_ALLOWED),
        _ => None,
    };
    let mut response = answer(&err.to_status(), http);
    if let GatewayError::RateLimited { retry_after, .. } = err {
        // Whole seconds, rounded up: a client that waits this long finds a token.
        let secs = retry_after.as_millis().div_ceil(1000).max(1);
        if let Ok(value) = secs.to_string().parse() {
            response
                .headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, value);
        }
    }
    response
}

async fn limit(
    gateway: &Gateway,
    scope: &'static str,
    key: String,
    limit: limits::Limit,
) -> Result<(), GatewayError> {
    match gateway.limiter.admit(&key, limit).await {
        limits::Admission::Admitted => Ok(()),
        limits::Admission::Limited(retry_after) => {
            pdp_kit::telemetry::metrics::GATEWAY_RATE_LIMITED
                .with_label_values(&[scope])
                .inc();
            Err(GatewayError::RateLimited { scope, retry_after })
        }
    }
}

async fn openapi_json(document: web::Data<serde_json::Value>) -> HttpResponse {
    HttpResponse::Ok().json(document.get_ref())
}

/// The province and its cities: codes and names, public.
async fn list_tenants(gateway: web::Data<Gateway>) -> HttpResponse {
    let tenants: Vec<_> = gateway.tenants.all().collect();
    HttpResponse::Ok().json(serde_json::json!({ "tenants": tenants }))
}

async fn proxy(
    request: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
) -> HttpResponse {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        // A client's id goes into logs and records: plain characters only, or one of ours.
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = trace::server_span(&request, &request_id);
    answer_and_record(request, payload, gateway, request_id, started, span.clone())
        .instrument(span)
        .await
}

/// Answers a request and records it: what [`proxy`] does within the request's span.
async fn answer_and_record(
    request: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
    request_id: String,
    started: Instant,
    span: tracing::Span,
) -> HttpResponse {
    let mut outcome = Outcome {
        caller: None,
        // Until a route names it, the tenant is what the path says, if it is one.
        tenant: request
            .path()
            .strip_prefix("/api/v1/tenants/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|code| code.parse().ok())
            .filter(|code| gateway.tenants.get(code).is_some()),
        operation: unrouted_operation(request.method().as_str(), request.path()),
        decision: Decision::Refused,
        client: client::address(&request, &gateway.trusted_proxies),
        unrecorded: false,
        routed: false,
    };
    let mut response =
        route_and_forward(&request, payload, &gateway, &request_id, &mut outcome).await;
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    let status = response.status().as_u16();
    let metric_operation = if outcome.routed {
        outcome.operation.as_str()
    } else {
        "unrouted"
    };
    pdp_kit::telemetry::metrics::GATEWAY_REQUESTS
        .with_label_values(&[
            metric_operation,
            pdp_kit::telemetry::metrics::status_class(status),
        ])
        .observe(started.elapsed().as_secs_f64());
    trace::answered(
        &span,
        status,
        outcome.tenant.as_ref().map(TenantCode::as_str),
        outcome.decision.as_str(),
    );
    if outcome.unrecorded {
        // Refused by the client address's limit before anything was worth recording: a flood
        // must not fill the audit trail. The refusals are counted instead.
        pdp_kit::telemetry::metrics::UNRECORDED_REFUSALS.inc();
        return response;
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        request_id = %request_id,
        operation = %outcome.operation,
        status = response.status().as_u16(),
        latency_ms,
        "api request"
    );
    let logged_id = request_id.clone();
    let record = AuditRecord {
        time: chrono::Utc::now(),
        request_id,
        // The trace the request's span belongs to; without an exporter, the caller's own.
        trace_id: pdp_kit::telemetry::trace_id(&span).or_else(|| {
            request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split('-').nth(1))
                .map(str::to_string)
        }),
        subject: outcome
            .caller
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |c| c.subject.clone()),
        organization: outcome
            .caller
            .as_ref()
            .map_or_else(String::new, |c| c.organization.clone()),
        tenant: outcome
            .tenant
            .unwrap_or_else(|| gateway.tenants.province().clone()),
        operation: outcome.operation,
        decision: outcome.decision,
        status: response.status().as_u16(),
        latency_ms,
        client_address: outcome
            .caller
            .is_none()
            .then(|| outcome.client.map(|a| a.to_string()))
            .flatten(),
    };
    // The change a service made is recorded in the same transaction as the change; every other
    // answer (a read, a refusal) waits for the gateway's own record, or is not given.
    let changed = outcome.decision == Decision::Allow
        && request.method() != actix_web::http::Method::GET
        && response.status().is_success();
    match gateway.audit.record(record).await {
        Ok(()) => response,
        Err(err) if changed => {
            tracing::error!(request_id = %logged_id, error = %err, "{CHANGE_UNRECORDED}");
            response
        }
        Err(err) => {
            tracing::error!(request_id = %logged_id, error = %err, "{UNANSWERED}");
            answer(
                &tonic::Status::unavailable(format!("{err}; nothing was done, try again")),
                None,
            )
        }
    }
}

const CHANGE_UNRECORDED: &str =
    "the gateway's record of a completed change was not written; the service recorded the change";
const UNANSWERED: &str = "answering 503: no request is answered without its record";

/// What the audit record needs to know of how a request went.
struct Outcome {
    caller: Option<Identity>,
    tenant: Option<TenantCode>,
    operation: String,
    decision: Decision,
    /// The client's address, as [`client::address`] tells.
    client: Option<std::net::IpAddr>,
    /// Refused by the address's limit: counted, not recorded.
    unrecorded: bool,
    /// A route matched: `operation` names it (and may label a metric).
    routed: bool,
}

/// How long a path or method an audit record keeps of a request that matched no route.
pub const RECORDED_PATH_CHARS: usize = 200;
const RECORDED_METHOD_CHARS: usize = 16;

/// `METHOD path` of a request no route matched, each cut to a stated length: what its audit record
/// keeps (a matched request records its route's operation instead).
fn unrouted_operation(method: &str, path: &str) -> String {
    format!(
        "{} {}",
        cut(method, RECORDED_METHOD_CHARS),
        cut(path, RECORDED_PATH_CHARS)
    )
}

/// `text` cut to `max` characters, saying how much was left out.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…(+{} bytes)", &text[..end], text.len() - end),
        None => text.to_string(),
    }
}

/// How long a request's body may take to arrive once the gateway reads it.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The request body, at most `max` bytes, within [`BODY_READ_TIMEOUT`]: 413 past the size, 408 past
/// the time.
async fn read_body(mut payload: web::Payload, max: usize) -> Result<web::Bytes, HttpResponse> {
    use futures::StreamExt as _;
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                answer(
                    &tonic::Status::invalid_argument(format!("request body: {e}")),
                    None,
                )
            })?;
            if body.len() + chunk.len() > max {
                return Err(HttpResponse::PayloadTooLarge().json(serde_json::json!({
                    "code": 3,
                    "message": format!("the request body is larger than {max} bytes"),
                })));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Err(HttpResponse::RequestTimeout().json(serde_json::json!({
            "code": 4,
            "message": format!(
                "the request body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        }))),
    }
}

/// Refuses a request nobody authenticated: charged to its client address first, so that a flood
/// of refusals meets the address's limit (429, unrecorded) before anything else.
async fn refuse_unauthenticated(
    gateway: &Gateway,
    outcome: &mut Outcome,
    err: &GatewayError,
) -> HttpResponse {
    match charge_address(gateway, outcome).await {
        Ok(()) => refuse(err),
        Err(limited) => limited,
    }
}

/// Charges traffic that is not authenticated to its client address; `Err` (429) when over.
async fn charge_address(gateway: &Gateway, outcome: &mut Outcome) -> Result<(), HttpResponse> {
    let key = match outcome.client {
        Some(address) => format!("address:{address}"),
        None => "address:unknown".to_string(),
    };
    match limit(gateway, "address", key, gateway.subject_limit).await {
        Ok(()) => Ok(()),
        Err(e) => {
            outcome.unrecorded = true;
            Err(refuse(&e))
        }
    }
}

async fn route_and_forward(
    request: &HttpRequest,
    payload: web::Payload,
    gateway: &Gateway,
    request_id: &str,
    outcome: &mut Outcome,
) -> HttpResponse {
    let path = request.path();
    let (route, vars) = match gateway.routes.resolve(request.method(), path) {
        Resolution::Found(route, vars) => (route, vars),
        Resolution::MethodNotAllowed(allowed) => {
            if let Err(limited) = charge_address(gateway, outcome).await {
                return limited;
            }
            let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            let mut response = refuse(&GatewayError::MethodNotAllowed {
                method: request.method().to_string(),
                allowed: allowed.join(", "),
            });
            if let Ok(value) = allowed.join(", ").parse() {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::ALLOW, value);
            }
            return response;
        }
        Resolution::NotFound => {
            let err = GatewayError::NoRoute {
                method: request.method().to_string(),
                path: cut(path, RECORDED_PATH_CHARS),
            };
            return refuse_unauthenticated(gateway, outcome, &err).await;
        }
    };
    let operation = route.operation();
    trace::matched(route);
    outcome.operation = operation.to_string();
    outcome.routed = true;
    let tenant = match tenant_of(&vars) {
        Ok(t) if gateway.tenants.get(&t).is_some() => t,
        Ok(t) => {
            outcome.tenant = None;
            let err = not_a_tenant(&gateway.tenants, &t);
            return refuse_unauthenticated(gateway, outcome, &err).await;
        }
        Err(e) => return refuse_unauthenticated(gateway, outcome, &e).await,
    };
    outcome.tenant = Some(tenant.clone());

    // Only authenticated traffic is charged to the tenant (and to its subject): a flood of bad
    // tokens is charged to its address and cannot starve the tenant's real users.
    if route.is_public() {
        if let Err(limited) = charge_address(gateway, outcome).await {
            return limited;
        }
    } else {
        match gateway
            .authenticator
            .authenticate(request, &tenant)
            .and_then(|identity| at_home(&gateway.tenants, identity))
        {
            Ok(identity) => outcome.caller = Some(identity),
            Err(reason) => {
                let err = GatewayError::Unauthenticated(reason);
                return refuse_unauthenticated(gateway, outcome, &err).await;
            }
        }
    }
    if let Some(caller) = &outcome.caller {
        if let Err(e) = limit(
            gateway,
            "tenant",
            format!("tenant:{tenant}"),
            gateway.tenant_limit,
        )
        .await
        {
            return refuse(&e);
        }
        let who = format!("subject:{}", caller.subject);
        if let Err(e) = limit(gateway, "subject", who, gateway.subject_limit).await {
            return refuse(&e);
        }
    }
    let allowed = gateway.authorizer.allows(
        outcome.caller.as_ref(),
        &tenant,
        operation,
        Action::of(request.method()),
    );
    outcome.decision = if allowed {
        Decision::Allow
    } else {
        Decision::Deny
    };
    if !allowed {
        return refuse(&GatewayError::Denied {
            operation: operation.to_string(),
            tenant: tenant.to_string(),
        });
    }

    let metadata = outgoing_metadata(
        gateway,
        outcome.caller.as_ref(),
        outcome.client,
        &tenant,
        request_id,
    );
    if matches!(route.body, BodyBinding::Stream(_)) {
        return forward_stream(request, payload, gateway, route, &vars, &tenant, metadata).await;
    }
    // Only now, with the caller known and allowed, is the body read: a stranger cannot hold a
    // connection open by trickling one in, nor make the gateway buffer it.
    let body = match read_body(payload, gateway.max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let body = &body[..];
    // A cross-site form posts text/plain without a preflight: only JSON is read as a body.
    if !body.iter().all(u8::is_ascii_whitespace) {
        let kind = request
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = kind.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return refuse(&GatewayError::BadRequest(
                transcode::message::TranscodeError::NotJson(kind.to_string()),
            ));
        }
    }
    let message = match request_message(route, &vars, request.query_string(), body) {
        Ok(m) => m,
        Err(e) => return refuse(&GatewayError::BadRequest(e)),
    };
    let service = route.service();
    let Some(upstream) = gateway.upstreams.upstream(&tenant, service) else {
        return refuse(&GatewayError::NoUpstream {
            service: service.to_string(),
            tenant: tenant.to_string(),
        });
    };
    let retried = match claim_idempotency(request, gateway, outcome, &tenant, operation, body).await
    {
        Ok(claimed) => claimed,
        Err(answered) => return answered,
    };
    let reply = transcode::call(
        &upstream,
        route,
        message,
        metadata,
        gateway.upstream_timeout,
    )
    .await;
    if retried.is_none()
        && let Ok(body) = &reply
        && let Some(page) = raw_answer(body)
    {
        return page;
    }
    let (status, json) = reply_json(reply);
    if let Some((key, fingerprint)) = retried {
        // A failure of ours is not kept: the retry runs again.
        let kept = (status < 500).then(|| idempotency::Answer {
            status,
            body: json.clone(),
        });
        gateway.idempotency.complete(&key, &fingerprint, kept).await;
    }
    json_answer(status, json)
}

/// Content types a cross-site form sends without a preflight: never a streamed body.
const FORM_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

/// Forwards a streamed body to its client-streaming RPC: the first message carries the path's
/// variables, each next one the body's next piece as it arrives, so the gateway holds a few
/// pieces at a time however large the upload. A piece must arrive within [`BODY_READ_TIMEOUT`] of
/// the last and the whole stay within `max_upload_bytes`; past either, or when the client goes
/// away, the call is dropped: the service sees its stream break and keeps nothing.
async fn forward_stream(
    request: &HttpRequest,
    mut payload: web::Payload,
    gateway: &Gateway,
    route: &Route,
    vars: &[(String, String)],
    tenant: &TenantCode,
    metadata: MetadataMap,
) -> HttpResponse {
    use futures::StreamExt as _;
    use prost_reflect::{DynamicMessage, Kind, Value};
    let kind = request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let essence = kind
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() || FORM_TYPES.contains(&essence.as_str()) {
        return refuse(&GatewayError::BadRequest(TranscodeError::NotStreamable(
            kind,
        )));
    }
    let first = match request_message(route, vars, request.query_string(), b"") {
        Ok(m) => m,
        Err(e) => return refuse(&GatewayError::BadRequest(e)),
    };
    let service = route.service();
    let Some(upstream) = gateway.upstreams.upstream(tenant, service) else {
        return refuse(&GatewayError::NoUpstream {
            service: service.to_string(),
            tenant: tenant.to_string(),
        });
    };
    let BodyBinding::Stream(field) = &route.body else {
        unreachable!("only a streamed route comes here")
    };
    let input = route.rpc.input();
    let field = input
        .get_field_by_name(field)
        .expect("checked when the route was built");
    let Kind::Message(body_kind) = field.kind() else {
        unreachable!("checked when the route was built")
    };
    let piece = |mut message: DynamicMessage, data: web::Bytes| {
        let mut body = DynamicMessage::new(body_kind.clone());
        body.set_field_by_name("content_type", Value::String(kind.clone()));
        body.set_field_by_name("data", Value::Bytes(data));
        message.set_field(&field, Value::Message(body));
        message
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<DynamicMessage>(4);
    let messages =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    // Spawned, the call would leave the request's span behind.
    let mut call = tokio::spawn(
        transcode::call_streaming(upstream, route.clone(), messages, metadata)
            .instrument(tracing::Span::current()),
    );
    // The first message names the call before any byte arrives.
    let _ = tx.send(piece(first, web::Bytes::new())).await;
    let mut sent = 0u64;
    // Why the body was not taken whole: its status and the HTTP code said for it.
    let refused = loop {
        tokio::select! {
            // The service may answer before the body ends: a line that does not fit.
            answered = &mut call => return streamed_answer(answered),
            next = tokio::time::timeout(BODY_READ_TIMEOUT, payload.next()) => match next {
                Err(_) => break Some((tonic::Status::deadline_exceeded(format!(
                    "no part of the body arrived for {} s; nothing was kept",
                    BODY_READ_TIMEOUT.as_secs()
                )), Some(StatusCode::REQUEST_TIMEOUT))),
                Ok(None) => break None,
                Ok(Some(Err(e))) => break Some((tonic::Status::invalid_argument(format!(
                    "the body broke off ({e}); nothing was kept"
                )), None)),
                Ok(Some(Ok(bytes))) => {
                    sent += bytes.len() as u64;
                    if sent > gateway.max_upload_bytes {
                        break Some((tonic::Status::invalid_argument(format!(
                            "the body is larger than {} bytes; nothing was kept",
                            gateway.max_upload_bytes
                        )), Some(StatusCode::PAYLOAD_TOO_LARGE)));
                    }
                    // Fails only when the call ended: its answer comes from `call` next.
                    let _ = tx.send(piece(DynamicMessage::new(input.clone()), bytes)).await;
                }
            },
        }
    };
    if let Some((status, http)) = refused {
        // Dropping the call resets its stream: the service discards what it received.
        call.abort();
        return answer(&status, http);
    }
    // The whole body is sent; the service writes its last part and answers.
    drop(tx);
    match tokio::time::timeout(gateway.upstream_timeout, &mut call).await {
        Ok(answered) => streamed_answer(answered),
        Err(_) => {
            call.abort();
            answer(
                &tonic::Status::deadline_exceeded(format!(
                    "the service did not answer within {} ms of the body's end",
                    gateway.upstream_timeout.as_millis()
                )),
                None,
            )
        }
    }
}

/// The answer of a streamed call's task.
fn streamed_answer(
    answered: Result<Result<prost_reflect::DynamicMessage, tonic::Status>, tokio::task::JoinError>,
) -> HttpResponse {
    match answered {
        Ok(reply) => {
            let (status, json) = reply_json(reply);
            json_answer(status, json)
        }
        Err(e) => answer(
            &tonic::Status::internal(format!("the call stopped: {e}")),
            None,
        ),
    }
}

/// A reply that is a `google.api.HttpBody` (a printable page), answered as its own content
/// type. What it holds may carry text others wrote: no script runs, nothing else loads, and the
/// browser does not guess another type.
fn raw_answer(reply: &prost_reflect::DynamicMessage) -> Option<HttpResponse> {
    use prost_reflect::{ReflectMessage, Value};
    if reply.descriptor().full_name() != transcode::routes::HTTP_BODY {
        return None;
    }
    let content_type = match reply.get_field_by_name("content_type").as_deref() {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => "application/octet-stream".to_string(),
    };
    let data = match reply.get_field_by_name("data").as_deref() {
        Some(Value::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    Some(
        HttpResponse::Ok()
            .content_type(content_type)
            .insert_header((
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ))
            .insert_header(("x-content-type-options", "nosniff"))
            .body(data),
    )
}

/// A service's reply as the HTTP status and JSON body the gateway answers with.
fn reply_json(reply: Result<prost_reflect::DynamicMessage, tonic::Status>) -> (u16, Vec<u8>) {
    match reply {
        Ok(reply) => (200, response_json(&reply)),
        Err(status) => {
            let (code, body) = status_to_http(&status);
            (
                code,
                serde_json::to_vec(&body).expect("error bodies serialize"),
            )
        }
    }
}

fn json_answer(status: u16, body: Vec<u8>) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(body)
}

/// The longest `Idempotency-Key` taken.
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// For a write with an `Idempotency-Key`: claims the key (per tenant, caller and operation) and
/// answers at once when the same request completed before (its answer again), is still running
/// (409) or when the key was used for another request (422).
async fn claim_idempotency(
    request: &HttpRequest,
    gateway: &Gateway,
    outcome: &Outcome,
    tenant: &TenantCode,
    operation: &str,
    body: &[u8],
) -> Result<Option<(String, String)>, HttpResponse> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    if request.method() == actix_web::http::Method::GET {
        return Ok(None);
    }
    let key = value.to_str().ok().filter(|k| {
        !k.is_empty()
            && k.len() <= MAX_IDEMPOTENCY_KEY
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    });
    let Some(key) = key else {
        return Err(refuse(&GatewayError::BadRequest(TranscodeError::Field {
            field: "Idempotency-Key".into(),
            reason: format!("1 to {MAX_IDEMPOTENCY_KEY} letters, digits, `-`, `_`, `.` or `:`"),
        })));
    };
    let caller = match (&outcome.caller, outcome.client) {
        (Some(caller), _) => caller.subject.clone(),
        (None, Some(address)) => format!("anonymous@{address}"),
        (None, None) => "anonymous".into(),
    };
    let scoped = format!("{tenant}/{caller}/{operation}/{key}");
    let fingerprint = {
        use sha2::Digest as _;
        format!("{:x}", sha2::Sha256::digest(body))
    };
    use idempotency::Claim;
    let conflict = |http: StatusCode, message: &str| {
        answer(
            &tonic::Status::failed_precondition(message.to_string()),
            Some(http),
        )
    };
    // The claim lapses when the request can no longer be running: past the upstream timeout,
    // with a margin for the gateway's own work either side of the call.
    let running = gateway.upstream_timeout + Duration::from_secs(5);
    match gateway
        .idempotency
        .claim(&scoped, &fingerprint, running)
        .await
    {
        Ok(Claim::New) => Ok(Some((scoped, fingerprint))),
        Ok(Claim::Replay(first)) => {
            let mut replay = json_answer(first.status, first.body);
            replay.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
                actix_web::http::header::HeaderValue::from_static("true"),
            );
            Err(replay)
        }
        Ok(Claim::Running) => Err(conflict(
            StatusCode::CONFLICT,
            "a request with this Idempotency-Key is still running; retry shortly",
        )),
        Ok(Claim::Mismatch) => Err(conflict(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was used for a different request",
        )),
        Err(err) => {
            tracing::error!(error = %err, "idempotency keys unavailable");
            Err(answer(
                &tonic::Status::unavailable(
                    "retries cannot be told apart now (Idempotency-Key); nothing was done",
                ),
                None,
            ))
        }
    }
}

/// The caller's own tenant must be one, and its organization's division one the tenant serves
/// (a county's organization belongs to its city's tenant, 第十五条; the province's may sit
/// anywhere in the province).
fn at_home(tenants: &tenants::Tenants, identity: Identity) -> Result<Identity, String> {
    if tenants.get(&identity.tenant).is_none() {
        return Err(format!(
            "the token's tenant: {}",
            not_a_tenant(tenants, &identity.tenant)
        ));
    }
    if let Some(division) = &identity.division {
        let serving = tenants.serving(division).map(|t| &t.code);
        let inside = serving == Some(&identity.tenant)
            || (identity.tenant.is_province() && serving.is_some());
        if !inside {
            return Err(format!(
                "the token's division {division} does not lie in its tenant {} (第十五条)",
                identity.tenant
            ));
        }
    }
    Ok(identity)
}

fn not_a_tenant(tenants: &tenants::Tenants, code: &TenantCode) -> GatewayError {
    match tenants.county(code) {
        Some(county) => GatewayError::CountyNotATenant {
            county: county.code.to_string(),
            name: county.name_zh.clone(),
            city: county.city.to_string(),
            city_name: tenants
                .get(&county.city)
                .map(|city| city.name_zh.clone())
                .unwrap_or_default(),
        },
        None => GatewayError::UnknownTenant(code.to_string()),
    }
}

fn tenant_of(vars: &[(String, String)]) -> Result<TenantCode, GatewayError> {
    let raw = vars
        .iter()
        .find(|(field, _)| field == "tenant")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    raw.parse()
        .map_err(|_| GatewayError::UnknownTenant(raw.to_string()))
}

/// The identity the service may trust (signed) and the request id (the call adds its trace
/// context).
fn outgoing_metadata(
    gateway: &Gateway,
    caller: Option<&Identity>,
    client: Option<std::net::IpAddr>,
    tenant: &TenantCode,
    request_id: &str,
) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    // Public routes still reach the service with a signed identity: the anonymous public of
    // the tenant, so that services refuse every unsigned call without exception. Its subject
    // names the client's address, so that a service can bound what one anonymous client files.
    let public = Identity {
        subject: match client {
            Some(address) => format!("anonymous@{address}"),
            None => "anonymous".into(),
        },
        organization: "public".into(),
        roles: vec!["public".into()],
        tenant: tenant.clone(),
        division: None,
    };
    gateway
        .identity_key
        .sign_into(caller.unwrap_or(&public), &mut metadata);
    if let Ok(value) = request_id.parse() {
        metadata.insert("x-request-id", value);
    }
    metadata
}
