//! The Stripe webhook endpoint (SPEC §6): verify the signature over the raw
//! body, parse the event, apply it, and acknowledge with 2xx only once the
//! effect is in the store and every instance was told. Anything else answers an
//! error and changes nothing, so Stripe redelivers and nothing acknowledged is lost.

pub mod event;
pub mod signature;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::json;

use crate::apply::Applier;
use crate::config::StripeConfig;
use crate::deny::{json_response, Deny};
use crate::gateway::unix_now;
use crate::store::EntitlementCache;

/// How a delivery ended, for the access log and (later) metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Ignored,
    OtherMode,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::OtherMode => "other_mode",
        }
    }
}

/// Everything the endpoint needs, built once.
pub struct WebhookEndpoint {
    pub config: StripeConfig,
    pub applier: Applier,
    pub cache: EntitlementCache,
}

impl WebhookEndpoint {
    /// Handles one delivery. The body is read whole (the signature covers the
    /// raw bytes) but never beyond `stripe.max_body`.
    pub async fn handle<B>(&self, request: Request<B>) -> Result<Response<Full<Bytes>>, Deny>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if request.method() != Method::POST {
            return Err(Deny::MethodNotAllowed);
        }
        let max = self.config.max_body;
        let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max) {
            return Err(Deny::PayloadTooLarge);
        }
        let header = request.headers().get("stripe-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = match Limited::new(request.into_body(), max as usize).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    return Err(Deny::PayloadTooLarge);
                }
                return Err(Deny::BadPayload("the body could not be read".into()));
            }
        };

        let tolerance = self.config.tolerance.as_secs() as i64;
        signature::verify(header.as_deref(), &body, &self.config.webhook_secrets, tolerance, unix_now()).map_err(|e| {
            crate::metrics::webhook("unverified", "rejected");
            Deny::BadSignature(e.to_string())
        })?;
        let event = event::parse(&body, &self.config.user_metadata_keys).map_err(|e| {
            crate::metrics::webhook("unparsed", "rejected");
            Deny::BadPayload(e.to_string())
        })?;

        let (outcome, users) = match self.apply(&event).await {
            Ok(done) => done,
            Err(deny) => {
                crate::metrics::webhook(&event.event_type, "failed");
                crate::metrics::store_error();
                // Best effort: the store is likely what failed.
                self.record(&event, "failed").await;
                return Err(deny);
            }
        };
        crate::metrics::webhook(&event.event_type, outcome.as_str());
        self.record(&event, outcome.as_str()).await;
        tracing::info!(
            target: "paygate::webhook",
            event_id = %event.id,
            event_type = %event.event_type,
            result = outcome.as_str(),
            users = ?users,
            "webhook delivery"
        );
        Ok(json_response(StatusCode::OK, &json!({"received": true, "result": outcome.as_str()})))
    }

    /// Keeps the delivery in the capped list the admin API shows.
    async fn record(&self, event: &event::Event, result: &str) {
        let delivery = crate::store::Delivery {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            result: result.to_string(),
            at: unix_now(),
        };
        if let Err(e) = self.applier.store().record_delivery(&delivery).await {
            tracing::debug!(error = %e, "could not record the delivery");
        }
    }

    async fn apply(&self, event: &event::Event) -> Result<(Outcome, Vec<String>), Deny> {
        if self.config.livemode.is_some_and(|live| live != event.livemode) {
            return Ok((Outcome::OtherMode, Vec::new()));
        }
        if matches!(event.kind, event::EventKind::Ignored) {
            return Ok((Outcome::Ignored, Vec::new()));
        }
        let store = self.applier.store();
        let unavailable = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, event_id = %event.id, "webhook not applied; answering 503 so Stripe retries");
            Deny::StoreUnavailable
        };
        if store.event_seen(&event.id).await.map_err(unavailable)? {
            return Ok((Outcome::Duplicate, Vec::new()));
        }
        let applied = self.applier.apply_event(event).await.map_err(unavailable)?;
        for user in &applied.users {
            self.cache.invalidate(user).await;
        }
        // Other instances must see the change within a second of our 2xx, so a
        // failed publish is a failed delivery (the redelivery re-publishes).
        store.publish_invalidation(&applied.users).await.map_err(unavailable)?;
        if let Err(e) = store.mark_event(&event.id).await {
            // Only the duplicate fast path is lost; the merge is idempotent.
            tracing::warn!(error = %e, event_id = %event.id, "could not record the event id");
        }
        let outcome = if matches!(event.kind, event::EventKind::Invoice { .. }) { Outcome::Ignored } else { Outcome::Applied };
        Ok((outcome, applied.users))
    }
}
