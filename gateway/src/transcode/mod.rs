//! REST/JSON to gRPC, generic over every RPC with a `google.api.http` rule: routes come from the
//! descriptor set, messages are dynamic, and one client calls any method.

pub mod codec;
pub mod message;
pub mod routes;
pub mod template;

use std::time::Duration;

use prost_reflect::DynamicMessage;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tracing::Instrument as _;

use crate::upstream::Upstream;

use codec::DynamicCodec;
use routes::Route;

/// Calls `route`'s RPC on `upstream` with `message` and `metadata`, within `timeout`.
pub async fn call(
    upstream: &Upstream,
    route: &Route,
    message: DynamicMessage,
    metadata: MetadataMap,
    timeout: Duration,
) -> Result<DynamicMessage, Status> {
    let path = route.grpc_path().clone();
    let span = crate::trace::client_span(route, upstream.host());
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = traced(metadata, &span);
    // The deadline is the gateway's own: when it passes, dropping the call resets the stream
    // and the service stops the work.
    let exchange = async {
        client(upstream)
            .await?
            .unary(request, path, DynamicCodec::new(route.rpc.output()))
            .await
    };
    let answer = match tokio::time::timeout(timeout, exchange.instrument(span.clone())).await {
        Ok(response) => response.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "upstream did not answer within {} ms",
            timeout.as_millis()
        ))),
    };
    crate::trace::returned(&span, &answer);
    answer
}

/// `metadata` with the trace context of the call's client span.
fn traced(mut metadata: MetadataMap, span: &tracing::Span) -> MetadataMap {
    span.in_scope(|| {
        pdp_kit::telemetry::inject_current(&mut pdp_kit::telemetry::GrpcMetadata(&mut metadata));
    });
    metadata
}

/// Calls `route`'s client-streaming RPC on `upstream` with the messages of `messages`, as they
/// come. No deadline of its own: the caller bounds how long the body may take and drops this
/// call (resetting the stream, so the service discards what it received) to abort it.
pub async fn call_streaming<S>(
    upstream: Upstream,
    route: Route,
    messages: S,
    metadata: MetadataMap,
) -> Result<DynamicMessage, Status>
where
    S: futures::Stream<Item = DynamicMessage> + Send + 'static,
{
    let span = crate::trace::client_span(&route, upstream.host());
    let mut request = tonic::Request::new(messages);
    *request.metadata_mut() = traced(metadata, &span);
    let path = route.grpc_path().clone();
    let answer = async {
        client(&upstream)
            .await?
            .client_streaming(request, path, DynamicCodec::new(route.rpc.output()))
            .await
    }
    .instrument(span.clone())
    .await
    .map(tonic::Response::into_inner);
    crate::trace::returned(&span, &answer);
    answer
}

/// A gRPC client of `upstream`, ready to call.
async fn client(
    upstream: &Upstream,
) -> Result<tonic::client::Grpc<crate::upstream::Connection>, Status> {
    let unavailable = |e: &dyn std::fmt::Display| {
        pdp_kit::telemetry::metrics::GATEWAY_UPSTREAM_ERRORS
            .with_label_values(&[upstream.origin().to_string().as_str()])
            .inc();
        Status::unavailable(format!("upstream unavailable: {e}"))
    };
    let connection = upstream.connection().await.map_err(|e| unavailable(&e))?;
    let mut grpc = tonic::client::Grpc::with_origin(connection, upstream.origin().clone());
    grpc.ready().await.map_err(|e| unavailable(&e))?;
    Ok(grpc)
}
