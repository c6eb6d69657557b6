//! The paywall end to end: seeded entitlements through route policies to a 402 or a forwarded request.
//!
//! Users come from the memory store's seed file (see `support::standard_users`
//! for who is who). Every denial also checks that nothing reached the upstream,
//! and every grant checks the identity headers the upstream actually received.

use crate::support::jwt::{self, token};
use crate::support::*;
use serde_json::{json, Value};

/// The seeded users' requests to the subscription route `/api/banking`.
async fn banking(gw: &Gateway, user: &str) -> RawResponse {
    gw.send(get("/api/banking/accounts").bearer(&token(user)))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_subscribed_user_gets_checkout_required() {
    let (up, gw) = world(|c| c).await;
    let resp = banking(&gw, "dave").await;
    let body = assert_error(&resp, 402, "CHECKOUT_REQUIRED");
    assert_eq!(
        body["error"],
        "Subscription required. Please complete checkout."
    );
    assert_eq!(body["redirect"], "/checkout");
    assert!(!resp.answered_by_upstream());
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_configurable() {
    let (up, gw) = world(|c| {
        c.set_str("access.checkout_redirect", "/billing/start")
            .set_str("access.expired_redirect", "/billing/renew")
    })
    .await;
    let body = assert_error(&banking(&gw, "dave").await, 402, "CHECKOUT_REQUIRED");
    assert_eq!(body["redirect"], "/billing/start");
    let body = assert_error(&banking(&gw, "bob").await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["redirect"], "/billing/renew");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_subscriber_is_forwarded_with_identity_headers() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(
        &gw,
        &up,
        get("/api/banking/accounts?limit=5").bearer(&token("alice")),
    )
    .await;
    assert_eq!(got.method, "GET");
    assert_eq!(got.target, "/api/banking/accounts?limit=5");
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
    assert_eq!(got.header_all("x-subscription-status"), ["active"]);
    assert_eq!(
        got.header("x-entitlements"),
        None,
        "X-Entitlements is absent when the user has no features"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_request_keeps_method_and_body() {
    let (up, gw) = world(|c| c).await;
    let body = b"{\"amount\": 1200, \"currency\": \"eur\"}".to_vec();
    let got = forwarded(
        &gw,
        &up,
        request("PUT", "/api/banking/transfers/7")
            .bearer(&token("alice"))
            .header("Content-Type", "application/json")
            .body(body.clone()),
    )
    .await;
    assert_eq!(got.method, "PUT");
    assert_eq!(got.body, body);
    assert!(got.body_complete);
    assert_eq!(got.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceled_subscriber_gets_subscription_required() {
    let (up, gw) = world(|c| c).await;
    let resp = banking(&gw, "bob").await;
    let body = assert_error(&resp, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["error"], "Active subscription required");
    assert_eq!(body["redirect"], "/subscription/expired");
    assert_eq!(body["status"], "canceled");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_subscription_is_subscription_required_not_checkout() {
    let (up, gw) = world(|c| c).await;
    let body = assert_error(&banking(&gw, "hank").await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "incomplete");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trialing_subscriber_is_forwarded() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token("erin"))).await;
    assert_eq!(got.header_all("x-user-id"), ["erin"]);
    assert_eq!(got.header_all("x-subscription-status"), ["trialing"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_statuses_decide_which_statuses_grant() {
    let (up, gw) = world(|c| c.set("access.grant_statuses", r#"["active"]"#)).await;
    let body = assert_error(&banking(&gw, "erin").await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "trialing");
    gw.assert_nothing_forwarded(&up).await;
    forwarded(&gw, &up, get("/api/banking").bearer(&token("alice"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_feature_gets_upgrade_required() {
    let (up, gw) = world(|c| c).await;
    let resp = gw
        .send(post("/api/reports/export", "{}").bearer(&token("alice")))
        .await;
    let body = assert_error(&resp, 402, "UPGRADE_REQUIRED");
    assert_eq!(body["feature"], "export");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_route_checks_access_before_features() {
    let (up, gw) = world(|c| c).await;
    let export = |user: &str| post("/api/reports/export", "{}").bearer(&token(user));
    assert_error(&gw.send(export("dave")).await, 402, "CHECKOUT_REQUIRED");
    let body = assert_error(&gw.send(export("bob")).await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "canceled");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_required_names_the_first_missing_feature() {
    let (up, gw) = world(|c| {
        c.route_toml(
            "prefix = \"/api/audit\"\npolicy = \"subscription\"\nfeatures = [\"export\", \"audit\", \"sso\"]",
        )
    })
    .await;
    // carol has `export` only: `audit` is the first one she lacks.
    let resp = gw.send(get("/api/audit/log").bearer(&token("carol"))).await;
    let body = assert_error(&resp, 402, "UPGRADE_REQUIRED");
    assert_eq!(body["feature"], "audit");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_from_plan_price_is_forwarded_with_entitlements() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(
        &gw,
        &up,
        post("/api/reports/export", "{}").bearer(&token("ivan")),
    )
    .await;
    assert_eq!(got.header_all("x-user-id"), ["ivan"]);
    assert_eq!(got.header_all("x-subscription-status"), ["active"]);
    let features = comma_list(got.header("x-entitlements").expect("X-Entitlements set"));
    assert!(features.contains(&"export".to_string()), "{features:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_from_plan_product_is_forwarded_with_entitlements() {
    let (up, gw) = world(|c| c.plan("prod_basic", &["export", "charts"])).await;
    let got = forwarded(
        &gw,
        &up,
        post("/api/reports/export", "{}").bearer(&token("alice")),
    )
    .await;
    let mut features = comma_list(got.header("x-entitlements").expect("X-Entitlements set"));
    features.sort();
    assert_eq!(features, ["charts", "export"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_from_entitlement_features_is_forwarded_with_entitlements() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(
        &gw,
        &up,
        post("/api/reports/export", "{}").bearer(&token("carol")),
    )
    .await;
    assert_eq!(got.header_all("x-user-id"), ["carol"]);
    assert_eq!(got.header_all("x-entitlements"), ["export"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entitlements_header_lists_features_from_every_source() {
    let (up, gw) = world(|c| {
        c.plan("price_team", &["sso"]).user(
            "kim",
            json!({
                "subscriptions": [{"id": "sub_kim", "status": "active", "created": 1_700_000_000,
                                   "price_ids": ["price_pro", "price_team"]}],
                "features": ["audit"]
            }),
        )
    })
    .await;
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token("kim"))).await;
    let mut features = comma_list(got.header("x-entitlements").expect("X-Entitlements set"));
    features.sort();
    features.dedup();
    assert_eq!(features, ["audit", "export", "sso"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_due_is_denied_without_grace() {
    let (up, gw) = world(|c| c).await;
    let body = assert_error(&banking(&gw, "frank").await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "past_due");
    gw.assert_nothing_forwarded(&up).await;
}

/// A `past_due` user whose first `past_due` (and period end) was `days_ago`.
fn past_due_user(days_ago: i64) -> Value {
    let at = jwt::now() - days_ago * 86_400;
    json!({"subscriptions": [{
        "id": "sub_pd", "status": "past_due", "created": 1_700_000_000,
        "current_period_end": at, "past_due_since": at
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_due_within_grace_is_forwarded() {
    let (up, gw) = world(|c| {
        c.set_str("access.past_due_grace", "3d")
            .user("lena", past_due_user(1))
    })
    .await;
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token("lena"))).await;
    assert_eq!(got.header_all("x-subscription-status"), ["past_due"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_due_after_grace_is_denied() {
    let (up, gw) = world(|c| {
        c.set_str("access.past_due_grace", "3d")
            .user("lena", past_due_user(10))
    })
    .await;
    let body = assert_error(&banking(&gw, "lena").await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "past_due");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_due_grace_counts_from_the_first_past_due_event() {
    // The grace runs from `created` of the first event that showed
    // the subscription past_due (`past_due_since`), whatever the period end.
    let now = jwt::now();
    let day = 86_400;
    let user = |since: i64, period_end: i64| {
        json!({"subscriptions": [{
            "id": "sub_pd", "status": "past_due", "created": 1_700_000_000,
            "current_period_end": period_end, "past_due_since": since
        }]})
    };
    let (up, gw) = world(|c| {
        c.set_str("access.past_due_grace", "3d")
            .user("recent", user(now - day, now - 10 * day))
            .user("stale", user(now - 10 * day, now - day))
    })
    .await;
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token("recent"))).await;
    assert_eq!(got.header_all("x-subscription-status"), ["past_due"]);
    let body = assert_error(&banking(&gw, "stale").await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "past_due");
    assert_eq!(gw.barrier(&up).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_override_grants_access_and_its_features() {
    let (up, gw) = world(|c| c).await;
    // gina's only subscription is canceled; her override runs until tomorrow.
    let got = forwarded(
        &gw,
        &up,
        post("/api/reports/export", "{}").bearer(&token("gina")),
    )
    .await;
    assert_eq!(got.header_all("x-user-id"), ["gina"]);
    assert_eq!(got.header_all("x-subscription-status"), ["override"]);
    let features = comma_list(got.header("x-entitlements").expect("X-Entitlements set"));
    assert!(features.contains(&"export".to_string()), "{features:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_grants_a_user_who_never_subscribed() {
    let (up, gw) = world(|c| {
        c.user(
            "olga",
            json!({"override": {"until": jwt::now() + 3600, "reason": "partner account"}}),
        )
    })
    .await;
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token("olga"))).await;
    assert_eq!(got.header_all("x-user-id"), ["olga"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_override_grants_nothing() {
    let (up, gw) = world(|c| c).await;
    let body = assert_error(&banking(&gw, "judy").await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "canceled");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_granting_subscription_grants_and_reports_its_status() {
    let (up, gw) = world(|c| {
        c.user(
            "max",
            json!({"subscriptions": [
                {"id": "sub_old", "status": "active", "created": 1_700_000_000},
                {"id": "sub_new", "status": "canceled", "created": 1_700_000_500}
            ]}),
        )
    })
    .await;
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token("max"))).await;
    assert_eq!(got.header_all("x-subscription-status"), ["active"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_the_latest_granting_subscriptions() {
    let (up, gw) = world(|c| {
        c.user(
            "pia",
            json!({"subscriptions": [
                {"id": "sub_1", "status": "active", "created": 1_700_000_000},
                {"id": "sub_2", "status": "trialing", "created": 1_700_000_900},
                {"id": "sub_3", "status": "canceled", "created": 1_700_009_000}
            ]}),
        )
    })
    .await;
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token("pia"))).await;
    assert_eq!(got.header_all("x-subscription-status"), ["trialing"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_status_is_the_latest_subscriptions() {
    let (up, gw) = world(|c| {
        c.user(
            "nina",
            json!({"subscriptions": [
                {"id": "sub_b", "status": "unpaid", "created": 1_700_000_500},
                {"id": "sub_a", "status": "canceled", "created": 1_700_000_000}
            ]}),
        )
        // Same `created`: the greater id is the latest.
        .user(
            "omar",
            json!({"subscriptions": [
                {"id": "sub_z", "status": "paused", "created": 1_700_000_000},
                {"id": "sub_a", "status": "canceled", "created": 1_700_000_000}
            ]}),
        )
    })
    .await;
    let body = assert_error(&banking(&gw, "nina").await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "unpaid");
    let body = assert_error(&banking(&gw, "omar").await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "paused");
    gw.assert_nothing_forwarded(&up).await;
}

// ---- route policies ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_route_is_forwarded_without_token() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(&gw, &up, get("/health/live")).await;
    assert_eq!(got.target, "/health/live");
    for h in ["x-user-id", "x-subscription-status", "x-entitlements"] {
        assert_eq!(got.header(h), None, "{h} must not be set without a token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_route_with_valid_token_sets_identity_headers() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(&gw, &up, get("/health").bearer(&token("carol"))).await;
    assert_eq!(got.header_all("x-user-id"), ["carol"]);
    assert_eq!(got.header_all("x-subscription-status"), ["active"]);
    assert_eq!(got.header_all("x-entitlements"), ["export"]);
    let got = forwarded(&gw, &up, get("/health").bearer(&token("dave"))).await;
    assert_eq!(got.header_all("x-user-id"), ["dave"]);
    assert_eq!(got.header_all("x-subscription-status"), ["none"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_route_with_bad_token_is_forwarded_without_identity() {
    let (up, gw) = world(|c| c).await;
    let bad = jwt::sign_hs(
        jsonwebtoken::Algorithm::HS256,
        b"some other secret",
        &jwt::claims("alice"),
    );
    let expired = jwt::sign(&json!({"sub": "alice", "exp": jwt::now() - 7200}));
    for tok in [bad.as_str(), expired.as_str(), "garbage"] {
        let got = forwarded(&gw, &up, get("/health").bearer(tok)).await;
        assert_eq!(
            got.header("x-user-id"),
            None,
            "token {tok:?} must not identify anyone"
        );
        assert_eq!(got.header("x-subscription-status"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_route_needs_only_a_valid_token() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(&gw, &up, get("/api/subscriptions").bearer(&token("dave"))).await;
    assert_eq!(got.header_all("x-user-id"), ["dave"]);
    assert_eq!(got.header_all("x-subscription-status"), ["none"]);
    let got = forwarded(
        &gw,
        &up,
        get("/api/subscriptions/current").bearer(&token("bob")),
    )
    .await;
    assert_eq!(got.header_all("x-subscription-status"), ["canceled"]);

    let resp = gw.send(get("/api/subscriptions")).await;
    assert_error(&resp, 401, "UNAUTHENTICATED");
    assert_eq!(
        gw.barrier(&up).await.len(),
        2,
        "the unauthenticated request must not be forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_narrow_a_route() {
    // POST /api/reports/export needs `export`; other methods fall through to
    // the next longest prefix, `/api/reports`, which only needs a token.
    let (up, gw) = world(|c| c.route("/api/reports", "authenticated")).await;
    let got = forwarded(&gw, &up, get("/api/reports/export").bearer(&token("dave"))).await;
    assert_eq!(got.target, "/api/reports/export");
    assert_eq!(got.header_all("x-user-id"), ["dave"]);

    let resp = gw
        .send(post("/api/reports/export", "{}").bearer(&token("alice")))
        .await;
    assert_error(&resp, 402, "UPGRADE_REQUIRED");
    let resp = gw
        .send(post("/api/reports/export", "{}").bearer(&token("dave")))
        .await;
    assert_error(&resp, 402, "CHECKOUT_REQUIRED");
    assert_eq!(
        gw.barrier(&up).await.len(),
        1,
        "denied POSTs must not be forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_prefix_wins() {
    let (up, gw) = world(|c| c.route("/api", "public")).await;
    forwarded(&gw, &up, get("/api/catalog")).await;
    assert_error(
        &gw.send(get("/api/banking/x")).await,
        401,
        "UNAUTHENTICATED",
    );
    assert_error(
        &gw.send(get("/api/banking/x").bearer(&token("dave"))).await,
        402,
        "CHECKOUT_REQUIRED",
    );
    assert_eq!(gw.barrier(&up).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_applies_to_unmatched_paths() {
    let (up, gw) = world(|c| c).await;
    assert_error(&gw.send(get("/elsewhere")).await, 401, "UNAUTHENTICATED");
    assert_error(
        &gw.send(get("/elsewhere").bearer(&token("dave"))).await,
        402,
        "CHECKOUT_REQUIRED",
    );
    gw.assert_nothing_forwarded(&up).await;
    let got = forwarded(&gw, &up, get("/elsewhere").bearer(&token("alice"))).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);

    let (up, gw) = world(|c| c.set_str("access.default", "public")).await;
    forwarded(&gw, &up, get("/elsewhere")).await;

    let (up, gw) = world(|c| c.set_str("access.default", "authenticated")).await;
    assert_error(&gw.send(get("/elsewhere")).await, 401, "UNAUTHENTICATED");
    let got = forwarded(&gw, &up, get("/elsewhere").bearer(&token("dave"))).await;
    assert_eq!(got.header_all("x-subscription-status"), ["none"]);
}

// ---- /_paygate/me ----

/// RFC 3339 → Unix time; fails the test unless the string is UTC.
fn unix(value: &Value) -> i64 {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 string, got {value}"));
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    assert_eq!(t.offset(), time::UtcOffset::UTC, "{s:?} must be UTC");
    t.unix_timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_reports_the_callers_own_entitlement() {
    let (up, gw) = world(|c| {
        c.user(
            "tess",
            json!({
                "subscriptions": [{
                    "id": "sub_tess", "status": "trialing", "created": 1_800_000_000,
                    "trial_start": 1_800_000_000, "trial_end": 1_900_000_000,
                    "current_period_end": 1_900_000_000, "cancel_at_period_end": true
                }],
                "features": ["export"],
                "has_used_trial": true,
                "first_trial_at": 1_800_000_000
            }),
        )
    })
    .await;
    let resp = gw.send(get("/_paygate/me").bearer(&token("tess"))).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(!resp.answered_by_upstream());
    assert!(resp
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/json"));
    let me = resp.json();
    assert_eq!(me["user_id"], "tess");
    assert_eq!(me["status"], "trialing");
    assert_eq!(unix(&me["trial_end"]), 1_900_000_000);
    assert_eq!(unix(&me["current_period_end"]), 1_900_000_000);
    assert_eq!(me["cancel_at_period_end"], true);
    assert_eq!(me["has_used_trial"], true);
    assert_eq!(unix(&me["first_trial_at"]), 1_800_000_000);
    assert_eq!(me["features"], json!(["export"]));
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_for_a_user_who_never_subscribed() {
    let (up, gw) = world(|c| c).await;
    let resp = gw.send(get("/_paygate/me").bearer(&token("dave"))).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let me = resp.json();
    assert_eq!(me["user_id"], "dave");
    assert_eq!(me["status"], "none");
    assert_eq!(me["trial_end"], Value::Null);
    assert_eq!(me["current_period_end"], Value::Null);
    assert_eq!(me["cancel_at_period_end"], false);
    assert_eq!(me["has_used_trial"], false);
    assert_eq!(me["first_trial_at"], Value::Null);
    assert_eq!(me["features"], json!([]));
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_reports_a_denied_users_status() {
    let (_up, gw) = world(|c| c).await;
    let me = gw
        .send(get("/_paygate/me").bearer(&token("bob")))
        .await
        .json();
    assert_eq!(me["user_id"], "bob");
    assert_eq!(me["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_without_token_is_unauthenticated() {
    let (up, gw) = world(|c| c).await;
    let resp = gw.send(get("/_paygate/me")).await;
    assert_error(&resp, 401, "UNAUTHENTICATED");
    assert!(resp
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    let resp = gw.send(get("/_paygate/me").bearer("not-a-token")).await;
    assert_error(&resp, 401, "INVALID_TOKEN");
    gw.assert_nothing_forwarded(&up).await;
}

/// `server.workers = 1` runs the gateway on a single-threaded runtime (the
/// benchmark's setting): the same decisions, and concurrent requests on many
/// connections all complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_thread_serves_concurrent_requests() {
    let (up, gw) = world(|c| c.set("server.workers", "1")).await;
    let got = forwarded(
        &gw,
        &up,
        get("/api/banking/accounts").bearer(&token("alice")),
    )
    .await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
    assert_error(&banking(&gw, "bob").await, 402, "SUBSCRIPTION_REQUIRED");
    let requests = (0..40).map(|i| {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        banking(&gw, user)
    });
    let answers = futures_util::future::join_all(requests).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer.status,
            if i % 2 == 0 { 200 } else { 402 },
            "request {i}"
        );
    }
}
