//! The access log: one structured line per request, JSON with `log.format =
//! "json"`, carrying what an operator needs and never the token.

use std::time::{Duration, Instant};

use crate::support::jwt;
use crate::support::raw::get;
use crate::support::world;

/// Polls the gateway's stderr until a line satisfies `pred`.
async fn wait_for_line(
    gw: &crate::support::gateway::Gateway,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for line in gw.log().lines() {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
                if pred(&value) {
                    return value;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no matching log line in:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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

    let line = wait_for_line(&gw, |v| v["request_id"] == "req-log-1").await;
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/api/banking");
    assert_eq!(line["status"], 200);
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["user_id"], "alice");
    assert!(line["latency_ms"].as_f64().is_some(), "{line}");
    // The access line, not the `request refused` line that names the same user.
    let denied_line = wait_for_line(&gw, |v| {
        v["target"] == "paygate::access" && v["user_id"] == "nobody-subscribed"
    })
    .await;
    assert_eq!(denied_line["decision"], "checkout_required");
    assert_eq!(denied_line["status"], 402);

    let log = gw.log();
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !log.contains(&token) && !log.contains(signature),
        "the token leaked into the log:\n{log}"
    );
}
