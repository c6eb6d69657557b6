//! Prometheus metrics: one place that names every metric, registers them at
//! start-up (so counters read zero before anything happened) and
//! renders the text exposition for the admin listener's `/metrics`.
//!
//! Callers use the small functions below rather than the `metrics` macros, so
//! names and labels cannot drift apart across modules.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets from 100 µs to 10 s: the gateway's own cost sits at the low end,
/// upstream time anywhere.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Webhook lag buckets, 1 s to a day: Stripe stamps events to the second and
/// retries a failed delivery for days.
const LAG_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];

/// What a request ended in: the `decision` label of `paygate_requests_total`
/// and the access log's `decision` field. Recording one indexes an array; no
/// label is ever looked up by its text on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    Public,
    Authenticated,
    CheckoutRequired,
    SubscriptionRequired,
    UpgradeRequired,
    Unauthenticated,
    BadPath,
    TooLarge,
    StoreUnavailable,
    UpstreamError,
    NotFound,
    Own,
    Webhook,
    WebhookRejected,
    BadRequest,
    RequestTimeout,
}

impl Decision {
    /// The label text, as Prometheus and the access log show it.
    pub(crate) fn as_str(self) -> &'static str {
        DECISIONS[self as usize]
    }
}

/// The label text of each [`Decision`], in its order; every one is registered at
/// zero. (`shutting_down` and `other` are kept registered so dashboards built
/// on them keep their series.)
const DECISIONS: &[&str] = &[
    "allow",
    "public",
    "authenticated",
    "checkout_required",
    "subscription_required",
    "upgrade_required",
    "unauthenticated",
    "bad_path",
    "too_large",
    "store_unavailable",
    "upstream_error",
    "not_found",
    "own",
    "webhook",
    "webhook_rejected",
    "bad_request",
    "request_timeout",
    "shutting_down",
    "other",
];

/// Installs the process-wide recorder once and registers every metric at zero.
/// Safe to call repeatedly (tests build many gateways in one process).
pub(crate) fn init() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("paygate_webhook_lag_seconds".into()),
                    LAG_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        register();
        handle
    })
}

fn register() {
    describe_counter!(
        "paygate_requests_total",
        "Requests handled, by route and decision."
    );
    describe_histogram!(
        "paygate_request_duration_seconds",
        Unit::Seconds,
        "Time from request head to response head."
    );
    describe_histogram!(
        "paygate_upstream_duration_seconds",
        Unit::Seconds,
        "Time the upstream took to answer with a response head."
    );
    describe_counter!(
        "paygate_webhook_events_total",
        "Stripe webhook deliveries, by event type and result."
    );
    describe_counter!(
        "paygate_cache_requests_total",
        "Entitlement cache lookups, by result (hit, miss, stale)."
    );
    describe_counter!(
        "paygate_store_errors_total",
        "Entitlement store operations that failed."
    );
    describe_counter!(
        "paygate_store_reconnects_total",
        "Times the invalidation subscription was (re)established."
    );
    describe_counter!("paygate_jwks_refreshes_total", "JWKS fetches, by result.");
    describe_counter!(
        "paygate_config_reloads_total",
        "Config reloads (SIGHUP), by result: ok, or error (the running config stayed)."
    );
    // Set only once a certificate is loaded (never a zero, which would read
    // as long expired).
    describe_gauge!(
        "paygate_tls_certificate_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the public listener's TLS certificate (the leaf) expires, Unix time."
    );
    describe_gauge!(
        "paygate_build_info",
        "Always 1; the labels name the running build."
    );
    describe_gauge!(
        "paygate_requests_in_flight",
        "Requests on the public listener that have not been answered yet."
    );
    describe_histogram!(
        "paygate_webhook_lag_seconds",
        Unit::Seconds,
        "From a Stripe event's creation to paygate applying it."
    );
    describe_counter!(
        "paygate_log_lines_dropped_total",
        "Access log lines dropped because stderr could not keep up."
    );
    gauge!("paygate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!("paygate_requests_in_flight").set(0.0);
    counter!("paygate_log_lines_dropped_total").absolute(0);
    for decision in DECISIONS {
        counter!("paygate_requests_total", "route" => "default", "decision" => *decision)
            .absolute(0);
    }
    for result in [
        "applied",
        "duplicate",
        "ignored",
        "other_mode",
        "rejected",
        "failed",
    ] {
        counter!("paygate_webhook_events_total", "type" => "none", "result" => result).absolute(0);
    }
    for result in ["hit", "miss", "stale"] {
        counter!("paygate_cache_requests_total", "result" => result).absolute(0);
    }
    counter!("paygate_store_errors_total").absolute(0);
    counter!("paygate_store_reconnects_total").absolute(0);
    for result in ["ok", "error"] {
        counter!("paygate_jwks_refreshes_total", "result" => result).absolute(0);
        counter!("paygate_config_reloads_total", "result" => result).absolute(0);
    }
}

/// Histogram samples are buffered until the exporter's upkeep folds them into
/// buckets; without a scrape that buffer only grows (seen in the load benchmark:
/// 18 → 77 MiB in one minute). Folding is plain CPU work proportional to the
/// samples (two per request), so it runs on its own thread every second rather
/// than stalling the runtime's worker, which with `workers = 1` is the thread
/// that serves every request.
pub(crate) fn spawn_upkeep() {
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let handle = init();
    let spawned = std::thread::Builder::new()
        .name("paygate-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            handle.run_upkeep();
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start the metrics upkeep thread; histograms fold on scrape only");
    }
}

/// The text exposition (Prometheus format 0.0.4).
pub(crate) fn render() -> String {
    let handle = init();
    gauge!("paygate_requests_in_flight").set(IN_FLIGHT.load(Ordering::Relaxed) as f64);
    handle.run_upkeep();
    let mut text = handle.render();
    if let Some(collect) = PROCESS.get() {
        collect(&mut text);
    }
    text
}

/// Appends the `process_*` family at each render. Reading `/proc` is I/O, which
/// this layer does not do: the logging setup, above it, provides the reader.
static PROCESS: OnceLock<fn(&mut String)> = OnceLock::new();

pub(crate) fn set_process_collector(collect: fn(&mut String)) {
    let _ = PROCESS.set(collect);
}

/// Requests being handled; read into `paygate_requests_in_flight` at each
/// render, so a request pays one atomic add on each end and no registry lookup.
static IN_FLIGHT: AtomicI64 = AtomicI64::new(0);

/// Counts one request in flight until dropped (also when the client goes
/// away and the request's future is dropped half-way).
pub(crate) struct InFlight(());

pub(crate) fn in_flight() -> InFlight {
    IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
    InFlight(())
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-route request metrics, registered once at start-up so the hot path
/// neither builds label sets nor allocates: one `Counter` per decision and one
/// latency `Histogram` per route label.
pub(crate) struct RequestMetrics {
    /// Route label, the address of the config string it was made from, and
    /// its metrics. The gateway reports a route by that same borrowed string,
    /// so the address usually finds it without comparing text or hashing.
    routes: Vec<(String, usize, RouteMetrics)>,
    fallback: RouteMetrics,
}

struct RouteMetrics {
    by_decision: Vec<Counter>,
    duration: Histogram,
}

impl RouteMetrics {
    fn new(route: &str) -> RouteMetrics {
        let by_decision = DECISIONS
            .iter()
            .map(|d| {
                let c = counter!("paygate_requests_total", "route" => route.to_string(), "decision" => *d);
                c.absolute(0);
                c
            })
            .collect();
        let duration = histogram!("paygate_request_duration_seconds", "route" => route.to_string());
        RouteMetrics {
            by_decision,
            duration,
        }
    }
}

impl RequestMetrics {
    /// `labels`: every route label the gateway can report (route prefixes,
    /// "default", "/_paygate", "webhook").
    pub(crate) fn new<'a>(labels: impl IntoIterator<Item = &'a str>) -> RequestMetrics {
        init();
        let mut routes: Vec<(String, usize, RouteMetrics)> = Vec::new();
        for label in labels {
            if !routes.iter().any(|(l, _, _)| l == label) {
                routes.push((
                    label.to_string(),
                    label.as_ptr() as usize,
                    RouteMetrics::new(label),
                ));
            }
        }
        RequestMetrics {
            routes,
            fallback: RouteMetrics::new("other"),
        }
    }

    pub(crate) fn record(&self, route: &str, decision: Decision, elapsed: Duration) {
        let address = route.as_ptr() as usize;
        let metrics = self
            .routes
            .iter()
            .find(|(label, at, _)| *at == address && label.len() == route.len())
            .or_else(|| self.routes.iter().find(|(label, _, _)| label == route))
            .map_or(&self.fallback, |(_, _, metrics)| metrics);
        metrics.by_decision[decision as usize].increment(1);
        metrics.duration.record(elapsed.as_secs_f64());
    }
}

/// Handles resolved once: a `counter!`/`histogram!` call looks the metric up in
/// the registry every time, which the request path should not pay. `init()`
/// comes first so a handle is never bound to the no-op recorder.
macro_rules! handle {
    ($ty:ty, $make:expr) => {{
        static HANDLE: OnceLock<$ty> = OnceLock::new();
        HANDLE.get_or_init(|| {
            init();
            $make
        })
    }};
}

pub(crate) fn upstream(elapsed: Duration) {
    handle!(Histogram, histogram!("paygate_upstream_duration_seconds"))
        .record(elapsed.as_secs_f64());
}

pub(crate) fn webhook(event_type: &str, result: &'static str) {
    counter!("paygate_webhook_events_total", "type" => event_type.to_string(), "result" => result)
        .increment(1);
}

pub(crate) fn cache(result: &'static str) {
    let counter = match result {
        "hit" => handle!(
            Counter,
            counter!("paygate_cache_requests_total", "result" => "hit")
        ),
        "miss" => handle!(
            Counter,
            counter!("paygate_cache_requests_total", "result" => "miss")
        ),
        _ => handle!(
            Counter,
            counter!("paygate_cache_requests_total", "result" => "stale")
        ),
    };
    counter.increment(1);
}

/// An applied webhook event, `lag_seconds` after Stripe created it.
pub(crate) fn webhook_lag(lag_seconds: i64) {
    handle!(Histogram, histogram!("paygate_webhook_lag_seconds")).record(lag_seconds.max(0) as f64);
}

/// An access log line the writer had no room for.
pub(crate) fn log_line_dropped() {
    handle!(Counter, counter!("paygate_log_lines_dropped_total")).increment(1);
}

pub(crate) fn store_error() {
    counter!("paygate_store_errors_total").increment(1);
}

pub(crate) fn store_reconnect() {
    counter!("paygate_store_reconnects_total").increment(1);
}

/// One config reload: applied, or refused with the running config kept.
pub(crate) fn config_reload(ok: bool) {
    counter!("paygate_config_reloads_total", "result" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// The serving certificate's `notAfter` (Unix seconds), on load and on every reload.
pub(crate) fn tls_certificate_expiry(unix: i64) {
    // The certificate loads before the gateway (which installs the recorder)
    // is built: a gauge made before `init` would go to the no-op recorder.
    init();
    gauge!("paygate_tls_certificate_expiry_timestamp_seconds").set(unix as f64);
}

pub(crate) fn jwks_refresh(ok: bool) {
    counter!("paygate_jwks_refreshes_total", "result" => if ok { "ok" } else { "error" })
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::Decision;

    #[test]
    fn every_decision_has_its_own_label() {
        use Decision::*;
        let expected = [
            (Allow, "allow"),
            (Public, "public"),
            (Authenticated, "authenticated"),
            (CheckoutRequired, "checkout_required"),
            (SubscriptionRequired, "subscription_required"),
            (UpgradeRequired, "upgrade_required"),
            (Unauthenticated, "unauthenticated"),
            (BadPath, "bad_path"),
            (TooLarge, "too_large"),
            (StoreUnavailable, "store_unavailable"),
            (UpstreamError, "upstream_error"),
            (NotFound, "not_found"),
            (Own, "own"),
            (Webhook, "webhook"),
            (WebhookRejected, "webhook_rejected"),
            (BadRequest, "bad_request"),
            (RequestTimeout, "request_timeout"),
        ];
        for (decision, text) in expected {
            assert_eq!(decision.as_str(), text, "{decision:?}");
        }
    }

    #[test]
    fn required_metrics_exist_from_start() {
        let text = super::render();
        for name in [
            "paygate_requests_total",
            "paygate_webhook_events_total",
            "paygate_cache_requests_total",
            "paygate_store_errors_total",
            "paygate_build_info{version=",
            "paygate_requests_in_flight",
            "paygate_log_lines_dropped_total",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        super::RequestMetrics::new(["/api"]).record(
            "/api",
            Decision::Allow,
            std::time::Duration::from_millis(3),
        );
        assert!(super::render().contains("paygate_request_duration_seconds_bucket"));
    }
}
