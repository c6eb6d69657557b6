//! Live reload (docs/operations.md, "Reloading the config"): the real binary,
//! its config file rewritten under it, then `SIGHUP`. A valid file applies to
//! the next request while a request already in flight finishes on the old
//! config; an invalid one changes nothing and every problem is logged; settings
//! only a restart can change keep their running value and are named; and no
//! number of `SIGHUP`s ends the process.

use std::time::Duration;

use crate::admin::{admin_of, Admin};
use crate::support::jwt::token;
use crate::support::*;
use tokio::time::{sleep, Instant};

/// `paygate_config_reloads_total{result}` as the admin listener reports it.
async fn reloads(admin: &Admin, result: &str) -> u64 {
    let wanted = format!("paygate_config_reloads_total{{result=\"{result}\"}} ");
    let metrics = admin.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(wanted.as_str()))
        .unwrap_or_else(|| panic!("no {wanted:?} in /metrics:\n{metrics}"))
        .trim()
        .parse()
        .expect("a counter value")
}

/// Sends `SIGHUP` and waits until the gateway has counted one more reload
/// with `result`.
async fn reload(gw: &Gateway, admin: &Admin, result: &str) {
    let before = reloads(admin, result).await;
    gw.signal("HUP");
    let deadline = Instant::now() + DEADLINE;
    while reloads(admin, result).await <= before {
        assert!(
            Instant::now() < deadline,
            "no reload counted as {result:?}; log:\n{}",
            gw.log()
        );
        // Polling interval for the counter, not a synchronization.
        sleep(Duration::from_millis(20)).await;
    }
}

/// A config with the admin listener on (for the counter) and `/reports`
/// under the default policy (subscription): 401 without a token.
fn base(up: &Upstream) -> Config {
    Config::new(&up.url())
        .set_str("admin.listen", "127.0.0.1:0")
        .set_str("admin.token", "reload-e2e-admin-token-0123456789")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_config_while_the_request_in_flight_finishes() {
    let release = Signal::new();
    let held = release.clone();
    let up = Upstream::with(move |r| {
        if r.path() == "/api/banking/slow" {
            Reply::HoldUntil(held.clone())
        } else {
            Reply::Ok
        }
    })
    .await;
    let config = base(&up);
    let gw = Gateway::start(&config).await;
    let admin = admin_of(&gw).await;
    assert_error(&gw.send(get("/reports")).await, 401, "UNAUTHENTICATED");

    // A request in flight, on a keep-alive connection, when the reload lands.
    let mut slow = gw.connect().await;
    slow.write(&get("/api/banking/slow").bearer(&token("alice")).to_bytes())
        .await
        .unwrap();
    up.wait_requests(1).await;

    // The new file makes /reports public and drops the banking route.
    let next = config.clone().route("/reports", "public");
    next.write_to(gw.dir());
    reload(&gw, &admin, "ok").await;
    let resp = gw.send(get("/reports")).await;
    assert_eq!(resp.status, 200, "the new route applies: {:?}", resp.text());
    assert!(gw.log().contains("config reloaded"), "{}", gw.log());

    // The request that started before the reload completes, and its
    // connection keeps serving, now with the new config.
    release.fire();
    let resp = slow.read_response().await;
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    slow.write(&get("/reports").to_bytes()).await.unwrap();
    assert_eq!(slow.read_response().await.status, 200);
    assert_eq!(reloads(&admin, "error").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_keeps_the_running_config_and_logs_every_problem() {
    let up = Upstream::start().await;
    let config = base(&up);
    let gw = Gateway::start(&config).await;
    let admin = admin_of(&gw).await;

    // Two problems in one file: both are logged, neither applies, and the
    // valid change next to them does not apply either.
    config
        .clone()
        .route("/reports", "public")
        .set_str("server.max_body", "lots")
        .set_str("access.polcy", "public")
        .write_to(gw.dir());
    reload(&gw, &admin, "error").await;
    let log = gw.log();
    assert!(log.contains("server.max_body"), "{log}");
    assert!(log.contains("access.polcy"), "{log}");
    assert!(log.contains("the running config stays"), "{log}");
    assert_error(&gw.send(get("/reports")).await, 401, "UNAUTHENTICATED");

    // Not even TOML.
    std::fs::write(gw.dir().join("paygate.toml"), "[server\nlisten = ").unwrap();
    reload(&gw, &admin, "error").await;
    assert_error(&gw.send(get("/reports")).await, 401, "UNAUTHENTICATED");
    let resp = gw.send(get("/api/banking").bearer(&token("alice"))).await;
    assert_eq!(resp.status, 200, "still serving: {:?}", resp.text());
    assert_eq!(reloads(&admin, "ok").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_settings_are_named_and_keep_their_running_value() {
    let up = Upstream::start().await;
    let config = base(&up);
    let gw = Gateway::start(&config).await;
    let admin = admin_of(&gw).await;

    config
        .clone()
        .route("/reports", "public")
        .set_str("server.listen", "127.0.0.1:1")
        .set_str("store.key_prefix", "elsewhere:")
        .write_to(gw.dir());
    reload(&gw, &admin, "ok").await;
    let log = gw.log();
    for key in ["server.listen", "store"] {
        assert!(
            log.lines()
                .any(|l| l.contains("needs a restart") && l.contains(&format!("key=\"{key}\""))),
            "no restart warning for {key}:\n{log}"
        );
    }
    // Still on the address it started on, with the rest of the file applied.
    assert_eq!(gw.send(get("/reports")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_follows_the_file() {
    let up = Upstream::start().await;
    let config = base(&up).set_str("log.level", "warn");
    let gw = Gateway::start(&config).await;
    let admin = admin_of(&gw).await;
    let resp = gw.send(get("/health/before")).await;
    assert_eq!(resp.status, 200);

    config
        .clone()
        .set_str("log.level", "info")
        .write_to(gw.dir());
    reload(&gw, &admin, "ok").await;
    let resp = gw.send(get("/health/after")).await;
    assert_eq!(resp.status, 200);
    let deadline = Instant::now() + DEADLINE;
    while !gw.log().contains("/health/after") {
        assert!(
            Instant::now() < deadline,
            "no access line at info after the reload:\n{}",
            gw.log()
        );
        sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !gw.log().contains("/health/before"),
        "an access line was written at warn:\n{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sighups_never_end_the_process() {
    let up = Upstream::start().await;
    let config = base(&up);
    let mut gw = Gateway::start(&config).await;
    let admin = admin_of(&gw).await;
    for _ in 0..5 {
        reload(&gw, &admin, "ok").await;
    }
    // A burst without waiting in between: signals may merge, none may kill.
    for _ in 0..10 {
        gw.signal("HUP");
    }
    let resp = gw.send(get("/api/banking").bearer(&token("alice"))).await;
    assert_eq!(resp.status, 200);
    assert!(reloads(&admin, "ok").await >= 6);
    // The process still drains and exits cleanly on SIGTERM.
    gw.signal("TERM");
    assert!(gw.wait_exit().await.success(), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_the_new_certificate_to_new_handshakes_only() {
    use crate::support::https::{h1_tls, send_h1, tls, whole};
    let dir = tempfile::tempdir().unwrap();
    let first = paygate_testkit::tls::generate(&dir.path().join("first"));
    let second = paygate_testkit::tls::generate(&dir.path().join("second"));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let (ca_first, ca_second) = (read(&first.ca_cert), read(&second.ca_cert));

    let up = Upstream::start().await;
    let gw = Gateway::start(&base(&up).tls(&first)).await;
    let admin = admin_of(&gw).await;
    assert!(tls(gw.addr, &ca_second, &[b"http/1.1"]).await.is_err());
    // A connection opened on the old certificate, kept across the reload.
    let mut kept = h1_tls(gw.addr, &ca_first).await;

    // Renewed in place, as certbot or cert-manager do.
    std::fs::write(gw.dir().join("tls-cert.pem"), read(&second.server_cert)).unwrap();
    std::fs::write(gw.dir().join("tls-key.pem"), read(&second.server_key)).unwrap();
    reload(&gw, &admin, "ok").await;

    assert!(
        tls(gw.addr, &ca_first, &[b"http/1.1"]).await.is_err(),
        "a new handshake still got the old certificate"
    );
    let mut renewed = h1_tls(gw.addr, &ca_second).await;
    let get = |path: &str| {
        http::Request::get(path)
            .header("host", "app.example.com")
            .body(whole(""))
            .unwrap()
    };
    assert_eq!(
        send_h1(&mut renewed, get("/health/new"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        send_h1(&mut kept, get("/health/old")).await.unwrap().status,
        200
    );

    // A key that does not match its certificate is refused; the renewed
    // certificate stays.
    std::fs::write(gw.dir().join("tls-key.pem"), read(&first.server_key)).unwrap();
    reload(&gw, &admin, "error").await;
    assert!(gw.log().contains("server.tls"), "{}", gw.log());
    let mut again = h1_tls(gw.addr, &ca_second).await;
    assert_eq!(
        send_h1(&mut again, get("/health/again"))
            .await
            .unwrap()
            .status,
        200
    );
}
