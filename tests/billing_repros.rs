//! Issue 10's two wrong-decision repros, delivered as signed webhooks to the
//! real binary on Redis, in both delivery orders: link precedence (SPEC §6) and
//! the start of a past_due episode when `active` and `past_due` share a second
//! (SPEC §9).

mod support;

use serde_json::{json, Value};
use support::jwt;
use support::stripe::*;
use support::*;

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
