//! The plain data a user's access is derived from: what the store holds for one user.
//!
//! This module only describes data. It does no I/O and makes no decisions; the
//! decision lives in `decide.rs`, the storage in `crate::store`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub(crate) use crate::clock::UnixTime;

/// Everything paygate knows about one application user.
///
/// Serialized as JSON in the store (and in the memory store's seed file), so field
/// names are part of the storage format: add fields with `#[serde(default)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entitlement {
    /// Stripe customer ids linked to this user (`cus_...`).
    pub customers: Vec<String>,
    /// Every subscription known for the user's customers, in no particular order.
    pub subscriptions: Vec<Subscription>,
    /// Feature lookup keys from Stripe Entitlements (`active_entitlement_summary`).
    pub features: Vec<String>,
    /// Set once any event showed one of the user's subscriptions `trialing`; never cleared.
    pub has_used_trial: bool,
    /// When the first trial started (`trial_start`, else the event's `created`).
    pub first_trial_at: Option<UnixTime>,
    /// A manual grant (comp account) that gives access whatever the subscriptions say.
    #[serde(rename = "override")]
    pub grant_override: Option<Override>,
    /// Bookkeeping of the webhook projection (`crate::apply`): the revision of each
    /// customer record last projected here, so an older projection delivered late
    /// is ignored. Not used by decisions.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub customer_revs: BTreeMap<String, u64>,
    /// Stripe Entitlements features per linked customer; `features` is their union.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub customer_features: BTreeMap<String, Vec<String>>,
    /// Trial history per linked customer (`first_trial_at`, or the event time);
    /// `has_used_trial` / `first_trial_at` above are derived from it when present.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub customer_trials: BTreeMap<String, UnixTime>,
}

/// One Stripe subscription as far as access is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// `sub_...`
    pub id: String,
    /// `cus_...` owning the subscription.
    #[serde(default)]
    pub customer: String,
    pub status: SubscriptionStatus,
    /// The subscription's own `created` (not the event's): orders subscriptions.
    #[serde(default)]
    pub created: UnixTime,
    #[serde(default)]
    pub current_period_end: Option<UnixTime>,
    #[serde(default)]
    pub trial_start: Option<UnixTime>,
    #[serde(default)]
    pub trial_end: Option<UnixTime>,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    /// Price ids (`price_...`) of the subscription's items; matched against `[plans]`.
    #[serde(default)]
    pub price_ids: Vec<String>,
    /// Product ids (`prod_...`) of the subscription's items; matched against `[plans]`.
    #[serde(default)]
    pub product_ids: Vec<String>,
    /// `created` of the first event that showed this subscription `past_due` (the
    /// start of `past_due_grace`); cleared when it leaves `past_due`.
    #[serde(default)]
    pub past_due_since: Option<UnixTime>,
}

impl Subscription {
    /// A subscription with only the fields every record has; the rest empty.
    pub fn new(
        id: &str,
        customer: &str,
        status: SubscriptionStatus,
        created: UnixTime,
    ) -> Subscription {
        Subscription {
            id: id.to_string(),
            customer: customer.to_string(),
            status,
            created,
            current_period_end: None,
            trial_start: None,
            trial_end: None,
            cancel_at_period_end: false,
            price_ids: Vec::new(),
            product_ids: Vec::new(),
            past_due_since: None,
        }
    }
}

/// Stripe's subscription statuses. Unknown future statuses deserialize as
/// `Unknown` and never grant access unless listed in `grant_statuses` by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Paused,
    #[serde(other)]
    Unknown,
}

impl SubscriptionStatus {
    /// The name Stripe uses, also what `X-Subscription-Status` carries.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Unpaid => "unpaid",
            Self::Paused => "paused",
            Self::Unknown => "unknown",
        }
    }

    /// Parses Stripe's name; `None` for a name Stripe does not use (config validation).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "trialing" => Self::Trialing,
            "active" => Self::Active,
            "past_due" => Self::PastDue,
            "canceled" => Self::Canceled,
            "unpaid" => Self::Unpaid,
            "paused" => Self::Paused,
            _ => return None,
        })
    }
}

/// A manual grant made by an operator (`paygate user grant`, admin API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Access ends at this instant.
    pub until: UnixTime,
    /// Why it was granted; required so an audit can explain free access.
    pub reason: String,
    /// Extra features granted on top of whatever the subscriptions give.
    #[serde(default)]
    pub features: Vec<String>,
}
