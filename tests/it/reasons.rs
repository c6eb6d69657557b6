//! Refusals that explain themselves (docs/responses.md, "Why a token was
//! refused"; docs/webhooks.md, "Refusals"): every refused token, paywalled
//! request and webhook delivery is logged at `info` with a `reason` word, never
//! with the token or a secret, and refused deliveries are listed by the admin
//! API with their reason.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::jwt::{self, forge, now, sign, sign_hs};
use crate::support::stripe::{self, with_stripe, WEBHOOK_PATH, WHSEC};
use crate::support::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokio::time::{sleep, Instant};

/// The issuer the gateway is configured with; the provider's tokens say the
/// same without the trailing slash (the case that once gave every caller a
/// `401` and a log that did not say why).
const ISSUER: &str = "http://127.0.0.1:24000/";

/// `admin.token` of the webhook gateway.
const ADMIN_TOKEN: &str = "admin-e2e-token-reasons-0123456789";

/// Every JSON log line so far that satisfies `pred`.
fn lines(gw: &Gateway, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| pred(v))
        .collect()
}

/// Polls the log until a JSON line satisfies `pred`; fails after [`DEADLINE`].
async fn logged(gw: &Gateway, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(line) = lines(gw, &pred).into_iter().next() {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what} in:\n{}",
            gw.log()
        );
        // Polling interval for the log reader thread, not a synchronization.
        sleep(Duration::from_millis(20)).await;
    }
}

/// The `token refused` line with `reason`.
async fn token_refusal(gw: &Gateway, reason: &str) -> Value {
    logged(gw, &format!("`token refused` reason={reason}"), |v| {
        v["target"] == "paygate::auth" && v["message"] == "token refused" && v["reason"] == reason
    })
    .await
}

/// Valid claims for this gateway's issuer and audience, with `change` applied
/// (a `null` removes the claim).
fn claims_with(change: Value) -> Value {
    let mut claims = json!({
        "sub": "alice", "iat": now(), "exp": now() + 3600, "iss": ISSUER, "aud": "api"
    });
    for (k, v) in change.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_refusal_is_logged_with_its_reason_and_never_the_token() {
    let (_up, gw) = world(|c| {
        c.set_str("log.format", "json")
            .set_str("jwt.issuer", ISSUER)
            .set_str("jwt.audience", "api")
            .set("jwt.algorithms", r#"["HS256", "RS256"]"#)
            // Nothing listens there: the key set stays empty, so every kid is unknown.
            .set_str("jwt.jwks_url", "http://127.0.0.1:9/jwks.json")
    })
    .await;
    let good = sign(&claims_with(json!({})));
    let resp = gw.send(get("/api/banking").bearer(&good)).await;
    assert_eq!(
        resp.status,
        200,
        "the valid token passes: {:?}",
        resp.text()
    );

    // The signature's first character changes: every one of its bits counts
    // (the last one's low bits are padding, so changing it may change nothing).
    let signed = sign(&claims_with(json!({"sub": "bob"})));
    let at = signed.rfind('.').unwrap() + 1;
    let wrong = if signed[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{wrong}{}", &signed[..at], &signed[at + 1..]);
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "UNAUTHENTICATED"),
        (
            "malformed",
            Some("not.a-token".to_string()),
            "INVALID_TOKEN",
        ),
        (
            "expired",
            Some(sign(&claims_with(json!({"exp": now() - 3600})))),
            "TOKEN_EXPIRED",
        ),
        (
            "not_yet_valid",
            Some(sign(&claims_with(json!({"nbf": now() + 3600})))),
            "INVALID_TOKEN",
        ),
        ("bad_signature", Some(tampered), "INVALID_TOKEN"),
        (
            "alg_not_allowed",
            Some(sign_hs(
                Algorithm::HS384,
                jwt::SECRET.as_bytes(),
                &claims_with(json!({})),
            )),
            "INVALID_TOKEN",
        ),
        (
            "unknown_kid",
            Some(forge(
                &json!({"alg": "RS256", "kid": "kid-nobody-knows"}),
                &claims_with(json!({})),
                b"not a signature",
            )),
            "INVALID_TOKEN",
        ),
        (
            "issuer_mismatch",
            Some(sign(&claims_with(json!({"iss": "http://127.0.0.1:24000"})))),
            "INVALID_TOKEN",
        ),
        (
            "audience_mismatch",
            Some(sign(&claims_with(json!({"aud": "web"})))),
            "INVALID_TOKEN",
        ),
        (
            "user_claim_invalid",
            Some(sign(&claims_with(json!({"sub": "al ice"})))),
            "INVALID_TOKEN",
        ),
    ];
    let mut tokens = vec![good];
    for (reason, token, code) in cases {
        let mut req = get("/api/banking");
        if let Some(token) = &token {
            req = req.bearer(token);
            tokens.push(token.clone());
        }
        let resp = gw.send(req).await;
        assert_error(&resp, 401, code);
        let line = token_refusal(&gw, reason).await;
        assert_eq!(line["level"], "INFO", "{line}");
    }

    // Both issuers, so a trailing slash is visible at a glance.
    let issuer = token_refusal(&gw, "issuer_mismatch").await;
    assert_eq!(
        issuer["detail"], r#"expected="http://127.0.0.1:24000/" got="http://127.0.0.1:24000""#,
        "{issuer}"
    );
    let audience = token_refusal(&gw, "audience_mismatch").await;
    assert_eq!(audience["detail"], r#"expected="api" got="web""#);
    let alg = token_refusal(&gw, "alg_not_allowed").await;
    assert!(alg["detail"].as_str().unwrap().contains("HS384"), "{alg}");
    let kid = token_refusal(&gw, "unknown_kid").await;
    assert!(
        kid["detail"].as_str().unwrap().contains("kid-nobody-knows"),
        "{kid}"
    );

    let log = gw.log();
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(token.as_str()) && (signature.len() < 8 || !log.contains(signature)),
            "a token leaked into the log:\n{log}"
        );
    }
    assert!(!log.contains(jwt::SECRET), "the secret leaked:\n{log}");
}

/// The text format carries the same words: `reason=issuer_mismatch` and both
/// values, readable as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_log_names_the_reason_and_both_issuers() {
    let (_up, gw) = world(|c| c.set_str("jwt.issuer", ISSUER)).await;
    let token = sign(&json!({"sub": "alice", "exp": now() + 600, "iss": "http://127.0.0.1:24000"}));
    assert_error(
        &gw.send(get("/api/banking").bearer(&token)).await,
        401,
        "INVALID_TOKEN",
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = gw.log();
        if let Some(line) = log.lines().find(|l| l.contains("token refused")) {
            assert!(line.contains(" INFO "), "{line}");
            assert!(line.contains("reason=issuer_mismatch "), "{line}");
            assert!(
                line.contains(
                    r#"detail=expected="http://127.0.0.1:24000/" got="http://127.0.0.1:24000""#
                ),
                "{line}"
            );
            assert!(!log.contains(&token), "the token leaked:\n{log}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no `token refused` line in:\n{log}"
        );
        // Polling interval for the log reader thread, not a synchronization.
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payment_refusal_is_logged_with_its_reason() {
    let (_up, gw) = world(|c| c.set_str("log.format", "json")).await;
    let cases = [
        (
            get("/api/banking").bearer(&jwt::token("dave")),
            "CHECKOUT_REQUIRED",
            "dave",
            "checkout_required",
        ),
        (
            get("/api/banking").bearer(&jwt::token("bob")),
            "SUBSCRIPTION_REQUIRED",
            "bob",
            "subscription_inactive",
        ),
        (
            post("/api/reports/export", b"{}".to_vec()).bearer(&jwt::token("alice")),
            "UPGRADE_REQUIRED",
            "alice",
            "feature_missing",
        ),
    ];
    for (req, code, user, reason) in cases {
        assert_error(&gw.send(req).await, 402, code);
        let line = logged(&gw, &format!("402 reason={reason}"), |v| {
            v["message"] == "request refused: payment required" && v["user_id"] == user
        })
        .await;
        assert_eq!(line["reason"], reason, "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
    }
    let inactive = lines(&gw, |v| v["reason"] == "subscription_inactive");
    assert_eq!(
        inactive[0]["subscription_status"], "canceled",
        "{inactive:?}"
    );
    let missing = lines(&gw, |v| v["reason"] == "feature_missing");
    assert_eq!(missing[0]["feature"], "export", "{missing:?}");
}

/// The admin listener's address, from the gateway's second stdout line.
async fn admin_addr(gw: &Gateway) -> SocketAddr {
    const PREFIX: &str = "[stdout] paygate admin listening on http://";
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = gw.log();
        if let Some(line) = log.lines().find_map(|l| l.strip_prefix(PREFIX)) {
            return line.trim().parse().expect("admin address");
        }
        assert!(Instant::now() < deadline, "no admin listening line:\n{log}");
        // Polling interval for the child's output, not a synchronization.
        sleep(Duration::from_millis(10)).await;
    }
}

/// `GET /webhooks/deliveries` on the admin listener, asserted 200.
async fn deliveries(admin: SocketAddr) -> Vec<Value> {
    let resp = send(admin, get("/webhooks/deliveries").bearer(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    resp.json()["deliveries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_webhooks_are_logged_and_listed_with_their_reason() {
    let (_up, gw) = world(|c| {
        with_stripe(c.set_str("log.format", "json"))
            .set_str("admin.listen", "127.0.0.1:0")
            .set_str("admin.token", ADMIN_TOKEN)
    })
    .await;
    let admin = admin_addr(&gw).await;
    let event = stripe::body(&stripe::checkout_completed(
        "evt_reasons_ok",
        "zed",
        "cus_reasons",
        "sub_reasons",
        now() - 5,
    ));
    let forged_secret = "whsec_not_the_configured_one_0123456789";
    let unparsable = br#"{"id":"evt_reasons_bad","object":"balance","type":"customer.updated"}"#;
    let cases: Vec<(&str, Request, u16, &str)> = vec![
        (
            "no_signature_header",
            post(WEBHOOK_PATH, event.clone()).header("Content-Type", "application/json"),
            400,
            "BAD_SIGNATURE",
        ),
        (
            "no_matching_signature",
            stripe::webhook_request(&event, &stripe::signature(&event, forged_secret, now())),
            400,
            "BAD_SIGNATURE",
        ),
        (
            "timestamp_out_of_tolerance",
            stripe::webhook_request(&event, &stripe::signature(&event, WHSEC, now() - 3600)),
            400,
            "BAD_SIGNATURE",
        ),
        (
            "bad_payload",
            stripe::signed(unparsable),
            400,
            "BAD_PAYLOAD",
        ),
        (
            "method_not_allowed",
            get(WEBHOOK_PATH),
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    let mut signatures = Vec::new();
    for (reason, req, status, code) in cases {
        if let Some((_, value)) = req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("stripe-signature"))
        {
            signatures.push(value.clone());
        }
        assert_error(&gw.send(req).await, status, code);
        let line = logged(&gw, &format!("`webhook refused` reason={reason}"), |v| {
            v["target"] == "paygate::webhook"
                && v["message"] == "webhook refused"
                && v["reason"] == reason
        })
        .await;
        assert_eq!(line["level"], "INFO", "{line}");
    }
    stripe::assert_ack(&gw.send(stripe::signed(&event)).await, "applied");

    // Refusals are written off the answer's path: poll until all are listed.
    let deadline = Instant::now() + DEADLINE;
    let list = loop {
        let list = deliveries(admin).await;
        if list.iter().filter(|d| d["result"] == "refused").count() == 5 {
            break list;
        }
        assert!(Instant::now() < deadline, "refusals not listed: {list:#?}");
        // Polling interval for the background write, not a synchronization.
        sleep(Duration::from_millis(20)).await;
    };
    let reason_of = |reason: &str| {
        list.iter()
            .find(|d| d["result"] == "refused" && d["reason"] == reason)
            .unwrap_or_else(|| panic!("no refused delivery with reason {reason}: {list:#?}"))
    };
    for reason in [
        "no_signature_header",
        "no_matching_signature",
        "timestamp_out_of_tolerance",
        "method_not_allowed",
    ] {
        let entry = reason_of(reason);
        // Nothing an unverified sender wrote is kept.
        assert_eq!(entry["event_id"], Value::Null, "{entry}");
        assert_eq!(entry["type"], Value::Null, "{entry}");
        assert!(
            entry["at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{entry}"
        );
    }
    // A verified body that is no event keeps its id and type.
    let bad = reason_of("bad_payload");
    assert_eq!(bad["event_id"], "evt_reasons_bad", "{bad}");
    assert_eq!(bad["type"], "customer.updated", "{bad}");
    assert!(
        list.iter()
            .any(|d| d["event_id"] == "evt_reasons_ok" && d["result"] == "applied"),
        "{list:#?}"
    );

    let log = gw.log();
    assert!(
        !log.contains(WHSEC) && !log.contains(forged_secret),
        "a secret leaked:\n{log}"
    );
    for signature in &signatures {
        assert!(
            !log.contains(signature.as_str()),
            "a signature header leaked:\n{log}"
        );
    }
}

/// On Redis, refusals land in their own capped list; with the store frozen or
/// gone a forged delivery still gets its `400` (the write is off the answer's
/// path and its failure changes nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_redis_are_listed_apart_and_a_dead_store_changes_no_answer() {
    let (mut redis, _up, gw) = redis_world(|c| {
        c.set_str("log.format", "json")
            .set_str("admin.listen", "127.0.0.1:0")
            .set_str("admin.token", ADMIN_TOKEN)
    })
    .await;
    let admin = admin_addr(&gw).await;
    let body = br#"{"id":"evt_forged","object":"event","type":"customer.updated"}"#;
    let forged = || {
        stripe::webhook_request(
            body,
            &stripe::signature(body, "whsec_forged_0123456789abcdef", now()),
        )
    };
    assert_error(&gw.send(forged()).await, 400, "BAD_SIGNATURE");
    let deadline = Instant::now() + DEADLINE;
    while redis.keys("e2e:refused").is_empty() {
        assert!(Instant::now() < deadline, "no refused list in Redis");
        // Polling interval for the background write, not a synchronization.
        sleep(Duration::from_millis(20)).await;
    }
    assert!(
        redis.keys("e2e:deliveries").is_empty(),
        "a refusal is no delivery"
    );
    let list = deliveries(admin).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["result"], "refused");
    assert_eq!(list[0]["reason"], "no_matching_signature");
    assert_eq!(list[0]["event_id"], Value::Null, "unverified: nothing kept");

    redis.freeze();
    assert_error(&gw.send(forged()).await, 400, "BAD_SIGNATURE");
    redis.thaw();
    redis.stop();
    assert_error(&gw.send(forged()).await, 400, "BAD_SIGNATURE");
    assert_error(
        &gw.send(post(WEBHOOK_PATH, body.to_vec())).await,
        400,
        "BAD_SIGNATURE",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_me_endpoint_and_a_bad_path_log_their_refusals_too() {
    let (_up, gw) = world(|c| c.set_str("log.format", "json")).await;
    assert_error(
        &gw.send(get("/_paygate/me").bearer("not.a.token")).await,
        401,
        "INVALID_TOKEN",
    );
    let line = token_refusal(&gw, "malformed").await;
    assert!(!line.to_string().contains("not.a.token"), "{line}");

    let resp = gw.send(get("/api/a%2fb")).await;
    assert_eq!(resp.status, 400, "{:?}", resp.text());
    let line = logged(&gw, "`refused: bad path`", |v| {
        v["message"] == "refused: bad path"
    })
    .await;
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(
        line["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{line}"
    );
}
