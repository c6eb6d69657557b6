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
//! between versions both places are read (SPEC §6):
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
        /// `subscription`, `payment` or `setup`; empty when absent.
        mode: String,
        /// `paid`, `unpaid` or `no_payment_required`; empty when absent.
        payment_status: String,
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
        "checkout.session.completed" => checkout_completed(object, user_metadata_keys)
            .map_err(|field| missing_field(&event_type, field))?,
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
        "entitlements.active_entitlement_summary.updated" => entitlement_summary(object)
            .map_err(|field| missing_field(&event_type, field))?,
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

/// A realistic, full-size `customer.subscription.updated` body in the 2025-03-31.basil
/// shape (the `constructed.event.customer.subscription.updated.basil-shape.json`
/// fixture), for benches and tests.
///
/// Substituted: the event `id`, the subscription id (also in its item and the items
/// list url), the `customer`, the `status` (any text, so unknown statuses can be
/// tested), the event's `created`, and the subscription metadata, which is
/// `{"user_id": user}` or `{}`. Everything else keeps the fixture's values; in
/// particular the subscription's own `created` (1679609767) and its item's
/// `current_period_end` (1682288167) do not move with `created`, as a subscription's
/// creation time does not change between its events. Strings are JSON-escaped, so any
/// input gives valid JSON.
pub fn sample_subscription_event(
    id: &str,
    sub_id: &str,
    customer: &str,
    status: &str,
    created: i64,
    user: Option<&str>,
) -> String {
    let metadata = match user {
        Some(user) => format!("{{\n        \"user_id\": {}\n      }}", json_string(user)),
        None => "{}".to_string(),
    };
    let items_url = json_string(&format!("/v1/subscription_items?subscription={sub_id}"));
    fill_template(SAMPLE_SUBSCRIPTION_EVENT, |name| match name {
        "EVENT_ID" => Some(json_string(id)),
        "SUBSCRIPTION_ID" => Some(json_string(sub_id)),
        "CUSTOMER" => Some(json_string(customer)),
        "STATUS" => Some(json_string(status)),
        "CREATED" => Some(created.to_string()),
        "METADATA" => Some(metadata.clone()),
        "ITEMS_URL" => Some(items_url.clone()),
        _ => None,
    })
}

/// Reads a `checkout.session`, or names the required field it lacks.
fn checkout_completed(
    session: &Map<String, Value>,
    user_metadata_keys: &[String],
) -> Result<EventKind, &'static str> {
    Ok(EventKind::CheckoutCompleted {
        session_id: text(session.get("id")).ok_or("id")?,
        customer: id_of(session.get("customer")),
        subscription: id_of(session.get("subscription")),
        // The explicit reference the application passed to Checkout beats metadata,
        // which may have been copied around (SPEC §6, linking precedence).
        user: metadata_value(session.get("client_reference_id"))
            .or_else(|| metadata_user(session, user_metadata_keys)),
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
        push_unique(&mut product_ids, priced.and_then(|p| id_of(p.get("product"))));
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

/// A JSON string literal (quoted and escaped) for `text`.
fn json_string(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// Replaces each `@NAME@` in `template` with `value(NAME)` in a single pass, so text
/// substituted for one placeholder is never scanned for another. An unknown name is
/// kept as written.
fn fill_template(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find('@') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('@').and_then(|end| Some((end, value(&after[..end])?))) {
            Some((end, replacement)) => {
                out.push_str(&replacement);
                rest = &after[end + 1..];
            }
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The basil-shape fixture with `@NAME@` placeholders where JSON values are substituted.
const SAMPLE_SUBSCRIPTION_EVENT: &str = r##"{
  "id": @EVENT_ID@,
  "object": "event",
  "api_version": "2025-03-31.basil",
  "created": @CREATED@,
  "data": {
    "object": {
      "id": @SUBSCRIPTION_ID@,
      "object": "subscription",
      "application": null,
      "application_fee_percent": null,
      "automatic_tax": {
        "enabled": false,
        "liability": null
      },
      "billing_cycle_anchor": 1679609767,
      "cancel_at": null,
      "cancel_at_period_end": false,
      "canceled_at": null,
      "cancellation_details": {
        "comment": null,
        "feedback": null,
        "reason": null
      },
      "collection_method": "charge_automatically",
      "created": 1679609767,
      "currency": "usd",
      "customer": @CUSTOMER@,
      "days_until_due": null,
      "default_payment_method": null,
      "default_source": null,
      "default_tax_rates": [],
      "description": null,
      "discounts": null,
      "ended_at": null,
      "invoice_settings": {
        "issuer": {
          "type": "self"
        }
      },
      "items": {
        "object": "list",
        "data": [
          {
            "id": "si_Na6dzxczY5fwHx",
            "object": "subscription_item",
            "created": 1679609768,
            "current_period_end": 1682288167,
            "current_period_start": 1679609767,
            "metadata": {},
            "plan": {
              "id": "price_1MowQULkdIwHu7ixraBm864M",
              "object": "plan",
              "active": true,
              "amount": 1000,
              "amount_decimal": "1000",
              "billing_scheme": "per_unit",
              "created": 1679609766,
              "currency": "usd",
              "discounts": null,
              "interval": "month",
              "interval_count": 1,
              "livemode": false,
              "metadata": {},
              "nickname": null,
              "product": "prod_Na6dGcTsmU0I4R",
              "tiers_mode": null,
              "transform_usage": null,
              "trial_period_days": null,
              "usage_type": "licensed"
            },
            "price": {
              "id": "price_1MowQULkdIwHu7ixraBm864M",
              "object": "price",
              "active": true,
              "billing_scheme": "per_unit",
              "created": 1679609766,
              "currency": "usd",
              "custom_unit_amount": null,
              "livemode": false,
              "lookup_key": null,
              "metadata": {},
              "nickname": null,
              "product": "prod_Na6dGcTsmU0I4R",
              "recurring": {
                "interval": "month",
                "interval_count": 1,
                "trial_period_days": null,
                "usage_type": "licensed"
              },
              "tax_behavior": "unspecified",
              "tiers_mode": null,
              "transform_quantity": null,
              "type": "recurring",
              "unit_amount": 1000,
              "unit_amount_decimal": "1000"
            },
            "quantity": 1,
            "subscription": @SUBSCRIPTION_ID@,
            "tax_rates": []
          }
        ],
        "has_more": false,
        "total_count": 1,
        "url": @ITEMS_URL@
      },
      "latest_invoice": "in_1MowQWLkdIwHu7ixuzkSPfKd",
      "livemode": false,
      "metadata": @METADATA@,
      "next_pending_invoice_item_invoice": null,
      "on_behalf_of": null,
      "pause_collection": null,
      "payment_settings": {
        "payment_method_options": null,
        "payment_method_types": null,
        "save_default_payment_method": "off"
      },
      "pending_invoice_item_interval": null,
      "pending_setup_intent": null,
      "pending_update": null,
      "schedule": null,
      "start_date": 1679609767,
      "status": @STATUS@,
      "test_clock": null,
      "transfer_data": null,
      "trial_end": null,
      "trial_settings": {
        "end_behavior": {
          "missing_payment_method": "create_invoice"
        }
      },
      "trial_start": null
    },
    "previous_attributes": {
      "status": "incomplete"
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {
    "id": null,
    "idempotency_key": null
  },
  "type": "customer.subscription.updated"
}"##;
