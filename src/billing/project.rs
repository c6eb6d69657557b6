//! Projection of a customer record into a user's entitlement: the user's view
//! is the union of the customers linked to them, plus what only the user has
//! (override, trial history). Pure.

use crate::entitlement::Entitlement;

use crate::billing::record::CustomerRecord;

/// Returns the user's entitlement after taking `record` into account, or `None`
/// when nothing changes (the record's revision was already projected here).
pub(crate) fn project(
    current: Option<&Entitlement>,
    user: &str,
    record: &CustomerRecord,
) -> Option<Entitlement> {
    if current
        .and_then(|e| e.customer_revs.get(&record.id))
        .is_some_and(|held| *held >= record.rev)
    {
        return None;
    }
    let mut ent = current.cloned().unwrap_or_default();
    ent.customer_revs.insert(record.id.clone(), record.rev);
    ent.customers.retain(|c| *c != record.id);
    ent.subscriptions.retain(|s| s.customer != record.id);
    ent.customer_features.remove(&record.id);
    ent.customer_trials.remove(&record.id);
    if record.user.as_deref() == Some(user) {
        ent.customers.push(record.id.clone());
        ent.customers.sort();
        ent.subscriptions.extend(record.visible_subscriptions());
        ent.subscriptions
            .sort_by(|a, b| (&a.customer, &a.id).cmp(&(&b.customer, &b.id)));
        if !record.features.is_empty() {
            ent.customer_features
                .insert(record.id.clone(), record.features.clone());
        }
        if record.has_used_trial {
            ent.customer_trials
                .insert(record.id.clone(), record.first_trial_at.unwrap_or(0));
        }
    }
    // Trial history is kept (never cleared) on the customer record; the user
    // sees that of the customers linked to them. Deriving it (rather than
    // OR-ing into the user) keeps the result independent of delivery order.
    ent.has_used_trial = !ent.customer_trials.is_empty();
    ent.first_trial_at = ent.customer_trials.values().copied().min();
    let mut features: Vec<String> = ent.customer_features.values().flatten().cloned().collect();
    features.sort();
    features.dedup();
    ent.features = features;
    Some(ent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::record::{Fact, LinkSource};

    fn linked(user: &str, rev: u64) -> CustomerRecord {
        let mut rec = CustomerRecord::new("cus_1");
        rec.merge(&Fact::Link {
            user: user.into(),
            created: 1,
            source: LinkSource::CustomerMetadata,
            event_id: "e".into(),
        });
        rec.merge(&Fact::Provisional {
            subscription_id: "sub_1".into(),
            created: 1,
        });
        rec.merge(&Fact::Features {
            keys: vec!["export".into()],
            stamp: crate::billing::record::Stamp {
                created: 1,
                rank: 0,
                event_id: "f".into(),
            },
        });
        rec.rev = rev;
        rec
    }

    #[test]
    fn projects_linked_customer_and_ignores_older_revisions() {
        let ent = project(None, "u1", &linked("u1", 2)).unwrap();
        assert_eq!(ent.customers, vec!["cus_1"]);
        assert_eq!(ent.subscriptions.len(), 1);
        assert_eq!(ent.features, vec!["export"]);
        assert!(project(Some(&ent), "u1", &linked("u1", 1)).is_none());
        assert!(project(Some(&ent), "u1", &linked("u1", 2)).is_none());
    }

    #[test]
    fn moving_a_customer_removes_it_from_the_old_user() {
        let ent = project(None, "u1", &linked("u1", 1)).unwrap();
        let moved = linked("u2", 2);
        let old = project(Some(&ent), "u1", &moved).unwrap();
        assert!(
            old.customers.is_empty() && old.subscriptions.is_empty() && old.features.is_empty()
        );
    }
}
