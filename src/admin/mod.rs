//! The admin listener on its own address (`admin.listen`). The same operations
//! from a shell (`paygate user`, `paygate customer`) are in `cli/admin.rs`.
//!
//! | route | token | does |
//! | --- | --- | --- |
//! | `GET /metrics` | no | Prometheus text (`crate::metrics::render`) |
//! | `GET /healthz`, `GET /readyz` | no | as `/_paygate/healthz`, `readyz` |
//! | `GET /users/{id}` | yes | stored entitlement, the decision it gives now, the audit trail |
//! | `PUT /users/{id}/override` | yes | comp access: `{"until", "reason", "features"?}` |
//! | `DELETE /users/{id}/override` | yes | ends it |
//! | `GET /webhooks/deliveries?limit=N` | yes | what Stripe sent, newest first, refused deliveries with their reason among them |
//! | `GET /customers/unlinked?cursor=C&limit=N` | yes | customers with events but no user, a page at a time |
//! | `PUT /customers/{id}/link` | yes | operator link: `{"user", "reason"}` (in `customers.rs`) |
//!
//! Everything under `/users`, `/webhooks` and `/customers` needs
//! `Authorization: Bearer <admin.token>`, compared in constant time; without a
//! configured token those paths answer 401 to everyone. This module must not
//! be reachable from the public listener, and must not decide access itself:
//! decisions come from `crate::entitlement`, writes go through `users.rs` and
//! `customers.rs`.

pub(crate) mod customers;
pub(crate) mod users;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::apply::Applier;
use crate::auth::{authorization_bearer, Credential};
use crate::clock::{rfc3339, unix_now};
use crate::deny::json_response;
use crate::gateway::endpoints::readiness;
use crate::gateway::Live;
use crate::routes::path::hex_value;
use crate::store::{Delivery, RefusedDelivery, StoreError, DELIVERIES_KEPT, REFUSALS_KEPT};
use crate::webhook::body::ReadError;

use users::{write_override, OverrideChange, UserView};

/// Largest `PUT /users/{id}/override` body; a real one is a few hundred bytes.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Deliveries listed when `?limit=` is absent.
pub(crate) const DEFAULT_DELIVERIES: usize = 100;

/// The Prometheus text exposition format version the body follows.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The admin API over a running gateway: its config, cache and store, as the
/// current generation has them (a reload changes the admin token too).
pub(crate) struct AdminApi {
    live: Arc<Live>,
}

/// Why the admin API answers with an error (`{"error", "code"}`, like the gateway's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("Admin token required.")]
    Unauthenticated,
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("Not found.")]
    NotFound,
    #[error("Method not allowed.")]
    MethodNotAllowed { allow: &'static str },
    #[error("The request body is too large.")]
    PayloadTooLarge,
    #[error("The entitlement store is unavailable: {0}")]
    StoreUnavailable(String),
}

impl AdminError {
    fn bad(field: &str, message: impl Into<String>) -> AdminError {
        AdminError::BadRequest {
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AdminError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AdminError::NotFound => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            AdminError::Unauthenticated => "UNAUTHENTICATED",
            AdminError::BadRequest { .. } => "BAD_REQUEST",
            AdminError::NotFound => "NOT_FOUND",
            AdminError::MethodNotAllowed { .. } => "METHOD_NOT_ALLOWED",
            AdminError::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            AdminError::StoreUnavailable(_) => "STORE_UNAVAILABLE",
        }
    }

    /// The JSON error response, with `WWW-Authenticate`, `Allow` or `Retry-After` as fits.
    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut body = json!({"error": self.to_string(), "code": self.code()});
        if let AdminError::BadRequest { field, .. } = &self {
            body["field"] = json!(field);
        }
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            AdminError::Unauthenticated => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AdminError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            AdminError::StoreUnavailable(_) => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        crate::metrics::store_error();
        AdminError::StoreUnavailable(error.to_string())
    }
}

/// What a request path names. User ids are percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Metrics,
    Healthz,
    Readyz,
    User(String),
    Override(String),
    Deliveries,
    UnlinkedCustomers,
    CustomerLink(String),
}

impl Route {
    /// The methods each route answers, as sent in `Allow`.
    fn allow(&self) -> &'static str {
        match self {
            Route::Override(_) => "PUT, DELETE",
            Route::CustomerLink(_) => "PUT",
            _ => "GET, HEAD",
        }
    }

    fn accepts(&self, method: &Method) -> bool {
        match self {
            Route::Override(_) => matches!(*method, Method::PUT | Method::DELETE),
            Route::CustomerLink(_) => *method == Method::PUT,
            _ => matches!(*method, Method::GET | Method::HEAD),
        }
    }
}

/// Whether a path is under the token-protected prefixes. Decided on the raw
/// path before anything else, so an unauthenticated caller learns nothing
/// (not even that an id is malformed).
pub(crate) fn needs_token(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    matches!(first, "users" | "webhooks" | "customers")
}

/// Maps a raw request path to a route; 404 for anything else, 400 for a user
/// id that is empty or not valid percent-encoded UTF-8.
pub(crate) fn route(path: &str) -> Result<Route, AdminError> {
    match path {
        "/metrics" => return Ok(Route::Metrics),
        "/healthz" => return Ok(Route::Healthz),
        "/readyz" => return Ok(Route::Readyz),
        "/webhooks/deliveries" => return Ok(Route::Deliveries),
        "/customers/unlinked" => return Ok(Route::UnlinkedCustomers),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/customers/") {
        let Some(raw_id) = rest.strip_suffix("/link") else {
            return Err(AdminError::NotFound);
        };
        let id = percent_decode(raw_id).ok_or_else(|| {
            AdminError::bad("id", "the customer id is not valid percent-encoded UTF-8")
        })?;
        if !customers::valid_customer_id(&id) {
            return Err(AdminError::bad(
                "id",
                "the customer id must be 1 to 256 visible ASCII characters other than ','",
            ));
        }
        return Ok(Route::CustomerLink(id));
    }
    let Some(rest) = path.strip_prefix("/users/") else {
        return Err(AdminError::NotFound);
    };
    // Split on literal slashes only: an id containing `/` arrives as `%2F`.
    let (raw_id, tail) = match rest.split_once('/') {
        Some((id, tail)) => (id, Some(tail)),
        None => (rest, None),
    };
    let id = percent_decode(raw_id)
        .ok_or_else(|| AdminError::bad("id", "the user id is not valid percent-encoded UTF-8"))?;
    if id.is_empty() {
        return Err(AdminError::bad("id", "the user id must not be empty"));
    }
    match tail {
        None => Ok(Route::User(id)),
        Some("override") => Ok(Route::Override(id)),
        Some(_) => Err(AdminError::NotFound),
    }
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (high, low) = (bytes.get(i + 1)?, bytes.get(i + 2)?);
            out.push(hex_value(*high)? << 4 | hex_value(*low)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Unlinked customers per page when `?limit=` is absent, and at most.
const DEFAULT_UNLINKED: usize = 100;
const MAX_UNLINKED: usize = 1000;

/// The value of `?name=` in a query string, if present.
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// `?cursor=C&limit=N` for the unlinked list: a cursor a previous page gave
/// (default `0`, the start) and 1..=1000 ids (default 100).
fn unlinked_paging(query: Option<&str>) -> Result<(u64, usize), AdminError> {
    let cursor = match query_param(query, "cursor") {
        None => 0,
        Some(value) => value.parse::<u64>().map_err(|_| {
            AdminError::bad("cursor", "must be a cursor a previous page returned, or 0")
        })?,
    };
    let limit = match query_param(query, "limit") {
        None => DEFAULT_UNLINKED,
        Some(value) => match value.parse::<usize>() {
            Ok(n) if (1..=MAX_UNLINKED).contains(&n) => n,
            _ => {
                return Err(AdminError::bad(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_UNLINKED}"),
                ))
            }
        },
    };
    Ok((cursor, limit))
}

/// The deliveries and the refused deliveries (two lists, each newest first) as
/// one list, newest first, at most `limit` entries. A refusal reads
/// `"result": "refused"` with its `reason`; its event id and type are `null`
/// unless the body's signature verified.
fn merge_deliveries(
    deliveries: &[Delivery],
    refused: &[RefusedDelivery],
    limit: usize,
) -> Vec<serde_json::Value> {
    let (mut delivered, mut refused) = (deliveries.iter().peekable(), refused.iter().peekable());
    let mut list = Vec::with_capacity(limit.min(deliveries.len() + refused.len()));
    while list.len() < limit {
        let refusal_next = match (delivered.peek(), refused.peek()) {
            (Some(d), Some(r)) => r.at > d.at,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => break,
        };
        let entry = if refusal_next {
            let Some(r) = refused.next() else { break };
            json!({"event_id": r.event_id, "type": r.event_type, "result": "refused", "reason": r.reason, "at": rfc3339(Some(r.at))})
        } else {
            let Some(d) = delivered.next() else { break };
            json!({"event_id": d.event_id, "type": d.event_type, "result": d.result, "at": rfc3339(Some(d.at))})
        };
        list.push(entry);
    }
    list
}

/// `?limit=N` for the deliveries list: 1..=DELIVERIES_KEPT, default 100.
fn deliveries_limit(query: Option<&str>) -> Result<usize, AdminError> {
    let Some(value) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("limit="))
    else {
        return Ok(DEFAULT_DELIVERIES);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=DELIVERIES_KEPT).contains(&n) => Ok(n),
        _ => Err(AdminError::bad(
            "limit",
            format!("must be a whole number from 1 to {DELIVERIES_KEPT}"),
        )),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares two digests without an early exit. Comparing digests rather than
/// the tokens also hides the token's length; a timing difference could at most
/// reveal bytes of a SHA-256 output, which says nothing useful about the token.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether `headers` carry `Authorization: Bearer <token>` matching `expected`
/// (a digest of the configured token; `None` refuses every caller). The header
/// is read by the public listener's parser (`auth::authorization_bearer`), so
/// both listeners agree on what a bearer header is; more than one
/// `Authorization` header is refused.
pub(crate) fn authorized(headers: &HeaderMap, expected: Option<&[u8; 32]>) -> bool {
    let Some(expected) = expected else {
        return false;
    };
    let Credential::Token(token) = authorization_bearer(headers) else {
        return false;
    };
    digests_equal(&sha256(token.as_bytes()), expected)
}

/// SHA-256 of `admin.token`; `None` when no token is configured, which locks
/// the protected paths for everyone.
fn token_digest(config: &crate::config::Config) -> Option<[u8; 32]> {
    config
        .admin
        .as_ref()
        .and_then(|a| a.token.as_deref())
        .map(|t| sha256(t.as_bytes()))
}

impl AdminApi {
    pub(crate) fn new(live: Arc<Live>) -> AdminApi {
        if token_digest(&live.current().config).is_none() {
            tracing::warn!("admin.token is not set: /users, /webhooks and /customers on the admin listener answer 401 to everyone");
        }
        AdminApi { live }
    }

    /// Handles one request. Never fails: every error becomes a JSON response.
    pub(crate) async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let response = match self.dispatch(request).await {
            Ok(response) => response,
            Err(error) => {
                if error == AdminError::Unauthenticated {
                    tracing::info!(target: "paygate::admin", %method, %path, "admin request refused: no or wrong token");
                }
                error.into_response()
            }
        };
        tracing::debug!(target: "paygate::admin", %method, %path, http_status = response.status().as_u16(), "admin request");
        response
    }

    async fn dispatch<B>(&self, request: Request<B>) -> Result<Response<Full<Bytes>>, AdminError>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path();
        let gateway = self.live.current();
        if needs_token(path)
            && !authorized(request.headers(), token_digest(&gateway.config).as_ref())
        {
            return Err(AdminError::Unauthenticated);
        }
        let route = route(path)?;
        if !route.accepts(request.method()) {
            return Err(AdminError::MethodNotAllowed {
                allow: route.allow(),
            });
        }
        let gateway = &*gateway;
        let store = gateway.entitlements.store();
        let rules = &gateway.config.access.rules;
        match route {
            Route::Metrics => {
                let mut response = Response::new(Full::new(Bytes::from(crate::metrics::render())));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                Ok(response)
            }
            Route::Healthz => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
            Route::Readyz => Ok(readiness(gateway).await),
            Route::User(id) => {
                let view = UserView::load(store.as_ref(), &id).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &view.to_json(rules, unix_now()),
                ))
            }
            Route::Override(id) => {
                let now = unix_now();
                let change = if request.method() == Method::PUT {
                    let body = read_body(request, gateway.config.server.body_timeout).await?;
                    let grant = users::parse_override_body(&body, now).map_err(|e| {
                        AdminError::BadRequest {
                            field: e.field,
                            message: e.message,
                        }
                    })?;
                    OverrideChange::Grant(grant)
                } else {
                    OverrideChange::Revoke
                };
                let written = write_override(
                    store.as_ref(),
                    Some(&gateway.entitlements),
                    &id,
                    &change,
                    now,
                )
                .await?;
                match &change {
                    OverrideChange::Grant(grant) => tracing::info!(
                        target: "paygate::admin",
                        user_id = %id,
                        until = %rfc3339(Some(grant.until)),
                        reason = %grant.reason,
                        features = ?grant.features,
                        "override granted"
                    ),
                    OverrideChange::Revoke => {
                        tracing::info!(target: "paygate::admin", user_id = %id, changed = written.changed, "override revoked")
                    }
                }
                let view = UserView::load(store.as_ref(), &id).await?;
                let mut body = view.to_json(rules, now);
                body["changed"] = json!(written.changed);
                Ok(json_response(StatusCode::OK, &body))
            }
            Route::Deliveries => {
                let limit = deliveries_limit(request.uri().query())?;
                let deliveries = store.recent_deliveries(limit).await?;
                let refused = store.recent_refusals(limit.min(REFUSALS_KEPT)).await?;
                let list = merge_deliveries(&deliveries, &refused, limit);
                Ok(json_response(StatusCode::OK, &json!({"deliveries": list})))
            }
            Route::CustomerLink(customer) => {
                let body = read_body(request, gateway.config.server.body_timeout).await?;
                let link = customers::parse_link_body(&body).map_err(|e| {
                    tracing::info!(target: "paygate::admin", customer = %customer, field = %e.field, reason = %e.message, "operator link refused");
                    AdminError::BadRequest {
                        field: e.field,
                        message: e.message,
                    }
                })?;
                let applier = Applier::new(store.clone());
                let Some(linked) = customers::write_link(
                    &applier,
                    Some(&gateway.entitlements),
                    &customer,
                    &link,
                    unix_now(),
                )
                .await?
                else {
                    tracing::info!(target: "paygate::admin", customer = %customer, "operator link refused: no record for the customer");
                    return Err(AdminError::NotFound);
                };
                tracing::info!(
                    target: "paygate::admin",
                    customer = %customer,
                    user_id = %link.user,
                    previous_user = ?linked.previous,
                    reason = %link.reason,
                    "customer linked by an operator"
                );
                Ok(json_response(
                    StatusCode::OK,
                    &customers::linked_json(&customer, &link, &linked),
                ))
            }
            Route::UnlinkedCustomers => {
                let (cursor, limit) = unlinked_paging(request.uri().query())?;
                let page = store.unlinked_page(cursor, limit).await?;
                let mut body = json!({"customers": page.customers});
                // A string: cursors are 64-bit, beyond what JSON numbers
                // reliably carry. Absent on the last page.
                if page.next_cursor != 0 {
                    body["next_cursor"] = json!(page.next_cursor.to_string());
                }
                Ok(json_response(StatusCode::OK, &body))
            }
        }
    }
}

/// Reads a request body of at most [`MAX_BODY`] bytes within `server.body_timeout`,
/// the same way the webhook endpoint reads its bodies.
async fn read_body<B>(request: Request<B>, timeout: Duration) -> Result<Bytes, AdminError>
where
    B: http_body::Body<Data = Bytes> + Send,
{
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(AdminError::PayloadTooLarge);
    }
    let read = crate::webhook::body::read(request.into_body(), MAX_BODY as u64);
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(blocks)) => Ok(Bytes::from(blocks.contiguous().into_owned())),
        Ok(Err(ReadError::TooLarge)) => Err(AdminError::PayloadTooLarge),
        Ok(Err(ReadError::Broken)) | Err(_) => Err(AdminError::bad("body", "could not be read")),
    }
}

#[cfg(test)]
mod tests;
