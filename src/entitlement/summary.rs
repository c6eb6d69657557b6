//! The compact form of a user's access that the local cache keeps: the result of
//! `evaluate` computed once when the entry is loaded, plus the instant until
//! which it stays exactly what `evaluate` would say.
//!
//! Why not cache the `Entitlement` itself: a stored record carries webhook
//! bookkeeping (customer revisions, per-customer features and trials, ids) that
//! no decision reads, and it cost ~3 KB per subscribed user in memory. A summary
//! is one small allocation, and answering a request from it does no work beyond
//! a feature check.
//!
//! Correctness rests on one property of `evaluate`: the clock only enters it
//! through the `past_due` grace end and the override's `until`. Between two such
//! instants the result is constant, so a summary made at `now` is exact until the
//! first of them after `now` (`valid_until`); the cache treats it as expired from
//! then on. `tests::summary_agrees_with_decide_until_valid_until` checks this.

use std::num::NonZeroI64;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

#[cfg(any(test, feature = "bench"))]
use super::decide::Decision;
use super::decide::{current_subscription, evaluate, Access, AccessRules, Refusal};
use super::model::{Entitlement, SubscriptionStatus, UnixTime};

/// A user's access, evaluated once; what the entitlement cache holds per user.
///
/// Kept small on purpose (72 bytes; a million cached users is the sizing case):
/// features live behind one optional pointer, times are `NonZeroI64` so that
/// `Option` costs nothing (Stripe never sends 0 for these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSummary {
    pub state: State,
    /// Granted features; `None` unless `Granted` with at least one.
    pub features: Option<Box<Features>>,
    /// The summary equals `evaluate(...)` strictly before this instant; `None`:
    /// forever (nothing in the record depends on the clock).
    pub valid_until: Option<NonZeroI64>,
    /// What `/_paygate/me` shows besides the access itself.
    pub plan: PlanDetails,
}

/// Granted features, and the same joined with "," for the entitlements header,
/// made once here so a request only bumps a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    pub names: Box<[Box<str>]>,
    pub header: Option<HeaderValue>,
}

/// The route-independent access; `Access` without the borrowed features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Granted { status: &'static str },
    NeverSubscribed,
    Lapsed { status: &'static str },
}

/// The current subscription's dates and the trial history (`/_paygate/me`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanDetails {
    pub trial_end: Option<NonZeroI64>,
    pub current_period_end: Option<NonZeroI64>,
    pub first_trial_at: Option<NonZeroI64>,
    pub cancel_at_period_end: bool,
    pub has_used_trial: bool,
}

impl AccessSummary {
    /// Evaluates `ent` at `now` under `rules`. `None`: the store has no record.
    pub fn new(
        ent: Option<&Entitlement>,
        rules: &AccessRules,
        now: UnixTime,
    ) -> Arc<AccessSummary> {
        let Some(ent) = ent else { return never_seen() };
        let (state, features) = match evaluate(Some(ent), rules, now) {
            Access::Granted { status, features } => (State::Granted { status }, features),
            Access::NeverSubscribed => (State::NeverSubscribed, Vec::new()),
            Access::Lapsed { status } => (State::Lapsed { status }, Vec::new()),
        };
        let features = (!features.is_empty()).then(|| {
            Box::new(Features {
                header: HeaderValue::from_str(&features.join(",")).ok(),
                names: features.into_iter().map(Box::from).collect(),
            })
        });
        let current = current_subscription(ent, rules, now);
        let time = |t: Option<UnixTime>| t.and_then(NonZeroI64::new);
        Arc::new(AccessSummary {
            state,
            features,
            valid_until: time(valid_until(ent, rules, now)),
            plan: PlanDetails {
                trial_end: time(current.and_then(|s| s.trial_end)),
                current_period_end: time(current.and_then(|s| s.current_period_end)),
                first_trial_at: time(ent.first_trial_at),
                cancel_at_period_end: current.is_some_and(|s| s.cancel_at_period_end),
                has_used_trial: ent.has_used_trial,
            },
        })
    }

    /// Whether the summary still says what `evaluate` would say at `now`.
    pub fn is_valid_at(&self, now: UnixTime) -> bool {
        self.valid_until.is_none_or(|until| now < until.get())
    }

    /// The granted feature names (empty unless granted).
    pub fn feature_names(&self) -> &[Box<str>] {
        self.features.as_ref().map_or(&[], |f| &f.names)
    }

    /// The entitlements header value, when there are features.
    pub fn features_header(&self) -> Option<&HeaderValue> {
        self.features.as_ref().and_then(|f| f.header.as_ref())
    }

    /// The decision for a route requiring `required` features; same rules as
    /// [`super::decide`] (features only matter once access is granted). For tests
    /// and benches; the request path uses [`Self::check`].
    #[cfg(any(test, feature = "bench"))]
    pub fn decide<'a>(&'a self, required: &'a [String]) -> Decision<'a> {
        match self.check(required) {
            Ok(status) => Decision::Allow {
                status,
                features: self.feature_names().iter().map(|f| &**f).collect(),
            },
            Err(refused) => refused.into(),
        }
    }

    /// [`Self::decide`] without listing the granted features: `Ok(status)` when
    /// the route is allowed, else the refusing decision. The request path uses
    /// this and sends `features_header`, so an allowed request allocates nothing.
    pub fn check<'a>(&'a self, required: &'a [String]) -> Result<&'static str, Refusal<'a>> {
        match self.state {
            State::Granted { status } => {
                let have = self.feature_names();
                match required
                    .iter()
                    .find(|f| !have.iter().any(|name| **name == ***f))
                {
                    Some(missing) => Err(Refusal::UpgradeRequired { feature: missing }),
                    None => Ok(status),
                }
            }
            State::NeverSubscribed => Err(Refusal::CheckoutRequired),
            State::Lapsed { status } => Err(Refusal::SubscriptionRequired { status }),
        }
    }

    /// `X-Subscription-Status` for this state ("none" when never subscribed).
    pub fn status(&self) -> &'static str {
        match self.state {
            State::Granted { status } | State::Lapsed { status } => status,
            State::NeverSubscribed => "none",
        }
    }
}

/// Users without any record all share one summary: a never-subscribed user
/// hitting paid routes costs the cache a key and a pointer, nothing more.
fn never_seen() -> Arc<AccessSummary> {
    static NEVER: OnceLock<Arc<AccessSummary>> = OnceLock::new();
    NEVER
        .get_or_init(|| {
            Arc::new(AccessSummary {
                state: State::NeverSubscribed,
                features: None,
                valid_until: None,
                plan: PlanDetails::default(),
            })
        })
        .clone()
}

/// The first instant after `now` at which `evaluate` may answer differently: a
/// `past_due` grace or an override that still grants at `now` stops granting.
fn valid_until(ent: &Entitlement, rules: &AccessRules, now: UnixTime) -> Option<UnixTime> {
    let grace_ends = ent.subscriptions.iter().filter_map(|sub| {
        if sub.status != SubscriptionStatus::PastDue || rules.past_due_grace <= 0 {
            return None;
        }
        // Same start as `in_past_due_grace` (the period end for older records).
        let end = sub
            .past_due_since
            .or(sub.current_period_end)?
            .saturating_add(rules.past_due_grace);
        (now < end).then_some(end)
    });
    let override_ends = ent
        .grant_override
        .as_ref()
        .map(|grant| grant.until)
        .filter(|until| now < *until);
    grace_ends.chain(override_ends).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::decide::decide;
    use crate::entitlement::model::{Override, Subscription};
    use SubscriptionStatus::*;

    const NOW: UnixTime = 1_700_000_000;

    fn rules() -> AccessRules {
        let mut rules = AccessRules {
            past_due_grace: 3 * 86_400,
            ..AccessRules::default()
        };
        rules
            .plans
            .insert("price_pro".into(), vec!["export".into(), "api".into()]);
        rules
    }

    /// Records with every clock-dependent ingredient: grace, overrides, plans.
    fn records() -> Vec<Option<Entitlement>> {
        let sub = |id: &str, status, created, price: &str| {
            let mut s = Subscription::new(id, "cus_1", status, created);
            s.price_ids = vec![price.to_string()];
            s.current_period_end = Some(NOW + 1000);
            s
        };
        let mut past_due = sub("sub_pd", PastDue, NOW - 50, "price_pro");
        past_due.past_due_since = Some(NOW - 86_400);
        let mut old_past_due = sub("sub_old", PastDue, NOW - 90, "price_basic");
        old_past_due.past_due_since = None; // falls back to the period end
        let grant = |until, features: &[&str]| Override {
            until,
            reason: "comp".into(),
            features: features.iter().map(|f| f.to_string()).collect(),
        };
        let ent = |subscriptions: Vec<Subscription>, grant_override: Option<Override>| {
            Some(Entitlement {
                subscriptions,
                grant_override,
                has_used_trial: true,
                ..Entitlement::default()
            })
        };
        vec![
            None,
            ent(vec![], None),
            ent(vec![sub("sub_a", Active, NOW - 10, "price_pro")], None),
            ent(vec![sub("sub_c", Canceled, NOW - 10, "price_pro")], None),
            ent(vec![past_due.clone()], None),
            ent(
                vec![old_past_due.clone(), past_due.clone()],
                Some(grant(NOW + 5_000, &["beta"])),
            ),
            ent(vec![], Some(grant(NOW + 100, &["export"]))),
            ent(
                vec![sub("sub_c", Canceled, NOW - 10, "price_pro")],
                Some(grant(NOW - 1, &[])),
            ),
            ent(
                vec![past_due, sub("sub_t", Trialing, NOW - 5, "price_basic")],
                Some(grant(NOW + 2 * 86_400, &["api"])),
            ),
        ]
    }

    #[test]
    fn summary_agrees_with_decide_until_valid_until() {
        let rules = rules();
        let required_sets: [&[String]; 3] = [
            &[],
            &["export".to_string()],
            &["api".to_string(), "beta".to_string()],
        ];
        for record in records() {
            let summary = AccessSummary::new(record.as_ref(), &rules, NOW);
            let end = summary.valid_until.map_or(NOW + 10 * 86_400, |t| t.get());
            assert!(end > NOW, "{record:?}");
            for t in [NOW, NOW + 1, (NOW + end) / 2, end - 1] {
                assert!(summary.is_valid_at(t));
                for required in required_sets {
                    assert_eq!(
                        summary.decide(required),
                        decide(record.as_ref(), &rules, required, t),
                        "{record:?} at {t}"
                    );
                }
            }
            if let Some(until) = summary.valid_until.map(|t| t.get()) {
                assert!(!summary.is_valid_at(until));
                // At the boundary something really changes, so the bound is not loose.
                let after = AccessSummary::new(record.as_ref(), &rules, until);
                assert_ne!(
                    (after.state, after.feature_names()),
                    (summary.state, summary.feature_names()),
                    "{record:?}"
                );
            }
        }
    }

    /// The decision table's rows (grace and override boundaries, tie-breaks,
    /// feature unions) seen through a summary made at the row's time.
    #[test]
    fn summary_agrees_with_decide_on_every_decision_table_case() {
        for case in crate::entitlement::decide::tests::cases() {
            let summary = AccessSummary::new(case.ent.as_ref(), &case.rules, case.now);
            assert!(summary.is_valid_at(case.now), "case {:?}", case.name);
            assert_eq!(
                summary.decide(&case.required),
                decide(case.ent.as_ref(), &case.rules, &case.required, case.now),
                "case {:?}",
                case.name
            );
        }
    }

    #[test]
    fn features_header_and_status() {
        let rules = rules();
        let records = records();
        let summary = AccessSummary::new(records[2].as_ref(), &rules, NOW);
        assert_eq!(summary.status(), "active");
        assert_eq!(summary.features_header().unwrap(), "export,api");
        assert_eq!(
            size_of::<AccessSummary>(),
            72,
            "a million of these is the sizing case"
        );
        let never = AccessSummary::new(None, &rules, NOW);
        assert_eq!(never.status(), "none");
        assert!(
            Arc::ptr_eq(&never, &AccessSummary::new(None, &rules, NOW)),
            "never-seen users share one summary"
        );
        let lapsed = AccessSummary::new(records[3].as_ref(), &rules, NOW);
        assert_eq!(
            (lapsed.status(), lapsed.features_header().is_none()),
            ("canceled", true)
        );
        assert_eq!(lapsed.valid_until, None);
        assert!(lapsed.plan.has_used_trial);
        assert_eq!(lapsed.plan.current_period_end, NonZeroI64::new(NOW + 1000));
    }
}
