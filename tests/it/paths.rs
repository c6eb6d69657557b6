//! Path and method tricks (docs/configuration.md "How a request is matched",
//! README "Security"): the path that is authorized is
//! exactly the path the upstream receives, and the route is the one the
//! application will read, whatever its framework does with `;parameters`, case,
//! method case, `HEAD` and method-override headers.
//!
//! Every request here goes out as raw bytes, so the gateway sees the target
//! exactly as written. For each trick the test checks both halves of the
//! invariant on what the upstream actually got: a path that normalizes into a
//! protected route is denied and never reaches the upstream, and a forwarded
//! request arrives with the normalized path (and the query untouched).

use crate::support::jwt::token;
use crate::support::*;

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
    // The webhook path is the gateway's own, even under a public default
    // policy and even when reached through a path trick. (What the gateway
    // answers there is docs/webhooks.md's business; here it only must not
    // forward.)
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

/// Sends `req` and asserts the gateway refused it with `status` / `code` and
/// forwarded nothing.
async fn assert_refused(gw: &Gateway, up: &Upstream, req: Request, status: u16, code: &str) {
    let what = format!("{} {} {:?}", req.method, req.target, req.headers);
    let before = gw.barrier(up).await.len();
    let resp = gw.send(req).await;
    assert_eq!(
        (
            resp.status,
            resp.json()["code"].as_str().map(str::to_string)
        ),
        (status, Some(code.to_string())),
        "{what}: {:?}",
        resp.text()
    );
    assert_error(&resp, status, code);
    assert_not_forwarded(gw, up, before, &what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_with_parameters_are_bad_path() {
    // Tomcat, Jetty and Spring drop `;x` and then resolve `..`, so
    // `/health/..;/api/banking` is `/api/banking` to them while RFC 3986 sees
    // a segment under the public `/health`. dave has no subscription at all.
    let (up, gw) = world(|c| c).await;
    for target in [
        "/health/..;/api/banking",
        "/health/..;x/api/banking",
        "/health/..;jsessionid=1/api/banking",
        "/health/..%3b/api/banking",
        "/health/..%3B/api/banking",
        "/health/%2e%2e;/api/banking",
        "/health/%2E%2E%3B/api/banking",
        "/health/.;/../api/banking",
        "/health/.%2e;x/api/banking",
        "/health/x/..;/..;/api/banking",
    ] {
        assert_refused(
            &gw,
            &up,
            get(target).bearer(&token("dave")),
            400,
            "BAD_PATH",
        )
        .await;
        assert_refused(&gw, &up, get(target), 400, "BAD_PATH").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_do_not_skip_a_route() {
    let (up, gw) = world(|c| c.set_str("access.default", "public")).await;
    for target in [
        "/api/banking;jsessionid=x",
        "/api;/banking",
        "/api;x=1/banking/accounts",
        "/api/banking%3Bjsessionid=x",
        "/;x/api/banking",
        "/api/;x/banking",
    ] {
        assert_protected(&gw, &up, target).await;
        assert_refused(
            &gw,
            &up,
            get(target).bearer(&token("dave")),
            402,
            "CHECKOUT_REQUIRED",
        )
        .await;
    }
    // A subscriber gets through, and the upstream receives the parameters as sent.
    assert_forwarded_as(
        &gw,
        &up,
        "/api/banking;jsessionid=x",
        "/api/banking;jsessionid=x",
    )
    .await;
    assert_forwarded_as(&gw, &up, "/api;/banking?x=1", "/api;/banking?x=1").await;
    assert_forwarded_as(&gw, &up, "/api/./banking;v=2/x", "/api/banking;v=2/x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_with_parameters_must_pass_its_literal_reading_too() {
    // Servlet containers read `/health;jsessionid=1` as `/health` (public);
    // Django, Express or Go read a segment `health;jsessionid=1` that no route
    // covers (the default, `subscription`). Paygate cannot know which the
    // application is, so both readings must pass.
    let (up, gw) = world(|c| c).await;
    assert_refused(
        &gw,
        &up,
        get("/health;jsessionid=1"),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert_forwarded_as(&gw, &up, "/health;jsessionid=1", "/health;jsessionid=1").await;
    // Parameters below the route's own segments change nothing.
    assert_public_as(&gw, &up, "/health/live;v=1", "/health/live;v=1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_paths_match_prefixes_ignoring_case() {
    let (up, gw) = world(|c| {
        c.set_str("access.default", "public")
            .set("access.case_insensitive_paths", "true")
    })
    .await;
    for target in [
        "/API/banking",
        "/Api/Banking/x",
        "/api/BANKING;x",
        "/%41pi/banking",
    ] {
        assert_protected(&gw, &up, target).await;
    }
    // The path is forwarded as sent (normalized), not case-folded.
    assert_forwarded_as(&gw, &up, "/API/Banking/x", "/API/Banking/x").await;
    assert_public_as(&gw, &up, "/HEALTH/live", "/HEALTH/live").await;
    assert_public_as(&gw, &up, "/api/bankingX", "/api/bankingX").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_case_does_not_skip_a_methods_route() {
    // hypercorn and Django run `post` as POST: it must meet the POST route.
    let (up, gw) = world(|c| c).await;
    for method in ["POST", "post", "Post", "pOST"] {
        let req = request(method, "/api/reports/export")
            .body("{}")
            .bearer(&token("alice"));
        assert_refused(&gw, &up, req, 402, "UPGRADE_REQUIRED").await;
    }
    let got = forwarded(
        &gw,
        &up,
        request("post", "/api/reports/export")
            .body("{}")
            .bearer(&token("carol")),
    )
    .await;
    assert_eq!(
        (got.method.as_str(), got.target.as_str()),
        ("post", "/api/reports/export")
    );
}

/// Sends a `HEAD` request and returns the response's status: a response to
/// HEAD has no body, so the status is all there is to check.
async fn head_status(gw: &Gateway, req: Request) -> u16 {
    let mut conn = gw.connect().await;
    conn.write(&req.to_bytes()).await.expect("writing HEAD");
    conn.read_head().await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_judged_by_the_get_route() {
    let (up, gw) = world(|c| {
        c.set_str("access.default", "public").route_toml(
            "prefix = \"/api/reports\"\npolicy = \"subscription\"\nfeatures = [\"export\"]\nmethods = [\"GET\"]",
        )
    })
    .await;
    let before = gw.barrier(&up).await.len();
    assert_eq!(
        head_status(&gw, request("HEAD", "/api/reports/q1")).await,
        401
    );
    let req = request("HEAD", "/api/reports/q1").bearer(&token("alice"));
    assert_eq!(head_status(&gw, req).await, 402);
    assert_not_forwarded(&gw, &up, before, "HEAD /api/reports/q1").await;
    // `head` is not HEAD to hyper (it answers with a body), but it is to
    // frameworks that upper-case the method.
    for method in ["head", "GET", "get"] {
        assert_refused(
            &gw,
            &up,
            request(method, "/api/reports/q1"),
            401,
            "UNAUTHENTICATED",
        )
        .await;
        let req = request(method, "/api/reports/q1").bearer(&token("alice"));
        assert_refused(&gw, &up, req, 402, "UPGRADE_REQUIRED").await;
    }
    let before = up.arrivals().len();
    let req = request("HEAD", "/api/reports/q1").bearer(&token("carol"));
    assert_eq!(head_status(&gw, req).await, 200);
    let got = up.wait_requests(before + 1).await;
    assert_eq!(got[before].method, "HEAD");
    // Other methods still fall through to the default.
    let got = forwarded(&gw, &up, request("PUT", "/api/reports/q1")).await;
    assert_eq!(got.method, "PUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_override_headers_must_pass_the_named_method() {
    let (up, gw) = world(|c| c).await;
    let export = "/api/reports/export";
    // Without an override alice (active, no `export`) may GET the path.
    forwarded(&gw, &up, get(export).bearer(&token("alice"))).await;
    for name in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
        "x-http-method-override",
    ] {
        for value in ["POST", "post", " POST ", "PUT, POST"] {
            let req = get(export).bearer(&token("alice")).header(name, value);
            assert_refused(&gw, &up, req, 402, "UPGRADE_REQUIRED").await;
        }
    }
    // Every header and every value counts, not just the first.
    let req = get(export)
        .bearer(&token("alice"))
        .header("X-HTTP-Method", "GET")
        .header("X-Method-Override", "POST");
    assert_refused(&gw, &up, req, 402, "UPGRADE_REQUIRED").await;
    let req = get(export)
        .bearer(&token("alice"))
        .header("X-HTTP-Method-Override", "GET")
        .header("X-HTTP-Method-Override", "POST");
    assert_refused(&gw, &up, req, 402, "UPGRADE_REQUIRED").await;
    // The POST route needs a token even when the request's own route would not.
    let (up2, gw2) = world(|c| c.set_str("access.default", "public")).await;
    let req = get(export).header("X-HTTP-Method-Override", "POST");
    assert_refused(&gw2, &up2, req, 401, "UNAUTHENTICATED").await;
    // Someone with the feature passes both, and the header reaches the upstream.
    let got = forwarded(
        &gw,
        &up,
        get(export)
            .bearer(&token("carol"))
            .header("X-HTTP-Method-Override", "POST"),
    )
    .await;
    assert_eq!(
        header_values(&got.headers, "x-http-method-override"),
        ["POST"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_override_that_is_not_a_method_is_bad_request() {
    let (up, gw) = world(|c| c).await;
    for value in ["P(ST", "PO ST", "POST;x", "GET, {}"] {
        let req = get("/health").header("X-HTTP-Method-Override", value);
        assert_refused(&gw, &up, req, 400, "BAD_REQUEST").await;
    }
    // An empty value names no method: judged by the request's own.
    assert_public_as(&gw, &up, "/health", "/health").await;
    let got = forwarded(&gw, &up, get("/health").header("X-HTTP-Method", "")).await;
    assert_eq!(got.target, "/health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_paths_with_parameters_are_never_forwarded() {
    let (up, gw) = world(|c| c.set_str("access.default", "public")).await;
    for target in [
        "/_paygate;x/healthz",
        "/_paygate%3B/healthz",
        "/;x/_paygate/healthz",
        "/_paygate/healthz;x",
    ] {
        let resp = gw.send(get(target)).await;
        assert!(!resp.answered_by_upstream(), "{target:?} was forwarded");
        assert_error(&resp, 404, "NOT_FOUND");
    }
    gw.assert_nothing_forwarded(&up).await;
    // With case-insensitive paths, `/_PAYGATE` is the gateway's too.
    let (up, gw) = world(|c| {
        c.set_str("access.default", "public")
            .set("access.case_insensitive_paths", "true")
    })
    .await;
    let resp = gw.send(get("/_PayGate/healthz")).await;
    assert_error(&resp, 404, "NOT_FOUND");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_path_spellings_are_never_forwarded() {
    // A Servlet container would read these as the webhook path: they are the
    // gateway's, answered 404 (only the exact path is the endpoint).
    let (up, gw) = world(|c| {
        c.set_str("stripe.webhook_path", "/stripe/webhook")
            .set_str("stripe.webhook_secret_env", "PAYGATE_E2E_WHSEC")
            .env("PAYGATE_E2E_WHSEC", "whsec_e2e_test")
            .set_str("access.default", "public")
    })
    .await;
    for target in [
        "/stripe/webhook;x",
        "/stripe;/webhook",
        "/stripe/webhook/",
        "/stripe/webhook%3b",
    ] {
        let req = post(target, r#"{"id":"evt_1","type":"customer.created"}"#)
            .header("Stripe-Signature", "t=1,v1=00");
        assert_refused(&gw, &up, req, 404, "NOT_FOUND").await;
    }
    assert_public_as(&gw, &up, "/stripe/webhook/x", "/stripe/webhook/x").await;
}
