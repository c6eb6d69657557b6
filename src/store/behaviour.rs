//! The behavioural suite every [`EntitlementStore`] must pass (memory now, Redis next).

use super::EntitlementStore;
use crate::entitlement::{Entitlement, Override};

pub(crate) async fn run_all(store: &dyn EntitlementStore) {
    unknown_user_is_none(store).await;
    update_creates_reads_and_deletes(store).await;
    concurrent_updates_are_not_lost(store).await;
    store.ping().await.unwrap();
}

async fn unknown_user_is_none(store: &dyn EntitlementStore) {
    assert_eq!(store.load("nobody").await.unwrap(), None);
}

async fn update_creates_reads_and_deletes(store: &dyn EntitlementStore) {
    let ent = Entitlement {
        customers: vec!["cus_1".into()],
        grant_override: Some(Override { until: 2_000_000_000, reason: "comp".into(), features: vec![] }),
        ..Default::default()
    };
    let written = store.update("u1", &|_| Some(ent.clone())).await.unwrap();
    assert_eq!(written.as_ref(), Some(&ent));
    assert_eq!(store.load("u1").await.unwrap(), Some(ent));
    store.update("u1", &|_| None).await.unwrap();
    assert_eq!(store.load("u1").await.unwrap(), None);
}

async fn concurrent_updates_are_not_lost(store: &dyn EntitlementStore) {
    let add = |n: usize| {
        move |cur: Option<Entitlement>| {
            let mut e = cur.unwrap_or_default();
            e.customers.push(format!("cus_{n}"));
            Some(e)
        }
    };
    let futures: Vec<_> = (0..20).map(|n| {
        let f = add(n);
        async move { store.update("u2", &f).await.unwrap() }
    }).collect();
    futures_util::future::join_all(futures).await;
    let ent = store.load("u2").await.unwrap().unwrap();
    assert_eq!(ent.customers.len(), 20);
}
