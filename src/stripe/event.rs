//! Turns a verified webhook body into a typed event paygate acts on; tolerant of
//! unknown fields and API versions.
//!
//! Pure: bytes in, an [`Event`] out. This module must not verify signatures (that is
//! `signature.rs`), read the clock, touch the store or decide access; it only extracts
//! the few fields paygate needs from whatever shape the account's API version produces.
//!
//! Tolerance is the point. Stripe adds fields at will and each account pins an API
//! version, so the same event type arrives in several shapes. The body is read as a
//! `serde_json::Value` and only the fields used here are looked at: unknown fields are
//! never an error, absent optional fields read as absent, and where a field moved
//! between versions both places are read:
//!
//! - `current_period_end` is on the subscription before 2025-03-31.basil and only on
//!   `items.data[]` since; the top-level value wins, else the latest item's.
//! - An invoice's subscription id is `subscription` before basil and
//!   `parent.subscription_details.subscription` since.
//! - Ids may arrive as a plain string or, when expanded, as an object with an `id`.
//!
//! A body is refused only when it is not JSON (`NotJson`, answered `400 BAD_PAYLOAD`),
//! or not a Stripe event or a known event type whose object lacks what paygate must act
//! on (`NotAnEvent`, also `400`): guessing there would store a wrong entitlement.

use serde_json::{Map, Value};

use crate::entitlement::{Subscription, SubscriptionStatus, UnixTime};

/// One webhook delivery, reduced to what paygate needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_...`: the idempotency key; a redelivered event has the same id.
    pub id: String,
    /// Stripe's type name, e.g. `customer.subscription.updated`; kept for metrics and
    /// logs even when `kind` is `Ignored`.
    pub event_type: String,
    /// When Stripe created the event (one-second resolution): orders events per object.
    pub created: UnixTime,
    /// Whether the event belongs to live mode; `false` when absent. Compared with
    /// `stripe.livemode` so test events never touch a live store.
    pub livemode: bool,
    /// What the event means for paygate.
    pub kind: EventKind,
}

/// The events paygate acts on, each carrying only the fields it uses.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `checkout.session.completed`: links a user to a customer and subscription, and in
    /// `subscription` mode with a paid session provisionally grants access.
    CheckoutCompleted {
        /// `cs_...`
        session_id: String,
        /// `cus_...`, absent for guest checkouts in `payment` mode.
        customer: Option<String>,
        /// `sub_...`, present in `subscription` mode.
        subscription: Option<String>,
        /// `client_reference_id`, else the first `user_metadata_keys` entry in the
        /// session's metadata.
        user: Option<String>,
        /// `user` came from `client_reference_id` (else from session metadata,
        /// one step lower in link precedence).
        by_reference: bool,
        /// `subscription`, `payment` or `setup`; empty when absent.
        mode: String,
        /// `paid`, `unpaid` or `no_payment_required`; empty when absent.
        payment_status: String,
    },
    /// `checkout.session.async_payment_failed`: a delayed payment method (SEPA,
    /// ACH, …) failed after the session completed; the provisional access the
    /// session gave ends, unless a subscription event for it has arrived.
    CheckoutPaymentFailed {
        /// `cus_...`
        customer: Option<String>,
        /// `sub_...`
        subscription: Option<String>,
    },
    /// `customer.created` / `customer.updated` (`deleted` false) / `customer.deleted`
    /// (`deleted` true).
    Customer {
        /// `cus_...`
        customer: String,
        /// The first `user_metadata_keys` entry in the customer's metadata.
        user: Option<String>,
        /// The customer was deleted: its subscriptions count as `canceled`.
        deleted: bool,
    },
    /// `customer.subscription.created/updated/deleted/paused/resumed/trial_will_end`:
    /// the subscription snapshot in the event. `past_due_since` is left `None`: it is
    /// derived when the event is applied, from the stored state.
    Subscription {
        subscription: Subscription,
        /// The first `user_metadata_keys` entry in the subscription's metadata (set
        /// through Checkout's `subscription_data.metadata`).
        user: Option<String>,
    },
    /// `invoice.paid` / `invoice.payment_succeeded` / `invoice.payment_failed`: recorded,
    /// no access change (the subscription events carry the status).
    Invoice {
        customer: Option<String>,
        /// From `subscription` (before 2025-03-31) or
        /// `parent.subscription_details.subscription` (since).
        subscription: Option<String>,
    },
    /// `entitlements.active_entitlement_summary.updated`: the customer's feature lookup
    /// keys (`entitlements.data[].lookup_key`).
    EntitlementSummary {
        customer: String,
        lookup_keys: Vec<String>,
        /// The event lists at most 10 entitlements; when `true` the full list must be
        /// paged from the API before replacing the stored features.
        has_more: bool,
    },
    /// Any other type: answered `200` and ignored (counted by type).
    Ignored,
}

/// Why a validly signed body was refused (`400 BAD_PAYLOAD`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body is not JSON (or not UTF-8).
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON is not a Stripe event, or a known event type lacks a field paygate needs.
    #[error("not a Stripe event: {0}")]
    NotAnEvent(String),
}

/// Parses a verified webhook body.
///
/// `user_metadata_keys` are the metadata keys that may hold the application's user id,
/// in order of preference (`stripe.user_metadata_keys`).
pub fn parse(body: &[u8], user_metadata_keys: &[String]) -> Result<Event, EventError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|error| EventError::NotJson(error.to_string()))?;
    let envelope = root
        .as_object()
        .ok_or_else(|| not_an_event("the body is not a JSON object"))?;

    // A `v2.core.event` "thin" notification or any other Stripe object also has an id
    // and a type; only snapshot events carry the object paygate reads. A missing
    // `object` is tolerated, since nothing below depends on it.
    if let Some(object_kind) = envelope.get("object") {
        if object_kind.as_str() != Some("event") {
            return Err(not_an_event("`object` is not \"event\""));
        }
    }
    let id = text(envelope.get("id")).ok_or_else(|| not_an_event("missing id"))?;
    let event_type = text(envelope.get("type")).ok_or_else(|| not_an_event("missing type"))?;
    let created = envelope
        .get("created")
        .and_then(Value::as_i64)
        .ok_or_else(|| not_an_event("missing created"))?;
    let livemode = envelope
        .get("livemode")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let object = envelope
        .get("data")
        .and_then(|data| data.get("object"))
        .and_then(Value::as_object)
        .ok_or_else(|| not_an_event("missing data.object"))?;

    let kind = match event_type.as_str() {
        // A delayed payment that succeeded counts like a paid completed
        // session; the session object says `payment_status: paid`.
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            checkout_completed(object, user_metadata_keys)
                .map_err(|field| missing_field(&event_type, field))?
        }
        "checkout.session.async_payment_failed" => EventKind::CheckoutPaymentFailed {
            customer: id_of(object.get("customer")),
            subscription: id_of(object.get("subscription")),
        },
        "customer.created" | "customer.updated" | "customer.deleted" => EventKind::Customer {
            customer: text(object.get("id")).ok_or_else(|| missing_field(&event_type, "id"))?,
            user: metadata_user(object, user_metadata_keys),
            deleted: event_type == "customer.deleted",
        },
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed"
        | "customer.subscription.trial_will_end" => EventKind::Subscription {
            // `customer.subscription.deleted` keeps the object's own status: Stripe
            // sends `canceled` there, and overriding it would hide a surprise.
            subscription: subscription_snapshot(object)
                .map_err(|field| missing_field(&event_type, field))?,
            user: metadata_user(object, user_metadata_keys),
        },
        "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed" => {
            EventKind::Invoice {
                customer: id_of(object.get("customer")),
                subscription: id_of(object.get("subscription")).or_else(|| {
                    id_of(
                        object
                            .get("parent")
                            .and_then(|parent| parent.get("subscription_details"))
                            .and_then(|details| details.get("subscription")),
                    )
                }),
            }
        }
        "entitlements.active_entitlement_summary.updated" => {
            entitlement_summary(object).map_err(|field| missing_field(&event_type, field))?
        }
        _ => EventKind::Ignored,
    };

    Ok(Event {
        id,
        event_type,
        created,
        livemode,
        kind,
    })
}

/// Reads a `checkout.session`, or names the required field it lacks.
fn checkout_completed(
    session: &Map<String, Value>,
    user_metadata_keys: &[String],
) -> Result<EventKind, &'static str> {
    let reference = metadata_value(session.get("client_reference_id"));
    Ok(EventKind::CheckoutCompleted {
        session_id: text(session.get("id")).ok_or("id")?,
        customer: id_of(session.get("customer")),
        subscription: id_of(session.get("subscription")),
        // The explicit reference the application passed to Checkout beats metadata,
        // which may have been copied around (linking precedence).
        user: reference
            .clone()
            .or_else(|| metadata_user(session, user_metadata_keys)),
        by_reference: reference.is_some(),
        // Absent reads as empty, which never matches `subscription`/`paid`, so a
        // strange session is recorded for linking but never grants access.
        mode: text(session.get("mode")).unwrap_or_default(),
        payment_status: text(session.get("payment_status")).unwrap_or_default(),
    })
}

/// Reads a `subscription` object, or names the required field it lacks.
fn subscription_snapshot(object: &Map<String, Value>) -> Result<Subscription, &'static str> {
    let id = text(object.get("id")).ok_or("id")?;
    let customer = id_of(object.get("customer")).ok_or("customer")?;
    // An unknown status is a future Stripe status, not a broken event: it is stored as
    // `Unknown`, which never grants access unless configured by name.
    let status = text(object.get("status"))
        .map(|name| SubscriptionStatus::parse(&name).unwrap_or(SubscriptionStatus::Unknown))
        .ok_or("status")?;
    let items: &[Value] = object
        .get("items")
        .and_then(|items| items.get("data"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);

    // Before basil the period is the subscription's; since, each item has its own and
    // the subscription's paid-up end is the latest of them.
    let current_period_end = integer(object.get("current_period_end")).or_else(|| {
        items
            .iter()
            .filter_map(|item| integer(item.get("current_period_end")))
            .max()
    });

    let mut price_ids = Vec::new();
    let mut product_ids = Vec::new();
    for item in items {
        // `price` replaced `plan` (same id) in 2020; very old shapes only have `plan`.
        let price = item.get("price").filter(|price| !price.is_null());
        let plan = item.get("plan").filter(|plan| !plan.is_null());
        let priced = price.or(plan);
        push_unique(&mut price_ids, id_of(priced));
        push_unique(
            &mut product_ids,
            priced.and_then(|p| id_of(p.get("product"))),
        );
    }
    // Subscriptions from before items existed carry a single top-level `plan`.
    if price_ids.is_empty() {
        if let Some(plan) = object.get("plan") {
            push_unique(&mut price_ids, id_of(Some(plan)));
            push_unique(&mut product_ids, id_of(plan.get("product")));
        }
    }

    Ok(Subscription {
        id,
        customer,
        status,
        // Always present in practice; 0 keeps the snapshot deterministic (the same for
        // every event of the subscription) if a future version ever drops it.
        created: integer(object.get("created")).unwrap_or(0),
        current_period_end,
        trial_start: integer(object.get("trial_start")),
        trial_end: integer(object.get("trial_end")),
        cancel_at_period_end: object
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        price_ids,
        product_ids,
        past_due_since: None,
    })
}

/// Reads an `entitlements.active_entitlement_summary`, or names the field it lacks.
fn entitlement_summary(object: &Map<String, Value>) -> Result<EventKind, &'static str> {
    let customer = id_of(object.get("customer")).ok_or("customer")?;
    // The list is required: reading a missing list as empty would silently strip
    // every feature from the customer.
    let list = object.get("entitlements").ok_or("entitlements")?;
    let entries = list
        .get("data")
        .and_then(Value::as_array)
        .ok_or("entitlements.data")?;
    let mut lookup_keys = Vec::new();
    for entry in entries {
        // `lookup_key` is copied onto the active entitlement; an expanded `feature`
        // carries it too, which covers a payload that ever omits the copy.
        let key = text(entry.get("lookup_key"))
            .or_else(|| entry.get("feature").and_then(|f| text(f.get("lookup_key"))));
        push_unique(&mut lookup_keys, key);
    }
    Ok(EventKind::EntitlementSummary {
        customer,
        lookup_keys,
        has_more: list
            .get("has_more")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The first `user_metadata_keys` entry present in the object's `metadata`.
fn metadata_user(object: &Map<String, Value>, user_metadata_keys: &[String]) -> Option<String> {
    let metadata = object.get("metadata")?.as_object()?;
    user_metadata_keys
        .iter()
        .find_map(|key| metadata_value(metadata.get(key)))
}

/// A user id from metadata or `client_reference_id`.
///
/// Stripe stores metadata values as strings, but integrations that write JSON by hand
/// (or Django's integer user ids) may send a number; an integer is read as its decimal
/// text. Empty strings count as absent (Stripe clears a key by setting it to ""), and
/// anything else (floats, booleans, objects, null) is not a user id.
fn metadata_value(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) if number.is_i64() || number.is_u64() => Some(number.to_string()),
        _ => None,
    }
}

/// A non-empty string field.
fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_string)
}

/// An integer field (unix seconds); `null` and other types read as absent.
fn integer(value: Option<&Value>) -> Option<i64> {
    value.and_then(Value::as_i64)
}

/// The id of a reference that is either a plain id string or an expanded object.
fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(_) => text(value),
        Value::Object(object) => text(object.get("id")),
        _ => None,
    }
}

/// Appends a value once, keeping first-seen order (two items may share a price).
fn push_unique(list: &mut Vec<String>, value: Option<String>) {
    if let Some(value) = value {
        if !list.contains(&value) {
            list.push(value);
        }
    }
}

fn not_an_event(reason: &str) -> EventError {
    EventError::NotAnEvent(reason.to_string())
}

fn missing_field(event_type: &str, field: &str) -> EventError {
    EventError::NotAnEvent(format!("{event_type} object has no usable {field}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::sample::sample_subscription_event;
    use serde_json::json;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/stripe/", $name)).as_slice()
        };
    }

    const BASIL_UPDATED: &[u8] =
        fixture!("constructed.event.customer.subscription.updated.basil-shape.json");
    const BASIL_PAST_DUE: &[u8] =
        fixture!("constructed.event.customer.subscription.updated.past_due.json");
    const BASIL_DELETED: &[u8] = fixture!("constructed.event.customer.subscription.deleted.json");
    const CHECKOUT_SUBSCRIPTION: &[u8] =
        fixture!("captured.event.checkout.session.completed.subscription-mode.json");
    const SYNC_SUMMARY: &[u8] =
        fixture!("sync-engine.event.active_entitlement_summary_updated.json");
    const SYNC_CHECKOUT: &[u8] = fixture!("sync-engine.event.checkout_session_completed.json");
    const SYNC_CUSTOMER_DELETED: &[u8] = fixture!("sync-engine.event.customer_deleted.json");
    const SYNC_CUSTOMER_UPDATED: &[u8] = fixture!("sync-engine.event.customer_updated.json");
    const SYNC_INVOICE_PAID: &[u8] = fixture!("sync-engine.event.invoice_paid.json");
    const SYNC_SUB_CREATED: &[u8] = fixture!("sync-engine.event.subscription_created.json");
    const SYNC_SUB_DELETED: &[u8] = fixture!("sync-engine.event.subscription_deleted.json");
    const SYNC_SUB_UPDATED: &[u8] = fixture!("sync-engine.event.subscription_updated.json");
    const OPENAPI_EVENT: &[u8] = fixture!("openapi-fixtures3.event.json");
    const OPENAPI_SUBSCRIPTION: &[u8] = fixture!("openapi-fixtures3.subscription.json");
    const OPENAPI_INVOICE: &[u8] = fixture!("openapi-fixtures3.invoice.json");
    const OPENAPI_CUSTOMER: &[u8] = fixture!("openapi-fixtures3.customer.json");
    const OPENAPI_SUMMARY: &[u8] =
        fixture!("openapi-fixtures3.entitlements.active_entitlement_summary.json");

    const BASIL_SUB: &str = "sub_1MowQVLkdIwHu7ixeRlqHVzs";
    const BASIL_CUS: &str = "cus_Na6dX7aXxi11N4";
    const BASIL_PRICE: &str = "price_1MowQULkdIwHu7ixraBm864M";
    const BASIL_PRODUCT: &str = "prod_Na6dGcTsmU0I4R";

    /// The default `stripe.user_metadata_keys`.
    fn keys() -> Vec<String> {
        vec!["user_id".to_string(), "djstripe_subscriber".to_string()]
    }

    fn keys_of(list: &[&str]) -> Vec<String> {
        list.iter().map(|key| key.to_string()).collect()
    }

    fn parse_ok(body: &[u8]) -> Event {
        parse(body, &keys()).expect("the body parses")
    }

    fn json_of(body: &[u8]) -> Value {
        serde_json::from_slice(body).expect("fixture is JSON")
    }

    /// A minimal event envelope around `object`.
    fn wrap(event_type: &str, object: Value) -> Vec<u8> {
        json!({
            "id": "evt_wrapped",
            "object": "event",
            "api_version": "2025-03-31.basil",
            "created": 1_700_000_000,
            "data": { "object": object },
            "livemode": false,
            "type": event_type,
        })
        .to_string()
        .into_bytes()
    }

    fn subscription_of(event: &Event) -> (&Subscription, Option<&str>) {
        match &event.kind {
            EventKind::Subscription { subscription, user } => (subscription, user.as_deref()),
            other => panic!("expected a subscription event, got {other:?}"),
        }
    }

    /// A small subscription object for edge cases that the fixtures do not show.
    fn minimal_subscription() -> Value {
        json!({
            "id": "sub_min",
            "object": "subscription",
            "customer": "cus_min",
            "status": "active",
            "created": 1_690_000_000,
            "items": { "object": "list", "data": [] },
            "metadata": {},
        })
    }

    fn with(mut value: Value, pointer: &str, new: Value) -> Value {
        *value.pointer_mut(pointer).expect("pointer exists") = new;
        value
    }

    fn without(mut value: Value, key: &str) -> Value {
        value.as_object_mut().expect("object").remove(key);
        value
    }

    // --- Every event fixture ---

    #[test]
    fn basil_subscription_updated_fixture() {
        let event = parse_ok(BASIL_UPDATED);
        assert_eq!(event.id, "evt_test_constructed_sub_updated_0001");
        assert_eq!(event.event_type, "customer.subscription.updated");
        assert_eq!(event.created, 1_679_609_770);
        assert!(!event.livemode);
        assert_eq!(
            event.kind,
            EventKind::Subscription {
                subscription: Subscription {
                    id: BASIL_SUB.to_string(),
                    customer: BASIL_CUS.to_string(),
                    status: SubscriptionStatus::Active,
                    created: 1_679_609_767,
                    // Basil: no top-level period, so the item's end is used.
                    current_period_end: Some(1_682_288_167),
                    trial_start: None,
                    trial_end: None,
                    cancel_at_period_end: false,
                    price_ids: vec![BASIL_PRICE.to_string()],
                    product_ids: vec![BASIL_PRODUCT.to_string()],
                    past_due_since: None,
                },
                user: Some("user_123".to_string()),
            }
        );
    }

    #[test]
    fn basil_past_due_and_deleted_fixtures() {
        let past_due = parse_ok(BASIL_PAST_DUE);
        assert_eq!(past_due.id, "evt_test_constructed_sub_updated_0002");
        assert_eq!(past_due.created, 1_682_288_200);
        let (subscription, user) = subscription_of(&past_due);
        assert_eq!(subscription.status, SubscriptionStatus::PastDue);
        assert_eq!(subscription.id, BASIL_SUB);
        assert_eq!(user, Some("user_123"));
        assert_eq!(subscription.past_due_since, None);

        let deleted = parse_ok(BASIL_DELETED);
        assert_eq!(deleted.id, "evt_test_constructed_sub_deleted_0003");
        assert_eq!(deleted.event_type, "customer.subscription.deleted");
        assert_eq!(deleted.created, 1_683_000_000);
        let (subscription, user) = subscription_of(&deleted);
        assert_eq!(subscription.status, SubscriptionStatus::Canceled);
        assert_eq!(subscription.customer, BASIL_CUS);
        assert_eq!(subscription.current_period_end, Some(1_682_288_167));
        assert_eq!(user, Some("user_123"));
    }

    #[test]
    fn captured_checkout_in_subscription_mode() {
        let event = parse_ok(CHECKOUT_SUBSCRIPTION);
        assert_eq!(event.id, "evt_1NiEd7CwCgBEGV8OI8Pi0Uu0");
        assert_eq!(event.created, 1_692_787_781);
        assert_eq!(
            event.kind,
            EventKind::CheckoutCompleted {
                session_id: "cs_test_a1WvnB3eDguI7dxy6llB3LBqeRB5l2QhNNr16hRCO6i5k0dAHJX0By35np"
                    .to_string(),
                customer: Some("cus_OV8zF7RMsBo1K1".to_string()),
                subscription: Some("sub_1NiEd5CwEGCgBV8c3ON1VNaz".to_string()),
                user: Some("cllnlqdff0d103i8tvi0yrx5b".to_string()),
                by_reference: true,
                mode: "subscription".to_string(),
                payment_status: "paid".to_string(),
            }
        );
    }

    #[test]
    fn sync_engine_checkout_in_payment_mode() {
        let event = parse_ok(SYNC_CHECKOUT);
        assert_eq!(event.id, "evt_T8nSaZqtPudigUMqnnbY4D4v");
        assert!(event.livemode);
        assert_eq!(
            event.kind,
            EventKind::CheckoutCompleted {
                session_id: "cs_live_9RBjcHiy2i5p99Tf1MYM90c3SHK1grU0E6Ae6pKWR2KPA4ZiuKiB2X1Y3X"
                    .to_string(),
                customer: Some("cus_IhGfebO16cMIGN".to_string()),
                subscription: None,
                user: None,
                by_reference: false,
                mode: "payment".to_string(),
                payment_status: "paid".to_string(),
            }
        );
    }

    #[test]
    fn sync_engine_customer_events() {
        let deleted = parse_ok(SYNC_CUSTOMER_DELETED);
        assert_eq!(deleted.id, "evt_1IlZRsJDPojXS6LN2AbFmnR4");
        assert_eq!(
            deleted.kind,
            EventKind::Customer {
                customer: "cus_IhGfebO16cMIGN".to_string(),
                user: None,
                deleted: true,
            }
        );

        let updated = parse_ok(SYNC_CUSTOMER_UPDATED);
        assert_eq!(updated.event_type, "customer.updated");
        assert_eq!(
            updated.kind,
            EventKind::Customer {
                customer: "cus_IhGfebO16cMIGN".to_string(),
                user: None,
                deleted: false,
            }
        );
        // The same customer linked through an app-specific metadata key.
        let linked = parse(
            SYNC_CUSTOMER_UPDATED,
            &keys_of(&["user_id", "supabase_org_id"]),
        )
        .expect("parses");
        assert_eq!(
            linked.kind,
            EventKind::Customer {
                customer: "cus_IhGfebO16cMIGN".to_string(),
                user: Some("35".to_string()),
                deleted: false,
            }
        );
    }

    #[test]
    fn sync_engine_invoice_paid_reads_the_old_top_level_subscription() {
        let event = parse_ok(SYNC_INVOICE_PAID);
        assert_eq!(event.id, "evt_1KJrGtJDPojXS6LN15fcthM3");
        assert_eq!(event.event_type, "invoice.paid");
        assert_eq!(
            event.kind,
            EventKind::Invoice {
                customer: Some("cus_JsuO3bmrj0QlAw".to_string()),
                subscription: Some("sub_JsuPyCPhXWfZar".to_string()),
            }
        );
    }

    #[test]
    fn sync_engine_subscription_events_have_the_old_shape() {
        let created = parse_ok(SYNC_SUB_CREATED);
        assert_eq!(created.id, "evt_1J02NfJDPojXS6LNawmt1X8q");
        assert_eq!(created.event_type, "customer.subscription.created");
        let (subscription, user) = subscription_of(&created);
        assert_eq!(subscription.id, "sub_JdIzvfy6o5GZRd");
        assert_eq!(subscription.customer, "cus_IhGfebO16cMIGN");
        assert_eq!(subscription.status, SubscriptionStatus::Active);
        assert_eq!(subscription.created, 1_623_148_918);
        // Old shape: the period end is on the subscription, the items have none.
        assert_eq!(subscription.current_period_end, Some(1_625_740_918));
        // Two items with the same price give one id.
        assert_eq!(subscription.price_ids, ["price_1IDQm5JDPojXS6LNM31hxKzp"]);
        assert_eq!(subscription.product_ids, ["prod_Ip4vqwv3EJ7Mi0"]);
        assert_eq!(user, None, "its metadata has none of the default keys");

        let linked =
            parse(SYNC_SUB_CREATED, &keys_of(&["user_id", "organization_id"])).expect("parses");
        assert_eq!(subscription_of(&linked).1, Some("35"));

        let deleted = parse_ok(SYNC_SUB_DELETED);
        assert_eq!(deleted.id, "evt_1J02QdJDPojXS6LNnOJB09Xb");
        let (subscription, _) = subscription_of(&deleted);
        assert_eq!(subscription.id, "sub_JdIzvfy6o5GZRd");
        assert_eq!(subscription.status, SubscriptionStatus::Canceled);

        let updated = parse_ok(SYNC_SUB_UPDATED);
        assert_eq!(updated.id, "evt_1IlavxJDPojXS6LNGNOrPWFQ");
        let (subscription, _) = subscription_of(&updated);
        assert_eq!(subscription.id, "sub_JLEPMp81LApOJl");
        assert_eq!(subscription.status, SubscriptionStatus::Active);
        assert_eq!(subscription.current_period_end, Some(1_621_572_344));
    }

    #[test]
    fn sync_engine_entitlement_summary() {
        let event = parse_ok(SYNC_SUMMARY);
        assert_eq!(event.id, "evt_1RqDanBRSrwpzKxHOnFoInVh");
        assert_eq!(
            event.kind,
            EventKind::EntitlementSummary {
                customer: "cus_Sll319ReSxCmEi".to_string(),
                lookup_keys: vec!["journeys".to_string()],
                has_more: false,
            }
        );
    }

    #[test]
    fn openapi_event_of_another_type_is_ignored() {
        let event = parse_ok(OPENAPI_EVENT);
        assert_eq!(event.id, "evt_1Pgc76B7WZ01zgkWwyRHS12y");
        assert_eq!(event.event_type, "plan.created");
        assert_eq!(event.created, 1_234_567_890);
        assert_eq!(event.kind, EventKind::Ignored);
    }

    // --- Shapes across API versions ---

    #[test]
    fn basil_period_end_is_the_latest_item_end() {
        let openapi = parse_ok(&wrap(
            "customer.subscription.updated",
            json_of(OPENAPI_SUBSCRIPTION),
        ));
        let (subscription, _) = subscription_of(&openapi);
        assert_eq!(subscription.id, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
        assert_eq!(subscription.customer, "cus_QXg1o8vcGmoR32");
        assert_eq!(subscription.current_period_end, Some(976_287_773));
        assert_eq!(subscription.price_ids, ["price_1PgafmB7WZ01zgkW6dKueIc5"]);
        assert_eq!(subscription.product_ids, ["prod_QXg1hqf4jFNsqG"]);

        let items = json!({ "object": "list", "data": [
            { "id": "si_a", "current_period_end": 1_700_000_100,
              "price": { "id": "price_a", "product": "prod_a" } },
            { "id": "si_b", "current_period_end": 1_700_000_300,
              "price": { "id": "price_b", "product": { "id": "prod_b", "object": "product" } } },
            { "id": "si_c", "current_period_end": null,
              "price": { "id": "price_a", "product": "prod_a" } },
        ]});
        let object = with(minimal_subscription(), "/items", items);
        let event = parse_ok(&wrap("customer.subscription.updated", object.clone()));
        let (subscription, _) = subscription_of(&event);
        assert_eq!(subscription.current_period_end, Some(1_700_000_300));
        assert_eq!(subscription.price_ids, ["price_a", "price_b"]);
        assert_eq!(subscription.product_ids, ["prod_a", "prod_b"]);

        // A top-level period (older versions) wins over the items'.
        let mut old = object;
        old["current_period_end"] = json!(1_800_000_000);
        let event = parse_ok(&wrap("customer.subscription.updated", old));
        assert_eq!(
            subscription_of(&event).0.current_period_end,
            Some(1_800_000_000)
        );

        // A null top-level period (as a version in between might send) falls back.
        let nulled = with(
            json_of(OPENAPI_SUBSCRIPTION),
            "/items/data/0/current_period_end",
            json!(1_111),
        );
        let mut nulled = nulled;
        nulled["current_period_end"] = Value::Null;
        let event = parse_ok(&wrap("customer.subscription.updated", nulled));
        assert_eq!(subscription_of(&event).0.current_period_end, Some(1_111));
    }

    #[test]
    fn no_period_anywhere_reads_as_none() {
        let event = parse_ok(&wrap(
            "customer.subscription.created",
            minimal_subscription(),
        ));
        let (subscription, _) = subscription_of(&event);
        assert_eq!(subscription.current_period_end, None);
        assert!(subscription.price_ids.is_empty());
        assert!(subscription.product_ids.is_empty());
    }

    #[test]
    fn old_shapes_read_prices_from_plan() {
        // An item with only `plan` (before prices existed).
        let items =
            json!({ "data": [ { "plan": { "id": "plan_gold", "product": "prod_gold" } } ] });
        let object = with(minimal_subscription(), "/items", items);
        let event = parse_ok(&wrap("customer.subscription.updated", object));
        let (subscription, _) = subscription_of(&event);
        assert_eq!(subscription.price_ids, ["plan_gold"]);
        assert_eq!(subscription.product_ids, ["prod_gold"]);

        // No items at all, just the top-level `plan`.
        let mut object = without(minimal_subscription(), "items");
        object["plan"] = json!({ "id": "plan_silver", "product": { "id": "prod_silver" } });
        let event = parse_ok(&wrap("customer.subscription.updated", object));
        let (subscription, _) = subscription_of(&event);
        assert_eq!(subscription.price_ids, ["plan_silver"]);
        assert_eq!(subscription.product_ids, ["prod_silver"]);
    }

    #[test]
    fn invoice_subscription_id_in_both_shapes() {
        // Basil: `parent.subscription_details.subscription`; the fixture still lists a
        // null top-level `subscription`, as the API reference does.
        let basil = json_of(OPENAPI_INVOICE);
        assert!(basil["subscription"].is_null(), "fixture is basil-shaped");
        let event = parse_ok(&wrap("invoice.payment_failed", basil.clone()));
        assert_eq!(
            event.kind,
            EventKind::Invoice {
                customer: Some("cus_QXg1o8vcGmoR32".to_string()),
                subscription: Some("subscription".to_string()),
            }
        );
        // Expanded references in either place.
        let expanded = with(
            basil.clone(),
            "/parent/subscription_details/subscription",
            json!({ "id": "sub_expanded", "object": "subscription" }),
        );
        let expanded = with(expanded, "/customer", json!({ "id": "cus_expanded" }));
        let event = parse_ok(&wrap("invoice.payment_succeeded", expanded));
        assert_eq!(
            event.kind,
            EventKind::Invoice {
                customer: Some("cus_expanded".to_string()),
                subscription: Some("sub_expanded".to_string()),
            }
        );
        // Without the top-level key at all (as basil accounts receive it).
        let event = parse_ok(&wrap(
            "invoice.paid",
            without(basil.clone(), "subscription"),
        ));
        assert!(
            matches!(event.kind, EventKind::Invoice { subscription: Some(ref s), .. } if s == "subscription")
        );
        // A one-off invoice has neither.
        let one_off = with(basil, "/parent", Value::Null);
        let event = parse_ok(&wrap("invoice.paid", one_off));
        assert_eq!(
            event.kind,
            EventKind::Invoice {
                customer: Some("cus_QXg1o8vcGmoR32".to_string()),
                subscription: None,
            }
        );
    }

    #[test]
    fn expanded_customer_on_a_subscription() {
        let object = with(
            minimal_subscription(),
            "/customer",
            json_of(OPENAPI_CUSTOMER),
        );
        let event = parse_ok(&wrap("customer.subscription.updated", object));
        assert_eq!(subscription_of(&event).0.customer, "cus_QXg1o8vcGmoR32");
    }

    #[test]
    fn trial_and_cancel_fields_are_read() {
        let mut object = minimal_subscription();
        object["status"] = json!("trialing");
        object["trial_start"] = json!(1_690_000_000);
        object["trial_end"] = json!(1_691_209_600);
        object["cancel_at_period_end"] = json!(true);
        let event = parse_ok(&wrap("customer.subscription.trial_will_end", object));
        let (subscription, _) = subscription_of(&event);
        assert_eq!(subscription.status, SubscriptionStatus::Trialing);
        assert_eq!(subscription.trial_start, Some(1_690_000_000));
        assert_eq!(subscription.trial_end, Some(1_691_209_600));
        assert!(subscription.cancel_at_period_end);
        assert_eq!(subscription.created, 1_690_000_000);
    }

    #[test]
    fn every_subscription_event_type_is_a_subscription() {
        for event_type in [
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "customer.subscription.paused",
            "customer.subscription.resumed",
            "customer.subscription.trial_will_end",
        ] {
            let event = parse_ok(&wrap(event_type, minimal_subscription()));
            assert_eq!(event.event_type, event_type);
            assert_eq!(subscription_of(&event).0.id, "sub_min", "{event_type}");
        }
        // Close relatives paygate does not act on are ignored.
        for event_type in [
            "customer.subscription.pending_update_applied",
            "customer.subscription.pending_update_expired",
            "invoice.created",
            "checkout.session.expired",
            "customer.source.created",
        ] {
            assert_eq!(
                parse_ok(&wrap(event_type, json!({}))).kind,
                EventKind::Ignored,
                "{event_type}"
            );
        }
    }

    #[test]
    fn every_status_name_and_an_unknown_one() {
        for (name, status) in [
            ("incomplete", SubscriptionStatus::Incomplete),
            ("incomplete_expired", SubscriptionStatus::IncompleteExpired),
            ("trialing", SubscriptionStatus::Trialing),
            ("active", SubscriptionStatus::Active),
            ("past_due", SubscriptionStatus::PastDue),
            ("canceled", SubscriptionStatus::Canceled),
            ("unpaid", SubscriptionStatus::Unpaid),
            ("paused", SubscriptionStatus::Paused),
            ("on_hold_2027", SubscriptionStatus::Unknown),
            ("ACTIVE", SubscriptionStatus::Unknown),
        ] {
            let body = sample_subscription_event("evt_s", "sub_s", "cus_s", name, 1, None);
            let event = parse_ok(body.as_bytes());
            assert_eq!(subscription_of(&event).0.status, status, "{name}");
        }
    }

    // --- Linking ---

    #[test]
    fn checkout_user_from_client_reference_id_else_metadata() {
        let session = json!({
            "id": "cs_1",
            "object": "checkout.session",
            "client_reference_id": "ref_7",
            "customer": "cus_1",
            "subscription": { "id": "sub_1", "object": "subscription" },
            "metadata": { "user_id": "meta_7" },
            "mode": "subscription",
            "payment_status": "no_payment_required",
        });
        let user_of =
            |session: Value| match parse_ok(&wrap("checkout.session.completed", session)).kind {
                EventKind::CheckoutCompleted { user, .. } => user,
                other => panic!("expected checkout, got {other:?}"),
            };
        assert_eq!(user_of(session.clone()), Some("ref_7".to_string()));
        assert_eq!(
            user_of(with(session.clone(), "/client_reference_id", Value::Null)),
            Some("meta_7".to_string())
        );
        assert_eq!(
            user_of(with(session.clone(), "/client_reference_id", json!(""))),
            Some("meta_7".to_string())
        );
        assert_eq!(
            user_of(without(session.clone(), "client_reference_id")),
            Some("meta_7".to_string())
        );
        let nothing = with(
            without(session.clone(), "client_reference_id"),
            "/metadata",
            json!({}),
        );
        assert_eq!(user_of(nothing), None);

        let event = parse_ok(&wrap("checkout.session.completed", session));
        assert_eq!(
            event.kind,
            EventKind::CheckoutCompleted {
                session_id: "cs_1".to_string(),
                customer: Some("cus_1".to_string()),
                subscription: Some("sub_1".to_string()),
                user: Some("ref_7".to_string()),
                by_reference: true,
                mode: "subscription".to_string(),
                payment_status: "no_payment_required".to_string(),
            }
        );
    }

    #[test]
    fn checkout_metadata_link_on_the_captured_fixture() {
        let mut session = json_of(CHECKOUT_SUBSCRIPTION)["data"]["object"].clone();
        session["client_reference_id"] = Value::Null;
        session["metadata"] = json!({ "djstripe_subscriber": "42" });
        let event = parse_ok(&wrap("checkout.session.completed", session));
        assert!(
            matches!(event.kind, EventKind::CheckoutCompleted { user: Some(ref u), .. } if u == "42")
        );
    }

    #[test]
    fn metadata_keys_are_tried_in_configured_order() {
        let object = with(
            minimal_subscription(),
            "/metadata",
            json!({ "djstripe_subscriber": "from_dj", "user_id": "from_user_id", "other": "x" }),
        );
        let user = |keys: &[&str]| {
            let event = parse(
                &wrap("customer.subscription.updated", object.clone()),
                &keys_of(keys),
            )
            .expect("parses");
            subscription_of(&event).1.map(str::to_string)
        };
        assert_eq!(
            user(&["user_id", "djstripe_subscriber"]),
            Some("from_user_id".to_string())
        );
        assert_eq!(
            user(&["djstripe_subscriber", "user_id"]),
            Some("from_dj".to_string())
        );
        assert_eq!(user(&["missing", "other"]), Some("x".to_string()));
        assert_eq!(user(&["missing"]), None);
        assert_eq!(user(&[]), None);
    }

    #[test]
    fn metadata_values_strings_integers_and_empties() {
        let user = |value: Value| {
            let object = with(
                minimal_subscription(),
                "/metadata",
                json!({ "user_id": value, "djstripe_subscriber": "fallback" }),
            );
            subscription_of(&parse_ok(&wrap("customer.subscription.updated", object)))
                .1
                .map(str::to_string)
        };
        assert_eq!(user(json!("u_1")), Some("u_1".to_string()));
        assert_eq!(user(json!(42)), Some("42".to_string()));
        assert_eq!(
            user(json!(18_446_744_073_709_551_615_u64)),
            Some("18446744073709551615".to_string())
        );
        assert_eq!(user(json!(-7)), Some("-7".to_string()));
        // Not a user id: fall through to the next configured key.
        for absent in [
            json!(""),
            json!(null),
            json!(1.5),
            json!(true),
            json!({}),
            json!([]),
        ] {
            assert_eq!(
                user(absent.clone()),
                Some("fallback".to_string()),
                "{absent}"
            );
        }
        // A user id is taken verbatim, whitespace included: trimming could link the
        // wrong user.
        assert_eq!(user(json!(" 7 ")), Some(" 7 ".to_string()));
        // Metadata that is not an object links nobody.
        let object = with(minimal_subscription(), "/metadata", json!("user_id=1"));
        let event = parse_ok(&wrap("customer.subscription.updated", object));
        assert_eq!(subscription_of(&event).1, None);
    }

    #[test]
    fn customer_events_and_their_metadata_link() {
        let customer = with(
            json_of(OPENAPI_CUSTOMER),
            "/metadata",
            json!({ "user_id": 99 }),
        );
        for (event_type, deleted) in [
            ("customer.created", false),
            ("customer.updated", false),
            ("customer.deleted", true),
        ] {
            let event = parse_ok(&wrap(event_type, customer.clone()));
            assert_eq!(
                event.kind,
                EventKind::Customer {
                    customer: "cus_QXg1o8vcGmoR32".to_string(),
                    user: Some("99".to_string()),
                    deleted,
                },
                "{event_type}"
            );
        }
    }

    // --- Entitlements ---

    #[test]
    fn entitlement_summary_lookup_keys_and_has_more() {
        let event = parse_ok(&wrap(
            "entitlements.active_entitlement_summary.updated",
            json_of(OPENAPI_SUMMARY),
        ));
        assert_eq!(
            event.kind,
            EventKind::EntitlementSummary {
                customer: "customer".to_string(),
                lookup_keys: vec!["lookup_key".to_string()],
                has_more: true,
            }
        );

        let summary = json!({
            "object": "entitlements.active_entitlement_summary",
            "customer": "cus_e",
            "entitlements": { "object": "list", "has_more": false, "data": [
                { "id": "ent_1", "lookup_key": "export" },
                { "id": "ent_2", "feature": { "id": "feat_2", "lookup_key": "api" } },
                { "id": "ent_3", "lookup_key": "export" },
                { "id": "ent_4", "lookup_key": null, "feature": "feat_4" },
                { "id": "ent_5", "lookup_key": "" },
            ]},
            "livemode": false,
        });
        let event = parse_ok(&wrap(
            "entitlements.active_entitlement_summary.updated",
            summary.clone(),
        ));
        assert_eq!(
            event.kind,
            EventKind::EntitlementSummary {
                customer: "cus_e".to_string(),
                lookup_keys: vec!["export".to_string(), "api".to_string()],
                has_more: false,
            }
        );

        // An empty list is a real answer: the customer has no features now.
        let empty = with(summary.clone(), "/entitlements/data", json!([]));
        let event = parse_ok(&wrap(
            "entitlements.active_entitlement_summary.updated",
            empty,
        ));
        assert!(
            matches!(event.kind, EventKind::EntitlementSummary { ref lookup_keys, has_more: false, .. } if lookup_keys.is_empty())
        );

        // A missing list is not read as "no features".
        for broken in [
            without(summary.clone(), "entitlements"),
            with(
                summary.clone(),
                "/entitlements",
                json!({ "object": "list" }),
            ),
            without(summary.clone(), "customer"),
        ] {
            assert!(matches!(
                parse(
                    &wrap("entitlements.active_entitlement_summary.updated", broken),
                    &keys()
                ),
                Err(EventError::NotAnEvent(_))
            ));
        }
    }

    // --- Tolerance ---

    #[test]
    fn unknown_fields_everywhere_are_ignored() {
        let mut root = json_of(BASIL_UPDATED);
        root["brand_new_envelope_field"] = json!({ "nested": [1, 2, 3] });
        root["context"] = json!("acct_123");
        root["data"]["object"]["future_field"] = json!([{ "x": null }]);
        root["data"]["object"]["items"]["data"][0]["price"]["future"] = json!(true);
        root["data"]["object"]["items"]["data"][0]["billing_thresholds"] =
            json!({ "usage_gte": 1 });
        root["data"]["object"]["metadata"]["unrelated"] = json!("value");
        root["data"]["something_new"] = json!(1);
        let event = parse_ok(root.to_string().as_bytes());
        assert_eq!(event, parse_ok(BASIL_UPDATED));
    }

    #[test]
    fn unexpected_types_in_optional_fields_read_as_absent() {
        let mut object = minimal_subscription();
        object["trial_start"] = json!("yesterday");
        object["cancel_at_period_end"] = json!("true");
        object["created"] = json!(null);
        object["items"] = json!("not a list");
        object["metadata"] = json!(null);
        let event = parse_ok(&wrap("customer.subscription.updated", object));
        let (subscription, user) = subscription_of(&event);
        assert_eq!(subscription.trial_start, None);
        assert!(!subscription.cancel_at_period_end);
        assert_eq!(subscription.created, 0);
        assert!(subscription.price_ids.is_empty());
        assert_eq!(user, None);
    }

    #[test]
    fn livemode_is_read_and_defaults_to_false() {
        let mut root = json_of(BASIL_UPDATED);
        root["livemode"] = json!(true);
        assert!(parse_ok(root.to_string().as_bytes()).livemode);
        root.as_object_mut().expect("object").remove("livemode");
        assert!(!parse_ok(root.to_string().as_bytes()).livemode);
    }

    // --- Refusals ---

    #[test]
    fn not_json() {
        for body in [
            &b""[..],
            b"not json",
            b"{\"id\": \"evt_1\"",
            b"\xff\xfe{}",
            b"{\"id\": \"evt_1\"} trailing",
        ] {
            assert!(
                matches!(parse(body, &keys()), Err(EventError::NotJson(_))),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn not_an_event_envelope() {
        let good = json_of(BASIL_UPDATED);
        let mut cases = vec![
            ("array", json!([good.clone()])),
            ("string", json!("evt_1")),
            ("null", Value::Null),
            (
                "v2 thin event",
                with(good.clone(), "/object", json!("v2.core.event")),
            ),
            (
                "another object",
                with(good.clone(), "/object", json!("subscription")),
            ),
            ("empty id", with(good.clone(), "/id", json!(""))),
            ("numeric id", with(good.clone(), "/id", json!(12))),
            ("empty type", with(good.clone(), "/type", json!(""))),
            (
                "string created",
                with(good.clone(), "/created", json!("1679609770")),
            ),
            ("float created", with(good.clone(), "/created", json!(1.5))),
            ("null data", with(good.clone(), "/data", Value::Null)),
            (
                "data.object not an object",
                with(good.clone(), "/data/object", json!("sub_1")),
            ),
        ];
        for key in ["id", "type", "created", "data"] {
            cases.push((key, without(good.clone(), key)));
        }
        let mut no_object = good.clone();
        no_object["data"]
            .as_object_mut()
            .expect("object")
            .remove("object");
        cases.push(("no data.object", no_object));
        for (name, value) in cases {
            assert!(
                matches!(
                    parse(value.to_string().as_bytes(), &keys()),
                    Err(EventError::NotAnEvent(_))
                ),
                "{name}"
            );
        }
        // Even an ignored type needs the envelope.
        let ignored = json!({ "id": "evt_1", "type": "plan.created", "created": 1 });
        assert!(matches!(
            parse(ignored.to_string().as_bytes(), &keys()),
            Err(EventError::NotAnEvent(_))
        ));
    }

    #[test]
    fn known_types_missing_required_fields() {
        let sub = minimal_subscription();
        let cases = [
            (
                "customer.subscription.updated",
                without(sub.clone(), "status"),
                "status",
            ),
            (
                "customer.subscription.updated",
                with(sub.clone(), "/status", Value::Null),
                "status",
            ),
            (
                "customer.subscription.updated",
                with(sub.clone(), "/status", json!("")),
                "status",
            ),
            (
                "customer.subscription.updated",
                with(sub.clone(), "/status", json!(1)),
                "status",
            ),
            (
                "customer.subscription.deleted",
                without(sub.clone(), "customer"),
                "customer",
            ),
            (
                "customer.subscription.created",
                with(sub.clone(), "/customer", json!({ "object": "customer" })),
                "customer",
            ),
            (
                "customer.subscription.created",
                without(sub.clone(), "id"),
                "id",
            ),
            (
                "checkout.session.completed",
                json!({ "object": "checkout.session" }),
                "id",
            ),
            (
                "customer.updated",
                json!({ "object": "customer", "deleted": true }),
                "id",
            ),
            (
                "entitlements.active_entitlement_summary.updated",
                json!({ "entitlements": { "data": [] } }),
                "customer",
            ),
        ];
        for (event_type, object, field) in cases {
            match parse(&wrap(event_type, object), &keys()) {
                Err(EventError::NotAnEvent(reason)) => {
                    assert!(
                        reason.contains(event_type) && reason.contains(field),
                        "{reason}"
                    );
                }
                other => panic!("{event_type} without {field}: {other:?}"),
            }
        }
        // An invoice has no required field: it is only recorded.
        assert_eq!(
            parse_ok(&wrap("invoice.paid", json!({}))).kind,
            EventKind::Invoice {
                customer: None,
                subscription: None
            }
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        let error = parse(b"{", &keys()).expect_err("not JSON");
        assert!(error.to_string().starts_with("not JSON: "), "{error}");
        let error = parse(b"{}", &keys()).expect_err("not an event");
        assert_eq!(error.to_string(), "not a Stripe event: missing id");
    }

    // --- The sample body ---

    #[test]
    fn sample_with_the_fixture_values_is_the_fixture_byte_for_byte() {
        let body = sample_subscription_event(
            "evt_test_constructed_sub_updated_0001",
            BASIL_SUB,
            BASIL_CUS,
            "active",
            1_679_609_770,
            Some("user_123"),
        );
        assert_eq!(body.as_bytes(), BASIL_UPDATED);
    }

    #[test]
    fn sample_substitutes_every_field() {
        let body =
            sample_subscription_event("evt_x", "sub_x", "cus_x", "past_due", 1_700_000_123, None);
        assert!(body.len() > 4_000, "a full-size body for benches");
        let event = parse_ok(body.as_bytes());
        assert_eq!(event.id, "evt_x");
        assert_eq!(event.event_type, "customer.subscription.updated");
        assert_eq!(event.created, 1_700_000_123);
        let (subscription, user) = subscription_of(&event);
        assert_eq!(subscription.id, "sub_x");
        assert_eq!(subscription.customer, "cus_x");
        assert_eq!(subscription.status, SubscriptionStatus::PastDue);
        assert_eq!(subscription.created, 1_679_609_767);
        assert_eq!(subscription.current_period_end, Some(1_682_288_167));
        assert_eq!(user, None);
        let root = json_of(body.as_bytes());
        assert_eq!(
            root["data"]["object"]["items"]["data"][0]["subscription"],
            "sub_x"
        );
        assert_eq!(
            root["data"]["object"]["items"]["url"],
            "/v1/subscription_items?subscription=sub_x"
        );
        assert_eq!(root["data"]["object"]["metadata"], json!({}));
    }

    #[test]
    fn sample_escapes_awkward_input() {
        let awkward = "a\"b\\c\n@CUSTOMER@ é 😀";
        let body = sample_subscription_event(awkward, awkward, awkward, awkward, -5, Some(awkward));
        let event = parse_ok(body.as_bytes());
        assert_eq!(event.id, awkward);
        assert_eq!(event.created, -5);
        let (subscription, user) = subscription_of(&event);
        assert_eq!(subscription.id, awkward);
        assert_eq!(subscription.customer, awkward);
        assert_eq!(subscription.status, SubscriptionStatus::Unknown);
        assert_eq!(user, Some(awkward));
    }
}
