//! RED metrics of every gRPC method a service serves: one histogram by method and status code
//! (its count is the rate, its `code` the errors, its buckets the duration).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::metrics::GRPC_SERVER;

/// Measures each call of the service it wraps (`Server::builder().layer(GrpcMetricsLayer)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// The status a response carries in its headers (an error answers trailers-only); a response
/// that goes on to a body is OK as far as its headers say. A method no route serves is counted
/// as `unimplemented`, so that a caller inventing paths cannot grow the series.
fn labels(path: &str, status: Option<&http::HeaderValue>) -> (String, String) {
    let code = status
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
    let method = if code == tonic::Code::Unimplemented {
        "unimplemented".to_string()
    } else {
        path.to_string()
    };
    (method, format!("{code:?}"))
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            let (method, code) = match &result {
                Ok(response) => labels(&path, response.headers().get("grpc-status")),
                // The transport failed under the call: no status reached the caller.
                Err(_) => (path, "Unavailable".to_string()),
            };
            GRPC_SERVER
                .with_label_values(&[method.as_str(), code.as_str()])
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_in_the_headers_is_the_code_and_an_unknown_method_is_one_series() {
        let path = "/pdp.planning.v1.PlanService/GetPlan";
        assert_eq!(labels(path, None), (path.to_string(), "Ok".to_string()));
        let not_found = http::HeaderValue::from_static("5");
        assert_eq!(labels(path, Some(&not_found)).1, "NotFound");
        let unimplemented = http::HeaderValue::from_static("12");
        assert_eq!(
            labels("/made.up/Path", Some(&unimplemented)),
            ("unimplemented".to_string(), "Unimplemented".to_string())
        );
    }
}
