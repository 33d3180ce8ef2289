//! Prometheus metrics shared by every part of pdp, served at `/metrics`.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

pub static EVENTS_PUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pdp_events_published_total",
                "Events appended to the event log",
            ),
            &["topic"],
        )
        .expect("valid metric"),
    )
});

pub static EVENTS_APPLIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pdp_events_applied_total",
                concat!(
                    "Events a consumer received (outcome: applied, duplicate, skipped for a ",
                    "tenant another instance serves, or parked as a dead letter)"
                ),
            ),
            &["consumer", "outcome"],
        )
        .expect("valid metric"),
    )
});

/// A handler's failures that were tried again (a parked event counts its attempts here first).
pub static EVENTS_RETRIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pdp_events_retried_total",
                "Events a consumer's handler failed on and tried again, by consumer",
            ),
            &["consumer"],
        )
        .expect("valid metric"),
    )
});

/// Events waiting for a consumer in the partitions one of its members reads, by topic.
pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "pdp_consumer_lag",
                "Events not yet consumed in the partitions this process's member of a consumer \
                 group reads, by consumer and topic (sum over the replicas for the group)",
            ),
            &["consumer", "topic"],
        )
        .expect("valid metric"),
    )
});

/// Dead letters a consumer holds (see `dead_letter`): anything above 0 needs a person.
pub static DEAD_LETTERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "pdp_dead_letters",
                "Events a consumer parked after its retries (pdp events dead-letters lists them)",
            ),
            &["consumer"],
        )
        .expect("valid metric"),
    )
});

/// 1 from 1 December while next year's holidays are not loaded (see `calendar`).
pub static CALENDAR_NEXT_YEAR_MISSING: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "pdp_calendar_next_year_missing",
            "1 when it is December and the working-day calendar does not hold next year yet",
        )
        .expect("valid metric"),
    )
});

pub static OUTBOX_RELAYED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pdp_outbox_relayed_total",
                "Outbox rows published by the relay",
            ),
            &["store"],
        )
        .expect("valid metric"),
    )
});

pub static OUTBOX_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "pdp_outbox_pending",
                "Outbox rows not yet published, as last seen",
            ),
            &["store"],
        )
        .expect("valid metric"),
    )
});

/// Seconds the oldest unpublished outbox row has waited, as last seen: a relay that cannot
/// publish shows here before anything else.
pub static OUTBOX_OLDEST_AGE: LazyLock<prometheus::GaugeVec> = LazyLock::new(|| {
    register(
        prometheus::GaugeVec::new(
            Opts::new(
                "pdp_outbox_oldest_pending_age_seconds",
                "Age of the oldest outbox row not yet published (0 when none), as last seen",
            ),
            &["store"],
        )
        .expect("valid metric"),
    )
});

pub static OUTBOX_RELAY_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pdp_outbox_relay_failures_total",
                "Relay batches that failed (the event log or the store refused); retried",
            ),
            &["store"],
        )
        .expect("valid metric"),
    )
});

/// Every gRPC call a service served, by method and status code (see `telemetry::grpc`).
pub static GRPC_SERVER: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "pdp_grpc_server_duration_seconds",
                "gRPC calls served, by method and status code",
            ),
            &["method", "code"],
        )
        .expect("valid metric"),
    )
});

/// The gateway's audit records queued for the writer, as last seen.
pub static GATEWAY_AUDIT_QUEUE: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "pdp_gateway_audit_queue_depth",
            "Audit records waiting for the gateway's writer (requests wait for their commit)",
        )
        .expect("valid metric"),
    )
});

pub static GATEWAY_AUDIT_WRITE: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "pdp_gateway_audit_write_seconds",
                "Batches of audit records written (outcome: ok, or failed after retries: their \
                 requests were refused)",
            ),
            &["outcome"],
        )
        .expect("valid metric"),
    )
});

/// When the authorization policy and the grants were last loaded (Unix seconds): their age is
/// `time() - …`.
pub static GATEWAY_LOADED_AT: LazyLock<prometheus::GaugeVec> = LazyLock::new(|| {
    register(
        prometheus::GaugeVec::new(
            Opts::new(
                "pdp_gateway_loaded_timestamp_seconds",
                "When the gateway last loaded what it decides with (what: policy, grants)",
            ),
            &["what"],
        )
        .expect("valid metric"),
    )
});

/// Marks `what` (`policy`, `grants`) loaded now.
pub fn loaded(what: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    GATEWAY_LOADED_AT.with_label_values(&[what]).set(now);
}

pub static GATEWAY_RATE_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pdp_gateway_rate_limited_total",
                "Requests refused by a rate limit, by the limit's scope",
            ),
            &["scope"],
        )
        .expect("valid metric"),
    )
});

pub static GATEWAY_TOKEN_CACHE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pdp_gateway_token_cache_total",
                "Bearer tokens looked up in the verified-token cache (outcome: hit, miss)",
            ),
            &["outcome"],
        )
        .expect("valid metric"),
    )
});

pub static GATEWAY_UPSTREAM_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pdp_gateway_upstream_unavailable_total",
                "Calls the gateway could not deliver to a service (no connection), by upstream",
            ),
            &["upstream"],
        )
        .expect("valid metric"),
    )
});

/// Requests refused by their client address's rate limit before anything was recorded.
pub static UNRECORDED_REFUSALS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(
        prometheus::IntCounter::new(
            "pdp_gateway_unrecorded_refusals_total",
            "Requests refused by their client address's rate limit, counted instead of audited",
        )
        .expect("valid metric"),
    )
});

/// The method label of [`HTTP_REQUESTS`]: the methods pdp serves, every other one as `OTHER`, so
/// that a client inventing method names cannot grow the series without bound.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

pub static HTTP_REQUESTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new("pdp_http_request_duration_seconds", "HTTP requests served"),
            &["method", "status"],
        )
        .expect("valid metric"),
    )
});

/// Requests through the gateway by operation (the route's gRPC method; `unrouted` for a path no
/// route matches, so that invented paths are one series) and status class.
pub static GATEWAY_REQUESTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "pdp_gateway_request_duration_seconds",
                "Requests the gateway answered, by operation and status class (2xx … 5xx)",
            ),
            &["operation", "status_class"],
        )
        .expect("valid metric"),
    )
});

/// `2xx` … `5xx`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        500.. => "5xx",
        400..=499 => "4xx",
        300..=399 => "3xx",
        _ => "2xx",
    }
}

// === the domain, as a bureau's operations desk watches it (refreshed by the owning service) ===

fn tenant_gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

pub static PLANS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    tenant_gauge(
        "pdp_plans",
        "Authorization plans by tenant and state",
        &["tenant", "state"],
    )
});

pub static SELECTIONS_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    tenant_gauge(
        "pdp_selections_open",
        "Selections announced and not yet concluded, by tenant",
        &["tenant"],
    )
});

pub static NOTICES_ENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    tenant_gauge(
        "pdp_notices_ending",
        "Public notices (announcements, results) whose period ends within \
         telemetry.domain_window_days, by tenant",
        &["tenant"],
    )
});

pub static AGREEMENTS_EXPIRING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    tenant_gauge(
        "pdp_agreements_expiring",
        "Agreements in force whose term ends within telemetry.domain_window_days, by tenant",
        &["tenant"],
    )
});

pub static OVERDUE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    tenant_gauge(
        "pdp_overdue",
        "Work past its deadline and still open, by tenant and kind (request_review, \
         quality_ticket)",
        &["tenant", "what"],
    )
});

/// The text exposition of every registered metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&REGISTRY.gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("exposition is UTF-8")
}
