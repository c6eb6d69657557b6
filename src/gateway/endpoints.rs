//! The gateway's own endpoints under `/_paygate/`: health, readiness
//! and `/me`. Served by the gateway itself, never forwarded.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::auth;
use crate::clock::rfc3339;
use crate::deny::{json_response, Deny};
use crate::gateway::Gateway;

pub(crate) async fn serve<B>(
    gateway: &Gateway,
    request: &Request<B>,
    path: &str,
) -> Result<Response<Full<Bytes>>, Deny> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Err(Deny::MethodNotAllowed);
    }
    match path {
        "/_paygate/healthz" => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
        "/_paygate/readyz" => Ok(readiness(gateway).await),
        "/_paygate/me" => me(gateway, request).await,
        _ => Err(Deny::NotFound),
    }
}

/// Ready = config loaded (we are running), not draining, and the store answers.
pub(crate) async fn readiness(gateway: &Gateway) -> Response<Full<Bytes>> {
    if gateway.is_draining() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining"}),
        );
    }
    let store = gateway.entitlements.store();
    // 1.5 s: long enough for a refused TLS handshake (about 1.2 s with the
    // connection manager's retries) to answer with its reason, short enough
    // that a load balancer sees 503 within 2 s of the store going away.
    match tokio::time::timeout(std::time::Duration::from_millis(1500), store.ping()).await {
        Ok(Ok(())) => json_response(
            StatusCode::OK,
            &json!({"status": "ready", "store": store.kind()}),
        ),
        Ok(Err(e)) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "store unavailable", "error": e.to_string()}),
        ),
        Err(_) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "store unavailable", "error": "ping timed out"}),
        ),
    }
}

/// The caller's own plan state, so a front end can show it without asking Stripe.
async fn me<B>(gateway: &Gateway, request: &Request<B>) -> Result<Response<Full<Bytes>>, Deny> {
    let config = &gateway.config;
    let identity =
        match auth::extract_token(request.headers(), config.jwt.cookie.as_deref()).required() {
            Ok(token) => gateway.auth.verify(token).await,
            Err(error) => Err(error),
        };
    let identity = identity.inspect_err(|error| error.log_refusal())?;
    let found = gateway
        .entitlements
        .get(&identity.user_id)
        .await
        .map_err(|_| Deny::EntitlementUnavailable)?;
    let plan = &found.plan;
    let body = json!({
        "user_id": identity.user_id,
        "status": found.status(),
        "trial_end": rfc3339(plan.trial_end.map(|t| t.get())),
        "current_period_end": rfc3339(plan.current_period_end.map(|t| t.get())),
        "cancel_at_period_end": plan.cancel_at_period_end,
        "has_used_trial": plan.has_used_trial,
        "first_trial_at": rfc3339(plan.first_trial_at.map(|t| t.get())),
        "features": found.feature_names(),
    });
    Ok(json_response(StatusCode::OK, &body))
}
