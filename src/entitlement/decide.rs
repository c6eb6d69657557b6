//! decide.rs: turns a user's stored entitlement, the `[access]` rules and the clock
//! into an access decision. Pure: no I/O, no clock reads (`now` is a parameter).
//!
//! "Access is decided by status" is the contract implemented here. Period
//! dates never grant by themselves: a subscription grants because of its status,
//! and the only time-based rules are the `past_due` grace and the override's end.

use std::collections::HashMap;

use super::model::{Entitlement, Override, Subscription, SubscriptionStatus, UnixTime};

/// The `[access]` and `[plans]` configuration the decision needs, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRules {
    /// Statuses that grant (config `access.grant_statuses`, default active + trialing).
    pub grant_statuses: Vec<SubscriptionStatus>,
    /// Seconds `past_due` keeps access, counted from `Subscription::past_due_since`
    /// (config `access.past_due_grace`). Zero or less means no grace at all.
    pub past_due_grace: i64,
    /// Price or product id -> features (config `[plans]`).
    pub plans: HashMap<String, Vec<String>>,
}

impl Default for AccessRules {
    /// The defaults: only paying and trialing subscriptions grant.
    fn default() -> Self {
        Self {
            grant_statuses: vec![SubscriptionStatus::Active, SubscriptionStatus::Trialing],
            past_due_grace: 0,
            plans: HashMap::new(),
        }
    }
}

/// The user's access now, independent of the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access<'a> {
    /// Granted. `status` is the status name of the latest granting subscription, or
    /// `"override"` when only an override grants. `features` is the deduplicated
    /// union (stable order: first occurrence) of: `Entitlement::features` (Stripe
    /// Entitlements), the `[plans]` features of every granting subscription's
    /// `price_ids` and `product_ids`, and the active override's features.
    Granted {
        status: &'static str,
        features: Vec<&'a str>,
    },
    /// No subscription record at all (and no active override): the user must check out.
    NeverSubscribed,
    /// Has at least one subscription record (even `incomplete`), none grants now.
    /// `status`: the latest subscription's status name.
    Lapsed { status: &'static str },
}

impl Access<'_> {
    /// The value of `X-Subscription-Status`: `"none"` for `NeverSubscribed`, else
    /// the status carried by the variant.
    pub fn status(&self) -> &str {
        match self {
            Access::Granted { status, .. } => status,
            Access::NeverSubscribed => "none",
            Access::Lapsed { status } => status,
        }
    }
}

/// Why a subscription route refuses a user: a [`Decision`] that can only be a
/// refusal, so the request path maps it to a response with no impossible case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// `CHECKOUT_REQUIRED`: the user never had a subscription.
    CheckoutRequired,
    /// `SUBSCRIPTION_REQUIRED`: the user had one, none grants now.
    SubscriptionRequired { status: &'static str },
    /// Granted, but `feature` (the first missing one) is not in the user's features.
    UpgradeRequired { feature: &'a str },
}

impl<'a> From<Refusal<'a>> for Decision<'a> {
    fn from(refusal: Refusal<'a>) -> Self {
        match refusal {
            Refusal::CheckoutRequired => Decision::CheckoutRequired,
            Refusal::SubscriptionRequired { status } => Decision::SubscriptionRequired { status },
            Refusal::UpgradeRequired { feature } => Decision::UpgradeRequired { feature },
        }
    }
}

/// What the gateway does with one request, given the route's required features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Forward the request; `status` and `features` feed the identity headers.
    Allow {
        status: &'static str,
        features: Vec<&'a str>,
    },
    /// `CHECKOUT_REQUIRED`: the user never had a subscription.
    CheckoutRequired,
    /// `SUBSCRIPTION_REQUIRED`: the user had one, none grants now.
    SubscriptionRequired { status: &'static str },
    /// Granted, but `feature` (the first missing one in the route's order) is not
    /// in the user's features.
    UpgradeRequired { feature: &'a str },
}

/// The user's access at `now`, whatever route is asked for.
///
/// `ent` is `None` when the store holds nothing for the user.
pub fn evaluate<'a>(
    ent: Option<&'a Entitlement>,
    rules: &'a AccessRules,
    now: UnixTime,
) -> Access<'a> {
    let Some(ent) = ent else {
        return Access::NeverSubscribed;
    };

    let (latest, latest_granting) = latest_and_latest_granting(ent, rules, now);
    let active_override = active_override(ent, now);

    // A granting subscription names the status even when an override is active
    // too, so the upstream still sees that the user pays; "override" only shows
    // when the override is the sole reason for access.
    let status = match (latest_granting, active_override) {
        (Some(sub), _) => sub.status.as_str(),
        (None, Some(_)) => "override",
        // An expired override is no subscription record: without subscriptions
        // the user has never checked out, whatever an operator once granted.
        (None, None) => {
            return match latest {
                Some(sub) => Access::Lapsed {
                    status: sub.status.as_str(),
                },
                None => Access::NeverSubscribed,
            }
        }
    };

    let mut features = Vec::new();
    // Stripe Entitlements are taken as stored, whichever source grants: Stripe
    // keeps the summary in step with the subscriptions, so there is nothing to
    // filter here.
    for feature in &ent.features {
        push_unique(&mut features, feature);
    }
    // Plans of subscriptions that do not grant must not leak features, so a
    // cancelled premium plan next to an active basic one gives only basic.
    for sub in ent
        .subscriptions
        .iter()
        .filter(|sub| grants(rules, sub, now))
    {
        for id in sub.price_ids.iter().chain(&sub.product_ids) {
            for feature in rules.plans.get(id).into_iter().flatten() {
                push_unique(&mut features, feature);
            }
        }
    }
    if let Some(grant) = active_override {
        for feature in &grant.features {
            push_unique(&mut features, feature);
        }
    }

    Access::Granted { status, features }
}

/// The decision for a route that requires `required` features (empty for plain
/// subscription routes). The request path asks the precomputed
/// [`AccessSummary`](super::AccessSummary) instead; this direct form is the
/// reference tests and benches use.
#[cfg(any(test, feature = "bench"))]
pub fn decide<'a>(
    ent: Option<&'a Entitlement>,
    rules: &'a AccessRules,
    required: &'a [String],
    now: UnixTime,
) -> Decision<'a> {
    match evaluate(ent, rules, now) {
        // Features only matter once access is granted: a lapsed user is told to
        // renew, not to upgrade a plan they no longer have.
        Access::Granted { status, features } => {
            match required
                .iter()
                .find(|feature| !features.contains(&feature.as_str()))
            {
                Some(missing) => Decision::UpgradeRequired { feature: missing },
                None => Decision::Allow { status, features },
            }
        }
        Access::NeverSubscribed => Decision::CheckoutRequired,
        Access::Lapsed { status } => Decision::SubscriptionRequired { status },
    }
}

/// The subscription a user's plan state is shown from (`/_paygate/me`): the
/// latest granting one, else the latest one, in the order of [`is_later`].
pub fn current_subscription<'a>(
    ent: &'a Entitlement,
    rules: &AccessRules,
    now: UnixTime,
) -> Option<&'a Subscription> {
    let (latest, latest_granting) = latest_and_latest_granting(ent, rules, now);
    latest_granting.or(latest)
}

/// One pass finds both the latest subscription (for a denial's status) and the
/// latest granting one (for a grant's status), so no sorting, no allocation.
fn latest_and_latest_granting<'a>(
    ent: &'a Entitlement,
    rules: &AccessRules,
    now: UnixTime,
) -> (Option<&'a Subscription>, Option<&'a Subscription>) {
    let mut latest: Option<&Subscription> = None;
    let mut latest_granting: Option<&Subscription> = None;
    for sub in &ent.subscriptions {
        if is_later(sub, latest) {
            latest = Some(sub);
        }
        if grants(rules, sub, now) && is_later(sub, latest_granting) {
            latest_granting = Some(sub);
        }
    }
    (latest, latest_granting)
}

/// Whether one subscription grants at `now`: its status is listed, or it is
/// `past_due` and still inside the grace.
fn grants(rules: &AccessRules, sub: &Subscription, now: UnixTime) -> bool {
    rules.grant_statuses.contains(&sub.status) || in_past_due_grace(rules, sub, now)
}

/// The grace runs from the first event that showed the subscription `past_due`.
/// Every record this version writes carries that start (`apply/record.rs`); only
/// an entitlement written by an earlier version and not re-projected since can
/// lack it, and it falls back to the period end, the moment the unpaid invoice
/// was due. With neither there is no start to count from, so no grace.
fn in_past_due_grace(rules: &AccessRules, sub: &Subscription, now: UnixTime) -> bool {
    if sub.status != SubscriptionStatus::PastDue || rules.past_due_grace <= 0 {
        return false;
    }
    match sub.past_due_since.or(sub.current_period_end) {
        // Exclusive end, like the override's `until`; saturating so a hostile or
        // corrupt timestamp cannot overflow into a panic on the request path.
        Some(start) => now < start.saturating_add(rules.past_due_grace),
        None => false,
    }
}

/// The override, if it still grants: access ends at the instant `until`.
fn active_override(ent: &Entitlement, now: UnixTime) -> Option<&Override> {
    ent.grant_override
        .as_ref()
        .filter(|grant| now < grant.until)
}

/// Whether `sub` comes after `current` in the contract's order: greater `created`, then
/// greater id. The id breaks same-second ties so the result never depends on the
/// order the store happens to keep subscriptions in.
fn is_later(sub: &Subscription, current: Option<&Subscription>) -> bool {
    match current {
        None => true,
        Some(current) => (sub.created, sub.id.as_str()) > (current.created, current.id.as_str()),
    }
}

/// Feature lists are a handful of entries, so a linear scan beats building a set
/// and keeps the first-occurrence order the headers promise.
fn push_unique<'a>(features: &mut Vec<&'a str>, feature: &'a str) {
    if !features.contains(&feature) {
        features.push(feature);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionStatus::*;

    const NOW: UnixTime = 1_700_000_000;

    fn sub(id: &str, status: SubscriptionStatus, created: UnixTime) -> Subscription {
        Subscription::new(id, "cus_1", status, created)
    }

    fn ent(subscriptions: Vec<Subscription>) -> Entitlement {
        Entitlement {
            customers: vec!["cus_1".to_owned()],
            subscriptions,
            ..Entitlement::default()
        }
    }

    fn grant(until: UnixTime, features: &[&str]) -> Override {
        Override {
            until,
            reason: "comp".to_owned(),
            features: features.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn rules_with_grace(grace: i64) -> AccessRules {
        AccessRules {
            past_due_grace: grace,
            ..AccessRules::default()
        }
    }

    fn past_due(since: Option<UnixTime>, period_end: Option<UnixTime>) -> Entitlement {
        let mut s = sub("sub_1", PastDue, 1);
        s.past_due_since = since;
        s.current_period_end = period_end;
        ent(vec![s])
    }

    fn granted(status: &'static str) -> Access<'static> {
        Access::Granted {
            status,
            features: Vec::new(),
        }
    }

    // --- AccessRules ---

    #[test]
    fn default_rules_grant_active_and_trialing_without_grace_or_plans() {
        let rules = AccessRules::default();
        assert_eq!(rules.grant_statuses, vec![Active, Trialing]);
        assert_eq!(rules.past_due_grace, 0);
        assert!(rules.plans.is_empty());
    }

    // --- each status alone, default rules ---

    #[test]
    fn each_status_alone_with_default_rules() {
        let rules = AccessRules::default();
        let cases = [
            (Active, granted("active")),
            (Trialing, granted("trialing")),
            (PastDue, Access::Lapsed { status: "past_due" }),
            (Canceled, Access::Lapsed { status: "canceled" }),
            (Unpaid, Access::Lapsed { status: "unpaid" }),
            (Paused, Access::Lapsed { status: "paused" }),
            (
                Incomplete,
                Access::Lapsed {
                    status: "incomplete",
                },
            ),
            (
                IncompleteExpired,
                Access::Lapsed {
                    status: "incomplete_expired",
                },
            ),
            (Unknown, Access::Lapsed { status: "unknown" }),
        ];
        for (status, expected) in cases {
            let e = ent(vec![sub("sub_1", status.clone(), 1)]);
            assert_eq!(
                evaluate(Some(&e), &rules, NOW),
                expected,
                "status {status:?}"
            );
        }
    }

    #[test]
    fn active_allows_a_plain_subscription_route() {
        let e = ent(vec![sub("sub_1", Active, 1)]);
        let rules = AccessRules::default();
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::Allow {
                status: "active",
                features: vec![]
            }
        );
    }

    #[test]
    fn trialing_allows() {
        let e = ent(vec![sub("sub_1", Trialing, 1)]);
        let rules = AccessRules::default();
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::Allow {
                status: "trialing",
                features: vec![]
            }
        );
    }

    #[test]
    fn paused_requires_a_subscription() {
        let e = ent(vec![sub("sub_1", Paused, 1)]);
        let rules = AccessRules::default();
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::SubscriptionRequired { status: "paused" }
        );
    }

    #[test]
    fn incomplete_is_lapsed_not_never_subscribed() {
        let e = ent(vec![sub("sub_1", Incomplete, 1)]);
        let rules = AccessRules::default();
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed {
                status: "incomplete"
            }
        );
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::SubscriptionRequired {
                status: "incomplete"
            }
        );
    }

    #[test]
    fn incomplete_expired_requires_a_subscription() {
        let e = ent(vec![sub("sub_1", IncompleteExpired, 1)]);
        let rules = AccessRules::default();
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::SubscriptionRequired {
                status: "incomplete_expired"
            }
        );
    }

    #[test]
    fn canceled_requires_a_subscription() {
        // A deleted customer's subscriptions are stored as canceled, so this is
        // also the deleted-customer case.
        let e = ent(vec![sub("sub_1", Canceled, 1)]);
        let rules = AccessRules::default();
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::SubscriptionRequired { status: "canceled" }
        );
    }

    #[test]
    fn unpaid_requires_a_subscription() {
        let e = ent(vec![sub("sub_1", Unpaid, 1)]);
        let rules = AccessRules::default();
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::SubscriptionRequired { status: "unpaid" }
        );
    }

    #[test]
    fn unknown_status_requires_a_subscription() {
        let e = ent(vec![sub("sub_1", Unknown, 1)]);
        let rules = AccessRules::default();
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::SubscriptionRequired { status: "unknown" }
        );
    }

    #[test]
    fn past_due_without_grace_requires_a_subscription_even_with_a_start() {
        let e = past_due(Some(NOW - 10), Some(NOW - 10));
        let rules = AccessRules::default();
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::SubscriptionRequired { status: "past_due" }
        );
    }

    // --- custom grant_statuses ---

    #[test]
    fn past_due_granted_by_name_needs_no_grace_or_start() {
        let rules = AccessRules {
            grant_statuses: vec![Active, PastDue],
            ..AccessRules::default()
        };
        let e = past_due(None, None);
        assert_eq!(evaluate(Some(&e), &rules, NOW), granted("past_due"));
    }

    #[test]
    fn past_due_granted_by_name_ignores_an_expired_grace() {
        let rules = AccessRules {
            grant_statuses: vec![PastDue],
            past_due_grace: 10,
            ..AccessRules::default()
        };
        let e = past_due(Some(NOW - 100), None);
        assert_eq!(evaluate(Some(&e), &rules, NOW), granted("past_due"));
    }

    #[test]
    fn paused_granted_by_name() {
        let rules = AccessRules {
            grant_statuses: vec![Paused],
            ..AccessRules::default()
        };
        let e = ent(vec![sub("sub_1", Paused, 1)]);
        assert_eq!(evaluate(Some(&e), &rules, NOW), granted("paused"));
    }

    #[test]
    fn a_status_left_out_of_grant_statuses_denies() {
        let rules = AccessRules {
            grant_statuses: vec![Active],
            ..AccessRules::default()
        };
        let e = ent(vec![sub("sub_1", Trialing, 1)]);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed { status: "trialing" }
        );
    }

    #[test]
    fn empty_grant_statuses_deny_even_active() {
        let rules = AccessRules {
            grant_statuses: vec![],
            ..AccessRules::default()
        };
        let e = ent(vec![sub("sub_1", Active, 1)]);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed { status: "active" }
        );
    }

    // --- past_due grace ---

    #[test]
    fn past_due_grace_inside_at_and_after_the_boundary() {
        let rules = rules_with_grace(100);
        let e = past_due(Some(1_000), None);
        assert_eq!(
            evaluate(Some(&e), &rules, 1_000),
            granted("past_due"),
            "at start"
        );
        assert_eq!(
            evaluate(Some(&e), &rules, 1_099),
            granted("past_due"),
            "last second"
        );
        assert_eq!(
            evaluate(Some(&e), &rules, 1_100),
            Access::Lapsed { status: "past_due" },
            "the end is exclusive"
        );
        assert_eq!(
            evaluate(Some(&e), &rules, 1_101),
            Access::Lapsed { status: "past_due" }
        );
    }

    #[test]
    fn past_due_grace_falls_back_to_period_end() {
        let rules = rules_with_grace(100);
        let e = past_due(None, Some(2_000));
        assert_eq!(evaluate(Some(&e), &rules, 2_099), granted("past_due"));
        assert_eq!(
            evaluate(Some(&e), &rules, 2_100),
            Access::Lapsed { status: "past_due" }
        );
    }

    #[test]
    fn past_due_since_wins_over_period_end() {
        let rules = rules_with_grace(100);
        let e = past_due(Some(1_000), Some(5_000));
        assert_eq!(
            evaluate(Some(&e), &rules, 1_100),
            Access::Lapsed { status: "past_due" }
        );
        let e = past_due(Some(5_000), Some(1_000));
        assert_eq!(evaluate(Some(&e), &rules, 1_100), granted("past_due"));
    }

    #[test]
    fn past_due_without_any_start_gets_no_grace() {
        let rules = rules_with_grace(1_000_000);
        let e = past_due(None, None);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed { status: "past_due" }
        );
    }

    #[test]
    fn negative_grace_is_no_grace() {
        let rules = rules_with_grace(-5);
        let e = past_due(Some(NOW + 100), None);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed { status: "past_due" }
        );
    }

    #[test]
    fn past_due_grace_does_not_overflow() {
        let rules = rules_with_grace(i64::MAX);
        let e = past_due(Some(i64::MAX - 1), None);
        assert_eq!(evaluate(Some(&e), &rules, NOW), granted("past_due"));
    }

    #[test]
    fn grace_applies_only_to_past_due() {
        // A stale past_due_since left on a record that moved on must not extend
        // access for any other status.
        let rules = rules_with_grace(1_000);
        for status in [
            Unpaid,
            Canceled,
            Paused,
            Incomplete,
            IncompleteExpired,
            Unknown,
        ] {
            let mut s = sub("sub_1", status.clone(), 1);
            s.past_due_since = Some(NOW - 1);
            s.current_period_end = Some(NOW - 1);
            let e = ent(vec![s]);
            assert_eq!(
                evaluate(Some(&e), &rules, NOW),
                Access::Lapsed {
                    status: status.as_str()
                },
                "status {status:?}"
            );
        }
    }

    #[test]
    fn period_dates_do_not_grant_by_themselves() {
        // access is decided by status, so a canceled subscription whose
        // paid period has not ended yet still denies.
        let mut s = sub("sub_1", Canceled, 1);
        s.current_period_end = Some(NOW + 86_400);
        let e = ent(vec![s]);
        let rules = rules_with_grace(86_400);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed { status: "canceled" }
        );
    }

    // --- several subscriptions ---

    #[test]
    fn any_granting_subscription_grants() {
        let rules = AccessRules::default();
        let e = ent(vec![
            sub("sub_old", Active, 100),
            sub("sub_new", Canceled, 200),
        ]);
        assert_eq!(evaluate(Some(&e), &rules, NOW), granted("active"));
    }

    #[test]
    fn status_is_that_of_the_latest_granting_subscription() {
        let rules = AccessRules::default();
        let subs = vec![
            sub("sub_a", Active, 100),
            sub("sub_b", Trialing, 200),
            sub("sub_c", Canceled, 300),
        ];
        let e = ent(subs.clone());
        assert_eq!(evaluate(Some(&e), &rules, NOW), granted("trialing"));
        let e = ent(subs.into_iter().rev().collect());
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            granted("trialing"),
            "order-independent"
        );
    }

    #[test]
    fn status_is_that_of_the_latest_subscription_when_none_grants() {
        let rules = AccessRules::default();
        let subs = vec![
            sub("sub_a", Canceled, 100),
            sub("sub_c", Unpaid, 300),
            sub("sub_b", Paused, 200),
        ];
        let e = ent(subs.clone());
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed { status: "unpaid" }
        );
        let e = ent(subs.into_iter().rev().collect());
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed { status: "unpaid" }
        );
    }

    #[test]
    fn a_tie_on_created_is_broken_by_the_greater_id() {
        let rules = AccessRules::default();
        for subs in [
            vec![sub("sub_a", Active, 100), sub("sub_b", Trialing, 100)],
            vec![sub("sub_b", Trialing, 100), sub("sub_a", Active, 100)],
        ] {
            let e = ent(subs);
            assert_eq!(evaluate(Some(&e), &rules, NOW), granted("trialing"));
        }
        for subs in [
            vec![sub("sub_a", Canceled, 100), sub("sub_b", Unpaid, 100)],
            vec![sub("sub_b", Unpaid, 100), sub("sub_a", Canceled, 100)],
        ] {
            let e = ent(subs);
            assert_eq!(
                evaluate(Some(&e), &rules, NOW),
                Access::Lapsed { status: "unpaid" }
            );
        }
    }

    #[test]
    fn created_wins_over_id() {
        let rules = AccessRules::default();
        let e = ent(vec![sub("sub_z", Canceled, 100), sub("sub_a", Unpaid, 200)]);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed { status: "unpaid" }
        );
    }

    #[test]
    fn past_due_in_grace_beside_an_older_active_one_names_past_due() {
        let rules = rules_with_grace(100);
        let mut newer = sub("sub_new", PastDue, 200);
        newer.past_due_since = Some(NOW - 10);
        let e = ent(vec![sub("sub_old", Active, 100), newer]);
        assert_eq!(evaluate(Some(&e), &rules, NOW), granted("past_due"));
        assert_eq!(
            evaluate(Some(&e), &rules, NOW + 90),
            granted("active"),
            "after the grace"
        );
    }

    // --- override ---

    #[test]
    fn active_override_alone_grants_as_override() {
        let rules = AccessRules::default();
        let e = Entitlement {
            grant_override: Some(grant(NOW + 1, &[])),
            ..Entitlement::default()
        };
        assert_eq!(evaluate(Some(&e), &rules, NOW), granted("override"));
        assert_eq!(evaluate(Some(&e), &rules, NOW).status(), "override");
    }

    #[test]
    fn override_ends_at_until() {
        let rules = AccessRules::default();
        let e = Entitlement {
            grant_override: Some(grant(NOW, &[])),
            ..Entitlement::default()
        };
        assert_eq!(evaluate(Some(&e), &rules, NOW - 1), granted("override"));
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::NeverSubscribed,
            "until is exclusive"
        );
    }

    #[test]
    fn expired_override_without_subscriptions_is_never_subscribed() {
        let rules = AccessRules::default();
        let e = Entitlement {
            customers: vec!["cus_1".to_owned()],
            grant_override: Some(grant(NOW - 1, &["export"])),
            ..Entitlement::default()
        };
        assert_eq!(evaluate(Some(&e), &rules, NOW), Access::NeverSubscribed);
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::CheckoutRequired
        );
    }

    #[test]
    fn expired_override_with_a_denying_subscription_is_lapsed() {
        let rules = AccessRules::default();
        let e = Entitlement {
            grant_override: Some(grant(NOW - 1, &[])),
            ..ent(vec![sub("sub_1", Canceled, 1)])
        };
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Lapsed { status: "canceled" }
        );
    }

    #[test]
    fn active_override_grants_whatever_the_subscriptions_say() {
        let rules = AccessRules::default();
        for status in [
            Canceled,
            Unpaid,
            Paused,
            Incomplete,
            IncompleteExpired,
            PastDue,
            Unknown,
        ] {
            let e = Entitlement {
                grant_override: Some(grant(NOW + 1, &[])),
                ..ent(vec![sub("sub_1", status.clone(), 1)])
            };
            assert_eq!(
                evaluate(Some(&e), &rules, NOW),
                granted("override"),
                "status {status:?}"
            );
        }
    }

    #[test]
    fn a_granting_subscription_names_the_status_beside_an_override() {
        let rules = AccessRules::default();
        let e = Entitlement {
            grant_override: Some(grant(NOW + 1, &["vip"])),
            ..ent(vec![sub("sub_1", Active, 1), sub("sub_2", Canceled, 2)])
        };
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Granted {
                status: "active",
                features: vec!["vip"]
            }
        );
    }

    #[test]
    fn override_features_are_granted() {
        let rules = AccessRules::default();
        let e = Entitlement {
            grant_override: Some(grant(NOW + 1, &["export", "beta"])),
            ..Entitlement::default()
        };
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Granted {
                status: "override",
                features: vec!["export", "beta"]
            }
        );
    }

    // --- features ---

    #[test]
    fn features_are_the_union_of_entitlements_plans_and_override_in_order() {
        let rules = AccessRules {
            plans: HashMap::from([
                ("price_1".to_owned(), strings(&["b", "c"])),
                ("prod_1".to_owned(), strings(&["c", "d"])),
                ("price_unused".to_owned(), strings(&["never"])),
            ]),
            ..AccessRules::default()
        };
        let mut s = sub("sub_1", Active, 1);
        s.price_ids = strings(&["price_1", "price_unknown"]);
        s.product_ids = strings(&["prod_1"]);
        let e = Entitlement {
            features: strings(&["a", "b"]),
            grant_override: Some(grant(NOW + 1, &["a", "e"])),
            ..ent(vec![s])
        };
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Granted {
                status: "active",
                features: vec!["a", "b", "c", "d", "e"]
            }
        );
    }

    #[test]
    fn plan_features_by_price_id() {
        let rules = AccessRules {
            plans: HashMap::from([("price_1".to_owned(), strings(&["export"]))]),
            ..AccessRules::default()
        };
        let mut s = sub("sub_1", Active, 1);
        s.price_ids = strings(&["price_1"]);
        let e = ent(vec![s]);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Granted {
                status: "active",
                features: vec!["export"]
            }
        );
    }

    #[test]
    fn plan_features_by_product_id() {
        let rules = AccessRules {
            plans: HashMap::from([("prod_1".to_owned(), strings(&["export"]))]),
            ..AccessRules::default()
        };
        let mut s = sub("sub_1", Trialing, 1);
        s.product_ids = strings(&["prod_1"]);
        let e = ent(vec![s]);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Granted {
                status: "trialing",
                features: vec!["export"]
            }
        );
    }

    #[test]
    fn stripe_entitlement_features_are_granted() {
        let rules = AccessRules::default();
        let e = Entitlement {
            features: strings(&["export"]),
            ..ent(vec![sub("sub_1", Active, 1)])
        };
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Granted {
                status: "active",
                features: vec!["export"]
            }
        );
    }

    #[test]
    fn plans_of_a_denying_subscription_give_no_features() {
        let rules = AccessRules {
            plans: HashMap::from([
                ("price_basic".to_owned(), strings(&["basic"])),
                ("price_premium".to_owned(), strings(&["premium"])),
            ]),
            ..AccessRules::default()
        };
        let mut basic = sub("sub_basic", Active, 1);
        basic.price_ids = strings(&["price_basic"]);
        let mut premium = sub("sub_premium", Canceled, 2);
        premium.price_ids = strings(&["price_premium"]);
        let e = ent(vec![basic, premium]);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Granted {
                status: "active",
                features: vec!["basic"]
            }
        );
    }

    #[test]
    fn plans_of_every_granting_subscription_are_joined() {
        let rules = AccessRules {
            plans: HashMap::from([
                ("price_a".to_owned(), strings(&["a"])),
                ("price_b".to_owned(), strings(&["b"])),
            ]),
            ..AccessRules::default()
        };
        let mut first = sub("sub_1", Active, 1);
        first.price_ids = strings(&["price_a"]);
        let mut second = sub("sub_2", Trialing, 2);
        second.price_ids = strings(&["price_b"]);
        let e = ent(vec![first, second]);
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Granted {
                status: "trialing",
                features: vec!["a", "b"]
            }
        );
    }

    #[test]
    fn features_are_deduplicated_keeping_the_first_occurrence() {
        let rules = AccessRules {
            plans: HashMap::from([("price_1".to_owned(), strings(&["y", "x", "z", "z"]))]),
            ..AccessRules::default()
        };
        let mut s = sub("sub_1", Active, 1);
        s.price_ids = strings(&["price_1", "price_1"]);
        let e = Entitlement {
            features: strings(&["x", "x", "y"]),
            grant_override: Some(grant(NOW + 1, &["z", "x", "w"])),
            ..ent(vec![s])
        };
        assert_eq!(
            evaluate(Some(&e), &rules, NOW),
            Access::Granted {
                status: "active",
                features: vec!["x", "y", "z", "w"]
            }
        );
    }

    #[test]
    fn expired_override_features_are_not_granted() {
        let rules = AccessRules::default();
        let e = Entitlement {
            grant_override: Some(grant(NOW, &["vip"])),
            ..ent(vec![sub("sub_1", Active, 1)])
        };
        assert_eq!(evaluate(Some(&e), &rules, NOW), granted("active"));
    }

    // --- decide and required features ---

    #[test]
    fn no_required_features_allows_with_the_users_features() {
        let rules = AccessRules::default();
        let e = Entitlement {
            features: strings(&["export"]),
            ..ent(vec![sub("sub_1", Active, 1)])
        };
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::Allow {
                status: "active",
                features: vec!["export"]
            }
        );
    }

    #[test]
    fn all_required_features_present_allows() {
        let rules = AccessRules::default();
        let e = Entitlement {
            features: strings(&["a", "b", "c"]),
            ..ent(vec![sub("sub_1", Active, 1)])
        };
        let required = strings(&["c", "a"]);
        assert_eq!(
            decide(Some(&e), &rules, &required, NOW),
            Decision::Allow {
                status: "active",
                features: vec!["a", "b", "c"]
            }
        );
    }

    #[test]
    fn upgrade_required_names_the_first_missing_feature_in_route_order() {
        let rules = AccessRules::default();
        let e = Entitlement {
            features: strings(&["a"]),
            ..ent(vec![sub("sub_1", Active, 1)])
        };
        let required = strings(&["a", "z", "y"]);
        assert_eq!(
            decide(Some(&e), &rules, &required, NOW),
            Decision::UpgradeRequired { feature: "z" }
        );
    }

    #[test]
    fn override_features_satisfy_a_route() {
        let rules = AccessRules::default();
        let e = Entitlement {
            grant_override: Some(grant(NOW + 1, &["export"])),
            ..Entitlement::default()
        };
        let required = strings(&["export"]);
        assert_eq!(
            decide(Some(&e), &rules, &required, NOW),
            Decision::Allow {
                status: "override",
                features: vec!["export"]
            }
        );
    }

    #[test]
    fn a_lapsed_user_is_told_to_subscribe_not_to_upgrade() {
        let rules = AccessRules::default();
        let e = ent(vec![sub("sub_1", Canceled, 1)]);
        let required = strings(&["export"]);
        assert_eq!(
            decide(Some(&e), &rules, &required, NOW),
            Decision::SubscriptionRequired { status: "canceled" }
        );
    }

    #[test]
    fn a_never_subscribed_user_is_told_to_check_out_not_to_upgrade() {
        let rules = AccessRules::default();
        let required = strings(&["export"]);
        assert_eq!(
            decide(None, &rules, &required, NOW),
            Decision::CheckoutRequired
        );
    }

    // --- never subscribed ---

    #[test]
    fn no_entitlement_is_never_subscribed() {
        let rules = AccessRules::default();
        assert_eq!(evaluate(None, &rules, NOW), Access::NeverSubscribed);
        assert_eq!(decide(None, &rules, &[], NOW), Decision::CheckoutRequired);
    }

    #[test]
    fn an_entitlement_without_subscriptions_is_never_subscribed() {
        // A customer link alone (checkout not finished) or Stripe features without
        // a subscription still means the user has to check out.
        let rules = AccessRules::default();
        let e = Entitlement {
            customers: vec!["cus_1".to_owned()],
            features: strings(&["export"]),
            has_used_trial: true,
            ..Entitlement::default()
        };
        assert_eq!(evaluate(Some(&e), &rules, NOW), Access::NeverSubscribed);
        assert_eq!(
            decide(Some(&e), &rules, &[], NOW),
            Decision::CheckoutRequired
        );
    }

    // --- Access::status ---

    #[test]
    fn access_status_names_every_variant() {
        assert_eq!(Access::NeverSubscribed.status(), "none");
        assert_eq!(Access::Lapsed { status: "canceled" }.status(), "canceled");
        assert_eq!(granted("trialing").status(), "trialing");
    }

    // --- storage format ---

    #[test]
    fn entitlement_json_storage_format_is_pinned() {
        let json = r#"{"customers":["cus_1"],"subscriptions":[{"id":"sub_1","customer":"cus_1","status":"active","created":1700000000,"price_ids":["price_1"]}]}"#;
        let parsed: Entitlement = serde_json::from_str(json).unwrap();
        let mut expected_sub = sub("sub_1", Active, 1_700_000_000);
        expected_sub.price_ids = strings(&["price_1"]);
        assert_eq!(parsed, ent(vec![expected_sub]));

        let written = serde_json::to_string(&parsed).unwrap();
        assert_eq!(
            serde_json::from_str::<Entitlement>(&written).unwrap(),
            parsed
        );
        let value: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(value["subscriptions"][0]["status"], "active");
        assert_eq!(value["subscriptions"][0]["created"], 1_700_000_000);
        assert_eq!(value["has_used_trial"], false);
        assert!(value["override"].is_null());
    }

    #[test]
    fn entitlement_json_with_every_field() {
        let json = r#"{
            "customers": ["cus_1", "cus_2"],
            "subscriptions": [{
                "id": "sub_1", "customer": "cus_2", "status": "past_due", "created": 10,
                "current_period_end": 20, "trial_start": 1, "trial_end": 5,
                "cancel_at_period_end": true, "price_ids": ["price_1"],
                "product_ids": ["prod_1"], "past_due_since": 21
            }],
            "features": ["export"],
            "has_used_trial": true,
            "first_trial_at": 1,
            "override": {"until": 30, "reason": "comp", "features": ["vip"]}
        }"#;
        let parsed: Entitlement = serde_json::from_str(json).unwrap();
        let s = &parsed.subscriptions[0];
        assert_eq!(s.status, PastDue);
        assert_eq!(s.customer, "cus_2");
        assert_eq!(s.current_period_end, Some(20));
        assert_eq!(s.trial_start, Some(1));
        assert_eq!(s.trial_end, Some(5));
        assert!(s.cancel_at_period_end);
        assert_eq!(s.product_ids, strings(&["prod_1"]));
        assert_eq!(s.past_due_since, Some(21));
        assert_eq!(parsed.features, strings(&["export"]));
        assert!(parsed.has_used_trial);
        assert_eq!(parsed.first_trial_at, Some(1));
        assert_eq!(parsed.grant_override, Some(grant(30, &["vip"])));

        let written = serde_json::to_string(&parsed).unwrap();
        assert_eq!(
            serde_json::from_str::<Entitlement>(&written).unwrap(),
            parsed
        );
        // The override is stored under "override", not the Rust field name.
        let value: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(value["override"]["until"], 30);
        assert!(value.get("grant_override").is_none());
    }

    #[test]
    fn a_status_stripe_adds_later_deserializes_as_unknown_and_denies() {
        let json = r#"{"subscriptions":[{"id":"sub_1","status":"some_new_status","created":1}]}"#;
        let parsed: Entitlement = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.subscriptions[0].status, Unknown);
        let rules = AccessRules::default();
        assert_eq!(
            decide(Some(&parsed), &rules, &[], NOW),
            Decision::SubscriptionRequired { status: "unknown" }
        );
    }

    #[test]
    fn every_status_name_round_trips_through_json() {
        for status in [
            Incomplete,
            IncompleteExpired,
            Trialing,
            Active,
            PastDue,
            Canceled,
            Unpaid,
            Paused,
            Unknown,
        ] {
            let written = serde_json::to_string(&status).unwrap();
            assert_eq!(written, format!("\"{}\"", status.as_str()));
            assert_eq!(
                serde_json::from_str::<SubscriptionStatus>(&written).unwrap(),
                status
            );
        }
    }
}
