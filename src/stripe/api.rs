//! A read-only client for the Stripe API, used by `paygate sync` and by
//! the webhook endpoint's `stripe.refetch` and entitlement paging; and the
//! one place that turns an object read from the API into the same [`Event`] a
//! webhook carries, so API reads and webhooks go through one parser and one
//! apply path.
//!
//! This module must not change anything at Stripe. It can only send `GET`: there
//! is no method parameter anywhere, and [`OutboundClient`] itself only knows
//! `get`. (A sync command that creates customers as a side effect
//! duplicates them for every user; that cannot be written with this client.)
//!
//! The secret key goes into the `Authorization` header and nowhere else: it is
//! not in [`StripeApi`]'s `Debug`, in errors, or in log lines, and any echo of it
//! in a Stripe error message is redacted.
//!
//! Retries: `429`, `5xx` and transport failures are retried with exponential
//! backoff (doubling from [`RetryPolicy::first_backoff`] up to
//! [`RetryPolicy::max_backoff`]), waiting at least what `Retry-After` asks, and
//! never when Stripe says `Stripe-Should-Retry: false`. Other `4xx` answers are
//! final. GETs are naturally idempotent, so no idempotency key is needed.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::unix_now;
use crate::entitlement::UnixTime;
use crate::outbound::{OutboundClient, OutboundError};
use crate::stripe::event::{self, Event, EventError};

/// The API version every request pins with `Stripe-Version`.
///
/// Pinned so the shapes paygate reads do not change when the account's default
/// version is upgraded in the dashboard. `2025-03-31.basil` is the version that
/// moved `current_period_end` onto subscription items and an invoice's
/// subscription under `parent.subscription_details`; `webhook::event` reads both
/// the old and the new places, so objects read at this version and events sent
/// at the account's version go through the same parser.
pub(crate) const STRIPE_VERSION: &str = "2025-03-31.basil";

/// Largest response body accepted. A page of 100 subscriptions with their
/// customers expanded is well under a megabyte; the cap only guards memory.
const MAX_BODY: usize = 16 << 20;

/// The page size asked for when listing (Stripe's maximum).
pub(crate) const PAGE_LIMIT: u32 = 100;

/// How hard to try before giving up on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Total attempts, the first one included (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub first_backoff: Duration,
    /// The exponential backoff never waits longer than this.
    pub max_backoff: Duration,
    /// A `Retry-After` asking for longer than this ends the retries at once
    /// (the caller would rather fail now, e.g. a webhook Stripe redelivers).
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// For `paygate sync`: patient, since a backfill may meet rate limits for
    /// minutes and a human is watching the progress.
    pub(crate) const BACKFILL: RetryPolicy = RetryPolicy {
        attempts: 5,
        first_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
    };

    /// For a webhook being handled: one quick retry, then answer `503` and let
    /// Stripe redeliver later instead of holding its delivery open.
    pub(crate) const WEBHOOK: RetryPolicy = RetryPolicy {
        attempts: 2,
        first_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(1),
    };

    /// The wait before attempt `next` (2, 3, …) given the server's `Retry-After`,
    /// or `None` when that asks for more than [`Self::max_retry_after`].
    fn delay(&self, next: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let doublings = next.saturating_sub(2).min(16);
        let backoff = self
            .first_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        match retry_after {
            Some(asked) if asked > self.max_retry_after => None,
            Some(asked) => Some(backoff.max(asked)),
            None => Some(backoff),
        }
    }
}

/// Why a read from the Stripe API failed. Never contains the secret key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StripeApiError {
    /// Stripe answered a final `4xx` (bad key, missing permission, unknown id…).
    #[error("GET {path}: Stripe answered {status}: {message}")]
    Rejected {
        path: String,
        status: u16,
        message: String,
    },
    /// `429`, `5xx` or a network failure, still so after every attempt.
    #[error("GET {path}: Stripe is unavailable after {attempts} attempt(s): {last}")]
    Unavailable {
        path: String,
        attempts: u32,
        last: String,
    },
    /// The request could not be made, or the answer is not what the API documents.
    #[error("GET {path}: {detail}")]
    Invalid { path: String, detail: String },
}

impl StripeApiError {
    /// The HTTP status of a final `4xx`, if that is what this is.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            StripeApiError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A value read from the API, with when it was read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Read<T> {
    pub value: T,
    /// Unix time at which the (successful) request for it started: a lower
    /// bound of the moment the state was observed, so anything Stripe records
    /// at or after it is at least as new. Stamps use it.
    pub read_at: UnixTime,
}

/// A client for `stripe.api_base` with one secret key. Cheap to clone.
#[derive(Clone)]
pub(crate) struct StripeApi {
    /// `scheme://host[:port]` without a trailing slash.
    base: String,
    /// `Bearer <key>`, built once. Never printed (see the `Debug` impl).
    authorization: String,
    /// The key alone, only to redact it from Stripe's error messages.
    key: String,
    http: OutboundClient,
    retry: RetryPolicy,
}

impl fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeApi")
            .field("base", &self.base)
            .field("key", &"[redacted]")
            .field("retry", &self.retry)
            .finish()
    }
}

impl StripeApi {
    /// A client with the [`RetryPolicy::BACKFILL`] policy.
    pub(crate) fn new(api_base: &str, api_key: &str, http: OutboundClient) -> StripeApi {
        StripeApi {
            base: api_base.trim_end_matches('/').to_string(),
            authorization: format!("Bearer {api_key}"),
            key: api_key.to_string(),
            http,
            retry: RetryPolicy::BACKFILL,
        }
    }

    /// Whether the key is a live-mode key (`sk_live_…`, `rk_live_…`) or a
    /// test-mode one (`sk_test_…`, `rk_test_…`); `None` for any other shape.
    /// A key of the other mode sees none of this mode's objects (Stripe
    /// answers `404`), which must not be read as "deleted".
    pub(crate) fn livemode(&self) -> Option<bool> {
        key_livemode(&self.key)
    }

    /// The same client with another retry policy.
    pub(crate) fn with_retry(mut self, retry: RetryPolicy) -> StripeApi {
        self.retry = retry;
        self
    }

    /// `GET {api_base}{path_and_query}` as JSON, retried as the module says.
    #[cfg(test)]
    pub(crate) async fn get_json(&self, path_and_query: &str) -> Result<Value, StripeApiError> {
        Ok(self.read(path_and_query).await?.value)
    }

    /// Like [`StripeApi::get_json`], with the time the successful attempt started.
    pub(crate) async fn read(&self, path_and_query: &str) -> Result<Read<Value>, StripeApiError> {
        let url = format!("{}{}", self.base, path_and_query);
        let headers = [
            ("authorization", self.authorization.as_str()),
            ("stripe-version", STRIPE_VERSION),
        ];
        let path = path_and_query.to_string();
        let attempts = self.retry.attempts.max(1);
        let mut attempt = 1;
        loop {
            let read_at = unix_now();
            let (last, retry_after) = match self.http.get(&url, &headers, MAX_BODY).await {
                Ok(response) if response.status.is_success() => {
                    let value = serde_json::from_slice(&response.body).map_err(|e| {
                        StripeApiError::Invalid {
                            path: path.clone(),
                            detail: format!("the answer is not JSON: {e}"),
                        }
                    })?;
                    return Ok(Read { value, read_at });
                }
                Ok(response) => {
                    let status = response.status.as_u16();
                    let message = self.redact(&error_message(&response.body));
                    let should_retry = response
                        .headers
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok());
                    let retryable = (status == 429 || response.status.is_server_error())
                        && should_retry != Some("false");
                    if !retryable {
                        return Err(StripeApiError::Rejected {
                            path,
                            status,
                            message,
                        });
                    }
                    let retry_after = response
                        .headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    (format!("{status} {message}"), retry_after)
                }
                Err(OutboundError::Timeout) => ("timed out".to_string(), None),
                Err(OutboundError::Transport(detail)) => (self.redact(&detail), None),
                Err(error @ (OutboundError::InvalidUrl(_) | OutboundError::BodyTooLarge)) => {
                    return Err(StripeApiError::Invalid {
                        path,
                        detail: error.to_string(),
                    });
                }
            };
            let delay = if attempt < attempts {
                self.retry.delay(attempt + 1, retry_after)
            } else {
                None
            };
            let Some(delay) = delay else {
                return Err(StripeApiError::Unavailable {
                    path,
                    attempts: attempt,
                    last,
                });
            };
            tracing::warn!(
                target: "paygate::stripe_api",
                path = %path,
                error = %last,
                attempt,
                wait_ms = delay.as_millis() as u64,
                "Stripe API request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Pages through a list endpoint: `path?params&limit=100[&starting_after=…]`.
    pub(crate) fn list(&self, path: &str, params: &[(&str, &str)]) -> Pager<'_> {
        Pager {
            api: self,
            path: path.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starting_after: None,
            done: false,
            pages: 0,
        }
    }

    /// `GET /v1/subscriptions/{id}`; `None` when Stripe answers `404` (the
    /// subscription is gone).
    pub(crate) async fn get_subscription(
        &self,
        id: &str,
    ) -> Result<Read<Option<Value>>, StripeApiError> {
        self.get_optional(&format!("/v1/subscriptions/{}", encode(id)))
            .await
    }

    /// `GET /v1/customers/{id}` (a deleted customer is `{"deleted": true, …}`);
    /// `None` on `404`.
    pub(crate) async fn get_customer(
        &self,
        id: &str,
    ) -> Result<Read<Option<Value>>, StripeApiError> {
        self.get_optional(&format!("/v1/customers/{}", encode(id)))
            .await
    }

    /// Every feature lookup key of the customer's active entitlements, paged from
    /// `GET /v1/entitlements/active_entitlements?customer=…` (first-seen order,
    /// no duplicates). `read_at` is that of the first page.
    pub(crate) async fn active_entitlement_keys(
        &self,
        customer: &str,
    ) -> Result<Read<Vec<String>>, StripeApiError> {
        let mut pager = self.list(
            "/v1/entitlements/active_entitlements",
            &[("customer", customer)],
        );
        let mut keys: Vec<String> = Vec::new();
        let mut read_at = None;
        while let Some(page) = pager.next_page().await? {
            read_at.get_or_insert(page.read_at);
            for entry in &page.data {
                // `lookup_key` is copied onto the entitlement; an expanded
                // feature carries it too.
                let key = entry
                    .get("lookup_key")
                    .and_then(Value::as_str)
                    .or_else(|| {
                        entry
                            .get("feature")
                            .and_then(|f| f.get("lookup_key"))
                            .and_then(Value::as_str)
                    })
                    .filter(|k| !k.is_empty());
                if let Some(key) = key {
                    if !keys.iter().any(|k| k == key) {
                        keys.push(key.to_string());
                    }
                }
            }
        }
        Ok(Read {
            value: keys,
            read_at: read_at.unwrap_or_else(unix_now),
        })
    }

    async fn get_optional(&self, path: &str) -> Result<Read<Option<Value>>, StripeApiError> {
        let started = unix_now();
        match self.read(path).await {
            Ok(read) => Ok(Read {
                value: Some(read.value),
                read_at: read.read_at,
            }),
            Err(StripeApiError::Rejected { status: 404, .. }) => Ok(Read {
                value: None,
                read_at: started,
            }),
            Err(e) => Err(e),
        }
    }

    /// Removes any echo of the key (Stripe masks it already; this is a second belt).
    fn redact(&self, text: &str) -> String {
        if self.key.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.key, "[redacted]")
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub data: Vec<Value>,
    /// When the request for this page started (see [`Read::read_at`]).
    pub read_at: UnixTime,
    /// 1 for the first page.
    pub number: usize,
}

/// Walks a Stripe list with `has_more` and `starting_after = last id`.
pub(crate) struct Pager<'a> {
    api: &'a StripeApi,
    path: String,
    params: Vec<(String, String)>,
    starting_after: Option<String>,
    done: bool,
    pages: usize,
}

impl Pager<'_> {
    /// The next page, or `None` after the last one.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Page>, StripeApiError> {
        if self.done {
            return Ok(None);
        }
        let mut query: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        query.push(format!("limit={PAGE_LIMIT}"));
        if let Some(after) = &self.starting_after {
            query.push(format!("starting_after={}", encode(after)));
        }
        let path = format!("{}?{}", self.path, query.join("&"));
        let read = self.api.read(&path).await?;
        let invalid = |detail: &str| StripeApiError::Invalid {
            path: path.clone(),
            detail: detail.to_string(),
        };
        let data = read
            .value
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| invalid("the answer is not a list (no data array)"))?;
        let has_more = read
            .value
            .get("has_more")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.pages += 1;
        if has_more {
            let last = data
                .last()
                .and_then(|o| o.get("id"))
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty());
            match last {
                // A cursor that does not move would page forever.
                Some(last) if self.starting_after.as_deref() != Some(last) => {
                    self.starting_after = Some(last.to_string())
                }
                _ => return Err(invalid("has_more is set but the page gives no new cursor")),
            }
        } else {
            self.done = true;
        }
        Ok(Some(Page {
            data,
            read_at: read.read_at,
            number: self.pages,
        }))
    }
}

/// The event a webhook of `event_type` would carry for `object` as read at
/// `created`, parsed by the webhook parser (`webhook::event::parse`). `event_id`
/// names the read in stamps and audit trails (e.g. `sync_sub_123_1700000000`).
pub(crate) fn object_event(
    event_type: &str,
    event_id: &str,
    created: UnixTime,
    object: &Value,
    user_metadata_keys: &[String],
) -> Result<Event, EventError> {
    let envelope = json!({
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": created,
        "livemode": object.get("livemode").and_then(Value::as_bool).unwrap_or(false),
        "api_version": STRIPE_VERSION,
        "data": { "object": object },
    });
    let body = serde_json::to_vec(&envelope).map_err(|e| EventError::NotJson(e.to_string()))?;
    event::parse(&body, user_metadata_keys)
}

/// The mode of a secret or restricted key, from its prefix.
pub(crate) fn key_livemode(key: &str) -> Option<bool> {
    match key.get(..8) {
        Some("sk_live_" | "rk_live_") => Some(true),
        Some("sk_test_" | "rk_test_") => Some(false),
        _ => None,
    }
}

/// Stripe's `error.message`, else a short piece of the body.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(message) = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
    {
        return message.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(200).collect();
    if text.trim().is_empty() {
        "(no body)".to_string()
    } else {
        text
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for query
/// keys and values (`expand[]` becomes `expand%5B%5D`) and path segments.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use paygate_testkit::TestServer;

    const KEY: &str = "sk_test_unit_0123456789";

    /// What the test server saw: method, path and query, authorization, version.
    type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

    /// A stand-in for the Stripe API that serves `answer(n, path_and_query)`
    /// for the n-th request (0-based); it stops when the returned server drops.
    async fn serve(
        answer: impl Fn(usize, &str) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> (TestServer, Seen) {
        let seen: Seen = Arc::default();
        let answer = Arc::new(answer);
        let log = seen.clone();
        let server = TestServer::start(move |req: Request<Incoming>| {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let n = {
                let mut log = log.lock().unwrap();
                log.push((
                    req.method().to_string(),
                    target.clone(),
                    header("authorization"),
                    header("stripe-version"),
                ));
                log.len() - 1
            };
            let response = answer(n, &target).map(BodyExt::boxed);
            async move { response }
        })
        .await;
        (server, seen)
    }

    fn json_response(status: u16, body: Value) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    fn api(addr: SocketAddr) -> StripeApi {
        let fast = RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(2),
        };
        StripeApi::new(
            &format!("http://{addr}/"),
            KEY,
            OutboundClient::for_tests(Duration::from_secs(5)),
        )
        .with_retry(fast)
    }

    #[test]
    fn backoff_doubles_is_capped_and_honours_retry_after() {
        let p = RetryPolicy::BACKFILL;
        assert_eq!(p.delay(2, None), Some(Duration::from_millis(250)));
        assert_eq!(p.delay(3, None), Some(Duration::from_millis(500)));
        assert_eq!(p.delay(4, None), Some(Duration::from_secs(1)));
        assert_eq!(p.delay(40, None), Some(Duration::from_secs(8)));
        assert_eq!(
            p.delay(2, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(p.delay(2, Some(Duration::from_secs(61))), None);
        assert_eq!(
            RetryPolicy::WEBHOOK.delay(2, Some(Duration::from_secs(5))),
            None
        );
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(encode("expand[]"), "expand%5B%5D");
        assert_eq!(encode("data.customer"), "data.customer");
        assert_eq!(encode("sub_1/../x?y=z&a"), "sub_1%2F..%2Fx%3Fy%3Dz%26a");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn key_mode_comes_from_the_prefix() {
        assert_eq!(key_livemode("sk_live_abc"), Some(true));
        assert_eq!(key_livemode("rk_live_abc"), Some(true));
        assert_eq!(key_livemode("sk_test_abc"), Some(false));
        assert_eq!(key_livemode("rk_test_abc"), Some(false));
        assert_eq!(key_livemode("sk_abc"), None);
        assert_eq!(key_livemode(""), None);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let api = StripeApi::new(
            "http://127.0.0.1:1",
            KEY,
            OutboundClient::for_tests(Duration::from_secs(1)),
        );
        assert!(!format!("{api:?}").contains(KEY));
    }

    #[tokio::test]
    async fn sends_bearer_key_and_pinned_version_and_retries_429_and_5xx() {
        let (server, seen) = serve(|n, _| match n {
            0 => Response::builder()
                .status(429)
                .header("retry-after", "0")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap(),
            1 => json_response(503, json!({"error": {"message": "try later"}})),
            _ => json_response(200, json!({"id": "sub_1"})),
        })
        .await;
        let read = api(server.addr)
            .read("/v1/subscriptions/sub_1")
            .await
            .expect("read");
        assert_eq!(read.value["id"], "sub_1");
        assert!((read.read_at - unix_now()).abs() <= 2);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        for (method, target, auth, version) in seen {
            assert_eq!(method, "GET");
            assert_eq!(target, "/v1/subscriptions/sub_1");
            assert_eq!(auth, format!("Bearer {KEY}"));
            assert_eq!(version, STRIPE_VERSION);
        }
    }

    #[tokio::test]
    async fn final_4xx_is_not_retried_and_errors_never_carry_the_key() {
        let (server, seen) = serve(|_, _| {
            json_response(
                401,
                json!({"error": {"message": format!("Invalid API Key provided: {KEY}")}}),
            )
        })
        .await;
        let error = api(server.addr)
            .get_json("/v1/subscriptions?limit=1")
            .await
            .expect_err("401");
        assert_eq!(error.status(), Some(401));
        assert_eq!(seen.lock().unwrap().len(), 1);
        let text = error.to_string();
        assert!(!text.contains(KEY), "{text}");
        assert!(
            text.contains("401") && text.contains("[redacted]"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt_and_when_told_not_to_retry() {
        let (server, seen) =
            serve(|_, _| json_response(500, json!({"error": {"message": "boom"}}))).await;
        let error = api(server.addr).get_json("/v1/x").await.expect_err("500");
        assert!(
            matches!(error, StripeApiError::Unavailable { attempts: 3, .. }),
            "{error:?}"
        );
        assert_eq!(seen.lock().unwrap().len(), 3);

        let (server, seen) = serve(|_, _| {
            Response::builder()
                .status(500)
                .header("stripe-should-retry", "false")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap()
        })
        .await;
        let error = api(server.addr).get_json("/v1/x").await.expect_err("500");
        assert_eq!(error.status(), Some(500));
        assert_eq!(seen.lock().unwrap().len(), 1);

        // A Retry-After beyond the policy's patience ends the retries at once.
        let (server, seen) = serve(|_, _| {
            Response::builder()
                .status(429)
                .header("retry-after", "30")
                .body(Full::new(Bytes::new()))
                .unwrap()
        })
        .await;
        let error = api(server.addr).get_json("/v1/x").await.expect_err("429");
        assert!(
            matches!(error, StripeApiError::Unavailable { attempts: 1, .. }),
            "{error:?}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn pager_follows_has_more_with_the_last_id() {
        let (server, seen) = serve(|_, target| {
            if target.contains("starting_after=b") {
                json_response(
                    200,
                    json!({"object": "list", "data": [{"id": "c"}], "has_more": false}),
                )
            } else {
                json_response(
                    200,
                    json!({"object": "list", "data": [{"id": "a"}, {"id": "b"}], "has_more": true}),
                )
            }
        })
        .await;
        let api = api(server.addr);
        let mut pager = api.list(
            "/v1/subscriptions",
            &[("status", "all"), ("expand[]", "data.customer")],
        );
        let mut ids = Vec::new();
        while let Some(page) = pager.next_page().await.expect("page") {
            ids.extend(
                page.data
                    .iter()
                    .map(|o| o["id"].as_str().unwrap().to_string()),
            );
        }
        assert_eq!(ids, ["a", "b", "c"]);
        let targets: Vec<String> = seen.lock().unwrap().iter().map(|s| s.1.clone()).collect();
        assert_eq!(
            targets,
            [
                "/v1/subscriptions?status=all&expand%5B%5D=data.customer&limit=100",
                "/v1/subscriptions?status=all&expand%5B%5D=data.customer&limit=100&starting_after=b",
            ]
        );
    }

    #[tokio::test]
    async fn pager_refuses_a_cursor_that_does_not_move() {
        let (server, _) =
            serve(|_, _| json_response(200, json!({"data": [], "has_more": true}))).await;
        let api = api(server.addr);
        let mut pager = api.list("/v1/subscriptions", &[]);
        assert!(matches!(
            pager.next_page().await,
            Err(StripeApiError::Invalid { .. })
        ));
    }

    #[tokio::test]
    async fn missing_subscription_is_none_and_entitlements_are_paged() {
        let (server, _) = serve(|_, target| {
            if target.starts_with("/v1/subscriptions/") {
                json_response(404, json!({"error": {"message": "No such subscription", "code": "resource_missing"}}))
            } else if target.contains("starting_after=ent_2") {
                json_response(200, json!({"data": [{"id": "ent_3", "feature": {"lookup_key": "c"}}], "has_more": false}))
            } else {
                assert!(target.contains("customer=cus_1"), "{target}");
                json_response(200, json!({"data": [{"id": "ent_1", "lookup_key": "a"}, {"id": "ent_2", "lookup_key": "b"}], "has_more": true}))
            }
        })
        .await;
        let api = api(server.addr);
        assert_eq!(
            api.get_subscription("sub_gone").await.expect("read").value,
            None
        );
        let keys = api.active_entitlement_keys("cus_1").await.expect("keys");
        assert_eq!(keys.value, ["a", "b", "c"]);
    }

    #[test]
    fn api_objects_become_the_events_webhooks_carry() {
        let keys = vec!["user_id".to_string()];
        let sub = json!({"id": "sub_1", "object": "subscription", "status": "past_due", "created": 10,
            "customer": {"id": "cus_1", "object": "customer", "metadata": {"user_id": "u1"}},
            "metadata": {"user_id": "u2"}, "items": {"data": [{"current_period_end": 99, "price": {"id": "price_1", "product": "prod_1"}}]}});
        let event = object_event(
            "customer.subscription.updated",
            "sync_sub_1_100",
            100,
            &sub,
            &keys,
        )
        .expect("parse");
        assert_eq!(event.created, 100);
        assert_eq!(event.id, "sync_sub_1_100");
        match event.kind {
            event::EventKind::Subscription { subscription, user } => {
                assert_eq!(subscription.customer, "cus_1");
                assert_eq!(subscription.current_period_end, Some(99));
                assert_eq!(user.as_deref(), Some("u2"));
            }
            other => panic!("{other:?}"),
        }
    }
}
