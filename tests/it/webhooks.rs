//! Stripe webhooks end to end: signed deliveries into a real Redis store, and the access decisions they lead to.
//!
//! docs/webhooks.md is the contract: signature and tolerance rules, what a body must be,
//! the body limit, idempotency by event id, ordering by `created` with the
//! lifecycle tie-break, linking customers to users, and what each event type
//! means for access. Every test starts its own `redis-server` and gateway; the
//! only way state gets into the store is a signed `POST /stripe/webhook` built
//! from a real Stripe payload (`support::stripe`).
//!
//! "Nothing was stored" is observed, not assumed: the user's first request
//! after the rejected delivery reads the store (nothing was cached for them
//! yet), and a later valid delivery of the same event id is `applied`, not a
//! `duplicate`. A change after a cached decision is polled for at most one
//! second (the multi-instance bound in docs/operations.md), which this single
//! instance must meet too.

use crate::support::jwt::{self, token};
use crate::support::stripe::*;
use crate::support::*;
use serde_json::{json, Value};

fn me(user: &str) -> Request {
    get("/_paygate/me").bearer(&token(user))
}

/// When the scenario's events happened: an hour ago, so `created` values
/// are realistic and never in the future.
fn t0() -> i64 {
    jwt::now() - 3600
}

/// Parses an RFC 3339 string from `/me` into unix seconds.
#[track_caller]
fn unix(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 string, got {value}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .unix_timestamp()
}

/// Every request the upstream saw for the webhook path (must stay empty).
fn webhook_arrivals(up: &Upstream) -> Vec<String> {
    up.arrivals()
        .into_iter()
        .filter(|r| r.path().starts_with(WEBHOOK_PATH))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

// ---- signatures ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_400_and_stores_nothing() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let event = checkout_completed("evt_badsig_1", "uma", "cus_uma", "sub_uma", t0());
    let bytes = body(&event);
    let now = jwt::now();

    let wrong_secret = webhook_request(
        &bytes,
        &signature(&bytes, "whsec_not_the_endpoint_secret", now),
    );
    let resp = gw.send(wrong_secret).await;
    assert_error(&resp, 400, "BAD_SIGNATURE");
    assert!(!resp.answered_by_upstream());

    // Nothing was stored: uma's first lookup reads the store and finds nothing...
    assert_error(&gw.send(banking("uma")).await, 402, "CHECKOUT_REQUIRED");
    // ...and the event id was not recorded either.
    apply(&gw, &event).await;
    until_forwarded(&gw, "uma", "uma after the correctly signed checkout").await;
    assert!(
        webhook_arrivals(&up).is_empty(),
        "{:?}",
        webhook_arrivals(&up)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unverifiable_delivery_is_bad_signature() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let event = checkout_completed("evt_unverifiable_1", "vic", "cus_vic", "sub_vic", t0());
    let bytes = body(&event);
    let now = jwt::now();
    let good = v1(&bytes, WHSEC, now);
    let other_body = body(&checkout_completed(
        "evt_other",
        "vic",
        "cus_vic",
        "sub_vic",
        t0(),
    ));

    let mut tampered = bytes.clone();
    // Same length, one byte changed inside the client_reference_id.
    let at = String::from_utf8_lossy(&tampered).find("\"vic\"").unwrap() + 1;
    tampered[at] = b'w';

    let cases: Vec<(&str, Request)> = vec![
        (
            "no Stripe-Signature header",
            post(WEBHOOK_PATH, bytes.clone()),
        ),
        ("empty header", webhook_request(&bytes, "")),
        ("garbage header", webhook_request(&bytes, "not a signature")),
        ("no t=", webhook_request(&bytes, &format!("v1={good}"))),
        (
            "only a v0 signature",
            webhook_request(&bytes, &format!("t={now},v0={good}")),
        ),
        (
            "signature of another body",
            webhook_request(
                &bytes,
                &format!("t={now},v1={}", v1(&other_body, WHSEC, now)),
            ),
        ),
        (
            "body changed after signing",
            webhook_request(&tampered, &format!("t={now},v1={good}")),
        ),
        (
            "t changed after signing",
            webhook_request(&bytes, &format!("t={},v1={good}", now - 1)),
        ),
        (
            "truncated signature",
            webhook_request(&bytes, &format!("t={now},v1={}", &good[..32])),
        ),
    ];
    for (what, req) in cases {
        let resp = gw.send(req).await;
        assert_eq!(resp.status, 400, "{what}: {:?}", resp.text());
        assert_eq!(
            resp.json()["code"],
            "BAD_SIGNATURE",
            "{what}: {:?}",
            resp.text()
        );
    }

    assert_error(&gw.send(banking("vic")).await, 402, "CHECKOUT_REQUIRED");
    apply(&gw, &event).await;
    until_forwarded(&gw, "vic", "vic after the valid delivery").await;
    assert!(
        webhook_arrivals(&up).is_empty(),
        "{:?}",
        webhook_arrivals(&up)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_outside_tolerance_is_bad_signature() {
    let (_redis, _up, gw) = redis_world(|c| c.set_str("stripe.tolerance", "5m")).await;
    let event = checkout_completed("evt_stale_1", "sam", "cus_sam", "sub_sam", t0());
    let bytes = body(&event);
    let now = jwt::now();

    // A genuine signature, replayed six minutes later.
    let stale = now - 360;
    let resp = gw
        .send(webhook_request(
            &bytes,
            &format!("t={stale},v1={}", v1(&bytes, WHSEC, stale)),
        ))
        .await;
    assert_error(&resp, 400, "BAD_SIGNATURE");
    // paygate is stricter than the SDKs: a timestamp far in the future fails too.
    let future = now + 360;
    let resp = gw
        .send(webhook_request(
            &bytes,
            &format!("t={future},v1={}", v1(&bytes, WHSEC, future)),
        ))
        .await;
    assert_error(&resp, 400, "BAD_SIGNATURE");
    assert_error(&gw.send(banking("sam")).await, 402, "CHECKOUT_REQUIRED");

    // Four minutes old is inside the tolerance.
    let recent = now - 240;
    let resp = gw
        .send(webhook_request(
            &bytes,
            &format!("t={recent},v1={}", v1(&bytes, WHSEC, recent)),
        ))
        .await;
    assert_ack(&resp, "applied");
    until_forwarded(&gw, "sam", "sam after the in-tolerance delivery").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_with_two_v1_signatures_verifies_when_either_matches() {
    // While Stripe rolls an endpoint secret it signs with both the old and the
    // new one; the gateway may know only one of them.
    let (_redis, _up, gw) = redis_world(|c| c).await;
    let now = jwt::now();
    let old = "whsec_rolled_away_0000000000000000";

    let first = body(&checkout_completed(
        "evt_roll_1",
        "rae",
        "cus_rae",
        "sub_rae",
        t0(),
    ));
    let header = format!(
        "t={now},v1={},v1={}",
        v1(&first, old, now),
        v1(&first, WHSEC, now)
    );
    assert_ack(&gw.send(webhook_request(&first, &header)).await, "applied");

    let second = body(&checkout_completed(
        "evt_roll_2",
        "rob",
        "cus_rob",
        "sub_rob",
        t0(),
    ));
    let header = format!(
        "t={now},v1={},v0=deadbeef,v1={}",
        v1(&second, WHSEC, now),
        v1(&second, old, now)
    );
    assert_ack(&gw.send(webhook_request(&second, &header)).await, "applied");

    let third = body(&checkout_completed(
        "evt_roll_3",
        "rex",
        "cus_rex",
        "sub_rex",
        t0(),
    ));
    let header = format!(
        "t={now},v1={},v1={}",
        v1(&third, old, now),
        v1(&third, "whsec_other", now)
    );
    assert_error(
        &gw.send(webhook_request(&third, &header)).await,
        400,
        "BAD_SIGNATURE",
    );

    until_forwarded(&gw, "rae", "rae").await;
    until_forwarded(&gw, "rob", "rob").await;
    assert_error(&gw.send(banking("rex")).await, 402, "CHECKOUT_REQUIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_configured_secret_verifies_during_rotation() {
    // Two endpoint secrets from the environment, comma-separated
    // (docs/configuration.md, "Secrets and the environment").
    let (_redis, _up, gw) = redis_world(|c| {
        c.unset("stripe.webhook_secret")
            .set_str("stripe.webhook_secret_env", "PAYGATE_E2E_WHSEC")
            .env(
                "PAYGATE_E2E_WHSEC",
                "whsec_before_rotation_aaaa,whsec_after_rotation_bbbb",
            )
    })
    .await;
    let now = jwt::now();
    let signed_with = |event: &Value, secret: &str| {
        let bytes = body(event);
        webhook_request(&bytes, &signature(&bytes, secret, now))
    };

    let a = checkout_completed("evt_rot_a", "ada", "cus_ada", "sub_ada", t0());
    assert_ack(
        &gw.send(signed_with(&a, "whsec_before_rotation_aaaa")).await,
        "applied",
    );
    let b = checkout_completed("evt_rot_b", "ben", "cus_ben", "sub_ben", t0());
    assert_ack(
        &gw.send(signed_with(&b, "whsec_after_rotation_bbbb")).await,
        "applied",
    );
    // The file's default secret is not configured here.
    let c = checkout_completed("evt_rot_c", "cy", "cus_cy", "sub_cy", t0());
    assert_error(&gw.send(signed_with(&c, WHSEC)).await, 400, "BAD_SIGNATURE");
    // The two secrets joined by the comma are not a secret either.
    let joined = "whsec_before_rotation_aaaa,whsec_after_rotation_bbbb";
    assert_error(
        &gw.send(signed_with(&c, joined)).await,
        400,
        "BAD_SIGNATURE",
    );

    until_forwarded(&gw, "ada", "ada").await;
    until_forwarded(&gw, "ben", "ben").await;
    assert_error(&gw.send(banking("cy")).await, 402, "CHECKOUT_REQUIRED");
}

// ---- what a body must be ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_body_that_is_not_a_json_event_is_bad_payload() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let truncated = {
        let full = body(&checkout_completed(
            "evt_trunc",
            "tom",
            "cus_tom",
            "sub_tom",
            t0(),
        ));
        full[..full.len() / 2].to_vec()
    };
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("plain text", b"hello stripe".to_vec()),
        (
            "form-encoded",
            b"id=evt_1&type=checkout.session.completed".to_vec(),
        ),
        ("truncated JSON", truncated),
        ("not UTF-8", vec![0xff, 0xfe, 0x7b, 0x7d]),
        ("a JSON array", b"[1, 2, 3]".to_vec()),
        ("a JSON string", b"\"evt_1\"".to_vec()),
        (
            "a customer, not an event",
            serde_json::to_vec(&fixture("openapi-fixtures3.customer.json")).unwrap(),
        ),
        ("empty body", Vec::new()),
    ];
    for (what, bytes) in bodies {
        let resp = gw.send(signed(&bytes)).await;
        assert_eq!(resp.status, 400, "{what}: {:?}", resp.text());
        assert_eq!(
            resp.json()["code"],
            "BAD_PAYLOAD",
            "{what}: {:?}",
            resp.text()
        );
        assert!(!resp.answered_by_upstream(), "{what}");
    }
    assert_error(&gw.send(banking("tom")).await, 402, "CHECKOUT_REQUIRED");
    assert!(
        webhook_arrivals(&up).is_empty(),
        "{:?}",
        webhook_arrivals(&up)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_and_not_applied() {
    let (_redis, up, gw) = redis_world(|c| c.set_str("stripe.max_body", "16KiB")).await;
    let event = checkout_completed("evt_big_1", "bea", "cus_bea", "sub_bea", t0());
    let mut padded = event.clone();
    // Stripe never sends this field; it only makes a correctly signed body big.
    padded["data"]["object"]["metadata"]["padding"] = json!("x".repeat(32 * 1024));
    let bytes = body(&padded);
    assert!(bytes.len() > 16 * 1024);

    // Declared with Content-Length...
    let resp = gw.send(signed(&bytes)).await;
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE");

    // ...and chunked, where only counting can tell.
    let mut chunked = Vec::new();
    for chunk in bytes.chunks(4096) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let signature = signature(&bytes, WHSEC, jwt::now());
    let req = Request {
        method: "POST".into(),
        target: WEBHOOK_PATH.into(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("Transfer-Encoding".into(), "chunked".into()),
            ("Stripe-Signature".into(), signature),
        ],
        body: chunked,
    };
    let resp = gw.send(req).await;
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE");

    assert_error(&gw.send(banking("bea")).await, 402, "CHECKOUT_REQUIRED");
    // The same event at its real size is under the limit, and was never recorded.
    assert!(body(&event).len() < 16 * 1024);
    apply(&gw, &event).await;
    until_forwarded(&gw, "bea", "bea after the normal-size delivery").await;
    assert!(
        webhook_arrivals(&up).is_empty(),
        "{:?}",
        webhook_arrivals(&up)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_event_types_are_acknowledged_and_ignored() {
    let (_redis, up, gw) = redis_world(|c| c).await;

    // A type paygate has no use for, as Stripe sends it.
    let mut plan = fixture("openapi-fixtures3.event.json");
    plan["created"] = json!(t0());
    assert_ack(&deliver(&gw, &plan).await, "ignored");

    // A checkout event of another type must not link or grant anything.
    let mut expired = checkout_completed("evt_expired_1", "eve", "cus_eve", "sub_eve", t0());
    expired["type"] = json!("checkout.session.expired");
    assert_ack(&deliver(&gw, &expired).await, "ignored");
    let mut async_ok = checkout_completed("evt_async_1", "eve", "cus_eve", "sub_eve", t0());
    async_ok["type"] = json!("some.future.event_type");
    assert_ack(&deliver(&gw, &async_ok).await, "ignored");

    assert_error(&gw.send(banking("eve")).await, 402, "CHECKOUT_REQUIRED");
    assert!(
        webhook_arrivals(&up).is_empty(),
        "{:?}",
        webhook_arrivals(&up)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_events_change_no_access() {
    let (_redis, _up, gw) = redis_world(|c| c).await;
    let t = t0();
    apply(
        &gw,
        &checkout_completed("evt_inv_co", "ivy", "cus_ivy", "sub_ivy", t),
    )
    .await;
    apply(
        &gw,
        &subscription_deleted("evt_inv_del", "sub_ivy", "cus_ivy", t + 10),
    )
    .await;
    // A later paid invoice for the canceled subscription does not revive it.
    assert_ack(
        &deliver(
            &gw,
            &invoice_paid("evt_inv_paid", "cus_ivy", "sub_ivy", t + 20),
        )
        .await,
        "ignored",
    );
    let body = assert_error(&gw.send(banking("ivy")).await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_path_only_accepts_post() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    for method in ["GET", "PUT", "DELETE"] {
        let resp = gw.send(request(method, WEBHOOK_PATH)).await;
        assert_eq!(resp.status, 405, "{method}: {:?}", resp.text());
        assert!(!resp.answered_by_upstream(), "{method}");
    }
    gw.assert_nothing_forwarded(&up).await;
}

// ---- the seed flow ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_subscription_and_deletion_drive_access() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let t = t0();
    // Never subscribed: checkout required.
    let resp = gw.send(banking("u_1001")).await;
    let denied = assert_error(&resp, 402, "CHECKOUT_REQUIRED");
    assert_eq!(denied["redirect"], "/checkout");

    // Back from Checkout: the session links the user and lets them in at once,
    // before any subscription event arrived.
    apply(
        &gw,
        &checkout_completed("evt_seed_checkout", "u_1001", "cus_seed", "sub_seed", t),
    )
    .await;
    until_forwarded(
        &gw,
        "u_1001",
        "access right after checkout.session.completed",
    )
    .await;
    let got = up.requests().last().cloned().unwrap();
    assert_eq!(got.header_all("x-user-id"), ["u_1001"]);
    assert_eq!(got.header_all("x-subscription-status"), ["active"]);

    apply(
        &gw,
        &subscription_event(
            "created",
            "evt_seed_created",
            "sub_seed",
            "cus_seed",
            "active",
            t + 1,
        ),
    )
    .await;
    let got = forwarded(&gw, &up, banking("u_1001")).await;
    assert_eq!(got.header_all("x-user-id"), ["u_1001"]);
    assert_eq!(got.header_all("x-subscription-status"), ["active"]);

    apply(
        &gw,
        &subscription_deleted("evt_seed_deleted", "sub_seed", "cus_seed", t + 100),
    )
    .await;
    let body =
        until_subscription_required(&gw, "u_1001", "402 after customer.subscription.deleted").await;
    assert_eq!(body["error"], "Active subscription required");
    assert_eq!(body["status"], "canceled");
    assert_eq!(body["redirect"], "/subscription/expired");

    let me = gw.send(me("u_1001")).await;
    assert_eq!(me.status, 200, "{:?}", me.text());
    assert_eq!(me.json()["status"], "canceled");

    // Only the three granted requests and the barrier reached the application.
    let seen: Vec<String> = gw
        .barrier(&up)
        .await
        .iter()
        .map(|r| r.path().to_string())
        .collect();
    assert!(
        seen.iter().all(|p| p == "/api/banking/accounts"),
        "{seen:?}"
    );
    assert!(
        webhook_arrivals(&up).is_empty(),
        "{:?}",
        webhook_arrivals(&up)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trialing_subscription_grants_access_and_me_shows_the_trial() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let t = t0();
    let trial_start = t + 1;
    let trial_end = t + 14 * 86_400;
    apply(
        &gw,
        &checkout_completed("evt_trial_checkout", "tia", "cus_tia", "sub_tia", t),
    )
    .await;
    let mut created = subscription_event(
        "created",
        "evt_trial_created",
        "sub_tia",
        "cus_tia",
        "trialing",
        t + 1,
    );
    created["data"]["object"]["trial_start"] = json!(trial_start);
    created["data"]["object"]["trial_end"] = json!(trial_end);
    apply(&gw, &created).await;

    until_forwarded(&gw, "tia", "trialing access").await;
    let got = up.requests().last().cloned().unwrap();
    assert_eq!(got.header_all("x-user-id"), ["tia"]);
    assert_eq!(got.header_all("x-subscription-status"), ["trialing"]);

    let me_resp = gw.send(me("tia")).await;
    assert_eq!(me_resp.status, 200, "{:?}", me_resp.text());
    let plan = me_resp.json();
    assert_eq!(plan["status"], "trialing", "{plan}");
    assert_eq!(unix(&plan["trial_end"]), trial_end, "{plan}");
    assert_eq!(plan["has_used_trial"], true, "{plan}");
    assert_eq!(unix(&plan["first_trial_at"]), trial_start, "{plan}");

    // The trial converts: access stays, and the trial is remembered for good.
    let mut converted = subscription_event(
        "updated",
        "evt_trial_converted",
        "sub_tia",
        "cus_tia",
        "active",
        trial_end,
    );
    converted["data"]["object"]["trial_start"] = json!(trial_start);
    converted["data"]["object"]["trial_end"] = json!(trial_end);
    apply(&gw, &converted).await;
    let plan = until(
        &gw,
        VISIBLE_WITHIN,
        "/me shows active after the conversion",
        || me("tia"),
        |r| r.status == 200 && r.json()["status"] == "active",
    )
    .await
    .json();
    assert_eq!(plan["has_used_trial"], true, "{plan}");
    assert_eq!(unix(&plan["first_trial_at"]), trial_start, "{plan}");
    forwarded(&gw, &up, banking("tia")).await;
}

// ---- duplicates and ordering ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_is_a_noop() {
    let (_redis, _up, gw) = redis_world(|c| c).await;
    let t = t0();
    let checkout = checkout_completed("evt_dup_checkout", "dan", "cus_dan", "sub_dan", t);
    apply(&gw, &checkout).await;
    assert_ack(&deliver(&gw, &checkout).await, "duplicate");
    until_forwarded(&gw, "dan", "dan after checkout").await;

    let created = subscription_event(
        "created",
        "evt_dup_created",
        "sub_dan",
        "cus_dan",
        "active",
        t + 1,
    );
    apply(&gw, &created).await;
    apply(
        &gw,
        &subscription_deleted("evt_dup_deleted", "sub_dan", "cus_dan", t + 50),
    )
    .await;
    until_subscription_required(&gw, "dan", "dan after deletion").await;
    // Stripe redelivers the old `created` (at-least-once): nothing changes.
    assert_ack(&deliver(&gw, &created).await, "duplicate");
    assert_ack(&deliver(&gw, &checkout).await, "duplicate");
    let body = assert_error(&gw.send(banking("dan")).await, 402, "SUBSCRIPTION_REQUIRED");
    assert_eq!(body["status"], "canceled");

    // Idempotency is by event id: a second body under an applied id does nothing.
    let mut same_id =
        checkout_completed("evt_dup_checkout", "dora", "cus_dora", "sub_dora", t + 60);
    same_id["data"]["object"]["id"] = json!("cs_test_other_session");
    assert_ack(&deliver(&gw, &same_id).await, "duplicate");
    assert_error(&gw.send(banking("dora")).await, 402, "CHECKOUT_REQUIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_event_never_overwrites_newer() {
    let (_redis, _up, gw) = redis_world(|c| c).await;
    let t = t0();
    // Delivered newest first; the user is not looked at until all arrived, so
    // the decision comes from the store, not from a cache.
    apply(
        &gw,
        &subscription_deleted("evt_ooo_deleted", "sub_olly", "cus_olly", t + 300),
    )
    .await;
    apply(
        &gw,
        &subscription_event(
            "updated",
            "evt_ooo_updated",
            "sub_olly",
            "cus_olly",
            "active",
            t + 200,
        ),
    )
    .await;
    apply(
        &gw,
        &subscription_event(
            "created",
            "evt_ooo_created",
            "sub_olly",
            "cus_olly",
            "incomplete",
            t + 100,
        ),
    )
    .await;
    apply(
        &gw,
        &checkout_completed("evt_ooo_checkout", "olly", "cus_olly", "sub_olly", t + 90),
    )
    .await;
    let body = assert_error(
        &gw.send(banking("olly")).await,
        402,
        "SUBSCRIPTION_REQUIRED",
    );
    assert_eq!(body["status"], "canceled");

    // A newer state of lower lifecycle rank still wins over an older one: a
    // payment failure that was later recovered, delivered newest first.
    let pat = |id: &str, status: &str, at: i64| {
        subscription_event("updated", id, "sub_pat", "cus_pat", status, at)
    };
    apply(&gw, &pat("evt_pat_recovered", "active", t + 200)).await;
    apply(&gw, &pat("evt_pat_failed", "past_due", t + 100)).await;
    apply(&gw, &pat("evt_pat_unpaid", "unpaid", t + 150)).await;
    apply(
        &gw,
        &checkout_completed("evt_pat_checkout", "pat", "cus_pat", "sub_pat", t),
    )
    .await;
    let got = gw.send(banking("pat")).await;
    assert!(
        is_forwarded(&got),
        "active (newest) must win over older past_due/unpaid: {} {:?}",
        got.status,
        got.text()
    );

    // Same second: the later lifecycle state wins whatever the delivery order.
    apply(
        &gw,
        &checkout_completed("evt_tie_checkout", "tess", "cus_tess", "sub_tess", t),
    )
    .await;
    apply(
        &gw,
        &subscription_event(
            "updated",
            "evt_tie_active",
            "sub_tess",
            "cus_tess",
            "active",
            t + 5,
        ),
    )
    .await;
    apply(
        &gw,
        &subscription_event(
            "created",
            "evt_tie_incomplete",
            "sub_tess",
            "cus_tess",
            "incomplete",
            t + 5,
        ),
    )
    .await;
    let got = until_forwarded(
        &gw,
        "tess",
        "incomplete and active in one second end active",
    )
    .await;
    assert!(is_forwarded(&got));

    apply(
        &gw,
        &subscription_deleted("evt_tie_canceled", "sub_tess", "cus_tess", t + 9),
    )
    .await;
    apply(
        &gw,
        &subscription_event(
            "updated",
            "evt_tie_active_again",
            "sub_tess",
            "cus_tess",
            "active",
            t + 9,
        ),
    )
    .await;
    let body = until_subscription_required(&gw, "tess", "a same-second cancel ends canceled").await;
    assert_eq!(body["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_delivery_order_with_duplicates_ends_in_the_same_state() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let t = t0();
    // The lifecycle: checkout, created incomplete and updated active in the same
    // second, a payment failure, then paid again. In order it ends `active`.
    let events = |user: &str| -> Vec<Value> {
        let (cus, sub) = (format!("cus_{user}"), format!("sub_{user}"));
        vec![
            checkout_completed(&format!("evt_{user}_0"), user, &cus, &sub, t),
            subscription_event(
                "created",
                &format!("evt_{user}_1"),
                &sub,
                &cus,
                "incomplete",
                t + 1,
            ),
            subscription_event(
                "updated",
                &format!("evt_{user}_2"),
                &sub,
                &cus,
                "active",
                t + 1,
            ),
            subscription_event(
                "updated",
                &format!("evt_{user}_3"),
                &sub,
                &cus,
                "past_due",
                t + 30,
            ),
            subscription_event(
                "updated",
                &format!("evt_{user}_4"),
                &sub,
                &cus,
                "active",
                t + 60,
            ),
        ]
    };
    let orders: [&[usize]; 6] = [
        &[0, 1, 2, 3, 4],
        &[4, 3, 2, 1, 0],
        &[2, 1, 4, 0, 3, 2, 4],
        &[3, 0, 4, 1, 2, 3],
        &[1, 4, 1, 2, 0, 3, 0],
        &[4, 2, 0, 3, 1, 4, 3, 2, 1, 0],
    ];
    for (n, order) in orders.iter().enumerate() {
        let user = format!("perm{n}");
        let events = events(&user);
        let mut delivered = std::collections::HashSet::new();
        for &i in order.iter() {
            let resp = deliver(&gw, &events[i]).await;
            let expected = if delivered.insert(i) {
                "applied"
            } else {
                "duplicate"
            };
            assert_ack(&resp, expected);
        }
        let got = forwarded(&gw, &up, banking(&user)).await;
        assert_eq!(
            got.header_all("x-user-id"),
            [user.as_str()],
            "order {order:?}"
        );
        assert_eq!(
            got.header_all("x-subscription-status"),
            ["active"],
            "order {order:?}"
        );
    }
}

// ---- linking ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_event_before_the_link_counts_once_the_link_arrives() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let t = t0();
    apply(
        &gw,
        &subscription_event(
            "created",
            "evt_early_created",
            "sub_lou",
            "cus_lou",
            "active",
            t,
        ),
    )
    .await;
    // Nothing links cus_lou to lou yet.
    assert_error(&gw.send(banking("lou")).await, 402, "CHECKOUT_REQUIRED");

    apply(
        &gw,
        &customer_updated("evt_early_link", "cus_lou", Some("lou"), t + 5),
    )
    .await;
    until_forwarded(&gw, "lou", "lou once customer metadata links cus_lou").await;
    let got = up.requests().last().cloned().unwrap();
    assert_eq!(got.header_all("x-user-id"), ["lou"]);
    assert_eq!(got.header_all("x-subscription-status"), ["active"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_on_the_subscription_or_customer_links_the_user() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let t = t0();
    // `subscription_data.metadata.user_id` set through Checkout (the
    // basil-shape sample).
    let sample = basil_subscription_event(
        "evt_meta_sub",
        "sub_mia",
        "cus_mia",
        "active",
        t,
        Some("mia"),
    );
    assert_ack(&gw.send(signed(&body(&sample))).await, "applied");
    let got = forwarded(&gw, &up, banking("mia")).await;
    assert_eq!(got.header_all("x-user-id"), ["mia"]);

    // dj-stripe's key on the customer, the second of `user_metadata_keys`.
    apply(
        &gw,
        &subscription_event(
            "created",
            "evt_meta_dj_sub",
            "sub_dj",
            "cus_dj",
            "active",
            t,
        ),
    )
    .await;
    let mut customer = customer_updated("evt_meta_dj_cus", "cus_dj", None, t + 1);
    customer["data"]["object"]["metadata"] = json!({"djstripe_subscriber": "42"});
    apply(&gw, &customer).await;
    let got = forwarded(&gw, &up, banking("42")).await;
    assert_eq!(got.header_all("x-user-id"), ["42"]);

    // A metadata key not in `user_metadata_keys` links nobody.
    apply(
        &gw,
        &subscription_event(
            "created",
            "evt_meta_other_sub",
            "sub_nn",
            "cus_nn",
            "active",
            t,
        ),
    )
    .await;
    let mut customer = customer_updated("evt_meta_other_cus", "cus_nn", None, t + 1);
    customer["data"]["object"]["metadata"] = json!({"account": "nina"});
    apply(&gw, &customer).await;
    assert_error(&gw.send(banking("nina")).await, 402, "CHECKOUT_REQUIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_customer_makes_the_user_subscription_required_canceled() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let t = t0();
    apply(
        &gw,
        &checkout_completed("evt_cd_checkout", "cody", "cus_cody", "sub_cody", t),
    )
    .await;
    apply(
        &gw,
        &subscription_event(
            "created",
            "evt_cd_created",
            "sub_cody",
            "cus_cody",
            "active",
            t + 1,
        ),
    )
    .await;
    forwarded(&gw, &up, banking("cody")).await;

    apply(
        &gw,
        &customer_deleted("evt_cd_deleted", "cus_cody", t + 100),
    )
    .await;
    let body = until_subscription_required(&gw, "cody", "402 after customer.deleted").await;
    assert_eq!(body["status"], "canceled");
    let me_resp = gw.send(me("cody")).await;
    assert_eq!(me_resp.status, 200, "{:?}", me_resp.text());
    assert_eq!(me_resp.json()["status"], "canceled");
}

// ---- features, modes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entitlement_summary_grants_the_feature_route() {
    let (_redis, up, gw) = redis_world(|c| c).await;
    let t = t0();
    apply(
        &gw,
        &checkout_completed("evt_ent_checkout", "fay", "cus_fay", "sub_fay", t),
    )
    .await;
    apply(
        &gw,
        &subscription_event(
            "created",
            "evt_ent_created",
            "sub_fay",
            "cus_fay",
            "active",
            t + 1,
        ),
    )
    .await;
    let body = assert_error(&gw.send(export("fay")).await, 402, "UPGRADE_REQUIRED");
    assert_eq!(body["feature"], "export");

    apply(
        &gw,
        &entitlement_summary("evt_ent_summary_1", "cus_fay", &["export", "charts"], t + 2),
    )
    .await;
    until(
        &gw,
        VISIBLE_WITHIN,
        "export after the entitlement summary",
        || export("fay"),
        is_forwarded,
    )
    .await;
    let got = up.requests().last().cloned().unwrap();
    assert_eq!(got.path(), "/api/reports/export");
    assert_eq!(got.header_all("x-user-id"), ["fay"]);
    let mut features = comma_list(got.header("x-entitlements").expect("X-Entitlements set"));
    features.sort();
    assert_eq!(features, ["charts", "export"]);
    let plan = gw.send(me("fay")).await.json();
    let mut shown: Vec<String> = serde_json::from_value(plan["features"].clone()).unwrap();
    shown.sort();
    assert_eq!(shown, ["charts", "export"], "{plan}");

    // A later summary replaces the list: the feature is gone again.
    apply(
        &gw,
        &entitlement_summary("evt_ent_summary_2", "cus_fay", &["charts"], t + 3),
    )
    .await;
    let resp = until(
        &gw,
        VISIBLE_WITHIN,
        "export refused after the feature was removed",
        || export("fay"),
        is_denied(402, "UPGRADE_REQUIRED"),
    )
    .await;
    assert_eq!(
        assert_error(&resp, 402, "UPGRADE_REQUIRED")["feature"],
        "export"
    );
    // An older summary, delivered late, does not bring it back.
    apply(
        &gw,
        &entitlement_summary("evt_ent_summary_0", "cus_fay", &["export"], t + 1),
    )
    .await;
    assert_error(&gw.send(export("fay")).await, 402, "UPGRADE_REQUIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_of_the_other_mode_is_acknowledged_and_ignored() {
    let (_redis, _up, gw) = redis_world(|c| c.set("stripe.livemode", "true")).await;
    let t = t0();
    // A test-mode event reaching the live endpoint.
    let test_mode = checkout_completed("evt_mode_test", "lena", "cus_lena", "sub_lena", t);
    assert_eq!(test_mode["livemode"], false);
    assert_ack(&deliver(&gw, &test_mode).await, "other_mode");
    assert_error(&gw.send(banking("lena")).await, 402, "CHECKOUT_REQUIRED");

    let mut live = checkout_completed("evt_mode_live", "lena", "cus_lena", "sub_lena", t);
    live["livemode"] = json!(true);
    live["data"]["object"]["livemode"] = json!(true);
    assert_ack(&deliver(&gw, &live).await, "applied");
    until_forwarded(&gw, "lena", "lena after the live-mode checkout").await;

    // A test-mode cancellation does not touch the live subscription.
    let mut test_cancel =
        subscription_deleted("evt_mode_test_cancel", "sub_lena", "cus_lena", t + 100);
    test_cancel["livemode"] = json!(false);
    assert_ack(&deliver(&gw, &test_cancel).await, "other_mode");
    let mut live_summary =
        entitlement_summary("evt_mode_live_summary", "cus_lena", &["export"], t + 101);
    live_summary["livemode"] = json!(true);
    apply(&gw, &live_summary).await;
    // The summary changed lena's record, so this read is not a cached one.
    until(
        &gw,
        VISIBLE_WITHIN,
        "export after the live summary",
        || export("lena"),
        is_forwarded,
    )
    .await;
    let got = gw.send(banking("lena")).await;
    assert!(is_forwarded(&got), "{} {:?}", got.status, got.text());
}
