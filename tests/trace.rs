//! One request, one trace: `pdp dev` exports its spans to an OTLP/gRPC receiver running in this
//! test (the collector's trace service from the `opentelemetry-proto` definitions, on tonic), a
//! Harbin plan's approval is sent through the gateway with a caller's `traceparent`, and what
//! arrives must be one connected trace from the gateway's server span through the gRPC call and
//! the store's transaction to the province's filing consumer applying the event it wrote. The
//! plan gauge of the operations desk counts the plan in force.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

mod support;
use support::*;

/// Every span the receiver was sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves the receiver on a free port, on a runtime of its own; the port.
fn start_receiver(receiver: Receiver) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    port
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn kind(span: &Span) -> SpanKind {
    SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified)
}

/// The spans of the trace, as a tree under the caller's span, one line each.
fn tree(spans: &[Span], root: &[u8]) -> String {
    let mut children: HashMap<&[u8], Vec<&Span>> = HashMap::new();
    for span in spans {
        children.entry(&span.parent_span_id).or_default().push(span);
    }
    fn walk(children: &HashMap<&[u8], Vec<&Span>>, at: &[u8], depth: usize, out: &mut String) {
        let mut under = children.get(at).cloned().unwrap_or_default();
        under.sort_by_key(|s| s.start_time_unix_nano);
        for span in under {
            let group = attribute(span, "messaging.consumer.group.name")
                .map(|g| format!(" by {g}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{}{} [{:?}]{group}\n",
                "  ".repeat(depth),
                span.name,
                kind(span)
            ));
            walk(children, &span.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(&children, root, 0, &mut out);
    out
}

#[test]
fn a_plan_approval_is_one_trace_from_the_gateway_to_the_provinces_filing() {
    let receiver = Receiver::default();
    let otlp = start_receiver(receiver.clone());
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let provider = token(dir, "230100", "provider", "harbin-transport");
    let bureau = token(dir, "230100", "city_bureau", "harbin-data-bureau");
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{otlp}");
    let mut child = start_dev_with(
        data.path(),
        port,
        &[
            ("PDP_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            // Spans go out every 200 ms rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            // The gauges are counted every second.
            ("PDP_INSTANCE__SCHEDULER_INTERVAL_SECS", "1"),
        ],
    );
    wait_ready(&mut child, port);
    let h = "/api/v1/tenants/230100";
    let resource = registered_resource(port, h, &provider);
    let (status, plan) = call(
        port,
        "POST",
        &format!("{h}/plans"),
        Some(&bureau),
        Some(&plan_body(&resource)),
    );
    assert_eq!(status, 200, "{plan}");
    let p = format!("{h}/plans/{}", plan["id"].as_str().unwrap());
    let today = today_in_shanghai();
    let [submit, review, decide, (_, approval)] = approval_steps(&today);
    for (verb, body) in [submit, review, decide] {
        let (status, answer) = call(
            port,
            "POST",
            &format!("{p}:{verb}"),
            Some(&bureau),
            Some(&body),
        );
        assert_eq!(status, 200, ":{verb} {answer}");
    }

    // The approval, as a front end that traces its own work sends it.
    let trace_hex = format!("{:032x}", rand::random::<u128>() | 1);
    let caller_hex = format!("{:016x}", rand::random::<u64>() | 1);
    let traceparent = format!("traceparent: 00-{trace_hex}-{caller_hex}-01\r\n");
    let (status, approved) = call_with(
        port,
        "POST",
        &format!("{p}:approve"),
        Some(&bureau),
        Some(&approval),
        &traceparent,
    );
    assert_eq!(status, 200, "{approved}");
    let trace_id = hex::decode(&trace_hex).unwrap();
    let caller = hex::decode(&caller_hex).unwrap();

    // The province's filing consumer applies the approval within the same trace.
    let filed = |spans: &[Span]| {
        spans.iter().any(|s| {
            kind(s) == SpanKind::Consumer
                && attribute(s, "messaging.consumer.group.name").as_deref()
                    == Some("planning-filings")
                && attribute(s, "pdp.outcome").as_deref() == Some("applied")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<Span> = receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        if filed(&spans) {
            // The other consumers of the event may still be on their way: a moment more.
            std::thread::sleep(Duration::from_millis(500));
            break receiver
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "the filing consumer's span did not arrive within 30 s; the trace so far:\n{}",
            tree(&spans, &caller)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let shown = tree(&spans, &caller);
    println!("the trace of a plan approval:\n{shown}");

    // Connected: every span's parent is the caller's span or another span of the trace.
    let ids: Vec<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
    for span in &spans {
        assert!(
            span.parent_span_id == caller || ids.contains(&span.parent_span_id.as_slice()),
            "{} has a parent outside the trace:\n{shown}",
            span.name
        );
    }
    // One root in our trace: the gateway's server span, named by its route template.
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == caller)
        .collect();
    assert_eq!(roots.len(), 1, "{shown}");
    let server = roots[0];
    assert_eq!(kind(server), SpanKind::Server, "{shown}");
    assert_eq!(
        server.name, "POST /api/v1/tenants/{tenant}/plans/{id}:approve",
        "{shown}"
    );
    assert_eq!(
        attribute(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attribute(server, "pdp.tenant").as_deref(), Some("230100"));
    assert_eq!(
        attribute(server, "pdp.operation").as_deref(),
        Some("pdp.planning.v1.PlanService/ApprovePlan")
    );
    let child_of = |parent: &Span, kind_wanted: SpanKind, name: &str| -> Span {
        spans
            .iter()
            .find(|s| {
                s.parent_span_id == parent.span_id && kind(s) == kind_wanted && s.name == name
            })
            .unwrap_or_else(|| panic!("no {name} under {}:\n{shown}", parent.name))
            .clone()
    };
    let client = child_of(
        server,
        SpanKind::Client,
        "pdp.planning.v1.PlanService/ApprovePlan",
    );
    let service = child_of(
        &client,
        SpanKind::Server,
        "pdp.planning.v1.PlanService/ApprovePlan",
    );
    assert_eq!(
        attribute(&service, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    let store = child_of(&service, SpanKind::Internal, "store planning");
    let consumer = spans
        .iter()
        .find(|s| {
            attribute(s, "messaging.consumer.group.name").as_deref() == Some("planning-filings")
        })
        .unwrap();
    assert_eq!(
        consumer.parent_span_id, store.span_id,
        "the consumer continues the transaction that wrote the event:\n{shown}"
    );
    assert_eq!(consumer.name, "process pdp.planning", "{shown}");
    // Nothing personal or secret travels: no attribute carries the caller's token or subject.
    for span in &spans {
        for a in &span.attributes {
            let text = format!("{:?}", a.value);
            assert!(!text.contains(&bureau[..20]), "{}: {text}", a.key);
            assert!(!text.contains("city_bureau-230100"), "{}: {text}", a.key);
        }
    }
    // Batches link to the changes they carry: the relay's publish of the approval's events, and
    // oversight's watch, which applies the events and the request's audit record in batches.
    let linked = |span: &Span| span.links.iter().any(|l| l.trace_id == trace_id);
    let all = || receiver.0.lock().unwrap().clone();
    eventually(
        30,
        "a publish and oversight's batch link to the trace",
        || {
            let spans = all();
            let sent = spans.iter().any(|s| {
                kind(s) == SpanKind::Producer && s.name == "send pdp.planning" && linked(s)
            });
            let watched = spans.iter().any(|s| {
                kind(s) == SpanKind::Consumer
                    && attribute(s, "messaging.consumer.group.name").as_deref()
                        == Some("oversight-watch")
                    && linked(s)
            });
            (sent && watched).then_some(())
        },
    );

    // The operations desk's gauge counts the plan in force.
    let effective = "pdp_plans{state=\"EFFECTIVE\",tenant=\"230100\"} 1";
    eventually(10, "the plan gauge counts the effective plan", || {
        get(port, "/metrics").and_then(|(_, m)| m.contains(effective).then_some(()))
    });
    let (_, metrics) = get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("pdp_plans{state=\"DRAFT\",tenant=\"230100\"} 0"),
        "the plan left its draft state: {metrics}"
    );
    assert_eq!(interrupt_and_wait(child, data.path()).code(), Some(0));
}
