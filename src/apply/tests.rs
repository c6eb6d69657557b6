//! Order-independence of applying events: any permutation of a set of
//! events, with duplicates, ends in the same state as in-order delivery. Run
//! against the memory store and a real Redis.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::entitlement::{Entitlement, Subscription, SubscriptionStatus};
use crate::store::{MemoryStore, RedisStore};
use crate::stripe::event::{Event, EventKind};

const USERS: [&str; 3] = ["u1", "u2", "u3"];
const CUSTOMERS: [&str; 2] = ["cus_a", "cus_b"];
const SUBS: [(&str, &str); 3] = [("sub_1", "cus_a"), ("sub_2", "cus_a"), ("sub_3", "cus_b")];
const STATUSES: [SubscriptionStatus; 7] = [
    SubscriptionStatus::Incomplete,
    SubscriptionStatus::Trialing,
    SubscriptionStatus::Active,
    SubscriptionStatus::PastDue,
    SubscriptionStatus::Paused,
    SubscriptionStatus::Unpaid,
    SubscriptionStatus::Canceled,
];

/// What an event says, before it gets an id and a time.
#[derive(Debug, Clone)]
enum Kind {
    Sub {
        sub: usize,
        status: usize,
        user: Option<usize>,
        price: usize,
    },
    CustomerLink {
        customer: usize,
        user: usize,
    },
    CustomerDeleted {
        customer: usize,
    },
    Checkout {
        sub: usize,
        user: usize,
    },
    Features {
        customer: usize,
        keys: Vec<usize>,
    },
    Invoice {
        customer: usize,
    },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => (0..SUBS.len(), 0..STATUSES.len(), proptest::option::of(0..USERS.len()), 0..2usize)
            .prop_map(|(sub, status, user, price)| Kind::Sub { sub, status, user, price }),
        2 => (0..CUSTOMERS.len(), 0..USERS.len()).prop_map(|(customer, user)| Kind::CustomerLink { customer, user }),
        1 => (0..CUSTOMERS.len()).prop_map(|customer| Kind::CustomerDeleted { customer }),
        2 => (0..SUBS.len(), 0..USERS.len()).prop_map(|(sub, user)| Kind::Checkout { sub, user }),
        1 => (0..CUSTOMERS.len(), proptest::collection::vec(0..3usize, 0..3)).prop_map(|(customer, keys)| Kind::Features { customer, keys }),
        1 => (0..CUSTOMERS.len()).prop_map(|customer| Kind::Invoice { customer }),
    ]
}

/// Distinct `created` per event: index + 1 (the order-independence property assumes it).
fn event(index: usize, kind: &Kind) -> Event {
    let created = 1_000 + index as i64;
    let id = format!("evt_{index:03}");
    let kind = match kind {
        Kind::Sub {
            sub,
            status,
            user,
            price,
        } => {
            let (sub_id, customer) = SUBS[*sub];
            let status = STATUSES[*status].clone();
            let trialing = status == SubscriptionStatus::Trialing;
            EventKind::Subscription {
                subscription: Subscription {
                    id: sub_id.into(),
                    customer: customer.into(),
                    status,
                    created: 500,
                    current_period_end: Some(created + 1000),
                    trial_start: trialing.then_some(created - 10),
                    trial_end: trialing.then_some(created + 100),
                    cancel_at_period_end: false,
                    price_ids: vec![format!("price_{price}")],
                    product_ids: vec![],
                    past_due_since: None,
                },
                user: user.map(|u| USERS[u].to_string()),
            }
        }
        Kind::CustomerLink { customer, user } => EventKind::Customer {
            customer: CUSTOMERS[*customer].into(),
            user: Some(USERS[*user].into()),
            deleted: false,
        },
        Kind::CustomerDeleted { customer } => EventKind::Customer {
            customer: CUSTOMERS[*customer].into(),
            user: None,
            deleted: true,
        },
        Kind::Checkout { sub, user } => EventKind::CheckoutCompleted {
            session_id: format!("cs_{index}"),
            customer: Some(SUBS[*sub].1.into()),
            subscription: Some(SUBS[*sub].0.into()),
            user: Some(USERS[*user].into()),
            by_reference: true,
            mode: "subscription".into(),
            payment_status: "paid".into(),
        },
        Kind::Features { customer, keys } => EventKind::EntitlementSummary {
            customer: CUSTOMERS[*customer].into(),
            lookup_keys: keys.iter().map(|k| format!("feature_{k}")).collect(),
            has_more: false,
        },
        Kind::Invoice { customer } => EventKind::Invoice {
            customer: Some(CUSTOMERS[*customer].into()),
            subscription: None,
        },
    };
    Event {
        id,
        event_type: "test".into(),
        created,
        livemode: false,
        kind,
    }
}

/// The state that must converge: every user's entitlement and every customer
/// record, minus bookkeeping that legitimately depends on order (revision
/// counters, the list of users a customer was linked to before).
async fn snapshot(
    store: &dyn EntitlementStore,
) -> (Vec<Option<Entitlement>>, Vec<Option<CustomerRecord>>) {
    let mut users = Vec::new();
    for user in USERS {
        let ent = store.load(user).await.unwrap().map(|mut e| {
            e.customer_revs.clear();
            e
        });
        // A user touched only to remove a customer again equals one never touched.
        users.push(ent.filter(|e| *e != Entitlement::default()));
    }
    let mut customers = Vec::new();
    for customer in CUSTOMERS {
        customers.push(store.load_customer(customer).await.unwrap().map(|mut c| {
            c.rev = 0;
            c.previous_users.clear();
            c
        }));
    }
    (users, customers)
}

async fn deliver(store: Arc<dyn EntitlementStore>, events: &[Event]) {
    let applier = Applier::new(store);
    for event in events {
        applier.apply_event(event).await.unwrap();
    }
}

/// Events, and a delivery order over them with duplicates.
fn scenario() -> impl Strategy<Value = (Vec<Kind>, Vec<usize>)> {
    proptest::collection::vec(kind(), 1..10).prop_flat_map(|kinds| {
        let n = kinds.len();
        let order = proptest::collection::vec(0..n, 0..4).prop_flat_map(move |dups| {
            let mut order: Vec<usize> = (0..n).collect();
            order.extend(dups);
            Just(order).prop_shuffle()
        });
        (Just(kinds), order)
    })
}

fn check_convergence(
    make_store: &dyn Fn() -> Arc<dyn EntitlementStore>,
    kinds: &[Kind],
    order: &[usize],
) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let events: Vec<Event> = kinds.iter().enumerate().map(|(i, k)| event(i, k)).collect();
    let shuffled: Vec<Event> = order.iter().map(|&i| events[i].clone()).collect();
    let (expected, actual) = runtime.block_on(async {
        let in_order = make_store();
        deliver(in_order.clone(), &events).await;
        let permuted = make_store();
        deliver(permuted.clone(), &shuffled).await;
        (snapshot(&*in_order).await, snapshot(&*permuted).await)
    });
    prop_assert_eq!(expected, actual, "order {:?}", order);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn any_permutation_with_duplicates_converges_in_memory((kinds, order) in scenario()) {
        check_convergence(&|| Arc::new(MemoryStore::new()), &kinds, &order)?;
    }
}

#[test]
fn any_permutation_with_duplicates_converges_in_redis() {
    // One server for all cases, owned by this test (so it is stopped when the
    // test ends); a fresh key prefix gives each store an empty namespace.
    let redis = paygate_testkit::TestRedis::start();
    let url = redis.url();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 40,
        ..ProptestConfig::default()
    });
    let result = runner.run(&scenario(), |(kinds, order)| {
        check_convergence(
            &|| {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Arc::new(RedisStore::new(&url, &format!("p{n}:")).unwrap())
            },
            &kinds,
            &order,
        )
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[tokio::test]
async fn seed_flow_checkout_then_subscription_then_cancel() {
    let store: Arc<dyn EntitlementStore> = Arc::new(MemoryStore::new());
    let applier = Applier::new(store.clone());
    let rules = crate::entitlement::AccessRules::default();
    let now = 5_000;
    let decision = |ent: Option<Entitlement>| {
        format!(
            "{:?}",
            crate::entitlement::decide(ent.as_ref(), &rules, &[], now)
        )
    };

    // Checkout completes: the user gets in at once (provisional active).
    applier
        .apply_event(&event(0, &Kind::Checkout { sub: 0, user: 0 }))
        .await
        .unwrap();
    assert!(decision(store.load("u1").await.unwrap()).starts_with("Allow"));
    // The subscription's own event replaces the provisional record.
    let applied = applier
        .apply_event(&event(
            1,
            &Kind::Sub {
                sub: 0,
                status: 6,
                user: None,
                price: 0,
            },
        ))
        .await
        .unwrap();
    assert_eq!(applied.users, vec!["u1"]);
    assert_eq!(
        decision(store.load("u1").await.unwrap()),
        "SubscriptionRequired { status: \"canceled\" }"
    );
}

#[tokio::test]
async fn subscription_before_link_counts_once_the_link_arrives() {
    let store: Arc<dyn EntitlementStore> = Arc::new(MemoryStore::new());
    let applier = Applier::new(store.clone());
    let applied = applier
        .apply_event(&event(
            0,
            &Kind::Sub {
                sub: 2,
                status: 2,
                user: None,
                price: 0,
            },
        ))
        .await
        .unwrap();
    assert!(applied.users.is_empty(), "nobody to project to yet");
    applier
        .apply_event(&event(
            1,
            &Kind::CustomerLink {
                customer: 1,
                user: 1,
            },
        ))
        .await
        .unwrap();
    let ent = store.load("u2").await.unwrap().unwrap();
    assert_eq!(ent.subscriptions.len(), 1);
    assert_eq!(ent.subscriptions[0].status, SubscriptionStatus::Active);
}

#[tokio::test]
async fn moving_and_deleting_customers() {
    let store: Arc<dyn EntitlementStore> = Arc::new(MemoryStore::new());
    let applier = Applier::new(store.clone());
    // Customer metadata moves a customer that customer metadata linked (a
    // higher source, such as subscription metadata, would hold it).
    for (i, kind) in [
        Kind::Sub {
            sub: 2,
            status: 2,
            user: None,
            price: 0,
        },
        Kind::CustomerLink {
            customer: 1,
            user: 0,
        },
        Kind::CustomerLink {
            customer: 1,
            user: 1,
        },
    ]
    .iter()
    .enumerate()
    {
        applier.apply_event(&event(i, kind)).await.unwrap();
    }
    assert!(
        store
            .load("u1")
            .await
            .unwrap()
            .unwrap()
            .subscriptions
            .is_empty(),
        "moved away from u1"
    );
    assert_eq!(
        store.load("u2").await.unwrap().unwrap().subscriptions.len(),
        1
    );
    applier
        .apply_event(&event(3, &Kind::CustomerDeleted { customer: 1 }))
        .await
        .unwrap();
    let ent = store.load("u2").await.unwrap().unwrap();
    assert_eq!(ent.subscriptions[0].status, SubscriptionStatus::Canceled);
}

/// A checkout's `client_reference_id` outranks the user named in
/// another session's metadata, however much newer that session is.
#[test]
fn client_reference_id_outranks_session_metadata() {
    let checkout = |index: usize, user: &str, by_reference: bool| {
        let mut e = event(index, &Kind::Checkout { sub: 0, user: 0 });
        if let EventKind::CheckoutCompleted {
            user: u,
            by_reference: b,
            ..
        } = &mut e.kind
        {
            *u = Some(user.into());
            *b = by_reference;
        }
        e
    };
    let by_reference = checkout(1, "u_ref", true);
    let by_metadata = checkout(9, "u_meta", false);
    for order in [[&by_reference, &by_metadata], [&by_metadata, &by_reference]] {
        let mut record = CustomerRecord::new(SUBS[0].1);
        for e in order {
            for (_, fact) in facts(e) {
                record.merge(&fact);
            }
        }
        assert_eq!(record.user.as_deref(), Some("u_ref"));
    }
}
