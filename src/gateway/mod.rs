//! The request path, top to bottom: normalize the path, match a route, check the
//! token, decide access, then forward or answer. Read this file to know what
//! happens to a request.
//!
//! Invariants kept here (see ARCHITECTURE.md):
//! - the path that is authorized is exactly the path that is forwarded;
//! - identity headers reaching the upstream are only ever the ones set here;
//! - a cache hit does no store I/O.

pub(crate) mod endpoints;
mod live;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::apply::Applier;
use crate::auth::{self, AuthError, Authenticator, Credential, Identity};
use crate::config::{Config, OnStoreError};
use crate::deny::Deny;
use crate::entitlement::Refusal;
use crate::metrics::Decision;
use crate::proxy::headers::Peer;
use crate::proxy::trace::{self, TraceContext};
use crate::proxy::{self, headers, BodyWatch, LimitedBody, Upstream, UpstreamBody};
use crate::routes::{path, Policy, Requirements};
use crate::store::{EntitlementCache, EntitlementStore};
use crate::telemetry::{access, Throttle};
use crate::webhook::WebhookEndpoint;
pub use live::Live;

/// What the client gets back: the upstream's streamed body, or a small body the
/// gateway made itself. `Either` avoids boxing on the hot path.
pub(crate) type GatewayBody = Either<UpstreamBody, Full<Bytes>>;

/// Everything a request needs, built from one config and shared by all
/// connections: one generation. A reload builds the next generation and [`Live`]
/// swaps it in; requests in flight keep the one they started with.
pub struct Gateway {
    pub(crate) config: Arc<Config>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) entitlements: EntitlementCache,
    /// `None` without a `[stripe]` section.
    pub(crate) webhook: Option<WebhookEndpoint>,
    upstream: Upstream,
    /// Counters and histograms per route, registered once.
    request_metrics: crate::metrics::RequestMetrics,
    /// Set on SIGTERM/SIGINT: readiness answers 503 so load balancers stop
    /// sending. Shared by every generation (a reload does not undo a drain).
    draining: Arc<AtomicBool>,
    /// `None` unless `telemetry.otlp_endpoint` is set.
    spans: Option<crate::telemetry::otlp::SpanExporter>,
}

/// What became of a request that a step let through, for the `decision`
/// metric label and access-log field. A request no step let through is named
/// by its refusal ([`Deny::decision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// One of the gateway's own endpoints (`/_paygate/…`) answered.
    Own,
    /// The webhook endpoint answered.
    Webhook,
    /// The route's policy let the request through to the upstream.
    Passed(Policy),
}

impl Verdict {
    fn label(self) -> Decision {
        match self {
            Verdict::Own => Decision::Own,
            Verdict::Webhook => Decision::Webhook,
            Verdict::Passed(Policy::Subscription) => Decision::Allow,
            Verdict::Passed(Policy::Authenticated) => Decision::Authenticated,
            Verdict::Passed(Policy::Public) => Decision::Public,
        }
    }
}

/// What the metrics and the access log record about a request besides its
/// method, path and status; filled in by the steps as they learn it.
struct Outcome<'a> {
    /// The matched route's label (metrics): its prefix, or "default". Borrowed
    /// from the config, so recording it costs nothing.
    route: &'a str,
    /// Who the token named, for the access log (a reference count, not a copy).
    user: Option<Arc<Identity>>,
    /// Set once a step let the request through: a refusal after that (a body
    /// too large, the upstream down) keeps this decision and shows in the status.
    passed: Option<Verdict>,
    /// The request's place in its trace (the client's, or a new one), read
    /// up front only when the access log or span export will name it; else
    /// the rewrite reads and replaces `traceparent` in one header-map lookup.
    trace: Option<TraceContext>,
}

/// What the earlier steps decided about forwarding a request.
struct Forwarding {
    /// The client asked for WebSocket, the only upgrade ever passed on (any
    /// other `Upgrade` goes on as plain HTTP/1.1).
    upgrade: bool,
    /// Several `Authorization` headers on a public route: none is passed on.
    strip_authorization: bool,
    /// The identity headers, for a verified caller.
    identity: Option<IdentityValues>,
    /// The upstream gets this trace with paygate's span as its parent (`None`:
    /// the rewrite works it out from the request's own `traceparent`).
    trace: Option<TraceContext>,
}

/// The identity headers the upstream gets for a verified caller, made from the
/// token (user) and the entitlement (status, features).
struct IdentityValues {
    user: HeaderValue,
    status: HeaderValue,
    features: Option<HeaderValue>,
}

impl Gateway {
    /// Builds one generation from a validated config over an open store. With
    /// `previous` (a reload), the entitlement cache is kept when the new config
    /// would build the same one, so a reload does not turn every lookup into a
    /// miss; the process-wide parts (metrics, the invalidation listener) are
    /// [`Live`]'s, set up once.
    pub(crate) async fn generation(
        config: Config,
        store: Arc<dyn EntitlementStore>,
        draining: Arc<AtomicBool>,
        previous: Option<&Gateway>,
    ) -> Result<Gateway, String> {
        let http = crate::outbound::OutboundClient::new(
            std::time::Duration::from_secs(10),
            &config.outbound,
        )?;
        let auth = Arc::new(Authenticator::new(config.jwt.clone(), http.clone()).await?);
        auth.spawn_refresher();
        let entitlements = match previous {
            Some(previous) if same_cache(&previous.config, &config) => {
                previous.entitlements.clone()
            }
            _ => {
                let stale_for = (config.store.on_store_error == OnStoreError::Stale)
                    .then_some(config.store.max_stale);
                EntitlementCache::new(
                    store.clone(),
                    config.store.cache_ttl,
                    config.store.cache_capacity,
                    stale_for,
                    config.access.rules.clone(),
                )
            }
        };
        let webhook = config.stripe.clone().map(|stripe| {
            WebhookEndpoint::new(
                stripe,
                Applier::new(store.clone()),
                entitlements.clone(),
                &http,
            )
        });
        let upstream = Upstream::new(&config.upstream);
        let labels = config
            .routes
            .routes()
            .iter()
            .map(|r| r.prefix.as_str())
            .chain(["default", "/_paygate", "webhook"]);
        let request_metrics = crate::metrics::RequestMetrics::new(labels);
        let spans = crate::telemetry::otlp::SpanExporter::start(&config.telemetry);
        Ok(Gateway {
            config: Arc::new(config),
            auth,
            entitlements,
            webhook,
            upstream,
            request_metrics,
            draining,
            spans,
        })
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Handles one request. Never fails: every error becomes a response here.
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        peer: &Peer,
    ) -> Response<GatewayBody> {
        let started = Instant::now();
        let _in_flight = crate::metrics::in_flight();
        let request_id = headers::request_id(request.headers());
        // Only kept when the access log or span export is on (cloning a `Uri`
        // is a refcount bump): logged as received, since the raw target is
        // what an operator greps for.
        let logged = (self.spans.is_some() || access::enabled())
            .then(|| (request.method().clone(), request.uri().clone()));

        // Decided before `route` consumes the request: a gRPC caller's refusals
        // are framed as gRPC statuses.
        let grpc = crate::deny::is_grpc(&request);
        let mut outcome = Outcome {
            route: "default",
            user: None,
            passed: None,
            // Kept only here: one copy in the request's future. A custom
            // header name costs a byte-by-byte hash per lookup, so without a
            // log line or span to name the trace it is read once, in `rewrite`.
            trace: logged
                .is_some()
                .then(|| TraceContext::from_headers(request.headers())),
        };
        let (mut response, decision) =
            match self.route(request, peer, &request_id, &mut outcome).await {
                Ok((response, verdict)) => (response, verdict.label()),
                Err(refusal) => {
                    let decision = outcome
                        .passed
                        .map_or_else(|| refusal.decision(), Verdict::label);
                    (
                        refusal
                            .into_response_for(&self.config.access, grpc)
                            .map(Either::Right),
                        decision,
                    )
                }
            };
        response
            .headers_mut()
            .insert(headers::X_REQUEST_ID.clone(), request_id.clone());

        self.request_metrics
            .record(outcome.route, decision, started.elapsed());
        let (Some((method, uri)), Some(trace)) = (logged, outcome.trace.as_ref()) else {
            return response;
        };
        if let Some(spans) = &self.spans {
            spans.record(span_record(
                started,
                &method,
                &uri,
                trace,
                &outcome,
                decision,
                response.status(),
            ));
        }
        if !access::enabled() {
            return response;
        }
        let trace_id = trace.trace_id_hex();
        access::log(&access::AccessLine {
            method: method.as_str(),
            path: uri.path(),
            http_status: response.status().as_u16(),
            decision: decision.as_str(),
            user_id: outcome
                .user
                .as_deref()
                .map(|identity| identity.user_id.as_str()),
            latency: started.elapsed(),
            request_id: request_id.to_str().unwrap_or("-"),
            trace_id: std::str::from_utf8(&trace_id).unwrap_or("-"),
            peer: peer.addr.ip(),
        });
        response
    }

    /// The request path in order. Each step either hands the next one what it
    /// learned or refuses with a [`Deny`]; `outcome` collects what the access
    /// log and metrics need whichever way the request ends.
    async fn route<'a>(
        &'a self,
        mut request: Request<Incoming>,
        peer: &Peer,
        request_id: &HeaderValue,
        outcome: &mut Outcome<'a>,
    ) -> Result<(Response<GatewayBody>, Verdict), Deny> {
        let config = &*self.config;
        // Taken first because it needs `&mut request` and the normalized path
        // below borrows the request; dropped unused if the request is denied.
        // Only WebSocket is ever tunnelled: any other `Upgrade`
        // loses its headers below and goes on as plain HTTP/1.1.
        let client_upgrade = headers::is_websocket_upgrade(request.headers())
            .then(|| hyper::upgrade::on(&mut request));

        // 1. Path safety: everything below uses the normalized path only.
        let normalized = path::normalize(request.uri().path()).map_err(|e| {
            tracing::info!(reason = %e, "refused: bad path");
            Deny::BadPath(e.to_string())
        })?;

        // 2. The gateway's own endpoints and the webhook are never forwarded, in
        // any spelling the application could read as them: compared the way
        // routes are (without `;parameters`, case as configured). Only the
        // exact paths are served; other spellings get the gateway's 404.
        if config.routes.is_under(&normalized, "/_paygate") {
            outcome.route = "/_paygate";
            outcome.passed = Some(Verdict::Own);
            let response = endpoints::serve(self, &request, &normalized).await?;
            return Ok((response.map(Either::Right), Verdict::Own));
        }
        if let Some(webhook) = &self.webhook {
            if normalized == webhook.config.webhook_path {
                outcome.route = "webhook";
                outcome.passed = Some(Verdict::Webhook);
                let response = webhook.handle(request).await?;
                return Ok((response.map(Either::Right), Verdict::Webhook));
            }
            if config
                .routes
                .is_at(&normalized, &webhook.config.webhook_path)
            {
                outcome.route = "webhook";
                tracing::info!(path = %normalized, "refused: another spelling of the webhook path");
                return Err(Deny::NotFound);
            }
        }

        // CONNECT would turn the connection into a raw tunnel once the
        // upstream answered 2xx: nothing an application API needs.
        if request.method() == Method::CONNECT {
            return Err(Deny::MethodNotAllowed);
        }

        // 3. Route policy. Every reading the application could act on must
        // pass: the path with and without `;parameters`, and each method a
        // method-override header names. An ordinary request has one reading
        // and costs no allocation.
        let matched = config
            .routes
            .requirements(request.method(), request.headers(), &normalized)
            .map_err(|reason| {
                tracing::info!(reason, "refused: bad request");
                Deny::BadRequest(reason)
            })?;
        outcome.route = matched.label();
        let policy = matched.policy();

        // 4. The token. Several Authorization headers are an invalid token
        // (each reader would pick another); on a public route the request goes
        // on as an anonymous one, without any of them (step 7).
        let credential = auth::extract_token(request.headers(), config.jwt.cookie.as_deref());
        let strip_authorization = credential == Credential::Ambiguous;
        outcome.user = self.authenticate(policy, credential).await?;

        // 5. Entitlement and decision. Looked up for every identified caller so
        // the upstream always sees the status, but only subscription routes deny.
        let identity_values = match outcome.user.as_deref() {
            Some(identity) => Some(self.entitle(identity, &matched, policy).await?),
            None => None,
        };
        let verdict = Verdict::Passed(policy);
        outcome.passed = Some(verdict);

        // 6. Body limit known up front: refuse before opening an upstream request.
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > config.server.max_body) {
            return Err(Deny::PayloadTooLarge);
        }

        // 7. Rewrite and forward. A path that normalization left as it was
        // keeps the client's path-and-query buffer (no copy).
        let uri = match request.uri().path_and_query() {
            Some(original) if original.path() == normalized => http::Uri::from(original.clone()),
            _ => self.upstream.uri_for(&normalized, request.uri().query())?,
        };
        let forwarding = Forwarding {
            strip_authorization,
            upgrade: client_upgrade.is_some(),
            identity: identity_values,
            trace: outcome.trace,
        };
        let (upstream_request, watch) = self.rewrite(request, uri, peer, request_id, forwarding)?;
        let sent = Instant::now();
        let result = self.upstream.send(upstream_request, &watch).await;
        crate::metrics::upstream(sent.elapsed());
        let response = self.answer(result?, client_upgrade)?;
        Ok((response, verdict))
    }

    /// Step 7, before sending: the request as the upstream gets it (hop-by-hop
    /// and identity headers replaced, `X-Forwarded-*`, `Host`, the normalized
    /// `uri`), with its body under the size and stall limits. Synchronous: the
    /// request path's only await here is the send itself.
    fn rewrite(
        &self,
        request: Request<Incoming>,
        uri: http::Uri,
        peer: &Peer,
        request_id: &HeaderValue,
        forwarding: Forwarding,
    ) -> Result<(Request<LimitedBody>, Arc<BodyWatch>), Deny> {
        let config = &*self.config;
        let (mut parts, body) = request.into_parts();
        let original_host = original_host(&parts).map_err(|reason| {
            tracing::info!(reason, "request refused: bad Host");
            Deny::BadRequest(reason)
        })?;
        let h = &mut parts.headers;
        let was_chunked = headers::strip_hop_by_hop(h, forwarding.upgrade);
        // hyper sends no body on a GET/HEAD whose length is not known up front;
        // a chunked one is passed on as chunked instead of silently dropped.
        if was_chunked && matches!(parts.method, Method::GET | Method::HEAD) {
            h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
        headers::strip_identity(h, &config.headers);
        if forwarding.strip_authorization {
            h.remove(http::header::AUTHORIZATION);
        }
        headers::set_forwarded(
            h,
            peer,
            &config.server.trusted_proxies,
            original_host.as_ref(),
        );
        h.insert(headers::X_REQUEST_ID.clone(), request_id.clone());
        // The client's `tracestate` goes on only with the trace it belongs to.
        let continued = match forwarding.trace {
            Some(trace) => {
                h.insert(trace::TRACEPARENT.clone(), trace.header());
                trace.continued()
            }
            None => TraceContext::replace_in(h).continued(),
        };
        if !continued {
            h.remove(&trace::TRACESTATE);
        }
        headers::set_host(h, self.upstream.host_header());
        if let Some(values) = forwarding.identity {
            h.insert(config.headers.user_id.clone(), values.user);
            h.insert(config.headers.status.clone(), values.status);
            if let Some(features) = values.features {
                h.insert(config.headers.entitlements.clone(), features);
            }
        }
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        let (body, watch) =
            LimitedBody::new(body, config.server.max_body, config.server.body_timeout);
        Ok((Request::from_parts(parts, body), watch))
    }

    /// Step 7, after sending: the upstream's response as the client gets it
    /// (hop-by-hop headers stripped). A switch is passed on only when the
    /// client asked for WebSocket and the upstream agreed to exactly that (then
    /// the two sides become a tunnel); a 101 to anything else would hand the
    /// client a raw pipe past every check.
    fn answer(
        &self,
        mut response: Response<UpstreamBody>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<Response<GatewayBody>, Deny> {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            match client_upgrade {
                Some(client_side) if headers::is_websocket_switch(response.headers()) => {
                    let upstream_side = hyper::upgrade::on(&mut response);
                    proxy::spawn_tunnel(client_side, upstream_side);
                    headers::strip_hop_by_hop(response.headers_mut(), true);
                }
                _ => {
                    tracing::warn!(upgrade = ?response.headers().get(http::header::UPGRADE), "upstream switched protocols without a WebSocket request; refused");
                    return Err(Deny::UpstreamUnavailable);
                }
            }
        } else {
            headers::strip_hop_by_hop(response.headers_mut(), false);
        }
        Ok(response.map(Either::Left))
    }

    /// Step 4: the caller's identity, as the route's policy needs it. A public
    /// route never refuses (a bad token there just sets no identity); other
    /// routes need a valid token. Every refusal is logged with its reason,
    /// never with the token.
    async fn authenticate(
        &self,
        policy: Policy,
        credential: Credential<'_>,
    ) -> Result<Option<Arc<Identity>>, Deny> {
        let verified = match (policy, credential) {
            (Policy::Public, Credential::None | Credential::Ambiguous) => return Ok(None),
            (Policy::Public, Credential::Token(token)) => {
                return Ok(match self.auth.verify(token).await {
                    Ok(identity) => Some(identity),
                    // Not a refusal (the request goes on anonymously), but
                    // an operator debugging a login wants to see why.
                    Err(error) => {
                        tracing::debug!(target: "paygate::auth", reason = %error.reason(), detail = %error.detail(), "token ignored on a public route");
                        None
                    }
                });
            }
            (_, credential) => match credential.required() {
                Ok(token) => self.auth.verify(token).await,
                Err(error) => Err(error),
            },
        };
        verified.map(Some).map_err(|error: AuthError| {
            error.log_refusal();
            Deny::from(error)
        })
    }

    /// Step 5: the identity headers for a verified caller, or the refusal its
    /// entitlement gives on a subscription route. Each reading's features must
    /// be granted: the first refusal stands. On other routes the caller passes
    /// and the upstream learns the state from the headers. Every 402 is logged
    /// with its reason (`checkout_required`, `subscription_inactive` with the
    /// status, `feature_missing` with the feature).
    async fn entitle(
        &self,
        identity: &Identity,
        matched: &Requirements<'_>,
        policy: Policy,
    ) -> Result<IdentityValues, Deny> {
        // Made once per verified token (the identity is cached with it).
        let user = identity.user_header.clone();
        let unknown = |user| IdentityValues {
            user,
            status: HeaderValue::from_static("unknown"),
            features: None,
        };
        let found = match self.entitlements.get(&identity.user_id).await {
            Ok(found) => found,
            Err(error) => {
                // During an outage every request fails here: one line a second.
                static FAILED: Throttle = Throttle::new(std::time::Duration::from_secs(1));
                if let Some(admitted) = FAILED.admit() {
                    tracing::warn!(%error, user_id = %identity.user_id, suppressed = admitted.suppressed, "entitlement lookup failed");
                }
                return match (policy, self.config.store.on_store_error) {
                    (Policy::Subscription, OnStoreError::Allow)
                    | (Policy::Public | Policy::Authenticated, _) => Ok(unknown(user)),
                    // `stale` already fell back to last-known state in the cache;
                    // reaching here means there was none young enough.
                    (Policy::Subscription, OnStoreError::Deny | OnStoreError::Stale) => {
                        Err(Deny::EntitlementUnavailable)
                    }
                };
            }
        };
        // Features only go with a grant; the joined header was made when the
        // entry was loaded.
        let verdict = matched
            .features()
            .try_fold("none", |_, required| found.check(required));
        let (status, features) = match verdict {
            Ok(status) => (status, found.features_header().cloned()),
            Err(refusal) if policy == Policy::Subscription => {
                let user_id = identity.user_id.as_str();
                match refusal {
                    Refusal::CheckoutRequired => {
                        tracing::info!(reason = %"checkout_required", user_id, "request refused: payment required");
                    }
                    Refusal::SubscriptionRequired { status } => {
                        tracing::info!(reason = %"subscription_inactive", subscription_status = status, user_id, "request refused: payment required");
                    }
                    Refusal::UpgradeRequired { feature } => {
                        tracing::info!(reason = %"feature_missing", feature, user_id, "request refused: payment required");
                    }
                }
                return Err(refusal.into());
            }
            Err(Refusal::SubscriptionRequired { status }) => (status, None),
            Err(Refusal::CheckoutRequired | Refusal::UpgradeRequired { .. }) => ("none", None),
        };
        Ok(IdentityValues {
            user,
            status: HeaderValue::from_static(status),
            features,
        })
    }
}

/// The span of a finished request, for export: no user id, no token, the
/// normalized path (the raw one when it could not be normalized).
fn span_record(
    started: Instant,
    method: &Method,
    uri: &http::Uri,
    trace: &TraceContext,
    outcome: &Outcome<'_>,
    decision: Decision,
    status: StatusCode,
) -> crate::telemetry::otlp::SpanRecord {
    let path: Box<str> =
        path::normalize(uri.path()).map_or_else(|_| uri.path().into(), |p| p.as_ref().into());
    crate::telemetry::otlp::SpanRecord {
        trace_id: trace.trace_id,
        span_id: trace.span_id,
        parent_id: trace.parent_id,
        flags: trace.flags,
        started,
        duration: started.elapsed(),
        method: method.clone(),
        route: outcome.route.into(),
        path,
        status: status.as_u16(),
        decision: decision.as_str(),
    }
}

/// Whether two configs build the same entitlement cache (so a reload may keep
/// the warm one): same store, lifetimes, size, outage policy and access rules.
fn same_cache(running: &Config, next: &Config) -> bool {
    let (a, b) = (&running.store, &next.store);
    a.cache_ttl == b.cache_ttl
        && a.cache_capacity == b.cache_capacity
        && a.on_store_error == b.on_store_error
        && a.max_stale == b.max_stale
        && running.access.rules == next.access.rules
}

/// The client's host for `X-Forwarded-Host`: the absolute-form target's
/// authority when there is one (RFC 9112 §3.2.2: it replaces `Host`), else the
/// one `Host` header. Anything but a single plain `host[:port]` is refused, so
/// the upstream never builds a URL from userinfo, a list or a path.
fn original_host(parts: &http::request::Parts) -> Result<Option<HeaderValue>, &'static str> {
    if let Some(authority) = parts.uri.authority() {
        if !headers::is_valid_authority(authority.as_str().as_bytes()) {
            return Err("the request target's authority is not a plain host[:port]");
        }
        return Ok(HeaderValue::from_str(authority.as_str()).ok());
    }
    let mut hosts = parts.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => Ok(None),
        (Some(host), None) if headers::is_valid_authority(host.as_bytes()) => {
            Ok(Some(host.clone()))
        }
        (Some(_), None) => Err("the Host header is not a plain host[:port]"),
        (Some(_), Some(_)) => Err("more than one Host header"),
    }
}
