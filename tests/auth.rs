//! Token validation and identity headers: every 401 case, cookies, and spoofing attempts.
//!
//! SPEC §4 fixes the 401 codes and `WWW-Authenticate` values, §9 the token
//! rules (`exp` required, header beats cookie, another scheme is no token) and
//! the identity-header stripping (case-insensitive, `_` read as `-`).

mod support;

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::jwt::{self, claims, now, sign, token};
use support::*;

/// Asserts the SPEC §4 response for a missing token.
#[track_caller]
fn assert_unauthenticated(resp: &RawResponse) {
    assert_error(resp, 401, "UNAUTHENTICATED");
    let www = resp
        .header("www-authenticate")
        .expect("401 carries WWW-Authenticate");
    assert!(www.starts_with("Bearer"), "WWW-Authenticate: {www}");
    assert!(
        !www.contains("error="),
        "no error code when no token was sent (RFC 6750 §3.1): {www}"
    );
}

/// Asserts the SPEC §4 response for a token that was sent but is not valid.
#[track_caller]
fn assert_invalid(resp: &RawResponse, code: &str) {
    assert_error(resp, 401, code);
    let www = resp
        .header("www-authenticate")
        .expect("401 carries WWW-Authenticate");
    assert!(www.starts_with("Bearer"), "WWW-Authenticate: {www}");
    assert!(
        www.contains(r#"error="invalid_token""#),
        "WWW-Authenticate: {www}"
    );
}

async fn with_auth(gw: &Gateway, authorization: &str) -> RawResponse {
    gw.send(get("/api/banking").header("Authorization", authorization))
        .await
}

async fn with_bearer(gw: &Gateway, token: &str) -> RawResponse {
    gw.send(get("/api/banking").bearer(token)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_is_unauthenticated() {
    let (up, gw) = world(|c| c).await;
    assert_unauthenticated(&gw.send(get("/api/banking")).await);
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_authorization_scheme_counts_as_no_token() {
    let (up, gw) = world(|c| c).await;
    assert_unauthenticated(&with_auth(&gw, "Basic YWxpY2U6c2VjcmV0").await);
    assert_unauthenticated(&with_auth(&gw, &format!("Token {}", token("alice"))).await);
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_scheme_is_case_insensitive() {
    // RFC 7235 §2.1: the auth-scheme is a case-insensitive token.
    let (up, gw) = world(|c| c).await;
    let got = forwarded(
        &gw,
        &up,
        get("/api/banking").header("Authorization", &format!("bearer {}", token("alice"))),
    )
    .await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tokens_are_invalid() {
    let (up, gw) = world(|c| c).await;
    let valid = token("alice");
    let header_part = valid.split('.').next().unwrap().to_string();
    let malformed = [
        "abc".to_string(),
        "a.b".to_string(),
        "a.b.c".to_string(),
        "!!!.@@@.###".to_string(),
        format!(
            "{header_part}.{}.{}",
            jwt::b64url(b"not json"),
            jwt::b64url(b"sig")
        ),
        format!("{valid}.extra"),
    ];
    for tok in &malformed {
        let resp = with_bearer(&gw, tok).await;
        assert_invalid(&resp, "INVALID_TOKEN");
    }
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_invalid() {
    let (up, gw) = world(|c| c).await;
    let other_secret = jwt::sign_hs(
        Algorithm::HS256,
        b"not-the-gateway-secret-0123456789",
        &claims("alice"),
    );
    assert_invalid(&with_bearer(&gw, &other_secret).await, "INVALID_TOKEN");
    // alice's genuine signature over a payload that now says carol.
    let tampered = jwt::with_payload(&token("alice"), &claims("carol"));
    assert_invalid(&with_bearer(&gw, &tampered).await, "INVALID_TOKEN");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn algorithm_outside_the_allowlist_is_invalid() {
    let (up, gw) = world(|c| c).await;
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let tok = jwt::sign_hs(alg, jwt::SECRET.as_bytes(), &claims("alice"));
        assert_invalid(&with_bearer(&gw, &tok).await, "INVALID_TOKEN");
    }
    assert_invalid(
        &with_bearer(&gw, &jwt::sign_rs256(&claims("alice"))).await,
        "INVALID_TOKEN",
    );
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_invalid() {
    let (up, gw) = world(|c| c).await;
    let c = claims("alice");
    let tokens = [
        jwt::alg_none(&c),
        jwt::forge(&json!({"alg": "None", "typ": "JWT"}), &c, b""),
        jwt::forge(&json!({"alg": "NONE"}), &c, b""),
        // A none header in front of a genuine HS256 signature.
        {
            let genuine = sign(&c);
            let sig = genuine.rsplit('.').next().unwrap();
            let unsigned = jwt::alg_none(&c);
            format!("{unsigned}{sig}")
        },
    ];
    for tok in &tokens {
        assert_invalid(&with_bearer(&gw, tok).await, "INVALID_TOKEN");
    }
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_token_expired() {
    let (up, gw) = world(|c| c).await;
    let tok = sign(&json!({"sub": "alice", "iat": now() - 7200, "exp": now() - 3600}));
    assert_invalid(&with_bearer(&gw, &tok).await, "TOKEN_EXPIRED");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_within_leeway_is_accepted() {
    let (up, gw) = world(|c| c.set_str("jwt.leeway", "60s")).await;
    let tok = sign(&json!({"sub": "alice", "exp": now() - 5}));
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&tok)).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_exp_is_invalid() {
    let (up, gw) = world(|c| c).await;
    let tok = sign(&json!({"sub": "alice", "iat": now()}));
    assert_invalid(&with_bearer(&gw, &tok).await, "INVALID_TOKEN");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yet_valid_token_is_invalid() {
    let (up, gw) = world(|c| c).await;
    let tok = sign(&json!({"sub": "alice", "nbf": now() + 3600, "exp": now() + 7200}));
    assert_invalid(&with_bearer(&gw, &tok).await, "INVALID_TOKEN");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_before_within_leeway_is_accepted() {
    let (up, gw) = world(|c| c.set_str("jwt.leeway", "60s")).await;
    let tok = sign(&json!({"sub": "alice", "nbf": now() + 5, "exp": now() + 600}));
    forwarded(&gw, &up, get("/api/banking").bearer(&tok)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_is_enforced_when_configured() {
    let iss = "https://auth.example.com/";
    let (up, gw) = world(|c| c.set_str("jwt.issuer", iss)).await;
    let with_iss = |i: Option<&str>| {
        let mut c = claims("alice");
        if let Some(i) = i {
            c["iss"] = json!(i);
        }
        sign(&c)
    };
    assert_invalid(
        &with_bearer(&gw, &with_iss(Some("https://evil.example.com/"))).await,
        "INVALID_TOKEN",
    );
    assert_invalid(&with_bearer(&gw, &with_iss(None)).await, "INVALID_TOKEN");
    gw.assert_nothing_forwarded(&up).await;
    forwarded(&gw, &up, get("/api/banking").bearer(&with_iss(Some(iss)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_is_enforced_when_configured() {
    let (up, gw) = world(|c| c.set_str("jwt.audience", "api")).await;
    let with_aud = |a: Option<serde_json::Value>| {
        let mut c = claims("alice");
        if let Some(a) = a {
            c["aud"] = a;
        }
        sign(&c)
    };
    assert_invalid(
        &with_bearer(&gw, &with_aud(Some(json!("web")))).await,
        "INVALID_TOKEN",
    );
    assert_invalid(
        &with_bearer(&gw, &with_aud(Some(json!(["web", "admin"])))).await,
        "INVALID_TOKEN",
    );
    assert_invalid(&with_bearer(&gw, &with_aud(None)).await, "INVALID_TOKEN");
    gw.assert_nothing_forwarded(&up).await;
    forwarded(
        &gw,
        &up,
        get("/api/banking").bearer(&with_aud(Some(json!("api")))),
    )
    .await;
    forwarded(
        &gw,
        &up,
        get("/api/banking").bearer(&with_aud(Some(json!(["web", "api"])))),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_user_claim_is_invalid() {
    let (up, gw) = world(|c| c).await;
    assert_invalid(
        &with_bearer(&gw, &sign(&json!({"exp": now() + 600}))).await,
        "INVALID_TOKEN",
    );
    assert_invalid(
        &with_bearer(
            &gw,
            &sign(&json!({"sub": {"id": "alice"}, "exp": now() + 600})),
        )
        .await,
        "INVALID_TOKEN",
    );
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_user_claim_identifies_the_user() {
    // Django's simplejwt puts an integer `user_id` in the token.
    let (up, gw) = world(|c| {
        c.set_str("jwt.user_claim", "user_id").user(
            "42",
            json!({"subscriptions": [{"id": "sub_42", "status": "active", "created": 1_700_000_000}]}),
        )
    })
    .await;
    let tok = sign(&json!({"user_id": 42, "exp": now() + 600}));
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&tok)).await;
    assert_eq!(got.header_all("x-user-id"), ["42"]);
    assert_eq!(got.header_all("x-subscription-status"), ["active"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_route_is_not_blocked_by_an_unusable_user_id() {
    // A signed token whose user id cannot be put in a header is not a usable
    // token; on a public route that must not block (SPEC §9), it only sets no
    // identity. On a protected route it is a 401.
    let (up, gw) = world(|c| c).await;
    let tok = sign(&json!({"sub": "line\nbreak", "exp": now() + 600}));
    let got = forwarded(&gw, &up, get("/health").bearer(&tok)).await;
    assert_eq!(got.header("x-user-id"), None);
    assert_invalid(&with_bearer(&gw, &tok).await, "INVALID_TOKEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_can_come_from_the_environment() {
    let (up, gw) = world(|c| {
        c.unset("jwt.secret")
            .set_str("jwt.secret_env", "PAYGATE_E2E_JWT_SECRET")
            .env("PAYGATE_E2E_JWT_SECRET", jwt::SECRET)
    })
    .await;
    forwarded(&gw, &up, get("/api/banking").bearer(&token("alice"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_verify_against_the_public_key_file() {
    let (up, gw) = world(|c| {
        c.unset("jwt.secret")
            .set("jwt.algorithms", r#"["RS256"]"#)
            .set_str("jwt.public_key_file", "jwt.pem")
            .file("jwt.pem", jwt::RSA_PUBLIC_PEM)
    })
    .await;
    let got = forwarded(
        &gw,
        &up,
        get("/api/banking").bearer(&jwt::sign_rs256(&claims("alice"))),
    )
    .await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
    // Algorithm confusion: an HS256 token "signed" with the public key as secret.
    let confused = jwt::sign_hs(
        Algorithm::HS256,
        jwt::RSA_PUBLIC_PEM.as_bytes(),
        &claims("alice"),
    );
    assert_invalid(&with_bearer(&gw, &confused).await, "INVALID_TOKEN");
    assert_eq!(gw.barrier(&up).await.len(), 1);
}

// ---- cookies ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_read_from_the_configured_cookie() {
    let (up, gw) = world(|c| c.set_str("jwt.cookie", "access_token")).await;
    let cookie = format!("theme=dark; access_token={}; lang=en", token("alice"));
    let got = forwarded(&gw, &up, get("/api/banking").header("Cookie", &cookie)).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);

    let expired = sign(&json!({"sub": "alice", "exp": now() - 3600}));
    let resp = gw
        .send(get("/api/banking").header("Cookie", &format!("access_token={expired}")))
        .await;
    assert_invalid(&resp, "TOKEN_EXPIRED");
    assert_eq!(gw.barrier(&up).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_is_ignored_unless_configured() {
    let (up, gw) = world(|c| c).await;
    let resp = gw
        .send(get("/api/banking").header("Cookie", &format!("access_token={}", token("alice"))))
        .await;
    assert_unauthenticated(&resp);
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_header_beats_cookie() {
    let (up, gw) = world(|c| c.set_str("jwt.cookie", "access_token")).await;
    let got = forwarded(
        &gw,
        &up,
        get("/api/banking")
            .bearer(&token("alice"))
            .header("Cookie", &format!("access_token={}", token("carol"))),
    )
    .await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);

    // The header wins even when it is the bad one.
    let resp = gw
        .send(
            get("/api/banking")
                .bearer("garbage")
                .header("Cookie", &format!("access_token={}", token("carol"))),
        )
        .await;
    assert_invalid(&resp, "INVALID_TOKEN");
    assert_eq!(gw.barrier(&up).await.len(), 1);
}

// ---- identity headers cannot be spoofed ----

const SPOOFS: &[(&str, &str)] = &[
    ("X-User-Id", "admin"),
    ("x-user-id", "root"),
    ("X_User_Id", "mallory"),
    ("x_user-id", "eve"),
    ("X-Subscription-Status", "override"),
    ("X_SUBSCRIPTION_STATUS", "active"),
    ("X-Entitlements", "export,admin"),
    ("x_entitlements", "admin"),
];

fn spoofed(mut req: Request) -> Request {
    for (name, value) in SPOOFS {
        req = req.header(name, value);
    }
    req
}

/// Every header the upstream got whose name reads as `name` with `_` as `-`.
fn headers_like<'a>(got: &'a Recorded, name: &str) -> Vec<(&'a str, &'a str)> {
    got.headers
        .iter()
        .filter(|(n, _)| n.replace('_', "-").eq_ignore_ascii_case(name))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_replaced_by_the_tokens() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(
        &gw,
        &up,
        spoofed(get("/api/banking").bearer(&token("alice"))),
    )
    .await;
    assert_eq!(headers_like(&got, "x-user-id"), [("x-user-id", "alice")]);
    assert_eq!(
        headers_like(&got, "x-subscription-status"),
        [("x-subscription-status", "active")]
    );
    assert_eq!(
        headers_like(&got, "x-entitlements"),
        [],
        "alice has no features"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped_without_token() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(&gw, &up, spoofed(get("/health"))).await;
    for name in ["x-user-id", "x-subscription-status", "x-entitlements"] {
        assert_eq!(
            headers_like(&got, name),
            [],
            "{name} must not reach the upstream"
        );
    }
    // An invalid token on a public route does not block, and identifies no one.
    let got = forwarded(&gw, &up, spoofed(get("/health").bearer("garbage"))).await;
    for name in ["x-user-id", "x-subscription-status", "x-entitlements"] {
        assert_eq!(
            headers_like(&got, name),
            [],
            "{name} must not reach the upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_entitlements_are_replaced_for_users_with_features() {
    let (up, gw) = world(|c| c).await;
    let got = forwarded(
        &gw,
        &up,
        spoofed(post("/api/reports/export", "{}").bearer(&token("carol"))),
    )
    .await;
    assert_eq!(headers_like(&got, "x-user-id"), [("x-user-id", "carol")]);
    assert_eq!(
        headers_like(&got, "x-entitlements"),
        [("x-entitlements", "export")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_identity_header_names_are_set_and_stripped() {
    let (up, gw) = world(|c| {
        c.set_str("headers.user_id", "X-App-User")
            .set_str("headers.status", "X-App-Plan-Status")
            .set_str("headers.entitlements", "X-App-Features")
    })
    .await;
    let req = post("/api/reports/export", "{}")
        .bearer(&token("carol"))
        .header("X-App-User", "admin")
        .header("x_app_user", "root")
        .header("X-App-Plan-Status", "override")
        .header("X_App_Features", "everything");
    let got = forwarded(&gw, &up, req).await;
    assert_eq!(headers_like(&got, "x-app-user"), [("x-app-user", "carol")]);
    assert_eq!(
        headers_like(&got, "x-app-plan-status"),
        [("x-app-plan-status", "active")]
    );
    assert_eq!(
        headers_like(&got, "x-app-features"),
        [("x-app-features", "export")]
    );
}
