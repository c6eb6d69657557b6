//! Shared helpers for the end-to-end tests: they run the real `paygate` binary against a real upstream.
//!
//! Every test builds its own world: an [`Upstream`] (a hyper server in the test
//! process on `127.0.0.1:0` that records exactly what it received), a
//! [`Gateway`] (the `paygate serve` child process with its own temp config,
//! killed on drop), a raw HTTP/1.1 client ([`RawConn`], [`send`]) that writes
//! request bytes verbatim so path tricks reach the gateway unnormalized, and JWT
//! minting helpers ([`jwt`]) including hand-crafted bad tokens. Tests of the
//! Redis store also get their own `redis-server` ([`TestRedis`], from
//! `paygate-testkit`) on a free port, and signed Stripe deliveries built from real payloads ([`stripe`]).
//! Nothing is shared between tests, so they all run in parallel.
//!
//! Nothing here sleeps to synchronize: waits poll or await a signal, and every
//! wait has a deadline ([`DEADLINE`]) after which the test fails with a message.

pub(crate) mod gateway;
pub(crate) mod https;
pub(crate) mod jwt;
pub(crate) mod raw;
pub(crate) mod stripe;
pub(crate) mod stripe_api;
pub(crate) mod upstream;

pub(crate) use gateway::{paygate, Config, Gateway};
pub(crate) use paygate_testkit::TestRedis;
pub(crate) use raw::{get, post, request, send, RawConn, RawResponse, Request, ResponseHead};
pub(crate) use upstream::{
    read_request_head, Checksum, RawUpstream, Recorded, Reply, Signal, Upstream,
};

/// How long any single wait in a test may take before the test fails (the
/// testkit's, so the stand-ins and the tests agree).
pub(crate) use paygate_testkit::DEADLINE;

/// The tokens of a comma-separated header value (`a, b,c` → `["a", "b", "c"]`).
/// Every value of a header in a list of `(name, value)` pairs, by
/// case-insensitive name (responses and recorded requests share it).
pub(crate) fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

pub(crate) fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Asserts that a gateway-made response is the JSON error of docs/responses.md with `status`
/// and `code`, and returns the parsed body for further checks.
#[track_caller]
pub(crate) fn assert_error(resp: &RawResponse, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(
        resp.status,
        status,
        "expected {status} {code}, got {} with body {:?}",
        resp.status,
        resp.text()
    );
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "gateway error responses are JSON, got content-type {ct:?}"
    );
    let body = resp.json();
    assert_eq!(body["code"], code, "body: {body}");
    assert!(
        body["error"].as_str().is_some_and(|s| !s.is_empty()),
        "`error` must be a non-empty sentence, body: {body}"
    );
    body
}

/// Starts an [`Upstream`] answering `200 upstream ok` and a [`Gateway`] in
/// front of it whose [`Config::new`] defaults are adjusted by `adjust`.
pub(crate) async fn world(adjust: impl FnOnce(Config) -> Config) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&adjust(Config::new(&up.url()))).await;
    (up, gw)
}

/// Starts a [`TestRedis`], an [`Upstream`] and a [`Gateway`] whose store is
/// that Redis and whose `[stripe]` section verifies with [`stripe::WHSEC`]
/// ([`stripe::with_redis_and_stripe`]), adjusted by `adjust`.
pub(crate) async fn redis_world(
    adjust: impl FnOnce(Config) -> Config,
) -> (TestRedis, Upstream, Gateway) {
    let redis = TestRedis::start();
    let up = Upstream::start().await;
    let config = stripe::with_redis_and_stripe(Config::new(&up.url()), &redis.url());
    let gw = Gateway::start(&adjust(config)).await;
    (redis, up, gw)
}

/// Sends `req` and asserts that the upstream answered it and received it once;
/// returns what the upstream received.
pub(crate) async fn forwarded(gw: &Gateway, up: &Upstream, req: Request) -> Recorded {
    let before = up.arrivals().len();
    let what = format!("{} {}", req.method, req.target);
    let resp = gw.send(req).await;
    assert!(
        resp.status == 200 && resp.answered_by_upstream(),
        "{what} should have been forwarded, gateway answered {} {:?}",
        resp.status,
        resp.text()
    );
    let all = up.wait_requests(before + 1).await;
    assert_eq!(
        up.arrivals().len(),
        before + 1,
        "{what} should reach the upstream exactly once"
    );
    all.last().cloned().unwrap()
}
