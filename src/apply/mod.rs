//! Applying what Stripe says to the store: an event becomes [`Fact`]s about
//! customers, each customer record is merged atomically, and the result is
//! projected into the users linked to it (and out of users it left).
//!
//! Webhooks (and later `sync` and the admin API) all write through here, so one
//! set of ordering rules holds whoever writes. Order of the two steps matters:
//! the customer record is the source of truth, the user record a projection
//! that can always be recomputed by re-applying (Stripe redelivers anything not
//! acknowledged, so a crash between the steps heals itself).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::entitlement::{Entitlement, UnixTime};
use crate::store::{AuditEntry, EntitlementStore, StoreError};
use crate::stripe::event::{Event, EventKind};

use crate::billing::project;
use crate::billing::record::{lifecycle_rank, CustomerRecord, Fact, LinkSource, Stamp};

/// The facts an event states, grouped by customer. Pure.
pub(crate) fn facts(event: &Event) -> Vec<(String, Fact)> {
    let created = event.created;
    let id = &event.id;
    let mut out = Vec::new();
    match &event.kind {
        EventKind::CheckoutCompleted {
            customer: Some(customer),
            subscription,
            user,
            by_reference,
            mode,
            payment_status,
            ..
        } => {
            if let Some(user) = user {
                out.push((
                    customer.clone(),
                    Fact::Link {
                        user: user.clone(),
                        created,
                        source: if *by_reference {
                            LinkSource::ClientReferenceId
                        } else {
                            LinkSource::CheckoutMetadata
                        },
                        event_id: id.clone(),
                    },
                ));
            }
            // A paid checkout lets the user in at once, before
            // the subscription event arrives.
            let paid = matches!(payment_status.as_str(), "paid" | "no_payment_required");
            if let (Some(subscription), true, true) = (subscription, mode == "subscription", paid) {
                out.push((
                    customer.clone(),
                    Fact::Provisional {
                        subscription_id: subscription.clone(),
                        created,
                    },
                ));
            }
        }
        EventKind::CheckoutCompleted { customer: None, .. } => {}
        EventKind::CheckoutPaymentFailed {
            customer: Some(customer),
            subscription: Some(subscription),
        } => out.push((
            customer.clone(),
            Fact::PaymentFailed {
                subscription_id: subscription.clone(),
            },
        )),
        EventKind::CheckoutPaymentFailed { .. } => {}
        EventKind::Customer {
            customer,
            user,
            deleted,
        } => {
            if let Some(user) = user {
                out.push((
                    customer.clone(),
                    Fact::Link {
                        user: user.clone(),
                        created,
                        source: LinkSource::CustomerMetadata,
                        event_id: id.clone(),
                    },
                ));
            }
            if *deleted {
                out.push((customer.clone(), Fact::Deleted { created }));
            }
        }
        EventKind::Subscription { subscription, user } => {
            let customer = subscription.customer.clone();
            if let Some(user) = user {
                out.push((
                    customer.clone(),
                    Fact::Link {
                        user: user.clone(),
                        created,
                        source: LinkSource::SubscriptionMetadata,
                        event_id: id.clone(),
                    },
                ));
            }
            let stamp = Stamp {
                created,
                rank: lifecycle_rank(&subscription.status),
                event_id: id.clone(),
            };
            out.push((
                customer,
                Fact::Subscription {
                    snapshot: subscription.clone(),
                    stamp,
                },
            ));
        }
        EventKind::EntitlementSummary {
            customer,
            lookup_keys,
            ..
        } => {
            let stamp = Stamp {
                created,
                rank: 0,
                event_id: id.clone(),
            };
            out.push((
                customer.clone(),
                Fact::Features {
                    keys: lookup_keys.clone(),
                    stamp,
                },
            ));
        }
        // Invoices carry no access change by themselves.
        EventKind::Invoice { .. } | EventKind::Ignored => {}
    }
    out.retain(|(customer, _)| !customer.is_empty());
    out
}

/// What applying changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Users whose entitlement may have changed (caches must drop them).
    pub users: Vec<String>,
}

/// What [`Applier::link_customer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Linked {
    /// The user the customer was linked to before (`None`: nobody).
    pub previous: Option<String>,
    /// Whether the customer is now linked to the user asked for (false only
    /// when a newer operator link already held it).
    pub linked: bool,
    /// Users re-projected (caches must drop them).
    pub users: Vec<String>,
}

/// Writes facts through a store.
#[derive(Clone)]
pub(crate) struct Applier {
    store: Arc<dyn EntitlementStore>,
}

impl Applier {
    pub(crate) fn new(store: Arc<dyn EntitlementStore>) -> Self {
        Applier { store }
    }

    pub(crate) fn store(&self) -> &Arc<dyn EntitlementStore> {
        &self.store
    }

    /// Applies one event. Idempotent: applying it again changes nothing.
    pub(crate) async fn apply_event(&self, event: &Event) -> Result<Applied, StoreError> {
        let source = format!("event {} ({})", event.id, event.event_type);
        self.apply_facts(facts(event), &source).await
    }

    /// Merges facts into their customer records, then re-projects every user
    /// those customers touch. Safe to call again after a partial failure.
    /// `source` names the writer in users' audit trails.
    pub(crate) async fn apply_facts(
        &self,
        facts: Vec<(String, Fact)>,
        source: &str,
    ) -> Result<Applied, StoreError> {
        let mut by_customer: BTreeMap<String, Vec<Fact>> = BTreeMap::new();
        for (customer, fact) in facts {
            by_customer.entry(customer).or_default().push(fact);
        }
        let mut users = Vec::new();
        for (customer, facts) in by_customer {
            let merge = |current: Option<CustomerRecord>| {
                let mut record = current.unwrap_or_else(|| CustomerRecord::new(&customer));
                let mut changed = false;
                for fact in &facts {
                    changed |= record.merge(fact);
                }
                if changed {
                    record.rev += 1;
                }
                Some(record)
            };
            let Some(record) = self.store.update_customer(&customer, &merge).await? else {
                continue;
            };
            // Keep the operator's list of customers nobody is linked to current.
            // Only touched when it can have changed, to spare a round trip per event.
            if record.user.is_none() {
                self.store.set_unlinked(&customer, true).await?;
            } else if facts.iter().any(|f| matches!(f, Fact::Link { .. })) {
                self.store.set_unlinked(&customer, false).await?;
            }
            self.project_record(&record, source, &mut users).await?;
        }
        Ok(Applied { users })
    }

    /// An operator link: links `customer` to `user` with the highest
    /// precedence, stamped `now` with the caller's unique `event_id` (a later
    /// operator link outranks an earlier one), then re-projects the new user
    /// and every user the customer was linked to before, exactly as an event
    /// does. `source` names the change in those users' audit trails.
    /// Returns `Ok(None)` when no record exists for `customer` (nothing is
    /// written: a mistyped id must not create one).
    pub(crate) async fn link_customer(
        &self,
        customer: &str,
        user: &str,
        now: UnixTime,
        event_id: &str,
        source: &(dyn Fn(Option<&str>) -> String + Sync),
    ) -> Result<Option<Linked>, StoreError> {
        let fact = Fact::Link {
            user: user.to_string(),
            created: now,
            source: LinkSource::Admin,
            event_id: event_id.to_string(),
        };
        // The store may run the closure more than once; the last run saw the
        // record that was replaced.
        let previous: Mutex<Option<String>> = Mutex::new(None);
        let merge = |current: Option<CustomerRecord>| {
            let mut record = current?;
            *previous.lock().unwrap_or_else(|p| p.into_inner()) = record.user.clone();
            if record.merge(&fact) {
                record.rev += 1;
            }
            Some(record)
        };
        let Some(record) = self.store.update_customer(customer, &merge).await? else {
            return Ok(None);
        };
        let previous = previous.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.store.set_unlinked(customer, false).await?;
        let mut users = Vec::new();
        self.project_record(&record, &source(previous.as_deref()), &mut users)
            .await?;
        Ok(Some(Linked {
            previous,
            linked: record.user.as_deref() == Some(user),
            users,
        }))
    }

    /// Projects one customer record into the user it is linked to and every
    /// user it was linked to before, auditing each user whose record changed,
    /// and adds them to `users` (the ones caches must drop).
    async fn project_record(
        &self,
        record: &CustomerRecord,
        source: &str,
        users: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        for user in record.user.iter().chain(record.previous_users.iter()) {
            // The store may run the closure more than once; the last run's
            // verdict is the one that was written.
            let changed = Mutex::new(false);
            let project = |current: Option<Entitlement>| {
                let next = project::project(current.as_ref(), user, record);
                *changed.lock().unwrap_or_else(|p| p.into_inner()) = next.is_some();
                next.or(current)
            };
            // The audit entry goes with the write (one round trip, atomic on
            // Redis); it is built from the value written, only if it changed.
            let at = crate::clock::unix_now();
            let audit = |written: Option<&Entitlement>| {
                let changed = *changed.lock().unwrap_or_else(|p| p.into_inner());
                changed.then(|| AuditEntry {
                    at,
                    source: source.to_string(),
                    summary: summarize(written),
                })
            };
            self.store.update_audited(user, &project, &audit).await?;
            if !users.contains(user) {
                users.push(user.clone());
            }
        }
        Ok(())
    }
}

/// One line describing an entitlement, for audit trails.
pub(crate) fn summarize(ent: Option<&Entitlement>) -> String {
    let Some(ent) = ent else {
        return "no record".into();
    };
    let subs: Vec<String> = ent
        .subscriptions
        .iter()
        .map(|s| format!("{}={}", s.id, s.status.as_str()))
        .collect();
    let mut parts = vec![
        format!("customers [{}]", ent.customers.join(", ")),
        format!("subscriptions [{}]", subs.join(", ")),
    ];
    if !ent.features.is_empty() {
        parts.push(format!("features [{}]", ent.features.join(", ")));
    }
    if let Some(o) = &ent.grant_override {
        parts.push(format!("override until {} ({})", o.until, o.reason));
    }
    parts.join("; ")
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
