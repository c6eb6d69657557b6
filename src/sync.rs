//! The sync engine: a read-only backfill from the Stripe API into the store,
//! through the same parser and apply path as webhooks. The command around it
//! (progress, summary, exit code) is `cli/sync.rs`; this module prints nothing.
//!
//! It pages `GET /v1/subscriptions?status=all&limit=100&expand[]=data.customer`,
//! turns every subscription and its customer into the event a webhook would carry
//! (`stripe::api::object_event`), reads each customer's active entitlements, and
//! merges the resulting facts with `Applier::apply_facts`. It must not write to
//! Stripe (the client can only GET), and it must not overwrite newer state with
//! older: every fact is stamped with the time its object was read, so a webhook
//! created before that read (delivered late) loses to it and one created after
//! wins, whichever reaches the store first.
//!
//! Decisions worth knowing:
//! - Only what changes is written. Each customer's facts are first merged into a
//!   copy of its stored record; when the customer's visible state (link,
//!   subscriptions as users see them, features, trial history, deletion) is the
//!   same, nothing is written, so a re-run writes nothing, appends no audit
//!   entries and reports `changes: 0`. The price: an unchanged record keeps its
//!   older stamp instead of the new read time.
//! - Metadata never moves an explicit link. A customer linked by a checkout's
//!   `client_reference_id` / session metadata or by an operator keeps that link
//!   even if its metadata names another user; the disagreement is reported as a
//!   conflict for an operator to resolve. (A webhook's `customer.updated` would
//!   relink by its `created`; a backfill re-asserting old metadata with a fresh
//!   stamp must not.)
//! - `--dry-run` computes exactly the same changes against the stored records
//!   (and its own earlier simulated pages), prints them, and writes and
//!   publishes nothing.
//! - The running gateways learn about the users a page changed right after that
//!   page (`publish_invalidation`), so a sync that stops halfway has still told
//!   them about everything it wrote, and a re-run finishes the job.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::apply::{self, Applier};
use crate::billing::record::{CustomerRecord, Fact, LinkSource};
use crate::entitlement::Subscription;
use crate::store::{EntitlementStore, StoreError};
use crate::stripe::api::{object_event, Page, StripeApi, StripeApiError};

/// What a sync does besides reading.
#[derive(Debug, Clone)]
pub(crate) struct SyncOptions {
    /// Compute and report the changes; write and publish nothing.
    pub dry_run: bool,
    /// `stripe.user_metadata_keys`.
    pub user_metadata_keys: Vec<String>,
}

/// How far a sync got, for the progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub pages: usize,
    pub subscriptions: usize,
    pub customers: usize,
    pub changes: usize,
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("{0}")]
    Stripe(#[from] StripeApiError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A sync that stopped, with what it did before.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: SyncError,
    pub partial: Report,
}

/// One change a sync made (or, in a dry run, would make) to a customer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Link {
        customer: String,
        user: String,
        was: Option<String>,
    },
    Deleted {
        customer: String,
    },
    NewSubscription {
        subscription: String,
        customer: String,
        status: String,
    },
    Status {
        subscription: String,
        status: String,
        was: String,
    },
    Details {
        subscription: String,
        status: String,
    },
    Features {
        customer: String,
        features: Vec<String>,
        was: Vec<String>,
    },
    Trial {
        customer: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Link {
                customer,
                user,
                was: None,
            } => write!(f, "link {customer} -> user {user}"),
            Change::Link {
                customer,
                user,
                was: Some(was),
            } => write!(f, "link {customer} -> user {user} (was user {was})"),
            Change::Deleted { customer } => write!(
                f,
                "mark {customer} deleted (its subscriptions count as canceled)"
            ),
            Change::NewSubscription {
                subscription,
                customer,
                status,
            } => write!(f, "add {subscription} of {customer}: {status}"),
            Change::Status {
                subscription,
                status,
                was,
            } => write!(f, "set {subscription} {status} (was {was})"),
            Change::Details {
                subscription,
                status,
            } => write!(
                f,
                "update {subscription} ({status}: period, trial or prices changed)"
            ),
            Change::Features {
                customer,
                features,
                was,
            } => {
                write!(
                    f,
                    "set features of {customer} to [{}] (was [{}])",
                    features.join(", "),
                    was.join(", ")
                )
            }
            Change::Trial { customer } => write!(f, "record trial use for {customer}"),
        }
    }
}

/// What a sync read and changed; `Display` is the summary printed on stdout.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub dry_run: bool,
    pub pages: usize,
    pub subscriptions_read: usize,
    pub customers_read: usize,
    /// Customers whose active entitlements were read.
    pub features_read: usize,
    /// In the order they were made.
    pub changes: Vec<Change>,
    pub customers_written: usize,
    /// Users whose entitlement was re-projected (and invalidated).
    pub users_changed: BTreeSet<String>,
    /// Users linked to a customer seen in this sync.
    pub users_linked: BTreeSet<String>,
    /// Customers with no user link: each with its subscriptions (`id status`),
    /// empty when not seen in this sync (from the store's list).
    pub unlinked: BTreeMap<String, Vec<String>>,
    /// Explicit links kept although metadata names another user.
    pub conflicts: Vec<String>,
    /// Objects that could not be read as a subscription, and notes.
    pub skipped: Vec<String>,
}

impl Report {
    fn progress(&self) -> Progress {
        Progress {
            pages: self.pages,
            subscriptions: self.subscriptions_read,
            customers: self.customers_read,
            changes: self.changes.len(),
        }
    }

    fn count(&self, pick: impl Fn(&Change) -> bool) -> usize {
        self.changes.iter().filter(|c| pick(c)).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let would = if self.dry_run { "would " } else { "" };
        for change in &self.changes {
            writeln!(f, "{would}{change}")?;
        }
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        }
        writeln!(
            f,
            "read: {} subscriptions of {} customers in {} pages; features of {} customers",
            self.subscriptions_read, self.customers_read, self.pages, self.features_read
        )?;
        let subscriptions = self.count(|c| {
            matches!(
                c,
                Change::NewSubscription { .. } | Change::Status { .. } | Change::Details { .. }
            )
        });
        let verb = if self.dry_run { "to write" } else { "written" };
        writeln!(f, "users linked: {}", self.users_linked.len())?;
        writeln!(
            f,
            "links {verb}: {}",
            self.count(|c| matches!(c, Change::Link { .. }))
        )?;
        writeln!(f, "subscriptions {verb}: {subscriptions}")?;
        writeln!(
            f,
            "features {verb}: {}",
            self.count(|c| matches!(c, Change::Features { .. }))
        )?;
        writeln!(f, "customers {verb}: {}", self.customers_written)?;
        writeln!(f, "users changed: {}", self.users_changed.len())?;
        writeln!(f, "changes: {}", self.changes.len())?;
        writeln!(f, "customers with no user link: {}", self.unlinked.len())?;
        for (customer, subscriptions) in &self.unlinked {
            if subscriptions.is_empty() {
                writeln!(f, "  {customer} (not seen in this sync)")?;
            } else {
                writeln!(f, "  {customer}: {}", subscriptions.join(", "))?;
            }
        }
        if !self.unlinked.is_empty() {
            writeln!(
                f,
                "  (set a user_metadata_keys entry on the customer or subscription in Stripe; the webhook, or the next sync, links it)"
            )?;
        }
        if !self.conflicts.is_empty() {
            writeln!(
                f,
                "link conflicts (kept as they are): {}",
                self.conflicts.len()
            )?;
            for conflict in &self.conflicts {
                writeln!(f, "  {conflict}")?;
            }
        }
        if !self.skipped.is_empty() {
            writeln!(f, "skipped: {}", self.skipped.len())?;
            for skipped in &self.skipped {
                writeln!(f, "  {skipped}")?;
            }
        }
        Ok(())
    }
}

/// Runs one sync: every page, then the unlinked list. `progress` is called after
/// every page.
pub(crate) async fn sync(
    api: &StripeApi,
    store: Arc<dyn EntitlementStore>,
    options: &SyncOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, Failure> {
    let mut syncer = Syncer {
        api,
        applier: Applier::new(store.clone()),
        store,
        options,
        overlay: HashMap::new(),
        seen: BTreeMap::new(),
        claimed: HashMap::new(),
        features_enabled: true,
        report: Report {
            dry_run: options.dry_run,
            ..Report::default()
        },
    };
    match syncer.run(progress).await {
        Ok(()) => Ok(syncer.report),
        Err(error) => Err(Failure {
            error,
            partial: syncer.report,
        }),
    }
}

/// What the sync saw of one customer.
#[derive(Debug, Default)]
struct Seen {
    /// The user linked after this sync (or, dry, after its simulated writes).
    user: Option<String>,
    /// `sub_… status` as users see them.
    subscriptions: Vec<String>,
}

struct Syncer<'a> {
    api: &'a StripeApi,
    store: Arc<dyn EntitlementStore>,
    applier: Applier,
    options: &'a SyncOptions,
    /// Dry run: the records as they would be after the simulated writes, so a
    /// customer met again on a later page is compared with what came before.
    overlay: HashMap<String, CustomerRecord>,
    seen: BTreeMap<String, Seen>,
    /// The user each customer was linked to by metadata read in this sync. A
    /// customer whose subscriptions' metadata name different users would
    /// otherwise flip between them on every run (each page is stamped later
    /// than the one before); the first claim stands and the rest are reported.
    claimed: HashMap<String, String>,
    /// Cleared when the key may not read entitlements (a restricted key): the
    /// rest of the sync goes on without features.
    features_enabled: bool,
    report: Report,
}

impl Syncer<'_> {
    async fn run(&mut self, progress: &mut dyn FnMut(&Progress)) -> Result<(), SyncError> {
        let api = self.api;
        let mut pager = api.list(
            "/v1/subscriptions",
            &[("status", "all"), ("expand[]", "data.customer")],
        );
        while let Some(page) = pager.next_page().await? {
            self.report.pages = page.number;
            self.page(page).await?;
            progress(&self.report.progress());
        }
        let mut unlinked: BTreeMap<String, Vec<String>> = self
            .seen
            .iter()
            .filter(|(_, seen)| seen.user.is_none())
            .map(|(c, seen)| (c.clone(), seen.subscriptions.clone()))
            .collect();
        for customer in self.store.unlinked_customers().await? {
            let linked_now = self
                .seen
                .get(&customer)
                .is_some_and(|seen| seen.user.is_some());
            if !linked_now {
                unlinked.entry(customer).or_default();
            }
        }
        self.report.unlinked = unlinked;
        self.report.users_linked = self
            .seen
            .values()
            .filter_map(|seen| seen.user.clone())
            .collect();
        Ok(())
    }

    /// Reads one page into facts per customer, applies them, and tells the
    /// running gateways which users changed.
    async fn page(&mut self, page: Page) -> Result<(), SyncError> {
        let keys = &self.options.user_metadata_keys;
        let t = page.read_at;
        let mut batch: BTreeMap<String, Vec<Fact>> = BTreeMap::new();
        for object in &page.data {
            self.report.subscriptions_read += 1;
            let Some(sub_id) = object
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
            else {
                self.report
                    .skipped
                    .push(format!("an object without an id on page {}", page.number));
                continue;
            };
            // The customer is expanded (`expand[]=data.customer`); read it
            // separately only if Stripe sent just its id.
            let (customer_id, customer) = match object.get("customer") {
                Some(Value::Object(customer)) => {
                    let id = customer
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    (id, Some((Value::Object(customer.clone()), t)))
                }
                Some(Value::String(id)) if !self.seen.contains_key(id) => {
                    let read = self.api.get_customer(id).await?;
                    (
                        id.clone(),
                        read.value.map(|customer| (customer, read.read_at)),
                    )
                }
                Some(Value::String(id)) => (id.clone(), None),
                _ => (String::new(), None),
            };
            if customer_id.is_empty() {
                self.report.skipped.push(format!("{sub_id}: no customer"));
                continue;
            }
            if !self.seen.contains_key(&customer_id) {
                self.seen.insert(customer_id.clone(), Seen::default());
                self.report.customers_read += 1;
                let mut deleted = false;
                if let Some((customer, read_at)) = &customer {
                    deleted = customer
                        .get("deleted")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let event_type = if deleted {
                        "customer.deleted"
                    } else {
                        "customer.updated"
                    };
                    match object_event(
                        event_type,
                        &format!("sync_{customer_id}_{read_at}"),
                        *read_at,
                        customer,
                        keys,
                    ) {
                        Ok(event) => push_facts(&mut batch, apply::facts(&event)),
                        Err(e) => self.report.skipped.push(format!("{customer_id}: {e}")),
                    }
                }
                if !deleted && self.features_enabled {
                    self.features(&customer_id, &mut batch).await?;
                }
            }
            match object_event(
                "customer.subscription.updated",
                &format!("sync_{sub_id}_{t}"),
                t,
                object,
                keys,
            ) {
                Ok(event) => push_facts(&mut batch, apply::facts(&event)),
                Err(e) => self.report.skipped.push(format!("{sub_id}: {e}")),
            }
        }

        let mut changed_users: Vec<String> = Vec::new();
        for (customer, facts) in batch {
            self.customer(&customer, facts, &mut changed_users).await?;
        }
        if !self.options.dry_run && !changed_users.is_empty() {
            self.store.publish_invalidation(&changed_users).await?;
        }
        Ok(())
    }

    /// The customer's full list of active entitlements, as the facts of the
    /// summary event a webhook would carry.
    async fn features(
        &mut self,
        customer: &str,
        batch: &mut BTreeMap<String, Vec<Fact>>,
    ) -> Result<(), SyncError> {
        let read = match self.api.active_entitlement_keys(customer).await {
            Ok(read) => read,
            // Deleted meanwhile: nothing to read.
            Err(e) if e.status() == Some(404) => return Ok(()),
            Err(e) if e.status().is_some() => {
                self.features_enabled = false;
                let note = format!("features (Stripe Entitlements) not synced: {e}");
                tracing::warn!("{note}");
                self.report.skipped.push(note);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.report.features_read += 1;
        let entries: Vec<Value> = read
            .value
            .iter()
            .map(|key| json!({ "object": "entitlements.active_entitlement", "lookup_key": key }))
            .collect();
        let summary = json!({
            "object": "entitlements.active_entitlement_summary",
            "customer": customer,
            "entitlements": { "object": "list", "data": entries, "has_more": false },
        });
        let id = format!("sync_features_{customer}_{}", read.read_at);
        match object_event(
            "entitlements.active_entitlement_summary.updated",
            &id,
            read.read_at,
            &summary,
            &self.options.user_metadata_keys,
        ) {
            Ok(event) => push_facts(batch, apply::facts(&event)),
            Err(e) => self
                .report
                .skipped
                .push(format!("features of {customer}: {e}")),
        }
        Ok(())
    }

    /// Compares the customer's state with and without the facts; writes them
    /// (or, dry, remembers the result) only when something visible changes.
    async fn customer(
        &mut self,
        id: &str,
        facts: Vec<Fact>,
        changed_users: &mut Vec<String>,
    ) -> Result<(), SyncError> {
        let stored = match self.overlay.get(id) {
            Some(record) => Some(record.clone()),
            None => self.store.load_customer(id).await?,
        };
        let before = stored.unwrap_or_else(|| CustomerRecord::new(id));
        let facts = keep_explicit_links(&before, facts, &mut self.report.conflicts);
        let facts = keep_first_claim(id, self.claimed.get(id), facts, &mut self.report.conflicts);
        let mut after = before.clone();
        for fact in &facts {
            after.merge(fact);
        }
        if let (Some(user), true) = (
            &after.user,
            facts.iter().any(|f| matches!(f, Fact::Link { .. })),
        ) {
            self.claimed
                .entry(id.to_string())
                .or_insert_with(|| user.clone());
        }
        let seen = self.seen.entry(id.to_string()).or_default();
        seen.user = after.user.clone();
        seen.subscriptions = after
            .visible_subscriptions()
            .iter()
            .map(|s| format!("{} {}", s.id, s.status.as_str()))
            .collect();

        let changes = diff(&before, &after);
        if changes.is_empty() {
            return Ok(());
        }
        self.report.customers_written += 1;
        self.report.changes.extend(changes);
        let users: Vec<String> = if self.options.dry_run {
            let users = after
                .user
                .iter()
                .chain(after.previous_users.iter())
                .cloned()
                .collect();
            self.overlay.insert(id.to_string(), after);
            users
        } else {
            let facts = facts
                .into_iter()
                .map(|fact| (id.to_string(), fact))
                .collect();
            self.applier.apply_facts(facts, "sync").await?.users
        };
        for user in users {
            if !changed_users.contains(&user) {
                changed_users.push(user.clone());
            }
            self.report.users_changed.insert(user);
        }
        Ok(())
    }
}

fn push_facts(batch: &mut BTreeMap<String, Vec<Fact>>, facts: Vec<(String, Fact)>) {
    for (customer, fact) in facts {
        batch.entry(customer).or_default().push(fact);
    }
}

/// Drops metadata links when the customer's current link is explicit (a
/// checkout's client_reference_id or session metadata, or an operator), noting
/// any disagreement. Metadata-based links are kept: current metadata is the
/// truth about metadata.
fn keep_explicit_links(
    current: &CustomerRecord,
    facts: Vec<Fact>,
    conflicts: &mut Vec<String>,
) -> Vec<Fact> {
    let explicit = match &current.link_stamp {
        Some((_, source, _)) => matches!(
            source,
            LinkSource::ClientReferenceId | LinkSource::CheckoutMetadata | LinkSource::Admin
        ),
        None => false,
    };
    if !explicit {
        return facts;
    }
    let linked = current.user.clone().unwrap_or_default();
    facts
        .into_iter()
        .filter(|fact| match fact {
            Fact::Link { user, .. } => {
                if *user != linked {
                    let note = format!("{}: linked to user {linked} (checkout or operator); its metadata says user {user}", current.id);
                    if !conflicts.contains(&note) {
                        conflicts.push(note);
                    }
                }
                false
            }
            _ => true,
        })
        .collect()
}

/// Drops metadata links naming another user than the one this sync already
/// linked the customer to (on an earlier page), noting the disagreement.
fn keep_first_claim(
    customer: &str,
    claimed: Option<&String>,
    facts: Vec<Fact>,
    conflicts: &mut Vec<String>,
) -> Vec<Fact> {
    let Some(claimed) = claimed else { return facts };
    facts
        .into_iter()
        .filter(|fact| match fact {
            Fact::Link { user, .. } if user != claimed => {
                let note = format!("{customer}: linked to user {claimed}; metadata on another of its subscriptions says user {user}");
                if !conflicts.contains(&note) {
                    conflicts.push(note);
                }
                false
            }
            _ => true,
        })
        .collect()
}

/// The changes from `before` to `after` that a user could notice.
fn diff(before: &CustomerRecord, after: &CustomerRecord) -> Vec<Change> {
    let customer = after.id.clone();
    let mut changes = Vec::new();
    if after.user != before.user {
        if let Some(user) = &after.user {
            changes.push(Change::Link {
                customer: customer.clone(),
                user: user.clone(),
                was: before.user.clone(),
            });
        }
    }
    if after.deleted_at.is_some() && before.deleted_at.is_none() {
        changes.push(Change::Deleted {
            customer: customer.clone(),
        });
    }
    let old: HashMap<String, Subscription> = before
        .visible_subscriptions()
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    for sub in after.visible_subscriptions() {
        let status = sub.status.as_str().to_string();
        match old.get(&sub.id) {
            None => changes.push(Change::NewSubscription {
                subscription: sub.id.clone(),
                customer: customer.clone(),
                status,
            }),
            Some(was) if was.status != sub.status => changes.push(Change::Status {
                subscription: sub.id.clone(),
                status,
                was: was.status.as_str().to_string(),
            }),
            Some(was) if *was != sub => changes.push(Change::Details {
                subscription: sub.id.clone(),
                status,
            }),
            Some(_) => {}
        }
    }
    if after.features != before.features {
        changes.push(Change::Features {
            customer: customer.clone(),
            features: after.features.clone(),
            was: before.features.clone(),
        });
    }
    if (after.has_used_trial, after.first_trial_at)
        != (before.has_used_trial, before.first_trial_at)
    {
        changes.push(Change::Trial { customer });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::record::Stamp;
    use crate::entitlement::SubscriptionStatus;

    fn snapshot(id: &str, status: SubscriptionStatus) -> Subscription {
        Subscription {
            id: id.into(),
            customer: "cus_1".into(),
            status,
            created: 1,
            current_period_end: Some(100),
            trial_start: None,
            trial_end: None,
            cancel_at_period_end: false,
            price_ids: vec![],
            product_ids: vec![],
            past_due_since: None,
        }
    }

    fn sub_fact(id: &str, status: SubscriptionStatus, created: i64) -> Fact {
        let rank = crate::billing::record::lifecycle_rank(&status);
        Fact::Subscription {
            snapshot: snapshot(id, status),
            stamp: Stamp {
                created,
                rank,
                event_id: format!("e{created}"),
            },
        }
    }

    fn link(user: &str, created: i64, source: LinkSource) -> Fact {
        Fact::Link {
            user: user.into(),
            created,
            source,
            event_id: format!("l{created}"),
        }
    }

    fn merged(facts: &[Fact]) -> CustomerRecord {
        let mut record = CustomerRecord::new("cus_1");
        for fact in facts {
            record.merge(fact);
        }
        record
    }

    #[test]
    fn diff_names_every_visible_change_and_nothing_else() {
        let before = merged(&[
            link("u1", 1, LinkSource::CustomerMetadata),
            sub_fact("sub_1", SubscriptionStatus::PastDue, 10),
        ]);
        // The same state read later: a new stamp, nothing visible.
        let mut again = before.clone();
        again.merge(&sub_fact("sub_1", SubscriptionStatus::PastDue, 20));
        assert_ne!(again, before);
        assert_eq!(diff(&before, &again), vec![]);

        let mut after = before.clone();
        after.merge(&link("u2", 30, LinkSource::CustomerMetadata));
        after.merge(&sub_fact("sub_1", SubscriptionStatus::Active, 30));
        after.merge(&sub_fact("sub_2", SubscriptionStatus::Trialing, 30));
        after.merge(&Fact::Features {
            keys: vec!["export".into()],
            stamp: Stamp {
                created: 30,
                rank: 0,
                event_id: "f".into(),
            },
        });
        let lines: Vec<String> = diff(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "link cus_1 -> user u2 (was user u1)",
                "set sub_1 active (was past_due)",
                "add sub_2 of cus_1: trialing",
                "set features of cus_1 to [export] (was [])",
                "record trial use for cus_1",
            ]
        );

        let mut deleted = after.clone();
        deleted.merge(&Fact::Deleted { created: 40 });
        let lines: Vec<String> = diff(&after, &deleted)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines[0],
            "mark cus_1 deleted (its subscriptions count as canceled)"
        );
        assert!(
            lines.contains(&"set sub_1 canceled (was active)".to_string()),
            "{lines:?}"
        );
    }

    #[test]
    fn metadata_never_moves_an_explicit_link() {
        let checkout = merged(&[link("u1", 1, LinkSource::ClientReferenceId)]);
        let facts = vec![
            link("u2", 50, LinkSource::CustomerMetadata),
            sub_fact("sub_1", SubscriptionStatus::Active, 50),
        ];
        let mut conflicts = Vec::new();
        let kept = keep_explicit_links(&checkout, facts.clone(), &mut conflicts);
        assert_eq!(kept.len(), 1);
        assert!(matches!(kept[0], Fact::Subscription { .. }));
        assert_eq!(conflicts.len(), 1);
        assert!(
            conflicts[0].contains("u1") && conflicts[0].contains("u2"),
            "{conflicts:?}"
        );

        // Agreeing metadata is dropped too (the explicit source is kept), silently.
        let mut conflicts = Vec::new();
        let kept = keep_explicit_links(
            &checkout,
            vec![link("u1", 50, LinkSource::SubscriptionMetadata)],
            &mut conflicts,
        );
        assert!(kept.is_empty() && conflicts.is_empty());

        // A metadata link is replaced by newer metadata.
        let metadata = merged(&[link("u1", 1, LinkSource::CustomerMetadata)]);
        let mut conflicts = Vec::new();
        assert_eq!(
            keep_explicit_links(&metadata, facts.clone(), &mut conflicts),
            facts
        );
        assert!(conflicts.is_empty());
    }

    #[test]
    fn a_later_page_cannot_move_a_link_this_sync_made() {
        let claimed = "u1".to_string();
        let facts = vec![
            link("u2", 60, LinkSource::SubscriptionMetadata),
            link("u1", 60, LinkSource::CustomerMetadata),
        ];
        let mut conflicts = Vec::new();
        let kept = keep_first_claim("cus_1", Some(&claimed), facts.clone(), &mut conflicts);
        assert_eq!(kept, vec![link("u1", 60, LinkSource::CustomerMetadata)]);
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(
            keep_first_claim("cus_1", None, facts.clone(), &mut Vec::new()),
            facts
        );
    }

    #[test]
    fn summary_counts_and_lists() {
        let report = Report {
            dry_run: true,
            pages: 2,
            subscriptions_read: 3,
            customers_read: 2,
            changes: vec![
                Change::Link {
                    customer: "cus_1".into(),
                    user: "42".into(),
                    was: None,
                },
                Change::Status {
                    subscription: "sub_1".into(),
                    status: "active".into(),
                    was: "past_due".into(),
                },
            ],
            unlinked: BTreeMap::from([
                ("cus_2".to_string(), vec!["sub_2 active".to_string()]),
                ("cus_3".to_string(), vec![]),
            ]),
            ..Report::default()
        };
        let text = report.to_string();
        assert!(text.contains("would link cus_1 -> user 42\n"), "{text}");
        assert!(
            text.contains("would set sub_1 active (was past_due)\n"),
            "{text}"
        );
        assert!(text.contains("dry run: nothing was written\n"), "{text}");
        assert!(
            text.contains("links to write: 1\n") && text.contains("subscriptions to write: 1\n"),
            "{text}"
        );
        assert!(text.contains("changes: 2\n"), "{text}");
        assert!(text.contains("customers with no user link: 2\n  cus_2: sub_2 active\n  cus_3 (not seen in this sync)\n"), "{text}");
    }
}
