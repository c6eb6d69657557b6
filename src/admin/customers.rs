//! Operator links, shared by `PUT /customers/{id}/link` and `paygate customer
//! link`: support moves a customer (and its subscriptions) to the user who
//! should have it, e.g. after a checkout made under the wrong account.
//!
//! An operator link outranks every link Stripe's events make, and a later
//! operator link outranks an earlier one, so it is the one fix metadata cannot
//! undo. One code path writes it whoever asks: validate first (nothing is
//! written on a bad request), then `Applier::link_customer` (one atomic merge
//! of the customer record, the same projection into users as a webhook, an
//! audit entry on the new and the old user), then the invalidation every
//! instance listens to. This module must not know about HTTP or the terminal.

use std::hash::{BuildHasher, Hasher};

use serde_json::{json, Value};

use crate::apply::{Applier, Linked};
use crate::auth::is_valid_user_id;
use crate::entitlement::UnixTime;
use crate::store::{EntitlementCache, StoreError};

use super::users::Invalid;

/// A validated operator link request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkRequest {
    pub user: String,
    pub reason: String,
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Parses the `PUT /customers/{id}/link` body, `{"user": id, "reason": text}`.
/// Unknown keys are refused so a typo (`"usr"`) is not silently ignored.
pub(crate) fn parse_link_body(body: &[u8]) -> Result<LinkRequest, Invalid> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid("body", format!("is not JSON ({e})")))?;
    let Value::Object(object) = value else {
        return Err(invalid(
            "body",
            "must be a JSON object like {\"user\": \"…\", \"reason\": \"…\"}",
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "user" | "reason"))
    {
        return Err(invalid(unknown, "is not a known field (user, reason)"));
    }
    let text = |key: &str, missing: &str| match object.get(key) {
        None | Some(Value::Null) => Err(invalid(key, missing.to_string())),
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(_) => Err(invalid(key, "must be a string")),
    };
    let user = text("user", "is required (the user id to link the customer to)")?;
    let reason = text("reason", "is required (why the customer is moved)")?;
    link_from_parts(user, reason)
}

/// Validates a link from its parts (the CLI's `--user` and `--reason`, or the
/// parsed API body). The user id follows the rule tokens' user ids follow, so
/// an operator cannot link a customer to a user no token can ever name.
pub(crate) fn link_from_parts(user: &str, reason: &str) -> Result<LinkRequest, Invalid> {
    if !is_valid_user_id(user) {
        return Err(invalid(
            "user",
            "must be 1 to 256 visible ASCII characters other than ','",
        ));
    }
    let reason = super::users::checked_reason(reason, "why the customer is moved")?;
    Ok(LinkRequest {
        user: user.to_string(),
        reason: reason.to_string(),
    })
}

/// Whether a customer id can name a stored record: the same character rule
/// as user ids (Stripe's are `cus_` and letters).
pub(crate) fn valid_customer_id(id: &str) -> bool {
    is_valid_user_id(id)
}

/// A fresh id for an operator link, `op_<unix>_<nanos>_<random>`. It breaks
/// ties between two operator links of the same second: the zero-padded
/// nanoseconds order them as they were made (on one clock), and the random
/// part keeps two instances from producing the same id.
pub(crate) fn operator_event_id(now: UnixTime) -> String {
    let nanos = crate::clock::subsec_nanos();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(nanos);
    format!("op_{now}_{nanos:09}_{:016x}", hasher.finish())
}

/// The audit line written on every user the link re-projects.
fn audit_source(customer: &str, previous: Option<&str>, link: &LinkRequest) -> String {
    format!(
        "admin link: {customer} from {} to {}: {}",
        previous.unwrap_or("(nobody)"),
        link.user,
        link.reason
    )
}

/// Links `customer` to the requested user: the one path the admin API and
/// `paygate customer link` share. `Ok(None)`: no record exists for the
/// customer (no event named it), and nothing was written.
///
/// The local cache entries are dropped (when the caller has a cache) and every
/// instance is told through `publish_invalidation`, so all of them decide with
/// the new link within a second instead of after `cache_ttl`.
pub(crate) async fn write_link(
    applier: &Applier,
    cache: Option<&EntitlementCache>,
    customer: &str,
    link: &LinkRequest,
    now: UnixTime,
) -> Result<Option<Linked>, StoreError> {
    let event_id = operator_event_id(now);
    let epoch = applier.store().write_epoch();
    let source = |previous: Option<&str>| audit_source(customer, previous, link);
    let Some(linked) = applier
        .link_customer(customer, &link.user, now, &event_id, &source)
        .await?
    else {
        return Ok(None);
    };
    applier.store().confirm_writes(epoch).await?;
    if let Some(cache) = cache {
        for user in &linked.users {
            cache.invalidate(user).await;
        }
    }
    applier.store().publish_invalidation(&linked.users).await?;
    Ok(Some(linked))
}

/// The admin API's answer to a link.
pub(crate) fn linked_json(customer: &str, link: &LinkRequest, linked: &Linked) -> Value {
    json!({
        "customer": customer,
        "user": link.user,
        "previous_user": linked.previous,
        "linked": linked.linked,
        "users_updated": linked.users,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::billing::record::{Fact, LinkSource};
    use crate::store::{EntitlementStore, MemoryStore};

    fn field(result: Result<LinkRequest, Invalid>) -> String {
        result.expect_err("should be refused").field
    }

    #[test]
    fn the_body_is_validated_field_by_field() {
        let ok = parse_link_body(br#"{"user": "U7", "reason": " wrong account "}"#).unwrap();
        assert_eq!(
            ok,
            LinkRequest {
                user: "U7".into(),
                reason: "wrong account".into()
            }
        );
        assert_eq!(field(parse_link_body(br#"{"user": "U7"}"#)), "reason");
        assert_eq!(
            field(parse_link_body(br#"{"user": "U7", "reason": "  "}"#)),
            "reason"
        );
        assert_eq!(
            field(parse_link_body(br#"{"user": "U7", "reason": "a\nb"}"#)),
            "reason"
        );
        assert_eq!(field(parse_link_body(br#"{"reason": "x"}"#)), "user");
        for bad in ["", "a b", "a,b", "é", &"x".repeat(257)] {
            let body = json!({"user": bad, "reason": "x"}).to_string();
            assert_eq!(field(parse_link_body(body.as_bytes())), "user", "{bad:?}");
        }
        assert_eq!(
            field(parse_link_body(br#"{"user": 7, "reason": "x"}"#)),
            "user"
        );
        assert_eq!(
            field(parse_link_body(
                br#"{"user": "U7", "reason": "x", "force": true}"#
            )),
            "force"
        );
        assert_eq!(field(parse_link_body(b"[]")), "body");
        assert_eq!(field(parse_link_body(b"nope")), "body");
    }

    #[test]
    fn operator_ids_of_one_second_order_as_made() {
        // The wall clock's second may turn between two calls (the nanoseconds
        // wrap); it cannot turn twice within two tries.
        let ordered = (0..2).any(|_| {
            let a = operator_event_id(100);
            let b = operator_event_id(100);
            assert!(a.starts_with("op_100_") && a != b, "{a} {b}");
            a < b
        });
        assert!(ordered);
    }

    #[tokio::test]
    async fn a_link_moves_the_customer_and_audits_both_users() {
        let store: Arc<dyn EntitlementStore> = Arc::new(MemoryStore::new());
        let applier = Applier::new(store.clone());
        let link = |user: &str| LinkRequest {
            user: user.into(),
            reason: "wrong account".into(),
        };
        assert_eq!(
            write_link(&applier, None, "cus_1", &link("U7"), 1_000)
                .await
                .unwrap(),
            None,
            "an unknown customer is not created"
        );
        assert!(store.load_customer("cus_1").await.unwrap().is_none());

        let checkout = Fact::Link {
            user: "U5".into(),
            created: 900,
            source: LinkSource::ClientReferenceId,
            event_id: "evt_checkout".into(),
        };
        applier
            .apply_facts(vec![("cus_1".into(), checkout)], "event evt_checkout")
            .await
            .unwrap();
        let linked = write_link(&applier, None, "cus_1", &link("U7"), 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(linked.previous.as_deref(), Some("U5"));
        assert!(linked.linked);
        assert_eq!(linked.users, vec!["U7", "U5"]);
        let u7 = store.load("U7").await.unwrap().unwrap();
        assert_eq!(u7.customers, vec!["cus_1"]);
        let u5 = store.load("U5").await.unwrap().unwrap();
        assert!(u5.customers.is_empty());
        for user in ["U5", "U7"] {
            let audit = store.audit(user, 5).await.unwrap();
            assert_eq!(
                audit[0].source, "admin link: cus_1 from U5 to U7: wrong account",
                "{user}"
            );
        }
        // A second operator link in the same second replaces the first.
        let again = write_link(&applier, None, "cus_1", &link("U8"), 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.previous.as_deref(), again.linked),
            (Some("U7"), true)
        );
    }

    /// Property tests: an operator link holds against any Stripe links in any
    /// delivery order, the newest operator link wins, and the user-id rule is
    /// exactly the token rule. Fast mode in `cargo test`; the `_long` twins
    /// run `PAYGATE_PROPTEST_CASES` cases (default 100,000):
    /// `cargo test --release -- --ignored operator_link_props`.
    mod operator_link_props {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        use super::*;
        use crate::billing::record::CustomerRecord;

        const FAST_CASES: u32 = 512;

        fn long_cases() -> u32 {
            std::env::var("PAYGATE_PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(100_000)
        }

        fn run<S: Strategy>(
            cases: u32,
            strategy: S,
            property: impl Fn(S::Value) -> Result<(), TestCaseError>,
        ) where
            S::Value: std::fmt::Debug,
        {
            let mut runner = TestRunner::new(Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            });
            if let Err(e) = runner.run(&strategy, property) {
                panic!("{e}");
            }
        }

        const STRIPE_SOURCES: [LinkSource; 5] = [
            LinkSource::Sync,
            LinkSource::CustomerMetadata,
            LinkSource::SubscriptionMetadata,
            LinkSource::CheckoutMetadata,
            LinkSource::ClientReferenceId,
        ];

        /// (facts, delivery order, the user the newest operator link names).
        fn history() -> impl Strategy<Value = (Vec<Fact>, Vec<usize>, String)> {
            let stripe = prop::collection::vec((0..5usize, 0..4u8, 0..20i64, 0..4u8), 0..8);
            // Operator links: (created offset, user); several may share a second.
            let admin = prop::collection::vec((0..20i64, 0..4u8), 1..4);
            (stripe, admin).prop_flat_map(|(stripe, admin)| {
                let mut facts: Vec<Fact> = stripe
                    .iter()
                    .map(|(source, user, created, id)| Fact::Link {
                        user: format!("S{user}"),
                        created: 1_000 + created,
                        source: STRIPE_SOURCES[*source],
                        event_id: format!("evt_{id}"),
                    })
                    .collect();
                // Made one after another, as an operator would: the ids
                // of one second carry increasing sub-second parts.
                let mut newest: Option<((i64, String), String)> = None;
                for (seq, (created, user)) in admin.iter().enumerate() {
                    let created = 1_000 + created;
                    let event_id = format!("op_{created}_{seq:09}_{seq:016x}");
                    let user = format!("A{user}");
                    let key = (created, event_id.clone());
                    if newest.as_ref().is_none_or(|(k, _)| key > *k) {
                        newest = Some((key, user.clone()));
                    }
                    facts.push(Fact::Link {
                        user,
                        created,
                        source: LinkSource::Admin,
                        event_id,
                    });
                }
                let winner = newest.map(|(_, u)| u).unwrap_or_default();
                let order: Vec<usize> = (0..facts.len()).collect();
                (Just(facts), Just(order).prop_shuffle(), Just(winner))
            })
        }

        fn the_newest_operator_link_wins(
            (facts, order, winner): (Vec<Fact>, Vec<usize>, String),
        ) -> Result<(), TestCaseError> {
            let mut in_order = CustomerRecord::new("cus_1");
            for fact in &facts {
                in_order.merge(fact);
            }
            let mut shuffled = CustomerRecord::new("cus_1");
            for i in &order {
                shuffled.merge(&facts[*i]);
            }
            prop_assert_eq!(shuffled.user.as_deref(), Some(winner.as_str()));
            prop_assert_eq!(
                shuffled.link_stamp.as_ref().map(|s| s.1),
                Some(LinkSource::Admin)
            );
            prop_assert_eq!(&shuffled.user, &in_order.user);
            prop_assert_eq!(&shuffled.link_stamp, &in_order.link_stamp);
            // The winner is never also a previous user (whose projection
            // would then strip the customer from them).
            prop_assert!(!shuffled.previous_users.contains(&winner));
            Ok(())
        }

        /// The token rule, written out independently.
        fn model_valid(id: &str) -> bool {
            !id.is_empty()
                && id.len() <= 256
                && id.chars().all(|c| ('!'..='~').contains(&c) && c != ',')
        }

        fn user_id() -> impl Strategy<Value = String> {
            prop_oneof![
                "[!-~]{1,4}",
                "[ -~]{0,6}",
                "[a-z,é\\t\\n\\u{0}\\u{7f} ]{0,4}",
                (250..260usize).prop_map(|n| "x".repeat(n)),
            ]
        }

        fn the_user_rule_is_the_token_rule(user: String) -> Result<(), TestCaseError> {
            let accepted = link_from_parts(&user, "reason").is_ok();
            prop_assert_eq!(accepted, model_valid(&user), "{:?}", user);
            let body = json!({"user": user, "reason": "r"}).to_string();
            prop_assert_eq!(parse_link_body(body.as_bytes()).is_ok(), accepted);
            Ok(())
        }

        #[test]
        fn operator_link_props_newest_operator_link_wins() {
            run(FAST_CASES, history(), the_newest_operator_link_wins);
        }

        #[test]
        #[ignore = "long mode: PAYGATE_PROPTEST_CASES cases (default 100,000)"]
        fn operator_link_props_newest_operator_link_wins_long() {
            run(long_cases(), history(), the_newest_operator_link_wins);
        }

        #[test]
        fn operator_link_props_user_rule() {
            run(FAST_CASES, user_id(), the_user_rule_is_the_token_rule);
        }

        #[test]
        #[ignore = "long mode: PAYGATE_PROPTEST_CASES cases (default 100,000)"]
        fn operator_link_props_user_rule_long() {
            run(long_cases(), user_id(), the_user_rule_is_the_token_rule);
        }
    }
}
