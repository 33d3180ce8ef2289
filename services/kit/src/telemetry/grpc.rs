//! What every gRPC call a service serves leaves behind: a server span continuing the caller's
//! trace (OpenTelemetry RPC conventions), and RED metrics, one histogram by method and status
//! code (its count is the rate, its `code` the errors, its buckets the duration).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::Instrument as _;

use super::metrics::GRPC_SERVER;

/// Traces and measures each call of the service it wraps
/// (`Server::builder().layer(GrpcTelemetryLayer)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTelemetryLayer;

impl<S> tower::Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
}

/// `pdp.planning.v1.PlanService` and `ApprovePlan` of `pdp.planning.v1.PlanService/ApprovePlan`:
/// the `rpc.service` and `rpc.method` of a span.
pub fn service_and_method(operation: &str) -> (&str, &str) {
    operation.split_once('/').unwrap_or((operation, ""))
}

/// The server span of a call to `path` (`/pdp.planning.v1.PlanService/ApprovePlan`), child of
/// the trace context the caller sent. The request id is the gateway's (or the caller's own,
/// which is all the service knows).
fn server_span(path: &str, headers: &mut http::HeaderMap) -> tracing::Span {
    if !super::exporting() {
        return tracing::Span::none();
    }
    let operation = path.trim_start_matches('/');
    let (service, method) = service_and_method(operation);
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "grpc",
        otel.name = %operation,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        pdp.request_id = %request_id,
    );
    super::adopt_parent(&span, &super::HttpHeaders(headers));
    span
}

/// The status a response carries in its headers (an error answers trailers-only); a response
/// that goes on to a body is OK as far as its headers say. A method no route serves is counted
/// as `unimplemented`, so that a caller inventing paths cannot grow the series.
fn labels(path: &str, status: Option<&http::HeaderValue>) -> (String, tonic::Code) {
    let code = status
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
    let method = if code == tonic::Code::Unimplemented {
        "unimplemented".to_string()
    } else {
        path.to_string()
    };
    (method, code)
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcTelemetry<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let started = Instant::now();
        let span = server_span(&path, request.headers_mut());
        let answer = span.in_scope(|| self.inner.call(request));
        let recorded = span.clone();
        Box::pin(
            async move {
                let result = answer.await;
                let (method, code) = match &result {
                    Ok(response) => labels(&path, response.headers().get("grpc-status")),
                    // The transport failed under the call: no status reached the caller.
                    Err(_) => (path, tonic::Code::Unavailable),
                };
                record_status(&recorded, &method, code);
                GRPC_SERVER
                    .with_label_values(&[method.as_str(), format!("{code:?}").as_str()])
                    .observe(started.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

/// The outcome on the span: the status, and an error for the codes that mean the server failed
/// (a refusal of the caller's request is the service working).
fn record_status(span: &tracing::Span, method: &str, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i64);
    if method == "unimplemented" {
        // An invented path names no operation a trace should keep.
        super::rename(span, "unimplemented".into());
    }
    if failed(code) {
        span.record("otel.status_code", "error");
    }
}

/// The codes that mean the server failed, which a trace marks as errors; a refusal of the
/// caller's request (invalid, not found, denied, a missing step) is the service working.
pub fn failed(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_in_the_headers_is_the_code_and_an_unknown_method_is_one_series() {
        let path = "/pdp.planning.v1.PlanService/GetPlan";
        assert_eq!(labels(path, None), (path.to_string(), tonic::Code::Ok));
        let not_found = http::HeaderValue::from_static("5");
        assert_eq!(labels(path, Some(&not_found)).1, tonic::Code::NotFound);
        let unimplemented = http::HeaderValue::from_static("12");
        assert_eq!(
            labels("/made.up/Path", Some(&unimplemented)),
            ("unimplemented".to_string(), tonic::Code::Unimplemented)
        );
    }
}
