//! The admin listener and `paygate user` end to end (docs/admin-api.md):
//! the real binary, a real `redis-server`, and two `serve` instances sharing it.
//!
//! The admin listener's address is the second stdout line
//! (`paygate admin listening on http://…`); the shared harness keeps only the
//! first, and logs the rest as `[stdout] …`, so [`admin_of`] polls that log.
//! "Visible on every instance within one second" is measured from the moment
//! the admin call (or CLI process) returned, on an instance whose cache would
//! otherwise hold the old decision for a minute (`cache_ttl = "60s"`).

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use crate::support::jwt::{self, token};
use crate::support::stripe::{
    self, banking, is_denied, is_forwarded, until, until_forwarded, VISIBLE_WITHIN, WHSEC,
};
use crate::support::*;
use serde_json::{json, Value};
use tokio::time::{sleep, Instant};

/// `admin.token` in every config here (at least 16 bytes, as the config demands).
const ADMIN_TOKEN: &str = "admin-e2e-token-7d1f3c9a2b4e6f80";

/// The admin API of one running gateway.
pub(crate) struct Admin {
    addr: SocketAddr,
}

impl Admin {
    async fn send(&self, req: Request) -> RawResponse {
        send(self.addr, req).await
    }

    /// `method path` with the right token (and a JSON body when given).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> RawResponse {
        let mut req = request(method, path).bearer(ADMIN_TOKEN);
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        self.send(req).await
    }

    /// `GET /users/{id}`, asserted 200.
    async fn user(&self, id: &str) -> Value {
        let resp = self.call("GET", &format!("/users/{id}"), None).await;
        assert_eq!(resp.status, 200, "GET /users/{id}: {:?}", resp.text());
        resp.json()
    }

    async fn grant(&self, id: &str, body: Value) -> RawResponse {
        self.call("PUT", &format!("/users/{id}/override"), Some(body))
            .await
    }

    pub(crate) async fn metrics(&self) -> String {
        let resp = self.send(get("/metrics")).await;
        assert_eq!(resp.status, 200, "/metrics: {:?}", resp.text());
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; version=0.0.4")
        );
        resp.text()
    }
}

/// Reads the admin address from the gateway's second stdout line.
pub(crate) async fn admin_of(gw: &Gateway) -> Admin {
    const PREFIX: &str = "[stdout] paygate admin listening on http://";
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = gw.log();
        if let Some(line) = log.lines().find_map(|l| l.strip_prefix(PREFIX)) {
            let addr = line
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("bad admin address {line:?}: {e}"));
            return Admin { addr };
        }
        assert!(
            Instant::now() < deadline,
            "no `paygate admin listening on` line on stdout; log:\n{log}"
        );
        // Polling interval for the child's output, not a synchronization.
        sleep(Duration::from_millis(10)).await;
    }
}

/// `config` with an `[admin]` section on a free port, and caches that would
/// keep a stale decision for a minute without invalidation.
fn with_admin(config: Config) -> Config {
    config
        .set_str("admin.listen", "127.0.0.1:0")
        .set_str("admin.token", ADMIN_TOKEN)
        .set_str("store.cache_ttl", "60s")
}

/// One Redis, one upstream, and two gateways (A and B) sharing the Redis.
async fn two_instances() -> (TestRedis, Upstream, (Gateway, Admin), (Gateway, Admin)) {
    let redis = TestRedis::start();
    let up = Upstream::start().await;
    let config = with_admin(stripe::with_redis_and_stripe(
        Config::new(&up.url()),
        &redis.url(),
    ));
    let a = Gateway::start(&config).await;
    let b = Gateway::start(&config).await;
    let (admin_a, admin_b) = (admin_of(&a).await, admin_of(&b).await);
    (redis, up, (a, admin_a), (b, admin_b))
}

/// An RFC 3339 time `secs` from now.
fn in_secs(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(jwt::now() + secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn until_checkout_required(gw: &Gateway, user: &str, what: &str) {
    until(
        gw,
        VISIBLE_WITHIN,
        what,
        || banking(user),
        is_denied(402, "CHECKOUT_REQUIRED"),
    )
    .await;
}

/// Asserts that `user` is denied with `CHECKOUT_REQUIRED` right now.
async fn assert_checkout_required(gw: &Gateway, user: &str) {
    let resp = gw.send(banking(user)).await;
    assert_error(&resp, 402, "CHECKOUT_REQUIRED");
}

/// Runs `paygate <args> --config <config>` to completion.
async fn paygate_cli(config: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = paygate();
    cmd.args(args).arg("--config").arg(config);
    tokio::task::spawn_blocking(move || cmd.output().expect("run paygate"))
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Sum of `paygate_requests_total` samples with `decision="…"`.
fn requests_with_decision(metrics: &str, decision: &str) -> f64 {
    let label = format!("decision=\"{decision}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("paygate_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn admin_paths_need_the_token_and_operational_ones_do_not() {
    let (_redis, _up, (_a, admin), _) = two_instances().await;

    for path in ["/metrics", "/healthz", "/readyz"] {
        let resp = admin.send(get(path)).await;
        assert_eq!(resp.status, 200, "{path} needs no token: {:?}", resp.text());
    }
    let protected = [
        "/users/zoe",
        "/users/zoe/override",
        "/webhooks/deliveries",
        "/customers/unlinked",
    ];
    for path in protected {
        for req in [
            get(path),
            get(path).bearer("wrong-token-but-long-enough"),
            get(path).bearer(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
            get(path).header("Authorization", &format!("Basic {ADMIN_TOKEN}")),
            get(path).bearer(&token("zoe")),
        ] {
            let resp = admin.send(req.clone()).await;
            let body = assert_error(&resp, 401, "UNAUTHENTICATED");
            assert_eq!(
                resp.header("www-authenticate"),
                Some("Bearer"),
                "{path} {:?}: {body}",
                req.headers
            );
        }
    }
    let put = request("PUT", "/users/zoe/override")
        .body(json!({"until": in_secs(3600), "reason": "x"}).to_string());
    assert_error(&admin.send(put).await, 401, "UNAUTHENTICATED");
    assert_eq!(
        admin.user("zoe").await["entitlement"],
        Value::Null,
        "the refused PUT wrote nothing"
    );

    for path in ["/users/zoe", "/webhooks/deliveries", "/customers/unlinked"] {
        let resp = admin.call("GET", path, None).await;
        assert_eq!(resp.status, 200, "{path} with the token: {:?}", resp.text());
    }
    assert_error(&admin.call("GET", "/nope", None).await, 404, "NOT_FOUND");
    let resp = admin
        .call("POST", "/users/zoe/override", Some(json!({})))
        .await;
    assert_error(&resp, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(resp.header("allow"), Some("PUT, DELETE"));
}

#[tokio::test]
async fn without_a_token_configured_user_paths_answer_401() {
    let redis = TestRedis::start();
    let up = Upstream::start().await;
    let config = stripe::with_redis_and_stripe(Config::new(&up.url()), &redis.url())
        .set_str("admin.listen", "127.0.0.1:0");
    let gw = Gateway::start(&config).await;
    let admin = admin_of(&gw).await;
    assert_error(
        &admin.call("GET", "/users/zoe", None).await,
        401,
        "UNAUTHENTICATED",
    );
    assert_eq!(admin.send(get("/metrics")).await.status, 200);
    assert!(
        gw.log().contains("admin.token is not set"),
        "the start-up log says why:\n{}",
        gw.log()
    );
}

#[tokio::test]
async fn the_admin_listener_reads_the_bearer_header_like_the_public_one() {
    // `Bearer<TAB>token` used to be accepted on the public listener and
    // refused here; both now use one parser. Two Authorization headers are
    // refused on both.
    let up = Upstream::start().await;
    let gw = Gateway::start(&with_admin(Config::new(&up.url()))).await;
    let admin = admin_of(&gw).await;
    for value in [
        format!("Bearer\t{ADMIN_TOKEN}"),
        format!("bearer \t{ADMIN_TOKEN}\t"),
    ] {
        let resp = admin
            .send(get("/users/alice").header("Authorization", &value))
            .await;
        assert_eq!(resp.status, 200, "{value:?}: {:?}", resp.text());
    }
    let twice = get("/users/alice").bearer(ADMIN_TOKEN).bearer(ADMIN_TOKEN);
    assert_error(&admin.send(twice).await, 401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_override_on_one_instance_is_seen_on_the_other_within_a_second() {
    let (_redis, _up, (a, admin_a), (b, _admin_b)) = two_instances().await;
    // B caches "never subscribed" for a minute.
    assert_checkout_required(&b, "zoe").await;
    assert_checkout_required(&a, "zoe").await;

    let resp = admin_a
        .grant(
            "zoe",
            json!({"until": in_secs(3600), "reason": "support comp", "features": ["export"]}),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    let body = resp.json();
    assert_eq!(body["entitlement"]["override"]["reason"], "support comp");
    assert_eq!(body["decision"]["allowed"], true);
    assert_eq!(body["decision"]["status"], "override");
    until_forwarded(&b, "zoe", "override from A allows zoe on B").await;
    until_forwarded(&a, "zoe", "override allows zoe on A").await;
    let export = || post("/api/reports/export", "{}").bearer(&token("zoe"));
    until(
        &b,
        VISIBLE_WITHIN,
        "the override's feature on B",
        export,
        is_forwarded,
    )
    .await;

    let resp = admin_a.call("DELETE", "/users/zoe/override", None).await;
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    assert_eq!(resp.json()["decision"]["code"], "CHECKOUT_REQUIRED");
    until_checkout_required(&b, "zoe", "revoked on A, denied on B").await;
    until_checkout_required(&a, "zoe", "revoked on A, denied on A").await;
}

#[tokio::test]
async fn a_bad_override_is_400_and_changes_nothing() {
    let (_redis, _up, (a, admin), _) = two_instances().await;
    let good_until = in_secs(3600);
    let cases = [
        (json!({"until": good_until}), "reason"),
        (json!({"until": good_until, "reason": ""}), "reason"),
        (json!({"until": good_until, "reason": null}), "reason"),
        (json!({"reason": "comp"}), "until"),
        (json!({"until": "next tuesday", "reason": "comp"}), "until"),
        (json!({"until": "2030-01-01", "reason": "comp"}), "until"),
        (json!({"until": 1_900_000_000, "reason": "comp"}), "until"),
        (json!({"until": in_secs(-60), "reason": "comp"}), "until"),
        (
            json!({"until": good_until, "reason": "comp", "features": "export"}),
            "features",
        ),
        (
            json!({"until": good_until, "reason": "comp", "untill": good_until}),
            "untill",
        ),
    ];
    for (body, field) in cases {
        let resp = admin.grant("zoe", body.clone()).await;
        let error = assert_error(&resp, 400, "BAD_REQUEST");
        assert_eq!(error["field"], field, "{body}: {error}");
        assert!(
            error["error"].as_str().unwrap().contains(field),
            "the sentence names {field}: {error}"
        );
    }
    let not_json = admin
        .send(
            request("PUT", "/users/zoe/override")
                .bearer(ADMIN_TOKEN)
                .body("{\"until\":"),
        )
        .await;
    assert_error(&not_json, 400, "BAD_REQUEST");
    let huge = json!({"until": good_until, "reason": "x".repeat(70 * 1024)});
    assert_error(&admin.grant("zoe", huge).await, 413, "PAYLOAD_TOO_LARGE");

    let shown = admin.user("zoe").await;
    assert_eq!(shown["entitlement"], Value::Null, "nothing stored: {shown}");
    assert_eq!(shown["audit"], json!([]), "nothing audited: {shown}");
    assert_checkout_required(&a, "zoe").await;
}

#[tokio::test]
async fn user_view_shows_entitlement_decision_and_audit_trail() {
    let (_redis, _up, (a, admin), _) = two_instances().await;
    let t0 = jwt::now() - 3600;
    stripe::apply(
        &a,
        &stripe::checkout_completed("evt_adm_checkout", "uma", "cus_uma", "sub_uma", t0),
    )
    .await;
    stripe::apply(
        &a,
        &stripe::subscription_event(
            "updated",
            "evt_adm_sub",
            "sub_uma",
            "cus_uma",
            "active",
            t0 + 1,
        ),
    )
    .await;

    let shown = admin.user("uma").await;
    assert_eq!(shown["user_id"], "uma");
    assert_eq!(
        shown["entitlement"]["customers"],
        json!(["cus_uma"]),
        "{shown}"
    );
    assert_eq!(
        shown["entitlement"]["subscriptions"][0]["status"], "active",
        "{shown}"
    );
    assert_eq!(shown["decision"]["allowed"], true, "{shown}");
    assert_eq!(shown["decision"]["status"], "active", "{shown}");
    let sources: Vec<String> = shown["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap().to_string())
        .collect();
    assert!(
        sources.iter().any(|s| s.contains("evt_adm_sub")),
        "the subscription event is in the trail: {sources:?}"
    );
    assert!(
        shown["audit"][0]["at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{shown}"
    );

    let resp = admin
        .grant(
            "uma",
            json!({"until": in_secs(86_400), "reason": "ticket 42"}),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    let shown = admin.user("uma").await;
    assert_eq!(shown["audit"][0]["source"], "admin: ticket 42", "{shown}");
    assert!(
        shown["audit"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("ticket 42"),
        "{shown}"
    );
    assert_eq!(shown["audit"].as_array().unwrap().len(), sources.len() + 1);
    assert_eq!(
        shown["decision"]["status"], "active",
        "a paying user keeps the subscription's status"
    );
    assert_eq!(shown["decision"]["override"]["active"], true);
    assert_eq!(
        shown["entitlement"]["subscriptions"][0]["id"], "sub_uma",
        "the override kept the subscriptions"
    );
}

#[tokio::test]
async fn webhook_deliveries_and_unlinked_customers_are_listed() {
    let (_redis, _up, (a, admin), _) = two_instances().await;
    let body = stripe::body(&stripe::basil_subscription_event(
        "evt_adm_1",
        "sub_lost",
        "cus_lost",
        "active",
        jwt::now() - 60,
        None,
    ));
    let deliver = || {
        let signature = stripe::signature(&body, WHSEC, jwt::now());
        stripe::webhook_request(&body, &signature)
    };
    stripe::assert_ack(&a.send(deliver()).await, "applied");
    stripe::assert_ack(&a.send(deliver()).await, "duplicate");

    let resp = admin.call("GET", "/webhooks/deliveries", None).await;
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    let list = resp.json()["deliveries"].clone();
    let ours: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["event_id"] == "evt_adm_1")
        .collect();
    assert_eq!(ours.len(), 2, "{list}");
    assert_eq!(ours[0]["result"], "duplicate", "newest first: {list}");
    assert_eq!(ours[1]["result"], "applied", "{list}");
    assert_eq!(ours[1]["type"], "customer.subscription.updated");
    assert!(
        ours[1]["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{list}"
    );

    let one = admin
        .call("GET", "/webhooks/deliveries?limit=1", None)
        .await
        .json();
    assert_eq!(one["deliveries"].as_array().unwrap().len(), 1, "{one}");
    let bad = admin
        .call("GET", "/webhooks/deliveries?limit=lots", None)
        .await;
    assert_eq!(assert_error(&bad, 400, "BAD_REQUEST")["field"], "limit");

    let unlinked = admin.call("GET", "/customers/unlinked", None).await;
    assert_eq!(unlinked.status, 200);
    assert_eq!(unlinked.json()["customers"], json!(["cus_lost"]));
}

#[tokio::test]
async fn the_user_cli_changes_what_a_running_instance_decides() {
    let (_redis, _up, (a, _), (b, _)) = two_instances().await;
    let config = a.dir().join("paygate.toml");
    assert_checkout_required(&b, "yan").await;

    let bad = paygate_cli(
        &config,
        &[
            "user", "grant", "yan", "--until", "someday", "--reason", "comp",
        ],
    )
    .await;
    assert_eq!(
        bad.status.code(),
        Some(1),
        "bad --until exits 1; stderr {:?}",
        stderr(&bad)
    );
    assert!(
        stderr(&bad).contains("--until"),
        "names the flag: {:?}",
        stderr(&bad)
    );
    let no_reason = paygate_cli(
        &config,
        &["user", "grant", "yan", "--until", &in_secs(3600)],
    )
    .await;
    assert!(!no_reason.status.success(), "--reason is required");

    let until_text = in_secs(3600);
    let grant = paygate_cli(
        &config,
        &[
            "user",
            "grant",
            "yan",
            "--until",
            &until_text,
            "--reason",
            "beta tester",
            "--features",
            "export,api",
        ],
    )
    .await;
    assert!(
        grant.status.success(),
        "grant failed: {:?} {:?}",
        stdout(&grant),
        stderr(&grant)
    );
    assert!(
        stdout(&grant).contains(&format!("until {until_text}")),
        "{}",
        stdout(&grant)
    );
    until_forwarded(&b, "yan", "CLI grant allows yan on B").await;
    until_forwarded(&a, "yan", "CLI grant allows yan on A").await;

    let show = paygate_cli(&config, &["user", "show", "yan"]).await;
    assert!(show.status.success(), "show failed: {:?}", stderr(&show));
    let text = stdout(&show);
    assert!(
        text.contains("\"reason\": \"beta tester\""),
        "the stored record, pretty: {text}"
    );
    assert!(
        text.contains("decision now: allowed (status override; features: export, api)"),
        "{text}"
    );
    assert!(
        text.contains("admin: beta tester"),
        "the audit trail: {text}"
    );

    let revoke = paygate_cli(&config, &["user", "revoke", "yan"]).await;
    assert!(
        revoke.status.success(),
        "revoke failed: {:?}",
        stderr(&revoke)
    );
    until_checkout_required(&b, "yan", "CLI revoke denies yan on B").await;
    until_checkout_required(&a, "yan", "CLI revoke denies yan on A").await;

    let show = stdout(&paygate_cli(&config, &["user", "show", "yan"]).await);
    assert!(
        show.contains("decision now: denied, 402 CHECKOUT_REQUIRED"),
        "{show}"
    );
    let revoked_at = show
        .find("admin: override revoked")
        .expect("revoke is audited");
    let granted_at = show
        .find("admin: beta tester")
        .expect("grant is still in the trail");
    assert!(revoked_at < granted_at, "newest first: {show}");
}

#[tokio::test]
async fn the_user_cli_on_the_memory_store_shows_but_refuses_writes() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(&up.url()).write_to(dir.path());
    let show = paygate_cli(&config, &["user", "show", "gina"]).await;
    assert!(show.status.success(), "{:?}", stderr(&show));
    assert!(
        stderr(&show).contains("not the state of a running gateway"),
        "{:?}",
        stderr(&show)
    );
    assert!(
        stdout(&show).contains("reason: support comp"),
        "the seeded override: {}",
        stdout(&show)
    );
    // A write would reach no running gateway: refused, naming the admin API to use.
    let until = in_secs(60);
    for (args, endpoint) in [
        (
            vec![
                "user", "grant", "dave", "--until", &until, "--reason", "demo",
            ],
            "PUT /users/{id}/override",
        ),
        (
            vec!["user", "revoke", "gina"],
            "DELETE /users/{id}/override",
        ),
        (
            vec![
                "customer", "link", "cus_x", "--user", "dave", "--reason", "demo",
            ],
            "PUT /customers/{id}/link",
        ),
    ] {
        let write = paygate_cli(&config, &args).await;
        assert_eq!(
            write.status.code(),
            Some(1),
            "{args:?}: {:?}",
            stderr(&write)
        );
        let err = stderr(&write);
        assert!(
            err.contains("store.redis_url") && err.contains(endpoint),
            "{args:?}: {err}"
        );
        assert!(stdout(&write).is_empty(), "{args:?}: {}", stdout(&write));
    }
}

#[tokio::test]
async fn metrics_count_a_payment_required_answer() {
    let (_redis, _up, (a, admin), _) = two_instances().await;
    let text = admin.metrics().await;
    for name in [
        "paygate_requests_total",
        "paygate_webhook_events_total",
        "paygate_cache_requests_total",
        "paygate_store_errors_total",
    ] {
        assert!(
            text.contains(name),
            "{name} is exposed from start-up:\n{text}"
        );
    }
    let before = requests_with_decision(&text, "checkout_required");
    assert_checkout_required(&a, "nobody").await;
    let after = requests_with_decision(&admin.metrics().await, "checkout_required");
    assert_eq!(after, before + 1.0, "one 402 CHECKOUT_REQUIRED counted");
}

/// `PUT /customers/{id}/link` with the admin token.
async fn link(admin: &Admin, customer: &str, body: Value) -> RawResponse {
    admin
        .call("PUT", &format!("/customers/{customer}/link"), Some(body))
        .await
}

/// Support fixes a checkout made under the wrong account: a paid checkout
/// linked `cus_op` to U5; an operator links it to U7 through the admin API of
/// instance A. U7 gets access and U5 loses it on B within a second, both users
/// carry the change in their audit trail, and neither customer metadata
/// naming U2 nor a later checkout for U5 (the Stripe sources an attacker or a
/// confused app can produce) moves the customer back.
#[tokio::test]
async fn an_operator_link_moves_a_customer_and_no_stripe_source_moves_it_back() {
    let (_redis, _up, (a, admin_a), (b, _)) = two_instances().await;
    let t = jwt::now() - 3600;
    stripe::apply(
        &a,
        &stripe::checkout_completed("evt_op_checkout", "U5", "cus_op", "sub_op", t),
    )
    .await;
    until_forwarded(&b, "U5", "the checkout lets U5 in on B").await;
    // B caches both decisions for a minute.
    assert_checkout_required(&b, "U7").await;

    let resp = link(
        &admin_a,
        "cus_op",
        json!({"user": "U7", "reason": "checkout made under the wrong account (ticket 42)"}),
    )
    .await;
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    let body = resp.json();
    assert_eq!(
        (
            body["customer"].clone(),
            body["user"].clone(),
            body["previous_user"].clone(),
            body["linked"].clone()
        ),
        (json!("cus_op"), json!("U7"), json!("U5"), json!(true)),
        "{body}"
    );
    until_forwarded(&b, "U7", "the operator link lets U7 in on B").await;
    until_checkout_required(&b, "U5", "the operator link takes U5's access on B").await;
    until_forwarded(&a, "U7", "the operator link lets U7 in on A").await;

    let expected =
        "admin link: cus_op from U5 to U7: checkout made under the wrong account (ticket 42)";
    for user in ["U7", "U5"] {
        let view = admin_a.user(user).await;
        assert_eq!(view["audit"][0]["source"], expected, "{user}: {view}");
    }
    let u7 = admin_a.user("U7").await;
    assert_eq!(u7["links"][0]["customer"], "cus_op", "{u7}");
    assert_eq!(u7["links"][0]["source"], "admin", "{u7}");
    assert!(
        u7["links"][0]["event_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("op_")),
        "{u7}"
    );
    assert_eq!(admin_a.user("U5").await["links"], json!([]));

    // Later Stripe links of every kind the customer can get: metadata naming
    // U2, then a new checkout naming U5, both newer than the operator link.
    let later = jwt::now() + 5;
    stripe::apply(
        &a,
        &stripe::customer_updated("evt_op_metadata", "cus_op", Some("U2"), later),
    )
    .await;
    stripe::apply(
        &a,
        &stripe::checkout_completed("evt_op_checkout_2", "U5", "cus_op", "sub_op", later + 1),
    )
    .await;
    // A invalidated its own cache before acknowledging, so it decides with
    // the stored state now.
    assert!(
        is_forwarded(&a.send(banking("U7")).await),
        "U7 keeps cus_op"
    );
    assert_checkout_required(&a, "U5").await;
    assert_checkout_required(&a, "U2").await;
    assert_eq!(admin_a.user("U7").await["links"][0]["source"], "admin");
}

/// `paygate customer link` writes through the same path as the API: a
/// gateway running on the same Redis sees the move within a second of the
/// command's exit; bad flags and an unknown customer exit 1 and write nothing.
#[tokio::test]
async fn the_customer_cli_links_and_a_running_instance_sees_it() {
    let (_redis, _up, (a, _), (b, admin_b)) = two_instances().await;
    let config = a.dir().join("paygate.toml");
    let t = jwt::now() - 3600;
    stripe::apply(
        &a,
        &stripe::checkout_completed("evt_cli_checkout", "U5", "cus_cli", "sub_cli", t),
    )
    .await;
    until_forwarded(&b, "U5", "the checkout lets U5 in on B").await;
    assert_checkout_required(&b, "U7").await;

    for (args, flag) in [
        (
            vec![
                "customer", "link", "cus_cli", "--user", "U 7", "--reason", "x",
            ],
            "--user",
        ),
        (
            vec![
                "customer", "link", "cus_cli", "--user", "U7", "--reason", " ",
            ],
            "--reason",
        ),
        (
            vec![
                "customer",
                "link",
                "cus_nobody",
                "--user",
                "U7",
                "--reason",
                "x",
            ],
            "cus_nobody",
        ),
    ] {
        let out = paygate_cli(&config, &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {:?}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{args:?}: {:?}", stderr(&out));
    }
    let missing = paygate_cli(&config, &["customer", "link", "cus_cli", "--user", "U7"]).await;
    assert!(!missing.status.success(), "--reason is required");
    assert!(is_forwarded(&b.send(banking("U5")).await), "nothing moved");

    let out = paygate_cli(
        &config,
        &[
            "customer",
            "link",
            "cus_cli",
            "--user",
            "U7",
            "--reason",
            "paid from a colleague's login",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "link failed: {:?} {:?}",
        stdout(&out),
        stderr(&out)
    );
    until_forwarded(&b, "U7", "the CLI link lets U7 in on B").await;
    until_checkout_required(&b, "U5", "the CLI link takes U5's access on B").await;
    let text = stdout(&out);
    assert!(text.contains("linked cus_cli to U7 (was U5)"), "{text}");
    assert!(text.contains("cus_cli  by admin at"), "{text}");
    assert!(
        text.contains("admin link: cus_cli from U5 to U7: paid from a colleague's login"),
        "{text}"
    );
    let show = stdout(&paygate_cli(&config, &["user", "show", "U5"]).await);
    assert!(
        show.contains("admin link: cus_cli from U5 to U7"),
        "audited on the old user too: {show}"
    );
    assert_eq!(admin_b.user("U7").await["links"][0]["source"], "admin");
}

/// Bad link requests are refused with the key named and change nothing;
/// without the admin token the path is 401 like every `/customers` path.
#[tokio::test]
async fn a_bad_link_is_400_and_changes_nothing() {
    let (_redis, _up, (a, admin), _) = two_instances().await;
    stripe::apply(
        &a,
        &stripe::checkout_completed(
            "evt_bad_checkout",
            "U5",
            "cus_bad",
            "sub_bad",
            jwt::now() - 60,
        ),
    )
    .await;
    until_forwarded(&a, "U5", "the checkout lets U5 in").await;

    for (body, field) in [
        (json!({"user": "U7"}), "reason"),
        (json!({"user": "U7", "reason": ""}), "reason"),
        (json!({"user": "U7", "reason": "two\nlines"}), "reason"),
        (json!({"reason": "x"}), "user"),
        (json!({"user": "", "reason": "x"}), "user"),
        (json!({"user": "U 7", "reason": "x"}), "user"),
        (json!({"user": "U7,U8", "reason": "x"}), "user"),
        (json!({"user": "x".repeat(257), "reason": "x"}), "user"),
        (json!({"user": 7, "reason": "x"}), "user"),
        (json!({"user": "U7", "reason": "x", "force": true}), "force"),
        (json!(["U7"]), "body"),
    ] {
        let resp = link(&admin, "cus_bad", body.clone()).await;
        let error = assert_error(&resp, 400, "BAD_REQUEST");
        assert_eq!(error["field"], field, "{body}: {error}");
    }
    let resp = link(&admin, "cus_unknown", json!({"user": "U7", "reason": "x"})).await;
    assert_error(&resp, 404, "NOT_FOUND");
    let resp = admin.call("GET", "/customers/cus_bad/link", None).await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("PUT"));

    let body = json!({"user": "U7", "reason": "x"}).to_string();
    for req in [
        request("PUT", "/customers/cus_bad/link").body(body.clone()),
        request("PUT", "/customers/cus_bad/link")
            .bearer("wrong-token-but-long-enough")
            .body(body.clone()),
        request("PUT", "/customers/cus_bad/link")
            .bearer(&token("U7"))
            .body(body.clone()),
    ] {
        let resp = admin.send(req).await;
        assert_error(&resp, 401, "UNAUTHENTICATED");
    }
    assert!(is_forwarded(&a.send(banking("U5")).await), "nothing moved");
    assert_checkout_required(&a, "U7").await;
    assert_eq!(
        admin.user("U5").await["links"][0]["source"],
        "client_reference_id"
    );
}
