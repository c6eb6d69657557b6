//! Two wrong-decision repros, delivered as signed webhooks to the real binary on
//! Redis, in both delivery orders: link precedence (docs/webhooks.md) and the
//! start of a past_due episode when `active` and `past_due` share a second
//! (docs/webhooks.md, "Stamps").

use crate::support::jwt;
use crate::support::stripe::*;
use crate::support::*;
use serde_json::{json, Value};

const DAY: i64 = 86_400;

/// Repro 1: a paid checkout links U5; customer metadata naming U2 about 50
/// minutes later must not move the customer (a link made at checkout is never
/// moved by metadata). U5, who paid, keeps access; U2 gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_metadata_never_moves_a_customer_linked_at_checkout() {
    let t = jwt::now() - 2 * 3600;
    let checkout = checkout_completed("evt_checkout", "U5", "cus_prec", "sub_prec", t);
    let metadata = customer_updated("evt_metadata", "cus_prec", Some("U2"), t + 3000);
    for (name, events) in [
        ("checkout first", [&checkout, &metadata]),
        ("metadata first", [&metadata, &checkout]),
    ] {
        let (_redis, _up, gw) = redis_world(|c| c).await;
        for event in events {
            apply(&gw, event).await;
        }
        until_forwarded(&gw, "U5", &format!("{name}: the payer keeps access")).await;
        let resp = gw.send(banking("U2")).await;
        assert_error(&resp, 402, "CHECKOUT_REQUIRED");
    }
}

/// A subscription event for `cus_pd` with a chosen `current_period_end`.
fn with_period_end(mut event: Value, period_end: i64) -> Value {
    event["data"]["object"]["current_period_end"] = json!(period_end);
    for item in event["data"]["object"]["items"]["data"]
        .as_array_mut()
        .unwrap()
    {
        item["current_period_end"] = json!(period_end);
    }
    event
}

/// Repro 2: `customer.subscription.created` (active) and `.updated`
/// (past_due) with the same `created`, in either order, with
/// `past_due_grace = "3d"`. The grace counts from that second, never from the
/// period end; a later past_due sighting does not restart it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_second_past_due_counts_the_grace_from_that_second() {
    let now = jwt::now();
    // (when it went past_due, period end, later past_due sighting, granted?)
    let cases = [
        (now - 7 * DAY, now + 20 * DAY, None, false),
        (now - DAY, now - 10 * DAY, None, true),
        (now - 7 * DAY, now + 20 * DAY, Some(now - DAY), false),
    ];
    for (since, period_end, again, granted) in cases {
        for active_first in [true, false] {
            let (_redis, _up, gw) = redis_world(|c| c.set_str("access.past_due_grace", "3d")).await;
            apply(
                &gw,
                &customer_updated("evt_link", "cus_pd", Some("pd_user"), since - 60),
            )
            .await;
            let created = with_period_end(
                subscription_event("created", "evt_active", "sub_pd", "cus_pd", "active", since),
                period_end,
            );
            let updated = with_period_end(
                subscription_event(
                    "updated",
                    "evt_past_due",
                    "sub_pd",
                    "cus_pd",
                    "past_due",
                    since,
                ),
                period_end,
            );
            let events = if active_first {
                [&created, &updated]
            } else {
                [&updated, &created]
            };
            for event in events {
                apply(&gw, event).await;
            }
            if let Some(at) = again {
                let sighting = with_period_end(
                    subscription_event(
                        "updated",
                        "evt_past_due_again",
                        "sub_pd",
                        "cus_pd",
                        "past_due",
                        at,
                    ),
                    period_end,
                );
                apply(&gw, &sighting).await;
            }
            let what = format!(
                "past_due since {} days, active first: {active_first}",
                (now - since) / DAY
            );
            if granted {
                until_forwarded(&gw, "pd_user", &what).await;
            } else {
                let body = until_subscription_required(&gw, "pd_user", &what).await;
                assert_eq!(body["status"], "past_due", "{what}: {body}");
            }
        }
    }
}

/// `checkout.session.async_payment_*` for the session of `checkout`.
fn async_payment(checkout: &Value, outcome: &str, event_id: &str, created: i64) -> Value {
    let mut event = checkout.clone();
    event["id"] = json!(event_id);
    event["created"] = json!(created);
    event["type"] = json!(format!("checkout.session.async_payment_{outcome}"));
    event["data"]["object"]["payment_status"] = json!(if outcome == "succeeded" {
        "paid"
    } else {
        "unpaid"
    });
    event
}

/// Delayed payment methods (docs/webhooks.md): a session completed while its payment is
/// pending grants nothing; `async_payment_succeeded` counts like a paid
/// checkout; `async_payment_failed` ends the provisional access in either
/// delivery order, but never a subscription its own events describe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_payments_grant_on_success_and_end_provisional_access_on_failure() {
    let t = jwt::now() - 3600;
    let mut pending = checkout_completed("evt_pending", "sepa_user", "cus_sepa", "sub_sepa", t);
    pending["data"]["object"]["payment_status"] = json!("unpaid");
    let paid = checkout_completed("evt_paid", "sepa_user", "cus_sepa", "sub_sepa", t);

    // Pending, then succeeded: access.
    let (_redis, _up, gw) = redis_world(|c| c).await;
    apply(&gw, &pending).await;
    assert_error(
        &gw.send(banking("sepa_user")).await,
        402,
        "CHECKOUT_REQUIRED",
    );
    apply(
        &gw,
        &async_payment(&pending, "succeeded", "evt_ok", t + 600),
    )
    .await;
    until_forwarded(
        &gw,
        "sepa_user",
        "async_payment_succeeded grants like a paid checkout",
    )
    .await;

    // A provisional grant, then the payment failed, in both orders: no access.
    let failed = async_payment(&pending, "failed", "evt_failed", t + 600);
    for (name, events) in [
        ("paid, then failed", [&paid, &failed]),
        ("failed, then paid", [&failed, &paid]),
    ] {
        let (_redis, _up, gw) = redis_world(|c| c).await;
        for event in events {
            apply(&gw, event).await;
        }
        let resp = gw.send(banking("sepa_user")).await;
        assert_eq!(resp.status, 402, "{name}: {resp:?}");
        assert_error(&resp, 402, "CHECKOUT_REQUIRED");
    }

    // Once the subscription's own event arrived, a failed payment changes nothing.
    let (_redis, _up, gw) = redis_world(|c| c).await;
    apply(&gw, &paid).await;
    apply(
        &gw,
        &subscription_event(
            "created",
            "evt_sub",
            "sub_sepa",
            "cus_sepa",
            "active",
            t + 5,
        ),
    )
    .await;
    apply(&gw, &failed).await;
    until_forwarded(&gw, "sepa_user", "the subscription event decides").await;
}
