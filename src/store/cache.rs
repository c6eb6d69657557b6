//! The local cache in front of the store: what makes a cache hit free of I/O.
//!
//! Entries live `cache_ttl` and are bounded by `cache_capacity`. Concurrent misses
//! for one user are coalesced into a single store read (moka's `try_get_with`), so
//! a burst of requests from a user whose entry just expired costs one round trip.
//! Users with no record are cached too (as `None`): a never-subscribed user
//! hammering a paid route must not turn into store traffic.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::{EntitlementStore, StoreError};
use crate::entitlement::Entitlement;

/// What a lookup found: the user's entitlement, or `None` for a user never seen.
pub type Lookup = Option<Arc<Entitlement>>;

#[derive(Clone)]
pub struct EntitlementCache {
    store: Arc<dyn EntitlementStore>,
    cache: Cache<String, Lookup>,
}

impl EntitlementCache {
    pub fn new(store: Arc<dyn EntitlementStore>, ttl: Duration, capacity: u64) -> Self {
        let cache = Cache::builder().max_capacity(capacity).time_to_live(ttl).build();
        EntitlementCache { store, cache }
    }

    /// The user's entitlement: from memory on a hit (no I/O, no allocation),
    /// else one store read shared by every concurrent caller for that user.
    pub async fn get(&self, user_id: &str) -> Result<Lookup, StoreError> {
        let store = &self.store;
        self.cache
            .try_get_with_by_ref(user_id, async move { store.load(user_id).await.map(|found| found.map(Arc::new)) })
            .await
            .map_err(|shared: Arc<StoreError>| (*shared).clone())
    }

    /// Drops a user's entry so the next lookup reads the store (after a write).
    pub async fn invalidate(&self, user_id: &str) {
        self.cache.invalidate(user_id).await;
    }

    pub fn store(&self) -> &Arc<dyn EntitlementStore> {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Update};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts loads and makes them slow enough that concurrent misses overlap.
    struct CountingStore {
        inner: MemoryStore,
        loads: AtomicUsize,
    }

    #[async_trait]
    impl EntitlementStore for CountingStore {
        async fn load(&self, user_id: &str) -> Result<Option<Entitlement>, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.inner.load(user_id).await
        }
        async fn update(&self, user_id: &str, update: Update<'_>) -> Result<Option<Entitlement>, StoreError> {
            self.inner.update(user_id, update).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn kind(&self) -> &'static str {
            "counting"
        }
    }

    fn setup() -> (Arc<CountingStore>, EntitlementCache) {
        let store = Arc::new(CountingStore { inner: MemoryStore::new(), loads: AtomicUsize::new(0) });
        let cache = EntitlementCache::new(store.clone(), Duration::from_secs(60), 100);
        (store, cache)
    }

    #[tokio::test]
    async fn hits_do_not_touch_the_store_and_misses_are_coalesced() {
        let (store, cache) = setup();
        let lookups: Vec<_> = (0..50).map(|_| cache.get("alice")).collect();
        for found in futures_util::future::join_all(lookups).await {
            assert_eq!(found.unwrap(), None);
        }
        assert_eq!(store.loads.load(Ordering::SeqCst), 1, "50 concurrent misses must be one store read");
        cache.get("alice").await.unwrap();
        assert_eq!(store.loads.load(Ordering::SeqCst), 1, "a hit must not read the store");
    }

    #[tokio::test]
    async fn invalidate_forces_a_fresh_read() {
        let (store, cache) = setup();
        assert_eq!(cache.get("bob").await.unwrap(), None);
        store.update("bob", &|_| Some(Entitlement { has_used_trial: true, ..Default::default() })).await.unwrap();
        assert_eq!(cache.get("bob").await.unwrap(), None, "still cached");
        cache.invalidate("bob").await;
        assert!(cache.get("bob").await.unwrap().unwrap().has_used_trial);
        assert_eq!(store.loads.load(Ordering::SeqCst), 2);
    }
}
