//! `paygate sync` (docs/operations.md "Sync") and the webhook's Stripe API reads (docs/webhooks.md:
//! `stripe.refetch`, entitlement lists longer than an event carries), end to end.
//!
//! Every test starts its own `redis-server`, a stand-in for the Stripe API
//! (`support::stripe_api`: paged lists, scripted `429`/`500`, every request
//! recorded) and, where access is the point, a real `paygate serve` on the same
//! Redis. Sync runs as the real binary. What the tests look at is what an
//! operator would: the requests Stripe received (only `GET`, with the key and
//! the pinned version), the summary on stdout, the decisions of a running
//! gateway, and the Redis contents (for "nothing was written").
//!
//! The gateways here cache for an hour (`cache_ttl = "1h"`), so a user whose
//! decision changes within a second after a sync proves the sync invalidated
//! the running instance's cache; it did not merely expire.

use std::process::Stdio;
use std::time::Duration;

use crate::support::jwt::{self, token};
use crate::support::stripe::*;
use crate::support::stripe_api::{StripeApi, API_KEY, STRIPE_VERSION};
use crate::support::*;
use serde_json::Value;

// A change is visible on every instance within one second
// (docs/operations.md, "Multi-instance invalidation").

/// What one `paygate sync` printed and how it ended.
struct SyncRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl SyncRun {
    #[track_caller]
    fn assert_ok(&self) -> &SyncRun {
        assert_eq!(
            self.code,
            Some(0),
            "sync failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The change lines (everything before the summary).
    fn changes(&self) -> Vec<String> {
        self.stdout
            .lines()
            .take_while(|l| !l.starts_with("read: ") && !l.starts_with("dry run: "))
            .map(str::to_string)
            .collect()
    }

    #[track_caller]
    fn assert_line(&self, line: &str) {
        assert!(
            self.stdout.lines().any(|l| l == line),
            "expected the line {line:?} in the sync output:\n{}",
            self.stdout
        );
    }
}

/// Runs `paygate sync --config <config> <args>` to completion.
async fn sync(config: &Config, args: &[&str]) -> SyncRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = config.write_to(dir.path());
    let mut cmd = paygate();
    cmd.arg("sync")
        .arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in config.envs() {
        cmd.env(k, v);
    }
    let output = tokio::time::timeout(DEADLINE, tokio::process::Command::from(cmd).output())
        .await
        .expect("paygate sync did not finish in time")
        .expect("run paygate sync");
    SyncRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A config on `redis` with `[stripe]` reading from `api` with [`API_KEY`],
/// caching for an hour.
fn config(redis: &TestRedis, up: &Upstream, api: &StripeApi) -> Config {
    with_redis_and_stripe(Config::new(&up.url()), &redis.url())
        .set_str("stripe.api_key", API_KEY)
        .set_str("stripe.api_base", &api.url())
        .set_str("store.cache_ttl", "1h")
}

/// A Redis, an upstream and a Stripe API stand-in.
async fn world() -> (TestRedis, Upstream, StripeApi) {
    (
        TestRedis::start(),
        Upstream::start().await,
        StripeApi::start().await,
    )
}

fn me(user: &str) -> Request {
    get("/_paygate/me").bearer(&token(user))
}

#[track_caller]
fn assert_checkout_required(resp: &RawResponse) {
    assert_error(resp, 402, "CHECKOUT_REQUIRED");
}

/// Every key in Redis with its value (strings, lists, sets), for "nothing changed".
async fn snapshot(redis: &TestRedis) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for key in redis.keys("*") {
        let kind = redis.command(&["TYPE", &key]);
        let value = match kind.trim() {
            "+string" => redis.command(&["GET", &key]),
            "+list" => redis.command(&["LRANGE", &key, "0", "-1"]),
            "+set" => redis.command(&["SMEMBERS", &key]),
            other => other.to_string(),
        };
        out.push((key, value));
    }
    out
}

/// Asserts that every request Stripe got was a GET with the key and the pinned version.
#[track_caller]
fn assert_only_authenticated_gets(api: &StripeApi) {
    let requests = api.requests();
    assert!(!requests.is_empty(), "Stripe got no request at all");
    for r in requests {
        assert_eq!(
            r.method, "GET",
            "paygate only reads from Stripe: {}",
            r.target
        );
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str()),
            "{}",
            r.target
        );
        assert_eq!(
            r.header("stripe-version"),
            Some(STRIPE_VERSION),
            "{}",
            r.target
        );
    }
}

// --- paygate sync ---

#[tokio::test]
async fn sync_pages_through_every_subscription_with_gets_only_and_retries_a_429() {
    let (redis, up, api) = world().await;
    for i in 1..=5 {
        api.subscription(
            &format!("sub_p{i}"),
            &format!("cus_p{i}"),
            "active",
            Some(&format!("u_p{i}")),
        );
    }
    // Page size 2: three pages. The first request for the second page is throttled.
    api.page_size(2);
    api.fail(
        |r| r.path == "/v1/subscriptions" && r.param("starting_after").is_some(),
        429,
        Some(1),
        Some(1),
    );

    let run = sync(&config(&redis, &up, &api), &[]).await;
    run.assert_ok();
    run.assert_line("read: 5 subscriptions of 5 customers in 3 pages; features of 5 customers");
    run.assert_line("users linked: 5");
    run.assert_line("subscriptions written: 5");
    run.assert_line("customers with no user link: 0");

    let lists = api.requests_to("/v1/subscriptions");
    let cursors: Vec<Option<&str>> = lists.iter().map(|r| r.param("starting_after")).collect();
    assert_eq!(
        cursors,
        [None, Some("sub_p2"), Some("sub_p2"), Some("sub_p4")],
        "pages in order, the throttled one asked again"
    );
    for r in &lists {
        assert_eq!(r.param("status"), Some("all"), "{}", r.target);
        assert_eq!(r.param("limit"), Some("100"), "{}", r.target);
        assert_eq!(r.params("expand[]"), ["data.customer"], "{}", r.target);
    }
    let waited = lists[2].at - lists[1].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 must be honoured, the retry came after {waited:?}"
    );
    // Customers came expanded: none was read on its own.
    assert!(api
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/v1/customers")));
    assert_eq!(
        api.requests_to("/v1/entitlements/active_entitlements")
            .len(),
        5
    );
    assert_only_authenticated_gets(&api);
}

#[tokio::test]
async fn synced_users_get_access_on_a_running_gateway_and_unlinked_customers_are_listed() {
    let (redis, up, api) = world().await;
    let config = config(&redis, &up, &api);
    let gw = Gateway::start(&config).await;

    api.customer("cus_meta", Some("u_meta"));
    api.subscription("sub_meta", "cus_meta", "active", None);
    api.entitlements("cus_meta", &["export"]);
    api.subscription("sub_submeta", "cus_submeta", "trialing", Some("u_submeta"));
    api.customer("cus_gone", Some("u_gone"));
    api.subscription("sub_gone", "cus_gone", "canceled", None);
    api.subscription("sub_deleted", "cus_deleted", "active", Some("u_deleted"));
    api.delete_customer("cus_deleted");
    api.subscription("sub_orphan", "cus_orphan", "active", None);

    // Decided (and cached for an hour) before the sync.
    for user in ["u_meta", "u_submeta", "u_gone", "u_deleted"] {
        assert_checkout_required(&gw.send(banking(user)).await);
    }

    let run = sync(&config, &[]).await;
    run.assert_ok();
    run.assert_line("link cus_meta -> user u_meta");
    run.assert_line("link cus_submeta -> user u_submeta");
    run.assert_line("add sub_submeta of cus_submeta: trialing");
    run.assert_line("mark cus_deleted deleted (its subscriptions count as canceled)");
    run.assert_line("set features of cus_meta to [export] (was [])");
    run.assert_line("users linked: 4");
    run.assert_line("customers with no user link: 1");
    run.assert_line("  cus_orphan: sub_orphan active");
    assert!(
        run.stderr.contains("sync: done reading"),
        "progress goes to stderr: {}",
        run.stderr
    );

    until_forwarded(&gw, "u_meta", "linked through customer metadata").await;
    until_forwarded(&gw, "u_submeta", "linked through subscription metadata").await;
    let resp = gw.send(export("u_meta")).await;
    assert!(
        is_forwarded(&resp),
        "features from Stripe Entitlements: {:?}",
        resp.text()
    );
    let body = until_subscription_required(&gw, "u_gone", "a canceled subscription").await;
    assert_eq!(body["status"], "canceled");
    let body = until_subscription_required(&gw, "u_deleted", "a deleted customer").await;
    assert_eq!(body["status"], "canceled");
    assert_only_authenticated_gets(&api);
}

#[tokio::test]
async fn dry_run_prints_the_changes_and_writes_nothing() {
    let (redis, up, api) = world().await;
    let config = config(&redis, &up, &api);
    let gw = Gateway::start(&config).await;
    // What the store holds already: u_a's subscription past_due, from webhooks.
    let t0 = jwt::now() - 3600;
    apply(
        &gw,
        &customer_updated("evt_dry_1", "cus_a", Some("u_a"), t0),
    )
    .await;
    apply(
        &gw,
        &subscription_event("updated", "evt_dry_2", "sub_a", "cus_a", "past_due", t0),
    )
    .await;
    until_subscription_required(&gw, "u_a", "past_due from the webhook").await;
    // What Stripe says now.
    api.customer("cus_a", Some("u_a"));
    api.subscription("sub_a", "cus_a", "active", None);
    api.customer("cus_b", Some("u_b"));
    api.subscription("sub_b", "cus_b", "active", None);

    let before = snapshot(&redis).await;
    let dry = sync(&config, &["--dry-run"]).await;
    dry.assert_ok();
    dry.assert_line("would set sub_a active (was past_due)");
    dry.assert_line("would link cus_b -> user u_b");
    dry.assert_line("would add sub_b of cus_b: active");
    dry.assert_line("dry run: nothing was written");
    dry.assert_line("changes: 3");
    assert_eq!(snapshot(&redis).await, before, "a dry run writes nothing");
    assert_error(&gw.send(banking("u_a")).await, 402, "SUBSCRIPTION_REQUIRED");
    assert_checkout_required(&gw.send(banking("u_b")).await);

    // The real run makes exactly the changes the dry run announced.
    let real = sync(&config, &[]).await;
    real.assert_ok();
    let announced: Vec<String> = dry
        .changes()
        .iter()
        .map(|l| {
            l.strip_prefix("would ")
                .expect("dry-run lines start with would")
                .to_string()
        })
        .collect();
    assert_eq!(real.changes(), announced);
    until_forwarded(&gw, "u_a", "the sync's newer state").await;
    until_forwarded(&gw, "u_b", "linked by the sync").await;
}

#[tokio::test]
async fn a_second_sync_changes_nothing_and_a_third_picks_up_what_changed() {
    let (redis, up, api) = world().await;
    let config = config(&redis, &up, &api);
    let gw = Gateway::start(&config).await;
    api.customer("cus_r", Some("u_r"));
    api.subscription("sub_r", "cus_r", "active", None);
    api.subscription("sub_r_orphan", "cus_r_orphan", "active", None);

    sync(&config, &[]).await.assert_ok();
    until_forwarded(&gw, "u_r", "after the first sync").await;
    let after_first = snapshot(&redis).await;

    let second = sync(&config, &[]).await;
    second.assert_ok();
    second.assert_line("changes: 0");
    second.assert_line("users linked: 1");
    second.assert_line("customers with no user link: 1");
    assert!(second.changes().is_empty(), "{}", second.stdout);
    assert_eq!(
        snapshot(&redis).await,
        after_first,
        "a re-run writes nothing"
    );

    api.set_status("sub_r", "past_due");
    let third = sync(&config, &[]).await;
    third.assert_ok();
    assert_eq!(third.changes(), ["set sub_r past_due (was active)"]);
    third.assert_line("changes: 1");
    let body = until_subscription_required(&gw, "u_r", "the third sync's change").await;
    assert_eq!(body["status"], "past_due");
}

#[tokio::test]
async fn webhooks_created_before_the_read_lose_to_the_sync_and_later_ones_win() {
    let (redis, up, api) = world().await;
    let config = config(&redis, &up, &api);
    let gw = Gateway::start(&config).await;
    api.customer("cus_w", Some("u_w"));
    api.subscription("sub_w", "cus_w", "active", None);

    let before_sync = jwt::now();
    sync(&config, &[]).await.assert_ok();
    let after_sync = jwt::now();
    until_forwarded(&gw, "u_w", "after the sync").await;

    // Created before the sync read the subscription, delivered after it: stale.
    let late = subscription_event(
        "updated",
        "evt_w_old",
        "sub_w",
        "cus_w",
        "canceled",
        before_sync - 30,
    );
    apply(&gw, &late).await;
    let resp = gw.send(banking("u_w")).await;
    assert!(
        is_forwarded(&resp),
        "an event older than the sync's read must not overwrite it: {} {:?}",
        resp.status,
        resp.text()
    );
    assert_eq!(gw.send(me("u_w")).await.json()["status"], "active");

    // Created after the read: newer than what the sync wrote.
    let newer = subscription_event(
        "updated",
        "evt_w_new",
        "sub_w",
        "cus_w",
        "canceled",
        after_sync + 2,
    );
    apply(&gw, &newer).await;
    let body = until_subscription_required(&gw, "u_w", "a webhook newer than the sync").await;
    assert_eq!(body["status"], "canceled");
}

#[tokio::test]
async fn metadata_never_moves_a_link_made_at_checkout() {
    let (redis, up, api) = world().await;
    let config = config(&redis, &up, &api);
    let gw = Gateway::start(&config).await;
    let t0 = jwt::now() - 3600;
    apply(
        &gw,
        &checkout_completed("evt_c_1", "u_checkout", "cus_c", "sub_c", t0),
    )
    .await;
    apply(
        &gw,
        &subscription_event("updated", "evt_c_2", "sub_c", "cus_c", "active", t0),
    )
    .await;
    until_forwarded(&gw, "u_checkout", "linked at checkout").await;
    // Stale metadata on the customer names someone else.
    api.customer("cus_c", Some("u_other"));
    api.subscription("sub_c", "cus_c", "active", None);

    let run = sync(&config, &[]).await;
    run.assert_ok();
    run.assert_line("link conflicts (kept as they are): 1");
    run.assert_line(
        "  cus_c: linked to user u_checkout (checkout or operator); its metadata says user u_other",
    );
    run.assert_line("links written: 0");
    run.assert_line("users linked: 1");
    assert!(is_forwarded(&gw.send(banking("u_checkout")).await));
    assert_checkout_required(&gw.send(banking("u_other")).await);
}

#[tokio::test]
async fn sync_without_an_api_key_fails_clearly_and_asks_stripe_nothing() {
    let (redis, up, api) = world().await;
    let config = config(&redis, &up, &api).unset("stripe.api_key");
    let run = sync(&config, &[]).await;
    assert_eq!(
        run.code,
        Some(1),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("error:") && run.stderr.contains("api_key_env"),
        "{}",
        run.stderr
    );
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn sync_stops_with_exit_1_when_stripe_keeps_failing() {
    let (redis, up, api) = world().await;
    api.subscription("sub_x", "cus_x", "active", Some("u_x"));
    api.fail(|r| r.path == "/v1/subscriptions", 401, None, None);
    let run = sync(&config(&redis, &up, &api), &[]).await;
    assert_eq!(
        run.code,
        Some(1),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.stderr.contains("error: sync stopped"), "{}", run.stderr);
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    run.assert_line(
        "sync FAILED after reading 0 subscriptions of 0 customers in 0 pages: 0 change(s) written before it stopped",
    );
    assert!(
        !run.stdout.contains("changes: "),
        "no success-shaped summary: {}",
        run.stdout
    );
    assert!(
        !run.stderr.contains(API_KEY) && !run.stdout.contains(API_KEY),
        "the key never shows"
    );
    // A final 4xx is not retried.
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test]
async fn a_sync_stopped_midway_prints_what_it_wrote_and_a_failure_line() {
    let (redis, up, api) = world().await;
    for i in 1..=3 {
        api.subscription(
            &format!("sub_m{i}"),
            &format!("cus_m{i}"),
            "active",
            Some(&format!("u_m{i}")),
        );
    }
    // The first page (two subscriptions) is read and applied; every later page fails.
    api.page_size(2);
    api.fail(
        |r| r.path == "/v1/subscriptions" && r.param("starting_after").is_some(),
        401,
        None,
        None,
    );
    let run = sync(&config(&redis, &up, &api), &[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    run.assert_line("add sub_m1 of cus_m1: active");
    run.assert_line("add sub_m2 of cus_m2: active");
    let last = run.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("sync FAILED after reading 2 subscriptions of 2 customers in 1 pages: ")
            && last.ends_with(" change(s) written before it stopped"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("sub_m3"), "{}", run.stdout);
    assert!(!run.stdout.contains("changes: "), "{}", run.stdout);
    assert!(run.stderr.contains("error: sync stopped"), "{}", run.stderr);
}

#[tokio::test]
async fn sync_and_its_dry_run_do_not_need_the_webhook_secret() {
    let (redis, up, api) = world().await;
    api.subscription("sub_w", "cus_w", "active", Some("u_w"));
    let config = config(&redis, &up, &api)
        .unset("stripe.webhook_secret")
        .set_str(
            "stripe.webhook_secret_env",
            "PAYGATE_E2E_SURELY_UNSET_WHSEC",
        );
    let dry = sync(&config, &["--dry-run"]).await;
    dry.assert_ok();
    dry.assert_line("would add sub_w of cus_w: active");
    let real = sync(&config, &[]).await;
    real.assert_ok();
    real.assert_line("add sub_w of cus_w: active");
}

// --- stripe.refetch and entitlement paging in the webhook ---

/// A gateway on `redis` with `stripe.refetch = true` against `api`.
async fn refetching_gateway(redis: &TestRedis, up: &Upstream, api: &StripeApi) -> Gateway {
    Gateway::start(&config(redis, up, api).set("stripe.refetch", "true")).await
}

#[tokio::test]
async fn refetch_applies_the_api_state_not_the_events() {
    let (redis, up, api) = world().await;
    let gw = refetching_gateway(&redis, &up, &api).await;
    let t0 = jwt::now() - 600;
    api.subscription("sub_f", "cus_f", "active", None);
    apply(
        &gw,
        &customer_updated("evt_f_link", "cus_f", Some("u_f"), t0),
    )
    .await;

    // The event says canceled; Stripe, asked now, says active.
    apply(
        &gw,
        &subscription_event("updated", "evt_f_1", "sub_f", "cus_f", "canceled", t0 + 10),
    )
    .await;
    until_forwarded(&gw, "u_f", "the refetched state (active)").await;
    let reads = api.requests_to("/v1/subscriptions/sub_f");
    assert_eq!(reads.len(), 1, "one read per subscription event");

    // And the other way round.
    api.set_status("sub_f", "canceled");
    apply(
        &gw,
        &subscription_event("updated", "evt_f_2", "sub_f", "cus_f", "active", t0 + 20),
    )
    .await;
    let body = until_subscription_required(&gw, "u_f", "the refetched state (canceled)").await;
    assert_eq!(body["status"], "canceled");

    // Requests through the gateway never reach Stripe.
    let before = api.requests().len();
    for _ in 0..5 {
        gw.send(banking("u_f")).await;
        gw.send(me("u_f")).await;
    }
    assert_eq!(
        api.requests().len(),
        before,
        "Stripe is never called on the request path"
    );
    assert_only_authenticated_gets(&api);
}

#[tokio::test]
async fn refetch_failure_answers_503_and_the_redelivery_applies() {
    let (redis, up, api) = world().await;
    let gw = refetching_gateway(&redis, &up, &api).await;
    let t0 = jwt::now() - 600;
    api.subscription("sub_e", "cus_e", "active", None);
    apply(
        &gw,
        &customer_updated("evt_e_link", "cus_e", Some("u_e"), t0),
    )
    .await;
    api.fail(|r| r.path == "/v1/subscriptions/sub_e", 500, None, None);

    let event = subscription_event("updated", "evt_e_1", "sub_e", "cus_e", "active", t0 + 10);
    let resp = deliver(&gw, &event).await;
    assert_error(&resp, 503, "STRIPE_UNAVAILABLE");
    assert!(!api.requests_to("/v1/subscriptions/sub_e").is_empty());
    assert_checkout_required(&gw.send(banking("u_e")).await);

    // Stripe redelivers once the API answers again: applied, not a duplicate.
    api.heal();
    apply(&gw, &event).await;
    until_forwarded(&gw, "u_e", "the redelivered event").await;
}

#[tokio::test]
async fn refetch_of_a_subscription_stripe_no_longer_has_stores_it_canceled() {
    let (redis, up, api) = world().await;
    let gw = refetching_gateway(&redis, &up, &api).await;
    let t0 = jwt::now() - 600;
    apply(
        &gw,
        &customer_updated("evt_g_link", "cus_g", Some("u_g"), t0),
    )
    .await;

    apply(
        &gw,
        &subscription_event(
            "updated",
            "evt_g_1",
            "sub_missing",
            "cus_g",
            "active",
            t0 + 10,
        ),
    )
    .await;
    assert_eq!(api.requests_to("/v1/subscriptions/sub_missing").len(), 1);
    let body =
        until_subscription_required(&gw, "u_g", "a subscription Stripe answers 404 for").await;
    assert_eq!(body["status"], "canceled");
}

#[tokio::test]
async fn a_key_of_the_other_mode_is_never_used_to_read_an_event_back() {
    let (redis, up, api) = world().await;
    let gw = refetching_gateway(&redis, &up, &api).await;
    let t0 = jwt::now() - 600;
    // A live event, a test key: every read would be 404, i.e. "canceled".
    let mut event = subscription_event("updated", "evt_m_1", "sub_m", "cus_m", "active", t0);
    event["livemode"] = Value::Bool(true);
    let resp = deliver(&gw, &event).await;
    assert_error(&resp, 503, "STRIPE_UNAVAILABLE");
    assert!(api.requests().is_empty(), "{:?}", api.requests());
}

#[tokio::test]
async fn sync_refuses_a_key_of_the_other_mode_than_the_store() {
    let (redis, up, api) = world().await;
    let config = config(&redis, &up, &api).set("stripe.livemode", "true");
    let run = sync(&config, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains("stripe.livemode") && run.stderr.contains("test key"),
        "{}",
        run.stderr
    );
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn an_entitlement_summary_with_has_more_is_completed_from_the_api() {
    let (redis, up, api) = world().await;
    // No refetch: an API key alone enables the paging.
    let gw = Gateway::start(&config(&redis, &up, &api)).await;
    let t0 = jwt::now() - 600;
    apply(
        &gw,
        &customer_updated("evt_s_link", "cus_s", Some("u_s"), t0),
    )
    .await;
    apply(
        &gw,
        &subscription_event("updated", "evt_s_sub", "sub_s", "cus_s", "active", t0),
    )
    .await;
    until_forwarded(&gw, "u_s", "active").await;

    let mut all: Vec<String> = (1..=11).map(|i| format!("feature_{i:02}")).collect();
    all.push("export".to_string());
    let all_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    api.entitlements("cus_s", &all_refs);
    api.page_size(5);

    // The event lists the first 10 and says there are more.
    let mut summary = entitlement_summary("evt_s_ent", "cus_s", &all_refs[..10], t0 + 10);
    summary["data"]["object"]["entitlements"]["has_more"] = Value::Bool(true);
    apply(&gw, &summary).await;

    let resp = until(
        &gw,
        VISIBLE_WITHIN,
        "the 12th feature",
        || export("u_s"),
        is_forwarded,
    )
    .await;
    assert!(is_forwarded(&resp));
    let features = gw.send(me("u_s")).await.json()["features"].clone();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(features, serde_json::json!(expected));

    let pages = api.requests_to("/v1/entitlements/active_entitlements");
    let cursors: Vec<Option<&str>> = pages.iter().map(|r| r.param("starting_after")).collect();
    assert_eq!(
        cursors,
        [None, Some("ent_test_cus_s_4"), Some("ent_test_cus_s_9")]
    );
    assert!(pages.iter().all(|r| r.param("customer") == Some("cus_s")));
    assert_only_authenticated_gets(&api);

    // A complete list (no has_more) is taken as sent.
    apply(
        &gw,
        &entitlement_summary("evt_s_ent2", "cus_s", &["export"], t0 + 20),
    )
    .await;
    assert_eq!(
        api.requests_to("/v1/entitlements/active_entitlements")
            .len(),
        3
    );
}
