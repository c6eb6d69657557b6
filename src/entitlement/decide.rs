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

/// Why a subscription route refuses a user: a decision that can only be a
/// refusal, so the request path maps it to a response with no impossible case.
/// The names are the response codes (`CHECKOUT_REQUIRED`, …).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// `CHECKOUT_REQUIRED`: the user never had a subscription.
    CheckoutRequired,
    /// `SUBSCRIPTION_REQUIRED`: the user had one, none grants now.
    SubscriptionRequired { status: &'static str },
    /// Granted, but `feature` (the first missing one) is not in the user's features.
    UpgradeRequired { feature: &'a str },
}

#[cfg(any(test, feature = "bench"))]
impl<'a> From<Refusal<'a>> for Decision<'a> {
    fn from(refusal: Refusal<'a>) -> Self {
        match refusal {
            Refusal::CheckoutRequired => Decision::CheckoutRequired,
            Refusal::SubscriptionRequired { status } => Decision::SubscriptionRequired { status },
            Refusal::UpgradeRequired { feature } => Decision::UpgradeRequired { feature },
        }
    }
}

/// The whole decision for one request, given the route's required features: the
/// reference form tests and benches compare against (the request path uses
/// [`AccessSummary::check`](super::AccessSummary::check), which returns a [`Refusal`]).
#[cfg(any(test, feature = "bench"))]
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
/// Every record this version writes carries that start (`billing/record.rs`); only
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
pub(super) mod tests {
    //! Most of the contract is one table of named cases (`cases`), checked by
    //! `decision_table` against `evaluate` or `decide`; the summary tests check
    //! `AccessSummary` against the same table. Tests of another shape (the
    //! defaults, `Access::status`, the JSON storage format) stay ordinary tests.
    use super::*;
    use SubscriptionStatus::*;

    const NOW: UnixTime = 1_700_000_000;

    /// Every status, in the order Stripe documents them.
    const EVERY_STATUS: [SubscriptionStatus; 9] = [
        Incomplete,
        IncompleteExpired,
        Trialing,
        Active,
        PastDue,
        Canceled,
        Unpaid,
        Paused,
        Unknown,
    ];

    /// One row: a user's record, the rules, the time, the route's required
    /// features, and what `evaluate` (route-independent) or `decide` must say.
    pub(crate) struct Case {
        pub(crate) name: String,
        pub(crate) ent: Option<Entitlement>,
        pub(crate) rules: AccessRules,
        pub(crate) now: UnixTime,
        pub(crate) required: Vec<String>,
        expect: Expect,
    }

    enum Expect {
        /// `evaluate` returns this (`required` plays no part).
        Access(Access<'static>),
        /// `decide` with `required` returns this.
        Decision(Decision<'static>),
    }

    /// A case with the default rules, at `NOW`, for a route without features.
    fn case(name: impl Into<String>, ent: Option<Entitlement>, expect: Expect) -> Case {
        Case {
            name: name.into(),
            ent,
            rules: AccessRules::default(),
            now: NOW,
            required: Vec::new(),
            expect,
        }
    }

    impl Case {
        fn rules(mut self, rules: AccessRules) -> Self {
            self.rules = rules;
            self
        }

        fn at(mut self, now: UnixTime) -> Self {
            self.now = now;
            self
        }

        fn requiring(mut self, features: &[&str]) -> Self {
            self.required = strings(features);
            self
        }

        /// The row's failure, if any, named.
        fn failure(&self) -> Option<String> {
            let ent = self.ent.as_ref();
            let (got, expected) = match &self.expect {
                Expect::Access(expected) => {
                    let got = evaluate(ent, &self.rules, self.now);
                    if got == *expected {
                        return None;
                    }
                    (format!("{got:?}"), format!("{expected:?}"))
                }
                Expect::Decision(expected) => {
                    let got = decide(ent, &self.rules, &self.required, self.now);
                    if got == *expected {
                        return None;
                    }
                    (format!("{got:?}"), format!("{expected:?}"))
                }
            };
            Some(format!(
                "case {:?}: expected {expected}, got {got}",
                self.name
            ))
        }
    }

    // --- what a row expects ---

    fn granted(status: &'static str, features: &[&'static str]) -> Expect {
        Expect::Access(Access::Granted {
            status,
            features: features.to_vec(),
        })
    }

    fn lapsed(status: &'static str) -> Expect {
        Expect::Access(Access::Lapsed { status })
    }

    fn never_subscribed() -> Expect {
        Expect::Access(Access::NeverSubscribed)
    }

    fn allow(status: &'static str, features: &[&'static str]) -> Expect {
        Expect::Decision(Decision::Allow {
            status,
            features: features.to_vec(),
        })
    }

    fn subscription_required(status: &'static str) -> Expect {
        Expect::Decision(Decision::SubscriptionRequired { status })
    }

    fn checkout_required() -> Expect {
        Expect::Decision(Decision::CheckoutRequired)
    }

    fn upgrade_required(feature: &'static str) -> Expect {
        Expect::Decision(Decision::UpgradeRequired { feature })
    }

    // --- building records ---

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

    /// One subscription with `status`, created at 1.
    fn only(status: SubscriptionStatus) -> Option<Entitlement> {
        Some(ent(vec![sub("sub_1", status, 1)]))
    }

    fn grant(until: UnixTime, features: &[&str]) -> Override {
        Override {
            until,
            reason: "comp".to_owned(),
            features: strings(features),
        }
    }

    /// An override on top of `base`.
    fn with_override(base: Entitlement, grant: Override) -> Option<Entitlement> {
        Some(Entitlement {
            grant_override: Some(grant),
            ..base
        })
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

    fn granting(statuses: Vec<SubscriptionStatus>) -> AccessRules {
        AccessRules {
            grant_statuses: statuses,
            ..AccessRules::default()
        }
    }

    fn with_plans(plans: &[(&str, &[&str])]) -> AccessRules {
        AccessRules {
            plans: plans
                .iter()
                .map(|(id, features)| (id.to_string(), strings(features)))
                .collect(),
            ..AccessRules::default()
        }
    }

    fn past_due(since: Option<UnixTime>, period_end: Option<UnixTime>) -> Option<Entitlement> {
        let mut s = sub("sub_1", PastDue, 1);
        s.past_due_since = since;
        s.current_period_end = period_end;
        Some(ent(vec![s]))
    }

    fn with_prices(mut s: Subscription, prices: &[&str]) -> Subscription {
        s.price_ids = strings(prices);
        s
    }

    /// The table. Names are unique: a failure names its row.
    pub(crate) fn cases() -> Vec<Case> {
        let mut cases = Vec::new();

        // --- each status alone, default rules ---
        for status in EVERY_STATUS {
            let expect = match status {
                Active | Trialing => granted(status.as_str(), &[]),
                _ => lapsed(status.as_str()),
            };
            cases.push(case(
                format!("{status:?} alone, default rules"),
                only(status),
                expect,
            ));
        }
        cases.extend([
            case(
                "active allows a plain subscription route",
                only(Active),
                allow("active", &[]),
            ),
            case("trialing allows", only(Trialing), allow("trialing", &[])),
            case(
                "paused requires a subscription",
                only(Paused),
                subscription_required("paused"),
            ),
            case(
                "incomplete is lapsed, not never subscribed",
                only(Incomplete),
                lapsed("incomplete"),
            ),
            case(
                "incomplete requires a subscription",
                only(Incomplete),
                subscription_required("incomplete"),
            ),
            case(
                "incomplete_expired requires a subscription",
                only(IncompleteExpired),
                subscription_required("incomplete_expired"),
            ),
            // A deleted customer's subscriptions are stored as canceled, so this
            // is also the deleted-customer case.
            case(
                "canceled requires a subscription",
                only(Canceled),
                subscription_required("canceled"),
            ),
            case(
                "unpaid requires a subscription",
                only(Unpaid),
                subscription_required("unpaid"),
            ),
            case(
                "unknown status requires a subscription",
                only(Unknown),
                subscription_required("unknown"),
            ),
            case(
                "past_due without grace requires a subscription, even with a start",
                past_due(Some(NOW - 10), Some(NOW - 10)),
                subscription_required("past_due"),
            ),
        ]);

        // --- custom grant_statuses ---
        cases.extend([
            case(
                "past_due granted by name needs no grace or start",
                past_due(None, None),
                granted("past_due", &[]),
            )
            .rules(granting(vec![Active, PastDue])),
            case(
                "past_due granted by name ignores an expired grace",
                past_due(Some(NOW - 100), None),
                granted("past_due", &[]),
            )
            .rules(AccessRules {
                past_due_grace: 10,
                ..granting(vec![PastDue])
            }),
            case(
                "paused granted by name",
                only(Paused),
                granted("paused", &[]),
            )
            .rules(granting(vec![Paused])),
            case(
                "a status left out of grant_statuses denies",
                only(Trialing),
                lapsed("trialing"),
            )
            .rules(granting(vec![Active])),
            case(
                "empty grant_statuses deny even active",
                only(Active),
                lapsed("active"),
            )
            .rules(granting(vec![])),
        ]);

        // --- past_due grace ---
        let grace = rules_with_grace(100);
        let since_1000 = past_due(Some(1_000), None);
        cases.extend([
            case(
                "grace: at the start",
                since_1000.clone(),
                granted("past_due", &[]),
            )
            .rules(grace.clone())
            .at(1_000),
            case(
                "grace: last second",
                since_1000.clone(),
                granted("past_due", &[]),
            )
            .rules(grace.clone())
            .at(1_099),
            case(
                "grace: the end is exclusive",
                since_1000.clone(),
                lapsed("past_due"),
            )
            .rules(grace.clone())
            .at(1_100),
            case("grace: after the end", since_1000, lapsed("past_due"))
                .rules(grace.clone())
                .at(1_101),
            case(
                "grace falls back to the period end: last second",
                past_due(None, Some(2_000)),
                granted("past_due", &[]),
            )
            .rules(grace.clone())
            .at(2_099),
            case(
                "grace falls back to the period end: the end",
                past_due(None, Some(2_000)),
                lapsed("past_due"),
            )
            .rules(grace.clone())
            .at(2_100),
            case(
                "past_due_since wins over an earlier-ending period end",
                past_due(Some(1_000), Some(5_000)),
                lapsed("past_due"),
            )
            .rules(grace.clone())
            .at(1_100),
            case(
                "past_due_since wins over a later-ending period end",
                past_due(Some(5_000), Some(1_000)),
                granted("past_due", &[]),
            )
            .rules(grace.clone())
            .at(1_100),
            case(
                "past_due without any start gets no grace",
                past_due(None, None),
                lapsed("past_due"),
            )
            .rules(rules_with_grace(1_000_000)),
            case(
                "negative grace is no grace",
                past_due(Some(NOW + 100), None),
                lapsed("past_due"),
            )
            .rules(rules_with_grace(-5)),
            case(
                "the grace end does not overflow",
                past_due(Some(i64::MAX - 1), None),
                granted("past_due", &[]),
            )
            .rules(rules_with_grace(i64::MAX)),
        ]);
        // A stale past_due_since left on a record that moved on must not extend
        // access for any other status.
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
            cases.push(
                case(
                    format!("grace applies only to past_due, not {status:?}"),
                    Some(ent(vec![s])),
                    lapsed(status.as_str()),
                )
                .rules(rules_with_grace(1_000)),
            );
        }
        // Access is decided by status, so a canceled subscription whose paid
        // period has not ended yet still denies.
        let mut paid_up = sub("sub_1", Canceled, 1);
        paid_up.current_period_end = Some(NOW + 86_400);
        cases.push(
            case(
                "period dates do not grant by themselves",
                Some(ent(vec![paid_up])),
                lapsed("canceled"),
            )
            .rules(rules_with_grace(86_400)),
        );

        // --- several subscriptions ---
        let granting_subs = vec![
            sub("sub_a", Active, 100),
            sub("sub_b", Trialing, 200),
            sub("sub_c", Canceled, 300),
        ];
        let denying_subs = vec![
            sub("sub_a", Canceled, 100),
            sub("sub_c", Unpaid, 300),
            sub("sub_b", Paused, 200),
        ];
        let mut in_grace = sub("sub_new", PastDue, 200);
        in_grace.past_due_since = Some(NOW - 10);
        let grace_beside_active = Some(ent(vec![sub("sub_old", Active, 100), in_grace]));
        cases.extend([
            case(
                "any granting subscription grants",
                Some(ent(vec![
                    sub("sub_old", Active, 100),
                    sub("sub_new", Canceled, 200),
                ])),
                granted("active", &[]),
            ),
            case(
                "status of the latest granting subscription",
                Some(ent(granting_subs.clone())),
                granted("trialing", &[]),
            ),
            case(
                "status of the latest granting subscription, order-independent",
                Some(ent(granting_subs.into_iter().rev().collect())),
                granted("trialing", &[]),
            ),
            case(
                "status of the latest subscription when none grants",
                Some(ent(denying_subs.clone())),
                lapsed("unpaid"),
            ),
            case(
                "status of the latest subscription when none grants, reversed",
                Some(ent(denying_subs.into_iter().rev().collect())),
                lapsed("unpaid"),
            ),
            case(
                "a tie on created is broken by the greater id: granting",
                Some(ent(vec![
                    sub("sub_a", Active, 100),
                    sub("sub_b", Trialing, 100),
                ])),
                granted("trialing", &[]),
            ),
            case(
                "a tie on created is broken by the greater id: granting, reversed",
                Some(ent(vec![
                    sub("sub_b", Trialing, 100),
                    sub("sub_a", Active, 100),
                ])),
                granted("trialing", &[]),
            ),
            case(
                "a tie on created is broken by the greater id: denying",
                Some(ent(vec![
                    sub("sub_a", Canceled, 100),
                    sub("sub_b", Unpaid, 100),
                ])),
                lapsed("unpaid"),
            ),
            case(
                "a tie on created is broken by the greater id: denying, reversed",
                Some(ent(vec![
                    sub("sub_b", Unpaid, 100),
                    sub("sub_a", Canceled, 100),
                ])),
                lapsed("unpaid"),
            ),
            case(
                "created wins over id",
                Some(ent(vec![
                    sub("sub_z", Canceled, 100),
                    sub("sub_a", Unpaid, 200),
                ])),
                lapsed("unpaid"),
            ),
            case(
                "past_due in grace beside an older active one names past_due",
                grace_beside_active.clone(),
                granted("past_due", &[]),
            )
            .rules(rules_with_grace(100)),
            case(
                "past_due beside an older active one, after the grace",
                grace_beside_active,
                granted("active", &[]),
            )
            .rules(rules_with_grace(100))
            .at(NOW + 90),
        ]);

        // --- override ---
        let expired_alone = with_override(
            Entitlement {
                customers: vec!["cus_1".to_owned()],
                ..Entitlement::default()
            },
            grant(NOW - 1, &["export"]),
        );
        cases.extend([
            case(
                "an active override alone grants as override",
                with_override(Entitlement::default(), grant(NOW + 1, &[])),
                granted("override", &[]),
            ),
            case(
                "an override grants before until",
                with_override(Entitlement::default(), grant(NOW, &[])),
                granted("override", &[]),
            )
            .at(NOW - 1),
            case(
                "an override's until is exclusive",
                with_override(Entitlement::default(), grant(NOW, &[])),
                never_subscribed(),
            ),
            case(
                "an expired override without subscriptions is never subscribed",
                expired_alone.clone(),
                never_subscribed(),
            ),
            case(
                "an expired override without subscriptions needs a checkout",
                expired_alone,
                checkout_required(),
            ),
            case(
                "an expired override with a denying subscription is lapsed",
                with_override(ent(vec![sub("sub_1", Canceled, 1)]), grant(NOW - 1, &[])),
                lapsed("canceled"),
            ),
        ]);
        for status in [
            Canceled,
            Unpaid,
            Paused,
            Incomplete,
            IncompleteExpired,
            PastDue,
            Unknown,
        ] {
            cases.push(case(
                format!("an active override grants beside {status:?}"),
                with_override(ent(vec![sub("sub_1", status, 1)]), grant(NOW + 1, &[])),
                granted("override", &[]),
            ));
        }
        cases.extend([
            case(
                "a granting subscription names the status beside an override",
                with_override(
                    ent(vec![sub("sub_1", Active, 1), sub("sub_2", Canceled, 2)]),
                    grant(NOW + 1, &["vip"]),
                ),
                granted("active", &["vip"]),
            ),
            case(
                "override features are granted",
                with_override(Entitlement::default(), grant(NOW + 1, &["export", "beta"])),
                granted("override", &["export", "beta"]),
            ),
        ]);

        // --- features ---
        let mut union_sub = with_prices(sub("sub_1", Active, 1), &["price_1", "price_unknown"]);
        union_sub.product_ids = strings(&["prod_1"]);
        let mut by_product = sub("sub_1", Trialing, 1);
        by_product.product_ids = strings(&["prod_1"]);
        cases.extend([
            case(
                "features: the union of entitlements, plans and override, in order",
                with_override(
                    Entitlement {
                        features: strings(&["a", "b"]),
                        ..ent(vec![union_sub])
                    },
                    grant(NOW + 1, &["a", "e"]),
                ),
                granted("active", &["a", "b", "c", "d", "e"]),
            )
            .rules(with_plans(&[
                ("price_1", &["b", "c"]),
                ("prod_1", &["c", "d"]),
                ("price_unused", &["never"]),
            ])),
            case(
                "plan features by price id",
                Some(ent(vec![with_prices(
                    sub("sub_1", Active, 1),
                    &["price_1"],
                )])),
                granted("active", &["export"]),
            )
            .rules(with_plans(&[("price_1", &["export"])])),
            case(
                "plan features by product id",
                Some(ent(vec![by_product])),
                granted("trialing", &["export"]),
            )
            .rules(with_plans(&[("prod_1", &["export"])])),
            case(
                "Stripe entitlement features are granted",
                Some(Entitlement {
                    features: strings(&["export"]),
                    ..ent(vec![sub("sub_1", Active, 1)])
                }),
                granted("active", &["export"]),
            ),
            // A cancelled premium plan next to an active basic one gives only basic.
            case(
                "plans of a denying subscription give no features",
                Some(ent(vec![
                    with_prices(sub("sub_basic", Active, 1), &["price_basic"]),
                    with_prices(sub("sub_premium", Canceled, 2), &["price_premium"]),
                ])),
                granted("active", &["basic"]),
            )
            .rules(with_plans(&[
                ("price_basic", &["basic"]),
                ("price_premium", &["premium"]),
            ])),
            case(
                "plans of every granting subscription are joined",
                Some(ent(vec![
                    with_prices(sub("sub_1", Active, 1), &["price_a"]),
                    with_prices(sub("sub_2", Trialing, 2), &["price_b"]),
                ])),
                granted("trialing", &["a", "b"]),
            )
            .rules(with_plans(&[("price_a", &["a"]), ("price_b", &["b"])])),
            case(
                "features are deduplicated keeping the first occurrence",
                with_override(
                    Entitlement {
                        features: strings(&["x", "x", "y"]),
                        ..ent(vec![with_prices(
                            sub("sub_1", Active, 1),
                            &["price_1", "price_1"],
                        )])
                    },
                    grant(NOW + 1, &["z", "x", "w"]),
                ),
                granted("active", &["x", "y", "z", "w"]),
            )
            .rules(with_plans(&[("price_1", &["y", "x", "z", "z"])])),
            case(
                "expired override features are not granted",
                with_override(ent(vec![sub("sub_1", Active, 1)]), grant(NOW, &["vip"])),
                granted("active", &[]),
            ),
        ]);

        // --- decide and required features ---
        let exporter = Some(Entitlement {
            features: strings(&["export"]),
            ..ent(vec![sub("sub_1", Active, 1)])
        });
        cases.extend([
            case(
                "no required features allows with the user's features",
                exporter,
                allow("active", &["export"]),
            ),
            case(
                "all required features present allows",
                Some(Entitlement {
                    features: strings(&["a", "b", "c"]),
                    ..ent(vec![sub("sub_1", Active, 1)])
                }),
                allow("active", &["a", "b", "c"]),
            )
            .requiring(&["c", "a"]),
            case(
                "upgrade required names the first missing feature in route order",
                Some(Entitlement {
                    features: strings(&["a"]),
                    ..ent(vec![sub("sub_1", Active, 1)])
                }),
                upgrade_required("z"),
            )
            .requiring(&["a", "z", "y"]),
            case(
                "override features satisfy a route",
                with_override(Entitlement::default(), grant(NOW + 1, &["export"])),
                allow("override", &["export"]),
            )
            .requiring(&["export"]),
            case(
                "a lapsed user is told to subscribe, not to upgrade",
                only(Canceled),
                subscription_required("canceled"),
            )
            .requiring(&["export"]),
            case(
                "a never-subscribed user is told to check out, not to upgrade",
                None,
                checkout_required(),
            )
            .requiring(&["export"]),
        ]);

        // --- never subscribed ---
        // A customer link alone (checkout not finished) or Stripe features
        // without a subscription still means the user has to check out.
        let no_subscriptions = Some(Entitlement {
            customers: vec!["cus_1".to_owned()],
            features: strings(&["export"]),
            has_used_trial: true,
            ..Entitlement::default()
        });
        cases.extend([
            case(
                "no entitlement is never subscribed",
                None,
                never_subscribed(),
            ),
            case("no entitlement needs a checkout", None, checkout_required()),
            case(
                "an entitlement without subscriptions is never subscribed",
                no_subscriptions.clone(),
                never_subscribed(),
            ),
            case(
                "an entitlement without subscriptions needs a checkout",
                no_subscriptions,
                checkout_required(),
            ),
        ]);
        cases
    }

    #[test]
    fn decision_table() {
        let cases = cases();
        let mut names = std::collections::HashSet::new();
        for case in &cases {
            assert!(
                names.insert(&case.name),
                "duplicate case name {:?}",
                case.name
            );
        }
        let failures: Vec<String> = cases.iter().filter_map(Case::failure).collect();
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }

    // --- AccessRules ---

    #[test]
    fn default_rules_grant_active_and_trialing_without_grace_or_plans() {
        let rules = AccessRules::default();
        assert_eq!(rules.grant_statuses, vec![Active, Trialing]);
        assert_eq!(rules.past_due_grace, 0);
        assert!(rules.plans.is_empty());
    }

    // --- Access::status ---

    #[test]
    fn access_status_names_every_variant() {
        let granted = |status| Access::Granted {
            status,
            features: Vec::new(),
        };
        assert_eq!(Access::NeverSubscribed.status(), "none");
        assert_eq!(Access::Lapsed { status: "canceled" }.status(), "canceled");
        assert_eq!(granted("trialing").status(), "trialing");
        let rules = AccessRules::default();
        let e = with_override(Entitlement::default(), grant(NOW + 1, &[]));
        assert_eq!(
            evaluate(e.as_ref(), &rules, NOW).status(),
            "override",
            "an override alone is named override"
        );
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
