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
//!
//! Every refusal is logged with its `reason` and kept in the store's capped
//! list of refused deliveries (at most [`REFUSALS_RECORDED_PER_SECOND`] a
//! second, so a flood of forged deliveries cannot turn into a flood of writes).

pub(crate) mod body;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Refused deliveries written to the store per second, at most (per
/// instance). Stripe's own failing deliveries come a few a minute; beyond
/// this it is a flood, already visible in the log and the metrics, and each
/// write would be one more thing an unauthenticated sender makes us do.
const REFUSALS_RECORDED_PER_SECOND: u64 = 10;

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
    /// Bounds the refusals written to the store (see [`RecordBudget`]).
    refusals_recorded: RecordBudget,
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
            refusals_recorded: RecordBudget::default(),
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
            return Err(self.refuse("method_not_allowed", Deny::MethodNotAllowed));
        }
        // 1. A declared length over the limit: no point reading any of it.
        let max = self.config.max_body;
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max) {
            return Err(self.refuse("body_too_large", Deny::PayloadTooLarge));
        }
        // 2. The header, and the time it claims, before the body: a request that could
        // never verify must not get the gateway to hold its body.
        let tolerance = i64::try_from(self.config.tolerance.as_secs()).unwrap_or(i64::MAX);
        let header = signature::SignatureHeader::from_request(request.headers())
            .and_then(|header| header.check_time(tolerance, unix_now()).map(|()| header))
            .map_err(|e| self.refuse_signature(e))?;
        // 3. A reading slot. Held until the raw body is dropped, so at most
        // `max_concurrent` bodies are in memory at once whatever their senders do.
        let Ok(slot) = self.reading.try_acquire() else {
            crate::metrics::webhook("unread", "rejected");
            return Err(self.refuse("overloaded", Deny::Overloaded));
        };
        // 4. The body: whole within the deadline (a total limit, so trickling does
        // not extend it), counted against the limit. On any refusal the blocks read so
        // far are dropped with the future.
        let read = body::read(request.into_body(), max);
        let blocks = match tokio::time::timeout(self.config.body_timeout, read).await {
            Ok(Ok(blocks)) => blocks,
            Ok(Err(body::ReadError::TooLarge)) => {
                return Err(self.refuse("body_too_large", Deny::PayloadTooLarge))
            }
            Ok(Err(body::ReadError::Broken)) => {
                return Err(self.refuse(
                    "body_unreadable",
                    Deny::BadRequest("the request body could not be read"),
                ))
            }
            Err(_elapsed) => {
                crate::metrics::webhook("unread", "rejected");
                return Err(self.refuse("body_timeout", Deny::RequestTimeout));
            }
        };
        // 5. The signature, over the pieces as they arrived (no copy).
        header
            .verify(blocks.pieces(), &self.config.webhook_secrets)
            .map_err(|e| self.refuse_signature(e))?;
        // 6. Only a verified body is made contiguous and parsed. Its id and type
        // are kept with a refusal only now that the signature vouches for them.
        let parsed = {
            let body = blocks.contiguous();
            event::parse(&body, &self.config.user_metadata_keys)
                .map_err(|e| (e, id_and_type(&body)))
        };
        drop(blocks);
        drop(slot);
        let event = parsed.map_err(|(e, (event_id, event_type))| {
            crate::metrics::webhook("unparsed", "rejected");
            tracing::info!(target: "paygate::webhook", reason = %"bad_payload", error = %e, "webhook refused");
            self.record_refusal("bad_payload", event_id, event_type);
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
        if outcome == Outcome::Applied {
            crate::metrics::webhook_lag(unix_now() - event.created);
        }
        // The user ids as one comma-separated string with their count beside
        // it: a log platform indexes a plain string field, not a debug dump.
        tracing::info!(
            target: "paygate::webhook",
            event_id = %event.id,
            event_type = %event.event_type,
            result = outcome.as_str(),
            user_count = users.len(),
            users = %users.join(","),
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

impl WebhookEndpoint {
    /// Logs a refusal with its reason (never the header's value: it is derived from
    /// the secret), keeps it in the refused-deliveries list, and hands the answer back.
    fn refuse(&self, reason: &'static str, deny: Deny) -> Deny {
        tracing::info!(target: "paygate::webhook", reason = %reason, http_status = deny.status().as_u16(), "webhook refused");
        self.record_refusal(reason, None, None);
        deny
    }

    fn refuse_signature(&self, error: signature::SignatureError) -> Deny {
        crate::metrics::webhook("unverified", "rejected");
        self.refuse(error.reason(), Deny::BadSignature(error.to_string()))
    }

    /// Keeps a refusal in the store's capped list, within the per-second
    /// budget, in a task of its own: the answer neither waits for the store nor
    /// changes when the write fails (a failure is logged at debug; the refusal
    /// itself is in the log already).
    fn record_refusal(
        &self,
        reason: &'static str,
        event_id: Option<String>,
        event_type: Option<String>,
    ) {
        let now = unix_now();
        if !self.refusals_recorded.take(now) {
            return;
        }
        let refusal = crate::store::RefusedDelivery {
            reason: reason.to_string(),
            event_id,
            event_type,
            at: now,
        };
        let store = std::sync::Arc::clone(self.applier.store());
        tokio::spawn(async move {
            if let Err(e) = store.record_refusal(&refusal).await {
                tracing::debug!(target: "paygate::webhook", error = %e, "could not record the refused delivery");
            }
        });
    }
}

/// A budget of [`REFUSALS_RECORDED_PER_SECOND`] writes per wall-clock second,
/// in one atomic word: the second in the high bits, the count in the low 16.
#[derive(Default)]
struct RecordBudget(AtomicU64);

impl RecordBudget {
    /// Whether one more refusal may be written in second `now`.
    fn take(&self, now: i64) -> bool {
        let second = u64::try_from(now).unwrap_or(0) << 16;
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let next = if current >> 16 == second >> 16 {
                let count = current & 0xffff;
                if count >= REFUSALS_RECORDED_PER_SECOND {
                    return false;
                }
                current + 1
            } else {
                second | 1
            };
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

/// The `id` and `type` of a verified body that is no usable event, when it
/// has them as strings (each cut to 255 bytes): what an operator needs to find
/// the delivery in Stripe's dashboard.
fn id_and_type(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(body) else {
        return (None, None);
    };
    let mut text = |key: &str| match object.remove(key) {
        Some(serde_json::Value::String(mut text)) => {
            let mut cut = text.len().min(255);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            Some(text)
        }
        _ => None,
    };
    (text("id"), text("type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_budget_is_per_second() {
        let budget = RecordBudget::default();
        let taken = (0..20).filter(|_| budget.take(1_700_000_000)).count();
        assert_eq!(taken as u64, REFUSALS_RECORDED_PER_SECOND);
        assert!(budget.take(1_700_000_001), "a new second, a new budget");
    }

    #[test]
    fn only_string_ids_and_types_are_kept_and_cut() {
        assert_eq!(
            id_and_type(br#"{"id":"evt_1","type":"x.y","data":1}"#),
            (Some("evt_1".into()), Some("x.y".into()))
        );
        assert_eq!(id_and_type(br#"{"id":7}"#), (None, None));
        assert_eq!(id_and_type(b"not json"), (None, None));
        let long = format!(r#"{{"id":"{}"}}"#, "é".repeat(200));
        let (id, _) = id_and_type(long.as_bytes());
        assert!(id.unwrap().len() <= 255);
    }
}
