//! Where entitlements live: the [`EntitlementStore`] trait, its memory and Redis
//! implementations, and the local cache that keeps store I/O off the request path.
//!
//! The trait is deliberately small so both stores pass one behavioural test
//! suite (`behaviour.rs`): one round trip per user lookup (`load`), and atomic
//! read-modify-write of one record (`update`, `update_customer`) so two gateways
//! applying events concurrently cannot lose one.

pub mod cache;
pub mod memory;
pub mod redis;

use async_trait::async_trait;

use crate::apply::record::CustomerRecord;
use crate::entitlement::Entitlement;

pub use cache::{EntitlementCache, Lookup};
pub use memory::MemoryStore;
pub use self::redis::RedisStore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("too much contention updating {0}; retry")]
    Contention(String),
}

/// A change to one record, applied atomically by the store: the closure sees
/// the current value (or `None`) and returns the new one (or `None` to delete).
/// Stores may call it more than once (optimistic retries), so it must be pure.
pub type Update<'a, T> = &'a (dyn Fn(Option<T>) -> Option<T> + Send + Sync);

#[async_trait]
pub trait EntitlementStore: Send + Sync + 'static {
    /// Everything stored for `user_id`, in one round trip. `Ok(None)`: never seen.
    async fn load(&self, user_id: &str) -> Result<Option<Entitlement>, StoreError>;

    /// Applies `update` to one user's record atomically and returns the new value.
    async fn update(&self, user_id: &str, update: Update<'_, Entitlement>) -> Result<Option<Entitlement>, StoreError>;

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

    /// Cheap reachability check for `/_paygate/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Short name for logs (`memory`, `redis`).
    fn kind(&self) -> &'static str;
}

#[cfg(test)]
pub(crate) mod behaviour;
#[cfg(test)]
pub(crate) mod test_redis;
