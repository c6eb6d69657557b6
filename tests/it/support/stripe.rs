//! Stripe webhook deliveries for the tests: real payloads with the ids a test chooses, signed as Stripe signs them.
//!
//! Every event starts from a file in `tests/fixtures/stripe/` (captured or
//! documented Stripe payloads, see its PROVENANCE.json), and only the fields a
//! scenario is about are overwritten: event id, `created`, `livemode`, the
//! customer, subscription and user ids, the status. So the gateway always sees
//! full-size, realistic bodies, and a test still controls exactly who is linked
//! to what and in which order things happened.
//!
//! Signing is done here, independently of paygate's own verifier, exactly as
//! Stripe documents it ([`signature`]); [`v1`] is the bare tag for tests that
//! assemble a header by hand (rotation, stale timestamps).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::{sleep, Instant};

use super::gateway::{Config, Gateway};
use super::jwt;
use super::raw::{self, RawResponse, Request};

/// The endpoint secret every Redis test config uses (`stripe.webhook_secret`).
pub(crate) const WHSEC: &str = "whsec_paygate_e2e_5f1c0a9b7d3e4f2a8c6b";

/// `stripe.webhook_path` in every test config.
pub(crate) const WEBHOOK_PATH: &str = "/stripe/webhook";

/// `config` with its store on the Redis at `redis_url` (no seed file: only
/// webhooks put state there) and a `[stripe]` section verifying with [`WHSEC`].
pub(crate) fn with_redis_and_stripe(config: Config, redis_url: &str) -> Config {
    config
        .users(None)
        .set_str("store.redis_url", redis_url)
        .set_str("store.key_prefix", "e2e:")
        .set_str("stripe.webhook_path", WEBHOOK_PATH)
        .set_str("stripe.webhook_secret", WHSEC)
        .set_str("stripe.tolerance", "5m")
        .set_str("stripe.max_body", "2MiB")
        .set(
            "stripe.user_metadata_keys",
            r#"["user_id", "djstripe_subscriber"]"#,
        )
}

/// `config` (on the memory store) with a `[stripe]` section verifying with
/// [`WHSEC`] and user ids from `metadata.user_id`.
pub(crate) fn with_stripe(config: Config) -> Config {
    config
        .set_str("stripe.webhook_path", WEBHOOK_PATH)
        .set_str("stripe.webhook_secret", WHSEC)
        .set_str("stripe.tolerance", "5m")
        .set("stripe.user_metadata_keys", r#"["user_id"]"#)
}

/// A fixture from `tests/fixtures/stripe/`, parsed.
pub(crate) fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/stripe/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Sets the event envelope fields every scenario controls.
fn envelope(mut event: Value, event_id: &str, created: i64) -> Value {
    event["id"] = json!(event_id);
    event["created"] = json!(created);
    event["livemode"] = json!(false);
    event["data"]["object"]["livemode"] = json!(false);
    event
}

/// `checkout.session.completed` in `subscription` mode, paid, linking `user`
/// (as `client_reference_id`) to `customer` and `subscription`. From the
/// captured test-mode session.
pub(crate) fn checkout_completed(
    event_id: &str,
    user: &str,
    customer: &str,
    subscription: &str,
    created: i64,
) -> Value {
    let mut event = envelope(
        fixture("captured.event.checkout.session.completed.subscription-mode.json"),
        event_id,
        created,
    );
    let session = &mut event["data"]["object"];
    session["id"] = json!(format!("cs_test_{event_id}"));
    session["client_reference_id"] = json!(user);
    session["customer"] = json!(customer);
    session["subscription"] = json!(subscription);
    session["metadata"] = json!({});
    session["created"] = json!(created - 60);
    assert_eq!(session["mode"], "subscription");
    assert_eq!(session["payment_status"], "paid");
    event
}

/// `customer.subscription.{action}` (`created`, `updated`, `deleted`, …) for
/// `subscription` of `customer` with `status`, no user metadata. From the
/// stripe-sync-engine `customer.subscription.created` payload (2020-03-02 shape,
/// `current_period_end` on the subscription).
pub(crate) fn subscription_event(
    action: &str,
    event_id: &str,
    subscription: &str,
    customer: &str,
    status: &str,
    created: i64,
) -> Value {
    let mut event = envelope(
        fixture("sync-engine.event.subscription_created.json"),
        event_id,
        created,
    );
    event["type"] = json!(format!("customer.subscription.{action}"));
    let sub = &mut event["data"]["object"];
    sub["id"] = json!(subscription);
    sub["customer"] = json!(customer);
    sub["status"] = json!(status);
    sub["metadata"] = json!({});
    for item in sub["items"]["data"].as_array_mut().unwrap() {
        item["subscription"] = json!(subscription);
    }
    sub["items"]["url"] = json!(format!(
        "/v1/subscription_items?subscription={subscription}"
    ));
    event
}

/// `customer.subscription.updated` in the basil shape (`current_period_end`
/// only on the items), as a Checkout subscription looks: `subscription` of
/// `customer` with `status` and `metadata = {"user_id": user}` (or `{}`). From
/// the constructed basil-shape payload; the subscription's own `created` and
/// its item's `current_period_end` keep the fixture's values, as a
/// subscription's creation time does not change between its events.
pub(crate) fn basil_subscription_event(
    event_id: &str,
    subscription: &str,
    customer: &str,
    status: &str,
    created: i64,
    user: Option<&str>,
) -> Value {
    let mut event = fixture("constructed.event.customer.subscription.updated.basil-shape.json");
    event["id"] = json!(event_id);
    event["created"] = json!(created);
    let sub = &mut event["data"]["object"];
    sub["id"] = json!(subscription);
    sub["customer"] = json!(customer);
    sub["status"] = json!(status);
    sub["metadata"] = match user {
        Some(user) => json!({ "user_id": user }),
        None => json!({}),
    };
    for item in sub["items"]["data"].as_array_mut().unwrap() {
        item["subscription"] = json!(subscription);
    }
    sub["items"]["url"] = json!(format!(
        "/v1/subscription_items?subscription={subscription}"
    ));
    event
}

/// `customer.subscription.deleted` (status `canceled`), from the constructed
/// basil-shape payload (`current_period_end` only on the items), with its
/// `metadata.user_id` removed so it links nobody by itself.
pub(crate) fn subscription_deleted(
    event_id: &str,
    subscription: &str,
    customer: &str,
    created: i64,
) -> Value {
    let mut event = envelope(
        fixture("constructed.event.customer.subscription.deleted.json"),
        event_id,
        created,
    );
    assert_eq!(event["type"], "customer.subscription.deleted");
    let sub = &mut event["data"]["object"];
    sub["id"] = json!(subscription);
    sub["customer"] = json!(customer);
    sub["metadata"] = json!({});
    sub["canceled_at"] = json!(created);
    sub["ended_at"] = json!(created);
    for item in sub["items"]["data"].as_array_mut().unwrap() {
        item["subscription"] = json!(subscription);
    }
    assert_eq!(sub["status"], "canceled");
    event
}

/// `customer.updated` for `customer`, with `metadata.user_id = user` when given.
pub(crate) fn customer_updated(
    event_id: &str,
    customer: &str,
    user: Option<&str>,
    created: i64,
) -> Value {
    let mut event = envelope(
        fixture("sync-engine.event.customer_updated.json"),
        event_id,
        created,
    );
    let object = &mut event["data"]["object"];
    object["id"] = json!(customer);
    object["metadata"] = match user {
        Some(user) => json!({"user_id": user}),
        None => json!({}),
    };
    event
}

/// `customer.deleted` for `customer`.
pub(crate) fn customer_deleted(event_id: &str, customer: &str, created: i64) -> Value {
    let mut event = envelope(
        fixture("sync-engine.event.customer_deleted.json"),
        event_id,
        created,
    );
    assert_eq!(event["type"], "customer.deleted");
    event["data"]["object"]["id"] = json!(customer);
    event
}

/// `entitlements.active_entitlement_summary.updated` giving `customer` exactly
/// the features `lookup_keys`.
pub(crate) fn entitlement_summary(
    event_id: &str,
    customer: &str,
    lookup_keys: &[&str],
    created: i64,
) -> Value {
    let mut event = envelope(
        fixture("sync-engine.event.active_entitlement_summary_updated.json"),
        event_id,
        created,
    );
    let summary = &mut event["data"]["object"];
    summary["customer"] = json!(customer);
    let template = summary["entitlements"]["data"][0].clone();
    let entries: Vec<Value> = lookup_keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut entry = template.clone();
            entry["id"] = json!(format!("ent_test_{event_id}_{i}"));
            entry["lookup_key"] = json!(key);
            entry
        })
        .collect();
    summary["entitlements"]["data"] = json!(entries);
    summary["entitlements"]["has_more"] = json!(false);
    summary["entitlements"]["url"] = json!(format!("/v1/customer/{customer}/entitlements"));
    event
}

/// `invoice.paid` for `subscription` of `customer`.
pub(crate) fn invoice_paid(
    event_id: &str,
    customer: &str,
    subscription: &str,
    created: i64,
) -> Value {
    let mut event = envelope(
        fixture("sync-engine.event.invoice_paid.json"),
        event_id,
        created,
    );
    assert_eq!(event["type"], "invoice.paid");
    let invoice = &mut event["data"]["object"];
    invoice["customer"] = json!(customer);
    invoice["subscription"] = json!(subscription);
    event
}

/// The JSON bytes of an event, as Stripe would send them.
pub(crate) fn body(event: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(event).unwrap()
}

/// The hex `v1` signature of `body` at `t` under `secret`: HMAC-SHA256 keyed
/// with the whole secret (`whsec_` prefix included) over `"{t}.{body}"`.
pub(crate) fn v1(body: &[u8], secret: &str, t: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Stripe-Signature` header Stripe would send for `body` signed at `t`
/// with `secret`: `t={t},v1={hex}`.
pub(crate) fn signature(body: &[u8], secret: &str, t: i64) -> String {
    format!("t={t},v1={}", v1(body, secret, t))
}

/// `POST {WEBHOOK_PATH}` with `body` and a `Stripe-Signature` header as given.
pub(crate) fn webhook_request(body: &[u8], signature: &str) -> Request {
    raw::post(WEBHOOK_PATH, body.to_vec())
        .header("Content-Type", "application/json; charset=utf-8")
        .header(
            "User-Agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .header("Stripe-Signature", signature)
}

/// `body` signed now with [`WHSEC`].
pub(crate) fn signed(body: &[u8]) -> Request {
    webhook_request(body, &signature(body, WHSEC, jwt::now()))
}

/// Delivers `event` signed now with [`WHSEC`].
pub(crate) async fn deliver(gw: &Gateway, event: &Value) -> RawResponse {
    gw.send(signed(&body(event))).await
}

/// Asserts the webhook acknowledgement `200 {"received": true, "result": result}`.
#[track_caller]
pub(crate) fn assert_ack(resp: &RawResponse, result: &str) {
    assert_eq!(
        resp.status,
        200,
        "webhook should be acknowledged ({result}), got {} {:?}",
        resp.status,
        resp.text()
    );
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "acknowledgement is JSON: {:?}",
        resp.headers
    );
    let ack = resp.json();
    assert_eq!(ack["received"], true, "ack: {ack}");
    assert_eq!(ack["result"], result, "ack: {ack}");
    assert!(
        !resp.answered_by_upstream(),
        "the webhook path is never forwarded"
    );
}

/// Delivers `event` and asserts it was `applied`.
pub(crate) async fn apply(gw: &Gateway, event: &Value) {
    let resp = deliver(gw, event).await;
    assert_ack(&resp, "applied");
}

/// Sends `make()` to `gw` until `accept` holds for the response, for at most
/// `limit`; fails with `what` and the last response otherwise. Used for "the
/// decision changes within a second" and for waiting on time-based
/// state, never as a sleep.
pub(crate) async fn until(
    gw: &Gateway,
    limit: Duration,
    what: &str,
    make: impl Fn() -> Request,
    accept: impl Fn(&RawResponse) -> bool,
) -> RawResponse {
    let started = Instant::now();
    let deadline = started + limit;
    loop {
        let resp = gw.send(make()).await;
        let now = Instant::now();
        if accept(&resp) {
            // A response that only arrived after the bound does not meet it.
            assert!(
                now <= deadline,
                "{what}: only after {:?}, the bound is {limit:?}",
                now - started
            );
            return resp;
        }
        if now >= deadline {
            panic!(
                "{what}: not within {limit:?}; last response {} {:?}",
                resp.status,
                resp.text()
            );
        }
        // Polling interval, not a synchronization.
        sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the upstream answered (the request passed the paywall).
pub(crate) fn is_forwarded(resp: &RawResponse) -> bool {
    resp.status == 200 && resp.answered_by_upstream()
}

/// Whether the gateway answered a JSON error with this status and code.
pub(crate) fn is_denied(status: u16, code: &'static str) -> impl Fn(&RawResponse) -> bool {
    move |resp: &RawResponse| {
        resp.status == status
            && !resp.answered_by_upstream()
            && serde_json::from_slice::<Value>(&resp.body).is_ok_and(|b| b["code"] == code)
    }
}

/// A webhook's effect is visible within one second of its `2xx`
/// (docs/operations.md, "Multi-instance invalidation").
pub(crate) const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

/// A request to the plain subscription route `/api/banking`.
pub(crate) fn banking(user: &str) -> Request {
    raw::get("/api/banking/accounts").bearer(&jwt::token(user))
}

/// A request to the feature route (`features = ["export"]`, POST only).
pub(crate) fn export(user: &str) -> Request {
    raw::post("/api/reports/export", "{}").bearer(&jwt::token(user))
}

/// Polls until `user`'s banking request is forwarded, for at most a second.
pub(crate) async fn until_forwarded(gw: &Gateway, user: &str, what: &str) -> RawResponse {
    until(gw, VISIBLE_WITHIN, what, || banking(user), is_forwarded).await
}

/// The `SUBSCRIPTION_REQUIRED` body for `user`, polled for up to a second.
pub(crate) async fn until_subscription_required(gw: &Gateway, user: &str, what: &str) -> Value {
    let resp = until(
        gw,
        VISIBLE_WITHIN,
        what,
        || banking(user),
        is_denied(402, "SUBSCRIPTION_REQUIRED"),
    )
    .await;
    super::assert_error(&resp, 402, "SUBSCRIPTION_REQUIRED")
}
