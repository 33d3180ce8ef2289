//! The gateway's part of a request's trace (OpenTelemetry HTTP and RPC conventions): a server
//! span that continues the caller's W3C `traceparent` or starts a trace, named by the route
//! template once one matches, and a client span for the gRPC call it makes, whose context the
//! call carries to the service.
//!
//! Attributes name the tenant, the operation, the request id and the outcome; never the caller's
//! identity, a token, a path's values or a body.

use actix_web::HttpRequest;
use tracing::field::Empty;

use crate::transcode::routes::Route;

/// The server span of one request, before any route is known.
pub fn server_span(request: &HttpRequest, request_id: &str) -> tracing::Span {
    if !pdp_kit::telemetry::exporting() {
        return tracing::Span::none();
    }
    let method = request.method().as_str();
    let span = tracing::info_span!(
        "http",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = Empty,
        http.response.status_code = Empty,
        url.scheme = request.connection_info().scheme(),
        network.protocol.version = ?request.version(),
        pdp.request_id = request_id,
        pdp.tenant = Empty,
        pdp.operation = Empty,
        pdp.decision = Empty,
    );
    pdp_kit::telemetry::adopt_parent(&span, &pdp_kit::telemetry::ActixHeaders(request.headers()));
    span
}

/// Names the current server span by the route that matched: `POST /api/v1/…/plans/{id}:approve`.
pub fn matched(route: &Route) {
    if !pdp_kit::telemetry::exporting() {
        return;
    }
    let span = tracing::Span::current();
    let template = route.template.to_string();
    pdp_kit::telemetry::rename(&span, format!("{} {template}", route.method));
    span.record("http.route", template.as_str());
    span.record("pdp.operation", route.operation());
}

/// The outcome on the server span: an answer of 5xx is an error of ours; 4xx is the caller's.
pub fn answered(span: &tracing::Span, status: u16, tenant: Option<&str>, decision: &str) {
    span.record("http.response.status_code", status);
    if let Some(tenant) = tenant {
        span.record("pdp.tenant", tenant);
    }
    span.record("pdp.decision", decision);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// The client span of the gRPC call `route` makes to `upstream`; its context goes in the call's
/// metadata (inject it while this span is entered).
pub fn client_span(route: &Route, upstream: &str) -> tracing::Span {
    if !pdp_kit::telemetry::exporting() {
        return tracing::Span::none();
    }
    let operation = route.operation();
    let (service, method) = pdp_kit::telemetry::grpc::service_and_method(operation);
    tracing::info_span!(
        "grpc",
        otel.name = operation,
        otel.kind = "client",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
        server.address = upstream,
    )
}

/// The call's status on its client span.
pub fn returned<T>(span: &tracing::Span, answer: &Result<T, tonic::Status>) {
    let code = answer
        .as_ref()
        .map_or_else(tonic::Status::code, |_| tonic::Code::Ok);
    span.record("rpc.grpc.status_code", code as i64);
    if pdp_kit::telemetry::grpc::failed(code) {
        span.record("otel.status_code", "error");
    }
}
