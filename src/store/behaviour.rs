//! The behavioural suite every [`EntitlementStore`] must pass (memory and Redis).

use super::EntitlementStore;
use crate::billing::record::{CustomerRecord, Fact};
use crate::entitlement::{Entitlement, Override};

pub(crate) async fn run_all(store: &dyn EntitlementStore) {
    unknown_user_is_none(store).await;
    update_creates_reads_and_deletes(store).await;
    concurrent_updates_are_not_lost(store).await;
    customer_records_round_trip(store).await;
    events_are_remembered(store).await;
    deliveries_and_audit_are_capped_newest_first(store).await;
    refusals_are_capped_apart_from_deliveries(store).await;
    unlinked_customers_are_listed(store).await;
    unlinked_pages_walk_every_customer_once_removals_or_not(store).await;
    audited_updates_write_the_record_and_its_entry(store).await;
    completing_an_event_marks_and_records_it(store).await;
    store.ping().await.unwrap();
    store
        .publish_invalidation(&["u1".to_string()])
        .await
        .unwrap();
}

async fn unknown_user_is_none(store: &dyn EntitlementStore) {
    assert_eq!(store.load("nobody").await.unwrap(), None);
    assert_eq!(store.load_customer("cus_nobody").await.unwrap(), None);
}

async fn update_creates_reads_and_deletes(store: &dyn EntitlementStore) {
    let ent = Entitlement {
        customers: vec!["cus_1".into()],
        grant_override: Some(Override {
            until: 2_000_000_000,
            reason: "comp".into(),
            features: vec![],
        }),
        ..Default::default()
    };
    let written = store.update("u1", &|_| Some(ent.clone())).await.unwrap();
    assert_eq!(written.as_ref(), Some(&ent));
    assert_eq!(store.load("u1").await.unwrap(), Some(ent.clone()));
    // Writing the same value again is a no-op that still reports the value.
    assert_eq!(store.update("u1", &|cur| cur).await.unwrap(), Some(ent));
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
    let futures: Vec<_> = (0..20)
        .map(|n| {
            let f = add(n);
            async move { store.update("u2", &f).await.unwrap() }
        })
        .collect();
    futures_util::future::join_all(futures).await;
    let ent = store.load("u2").await.unwrap().unwrap();
    assert_eq!(
        ent.customers.len(),
        20,
        "every concurrent update must survive"
    );
}

async fn customer_records_round_trip(store: &dyn EntitlementStore) {
    let merge = |cur: Option<CustomerRecord>| {
        let mut rec = cur.unwrap_or_else(|| CustomerRecord::new("cus_rt"));
        rec.merge(&Fact::Provisional {
            subscription_id: "sub_1".into(),
            created: 10,
        });
        rec.rev += 1;
        Some(rec)
    };
    let written = store
        .update_customer("cus_rt", &merge)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.load_customer("cus_rt").await.unwrap(), Some(written));
}

async fn events_are_remembered(store: &dyn EntitlementStore) {
    assert!(!store.event_seen("evt_behaviour").await.unwrap());
    store.mark_event("evt_behaviour").await.unwrap();
    assert!(store.event_seen("evt_behaviour").await.unwrap());
}

async fn deliveries_and_audit_are_capped_newest_first(store: &dyn EntitlementStore) {
    use super::{AuditEntry, Delivery, AUDIT_KEPT};
    for i in 0..3 {
        let d = Delivery {
            event_id: format!("evt_{i}"),
            event_type: "t".into(),
            result: "applied".into(),
            at: i,
        };
        store.record_delivery(&d).await.unwrap();
    }
    let recent = store.recent_deliveries(2).await.unwrap();
    assert_eq!(
        recent
            .iter()
            .map(|d| d.event_id.as_str())
            .collect::<Vec<_>>(),
        vec!["evt_2", "evt_1"]
    );
    for i in 0..(AUDIT_KEPT + 5) {
        let e = AuditEntry {
            at: i as i64,
            source: "admin".into(),
            summary: format!("change {i}"),
        };
        store.append_audit("u_audit", &e).await.unwrap();
    }
    let trail = store.audit("u_audit", 1000).await.unwrap();
    assert_eq!(trail.len(), AUDIT_KEPT);
    assert_eq!(trail[0].summary, format!("change {}", AUDIT_KEPT + 4));
    assert!(store.audit("nobody", 10).await.unwrap().is_empty());
}

async fn refusals_are_capped_apart_from_deliveries(store: &dyn EntitlementStore) {
    use super::{RefusedDelivery, REFUSALS_KEPT};
    let before = store.recent_deliveries(1000).await.unwrap();
    for i in 0..(REFUSALS_KEPT + 5) {
        let r = RefusedDelivery {
            reason: format!("reason_{i}"),
            event_id: None,
            event_type: None,
            at: i as i64,
        };
        store.record_refusal(&r).await.unwrap();
    }
    let verified = RefusedDelivery {
        reason: "bad_payload".into(),
        event_id: Some("evt_bad".into()),
        event_type: Some("customer.updated".into()),
        at: 999,
    };
    store.record_refusal(&verified).await.unwrap();
    let refused = store.recent_refusals(1000).await.unwrap();
    assert_eq!(refused.len(), REFUSALS_KEPT);
    assert_eq!(refused[0], verified, "newest first");
    assert_eq!(refused[1].reason, format!("reason_{}", REFUSALS_KEPT + 4));
    assert_eq!(store.recent_refusals(2).await.unwrap().len(), 2);
    assert_eq!(
        store.recent_deliveries(1000).await.unwrap(),
        before,
        "refusals never push out deliveries"
    );
}

async fn unlinked_customers_are_listed(store: &dyn EntitlementStore) {
    store.set_unlinked("cus_b", true).await.unwrap();
    store.set_unlinked("cus_a", true).await.unwrap();
    store.set_unlinked("cus_c", true).await.unwrap();
    store.set_unlinked("cus_c", false).await.unwrap();
    assert_eq!(
        store.unlinked_customers().await.unwrap(),
        vec!["cus_a", "cus_b"]
    );
}

async fn completing_an_event_marks_and_records_it(store: &dyn EntitlementStore) {
    let d = super::Delivery {
        event_id: "evt_done".into(),
        event_type: "t".into(),
        result: "applied".into(),
        at: 9,
    };
    store
        .complete_event("evt_done", &["u1".to_string()], &d)
        .await
        .unwrap();
    assert!(store.event_seen("evt_done").await.unwrap());
    assert_eq!(store.recent_deliveries(1).await.unwrap(), vec![d]);
}

async fn unlinked_pages_walk_every_customer_once_removals_or_not(store: &dyn EntitlementStore) {
    let ids: Vec<String> = (0..300).map(|i| format!("cus_page_{i:03}")).collect();
    for id in &ids {
        store.set_unlinked(id, true).await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let page = store.unlinked_page(cursor, 20).await.unwrap();
        pages += 1;
        let mut sorted = page.customers.clone();
        sorted.sort();
        assert_eq!(page.customers, sorted, "each page is sorted");
        seen.extend(page.customers);
        if pages == 3 {
            // Removed mid-walk: the ones that stay must still all be returned.
            for id in ids.iter().step_by(7) {
                store.set_unlinked(id, false).await.unwrap();
            }
        }
        if page.next_cursor == 0 {
            break;
        }
        cursor = page.next_cursor;
        assert!(pages < 1000, "the walk ends");
    }
    assert!(pages > 1, "300 ids at 20 a page take more than one page");
    for (i, id) in ids.iter().enumerate() {
        if i % 7 != 0 {
            assert!(seen.contains(id), "{id} stayed unlinked and was not listed");
        }
        store.set_unlinked(id, false).await.unwrap();
    }
}

async fn audited_updates_write_the_record_and_its_entry(store: &dyn EntitlementStore) {
    use super::AuditEntry;
    let ent = Entitlement {
        customers: vec!["cus_aud".into()],
        ..Default::default()
    };
    let entry = |written: Option<&Entitlement>| {
        Some(AuditEntry {
            at: 7,
            source: "test".into(),
            summary: format!("{:?}", written.map(|e| e.customers.clone())),
        })
    };
    let written = store
        .update_audited("u_aud", &|_| Some(ent.clone()), &entry)
        .await
        .unwrap();
    assert_eq!(written.as_ref(), Some(&ent));
    assert_eq!(store.load("u_aud").await.unwrap(), Some(ent.clone()));
    let trail = store.audit("u_aud", 10).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].summary, r#"Some(["cus_aud"])"#);
    // Not audited: the record is written, the trail unchanged.
    let more = Entitlement {
        customers: vec!["cus_aud".into(), "cus_aud2".into()],
        ..Default::default()
    };
    store
        .update_audited("u_aud", &|_| Some(more.clone()), &|_| None)
        .await
        .unwrap();
    assert_eq!(store.load("u_aud").await.unwrap(), Some(more));
    assert_eq!(store.audit("u_aud", 10).await.unwrap().len(), 1);
}
