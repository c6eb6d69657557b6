//! Span export over OTLP/HTTP (protobuf): one server span per request, sent in
//! batches to `{telemetry.otlp_endpoint}/v1/traces`.
//!
//! The request path only pushes a small record into a bounded channel; a
//! background task turns records into OTLP messages (the `opentelemetry-proto`
//! types) and posts them. When the collector is slow or down the channel
//! fills and records are dropped and counted: a request never waits for
//! telemetry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use tokio::sync::mpsc;

use crate::config::TelemetryConfig;

/// Records waiting to be exported; past this, new ones are dropped.
const QUEUE: usize = 4096;
/// Spans per export request; a full batch goes out before the interval ends.
const MAX_BATCH: usize = 512;
/// One export request's deadline: a hung collector must not hold the batches
/// behind it forever.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the request path knows about one finished request: ids, timing and
/// the few attributes a span carries. Never a user id or a token.
#[derive(Debug)]
pub(crate) struct SpanRecord {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// The client's span, when it sent a `traceparent`.
    pub(crate) parent_id: Option<[u8; 8]>,
    pub(crate) flags: u8,
    pub(crate) started: Instant,
    pub(crate) duration: Duration,
    pub(crate) method: Method,
    /// The matched route's label (its prefix, or `default`).
    pub(crate) route: Box<str>,
    /// The normalized path.
    pub(crate) path: Box<str>,
    pub(crate) status: u16,
    pub(crate) decision: &'static str,
}

/// The request path's handle on the export task. The task ends (after
/// sending what it holds) once every handle is dropped, that is when the
/// generation it belongs to is replaced by a reload or the process stops.
pub(crate) struct SpanExporter {
    queue: mpsc::Sender<SpanRecord>,
    dropped: Arc<AtomicU64>,
}

impl SpanExporter {
    /// Starts the export task when `telemetry.otlp_endpoint` is set; `None`
    /// (no task, nothing recorded) when it is not. Needs a tokio runtime.
    pub(crate) fn start(config: &TelemetryConfig) -> Option<SpanExporter> {
        let url = config.otlp_traces_url.clone()?;
        let (queue, received) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let task = Task {
            url,
            client: client(),
            resource: resource(&config.service_name),
            interval: config.export_interval,
            dropped: dropped.clone(),
        };
        tokio::spawn(task.run(received));
        Some(SpanExporter { queue, dropped })
    }

    /// Queues one request's span. Never waits: when the queue is full the
    /// span is dropped and counted (the export task logs the count).
    pub(crate) fn record(&self, span: SpanRecord) {
        if self.queue.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Plain HTTP and HTTPS (Mozilla's roots, as for the upstream), HTTP/1.1.
fn client() -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![
            string_attribute("service.name", service_name),
            string_attribute("service.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Resource::default()
    }
}

struct Task {
    url: Uri,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    resource: Resource,
    interval: Duration,
    dropped: Arc<AtomicU64>,
}

impl Task {
    async fn run(self, mut received: mpsc::Receiver<SpanRecord>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                record = received.recv() => match record {
                    Some(record) => {
                        batch.push(record);
                        if batch.len() >= MAX_BATCH {
                            self.export(&mut batch).await;
                        }
                    }
                    None => {
                        self.export(&mut batch).await;
                        return;
                    }
                },
                _ = tick.tick() => self.export(&mut batch).await,
            }
        }
    }

    /// Sends and empties `batch`. A failed export is logged and its spans are
    /// lost: retrying would only grow the backlog behind a collector that is down.
    async fn export(&self, batch: &mut Vec<SpanRecord>) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "spans dropped: the export queue was full (collector slow or down)"
            );
        }
        if batch.is_empty() {
            return;
        }
        let count = batch.len();
        let body = encode(&self.resource, batch.drain(..), WallClock::now());
        let mut request = Request::post(self.url.clone())
            .body(Full::new(Bytes::from(body)))
            .expect("a valid URL and body");
        request.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let sent = tokio::time::timeout(EXPORT_TIMEOUT, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| crate::outbound::error_chain(&e))?;
            let status = response.status();
            // Read the (small) answer so the connection goes back to the pool.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        })
        .await
        .unwrap_or_else(|_| Err("timed out".to_string()));
        if let Err(error) = sent {
            tracing::warn!(%error, spans = count, url = %self.url, "span export failed");
        }
    }
}

/// Turns monotonic request times into Unix nanoseconds: read once per batch,
/// so the request path never reads the wall clock.
#[derive(Clone, Copy)]
struct WallClock {
    at: Instant,
    unix_nanos: u64,
}

impl WallClock {
    fn now() -> WallClock {
        let seconds = u64::try_from(crate::clock::unix_now()).unwrap_or(0);
        WallClock {
            at: Instant::now(),
            unix_nanos: seconds * 1_000_000_000 + u64::from(crate::clock::subsec_nanos()),
        }
    }

    fn unix_nanos(&self, instant: Instant) -> u64 {
        let ago = self.at.saturating_duration_since(instant).as_nanos();
        self.unix_nanos
            .saturating_sub(u64::try_from(ago).unwrap_or(u64::MAX))
    }
}

/// One OTLP export request body for these spans.
fn encode(
    resource: &Resource,
    records: impl Iterator<Item = SpanRecord>,
    clock: WallClock,
) -> Vec<u8> {
    let spans = records.map(|record| to_span(record, clock)).collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "paygate".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    request.encode_to_vec()
}

fn to_span(record: SpanRecord, clock: WallClock) -> Span {
    let start = clock.unix_nanos(record.started);
    let end = start.saturating_add(u64::try_from(record.duration.as_nanos()).unwrap_or(0));
    // Server spans are errors only for 5xx: a 4xx is the client's mistake.
    let code = if record.status >= 500 {
        status::StatusCode::Error
    } else {
        status::StatusCode::Unset
    };
    Span {
        trace_id: record.trace_id.to_vec(),
        span_id: record.span_id.to_vec(),
        parent_span_id: record.parent_id.map(|id| id.to_vec()).unwrap_or_default(),
        flags: u32::from(record.flags),
        name: format!("{} {}", record.method, record.route),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: vec![
            string_attribute("http.request.method", record.method.as_str()),
            string_attribute("http.route", &record.route),
            string_attribute("url.path", &record.path),
            KeyValue {
                key: "http.response.status_code".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(i64::from(record.status))),
                }),
                ..KeyValue::default()
            },
            string_attribute("paygate.decision", record.decision),
        ],
        status: Some(Status {
            code: code as i32,
            ..Status::default()
        }),
        ..Span::default()
    }
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(parent: Option<[u8; 8]>, status: u16) -> SpanRecord {
        SpanRecord {
            trace_id: [7; 16],
            span_id: [3; 8],
            parent_id: parent,
            flags: 1,
            started: Instant::now(),
            duration: Duration::from_millis(12),
            method: Method::GET,
            route: "/api".into(),
            path: "/api/x".into(),
            status,
            decision: "allow",
        }
    }

    fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn records_encode_as_an_otlp_request() {
        let body = encode(
            &resource("edge"),
            [record(Some([9; 8]), 200), record(None, 503)].into_iter(),
            WallClock::now(),
        );
        let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let resource_spans = &decoded.resource_spans[0];
        let service = &resource_spans.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let spans = &resource_spans.scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        let first = &spans[0];
        assert_eq!(first.trace_id, vec![7; 16]);
        assert_eq!(first.span_id, vec![3; 8]);
        assert_eq!(first.parent_span_id, vec![9; 8]);
        assert_eq!(first.name, "GET /api");
        assert_eq!(first.kind, span::SpanKind::Server as i32);
        assert_eq!(
            first.end_time_unix_nano - first.start_time_unix_nano,
            12_000_000
        );
        assert!(first.start_time_unix_nano > 1_600_000_000 * 1_000_000_000);
        assert_eq!(
            attribute(first, "http.response.status_code"),
            Some(&any_value::Value::IntValue(200))
        );
        assert_eq!(
            attribute(first, "url.path"),
            Some(&any_value::Value::StringValue("/api/x".into()))
        );
        assert_eq!(first.status.as_ref().unwrap().code, 0);
        let second = &spans[1];
        assert!(
            second.parent_span_id.is_empty(),
            "a root span has no parent"
        );
        assert_eq!(
            second.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (queue, _received) = mpsc::channel(1);
        let exporter = SpanExporter {
            queue,
            dropped: Arc::default(),
        };
        exporter.record(record(None, 200));
        exporter.record(record(None, 200));
        exporter.record(record(None, 200));
        assert_eq!(exporter.dropped.load(Ordering::Relaxed), 2);
    }
}
