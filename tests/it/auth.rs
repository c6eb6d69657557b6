//! Token validation and identity headers: every 401 case, cookies, and spoofing attempts.
//!
//! docs/responses.md ("401: tokens") fixes the 401 codes and
//! `WWW-Authenticate` values, the token rules (`exp` required, header beats cookie, another scheme is no token) and
//! the identity-header stripping (case-insensitive, `_` read as `-`).

use crate::support::jwt::{self, claims, now, sign, token};
use crate::support::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

/// Asserts the documented response for a missing token (docs/responses.md).
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

/// Asserts the documented response for a token that was sent but is not valid.
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
    // token; on a public route that must not block the request, it only sets no
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

// ---- the user id's syntax (a value every upstream parser reads the same way) ----

/// `header` and `claims` (raw JSON, so that any shape can be written) signed
/// HS256 with the test secret: the signature is good, so only paygate's
/// reading of the token can refuse it.
fn sign_raw(header: &str, claims: &str) -> String {
    let signed = format!(
        "{}.{}",
        jwt::b64url(header.as_bytes()),
        jwt::b64url(claims.as_bytes())
    );
    let key = jsonwebtoken::EncodingKey::from_secret(jwt::SECRET.as_bytes());
    let signature =
        jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{signed}.{signature}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_id_with_whitespace_a_comma_or_other_characters_is_an_invalid_token() {
    // A validly signed `"sub": "alice "` used to be looked up as "alice " and
    // forwarded as `X-User-Id: alice `, which the upstream reads as `alice`.
    let (up, gw) = world(|c| c).await;
    let too_long = "a".repeat(257);
    for sub in [
        "alice ",
        " alice",
        "alice\t",
        "al ice",
        "alice,bob",
        "alice\u{7f}",
        "ünïcode",
        "\u{a0}alice",
        "",
        &too_long,
    ] {
        let tok = sign(&json!({"sub": sub, "exp": now() + 600}));
        for path in ["/api/banking", "/api/subscriptions"] {
            let resp = gw.send(get(path).bearer(&tok)).await;
            assert_invalid(&resp, "INVALID_TOKEN");
        }
    }
    gw.assert_nothing_forwarded(&up).await;

    // On a public route such a token identifies no one.
    let tok = sign(&json!({"sub": "alice ", "exp": now() + 600}));
    let got = forwarded(&gw, &up, get("/health").bearer(&tok)).await;
    assert_eq!(headers_like(&got, "x-user-id"), []);
    assert_eq!(headers_like(&got, "x-subscription-status"), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_at_the_limits_of_the_syntax_reach_the_upstream_unchanged() {
    let (up, gw) = world(|c| c).await;
    let longest = "a".repeat(256);
    for sub in [
        "a",
        "!~#$%&'*+-./:;<=>?@[]^_`{|}",
        "user@example.com",
        &longest,
    ] {
        let tok = sign(&json!({"sub": sub, "exp": now() + 600}));
        let got = forwarded(&gw, &up, get("/api/subscriptions").bearer(&tok)).await;
        assert_eq!(got.header_all("x-user-id"), [sub]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_claim_of_another_json_type_is_an_invalid_token() {
    let (up, gw) = world(|c| c).await;
    // Written by hand: JSON libraries would normalize some of these.
    for sub in [
        "1.5",
        "42.0",
        "1e2",
        "-0",
        "true",
        "null",
        r#"{"id":"alice"}"#,
        r#"["alice"]"#,
        "18446744073709551616",
        "-9223372036854775809",
        r#""alice","sub":"bob""#,
    ] {
        let tok = sign_raw(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &format!(r#"{{"sub":{sub},"exp":{}}}"#, now() + 600),
        );
        assert_invalid(&with_bearer(&gw, &tok).await, "INVALID_TOKEN");
    }
    gw.assert_nothing_forwarded(&up).await;
    // An integer within 64 bits is its decimal text.
    for (sub, id) in [
        ("42", "42"),
        ("-7", "-7"),
        ("18446744073709551615", "18446744073709551615"),
    ] {
        let tok = sign_raw(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":{sub},"exp":{}}}"#, now() + 600),
        );
        let got = forwarded(&gw, &up, get("/api/subscriptions").bearer(&tok)).await;
        assert_eq!(got.header_all("x-user-id"), [id]);
    }
}

// ---- the token header ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crit_in_the_header_is_an_invalid_token_whatever_its_value() {
    // paygate implements no JWS extension, so a token that names any as
    // critical (or has a `crit` that is null or empty) is refused.
    let (up, gw) = world(|c| c).await;
    let claims = claims("alice").to_string();
    for crit in ["null", "[]", r#"["b64"]"#, r#"["exp"]"#, "{}", r#""b64""#] {
        let tok = sign_raw(
            &format!(r#"{{"alg":"HS256","crit":{crit},"b64":true}}"#),
            &claims,
        );
        assert_invalid(&with_bearer(&gw, &tok).await, "INVALID_TOKEN");
        // Nor does it identify anyone on a public route.
        let got = forwarded(&gw, &up, get("/health").bearer(&tok)).await;
        assert_eq!(headers_like(&got, "x-user-id"), []);
    }
    // The same token without `crit` is fine.
    let tok = sign_raw(r#"{"alg":"HS256","b64":true}"#, &claims);
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&tok)).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_header_members_and_registered_claims_are_an_invalid_token() {
    let (up, gw) = world(|c| c).await;
    let exp = now() + 600;
    let cases = [
        (
            r#"{"alg":"HS256","alg":"HS256"}"#.to_string(),
            format!(r#"{{"sub":"alice","exp":{exp}}}"#),
        ),
        (
            r#"{"alg":"HS256","kid":"a","kid":"b"}"#.to_string(),
            format!(r#"{{"sub":"alice","exp":{exp}}}"#),
        ),
        (
            r#"{"alg":"HS256"}"#.to_string(),
            format!(r#"{{"sub":"alice","sub":"carol","exp":{exp}}}"#),
        ),
        (
            r#"{"alg":"HS256"}"#.to_string(),
            format!(r#"{{"sub":"alice","exp":{exp},"exp":{exp}}}"#),
        ),
        (
            r#"{"alg":"HS256"}"#.to_string(),
            format!(r#"{{"sub":"alice","exp":{exp},"nbf":0,"nbf":0}}"#),
        ),
        // An escaped name is the same name.
        (
            r#"{"alg":"HS256"}"#.to_string(),
            format!(r#"{{"sub":"alice","\u0073ub":"carol","exp":{exp}}}"#),
        ),
        // Not an object.
        (
            r#"["HS256"]"#.to_string(),
            format!(r#"{{"sub":"alice","exp":{exp}}}"#),
        ),
        (
            r#"{"alg":"HS256"}"#.to_string(),
            format!(r#"["alice",{exp}]"#),
        ),
    ];
    for (header, claims) in &cases {
        let tok = sign_raw(header, claims);
        assert_invalid(&with_bearer(&gw, &tok).await, "INVALID_TOKEN");
    }
    gw.assert_nothing_forwarded(&up).await;
}

// ---- several Authorization headers ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_an_invalid_token() {
    // The first used to be authorized and both forwarded: an upstream that
    // reads the last one acted as carol while paygate had checked alice.
    let (up, gw) = world(|c| c.set_str("jwt.cookie", "access_token")).await;
    let (alice, carol) = (token("alice"), token("carol"));
    let pairs = [
        (format!("Bearer {alice}"), format!("Bearer {carol}")),
        (format!("Bearer {alice}"), format!("Bearer {alice}")),
        (
            "Basic YWxpY2U6c2VjcmV0".to_string(),
            format!("Bearer {alice}"),
        ),
        (format!("Bearer {alice}"), String::new()),
    ];
    for (first, second) in &pairs {
        for path in ["/api/banking", "/api/subscriptions"] {
            let req = get(path)
                .header("Authorization", first)
                .header("Authorization", second)
                .header("Cookie", &format!("access_token={alice}"));
            assert_invalid(&gw.send(req).await, "INVALID_TOKEN");
        }
    }
    gw.assert_nothing_forwarded(&up).await;
    // One header is still fine.
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&alice)).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_on_a_public_route_forward_an_anonymous_request() {
    // The request is not blocked (public route), but it goes on without identity
    // and without either credential: the upstream must not act on one that
    // paygate did not authorize.
    let (up, gw) = world(|c| c).await;
    let req = spoofed(
        get("/health")
            .bearer(&token("alice"))
            .bearer(&token("carol")),
    );
    let got = forwarded(&gw, &up, req).await;
    assert_eq!(got.header_all("authorization"), Vec::<&str>::new());
    for name in ["x-user-id", "x-subscription-status", "x-entitlements"] {
        assert_eq!(headers_like(&got, name), [], "{name}");
    }
    // One header on a public route is forwarded as sent.
    let alice = token("alice");
    let got = forwarded(&gw, &up, get("/health").bearer(&alice)).await;
    assert_eq!(
        got.header_all("authorization"),
        [format!("Bearer {alice}").as_str()]
    );
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
}

// ---- the bearer scheme ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_separates_scheme_and_token_like_a_space() {
    // Upstream frameworks (Django REST framework, simplejwt) split the header
    // on any whitespace, so paygate authorizes the token they will read. The
    // admin listener reads the header with the same parser (tests/admin.rs).
    let (up, gw) = world(|c| c).await;
    let alice = token("alice");
    for value in [
        format!("Bearer\t{alice}"),
        format!("Bearer \t {alice}"),
        format!("bearer\t\t{alice}\t"),
    ] {
        let got = forwarded(
            &gw,
            &up,
            get("/api/banking").header("Authorization", &value),
        )
        .await;
        assert_eq!(got.header_all("x-user-id"), ["alice"], "{value:?}");
    }
    // No separator at all is another scheme, so no token.
    assert_unauthenticated(&with_auth(&gw, &format!("Bearer{alice}")).await);
}
