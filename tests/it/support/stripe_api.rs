//! A stand-in for the Stripe API: a testkit HTTP server on `127.0.0.1:0` that serves
//! the few read endpoints paygate uses from state the test sets, and records
//! every request it gets.
//!
//! Served (all `GET`, as Stripe does): `/v1/subscriptions` as a paged list
//! (`limit` honoured up to [`StripeApi::page_size`], `starting_after`,
//! `has_more`, `expand[]=data.customer`), `/v1/subscriptions/{id}`,
//! `/v1/customers/{id}`, and `/v1/entitlements/active_entitlements?customer=`
//! (paged the same way). Anything else, and any other method, is answered
//! `404`/`405` with a Stripe-shaped error body, and still recorded, so a test can
//! assert that paygate never asked for it. Objects are built from the real
//! payloads in `tests/fixtures/stripe/` with only ids, status and metadata
//! changed. Scripted failures ([`StripeApi::fail`]) answer a status (e.g. one
//! `429` with `Retry-After: 1`) to the requests they match.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Request, Response};
use paygate_testkit::{full, Body, TestServer};
use serde_json::{json, Value};

use super::stripe::fixture;

/// The secret key test configs give paygate (`stripe.api_key`).
pub(crate) const API_KEY: &str = "sk_test_paygate_e2e_3b9f2c1d8e7a6b5c4d3e";

/// The `Stripe-Version` paygate pins on every Stripe API request.
pub(crate) const STRIPE_VERSION: &str = "2025-03-31.basil";

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    /// The path, percent-decoded.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl ApiRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a query parameter (`expand[]` may repeat).
    pub(crate) fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

type Matcher = Box<dyn Fn(&ApiRequest) -> bool + Send>;

/// A scripted failure: answers `status` to matching requests, `times` times
/// (`None`: for ever).
struct Failure {
    matches: Matcher,
    status: u16,
    retry_after: Option<u64>,
    times: Option<usize>,
}

#[derive(Default)]
struct State {
    /// Subscriptions in list order (Stripe lists newest first; here: as added).
    subscriptions: Vec<Value>,
    customers: BTreeMap<String, Value>,
    /// Customer id → feature lookup keys of its active entitlements.
    entitlements: BTreeMap<String, Vec<String>>,
    page_size: usize,
    failures: Vec<Failure>,
    requests: Vec<ApiRequest>,
}

/// The running stand-in. Stops accepting when dropped.
pub(crate) struct StripeApi {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl StripeApi {
    /// Starts an empty stand-in with a page size of 2.
    pub(crate) async fn start() -> StripeApi {
        let state = Arc::new(Mutex::new(State {
            page_size: 2,
            ..State::default()
        }));
        let serving = state.clone();
        let server = TestServer::start(move |req: Request<Incoming>| {
            std::future::ready(handle(&serving, &req))
        })
        .await;
        StripeApi { server, state }
    }

    /// `http://127.0.0.1:PORT`, for `stripe.api_base`.
    pub(crate) fn url(&self) -> String {
        self.server.url()
    }

    /// The most objects a list page holds, whatever `limit` asks.
    pub(crate) fn page_size(&self, size: usize) {
        self.state.lock().unwrap().page_size = size.max(1);
    }

    /// Adds (or replaces) a customer, with `metadata.user_id = user` when given.
    pub(crate) fn customer(&self, id: &str, user: Option<&str>) {
        let mut customer = fixture("openapi-fixtures3.customer.json");
        customer["id"] = json!(id);
        customer["discount"] = Value::Null;
        customer["metadata"] = match user {
            Some(user) => json!({ "user_id": user }),
            None => json!({}),
        };
        self.state
            .lock()
            .unwrap()
            .customers
            .insert(id.to_string(), customer);
    }

    /// Makes a customer deleted (Stripe keeps answering with a stub object).
    pub(crate) fn delete_customer(&self, id: &str) {
        self.state.lock().unwrap().customers.insert(
            id.to_string(),
            json!({ "id": id, "object": "customer", "deleted": true }),
        );
    }

    /// Adds a subscription of `customer` (created without metadata if unknown)
    /// with `status` and `metadata.user_id = user` when given. From the
    /// basil-shape fixture (`current_period_end` on the items).
    pub(crate) fn subscription(&self, id: &str, customer: &str, status: &str, user: Option<&str>) {
        let known = self.state.lock().unwrap().customers.contains_key(customer);
        if !known {
            self.customer(customer, None);
        }
        let mut sub = fixture("constructed.event.customer.subscription.updated.basil-shape.json")
            ["data"]["object"]
            .take();
        sub["id"] = json!(id);
        sub["customer"] = json!(customer);
        sub["status"] = json!(status);
        sub["metadata"] = match user {
            Some(user) => json!({ "user_id": user }),
            None => json!({}),
        };
        for item in sub["items"]["data"].as_array_mut().unwrap() {
            item["subscription"] = json!(id);
        }
        sub["items"]["url"] = json!(format!("/v1/subscription_items?subscription={id}"));
        let mut state = self.state.lock().unwrap();
        state.subscriptions.retain(|s| s["id"] != id);
        state.subscriptions.push(sub);
    }

    /// Changes a subscription's status.
    pub(crate) fn set_status(&self, id: &str, status: &str) {
        let mut state = self.state.lock().unwrap();
        let sub = state
            .subscriptions
            .iter_mut()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no subscription {id}"));
        sub["status"] = json!(status);
    }

    /// Sets a customer's active entitlements (feature lookup keys).
    pub(crate) fn entitlements(&self, customer: &str, lookup_keys: &[&str]) {
        self.state.lock().unwrap().entitlements.insert(
            customer.to_string(),
            lookup_keys.iter().map(|k| k.to_string()).collect(),
        );
    }

    /// Answers `status` (with `Retry-After` when given) to the next `times`
    /// requests `matches` accepts (`None`: every one), before anything else.
    pub(crate) fn fail(
        &self,
        matches: impl Fn(&ApiRequest) -> bool + Send + 'static,
        status: u16,
        retry_after: Option<u64>,
        times: Option<usize>,
    ) {
        self.state.lock().unwrap().failures.push(Failure {
            matches: Box::new(matches),
            status,
            retry_after,
            times,
        });
    }

    /// Removes every scripted failure.
    pub(crate) fn heal(&self) {
        self.state.lock().unwrap().failures.clear();
    }

    /// Every request received so far, in order.
    pub(crate) fn requests(&self) -> Vec<ApiRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests whose decoded path is `path`.
    pub(crate) fn requests_to(&self, path: &str) -> Vec<ApiRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

fn handle(state: &Mutex<State>, req: &Request<Incoming>) -> Response<Body> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((&target, ""));
    let query = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let request = ApiRequest {
        method: req.method().to_string(),
        target: target.clone(),
        path: decode(raw_path),
        query,
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        at: Instant::now(),
    };
    let mut state = state.lock().unwrap();
    state.requests.push(request.clone());

    if let Some(i) = state
        .failures
        .iter()
        .position(|f| f.times.is_none_or(|n| n > 0) && (f.matches)(&request))
    {
        let failure = &mut state.failures[i];
        if let Some(n) = failure.times.as_mut() {
            *n -= 1;
        }
        let mut response = error(
            failure.status,
            "api_error",
            "scripted failure of the stand-in",
        );
        if let Some(secs) = failure.retry_after {
            response
                .headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
        }
        return response;
    }
    if request.method != "GET" {
        return error(405, "invalid_request_error", "the stand-in serves only GET");
    }
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "subscriptions"] => {
            let expand = request.params("expand[]").contains(&"data.customer");
            let objects: Vec<Value> = state
                .subscriptions
                .iter()
                .map(|sub| {
                    let mut sub = sub.clone();
                    if expand {
                        let customer = sub["customer"].as_str().unwrap_or_default().to_string();
                        if let Some(object) = state.customers.get(&customer) {
                            sub["customer"] = object.clone();
                        }
                    }
                    sub
                })
                .collect();
            list(&state, &request, "/v1/subscriptions", objects)
        }
        ["v1", "subscriptions", id] => match state.subscriptions.iter().find(|s| s["id"] == *id) {
            Some(sub) => ok(sub.clone()),
            None => error(
                404,
                "invalid_request_error",
                &format!("No such subscription: '{id}'"),
            ),
        },
        ["v1", "customers", id] => match state.customers.get(*id) {
            Some(customer) => ok(customer.clone()),
            None => error(
                404,
                "invalid_request_error",
                &format!("No such customer: '{id}'"),
            ),
        },
        ["v1", "entitlements", "active_entitlements"] => {
            let Some(customer) = request.param("customer").map(str::to_string) else {
                return error(
                    400,
                    "invalid_request_error",
                    "Missing required param: customer.",
                );
            };
            let keys = state
                .entitlements
                .get(&customer)
                .cloned()
                .unwrap_or_default();
            let objects = keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    json!({
                        "id": format!("ent_test_{customer}_{i}"),
                        "object": "entitlements.active_entitlement",
                        "feature": format!("feat_test_{key}"),
                        "livemode": false,
                        "lookup_key": key,
                    })
                })
                .collect();
            list(
                &state,
                &request,
                "/v1/entitlements/active_entitlements",
                objects,
            )
        }
        _ => error(
            404,
            "invalid_request_error",
            &format!("Unrecognized request URL (GET: {}).", request.path),
        ),
    }
}

/// One page of `objects` after `starting_after`, at most `limit` (default 10)
/// and the page size.
fn list(state: &State, request: &ApiRequest, url: &str, objects: Vec<Value>) -> Response<Body> {
    let limit = request
        .param("limit")
        .map(|l| l.parse::<usize>().unwrap_or(0))
        .unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return error(400, "invalid_request_error", "Invalid integer: limit.");
    }
    let start = match request.param("starting_after") {
        None => 0,
        Some(after) => match objects.iter().position(|o| o["id"] == after) {
            Some(i) => i + 1,
            None => {
                return error(
                    400,
                    "invalid_request_error",
                    &format!("starting_after {after:?} is not in the list"),
                )
            }
        },
    };
    let size = limit.min(state.page_size);
    let page: Vec<Value> = objects.iter().skip(start).take(size).cloned().collect();
    let has_more = start + page.len() < objects.len();
    ok(json!({ "object": "list", "url": url, "has_more": has_more, "data": page }))
}

fn ok(body: Value) -> Response<Body> {
    respond(200, body)
}

fn error(status: u16, kind: &str, message: &str) -> Response<Body> {
    respond(
        status,
        json!({ "error": { "type": kind, "message": message } }),
    )
}

fn respond(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("request-id", "req_stand_in")
        .body(full(body.to_string()))
        .unwrap()
}

/// Percent-decodes (no `+` for space: Stripe's clients encode spaces as `%20`).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
