//! The local cache in front of the store: what makes a cache hit free of I/O.
//!
//! Entries live `cache_ttl` and are bounded by `cache_capacity`. Concurrent misses
//! for one user are coalesced into a single store read (moka's `try_get_with`), so
//! a burst of requests from a user whose entry just expired costs one round trip.
//! Users with no record are cached too (as `None`): a never-subscribed user
//! hammering a paid route must not turn into store traffic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;

use super::{EntitlementStore, StoreError};
use crate::entitlement::Entitlement;

/// What a lookup found: the user's entitlement, or `None` for a user never seen.
pub type Lookup = Option<Arc<Entitlement>>;

#[derive(Clone)]
pub struct EntitlementCache {
    store: Arc<dyn EntitlementStore>,
    /// Entries younger than `cache_ttl`: served without touching the store.
    fresh: Cache<String, Lookup>,
    /// Last state read from the store, kept `max_stale`: served only while the
    /// store is unreachable and `on_store_error = "stale"`.
    last_known: Option<Cache<String, Lookup>>,
    /// While the store is failing, misses skip it until this instant (ms since
    /// `epoch`), so an outage does not add a timeout to every request.
    store_down_until_ms: Arc<AtomicU64>,
    epoch: Instant,
}

/// How long misses skip a store that just failed before trying it again.
const STORE_RETRY_AFTER: Duration = Duration::from_millis(500);

impl EntitlementCache {
    /// `stale_for`: keep last-known state this long for outages (`None`: never serve stale).
    pub fn new(store: Arc<dyn EntitlementStore>, ttl: Duration, capacity: u64, stale_for: Option<Duration>) -> Self {
        let fresh = Cache::builder().max_capacity(capacity).time_to_live(ttl).build();
        let last_known = stale_for.map(|max| Cache::builder().max_capacity(capacity).time_to_live(max).build());
        EntitlementCache { store, fresh, last_known, store_down_until_ms: Arc::new(AtomicU64::new(0)), epoch: Instant::now() }
    }

    /// The user's entitlement: from memory on a hit (no I/O, no allocation),
    /// else one store read shared by every concurrent caller for that user.
    /// When the store fails, the last known state (if configured and younger
    /// than `max_stale`) is served instead.
    pub async fn get(&self, user_id: &str) -> Result<Lookup, StoreError> {
        let store = &self.store;
        let last_known = &self.last_known;
        let down = self.store_is_down();
        let missed = AtomicBool::new(false);
        let missed_ref = &missed;
        let result = self
            .fresh
            .try_get_with_by_ref(user_id, async move {
                missed_ref.store(true, Ordering::Relaxed);
                if down {
                    return Err(StoreError::Unavailable("store failed recently; retrying shortly".into()));
                }
                let found = store.load(user_id).await?.map(Arc::new);
                if let Some(last_known) = last_known {
                    last_known.insert(user_id.to_string(), found.clone()).await;
                }
                Ok(found)
            })
            .await
            .map_err(|shared: Arc<StoreError>| (*shared).clone());
        match result {
            Ok(found) => {
                crate::metrics::cache(if missed.load(Ordering::Relaxed) { "miss" } else { "hit" });
                Ok(found)
            }
            Err(error) => {
                if !down {
                    crate::metrics::store_error();
                    self.mark_store_down();
                }
                let stale = match &self.last_known {
                    Some(last_known) => last_known.get(user_id).await,
                    None => None,
                };
                match stale {
                    Some(found) => {
                        crate::metrics::cache("stale");
                        Ok(found)
                    }
                    None => Err(error),
                }
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn store_is_down(&self) -> bool {
        self.now_ms() < self.store_down_until_ms.load(Ordering::Relaxed)
    }

    fn mark_store_down(&self) {
        let until = self.now_ms() + STORE_RETRY_AFTER.as_millis() as u64;
        self.store_down_until_ms.store(until, Ordering::Relaxed);
    }

    /// Drops a user's entry so the next lookup reads the store (after a write).
    pub async fn invalidate(&self, user_id: &str) {
        self.fresh.invalidate(user_id).await;
    }

    /// Drops every fresh entry (after missed invalidations). Last-known state
    /// is kept: it only matters during an outage and is refreshed by reads.
    pub fn invalidate_all(&self) {
        self.fresh.invalidate_all();
    }

    pub fn store(&self) -> &Arc<dyn EntitlementStore> {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::record::CustomerRecord;
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
        async fn update(&self, user_id: &str, update: Update<'_, Entitlement>) -> Result<Option<Entitlement>, StoreError> {
            self.inner.update(user_id, update).await
        }
        async fn load_customer(&self, id: &str) -> Result<Option<CustomerRecord>, StoreError> {
            self.inner.load_customer(id).await
        }
        async fn update_customer(&self, id: &str, update: Update<'_, CustomerRecord>) -> Result<Option<CustomerRecord>, StoreError> {
            self.inner.update_customer(id, update).await
        }
        async fn event_seen(&self, id: &str) -> Result<bool, StoreError> {
            self.inner.event_seen(id).await
        }
        async fn mark_event(&self, id: &str) -> Result<(), StoreError> {
            self.inner.mark_event(id).await
        }
        async fn publish_invalidation(&self, _users: &[String]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn record_delivery(&self, d: &crate::store::Delivery) -> Result<(), StoreError> {
            self.inner.record_delivery(d).await
        }
        async fn recent_deliveries(&self, limit: usize) -> Result<Vec<crate::store::Delivery>, StoreError> {
            self.inner.recent_deliveries(limit).await
        }
        async fn append_audit(&self, user: &str, e: &crate::store::AuditEntry) -> Result<(), StoreError> {
            self.inner.append_audit(user, e).await
        }
        async fn audit(&self, user: &str, limit: usize) -> Result<Vec<crate::store::AuditEntry>, StoreError> {
            self.inner.audit(user, limit).await
        }
        async fn set_unlinked(&self, c: &str, u: bool) -> Result<(), StoreError> {
            self.inner.set_unlinked(c, u).await
        }
        async fn unlinked_customers(&self) -> Result<Vec<String>, StoreError> {
            self.inner.unlinked_customers().await
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
        let cache = EntitlementCache::new(store.clone(), Duration::from_secs(60), 100, None);
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
