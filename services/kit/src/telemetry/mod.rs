//! Logs, traces and metrics.
//!
//! Logs are `tracing` events: readable text in dev, JSON lines in a cluster. When an OTLP
//! endpoint is configured, spans are exported as OpenTelemetry traces. W3C trace context crosses
//! every boundary pdp has: HTTP headers, gRPC metadata and Kafka record headers.

pub mod grpc;
pub mod health;
pub mod metrics;

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Mode, TelemetryConfig};

/// Whether spans leave the process (an OTLP endpoint is configured). The request path's spans
/// (gateway, gRPC, store, publish) are made only then: without an exporter nobody reads them,
/// and making them cost the gateway about 17 µs of CPU per request (the `pdp dev` bench).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// See [`EXPORTING`].
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Keeps the trace exporter alive; dropping it flushes the spans not yet sent.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("trace exporter did not shut down cleanly: {err}");
        }
    }
}

/// Crates whose log messages may quote the records they compute on (Ballista logs a failed job
/// with the engine's message, and a failed cast names its value): silenced, so that no record
/// reaches a log shipped out of the platform. A `telemetry.log_level` that names one of them
/// turns it back on, for a diagnosis.
const DATA_QUOTING_TARGETS: [&str; 3] =
    ["ballista_core", "ballista_executor", "ballista_scheduler"];

/// Installs the global subscriber. Call once, at the start of a command.
pub fn init(config: &TelemetryConfig, mode: Mode) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut filter = EnvFilter::try_new(&config.log_level)
        .map_err(|e| anyhow::anyhow!("telemetry.log_level `{}`: {e}", config.log_level))?;
    for target in DATA_QUOTING_TARGETS {
        if !config.log_level.contains(target) {
            filter = filter.add_directive(format!("{target}=off").parse()?);
        }
    }
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => mode == Mode::Cluster,
    };
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };

    let mut guard = TelemetryGuard::default();
    let otel = match &config.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(config.service_name.clone())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("pdp");
            EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
            opentelemetry::global::set_tracer_provider(provider.clone());
            guard.provider = Some(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        None => None,
    };

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("telemetry already initialised: {e}"))?;
    Ok(guard)
}

// === propagation ===

/// Writes the current span's trace context into a carrier (when spans are exported).
pub fn inject_current(carrier: &mut dyn Injector) {
    if !exporting() {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, carrier);
}

/// Makes `span` a child of the trace context found in a carrier, if any.
pub fn adopt_parent(span: &tracing::Span, carrier: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(carrier);
    let _ = span.set_parent(parent);
}

/// Links kept on one span of a batch: a trace viewer shows a handful.
const LINKS: usize = 32;

/// Links `span` to the changes whose events a batch carries (their record headers): a batch has
/// many origins, so none is its parent.
pub fn link_origins<'a>(
    span: &tracing::Span,
    traces: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
) {
    use opentelemetry::trace::TraceContextExt as _;
    for trace in traces.into_iter().take(LINKS) {
        let context = TraceContextPropagator::new().extract(&RecordHeaders(trace));
        let origin = context.span().span_context().clone();
        if origin.is_valid() {
            span.add_link(origin);
        }
    }
}

/// The trace `span` belongs to, as 32 hex digits, when traces are exported.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    let context = span.context();
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid().then(|| ids.trace_id().to_string())
}

/// Renames `span` once what it is became known (the route a request matched): a name recorded
/// as `otel.name` after the span started does not reach the exported span.
pub fn rename(span: &tracing::Span, name: String) {
    use opentelemetry::trace::TraceContextExt as _;
    span.context().span().update_name(name);
}

/// A span for work done on behalf of whatever the caller is tracing, or none when nothing is:
/// background pollers (the relay, schedulers) would otherwise start a root span per poll.
pub fn child_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if !exporting() || tracing::Span::current().is_none() {
        tracing::Span::none()
    } else {
        make()
    }
}

/// HTTP headers (hyper, tonic's transport) as a carrier.
#[derive(Debug)]
pub struct HttpHeaders<'a>(pub &'a mut http::HeaderMap);

impl Injector for HttpHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// actix-web's request headers (the gateway's HTTP side) as a carrier to read.
#[derive(Debug)]
pub struct ActixHeaders<'a>(pub &'a actix_web::http::header::HeaderMap);

impl Extractor for ActixHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// gRPC metadata as a carrier.
#[derive(Debug)]
pub struct GrpcMetadata<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for GrpcMetadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

impl Extractor for GrpcMetadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Event record headers (Kafka, the embedded log) carry the context as plain string headers.
#[derive(Debug)]
pub struct RecordHeaders<'a>(pub &'a BTreeMap<String, String>);

/// Write side of the record headers.
#[derive(Debug)]
pub struct RecordHeadersMut<'a>(pub &'a mut BTreeMap<String, String>);

impl Injector for RecordHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

impl Extractor for RecordHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    fn remote_context() -> opentelemetry::Context {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(span)
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn trace_context_crosses_http_grpc_and_record_headers() {
        let propagator = TraceContextPropagator::new();
        let context = remote_context();

        let mut headers = http::HeaderMap::new();
        propagator.inject_context(&context, &mut HttpHeaders(&mut headers));
        assert_eq!(headers["traceparent"], TRACEPARENT);
        let back = propagator.extract(&HttpHeaders(&mut headers));
        assert_eq!(
            back.span().span_context().trace_id(),
            context.span().span_context().trace_id()
        );

        let mut metadata = tonic::metadata::MetadataMap::new();
        propagator.inject_context(&context, &mut GrpcMetadata(&mut metadata));
        assert_eq!(metadata.get("traceparent").unwrap(), TRACEPARENT);
        let back = propagator.extract(&GrpcMetadata(&mut metadata));
        assert!(back.span().span_context().is_remote());

        let mut record = BTreeMap::new();
        propagator.inject_context(&context, &mut RecordHeadersMut(&mut record));
        assert_eq!(record["traceparent"], TRACEPARENT);
        let back = propagator.extract(&RecordHeaders(&record));
        assert_eq!(
            back.span().span_context().span_id(),
            context.span().span_context().span_id()
        );
    }
}
