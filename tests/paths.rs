//! Path tricks (SPEC §3, §9): the path that is authorized is exactly the path the upstream receives.
//!
//! Every request here goes out as raw bytes, so the gateway sees the target
//! exactly as written. For each trick the test checks both halves of the
//! invariant on what the upstream actually got: a path that normalizes into a
//! protected route is denied and never reaches the upstream, and a forwarded
//! request arrives with the normalized path (and the query untouched).

mod support;

use support::jwt::token;
use support::*;

/// Sends `target` with a subscriber's token and asserts the upstream received
/// it as `expected` (path and query).
async fn assert_forwarded_as(gw: &Gateway, up: &Upstream, target: &str, expected: &str) {
    let got = forwarded(gw, up, get(target).bearer(&token("alice"))).await;
    assert_eq!(
        got.target, expected,
        "{target:?} must reach the upstream as {expected:?}"
    );
}

/// Sends `target` without a token and asserts the upstream received it as
/// `expected`.
async fn assert_public_as(gw: &Gateway, up: &Upstream, target: &str, expected: &str) {
    let got = forwarded(gw, up, get(target)).await;
    assert_eq!(
        got.target, expected,
        "{target:?} must reach the upstream as {expected:?}"
    );
}

/// Sends `target` without a token and asserts it was judged by a protected
/// route (401) and not forwarded.
async fn assert_protected(gw: &Gateway, up: &Upstream, target: &str) {
    let before = gw.barrier(up).await.len();
    let resp = gw.send(get(target)).await;
    assert_eq!(
        resp.status,
        401,
        "{target:?} normalizes into a protected route and needs a token; got {} {:?}",
        resp.status,
        resp.text()
    );
    assert_error(&resp, 401, "UNAUTHENTICATED");
    assert_not_forwarded(gw, up, before, target).await;
}

/// Sends `target` (with a subscriber's token, so only the path can fail) and
/// asserts `400 BAD_PATH` and nothing forwarded.
async fn assert_bad_path(gw: &Gateway, up: &Upstream, target: &str) {
    let before = gw.barrier(up).await.len();
    let resp = gw.send(get(target).bearer(&token("alice"))).await;
    assert_eq!(
        resp.status,
        400,
        "{target:?} must be BAD_PATH; got {} {:?}",
        resp.status,
        resp.text()
    );
    assert_error(&resp, 400, "BAD_PATH");
    assert_not_forwarded(gw, up, before, target).await;
}

/// Asserts that nothing but barriers reached the upstream after the first
/// `before` requests, i.e. that the request for `target` was not forwarded.
async fn assert_not_forwarded(gw: &Gateway, up: &Upstream, before: usize, target: &str) {
    let after = gw.barrier(up).await;
    assert_eq!(
        after.len(),
        before,
        "{target:?} must not reach the upstream, it got {:#?}",
        after[before.min(after.len())..]
            .iter()
            .map(|r| (&r.method, &r.target))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_resolved_before_matching() {
    let (up, gw) = world(|c| c).await;
    assert_protected(&gw, &up, "/health/../api/banking").await;
    assert_protected(&gw, &up, "/health/./../api/./banking/x").await;
    assert_forwarded_as(&gw, &up, "/health/../api/banking", "/api/banking").await;
    assert_forwarded_as(&gw, &up, "/api/./banking/./x", "/api/banking/x").await;
    assert_forwarded_as(&gw, &up, "/api/banking/x/..", "/api/banking/").await;
    assert_forwarded_as(&gw, &up, "/api/banking/.", "/api/banking/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_out_of_a_protected_route_are_forwarded_normalized() {
    let (up, gw) = world(|c| c).await;
    assert_public_as(&gw, &up, "/api/banking/../../health/live", "/health/live").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_slashes_are_merged() {
    let (up, gw) = world(|c| c).await;
    assert_protected(&gw, &up, "//api//banking").await;
    assert_protected(&gw, &up, "/api///banking/").await;
    assert_forwarded_as(&gw, &up, "//api///banking//x", "/api/banking/x").await;
    assert_public_as(&gw, &up, "//health//live", "/health/live").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_dot_segments_are_decoded_then_resolved() {
    let (up, gw) = world(|c| c).await;
    for target in [
        "/health/%2e%2e/api/banking",
        "/health/%2E%2E/api/banking",
        "/health/.%2e/api/banking",
        "/health/%2e./api/banking",
        "/api/%2e/banking",
    ] {
        assert_protected(&gw, &up, target).await;
    }
    assert_forwarded_as(&gw, &up, "/health/%2e%2e/api/banking", "/api/banking").await;
    assert_forwarded_as(&gw, &up, "/api/%2E/banking", "/api/banking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_unreserved_characters_are_decoded() {
    let (up, gw) = world(|c| c).await;
    assert_protected(&gw, &up, "/api/%62anking").await;
    assert_protected(&gw, &up, "/%61%70%69/%62%61%6e%6b%69%6e%67").await;
    assert_forwarded_as(&gw, &up, "/api/%62anking", "/api/banking").await;
    assert_forwarded_as(
        &gw,
        &up,
        "/%61pi/b%61nking/%7Eme/%2D%5F%2E",
        "/api/banking/~me/-_.",
    )
    .await;
    assert_public_as(&gw, &up, "/%68ealth", "/health").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_escapes_are_kept_as_sent() {
    let (up, gw) = world(|c| c).await;
    assert_forwarded_as(
        &gw,
        &up,
        "/api/banking/a%20b/%3F/%23/%25",
        "/api/banking/a%20b/%3F/%23/%25",
    )
    .await;
    assert_forwarded_as(&gw, &up, "/api/banking/caf%C3%A9", "/api/banking/caf%C3%A9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_encoding_is_decoded_only_once() {
    let (up, gw) = world(|c| c).await;
    // `%252e` is an escaped `%`, then `2e`: not a dot segment, and it must stay
    // escaped, or the upstream could decode it into `..` on its side.
    assert_public_as(
        &gw,
        &up,
        "/health/%252e%252e/api/banking",
        "/health/%252e%252e/api/banking",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slash_is_bad_path() {
    let (up, gw) = world(|c| c).await;
    for target in [
        "/api%2fbanking",
        "/api%2Fbanking",
        "/health/..%2fapi/banking",
        "/api/banking/a%2fb",
        "/health/%2F..%2Fapi%2Fbanking",
    ] {
        assert_bad_path(&gw, &up, target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backslash_is_bad_path() {
    let (up, gw) = world(|c| c).await;
    for target in [
        "/api\\banking",
        "/health\\..\\api\\banking",
        "/api/banking\\x",
        "/api/%5cbanking",
        "/api/%5Cbanking",
        "/health/..%5capi/banking",
    ] {
        assert_bad_path(&gw, &up, target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_nul_is_bad_path() {
    let (up, gw) = world(|c| c).await;
    assert_bad_path(&gw, &up, "/api/banking%00").await;
    assert_bad_path(&gw, &up, "/health%00/../api/banking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn climbing_above_the_root_is_bad_path() {
    let (up, gw) = world(|c| c).await;
    for target in [
        "/..",
        "/../api/banking",
        "/api/../../health",
        "/%2e%2e/health",
        "/health/../../api/banking",
    ] {
        assert_bad_path(&gw, &up, target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_match_whole_segments() {
    let (up, gw) = world(|c| c.set_str("access.default", "public")).await;
    assert_public_as(&gw, &up, "/api/bankingfoo", "/api/bankingfoo").await;
    assert_public_as(&gw, &up, "/api/banking-old/x", "/api/banking-old/x").await;
    assert_public_as(&gw, &up, "/api/banking.json", "/api/banking.json").await;
    for target in [
        "/api/banking",
        "/api/banking/",
        "/api/banking/x",
        "/api/banking?x=1",
    ] {
        assert_protected(&gw, &up, target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_is_case_sensitive() {
    let (up, gw) = world(|c| c.set_str("access.default", "public")).await;
    assert_public_as(&gw, &up, "/API/banking", "/API/banking").await;
    assert_public_as(&gw, &up, "/api/Banking/x", "/api/Banking/x").await;
    // Escapes decode to exactly the letters they encode, case included.
    assert_public_as(&gw, &up, "/api/%42anking", "/api/Banking").await;
    assert_protected(&gw, &up, "/api/banking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_is_forwarded_unchanged() {
    let (up, gw) = world(|c| c).await;
    assert_forwarded_as(
        &gw,
        &up,
        "/api/./banking?next=/../admin&x=%2F&y=%2e%2e&z=a\\b",
        "/api/banking?next=/../admin&x=%2F&y=%2e%2e&z=a\\b",
    )
    .await;
    assert_public_as(
        &gw,
        &up,
        "/health?path=/api/banking/../x",
        "/health?path=/api/banking/../x",
    )
    .await;
    // A query cannot smuggle a path: `?` ends the path even after a trick.
    assert_protected(&gw, &up, "/health/../api/banking?/health").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_narrowed_route_matches_the_normalized_path() {
    let (up, gw) = world(|c| c).await;
    let resp = gw
        .send(post("/api/reports/./export", "{}").bearer(&token("alice")))
        .await;
    assert_error(&resp, 402, "UPGRADE_REQUIRED");
    let resp = gw
        .send(post("/api/%72eports//export", "{}").bearer(&token("alice")))
        .await;
    assert_error(&resp, 402, "UPGRADE_REQUIRED");
    gw.assert_nothing_forwarded(&up).await;
    let got = forwarded(
        &gw,
        &up,
        post("/api/reports/x/../export", "{}").bearer(&token("carol")),
    )
    .await;
    assert_eq!(got.target, "/api/reports/export");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_paths_are_served_by_the_gateway_never_forwarded() {
    let (up, gw) = world(|c| c).await;
    for target in [
        "/_paygate/healthz",
        "/api/../_paygate/healthz",
        "/%5Fpaygate/healthz",
        "//_paygate/./healthz",
    ] {
        let resp = gw.send(get(target)).await;
        assert_eq!(
            resp.status,
            200,
            "{target:?} is the gateway's healthz: {:?}",
            resp.text()
        );
        assert!(
            !resp.answered_by_upstream(),
            "{target:?} must not be forwarded"
        );
    }
    let resp = gw.send(get("/_paygate/nope")).await;
    assert_error(&resp, 404, "NOT_FOUND");
    let resp = gw.send(get("/_paygate/../api/banking")).await;
    assert_error(&resp, 401, "UNAUTHENTICATED");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_reserved_characters_stay_inside_their_segment() {
    let (up, gw) = world(|c| c).await;
    // `%3F` is not a `?` and `%23` not a `#`: the `..` after them still climbs.
    assert_protected(&gw, &up, "/health%3F/../api/banking").await;
    assert_protected(&gw, &up, "/health%23/../api/banking").await;
    assert_protected(&gw, &up, "/health;x/../api/banking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_cannot_smuggle_a_path() {
    let (up, gw) = world(|c| c).await;
    for target in ["/health#/../api/banking", "/health/x#/../../api/banking"] {
        let before = gw.barrier(&up).await.len();
        let resp = gw.send(get(target)).await;
        let after = gw.barrier(&up).await;
        if resp.answered_by_upstream() {
            let got = &after[before];
            assert!(
                got.path().starts_with("/health") && !got.target.contains("banking"),
                "{target:?} was authorized as public but reached the upstream as {:?}",
                got.target
            );
        } else {
            assert!(
                resp.status == 400 || resp.status == 401,
                "{target:?}: {} {:?}",
                resp.status,
                resp.text()
            );
            assert_eq!(after.len(), before, "{target:?} was denied but forwarded");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_are_judged_by_their_path() {
    let (up, gw) = world(|c| c).await;
    for target in [
        "http://paygate.test/api/banking",
        "http://paygate.test/health/../api/banking",
    ] {
        let resp = gw.send(get(target)).await;
        assert!(
            resp.status == 400 || resp.status == 401,
            "{target:?} without a token: {} {:?}",
            resp.status,
            resp.text()
        );
    }
    gw.assert_nothing_forwarded(&up).await;
    let before = up.arrivals().len();
    let resp = gw
        .send(get("http://paygate.test/api/./banking?x=1").bearer(&token("alice")))
        .await;
    if resp.answered_by_upstream() {
        let got = up.wait_requests(before + 1).await;
        assert_eq!(got[before].target, "/api/banking?x=1");
    } else {
        assert_error(&resp, 400, "BAD_PATH");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_path_is_never_forwarded() {
    // SPEC §3: the webhook path is the gateway's own, even under a public
    // default policy and even when reached through a path trick. (What the
    // gateway answers there is §6's business; here it only must not forward.)
    let (up, gw) = world(|c| {
        c.set_str("stripe.webhook_path", "/stripe/webhook")
            .set_str("stripe.webhook_secret_env", "PAYGATE_E2E_WHSEC")
            .env("PAYGATE_E2E_WHSEC", "whsec_e2e_test")
            .set_str("access.default", "public")
    })
    .await;
    for target in [
        "/stripe/webhook",
        "/stripe/./webhook",
        "/stripe//webhook",
        "/%73tripe/webhook",
    ] {
        let resp = gw
            .send(
                post(target, r#"{"id":"evt_1","type":"customer.created"}"#)
                    .header("Stripe-Signature", "t=1,v1=00"),
            )
            .await;
        assert!(
            !resp.answered_by_upstream(),
            "{target:?} was answered by the upstream"
        );
        assert!(
            resp.header("content-type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "{target:?}: the gateway answers with JSON: {resp:?}"
        );
    }
    gw.assert_nothing_forwarded(&up).await;
}
