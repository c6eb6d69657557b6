//! What the store keeps per Stripe customer, and the pure, order-independent
//! merge of one fact into it.
//!
//! Stripe delivers events at least once and in any order. Every merge here is
//! commutative and idempotent: each piece of state carries a [`Stamp`] and the
//! greater stamp wins, sets only grow, "first seen" values take the minimum. So
//! any permutation of a set of events, with duplicates, ends in the same record
//! as in-order delivery. Nothing here does I/O.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::entitlement::{Subscription, SubscriptionStatus, UnixTime};

/// Orders two versions of one Stripe object: the event's `created`
/// first, then the lifecycle rank (same-second ties: the later lifecycle state
/// wins, so a same-second cancel always ends canceled), then the event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub created: UnixTime,
    pub rank: u8,
    pub event_id: String,
}

impl Ord for Stamp {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.created, self.rank, &self.event_id).cmp(&(other.created, other.rank, &other.event_id))
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Lifecycle rank: `incomplete` < `trialing` < `active` < `past_due` <
/// `paused` < `unpaid` < `canceled` = `incomplete_expired`.
pub(crate) fn lifecycle_rank(status: &SubscriptionStatus) -> u8 {
    match status {
        SubscriptionStatus::Incomplete => 1,
        SubscriptionStatus::Trialing => 2,
        SubscriptionStatus::Active => 3,
        SubscriptionStatus::PastDue => 4,
        SubscriptionStatus::Paused => 5,
        SubscriptionStatus::Unpaid => 6,
        SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired => 7,
        // An unknown future status ranks lowest: it never beats a known one in a tie.
        SubscriptionStatus::Unknown => 0,
    }
}

/// Where a customer → user link came from, in increasing precedence
/// (an operator link, then checkout's client_reference_id, then metadata on the
/// session, the subscription, the customer). Precedence decides before
/// `created`: a newer link from a lower source never moves a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkSource {
    Sync,
    CustomerMetadata,
    SubscriptionMetadata,
    CheckoutMetadata,
    ClientReferenceId,
    Admin,
}

/// One subscription as held for its customer, with what ordering needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldSubscription {
    /// The latest snapshot (by stamp). `past_due_since` in it is not used: it is
    /// derived from the two fields below when projected.
    pub snapshot: Subscription,
    /// `None` for a provisional record written from a completed checkout: any
    /// subscription event replaces it, whatever its `created`.
    pub stamp: Option<Stamp>,
    /// `created` of every event seen showing the subscription `past_due`
    /// (bounded), so `past_due_since` does not depend on delivery order.
    #[serde(default)]
    pub past_due_seen: Vec<UnixTime>,
    /// Greatest `created` of an event showing another status.
    #[serde(default)]
    pub last_not_past_due: Option<UnixTime>,
    /// The lifecycle rank of that event, so that a same-second `past_due`
    /// snapshot is ordered against it by stamp (`active` then
    /// `past_due` in one second starts an episode; `past_due` then `canceled`
    /// does not). 0 in records written before it existed.
    #[serde(default)]
    pub last_not_past_due_rank: u8,
}

/// How many `past_due` sightings are kept; older ones cannot matter once a
/// later non-past_due event exists, and a subscription rarely flips this often.
const PAST_DUE_SEEN_CAP: usize = 32;

impl HeldSubscription {
    /// `created` of the first event that showed the current `past_due` episode.
    pub fn past_due_since(&self) -> Option<UnixTime> {
        if self.snapshot.status != SubscriptionStatus::PastDue {
            return None;
        }
        let past_due = lifecycle_rank(&SubscriptionStatus::PastDue);
        // In stamp order (created, then lifecycle rank): a past_due sighting
        // and a snapshot of another status never share a rank, so the event id
        // is never needed to order them.
        let after = self
            .last_not_past_due
            .map(|t| (t, self.last_not_past_due_rank));
        self.past_due_seen
            .iter()
            .copied()
            .filter(|t| after.is_none_or(|after| (*t, past_due) > after))
            .min()
    }
}

/// Everything paygate knows about one Stripe customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerRecord {
    pub id: String,
    /// Incremented on every change; users hold the revision they last projected,
    /// so a late projection of an older revision cannot overwrite a newer one.
    pub rev: u64,
    /// The user this customer is linked to now.
    pub user: Option<String>,
    pub link_stamp: Option<(UnixTime, LinkSource, String)>,
    /// Users this customer was linked to before: they must lose its
    /// subscriptions, and re-sending that removal must stay possible after a crash.
    pub previous_users: Vec<String>,
    /// `customer.deleted` seen (at this `created`): its subscriptions count as canceled.
    pub deleted_at: Option<UnixTime>,
    pub subscriptions: Vec<HeldSubscription>,
    /// Stripe Entitlements feature lookup keys, with the stamp of the summary.
    pub features: Vec<String>,
    pub features_stamp: Option<Stamp>,
    pub has_used_trial: bool,
    pub first_trial_at: Option<UnixTime>,
    /// Subscriptions whose checkout's delayed payment failed: a completed
    /// checkout for them arriving late must not make them provisional again,
    /// so the result does not depend on delivery order.
    pub failed_checkouts: Vec<String>,
}

/// One thing an event (or a sync, or an operator) says about a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Link {
        user: String,
        created: UnixTime,
        source: LinkSource,
        event_id: String,
    },
    Subscription {
        snapshot: Subscription,
        stamp: Stamp,
    },
    /// A paid checkout's subscription, provisionally active until its own event arrives.
    Provisional {
        subscription_id: String,
        created: UnixTime,
    },
    /// A checkout's delayed payment failed: its provisional record goes, and
    /// a provisional record for that subscription is never made again.
    PaymentFailed {
        subscription_id: String,
    },
    Deleted {
        created: UnixTime,
    },
    Features {
        keys: Vec<String>,
        stamp: Stamp,
    },
}

/// How two links compare: precedence of the source first, then the
/// greatest `created`, then the greater event id. Stored as
/// `(created, source, event id)`; only the order changed.
fn link_order(stamp: &(UnixTime, LinkSource, String)) -> (LinkSource, UnixTime, &str) {
    (stamp.1, stamp.0, stamp.2.as_str())
}

impl CustomerRecord {
    pub fn new(id: &str) -> Self {
        CustomerRecord {
            id: id.to_string(),
            ..Default::default()
        }
    }

    /// Merges one fact; returns whether anything changed (the caller bumps `rev`).
    pub fn merge(&mut self, fact: &Fact) -> bool {
        let before = self.clone();
        match fact {
            Fact::Link {
                user,
                created,
                source,
                event_id,
            } => {
                let stamp = (*created, *source, event_id.clone());
                if self
                    .link_stamp
                    .as_ref()
                    .is_none_or(|held| link_order(&stamp) > link_order(held))
                {
                    if let Some(old) = self.user.take() {
                        if old != *user && !self.previous_users.contains(&old) {
                            self.previous_users.push(old);
                        }
                    }
                    self.previous_users.retain(|u| u != user);
                    self.user = Some(user.clone());
                    self.link_stamp = Some(stamp);
                }
            }
            Fact::Subscription { snapshot, stamp } => self.merge_subscription(snapshot, stamp),
            Fact::PaymentFailed { subscription_id } => {
                if !self.failed_checkouts.contains(subscription_id) {
                    self.failed_checkouts.push(subscription_id.clone());
                    self.failed_checkouts.sort();
                }
                // Only the provisional record goes: once a subscription event
                // arrived, it says what the subscription is.
                self.subscriptions
                    .retain(|h| h.stamp.is_some() || h.snapshot.id != *subscription_id);
            }
            Fact::Provisional {
                subscription_id,
                created,
            } if self.failed_checkouts.contains(subscription_id) => {
                let _ = created;
            }
            Fact::Provisional {
                subscription_id,
                created,
            } => {
                if let Some(held) = self
                    .subscriptions
                    .iter_mut()
                    .find(|h| h.snapshot.id == *subscription_id)
                {
                    // Two checkouts for one subscription: keep the earliest, so
                    // the result does not depend on which arrived first.
                    if held.stamp.is_none() {
                        held.snapshot.created = held.snapshot.created.min(*created);
                    }
                } else {
                    self.subscriptions.push(HeldSubscription {
                        snapshot: Subscription::new(
                            subscription_id,
                            &self.id,
                            SubscriptionStatus::Active,
                            *created,
                        ),
                        stamp: None,
                        past_due_seen: Vec::new(),
                        last_not_past_due: None,
                        last_not_past_due_rank: 0,
                    });
                    self.subscriptions
                        .sort_by(|a, b| a.snapshot.id.cmp(&b.snapshot.id));
                }
            }
            Fact::Deleted { created } => {
                self.deleted_at = Some(self.deleted_at.map_or(*created, |held| held.min(*created)));
            }
            Fact::Features { keys, stamp } => {
                if self.features_stamp.as_ref().is_none_or(|held| stamp > held) {
                    let mut keys = keys.clone();
                    keys.sort();
                    keys.dedup();
                    self.features = keys;
                    self.features_stamp = Some(stamp.clone());
                }
            }
        }
        *self != before
    }

    fn merge_subscription(&mut self, snapshot: &Subscription, stamp: &Stamp) {
        // Trial tracking looks at every event, even one older than the held
        // state: "once any event shows trialing".
        if snapshot.status == SubscriptionStatus::Trialing {
            self.has_used_trial = true;
            let at = snapshot.trial_start.unwrap_or(stamp.created);
            self.first_trial_at = Some(self.first_trial_at.map_or(at, |held| held.min(at)));
        }
        let index = match self
            .subscriptions
            .iter()
            .position(|h| h.snapshot.id == snapshot.id)
        {
            Some(i) => i,
            None => {
                self.subscriptions.push(HeldSubscription {
                    snapshot: snapshot.clone(),
                    stamp: Some(stamp.clone()),
                    past_due_seen: Vec::new(),
                    last_not_past_due: None,
                    last_not_past_due_rank: 0,
                });
                self.subscriptions
                    .sort_by(|a, b| a.snapshot.id.cmp(&b.snapshot.id));
                self.subscriptions
                    .iter()
                    .position(|h| h.snapshot.id == snapshot.id)
                    .unwrap_or(0)
            }
        };
        let held = &mut self.subscriptions[index];
        if snapshot.status == SubscriptionStatus::PastDue {
            if !held.past_due_seen.contains(&stamp.created) {
                held.past_due_seen.push(stamp.created);
                held.past_due_seen.sort_unstable();
                if held.past_due_seen.len() > PAST_DUE_SEEN_CAP {
                    // Keep the latest ones: they are the ones a current episode starts from.
                    let excess = held.past_due_seen.len() - PAST_DUE_SEEN_CAP;
                    held.past_due_seen.drain(..excess);
                }
            }
        } else {
            let seen = (stamp.created, stamp.rank);
            if held
                .last_not_past_due
                .is_none_or(|t| seen > (t, held.last_not_past_due_rank))
            {
                held.last_not_past_due = Some(stamp.created);
                held.last_not_past_due_rank = stamp.rank;
            }
        }
        let newer = match &held.stamp {
            None => true, // provisional: any real event replaces it
            Some(current) => stamp > current,
        };
        if newer {
            let mut snapshot = snapshot.clone();
            snapshot.past_due_since = None;
            held.snapshot = snapshot;
            held.stamp = Some(stamp.clone());
        }
    }

    /// The subscriptions as the user should see them: past_due episodes dated,
    /// and everything canceled once the customer was deleted.
    pub fn visible_subscriptions(&self) -> Vec<Subscription> {
        self.subscriptions
            .iter()
            .map(|held| {
                let mut sub = held.snapshot.clone();
                // Every past_due subscription this version projects carries its
                // start, so the decision never falls back to the period end. A
                // record kept from before sightings were recorded counts from
                // the held past_due event itself (README, "Upgrading").
                sub.past_due_since = held.past_due_since().or_else(|| {
                    (held.snapshot.status == SubscriptionStatus::PastDue)
                        .then(|| held.stamp.as_ref().map(|stamp| stamp.created))
                        .flatten()
                });
                if self.deleted_at.is_some() {
                    sub.status = SubscriptionStatus::Canceled;
                    sub.past_due_since = None;
                }
                if sub.customer.is_empty() {
                    sub.customer = self.id.clone();
                }
                sub
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, status: SubscriptionStatus) -> Subscription {
        Subscription::new(id, "cus_1", status, 100)
    }

    fn sub_fact(status: SubscriptionStatus, created: UnixTime, event: &str) -> Fact {
        Fact::Subscription {
            stamp: Stamp {
                created,
                rank: lifecycle_rank(&status),
                event_id: event.into(),
            },
            snapshot: snap("sub_1", status),
        }
    }

    fn status(rec: &CustomerRecord) -> SubscriptionStatus {
        rec.visible_subscriptions()[0].status.clone()
    }

    #[test]
    fn older_event_does_not_overwrite_newer() {
        let mut rec = CustomerRecord::new("cus_1");
        rec.merge(&sub_fact(SubscriptionStatus::Canceled, 200, "evt_b"));
        rec.merge(&sub_fact(SubscriptionStatus::Active, 100, "evt_a"));
        assert_eq!(status(&rec), SubscriptionStatus::Canceled);
    }

    #[test]
    fn same_second_ties_go_to_the_later_lifecycle_state() {
        for order in [[0, 1], [1, 0]] {
            let facts = [
                sub_fact(SubscriptionStatus::Incomplete, 100, "evt_z"),
                sub_fact(SubscriptionStatus::Active, 100, "evt_a"),
            ];
            let mut rec = CustomerRecord::new("cus_1");
            for i in order {
                rec.merge(&facts[i]);
            }
            assert_eq!(status(&rec), SubscriptionStatus::Active);
        }
        let mut rec = CustomerRecord::new("cus_1");
        rec.merge(&sub_fact(SubscriptionStatus::Canceled, 100, "evt_a"));
        rec.merge(&sub_fact(SubscriptionStatus::Active, 100, "evt_z"));
        assert_eq!(
            status(&rec),
            SubscriptionStatus::Canceled,
            "a same-second cancel always ends canceled"
        );
    }

    #[test]
    fn duplicates_change_nothing() {
        let mut rec = CustomerRecord::new("cus_1");
        assert!(rec.merge(&sub_fact(SubscriptionStatus::Active, 100, "evt_a")));
        assert!(!rec.merge(&sub_fact(SubscriptionStatus::Active, 100, "evt_a")));
    }

    #[test]
    fn provisional_is_replaced_by_any_real_event_but_never_replaces_one() {
        let mut rec = CustomerRecord::new("cus_1");
        rec.merge(&Fact::Provisional {
            subscription_id: "sub_1".into(),
            created: 500,
        });
        assert_eq!(status(&rec), SubscriptionStatus::Active);
        rec.merge(&sub_fact(SubscriptionStatus::Incomplete, 100, "evt_old"));
        assert_eq!(status(&rec), SubscriptionStatus::Incomplete);
        rec.merge(&Fact::Provisional {
            subscription_id: "sub_1".into(),
            created: 900,
        });
        assert_eq!(status(&rec), SubscriptionStatus::Incomplete);
    }

    #[test]
    fn trial_is_recorded_even_from_an_older_event_and_never_cleared() {
        let mut rec = CustomerRecord::new("cus_1");
        rec.merge(&sub_fact(SubscriptionStatus::Active, 200, "evt_b"));
        rec.merge(&sub_fact(SubscriptionStatus::Trialing, 100, "evt_a"));
        assert!(rec.has_used_trial);
        assert_eq!(rec.first_trial_at, Some(100));
        assert_eq!(status(&rec), SubscriptionStatus::Active);
    }

    #[test]
    fn past_due_since_is_the_first_sighting_of_the_current_episode_in_any_order() {
        let facts = [
            sub_fact(SubscriptionStatus::PastDue, 100, "e1"),
            sub_fact(SubscriptionStatus::Active, 150, "e2"),
            sub_fact(SubscriptionStatus::PastDue, 200, "e3"),
            sub_fact(SubscriptionStatus::PastDue, 250, "e4"),
        ];
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]] {
            let mut rec = CustomerRecord::new("cus_1");
            for i in order {
                rec.merge(&facts[i]);
            }
            assert_eq!(
                rec.visible_subscriptions()[0].past_due_since,
                Some(200),
                "order {order:?}"
            );
        }
    }

    #[test]
    fn links_move_and_remember_previous_users() {
        let mut rec = CustomerRecord::new("cus_1");
        rec.merge(&Fact::Link {
            user: "u1".into(),
            created: 100,
            source: LinkSource::CustomerMetadata,
            event_id: "e1".into(),
        });
        rec.merge(&Fact::Link {
            user: "u2".into(),
            created: 200,
            source: LinkSource::CustomerMetadata,
            event_id: "e2".into(),
        });
        assert_eq!(rec.user.as_deref(), Some("u2"));
        assert_eq!(rec.previous_users, vec!["u1"]);
        // An older link of the same source arriving late changes nothing.
        assert!(!rec.merge(&Fact::Link {
            user: "u1".into(),
            created: 150,
            source: LinkSource::CustomerMetadata,
            event_id: "e9".into()
        }));
        // A checkout's link outranks metadata, however old it is.
        assert!(rec.merge(&Fact::Link {
            user: "u1".into(),
            created: 150,
            source: LinkSource::ClientReferenceId,
            event_id: "e0".into()
        }));
        assert_eq!(rec.user.as_deref(), Some("u1"));
        assert_eq!(rec.previous_users, vec!["u2"]);
    }

    /// Issue 10, repro 1: a paid checkout links U5; customer metadata naming
    /// U2 fifty minutes later must not move the customer, in either order.
    #[test]
    fn a_newer_lower_precedence_link_never_moves_a_customer() {
        let link = |user: &str, created, source, event: &str| Fact::Link {
            user: user.into(),
            created,
            source,
            event_id: event.into(),
        };
        let sources_below = |source| {
            [
                LinkSource::CheckoutMetadata,
                LinkSource::SubscriptionMetadata,
                LinkSource::CustomerMetadata,
            ]
            .into_iter()
            .filter(move |s| *s < source)
        };
        for high in [
            LinkSource::Admin,
            LinkSource::ClientReferenceId,
            LinkSource::CheckoutMetadata,
            LinkSource::SubscriptionMetadata,
        ] {
            for low in sources_below(high) {
                let facts = [
                    link("U5", 1_000, high, "evt_a"),
                    link("U2", 1_000 + 3_000, low, "evt_b"),
                ];
                for order in [[0, 1], [1, 0]] {
                    let mut rec = CustomerRecord::new("cus_1");
                    for i in order {
                        rec.merge(&facts[i]);
                    }
                    assert_eq!(
                        rec.user.as_deref(),
                        Some("U5"),
                        "{high:?} over {low:?}, order {order:?}"
                    );
                }
            }
        }
        // Equal precedence: the newest created, then the greater event id.
        let mut rec = CustomerRecord::new("cus_1");
        rec.merge(&link("U2", 2_000, LinkSource::CustomerMetadata, "evt_a"));
        rec.merge(&link("U1", 1_000, LinkSource::CustomerMetadata, "evt_z"));
        assert_eq!(rec.user.as_deref(), Some("U2"));
        rec.merge(&link("U3", 2_000, LinkSource::CustomerMetadata, "evt_b"));
        assert_eq!(rec.user.as_deref(), Some("U3"));
    }

    /// A failed delayed payment removes the checkout's provisional
    /// record, in either delivery order, but never a real subscription.
    #[test]
    fn a_failed_delayed_payment_ends_only_the_provisional_record() {
        let provisional = Fact::Provisional {
            subscription_id: "sub_1".into(),
            created: 100,
        };
        let failed = Fact::PaymentFailed {
            subscription_id: "sub_1".into(),
        };
        for order in [[&provisional, &failed], [&failed, &provisional]] {
            let mut rec = CustomerRecord::new("cus_1");
            for fact in order {
                rec.merge(fact);
            }
            assert!(rec.visible_subscriptions().is_empty(), "{order:?}");
            assert!(!rec.merge(&provisional), "a late duplicate changes nothing");
        }
        let mut rec = CustomerRecord::new("cus_1");
        rec.merge(&provisional);
        rec.merge(&sub_fact(SubscriptionStatus::Active, 120, "evt_sub"));
        rec.merge(&failed);
        assert_eq!(
            status(&rec),
            SubscriptionStatus::Active,
            "the subscription event decides"
        );
    }

    /// Issue 10, repro 2: `active` and `past_due` in the same second, in
    /// either order, start the past_due episode at that second; a later
    /// past_due sighting does not restart it; a same-second `canceled` ends it.
    #[test]
    fn a_same_second_active_then_past_due_starts_the_episode_then() {
        let t = 10_000;
        for order in [[0, 1], [1, 0]] {
            let facts = [
                sub_fact(SubscriptionStatus::Active, t, "evt_created"),
                sub_fact(SubscriptionStatus::PastDue, t, "evt_updated"),
            ];
            let mut rec = CustomerRecord::new("cus_1");
            for i in order {
                rec.merge(&facts[i]);
            }
            assert_eq!(status(&rec), SubscriptionStatus::PastDue);
            assert_eq!(
                rec.visible_subscriptions()[0].past_due_since,
                Some(t),
                "order {order:?}"
            );
            rec.merge(&sub_fact(
                SubscriptionStatus::PastDue,
                t + 86_400,
                "evt_again",
            ));
            assert_eq!(
                rec.visible_subscriptions()[0].past_due_since,
                Some(t),
                "a later sighting does not restart"
            );
            rec.merge(&sub_fact(
                SubscriptionStatus::Canceled,
                t + 86_400,
                "evt_cancel",
            ));
            assert_eq!(status(&rec), SubscriptionStatus::Canceled);
            assert_eq!(rec.visible_subscriptions()[0].past_due_since, None);
        }
    }

    #[test]
    fn deleted_customer_shows_its_subscriptions_canceled() {
        let mut rec = CustomerRecord::new("cus_1");
        rec.merge(&sub_fact(SubscriptionStatus::Active, 100, "e1"));
        rec.merge(&Fact::Deleted { created: 200 });
        assert_eq!(status(&rec), SubscriptionStatus::Canceled);
    }
}
