//! A realistic, full-size Stripe event body for tests and benches: the
//! `customer.subscription.updated` fixture in the 2025-03-31.basil shape with the
//! few values a test varies substituted in. Compiled only for tests and the
//! `bench` feature; production code never builds events.

use serde_json::Value;

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
        match after
            .find('@')
            .and_then(|end| Some((end, value(&after[..end])?)))
        {
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
const SAMPLE_SUBSCRIPTION_EVENT: &str = r#"{
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
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_template_is_single_pass_and_keeps_unknown_names() {
        let filled = fill_template("[@A@,@B@,@Z@,x@y]", |name| match name {
            "A" => Some("@B@".to_string()),
            "B" => Some("2".to_string()),
            _ => None,
        });
        assert_eq!(filled, "[@B@,2,@Z@,x@y]");
    }
}
