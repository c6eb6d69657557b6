//! The access log: one structured line per request, JSON with `log.format =
//! "json"`, carrying what an operator needs and never the token; the log
//! filter turns it off; a warning an outage repeats per request is written
//! about once a second with a count; the operator's process metrics.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::gateway::{Config, Gateway};
use crate::support::jwt;
use crate::support::raw::{get, send};
use crate::support::stripe::{apply, checkout_completed, with_stripe};
use crate::support::{redis_world, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_has_the_fields_and_never_the_token() {
    let (_up, gw) = world(|c| c.set_str("log.format", "json")).await;
    let token = jwt::token("alice");
    let resp = gw
        .send(
            get("/api/banking?x=1")
                .bearer(&token)
                .header("X-Request-Id", "req-log-1"),
        )
        .await;
    assert_eq!(resp.status, 200);
    let denied = gw
        .send(get("/api/banking").bearer(&jwt::token("nobody-subscribed")))
        .await;
    assert_eq!(denied.status, 402);

    let line = gw.json_line(|v| v["request_id"] == "req-log-1").await;
    assert_eq!(line["target"], "paygate::access");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "request");
    assert!(line["timestamp"].as_str().is_some(), "{line}");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/api/banking");
    assert_eq!(line["http_status"], 200);
    // `status` means the log level to Datadog and others: never set.
    assert!(line.get("status").is_none(), "{line}");
    assert_eq!(line["peer"], "127.0.0.1");
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["user_id"], "alice");
    assert!(line["latency_ms"].as_f64().is_some(), "{line}");
    // The access line, not the `request refused` line that names the same user.
    let denied_line = gw
        .json_line(|v| v["target"] == "paygate::access" && v["user_id"] == "nobody-subscribed")
        .await;
    assert_eq!(denied_line["decision"], "checkout_required");
    assert_eq!(denied_line["http_status"], 402);

    let log = gw.log();
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !log.contains(&token) && !log.contains(signature),
        "the token leaked into the log:\n{log}"
    );
}

/// Every JSON line, access or not, has the common fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_line_has_timestamp_level_target_message() {
    let (_up, gw) = world(|c| c.set_str("log.format", "json")).await;
    assert_eq!(gw.send(get("/api/banking")).await.status, 401);
    gw.json_line(|v| v["target"] == "paygate::access").await;
    let mut seen = 0;
    for line in gw.log().lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        for field in ["timestamp", "level", "target", "message"] {
            assert!(v[field].as_str().is_some(), "no {field} in {line}");
        }
        seen += 1;
    }
    assert!(seen >= 2, "{}", gw.log());
}

/// `paygate::access=off` in the filter turns the access lines off and
/// leaves the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_turns_the_access_log_off() {
    let (_up, gw) = world(|c| {
        c.set_str("log.format", "json")
            .set_str("log.level", "info,paygate::access=off")
    })
    .await;
    let resp = gw
        .send(get("/api/banking").bearer(&jwt::token("alice")))
        .await;
    assert_eq!(resp.status, 200);
    // A refusal's own line comes after the request's access line would have.
    assert_eq!(gw.send(get("/a/../../x")).await.status, 400);
    gw.json_line(|v| v["message"] == "refused: bad path").await;
    assert!(
        !gw.log().contains("paygate::access"),
        "access line written:\n{}",
        gw.log()
    );
}

/// The access log is written from its own thread: at exit every line is out,
/// before the last line of the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_line_is_lost_at_exit() {
    let (_up, mut gw) = world(|c| c.set_str("log.format", "json")).await;
    let requests = 200;
    for i in 0..requests {
        let id = format!("exit-{i}");
        let resp = gw
            .send(get("/api/banking").header("X-Request-Id", &id))
            .await;
        assert_eq!(resp.status, 401);
    }
    gw.signal("TERM");
    assert!(gw.wait_exit().await.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = gw.log();
        let lines: Vec<&str> = log.lines().collect();
        let access = lines
            .iter()
            .rposition(|l| l.contains("\"request_id\":\"exit-"));
        let drained = lines.iter().position(|l| l.contains("drained; exiting"));
        let count = lines
            .iter()
            .filter(|l| l.contains("\"request_id\":\"exit-"))
            .count();
        if let (Some(last_access), Some(drained)) = (access, drained) {
            assert_eq!(count, requests, "{log}");
            assert!(last_access < drained, "{log}");
            break;
        }
        // The child's stderr is read by a thread: poll until it has all.
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A dead upstream fails every request; the warning is written about once a
/// second, with how many similar ones it stands for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_warned_about_once_a_second() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let gw = Gateway::start(&Config::new(&url).set_str("log.format", "json")).await;
    let token = jwt::token("alice");
    let started = Instant::now();
    let requests = 60;
    for _ in 0..requests {
        let resp = gw.send(get("/api/banking").bearer(&token)).await;
        assert_eq!(resp.status, 502, "{:?}", resp.text());
    }
    let elapsed = started.elapsed();
    let first = gw
        .json_line(|v| v["message"] == "upstream request failed")
        .await;
    assert_eq!(first["suppressed"], 0, "{first}");
    let warned: Vec<serde_json::Value> = gw
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "upstream request failed")
        .collect();
    // One line per started second at most, however many requests failed.
    let bound = elapsed.as_secs() as usize + 1;
    assert!(
        warned.len() <= bound && warned.len() < requests,
        "{} warnings for {requests} requests in {elapsed:?}",
        warned.len()
    );
    // The lines left out are counted on the next one written.
    let counted: u64 = warned.iter().filter_map(|v| v["suppressed"].as_u64()).sum();
    assert!(counted < requests as u64, "{warned:?}");
}

/// A stopped Redis fails every lookup; the warning is written about once a
/// second, however many requests fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_warned_about_once_a_second() {
    let (mut redis, _up, gw) = redis_world(|c| c.set_str("log.format", "json")).await;
    redis.stop();
    let started = Instant::now();
    let requests = 40;
    for i in 0..requests {
        let resp = gw
            .send(get("/api/banking").bearer(&jwt::token(&format!("outage-{i}"))))
            .await;
        assert_eq!(resp.status, 503, "{:?}", resp.text());
    }
    let elapsed = started.elapsed();
    gw.json_line(|v| v["message"] == "entitlement lookup failed")
        .await;
    let warned = gw
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "entitlement lookup failed")
        .count();
    let bound = elapsed.as_secs() as usize + 1;
    assert!(
        warned <= bound && warned < requests,
        "{warned} warnings for {requests} requests in {elapsed:?}:\n{}",
        gw.log()
    );
}

/// `/metrics` carries the process family, the build and the in-flight gauge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_process_build_and_in_flight() {
    let (_up, gw) = world(|c| {
        c.set_str("admin.listen", "127.0.0.1:0")
            .set_str("admin.token", ADMIN_TOKEN)
    })
    .await;
    assert_eq!(gw.send(get("/_paygate/healthz")).await.status, 200);
    let admin = admin_addr(&gw).await;
    let resp = send(admin, get("/metrics").bearer(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_start_time_seconds") > 1_577_836_800.0);
    assert!(value("process_cpu_seconds_total") >= 0.0);
    assert!(value("process_threads") >= 1.0);
    assert_eq!(value("paygate_requests_in_flight"), 0.0);
    assert_eq!(value("paygate_log_lines_dropped_total"), 0.0);
    let version = format!(
        "paygate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&version), "{text}");
}

/// An applied delivery is measured from the event's `created`, and its log
/// line lists the users as plain fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_webhook_records_its_lag_and_users() {
    let (_up, gw) = world(|c| {
        with_stripe(c.set_str("log.format", "json"))
            .set_str("admin.listen", "127.0.0.1:0")
            .set_str("admin.token", ADMIN_TOKEN)
    })
    .await;
    let created = jwt::now() - 120;
    apply(
        &gw,
        &checkout_completed("evt_lag_1", "lena", "cus_lena", "sub_lena", created),
    )
    .await;
    let line = gw.json_line(|v| v["message"] == "webhook delivery").await;
    assert_eq!(line["users"], "lena", "{line}");
    assert_eq!(line["user_count"], 1, "{line}");
    let admin = admin_addr(&gw).await;
    let text = send(admin, get("/metrics").bearer(ADMIN_TOKEN))
        .await
        .text();
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(sample("paygate_webhook_lag_seconds_count"), 1.0);
    let lag = sample("paygate_webhook_lag_seconds_sum");
    assert!((120.0..3600.0).contains(&lag), "lag {lag}");
}

const ADMIN_TOKEN: &str = "admin-token-for-metrics-0123456789";

/// The admin listener's address, from the gateway's second stdout line.
async fn admin_addr(gw: &Gateway) -> SocketAddr {
    const PREFIX: &str = "[stdout] paygate admin listening on http://";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = gw.log();
        if let Some(line) = log.lines().find_map(|l| l.strip_prefix(PREFIX)) {
            return line.trim().parse().expect("admin address");
        }
        assert!(Instant::now() < deadline, "no admin listening line:\n{log}");
        // Polling interval for the child's output, not a synchronization.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
