//! A reference model of billing state: a deliberately plain reading
//! of the linking, ordering and decision rules (docs/webhooks.md, "Idempotency
//! and ordering", and docs/responses.md, "402: payment required"), written against
//! its own types, that shares nothing with `billing/record.rs`, `billing/project.rs`
//! or `entitlement/`. Random histories of
//! webhook events (as JSON bodies, through the real `event::parse`) are
//! delivered in random orders, with duplicates and operator overrides, through
//! the real `Applier` into the memory store and Redis; every user's decision,
//! status, features and `/me` plan fields must equal the model's at several
//! `now` values.
//!
//! The model works on the whole history at once ("what does the set of events
//! say?"), never incrementally, so it cannot share a merge bug with the product.
//!
//! Long mode: `cargo test --release --lib -- --ignored apply::model_tests`
//! (`PAYGATE_PROPTEST_CASES`, default 20,000; the bare filter `model` also
//! runs the webhook parser's and signature's long modes).
//!
//! Readings of the rules this model settles:
//! - a checkout session links through `client_reference_id`, else its
//!   metadata, which ranks one step lower (this model found the
//!   product ranking both alike, since fixed);
//! - an operator link outranks every Stripe source; between operator links
//!   the newest (operator clock), then the greater id;
//! - an unpaid checkout still links, but records no subscription;
//! - a provisional subscription is dated (for "latest") by the earliest paid
//!   checkout naming it, has no period end or trial, and is replaced by any
//!   subscription event, even an older one;
//! - a deleted customer's subscriptions are `canceled` for good, even those
//!   whose events are newer than the deletion, and never in past_due grace; its
//!   link and its features stay (features count if another subscription grants);
//! - trial history belongs to the customer: the user sees that of the
//!   customers linked to them now (a customer that moves takes it along);
//!   `first_trial_at` is the earliest `trial_start` (else event `created`) of
//!   any `trialing` snapshot, even one older than the held state;
//! - the grace ends exclusively (`now < since + grace`);
//! - features: per customer the newest summary by (`created`, event id), no
//!   lifecycle rank; the union over the user's customers, shown only when
//!   access is granted, plus the active override's features;
//! - an override is no subscription record: expired and alone it gives
//!   `CHECKOUT_REQUIRED` / `none`; the last override written is the one held;
//! - a denial names the latest subscription (subscription `created`, then id)
//!   whatever its status; `/me`'s plan fields come from the latest granting
//!   subscription, else the latest;
//! - forged duplicates (one event id, two bodies) are not generated: the
//!   webhook endpoint drops a seen id, so the first delivered wins by design.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};

use super::Applier;
use crate::admin::users::{write_override, OverrideChange};
use crate::billing::record::{Fact, LinkSource};
use crate::entitlement::{AccessRules, AccessSummary, Decision, Override};
use crate::store::{EntitlementStore, MemoryStore, RedisStore};

const USERS: [&str; 4] = ["u1", "u2", "u3", "u4"];
const CUSTOMERS: [&str; 3] = ["cus_a", "cus_b", "cus_c"];
/// (id, customer index, the subscription's own `created`). sub_1 and sub_3
/// share a `created` so that "latest" falls back to the id.
const SUBS: [(&str, usize, i64); 4] = [
    ("sub_1", 0, 900),
    ("sub_2", 0, 905),
    ("sub_3", 1, 900),
    ("sub_4", 2, 901),
];
const STATUSES: [&str; 8] = [
    "incomplete",
    "trialing",
    "active",
    "past_due",
    "paused",
    "unpaid",
    "canceled",
    "incomplete_expired",
];
/// Events happen in a window of a few seconds, so same-second pairs are common.
const T0: i64 = 10_000;
const SPREAD: i64 = 12;
const GRACE: i64 = 4;
/// Decisions are compared at these instants: inside, around and long after the
/// window (grace running, ended, overrides expired).
const NOWS: [i64; 3] = [T0 + 6, T0 + SPREAD + 1, T0 + 40];

/// One webhook event of a history, before it gets an id and a time.
#[derive(Debug, Clone)]
enum Ev {
    /// `checkout.session.completed` in subscription mode.
    Checkout {
        sub: usize,
        client_reference: Option<usize>,
        metadata: Option<usize>,
        paid: bool,
    },
    /// `customer.updated` / `customer.deleted`, with an optional metadata user.
    Customer {
        customer: usize,
        metadata: Option<usize>,
        deleted: bool,
    },
    /// `customer.subscription.updated`.
    Sub {
        sub: usize,
        status: usize,
        metadata: Option<usize>,
        trial_start: bool,
        cancel_at_period_end: bool,
    },
    /// `entitlements.active_entitlement_summary.updated`.
    Features { customer: usize, keys: Vec<usize> },
    /// `invoice.payment_failed`: changes nothing.
    Invoice { sub: usize },
}

/// A history: events with their `created` offset from `T0`, operator
/// overrides (user, until offset, feature), operator links (customer, user,
/// `created` offset), and a delivery order over all three (events first, then
/// overrides, then operator links, by index), with duplicate deliveries.
#[derive(Clone)]
struct History {
    events: Vec<(i64, Ev)>,
    overrides: Vec<(usize, i64, Option<usize>)>,
    operator_links: Vec<(usize, usize, i64)>,
    order: Vec<usize>,
}

fn user(u: &Option<usize>) -> String {
    u.map_or("-".into(), |u| USERS[u].to_string())
}

impl fmt::Debug for History {
    /// A timeline: one event per line, in `created` order, then the delivery order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "history (T0 = {T0}, grace {GRACE}s, nows {NOWS:?}):")?;
        let mut by_time: Vec<usize> = (0..self.events.len()).collect();
        by_time.sort_by_key(|&i| (self.events[i].0, i));
        for i in by_time {
            let (t, ev) = &self.events[i];
            let what = match ev {
                Ev::Checkout {
                    sub,
                    client_reference,
                    metadata,
                    paid,
                } => format!(
                    "checkout.session.completed {} ({}) client_reference_id={} metadata.user_id={} {}",
                    SUBS[*sub].0,
                    CUSTOMERS[SUBS[*sub].1],
                    user(client_reference),
                    user(metadata),
                    if *paid { "paid" } else { "unpaid" }
                ),
                Ev::Customer {
                    customer,
                    metadata,
                    deleted,
                } => format!(
                    "customer.{} {} metadata.user_id={}",
                    if *deleted { "deleted" } else { "updated" },
                    CUSTOMERS[*customer],
                    user(metadata)
                ),
                Ev::Sub {
                    sub,
                    status,
                    metadata,
                    trial_start,
                    cancel_at_period_end,
                } => format!(
                    "customer.subscription.updated {} ({}) status={} metadata.user_id={}{}{}",
                    SUBS[*sub].0,
                    CUSTOMERS[SUBS[*sub].1],
                    STATUSES[*status],
                    user(metadata),
                    if *trial_start { " trial_start" } else { "" },
                    if *cancel_at_period_end { " cancel_at_period_end" } else { "" }
                ),
                Ev::Features { customer, keys } => format!(
                    "entitlement summary {} {:?}",
                    CUSTOMERS[*customer],
                    keys.iter().map(|k| format!("f{k}")).collect::<Vec<_>>()
                ),
                Ev::Invoice { sub } => format!("invoice.payment_failed {}", SUBS[*sub].0),
            };
            writeln!(f, "  {} t=T0+{t:<2} {what}", event_id(i))?;
        }
        for (j, (u, until, feature)) in self.overrides.iter().enumerate() {
            writeln!(
                f,
                "  override#{j} {} until T0+{until} features {:?}",
                USERS[*u],
                feature.map(|k| format!("f{k}"))
            )?;
        }
        for (j, (c, u, t)) in self.operator_links.iter().enumerate() {
            writeln!(
                f,
                "  link#{j} t=T0+{t} operator links {} to {}",
                CUSTOMERS[*c], USERS[*u]
            )?;
        }
        let order: Vec<String> = self
            .order
            .iter()
            .map(|&i| match self.item(i) {
                Item::Event(i) => event_id(i),
                Item::Override(j) => format!("override#{j}"),
                Item::OperatorLink(j) => format!("link#{j}"),
            })
            .collect();
        write!(f, "  delivered: {}", order.join(" "))
    }
}

/// One delivery of a history.
enum Item {
    Event(usize),
    Override(usize),
    OperatorLink(usize),
}

impl History {
    fn item(&self, i: usize) -> Item {
        let (n, o) = (self.events.len(), self.overrides.len());
        if i < n {
            Item::Event(i)
        } else if i < n + o {
            Item::Override(i - n)
        } else {
            Item::OperatorLink(i - n - o)
        }
    }
}

/// Ids are not in `created` order (they are in generation order), so ties on
/// `created` are broken by ids that say nothing about time.
fn event_id(i: usize) -> String {
    format!("evt_{i:02}")
}

fn ev() -> impl Strategy<Value = Ev> {
    let u = || proptest::option::of(0..USERS.len());
    prop_oneof![
        2 => (0..SUBS.len(), u(), u(), prop::bool::weighted(0.8)).prop_map(
            |(sub, client_reference, metadata, paid)| Ev::Checkout { sub, client_reference, metadata, paid }),
        2 => (0..CUSTOMERS.len(), u(), prop::bool::weighted(0.15)).prop_map(
            |(customer, metadata, deleted)| Ev::Customer { customer, metadata, deleted }),
        5 => (0..SUBS.len(), 0..STATUSES.len(), u(), any::<bool>(), prop::bool::weighted(0.2)).prop_map(
            |(sub, status, metadata, trial_start, cancel_at_period_end)| Ev::Sub { sub, status, metadata, trial_start, cancel_at_period_end }),
        1 => (0..CUSTOMERS.len(), prop::collection::vec(0..3usize, 0..3)).prop_map(
            |(customer, keys)| Ev::Features { customer, keys }),
        1 => (0..SUBS.len()).prop_map(|sub| Ev::Invoice { sub }),
    ]
}

fn history(max_events: usize) -> impl Strategy<Value = History> {
    let events = prop::collection::vec((0..SPREAD, ev()), 1..max_events);
    let overrides = prop::collection::vec(
        (
            0..USERS.len(),
            prop_oneof![Just(5i64), Just(20)],
            proptest::option::of(0..3usize),
        ),
        0..2,
    );
    let operator_links =
        prop::collection::vec((0..CUSTOMERS.len(), 0..USERS.len(), 0..SPREAD), 0..2);
    (events, overrides, operator_links).prop_flat_map(|(events, overrides, operator_links)| {
        let n = events.len() + overrides.len() + operator_links.len();
        let dups = prop::collection::vec(0..n, 0..4);
        let parts = (Just(events), Just(overrides), Just(operator_links), dups);
        parts.prop_flat_map(move |(events, overrides, operator_links, dups)| {
            let mut order: Vec<usize> = (0..n).collect();
            order.extend(dups);
            Just(order).prop_shuffle().prop_map(move |order| History {
                events: events.clone(),
                overrides: overrides.clone(),
                operator_links: operator_links.clone(),
                order,
            })
        })
    })
}

/// The webhook body of event `i`, as Stripe would send it.
fn body(i: usize, created: i64, ev: &Ev) -> Vec<u8> {
    let meta = |u: &Option<usize>| match u {
        Some(u) => json!({ "user_id": USERS[*u] }),
        None => json!({}),
    };
    let (kind, object): (&str, Value) = match ev {
        Ev::Checkout {
            sub,
            client_reference,
            metadata,
            paid,
        } => (
            "checkout.session.completed",
            json!({
                "id": format!("cs_{i}"),
                "object": "checkout.session",
                "customer": CUSTOMERS[SUBS[*sub].1],
                "subscription": SUBS[*sub].0,
                "client_reference_id": client_reference.map(|u| USERS[u]),
                "metadata": meta(metadata),
                "mode": "subscription",
                "payment_status": if *paid { "paid" } else { "unpaid" },
            }),
        ),
        Ev::Customer {
            customer,
            metadata,
            deleted,
        } => (
            if *deleted {
                "customer.deleted"
            } else {
                "customer.updated"
            },
            json!({ "id": CUSTOMERS[*customer], "object": "customer", "metadata": meta(metadata) }),
        ),
        Ev::Sub {
            sub,
            status,
            metadata,
            trial_start,
            cancel_at_period_end,
        } => {
            let (id, customer, sub_created) = SUBS[*sub];
            let trialing = STATUSES[*status] == "trialing";
            (
                "customer.subscription.updated",
                json!({
                    "id": id,
                    "object": "subscription",
                    "customer": CUSTOMERS[customer],
                    "status": STATUSES[*status],
                    "created": sub_created,
                    "current_period_end": created + 1_000,
                    "trial_start": (trialing && *trial_start).then_some(sub_created + 7),
                    "trial_end": trialing.then_some(created + 500),
                    "cancel_at_period_end": cancel_at_period_end,
                    "metadata": meta(metadata),
                    "items": { "object": "list", "data": [] },
                }),
            )
        }
        Ev::Features { customer, keys } => (
            "entitlements.active_entitlement_summary.updated",
            json!({
                "object": "entitlements.active_entitlement_summary",
                "customer": CUSTOMERS[*customer],
                "entitlements": {
                    "object": "list",
                    "data": keys.iter().map(|k| json!({ "lookup_key": format!("f{k}") })).collect::<Vec<_>>(),
                    "has_more": false,
                },
            }),
        ),
        Ev::Invoice { sub } => (
            "invoice.payment_failed",
            json!({ "object": "invoice", "customer": CUSTOMERS[SUBS[*sub].1], "subscription": SUBS[*sub].0 }),
        ),
    };
    serde_json::to_vec(&json!({
        "id": event_id(i),
        "object": "event",
        "type": kind,
        "created": created,
        "livemode": false,
        "data": { "object": object },
    }))
    .unwrap()
}

// ---------------------------------------------------------------- the model

/// Lifecycle rank.
fn rank(status: &str) -> u8 {
    match status {
        "incomplete" => 1,
        "trialing" => 2,
        "active" => 3,
        "past_due" => 4,
        "paused" => 5,
        "unpaid" => 6,
        _ => 7, // canceled = incomplete_expired
    }
}

/// Link sources, higher wins.
fn link_precedence(source: &str) -> u8 {
    match source {
        "operator" => 5,
        "client_reference_id" => 4,
        "session_metadata" => 3,
        "subscription_metadata" => 2,
        _ => 1, // customer metadata
    }
}

/// What the model expects a subscription to look like to its user.
#[derive(Debug, Clone)]
struct ModelSub {
    id: &'static str,
    created: i64,
    status: &'static str,
    past_due_since: Option<i64>,
    period_end: Option<i64>,
    trial_end: Option<i64>,
    cancel_at_period_end: bool,
}

/// Everything the model says about one user at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    /// "allow", "checkout_required", "subscription_required".
    decision: &'static str,
    status: String,
    features: BTreeSet<String>,
    has_used_trial: bool,
    first_trial_at: Option<i64>,
    current_period_end: Option<i64>,
    trial_end: Option<i64>,
    cancel_at_period_end: bool,
}

/// The model's reading of a whole history: per user, per `now`.
fn model(h: &History) -> BTreeMap<(&'static str, i64), Expected> {
    // Duplicates are the same event: the set of distinct events is the history.
    let events: Vec<(String, i64, &Ev)> = h
        .events
        .iter()
        .enumerate()
        .map(|(i, (t, ev))| (event_id(i), T0 + t, ev))
        .collect();

    // Links: (precedence, created, event id) greatest wins, per customer.
    let mut link: BTreeMap<usize, ((u8, i64, String), usize)> = BTreeMap::new();
    let mut offer = |customer: usize, u: usize, source: &str, t: i64, id: &str| {
        let key = (link_precedence(source), t, id.to_string());
        if link.get(&customer).is_none_or(|(held, _)| key > *held) {
            link.insert(customer, (key, u));
        }
    };
    for (id, t, ev) in &events {
        match ev {
            Ev::Checkout {
                sub,
                client_reference,
                metadata,
                ..
            } => {
                let customer = SUBS[*sub].1;
                if let Some(u) = client_reference {
                    offer(customer, *u, "client_reference_id", *t, id);
                } else if let Some(u) = metadata {
                    offer(customer, *u, "session_metadata", *t, id);
                }
            }
            Ev::Customer {
                customer,
                metadata: Some(u),
                ..
            } => offer(*customer, *u, "customer_metadata", *t, id),
            Ev::Sub {
                sub,
                metadata: Some(u),
                ..
            } => offer(SUBS[*sub].1, *u, "subscription_metadata", *t, id),
            _ => {}
        }
    }

    for (j, (c, u, t)) in h.operator_links.iter().enumerate() {
        offer(*c, *u, "operator", T0 + t, &format!("operator_{j}"));
    }

    let deleted: BTreeSet<usize> = events
        .iter()
        .filter_map(|(_, _, ev)| match ev {
            Ev::Customer {
                customer,
                deleted: true,
                ..
            } => Some(*customer),
            _ => None,
        })
        .collect();

    // Subscriptions: the snapshots of each, in stamp order.
    let mut subs: Vec<(usize, ModelSub)> = Vec::new();
    // Trial history per customer: earliest trial start seen.
    let mut trials: BTreeMap<usize, i64> = BTreeMap::new();
    for (s, (sub_id, customer, sub_created)) in SUBS.iter().enumerate() {
        let mut snapshots: Vec<(i64, u8, &str, &Ev)> = events
            .iter()
            .filter(|(_, _, ev)| matches!(ev, Ev::Sub { sub, .. } if *sub == s))
            .map(|(id, t, ev)| match ev {
                Ev::Sub { status, .. } => (*t, rank(STATUSES[*status]), id.as_str(), *ev),
                _ => unreachable!(),
            })
            .collect();
        snapshots.sort_by_key(|(t, rank, id, _)| (*t, *rank, *id));
        for (t, _, _, ev) in &snapshots {
            if let Ev::Sub {
                status,
                trial_start,
                ..
            } = ev
            {
                if STATUSES[*status] == "trialing" {
                    let at = if *trial_start { sub_created + 7 } else { *t };
                    let held = trials.entry(*customer).or_insert(at);
                    *held = (*held).min(at);
                }
            }
        }
        let model_sub = if let Some((
            t,
            _,
            _,
            Ev::Sub {
                status,
                cancel_at_period_end,
                ..
            },
        )) = snapshots.last()
        {
            // The past_due episode: walk the snapshots in stamp order.
            let mut since = None;
            for (t, _, _, ev) in &snapshots {
                if let Ev::Sub { status, .. } = ev {
                    if STATUSES[*status] == "past_due" {
                        since = since.or(Some(*t));
                    } else {
                        since = None;
                    }
                }
            }
            let trialing = STATUSES[*status] == "trialing";
            ModelSub {
                id: sub_id,
                created: *sub_created,
                status: STATUSES[*status],
                past_due_since: since,
                period_end: Some(t + 1_000),
                trial_end: trialing.then_some(t + 500),
                cancel_at_period_end: *cancel_at_period_end,
            }
        } else {
            // No subscription event: a paid checkout makes it provisionally
            // active, dated by the earliest such checkout.
            let paid_at = events
                .iter()
                .filter_map(|(_, t, ev)| match ev {
                    Ev::Checkout {
                        sub, paid: true, ..
                    } if *sub == s => Some(*t),
                    _ => None,
                })
                .min();
            let Some(paid_at) = paid_at else { continue };
            ModelSub {
                id: sub_id,
                created: paid_at,
                status: "active",
                past_due_since: None,
                period_end: None,
                trial_end: None,
                cancel_at_period_end: false,
            }
        };
        let mut model_sub = model_sub;
        if deleted.contains(customer) {
            model_sub.status = "canceled";
            model_sub.past_due_since = None;
        }
        subs.push((*customer, model_sub));
    }

    // Features: the newest summary per customer (created, then event id).
    let mut features: BTreeMap<usize, ((i64, String), Vec<String>)> = BTreeMap::new();
    for (id, t, ev) in &events {
        if let Ev::Features { customer, keys } = ev {
            let key = (*t, id.clone());
            if features.get(customer).is_none_or(|(held, _)| key > *held) {
                features.insert(
                    *customer,
                    (key, keys.iter().map(|k| format!("f{k}")).collect()),
                );
            }
        }
    }

    let mut out = BTreeMap::new();
    for (u, name) in USERS.iter().enumerate() {
        let mine: Vec<usize> = (0..CUSTOMERS.len())
            .filter(|c| link.get(c).is_some_and(|(_, linked)| *linked == u))
            .collect();
        let my_subs: Vec<&ModelSub> = subs
            .iter()
            .filter(|(c, _)| mine.contains(c))
            .map(|(_, s)| s)
            .collect();
        let my_features: BTreeSet<String> = mine
            .iter()
            .filter_map(|c| features.get(c))
            .flat_map(|(_, keys)| keys.iter().cloned())
            .collect();
        let my_trials: Vec<i64> = mine.iter().filter_map(|c| trials.get(c)).copied().collect();
        // Overrides: the last one delivered is the one the user holds.
        let last_override = h
            .order
            .iter()
            .filter_map(|&i| match h.item(i) {
                Item::Override(j) => Some(h.overrides[j]),
                _ => None,
            })
            .rfind(|(ou, _, _)| *ou == u);
        for now in NOWS {
            let grants = |s: &ModelSub| {
                matches!(s.status, "active" | "trialing")
                    || (s.status == "past_due" && s.past_due_since.is_some_and(|p| now < p + GRACE))
            };
            let latest_any = latest(my_subs.iter().copied());
            let latest_granting = latest(my_subs.iter().copied().filter(|s| grants(s)));
            let override_active = last_override.filter(|(_, until, _)| now < T0 + until);
            let (decision, status) = match (latest_granting, override_active, latest_any) {
                (Some(s), _, _) => ("allow", s.status.to_string()),
                (None, Some(_), _) => ("allow", "override".to_string()),
                (None, None, Some(s)) => ("subscription_required", s.status.to_string()),
                (None, None, None) => ("checkout_required", "none".to_string()),
            };
            let mut granted_features = BTreeSet::new();
            if decision == "allow" {
                granted_features.extend(my_features.iter().cloned());
                if let Some((_, _, Some(f))) = override_active {
                    granted_features.insert(format!("f{f}"));
                }
            }
            let current = latest_granting.or(latest_any);
            out.insert(
                (*name, now),
                Expected {
                    decision,
                    status,
                    features: granted_features,
                    has_used_trial: !my_trials.is_empty(),
                    first_trial_at: my_trials.iter().copied().min(),
                    current_period_end: current.and_then(|s| s.period_end),
                    trial_end: current.and_then(|s| s.trial_end),
                    cancel_at_period_end: current.is_some_and(|s| s.cancel_at_period_end),
                },
            );
        }
    }
    out
}

/// latest = greatest subscription `created`, then id.
fn latest<'a>(subs: impl Iterator<Item = &'a ModelSub>) -> Option<&'a ModelSub> {
    subs.max_by(|a, b| (a.created, a.id).cmp(&(b.created, b.id)))
}

// ------------------------------------------------------ the real system

fn rules() -> AccessRules {
    AccessRules {
        past_due_grace: GRACE,
        ..AccessRules::default()
    }
}

/// Delivers the history through the real parser and `Applier`, then reads
/// what each user gets at each `now`, in the model's terms.
async fn run_real(
    store: Arc<dyn EntitlementStore>,
    h: &History,
) -> BTreeMap<(&'static str, i64), Expected> {
    let applier = Applier::new(store.clone());
    let keys = vec!["user_id".to_string(), "djstripe_subscriber".to_string()];
    for &i in &h.order {
        match h.item(i) {
            Item::Event(i) => {
                let (t, ev) = &h.events[i];
                let event = crate::stripe::event::parse(&body(i, T0 + t, ev), &keys)
                    .expect("generated bodies parse");
                applier.apply_event(&event).await.unwrap();
            }
            Item::OperatorLink(j) => {
                // What the admin API will write; its stamp is the operator's clock.
                let (c, u, t) = h.operator_links[j];
                let fact = Fact::Link {
                    user: USERS[u].into(),
                    created: T0 + t,
                    source: LinkSource::Admin,
                    event_id: format!("operator_{j}"),
                };
                applier
                    .apply_facts(vec![(CUSTOMERS[c].to_string(), fact)], "operator")
                    .await
                    .unwrap();
            }
            Item::Override(j) => {
                let (u, until, feature) = h.overrides[j];
                let grant = Override {
                    until: T0 + until,
                    reason: "model".into(),
                    features: feature.map(|f| format!("f{f}")).into_iter().collect(),
                };
                write_override(&*store, None, USERS[u], &OverrideChange::Grant(grant), T0)
                    .await
                    .unwrap();
            }
        }
    }
    let rules = rules();
    let mut out = BTreeMap::new();
    for name in USERS {
        let ent = store.load(name).await.unwrap();
        for now in NOWS {
            let summary = AccessSummary::new(ent.as_ref(), &rules, now);
            let decision = match summary.decide(&[]) {
                Decision::Allow { .. } => "allow",
                Decision::CheckoutRequired => "checkout_required",
                Decision::SubscriptionRequired { .. } => "subscription_required",
                Decision::UpgradeRequired { .. } => "upgrade_required",
            };
            let plan = &summary.plan;
            out.insert(
                (name, now),
                Expected {
                    decision,
                    status: summary.status().to_string(),
                    features: summary
                        .feature_names()
                        .iter()
                        .map(|f| f.to_string())
                        .collect(),
                    has_used_trial: plan.has_used_trial,
                    first_trial_at: plan.first_trial_at.map(|t| t.get()),
                    current_period_end: plan.current_period_end.map(|t| t.get()),
                    trial_end: plan.trial_end.map(|t| t.get()),
                    cancel_at_period_end: plan.cancel_at_period_end,
                },
            );
        }
    }
    out
}

fn check(
    make_store: &dyn Fn() -> Arc<dyn EntitlementStore>,
    h: &History,
) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The store is made inside the runtime: Redis spawns its connection task.
    let actual = runtime.block_on(async { run_real(make_store(), h).await });
    let expected = model(h);
    for (key, want) in &expected {
        let got = &actual[key];
        if got != want {
            return Err(TestCaseError::fail(format!(
                "{} at now = T0+{}:\n  model:   {want:?}\n  product: {got:?}\n{h:?}",
                key.0,
                key.1 - T0
            )));
        }
    }
    Ok(())
}

fn run(cases: u32, max_events: usize, make_store: &dyn Fn() -> Arc<dyn EntitlementStore>) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    if let Err(failure) = runner.run(&history(max_events), |h| check(make_store, &h)) {
        panic!("{failure}");
    }
}

fn memory() -> Arc<dyn EntitlementStore> {
    Arc::new(MemoryStore::new())
}

#[test]
fn model_agrees_in_memory() {
    run(128, 14, &memory);
}

#[test]
fn model_agrees_in_redis() {
    let redis = paygate_testkit::TestRedis::start();
    let url = redis.url();
    let next = std::sync::atomic::AtomicUsize::new(0);
    run(16, 10, &|| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(RedisStore::new(&url, &format!("m{n}:")).unwrap())
    });
}

/// `cargo test --release --lib -- --ignored model`; cases from
/// `PAYGATE_PROPTEST_CASES` (default 20,000).
#[test]
#[ignore]
fn model_agrees_long() {
    let cases = std::env::var("PAYGATE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let started = std::time::Instant::now();
    run(cases, 18, &memory);
    eprintln!(
        "model_agrees_long: {cases} histories agreed in {:?}",
        started.elapsed()
    );
}
