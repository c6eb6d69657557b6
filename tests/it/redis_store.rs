//! The Redis store under real conditions: several gateways on one Redis, Redis going away and coming back.
//!
//! A webhook received by one instance is visible on every instance
//! within one second of its `2xx`, and `readyz` turns `503` within two seconds
//! of the store becoming unreachable (docs/operations.md). During an outage
//! `on_store_error` decides (`stale` serves the last known state up to
//! `max_stale`, `deny` answers `503 ENTITLEMENT_UNAVAILABLE`, `allow` lets the
//! request through), webhooks answer `503` so Stripe redelivers, and recovery
//! needs no restart of the gateway.
//!
//! Each test owns its `redis-server` ([`TestRedis`]) and stops, freezes or
//! restarts it on the same port. Cross-instance tests use a 60 s `cache_ttl`
//! so only invalidation can explain a change within a second; outage tests use
//! a 1 s `cache_ttl` and keep asserting while it runs out.

use std::time::Duration;

use crate::support::jwt::{self, token};
use crate::support::stripe::*;
use crate::support::*;
use serde_json::Value;
use tokio::time::Instant;

/// `readyz` reports an unreachable store this soon (docs/operations.md).
const READYZ_WITHIN: Duration = Duration::from_secs(2);

fn readyz() -> Request {
    get("/_paygate/readyz")
}

fn has_status(status: u16) -> impl Fn(&RawResponse) -> bool {
    move |resp: &RawResponse| resp.status == status
}

fn t0() -> i64 {
    jwt::now() - 3600
}

/// A gateway on `redis` in front of `up`, adjusted by `adjust`.
async fn gateway_on(
    redis: &TestRedis,
    up: &Upstream,
    adjust: impl FnOnce(Config) -> Config,
) -> Gateway {
    let config = with_redis_and_stripe(Config::new(&up.url()), &redis.url());
    let gw = Gateway::start(&adjust(config)).await;
    until(
        &gw,
        DEADLINE,
        "readyz 200 at start-up",
        readyz,
        has_status(200),
    )
    .await;
    gw
}

/// The checkout of `user` (customer `cus_{user}`, subscription `sub_{user}`),
/// which grants access at once.
fn checkout(user: &str) -> Value {
    checkout_completed(
        &format!("evt_checkout_{user}"),
        user,
        &format!("cus_{user}"),
        &format!("sub_{user}"),
        t0(),
    )
}

/// Asserts the `503 ENTITLEMENT_UNAVAILABLE` answer with a `Retry-After`.
#[track_caller]
fn assert_unavailable(resp: &RawResponse) {
    assert_error(resp, 503, "ENTITLEMENT_UNAVAILABLE");
    assert!(
        resp.header("retry-after").is_some_and(|v| !v.is_empty()),
        "503 ENTITLEMENT_UNAVAILABLE carries Retry-After: {:?}",
        resp.headers
    );
}

// ---- the store itself ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_lives_in_redis_under_the_key_prefix_and_outlives_the_gateway() {
    let (redis, up, gw) = redis_world(|c| c).await;
    apply(&gw, &checkout("pia")).await;
    forwarded(&gw, &up, banking("pia")).await;

    let keys = redis.keys("*");
    assert!(!keys.is_empty(), "the webhook's effect must be in Redis");
    assert!(
        keys.iter().all(|k| k.starts_with("e2e:")),
        "every key starts with store.key_prefix \"e2e:\": {keys:?}"
    );

    // A new gateway process on the same Redis knows pia without any webhook.
    drop(gw);
    let again = gateway_on(&redis, &up, |c| c).await;
    let got = forwarded(&again, &up, banking("pia")).await;
    assert_eq!(got.header_all("x-subscription-status"), ["active"]);

    // Another key prefix is another, empty store on the same server.
    let other = gateway_on(&redis, &up, |c| c.set_str("store.key_prefix", "other:")).await;
    assert_error(&other.send(banking("pia")).await, 402, "CHECKOUT_REQUIRED");
}

// ---- several instances ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_on_one_instance_changes_the_decision_on_another_within_a_second() {
    let redis = TestRedis::start();
    let up = Upstream::start().await;
    let long_cache = |c: Config| c.set_str("store.cache_ttl", "60s");
    let a = gateway_on(&redis, &up, long_cache).await;
    let b = gateway_on(&redis, &up, long_cache).await;
    let t = t0();

    // B has kai cached as never subscribed, for a minute.
    assert_error(&b.send(banking("kai")).await, 402, "CHECKOUT_REQUIRED");
    assert_error(&a.send(banking("kai")).await, 402, "CHECKOUT_REQUIRED");

    apply(
        &a,
        &checkout_completed("evt_x_checkout", "kai", "cus_kai", "sub_kai", t),
    )
    .await;
    let resp = until(
        &b,
        VISIBLE_WITHIN,
        "B grants kai after A applied the checkout",
        || banking("kai"),
        is_forwarded,
    )
    .await;
    assert!(is_forwarded(&resp));
    until(
        &a,
        VISIBLE_WITHIN,
        "A grants kai after its own webhook",
        || banking("kai"),
        is_forwarded,
    )
    .await;

    // Now the other way round, with both instances holding `active` in cache.
    apply(
        &b,
        &subscription_deleted("evt_x_deleted", "sub_kai", "cus_kai", t + 100),
    )
    .await;
    let resp = until(
        &a,
        VISIBLE_WITHIN,
        "A refuses kai after B applied the deletion",
        || banking("kai"),
        is_denied(402, "SUBSCRIPTION_REQUIRED"),
    )
    .await;
    assert_eq!(
        assert_error(&resp, 402, "SUBSCRIPTION_REQUIRED")["status"],
        "canceled"
    );
    until(
        &b,
        VISIBLE_WITHIN,
        "B refuses kai after its own webhook",
        || banking("kai"),
        is_denied(402, "SUBSCRIPTION_REQUIRED"),
    )
    .await;

    // A user nobody changed stays served from cache on both (no collateral effect needed,
    // but the invalidation must not break other users).
    apply(&a, &checkout("lia")).await;
    until(
        &b,
        VISIBLE_WITHIN,
        "B grants lia",
        || banking("lia"),
        is_forwarded,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_to_two_instances_lose_nothing() {
    // Every event of one customer merges into one record; two gateways writing
    // it at the same moment must not lose either write.
    let redis = TestRedis::start();
    let up = Upstream::start().await;
    let a = gateway_on(&redis, &up, |c| c).await;
    let b = gateway_on(&redis, &up, |c| c).await;
    let t = t0();
    let users: Vec<String> = (0..8).map(|i| format!("con{i}")).collect();

    let mut deliveries = Vec::new();
    for user in &users {
        let (cus, sub) = (format!("cus_{user}"), format!("sub_{user}"));
        let events = [
            checkout_completed(&format!("evt_{user}_checkout"), user, &cus, &sub, t),
            subscription_event(
                "created",
                &format!("evt_{user}_created"),
                &sub,
                &cus,
                "incomplete",
                t + 1,
            ),
            subscription_event(
                "updated",
                &format!("evt_{user}_active"),
                &sub,
                &cus,
                "active",
                t + 2,
            ),
            entitlement_summary(&format!("evt_{user}_features"), &cus, &["export"], t + 3),
        ];
        for (i, event) in events.into_iter().enumerate() {
            // Alternate instances, and send every event to both now and then,
            // as Stripe may redeliver while the first attempt is in flight.
            let targets: Vec<&Gateway> = match i {
                0 | 2 => vec![&a],
                1 => vec![&b, &a],
                _ => vec![&b],
            };
            for gw in targets {
                let event = event.clone();
                deliveries.push(async move { (event["id"].clone(), deliver(gw, &event).await) });
            }
        }
    }
    for (id, resp) in futures_util::future::join_all(deliveries).await {
        assert_eq!(resp.status, 200, "{id}: {:?}", resp.text());
        let result = resp.json()["result"].clone();
        assert!(
            result == "applied" || result == "duplicate",
            "{id}: {result}"
        );
    }

    for user in &users {
        for gw in [&a, &b] {
            let got = forwarded(
                gw,
                &up,
                post("/api/reports/export", "{}").bearer(&token(user)),
            )
            .await;
            assert_eq!(got.header_all("x-user-id"), [user.as_str()]);
            assert_eq!(
                got.header_all("x-subscription-status"),
                ["active"],
                "{user}"
            );
            assert_eq!(got.header_all("x-entitlements"), ["export"], "{user}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_drops_every_cached_decision() {
    // Invalidations published while an instance was cut off are lost, so after
    // reconnecting it must not trust its cache for the rest of `cache_ttl`.
    let (mut redis, up, gw) = redis_world(|c| c.set_str("store.cache_ttl", "60s")).await;
    apply(&gw, &checkout("cal")).await;
    forwarded(&gw, &up, banking("cal")).await;

    redis.stop();
    // The restarted Redis is empty (no persistence): cal is unknown there.
    redis.restart();
    let resp = until(
        &gw,
        DEADLINE,
        "cal's cached grant dropped after the reconnect (cache_ttl is 60 s)",
        || banking("cal"),
        is_denied(402, "CHECKOUT_REQUIRED"),
    )
    .await;
    assert_error(&resp, 402, "CHECKOUT_REQUIRED");
}

// ---- readiness ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_redis_going_away_and_coming_back() {
    let (mut redis, _up, gw) = redis_world(|c| c).await;
    until(
        &gw,
        DEADLINE,
        "readyz 200 with Redis up",
        readyz,
        has_status(200),
    )
    .await;
    for round in 1..=2 {
        redis.stop();
        let resp = until(
            &gw,
            READYZ_WITHIN,
            &format!("round {round}: readyz 503 after Redis died"),
            readyz,
            has_status(503),
        )
        .await;
        assert_eq!(resp.status, 503);
        // healthz is about the process, not the store.
        assert_eq!(gw.send(get("/_paygate/healthz")).await.status, 200);

        redis.restart();
        until(
            &gw,
            DEADLINE,
            &format!("round {round}: readyz 200 after Redis came back"),
            readyz,
            has_status(200),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_when_redis_hangs() {
    let (redis, _up, gw) = redis_world(|c| c).await;
    until(
        &gw,
        DEADLINE,
        "readyz 200 with Redis up",
        readyz,
        has_status(200),
    )
    .await;
    // Connections stay open, nothing answers: only a timeout can tell.
    redis.freeze();
    until(
        &gw,
        READYZ_WITHIN,
        "readyz 503 while Redis hangs",
        readyz,
        has_status(503),
    )
    .await;
    redis.thaw();
    until(
        &gw,
        DEADLINE,
        "readyz 200 after Redis resumed",
        readyz,
        has_status(200),
    )
    .await;
}

// ---- outages ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_serves_stale_state_refuses_webhooks_and_recovers_without_restart() {
    let (mut redis, up, gw) = redis_world(|c| {
        c.set_str("store.cache_ttl", "1s")
            .set_str("store.on_store_error", "stale")
            .set_str("store.max_stale", "5m")
    })
    .await;
    apply(&gw, &checkout("ana")).await;
    forwarded(&gw, &up, banking("ana")).await;

    redis.stop();
    let stopped = Instant::now();
    until(
        &gw,
        READYZ_WITHIN,
        "readyz 503 after Redis died",
        readyz,
        has_status(503),
    )
    .await;

    // Keep asserting until well past cache_ttl: from about 1 s on, ana's
    // decision can only come from the last known state.
    let mut served = 0;
    while stopped.elapsed() < Duration::from_secs(3) {
        let got = forwarded(&gw, &up, banking("ana")).await;
        assert_eq!(got.header_all("x-user-id"), ["ana"]);
        assert_eq!(got.header_all("x-subscription-status"), ["active"]);
        served += 1;
    }
    assert!(served > 0);

    // A user the gateway never looked up has no usable state.
    let resp = gw.send(banking("zed")).await;
    assert_unavailable(&resp);

    // Stripe's delivery during the outage is not acknowledged.
    let ben = checkout("ben");
    let resp = deliver(&gw, &ben).await;
    assert_error(&resp, 503, "STORE_UNAVAILABLE");
    assert!(
        resp.header("retry-after").is_some_and(|v| !v.is_empty()),
        "webhook 503 carries Retry-After: {:?}",
        resp.headers
    );
    assert!(!resp.answered_by_upstream());

    // Redis comes back (empty); the same gateway process goes on.
    redis.restart();
    until(
        &gw,
        DEADLINE,
        "readyz 200 after Redis came back",
        readyz,
        has_status(200),
    )
    .await;

    // Stripe retries the delivery until it is acknowledged; every retry that
    // still fails must fail as 503.
    let resp = until(
        &gw,
        DEADLINE,
        "the redelivered webhook is acknowledged",
        || signed(&body(&ben)),
        |r| {
            assert!(
                r.status == 200 || (r.status == 503 && r.json()["code"] == "STORE_UNAVAILABLE"),
                "a retried delivery is either applied or 503: {} {:?}",
                r.status,
                r.text()
            );
            r.status == 200
        },
    )
    .await;
    assert_ack(&resp, "applied");
    let resp = until(
        &gw,
        VISIBLE_WITHIN,
        "ben's access after the redelivery",
        || banking("ben"),
        is_forwarded,
    )
    .await;
    assert!(is_forwarded(&resp));
    let got = up.requests().last().cloned().unwrap();
    assert_eq!(got.header_all("x-user-id"), ["ben"]);
    // Redelivered once more: now it is a duplicate.
    assert_ack(&deliver(&gw, &ben).await, "duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_mode_answers_503_during_an_outage() {
    let (mut redis, up, gw) = redis_world(|c| {
        c.set_str("store.cache_ttl", "1s")
            .set_str("store.on_store_error", "deny")
    })
    .await;
    apply(&gw, &checkout("ana")).await;
    forwarded(&gw, &up, banking("ana")).await;

    redis.stop();
    // Never looked up: refused at once.
    let resp = gw.send(banking("zoe")).await;
    assert_unavailable(&resp);
    // Looked up before: served from the fresh cache for at most cache_ttl,
    // then refused (deny keeps no stale state).
    let resp = until(
        &gw,
        DEADLINE,
        "ana refused once cache_ttl ran out",
        || banking("ana"),
        is_denied(503, "ENTITLEMENT_UNAVAILABLE"),
    )
    .await;
    assert_unavailable(&resp);
    let banking_arrivals = |up: &Upstream| {
        up.arrivals()
            .iter()
            .filter(|r| r.path().starts_with("/api/banking"))
            .count()
    };
    let before = banking_arrivals(&up);
    assert_unavailable(&gw.send(banking("ana")).await);
    assert_unavailable(&gw.send(banking("zoe")).await);
    // Routes that need no entitlement still work, and prove the refusals above
    // reached nothing (the barrier made the round trip after them).
    forwarded(&gw, &up, get("/health/live")).await;
    gw.barrier(&up).await;
    assert_eq!(
        banking_arrivals(&up),
        before,
        "a refused request reached the upstream"
    );

    redis.restart();
    until(
        &gw,
        DEADLINE,
        "zoe gets a decision again after Redis came back",
        || banking("zoe"),
        is_denied(402, "CHECKOUT_REQUIRED"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_state_is_not_served_past_max_stale() {
    let (mut redis, up, gw) = redis_world(|c| {
        c.set_str("store.cache_ttl", "1s")
            .set_str("store.on_store_error", "stale")
            .set_str("store.max_stale", "2s")
    })
    .await;
    apply(&gw, &checkout("ana")).await;
    // The last known state is what this read finds, so it is at most this old.
    let read = Instant::now();
    forwarded(&gw, &up, banking("ana")).await;

    redis.stop();
    let resp = until(
        &gw,
        DEADLINE,
        "ana refused once max_stale ran out",
        || banking("ana"),
        |r| {
            // Until then she keeps access; nothing else is acceptable.
            assert!(
                is_forwarded(r) || is_denied(503, "ENTITLEMENT_UNAVAILABLE")(r),
                "during the outage ana is either served stale or refused: {} {:?}",
                r.status,
                r.text()
            );
            !is_forwarded(r)
        },
    )
    .await;
    assert_unavailable(&resp);
    assert!(
        read.elapsed() >= Duration::from_secs(2),
        "refused after {:?}, before max_stale (2 s) ran out",
        read.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_mode_lets_requests_through_during_an_outage() {
    let (mut redis, up, gw) = redis_world(|c| c.set_str("store.on_store_error", "allow")).await;
    until(
        &gw,
        DEADLINE,
        "readyz 200 with Redis up",
        readyz,
        has_status(200),
    )
    .await;
    redis.stop();
    let got = forwarded(&gw, &up, banking("otto")).await;
    assert_eq!(got.header_all("x-user-id"), ["otto"]);
    // Still authenticated: no token is no entry, store or not.
    assert_error(
        &gw.send(get("/api/banking/accounts")).await,
        401,
        "UNAUTHENTICATED",
    );
}
