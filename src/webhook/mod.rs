//! The Stripe webhook endpoint: verify the signature over the raw
//! body, parse the event, apply it, and acknowledge with 2xx only once the
//! effect is in the store and every instance was told. Anything else answers an
//! error and changes nothing, so Stripe redelivers and nothing acknowledged is lost.
//!
//! The endpoint is open to the internet and must hold a body whole before it can
//! judge it, so it refuses what it can before reading: a declared length over
//! `stripe.max_body`, a missing or malformed `Stripe-Signature`, a `t` outside the
//! tolerance, more than `stripe.max_concurrent` bodies already being read. A body
//! must then arrive whole within `stripe.body_timeout`.

pub(crate) mod body;

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::apply::Applier;
use crate::clock::unix_now;
use crate::config::StripeConfig;
use crate::deny::{json_response, Deny};
use crate::entitlement::SubscriptionStatus;
use crate::outbound::OutboundClient;
use crate::store::EntitlementCache;
use crate::stripe::api::{object_event, RetryPolicy, StripeApi, StripeApiError};
use crate::stripe::{event, signature};

/// Deadline for one Stripe API call made while a delivery waits (refetch,
/// entitlement paging). Short: on failure the answer is `503` and Stripe
/// redelivers later, which beats holding the delivery open.
const STRIPE_API_TIMEOUT: Duration = Duration::from_secs(5);

/// How a delivery ended, for the access log and (later) metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    Duplicate,
    Ignored,
    OtherMode,
}

impl Outcome {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::OtherMode => "other_mode",
        }
    }
}

/// Everything the endpoint needs, built once.
pub(crate) struct WebhookEndpoint {
    pub config: StripeConfig,
    pub applier: Applier,
    pub cache: EntitlementCache,
    /// Present when `stripe.api_key` is set: reads subscriptions back when
    /// `stripe.refetch` is on, and pages entitlement lists longer than an event
    /// carries. Only ever called while handling a delivery, never on the
    /// request path.
    pub stripe_api: Option<StripeApi>,
    /// One permit per webhook body being read (`stripe.max_concurrent`): bounds the
    /// memory a flood of large, slow deliveries can pin, since every body must be held
    /// whole before its signature can be checked.
    reading: Semaphore,
}

impl WebhookEndpoint {
    /// The endpoint for `config`, with a Stripe API client (on `http`'s
    /// connection pool) when it has a key.
    pub(crate) fn new(
        config: StripeConfig,
        applier: Applier,
        cache: EntitlementCache,
        http: &OutboundClient,
    ) -> Self {
        let stripe_api = config
            .api_key
            .as_deref()
            .filter(|key| !key.is_empty())
            .map(|key| {
                StripeApi::new(&config.api_base, key, http.with_timeout(STRIPE_API_TIMEOUT))
                    .with_retry(RetryPolicy::WEBHOOK)
            });
        let reading = Semaphore::new(config.max_concurrent);
        WebhookEndpoint {
            config,
            applier,
            cache,
            stripe_api,
            reading,
        }
    }

    /// Handles one delivery, cheapest refusals first: everything that can be
    /// judged from the head is judged before a byte of the body is read, then the body
    /// is read whole (the signature covers the raw bytes) within `stripe.body_timeout`,
    /// never past `stripe.max_body`, and only while fewer than `stripe.max_concurrent`
    /// other bodies are being read.
    pub(crate) async fn handle<B>(&self, request: Request<B>) -> Result<Response<Full<Bytes>>, Deny>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if request.method() != Method::POST {
            return Err(refuse("method_not_allowed", Deny::MethodNotAllowed));
        }
        // 1. A declared length over the limit: no point reading any of it.
        let max = self.config.max_body;
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max) {
            return Err(refuse("body_too_large", Deny::PayloadTooLarge));
        }
        // 2. The header, and the time it claims, before the body: a request that could
        // never verify must not get the gateway to hold its body.
        let tolerance = i64::try_from(self.config.tolerance.as_secs()).unwrap_or(i64::MAX);
        let header = signature::SignatureHeader::from_request(request.headers())
            .and_then(|header| header.check_time(tolerance, unix_now()).map(|()| header))
            .map_err(refuse_signature)?;
        // 3. A reading slot. Held until the raw body is dropped, so at most
        // `max_concurrent` bodies are in memory at once whatever their senders do.
        let Ok(slot) = self.reading.try_acquire() else {
            crate::metrics::webhook("unread", "rejected");
            return Err(refuse("overloaded", Deny::Overloaded));
        };
        // 4. The body: whole within the deadline (a total limit, so trickling does
        // not extend it), counted against the limit. On any refusal the blocks read so
        // far are dropped with the future.
        let read = body::read(request.into_body(), max);
        let blocks = match tokio::time::timeout(self.config.body_timeout, read).await {
            Ok(Ok(blocks)) => blocks,
            Ok(Err(body::ReadError::TooLarge)) => {
                return Err(refuse("body_too_large", Deny::PayloadTooLarge))
            }
            Ok(Err(body::ReadError::Broken)) => {
                return Err(refuse(
                    "body_unreadable",
                    Deny::BadRequest("the request body could not be read"),
                ))
            }
            Err(_elapsed) => {
                crate::metrics::webhook("unread", "rejected");
                return Err(refuse("body_timeout", Deny::RequestTimeout));
            }
        };
        // 5. The signature, over the pieces as they arrived (no copy).
        header
            .verify(blocks.pieces(), &self.config.webhook_secrets)
            .map_err(refuse_signature)?;
        // 6. Only a verified body is made contiguous and parsed.
        let parsed = event::parse(&blocks.contiguous(), &self.config.user_metadata_keys);
        drop(blocks);
        drop(slot);
        let event = parsed.map_err(|e| {
            crate::metrics::webhook("unparsed", "rejected");
            tracing::info!(target: "paygate::webhook", reason = "bad_payload", error = %e, "webhook refused");
            Deny::BadPayload(e.to_string())
        })?;

        let (outcome, users) = match self.apply(&event).await {
            Ok(done) => done,
            Err(deny) => {
                crate::metrics::webhook(&event.event_type, "failed");
                if deny == Deny::StoreUnavailable {
                    crate::metrics::store_error();
                }
                // Best effort: the store is likely what failed.
                self.record(&event, "failed").await;
                return Err(deny);
            }
        };
        crate::metrics::webhook(&event.event_type, outcome.as_str());
        tracing::info!(
            target: "paygate::webhook",
            event_id = %event.id,
            event_type = %event.event_type,
            result = outcome.as_str(),
            users = ?users,
            "webhook delivery"
        );
        Ok(json_response(
            StatusCode::OK,
            &json!({"received": true, "result": outcome.as_str()}),
        ))
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
        if self
            .config
            .livemode
            .is_some_and(|live| live != event.livemode)
        {
            self.record(event, Outcome::OtherMode.as_str()).await;
            return Ok((Outcome::OtherMode, Vec::new()));
        }
        if matches!(event.kind, event::EventKind::Ignored) {
            self.record(event, Outcome::Ignored.as_str()).await;
            return Ok((Outcome::Ignored, Vec::new()));
        }
        let store = self.applier.store();
        let unavailable = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, event_id = %event.id, "webhook not applied; answering 503 so Stripe retries");
            Deny::StoreUnavailable
        };
        // Read before any write: if the master changes under this delivery,
        // some of its writes may be lost, and it must not be acknowledged.
        let epoch = store.write_epoch();
        if store.event_seen(&event.id).await.map_err(unavailable)? {
            self.record(event, Outcome::Duplicate.as_str()).await;
            return Ok((Outcome::Duplicate, Vec::new()));
        }
        let fresh = self.read_back(event).await?;
        let applied = self
            .applier
            .apply_event(&fresh)
            .await
            .map_err(unavailable)?;
        for user in &applied.users {
            self.cache.invalidate(user).await;
        }
        let outcome = if matches!(event.kind, event::EventKind::Invoice { .. }) {
            Outcome::Ignored
        } else {
            Outcome::Applied
        };
        // Other instances must see the change within a second of our 2xx, so a
        // failed publish is a failed delivery (the redelivery re-publishes).
        // The same round trip remembers the event id and records the delivery.
        let delivery = crate::store::Delivery {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            result: outcome.as_str().to_string(),
            at: unix_now(),
        };
        // The merge's writes must be on `store.min_replica_acks` replicas before
        // the event id is remembered and the delivery acknowledged.
        store.confirm_writes(epoch).await.map_err(unavailable)?;
        store
            .complete_event(&event.id, &applied.users, &delivery)
            .await
            .map_err(unavailable)?;
        Ok((outcome, applied.users))
    }

    /// The event to apply: `event` itself, or what the Stripe API says now.
    ///
    /// - `stripe.refetch` and a subscription event: the subscription as
    ///   `GET /v1/subscriptions/{id}` returns it (dj-stripe's way to make delivery
    ///   order irrelevant); a `404` means it is gone, stored as `canceled`.
    /// - An entitlement summary with `has_more` (the event lists at most 10): the
    ///   full list from `GET /v1/entitlements/active_entitlements`.
    ///
    /// What was read is stamped with the time of the read, not the event's
    /// `created`: the state is Stripe's as of that moment, like a sync's, so an
    /// event created before the read (delivered late) cannot overwrite it and one
    /// created after it can. The event id is kept, so stamps and audit trails
    /// still name the delivery. Any API failure answers `503`: Stripe redelivers.
    async fn read_back<'e>(&self, event: &'e event::Event) -> Result<Cow<'e, event::Event>, Deny> {
        let Some(api) = &self.stripe_api else {
            return Ok(Cow::Borrowed(event));
        };
        let failed = |e: StripeApiError| {
            tracing::warn!(error = %e, event_id = %event.id, "Stripe API read failed; answering 503 so Stripe redelivers");
            Deny::StripeUnavailable
        };
        let reads = (matches!(event.kind, event::EventKind::Subscription { .. })
            && self.config.refetch)
            || matches!(
                event.kind,
                event::EventKind::EntitlementSummary { has_more: true, .. }
            );
        if reads && api.livemode().is_some_and(|live| live != event.livemode) {
            // A key of the other mode gets 404 for everything: storing that as
            // "canceled" would cancel every subscription.
            tracing::error!(
                event_id = %event.id,
                event_livemode = event.livemode,
                "stripe.api_key is of the other mode than this event; cannot read it back, answering 503 (set stripe.livemode or fix the key)"
            );
            return Err(Deny::StripeUnavailable);
        }
        match &event.kind {
            event::EventKind::Subscription { subscription, .. } if self.config.refetch => {
                let read = api
                    .get_subscription(&subscription.id)
                    .await
                    .map_err(failed)?;
                match read.value {
                    Some(object) => {
                        let fresh = object_event(&event.event_type, &event.id, read.read_at, &object, &self.config.user_metadata_keys)
                            .map_err(|e| {
                                tracing::warn!(error = %e, event_id = %event.id, "the refetched subscription is unreadable; answering 503");
                                Deny::StripeUnavailable
                            })?;
                        Ok(Cow::Owned(fresh))
                    }
                    None => {
                        let mut gone = event.clone();
                        gone.created = read.read_at;
                        if let event::EventKind::Subscription { subscription, .. } = &mut gone.kind
                        {
                            subscription.status = SubscriptionStatus::Canceled;
                        }
                        Ok(Cow::Owned(gone))
                    }
                }
            }
            event::EventKind::EntitlementSummary {
                customer,
                has_more: true,
                ..
            } => {
                let read = api
                    .active_entitlement_keys(customer)
                    .await
                    .map_err(failed)?;
                let mut full = event.clone();
                full.created = read.read_at;
                full.kind = event::EventKind::EntitlementSummary {
                    customer: customer.clone(),
                    lookup_keys: read.value,
                    has_more: false,
                };
                Ok(Cow::Owned(full))
            }
            _ => Ok(Cow::Borrowed(event)),
        }
    }
}

/// Logs a refusal with its reason (never the header's value: it is derived from the
/// secret) and hands the answer back.
fn refuse(reason: &'static str, deny: Deny) -> Deny {
    tracing::info!(target: "paygate::webhook", reason, status = deny.status().as_u16(), "webhook refused");
    deny
}

fn refuse_signature(error: signature::SignatureError) -> Deny {
    crate::metrics::webhook("unverified", "rejected");
    refuse(error.reason(), Deny::BadSignature(error.to_string()))
}
