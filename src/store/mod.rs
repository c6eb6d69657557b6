//! Where entitlements live: the [`EntitlementStore`] trait, its memory and Redis
//! implementations, and the local cache that keeps store I/O off the request path.
//!
//! The trait is deliberately small so both stores pass one behavioural test
//! suite (`behaviour.rs`): one round trip per user lookup (`load`), and atomic
//! read-modify-write of one record (`update`, `update_customer`) so two gateways
//! applying events concurrently cannot lose one.

pub(crate) mod cache;
pub(crate) mod memory;
pub(crate) mod redis;

use std::sync::Arc;

use async_trait::async_trait;

use serde::{Deserialize, Serialize};

use crate::billing::record::CustomerRecord;
use crate::config::StoreConfig;
use crate::entitlement::{Entitlement, UnixTime};

pub(crate) use self::redis::RedisStore;
pub use cache::EntitlementCache;
pub use memory::MemoryStore;

/// Opens the store the config names: Redis when `store.redis_url` is set, else
/// the embedded memory store (seeded from `store.seed_file` when given). The one
/// way `serve`, `sync` and the admin commands get a store. Redis connects lazily,
/// so this fails only on a malformed URL or an unreadable seed file.
pub(crate) fn open(config: &StoreConfig) -> Result<Arc<dyn EntitlementStore>, String> {
    if config.is_redis() {
        let store = RedisStore::open(config).map_err(|e| format!("store.redis_url: {e}"))?;
        return Ok(Arc::new(store));
    }
    let store = match &config.seed_file {
        Some(seed) => MemoryStore::from_seed_file(seed)?,
        None => MemoryStore::new(),
    };
    Ok(Arc::new(store.with_retention(
        config.audit_max_entries,
        config.event_ttl,
    )))
}

/// A change another instance announced (see [`EntitlementStore::listen_for_invalidations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    User(String),
    /// The subscription was (re)established: messages may have been missed.
    All,
}

/// What a listener is told for every [`Invalidation`].
pub(crate) type OnInvalidation = Box<dyn Fn(Invalidation) + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("too much contention updating {0}; retry")]
    Contention(String),
}

/// One webhook delivery as the endpoint saw it, kept (capped) so an operator
/// can see what Stripe sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    /// `applied`, `duplicate`, `ignored`, `other_mode`, `failed`.
    pub result: String,
    pub at: UnixTime,
}

/// A webhook delivery the endpoint refused, kept (capped, in a list of its
/// own) so an operator can see why deliveries fail without reading logs.
///
/// Kept apart from [`Delivery`] so that a flood of forged deliveries can only
/// push out older refusals, never the record of what was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedDelivery {
    /// Why it was refused: a word of docs/webhooks.md "Refusals"
    /// (`no_matching_signature`, `timestamp_out_of_tolerance`, ...).
    pub reason: String,
    /// The event id and type, only from a body whose signature verified (a
    /// `bad_payload`); nothing an unverified sender wrote is ever kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    pub at: UnixTime,
}

/// One change to a user's entitlement: what changed it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: UnixTime,
    /// `event evt_… (customer.subscription.updated)`, `admin: <reason>`, `sync`.
    pub source: String,
    /// A one-line summary of the state after the change.
    pub summary: String,
}

/// How many deliveries are kept, and audit entries per user by default
/// (`store.audit_max_entries`).
pub(crate) const DELIVERIES_KEPT: usize = 1000;
pub(crate) const AUDIT_KEPT: usize = 50;
/// How many refused deliveries are kept: enough to see a pattern, small
/// enough that a flood of forged ones costs nothing to hold.
pub(crate) const REFUSALS_KEPT: usize = 100;

/// One page of the unlinked-customer list (see [`EntitlementStore::unlinked_page`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnlinkedPage {
    /// Customer ids, sorted within the page.
    pub customers: Vec<String>,
    /// Where the next page starts; `0`: the walk is complete.
    pub next_cursor: u64,
}

/// Builds the audit entry for a user record a write is about to store (`None`:
/// the write is not audited). Called with the value written; may run more
/// than once (optimistic retries), so it must be pure.
pub(crate) type Audit<'a> = &'a (dyn Fn(Option<&Entitlement>) -> Option<AuditEntry> + Send + Sync);

/// A change to one record, applied atomically by the store: the closure sees
/// the current value (or `None`) and returns the new one (or `None` to delete).
/// Stores may call it more than once (optimistic retries), so it must be pure.
pub(crate) type Update<'a, T> = &'a (dyn Fn(Option<T>) -> Option<T> + Send + Sync);

#[async_trait]
pub trait EntitlementStore: Send + Sync + 'static {
    /// Everything stored for `user_id`, in one round trip. `Ok(None)`: never seen.
    async fn load(&self, user_id: &str) -> Result<Option<Entitlement>, StoreError>;

    /// Applies `update` to one user's record atomically and returns the new value.
    async fn update(
        &self,
        user_id: &str,
        update: Update<'_, Entitlement>,
    ) -> Result<Option<Entitlement>, StoreError>;

    /// [`update`](Self::update), then appends what `audit` returns for the
    /// final value to the user's trail. A store that can do both in one round
    /// trip (Redis: one script on the user's slot) overrides this, which also
    /// makes the record and its audit entry atomic.
    async fn update_audited(
        &self,
        user_id: &str,
        update: Update<'_, Entitlement>,
        audit: Audit<'_>,
    ) -> Result<Option<Entitlement>, StoreError> {
        let written = self.update(user_id, update).await?;
        if let Some(entry) = audit(written.as_ref()) {
            self.append_audit(user_id, &entry).await?;
        }
        Ok(written)
    }

    /// The record kept for one Stripe customer.
    async fn load_customer(&self, customer_id: &str) -> Result<Option<CustomerRecord>, StoreError>;

    /// Applies `update` to one customer record atomically and returns the new value.
    async fn update_customer(
        &self,
        customer_id: &str,
        update: Update<'_, CustomerRecord>,
    ) -> Result<Option<CustomerRecord>, StoreError>;

    /// Whether a webhook event id was already applied (a fast path for duplicates;
    /// correctness does not depend on it because every merge is idempotent).
    async fn event_seen(&self, event_id: &str) -> Result<bool, StoreError>;

    /// Records an event id as applied (kept for a bounded time).
    async fn mark_event(&self, event_id: &str) -> Result<(), StoreError>;

    /// Tells every gateway instance sharing this store that these users changed.
    async fn publish_invalidation(&self, user_ids: &[String]) -> Result<(), StoreError>;

    /// Remembers a webhook delivery (newest first, capped at [`DELIVERIES_KEPT`]).
    async fn record_delivery(&self, delivery: &Delivery) -> Result<(), StoreError>;

    /// The most recent deliveries, newest first.
    async fn recent_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StoreError>;

    /// Remembers a refused webhook delivery (newest first, capped at
    /// [`REFUSALS_KEPT`], in a list apart from the deliveries).
    async fn record_refusal(&self, refusal: &RefusedDelivery) -> Result<(), StoreError>;

    /// The most recent refused deliveries, newest first.
    async fn recent_refusals(&self, limit: usize) -> Result<Vec<RefusedDelivery>, StoreError>;

    /// Appends to a user's audit trail (newest first, capped at
    /// `store.audit_max_entries`; Redis expires a trail untouched for `store.audit_ttl`).
    async fn append_audit(&self, user_id: &str, entry: &AuditEntry) -> Result<(), StoreError>;

    /// A user's most recent changes, newest first.
    async fn audit(&self, user_id: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Marks a customer as having events but no user link (or clears the mark),
    /// so operators can find and fix them (never by creating customers).
    async fn set_unlinked(&self, customer_id: &str, unlinked: bool) -> Result<(), StoreError>;

    /// One page of the customers with events but no user link: about `limit`
    /// ids from `cursor` (`0`: the start), and the cursor of the next page.
    /// Bounded work per call whatever the list's size (Redis: `SSCAN`, never
    /// `SMEMBERS`, which blocks the server for the whole set). A customer
    /// listed for the whole walk is returned at least once; one added or
    /// removed meanwhile may or may not be. `limit` is a hint: a page may hold
    /// somewhat more or fewer ids, even none while the walk goes on.
    async fn unlinked_page(&self, cursor: u64, limit: usize) -> Result<UnlinkedPage, StoreError>;

    /// Every customer with events but no user link, sorted: walks
    /// [`unlinked_page`](Self::unlinked_page) (for `sync`'s report, which
    /// lists them all anyway).
    async fn unlinked_customers(&self) -> Result<Vec<String>, StoreError> {
        let mut all = Vec::new();
        let mut cursor = 0;
        loop {
            let page = self.unlinked_page(cursor, 1000).await?;
            all.extend(page.customers);
            if page.next_cursor == 0 {
                break;
            }
            cursor = page.next_cursor;
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// Finishes an applied webhook in as few round trips as the store allows:
    /// announces the changed users, remembers the event id and records the
    /// delivery. An error means the announcement may not have gone out, so the
    /// delivery must not be acknowledged.
    async fn complete_event(
        &self,
        event_id: &str,
        users: &[String],
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        self.publish_invalidation(users).await?;
        self.mark_event(event_id).await?;
        self.record_delivery(delivery).await
    }

    /// Cheap check for `/_paygate/readyz`: `Ok` only while the store can take
    /// writes (Redis: reachable, a master, and accepting a write).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Identifies the server taking writes now; read before a webhook's (or an
    /// operator's) writes and given to [`confirm_writes`](Self::confirm_writes).
    fn write_epoch(&self) -> u64 {
        0
    }

    /// Called after a webhook's (or an operator's) writes and before they are
    /// acknowledged: `Ok` once they are as durable as `store.min_replica_acks`
    /// asks (Redis `WAIT`), and only if the server taking writes did not change
    /// since `epoch`. An error means they may be lost in a failover, so the
    /// delivery must be answered 503 and its event id not remembered.
    async fn confirm_writes(&self, epoch: u64) -> Result<(), StoreError> {
        let _ = epoch;
        Ok(())
    }

    /// Calls `on_change`, for as long as the process runs, for every change
    /// another instance announces with [`publish_invalidation`](Self::publish_invalidation).
    /// A store no other process can reach (the memory store) has nothing to hear.
    fn listen_for_invalidations(&self, on_change: OnInvalidation) {
        let _ = on_change;
    }

    /// Short name for logs (`memory`, `redis`).
    fn kind(&self) -> &'static str;
}

#[cfg(test)]
pub(crate) mod behaviour;
