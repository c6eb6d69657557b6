//! Traces: the W3C `traceparent` is continued to the upstream with paygate's
//! own span (or a new trace is started), the access line carries the trace id,
//! and with `telemetry.otlp_endpoint` set each request becomes a span that a
//! collector receives over OTLP/HTTP.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use paygate_testkit::{Reply, TestServer};
use prost::Message;

use crate::support::{forwarded, get, jwt, world, Gateway, Recorded, Request, Upstream, DEADLINE};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// `(trace id, parent id, flags)` of a valid version-00 `traceparent`, or a
/// failure naming the value.
fn parse(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "not a traceparent: {traceparent:?}");
    assert_eq!(parts[0], "00", "{traceparent:?}");
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(
        hex(parts[1], 32) && parts[1] != "0".repeat(32),
        "{traceparent:?}"
    );
    assert!(
        hex(parts[2], 16) && parts[2] != "0".repeat(16),
        "{traceparent:?}"
    );
    assert!(hex(parts[3], 2), "{traceparent:?}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// Forwards `request` and returns what the upstream got with its one
/// `traceparent` taken apart (trace id, parent span id, flags).
async fn traced(
    gw: &Gateway,
    up: &Upstream,
    request: Request,
) -> (Recorded, (String, String, String)) {
    let seen = forwarded(gw, up, request).await;
    let traceparents = seen.header_all("traceparent");
    assert_eq!(traceparents.len(), 1, "{traceparents:?}");
    let parts = parse(traceparents[0]);
    (seen, parts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_trace_is_continued_with_paygates_span_and_its_tracestate() {
    let (up, gw) = world(|c| c.set_str("log.format", "json")).await;
    let sent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let (seen, (trace_id, parent, flags)) = traced(
        &gw,
        &up,
        get("/health")
            .header("traceparent", &sent)
            .header("tracestate", "vendor=abc,other=1")
            .header("X-Request-Id", "trace-continued"),
    )
    .await;
    assert_eq!(trace_id, TRACE_ID, "the same trace");
    assert_ne!(
        parent, CLIENT_SPAN,
        "paygate's own span is the upstream's parent"
    );
    assert_eq!(flags, "01");
    assert_eq!(seen.header("tracestate"), Some("vendor=abc,other=1"));

    let line = gw.json_line(|v| v["request_id"] == "trace-continued").await;
    assert_eq!(line["target"], "paygate::access");
    assert_eq!(line["trace_id"], TRACE_ID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_traceparent_a_new_trace_starts_and_the_access_line_names_it() {
    let (up, gw) = world(|c| c.set_str("log.format", "json")).await;
    let first = forwarded(&gw, &up, get("/health").header("X-Request-Id", "trace-new")).await;
    let (trace_id, _, _) = parse(first.header("traceparent").expect("a traceparent"));
    let second = forwarded(&gw, &up, get("/health")).await;
    let (other, _, _) = parse(second.header("traceparent").expect("a traceparent"));
    assert_ne!(trace_id, other, "each request starts its own trace");

    let line = gw.json_line(|v| v["request_id"] == "trace-new").await;
    assert_eq!(line["trace_id"], trace_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_traceparent_is_replaced_and_its_tracestate_dropped() {
    let (up, gw) = world(|c| c).await;
    for bad in [
        format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32)),
        format!("00-{TRACE_ID}-0000000000000000-01"),
        format!("00-{}-{CLIENT_SPAN}-01", TRACE_ID.to_uppercase()),
        format!("ff-{TRACE_ID}-{CLIENT_SPAN}-01"),
        "not a traceparent".to_string(),
    ] {
        let seen = forwarded(
            &gw,
            &up,
            get("/health")
                .header("traceparent", &bad)
                .header("tracestate", "vendor=abc"),
        )
        .await;
        let traceparents = seen.header_all("traceparent");
        assert_eq!(traceparents.len(), 1, "{bad:?}: {traceparents:?}");
        let (trace_id, parent, _) = parse(traceparents[0]);
        assert_ne!(trace_id, TRACE_ID, "{bad:?} must not be continued");
        assert_ne!(parent, CLIENT_SPAN, "{bad:?}");
        assert_eq!(
            seen.header("tracestate"),
            None,
            "{bad:?}: tracestate goes with its trace"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_still_logs_its_trace_id() {
    let (_up, gw) = world(|c| c.set_str("log.format", "json")).await;
    let sent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-00");
    let resp = gw
        .send(
            get("/api/banking")
                .bearer(&jwt::token("nobody-subscribed"))
                .header("traceparent", &sent),
        )
        .await;
    assert_eq!(resp.status, 402);
    let line = gw
        .json_line(|v| v["target"] == "paygate::access" && v["user_id"] == "nobody-subscribed")
        .await;
    assert_eq!(line["trace_id"], TRACE_ID);
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// Every span a collector received so far, with its `service.name`.
fn received_spans(collector: &TestServer) -> Vec<(String, Span)> {
    let mut spans = Vec::new();
    for request in collector.requests() {
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        let decoded = ExportTraceServiceRequest::decode(request.body.as_ref())
            .expect("an OTLP ExportTraceServiceRequest");
        for resource_spans in decoded.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_http() {
    let collector = TestServer::routes([("POST", "/v1/traces", Reply::new(200))]).await;
    let (up, gw) = world(|c| {
        c.set_str("telemetry.otlp_endpoint", &collector.url())
            .set_str("telemetry.service_name", "edge-test")
            .set_str("telemetry.export_interval", "100ms")
    })
    .await;
    let sent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let seen = forwarded(
        &gw,
        &up,
        get("/health/./deep?q=1").header("traceparent", &sent),
    )
    .await;
    let (_, paygate_span, _) = parse(seen.header("traceparent").unwrap());
    // A refusal is a span too (no token on a subscription route).
    let refused = gw.send(get("/api/banking")).await;
    assert_eq!(refused.status, 401);

    let deadline = Instant::now() + DEADLINE;
    let spans = loop {
        let spans = received_spans(&collector);
        if spans.len() >= 2 {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "the collector got {} span(s) within the deadline; log:\n{}",
            spans.len(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let (service, span) = spans
        .iter()
        .find(|(_, s)| hex::encode(&s.trace_id) == TRACE_ID)
        .expect("the forwarded request's span");
    assert_eq!(service, "edge-test");
    assert_eq!(
        hex::encode(&span.span_id),
        paygate_span,
        "the span the upstream saw as parent"
    );
    assert_eq!(hex::encode(&span.parent_span_id), CLIENT_SPAN);
    assert_eq!(span.name, "GET /health");
    assert_eq!(span.kind, 2, "a server span");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0);
    assert_eq!(
        attribute(span, "http.request.method"),
        Some(&AnyValue::StringValue("GET".into()))
    );
    assert_eq!(
        attribute(span, "url.path"),
        Some(&AnyValue::StringValue("/health/deep".into()))
    );
    assert_eq!(
        attribute(span, "http.response.status_code"),
        Some(&AnyValue::IntValue(200))
    );
    assert_eq!(
        attribute(span, "paygate.decision"),
        Some(&AnyValue::StringValue("public".into()))
    );

    let (_, refusal) = spans
        .iter()
        .find(|(_, s)| attribute(s, "http.response.status_code") == Some(&AnyValue::IntValue(401)))
        .expect("the refused request's span");
    assert!(
        refusal.parent_span_id.is_empty(),
        "a new trace has no parent"
    );
    assert_eq!(refusal.name, "GET /api/banking");
    for (_, span) in &spans {
        assert!(
            span.attributes.iter().all(|kv| !kv.key.contains("user")),
            "no user attribute: {:?}",
            span.attributes
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_requests_nothing_and_is_logged() {
    // A port nothing listens on: bound, then closed.
    let port = paygate_testkit::free_port();
    let (up, gw) = world(|c| {
        c.set_str(
            "telemetry.otlp_endpoint",
            &format!("http://127.0.0.1:{port}"),
        )
        .set_str("telemetry.export_interval", "100ms")
    })
    .await;
    for _ in 0..3 {
        forwarded(&gw, &up, get("/health")).await;
    }
    let deadline = Instant::now() + DEADLINE;
    while !gw.log().contains("span export failed") {
        assert!(
            Instant::now() < deadline,
            "no export failure logged:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still serving after the failed export.
    forwarded(&gw, &up, get("/health")).await;
}

/// With the access log off (and no export) the trace is read and replaced in
/// the rewrite itself: the upstream sees the same thing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_access_log_off_the_trace_is_still_continued_or_started() {
    let (up, gw) = world(|c| c.set_str("log.level", "warn")).await;
    let sent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let (seen, (trace_id, parent, _)) = traced(
        &gw,
        &up,
        get("/health")
            .header("traceparent", &sent)
            .header("tracestate", "vendor=abc"),
    )
    .await;
    assert_eq!(trace_id, TRACE_ID);
    assert_ne!(parent, CLIENT_SPAN);
    assert_eq!(seen.header("tracestate"), Some("vendor=abc"));

    let fresh = forwarded(
        &gw,
        &up,
        get("/health")
            .header("traceparent", "00-zz-bad")
            .header("tracestate", "vendor=stale"),
    )
    .await;
    let (new_trace, _, _) = parse(fresh.header("traceparent").expect("a traceparent"));
    assert_ne!(new_trace, TRACE_ID);
    assert_eq!(
        fresh.header("tracestate"),
        None,
        "a stale tracestate is dropped"
    );
    assert!(!gw.log().contains("paygate::access"), "{}", gw.log());
}
