//! Where entitlements live: the [`EntitlementStore`] trait, its implementations,
//! and the local cache that keeps store I/O off the request path.
//!
//! The trait is deliberately small so the memory and (later) Redis stores can pass
//! one behavioural test suite: one round trip per lookup (`load`), one atomic
//! write per update (`update`).

pub mod cache;
pub mod memory;

use async_trait::async_trait;

use crate::entitlement::Entitlement;

pub use cache::{EntitlementCache, Lookup};
pub use memory::MemoryStore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A change to one user's entitlement, applied atomically by the store: the
/// closure sees the current value (or `None`) and returns the new one (or `None`
/// to delete). Stores may call it more than once (optimistic retries), so it must
/// be pure.
pub type Update<'a> = &'a (dyn Fn(Option<Entitlement>) -> Option<Entitlement> + Send + Sync);

#[async_trait]
pub trait EntitlementStore: Send + Sync + 'static {
    /// Everything stored for `user_id`, in one round trip. `Ok(None)`: never seen.
    async fn load(&self, user_id: &str) -> Result<Option<Entitlement>, StoreError>;

    /// Applies `update` to one user atomically and returns the new value.
    async fn update(&self, user_id: &str, update: Update<'_>) -> Result<Option<Entitlement>, StoreError>;

    /// Cheap reachability check for `/_paygate/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Short name for logs (`memory`, `redis`).
    fn kind(&self) -> &'static str;
}

#[cfg(test)]
pub(crate) mod behaviour;
