//! The local cache in front of the store: what makes a cache hit free of I/O.
//!
//! One bounded map from user id to the user's [`AccessSummary`] (the access
//! evaluated once per load, not the stored record: see `entitlement/summary.rs`).
//! Each entry remembers when it was read, so the same entry is *fresh* for
//! `cache_ttl` (served without touching the store) and *last known* for
//! `max_stale` (served only while the store is failing and `on_store_error =
//! "stale"`). A summary whose `valid_until` has passed (a grace or an override
//! ended) is never fresh.
//!
//! Concurrent misses for one user are coalesced: the first becomes the loader
//! (a placeholder in the map), the others wait for its result, so a burst of
//! requests from a user whose entry just expired costs one round trip. Users
//! with no record are cached too (one shared summary): a never-subscribed user
//! hammering a paid route must not turn into store traffic.
//!
//! Why quick_cache and not moka (the stack's first choice): measured with 1M
//! entries of a 64-byte value, moka costs ~450-480 bytes per entry before any
//! entitlement data, quick_cache ~186 including the value; the memory target is
//! 300 MB for 1M cached users. A hit is a shard read lock and a clone of an `Arc`.
//!
//! Time comes from a [`Clock`] type parameter, not a trait object: the real
//! clock is monomorphized into the hit path as the plain `Instant` read it is,
//! and tests substitute one driven by tokio's paused time instead of sleeping.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::{Cache, DefaultLifecycle, EntryAction, EntryResult, PlaceholderGuard};
use quick_cache::{DefaultHashBuilder, UnitWeighter};

use super::{EntitlementStore, StoreError};
use crate::entitlement::{AccessRules, AccessSummary, UnixTime};

/// What a lookup found: the user's access summary (never-seen users included).
pub(crate) type Lookup = Arc<AccessSummary>;

/// Where the cache reads time: a monotonic clock for freshness and the store
/// back-off, and wall time for the summaries (`valid_until` is in Unix
/// seconds). Public only because it bounds [`EntitlementCache`]'s parameter;
/// nothing outside this file implements it.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the clock was made; never goes back.
    fn now_ms(&self) -> u64;
    /// Now, in Unix seconds.
    fn unix_now(&self) -> UnixTime;
}

/// The clock every real cache uses: `Instant` since the cache was made, and
/// the system's wall clock.
pub struct SystemClock {
    epoch: Instant,
}

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    #[inline]
    fn unix_now(&self) -> UnixTime {
        crate::clock::unix_now()
    }
}

pub struct EntitlementCache<C: Clock = SystemClock> {
    inner: Arc<Inner<C>>,
}

// Not derived: the derive would demand `C: Clone`, and only the `Arc` is cloned.
impl<C: Clock> Clone for EntitlementCache<C> {
    fn clone(&self) -> Self {
        EntitlementCache {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C> {
    store: Arc<dyn EntitlementStore>,
    rules: AccessRules,
    entries: Cache<String, Slot>,
    ttl_ms: u64,
    /// `Some(max_stale)` when last-known state may be served during outages.
    stale_ms: Option<u64>,
    /// Bumped by `invalidate_all`: entries of an older generation are not fresh
    /// (but still usable as last-known state), without walking the map.
    generation: AtomicU32,
    /// While the store is failing, misses skip it until this instant (ms of
    /// `clock`), so an outage does not add a timeout to every request.
    store_down_until_ms: AtomicU64,
    clock: C,
}

/// One cached user. Small and `Clone` (the map hands out copies).
#[derive(Clone)]
struct Slot {
    summary: Arc<AccessSummary>,
    /// Fresh strictly before this instant (ms of the clock): the read time plus
    /// `cache_ttl`, or earlier when the summary's `valid_until` comes first.
    fresh_until_ms: u64,
    /// Read time plus `max_stale` (0 when stale serving is off).
    stale_until_ms: u64,
    generation: u32,
}

impl Slot {
    fn is_fresh(&self, now_ms: u64, generation: u32) -> bool {
        now_ms < self.fresh_until_ms && self.generation == generation
    }
}

/// The right to fill one user's entry, taken on a miss. Dropped without a
/// result (the store failed, or the request was cancelled mid-read) it puts
/// the previous entry back, so last-known state outlives a failed load.
struct Loading<'a> {
    guard: Option<SlotGuard<'a>>,
    previous: Option<Slot>,
}

/// quick_cache's placeholder for one user's entry while it is being loaded.
type SlotGuard<'a> = PlaceholderGuard<
    'a,
    String,
    Slot,
    UnitWeighter,
    DefaultHashBuilder,
    DefaultLifecycle<String, Slot>,
>;

impl Loading<'_> {
    fn finish(mut self, slot: Slot) {
        if let Some(guard) = self.guard.take() {
            let _ = guard.insert(slot);
        }
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        if let (Some(guard), Some(previous)) = (self.guard.take(), self.previous.take()) {
            let _ = guard.insert(previous);
        }
    }
}

/// How long misses skip a store that just failed before trying it again.
const STORE_RETRY_AFTER: Duration = Duration::from_millis(500);

impl EntitlementCache {
    /// `stale_for`: keep last-known state this long for outages (`None`: never
    /// serve stale). `rules` turn stored records into summaries.
    pub fn new(
        store: Arc<dyn EntitlementStore>,
        ttl: Duration,
        capacity: u64,
        stale_for: Option<Duration>,
        rules: AccessRules,
    ) -> Self {
        let clock = SystemClock {
            epoch: Instant::now(),
        };
        Self::with_clock(store, ttl, capacity, stale_for, rules, clock)
    }
}

impl<C: Clock> EntitlementCache<C> {
    fn with_clock(
        store: Arc<dyn EntitlementStore>,
        ttl: Duration,
        capacity: u64,
        stale_for: Option<Duration>,
        rules: AccessRules,
        clock: C,
    ) -> Self {
        // quick_cache treats the capacity as approximate and may keep slightly
        // fewer; at least one entry so a tiny configured cache still works.
        let entries = Cache::new(capacity.max(1) as usize);
        EntitlementCache {
            inner: Arc::new(Inner {
                store,
                rules,
                entries,
                ttl_ms: ttl.as_millis() as u64,
                stale_ms: stale_for.map(|d| d.as_millis() as u64),
                generation: AtomicU32::new(0),
                store_down_until_ms: AtomicU64::new(0),
                clock,
            }),
        }
    }

    /// The user's access: from memory on a hit (no I/O, no allocation), else
    /// one store read shared by every concurrent caller for that user. When
    /// the store fails, the last known state (if configured, younger than
    /// `max_stale` and still valid) is served instead.
    pub async fn get(&self, user_id: &str) -> Result<Lookup, StoreError> {
        let inner = &*self.inner;
        if let Some(slot) = inner.entries.get(user_id) {
            if slot.is_fresh(inner.now_ms(), inner.generation.load(Ordering::Acquire)) {
                crate::metrics::cache("hit");
                return Ok(slot.summary);
            }
        }
        self.load(user_id).await
    }

    /// The miss path: become the loader for `user_id`, or wait for the one in flight.
    async fn load(&self, user_id: &str) -> Result<Lookup, StoreError> {
        let inner = &*self.inner;
        let generation = inner.generation.load(Ordering::Acquire);
        let entry = inner
            .entries
            .entry_async(user_id, |_, slot| {
                // Another task may have loaded it while we were getting here.
                if slot.is_fresh(inner.now_ms(), generation) {
                    EntryAction::Retain(slot.summary.clone())
                } else {
                    EntryAction::ReplaceWithGuard
                }
            })
            .await;
        let loading = match entry {
            EntryResult::Retained(summary) => {
                crate::metrics::cache("hit");
                return Ok(summary);
            }
            EntryResult::Replaced(guard, previous) => Loading {
                guard: Some(guard),
                previous: Some(previous),
            },
            EntryResult::Vacant(guard) => Loading {
                guard: Some(guard),
                previous: None,
            },
            // Neither is produced by `entry_async` with this callback.
            EntryResult::Removed(..) | EntryResult::Timeout => {
                return Err(StoreError::Unavailable("cache entry vanished".into()))
            }
        };
        crate::metrics::cache("miss");

        let down = inner.store_is_down();
        let loaded = if down {
            Err(StoreError::Unavailable(
                "store failed recently; retrying shortly".into(),
            ))
        } else {
            inner.store.load(user_id).await
        };
        match loaded {
            Ok(record) => {
                let now_ms = inner.now_ms();
                let unix = inner.clock.unix_now();
                let summary = AccessSummary::new(record.as_ref(), &inner.rules, unix);
                let mut fresh_until_ms = now_ms + inner.ttl_ms;
                if let Some(until) = summary.valid_until {
                    fresh_until_ms =
                        fresh_until_ms.min(now_ms + (until.get() - unix).max(0) as u64 * 1000);
                }
                let stale_until_ms = inner.stale_ms.map_or(0, |stale| now_ms + stale);
                loading.finish(Slot {
                    summary: summary.clone(),
                    fresh_until_ms,
                    stale_until_ms,
                    generation,
                });
                Ok(summary)
            }
            Err(error) => {
                if !down {
                    crate::metrics::store_error();
                    inner.mark_store_down();
                }
                // Dropping `loading` puts the old state back: it is what the next
                // lookups during this outage can fall back on. It stays expired,
                // so the first lookup after the outage reads the store again.
                let stale = loading
                    .previous
                    .as_ref()
                    .filter(|p| inner.servable_when_stale(p))
                    .map(|p| p.summary.clone());
                drop(loading);
                match stale {
                    Some(summary) => {
                        crate::metrics::cache("stale");
                        Ok(summary)
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// Makes a user's entry stale so the next lookup reads the store (after a
    /// write). The entry is kept as last-known state. A load in flight for the
    /// user is waited for first, so a read that began before the write cannot
    /// put the old state back as fresh.
    pub async fn invalidate(&self, user_id: &str) {
        let entry = self
            .inner
            .entries
            .entry_async(user_id, |_, slot| {
                slot.fresh_until_ms = 0;
                EntryAction::Retain(())
            })
            .await;
        // Vacant: nothing cached; dropping the guard leaves the key absent.
        drop(entry);
    }

    /// Makes every entry stale (after missed invalidations). Last-known state
    /// is kept: it only matters during an outage and is refreshed by reads.
    pub fn invalidate_all(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn store(&self) -> &Arc<dyn EntitlementStore> {
        &self.inner.store
    }
}

impl<C: Clock> Inner<C> {
    #[inline]
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn store_is_down(&self) -> bool {
        self.now_ms() < self.store_down_until_ms.load(Ordering::Relaxed)
    }

    fn mark_store_down(&self) {
        let until = self.now_ms() + STORE_RETRY_AFTER.as_millis() as u64;
        self.store_down_until_ms.store(until, Ordering::Relaxed);
    }

    /// Stale serving is on, the entry is younger than `max_stale`, and the
    /// summary has not outlived a grace or override end.
    fn servable_when_stale(&self, slot: &Slot) -> bool {
        let now: UnixTime = self.clock.unix_now();
        self.stale_ms.is_some()
            && self.now_ms() < slot.stale_until_ms
            && slot.summary.is_valid_at(now)
    }
}

#[cfg(test)]
mod tests {
    //! Every test runs on tokio's paused clock (`start_paused`): a sleep or an
    //! `advance` moves time without waiting, and while every task is blocked
    //! the runtime jumps to the next timer, so "slow" store reads cost nothing.
    use super::*;
    use crate::billing::record::CustomerRecord;
    use crate::entitlement::{Entitlement, Override, Subscription, SubscriptionStatus};
    use crate::store::{MemoryStore, Update};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::advance;

    /// The cache's clock on tokio's (paused) time, so tests move it with
    /// `tokio::time::advance`; Unix time moves with it, from `UNIX_START`.
    struct PausedClock {
        epoch: tokio::time::Instant,
    }

    const UNIX_START: UnixTime = 1_700_000_000;

    impl Clock for PausedClock {
        fn now_ms(&self) -> u64 {
            self.epoch.elapsed().as_millis() as u64
        }
        fn unix_now(&self) -> UnixTime {
            UNIX_START + self.epoch.elapsed().as_secs() as UnixTime
        }
    }

    /// How long every store read takes (paused time: free, but other tasks run
    /// meanwhile, so concurrent misses overlap).
    const LOAD_DELAY: Duration = Duration::from_millis(20);

    type TestCache = EntitlementCache<PausedClock>;

    /// Counts loads and makes them slow enough that concurrent misses overlap.
    struct CountingStore {
        inner: MemoryStore,
        loads: AtomicUsize,
        /// While set, every load fails as if Redis were down.
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl EntitlementStore for CountingStore {
        async fn load(&self, user_id: &str) -> Result<Option<Entitlement>, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            // Read first, then take the time a round trip takes: a write landing
            // while the load is in flight is one the loaded value has not seen.
            let read = if self.failing.load(Ordering::SeqCst) {
                Err(StoreError::Unavailable("down for the test".into()))
            } else {
                self.inner.load(user_id).await
            };
            tokio::task::yield_now().await;
            tokio::time::sleep(LOAD_DELAY).await;
            read
        }
        async fn update(
            &self,
            user_id: &str,
            update: Update<'_, Entitlement>,
        ) -> Result<Option<Entitlement>, StoreError> {
            self.inner.update(user_id, update).await
        }
        async fn load_customer(&self, id: &str) -> Result<Option<CustomerRecord>, StoreError> {
            self.inner.load_customer(id).await
        }
        async fn update_customer(
            &self,
            id: &str,
            update: Update<'_, CustomerRecord>,
        ) -> Result<Option<CustomerRecord>, StoreError> {
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
        async fn recent_deliveries(
            &self,
            limit: usize,
        ) -> Result<Vec<crate::store::Delivery>, StoreError> {
            self.inner.recent_deliveries(limit).await
        }
        async fn record_refusal(
            &self,
            r: &crate::store::RefusedDelivery,
        ) -> Result<(), StoreError> {
            self.inner.record_refusal(r).await
        }
        async fn recent_refusals(
            &self,
            limit: usize,
        ) -> Result<Vec<crate::store::RefusedDelivery>, StoreError> {
            self.inner.recent_refusals(limit).await
        }
        async fn append_audit(
            &self,
            user: &str,
            e: &crate::store::AuditEntry,
        ) -> Result<(), StoreError> {
            self.inner.append_audit(user, e).await
        }
        async fn audit(
            &self,
            user: &str,
            limit: usize,
        ) -> Result<Vec<crate::store::AuditEntry>, StoreError> {
            self.inner.audit(user, limit).await
        }
        async fn set_unlinked(&self, c: &str, u: bool) -> Result<(), StoreError> {
            self.inner.set_unlinked(c, u).await
        }
        async fn unlinked_page(
            &self,
            cursor: u64,
            limit: usize,
        ) -> Result<crate::store::UnlinkedPage, StoreError> {
            self.inner.unlinked_page(cursor, limit).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn kind(&self) -> &'static str {
            "counting"
        }
    }

    fn setup() -> (Arc<CountingStore>, TestCache) {
        setup_with(Duration::from_secs(60), None)
    }

    /// Inside a test's runtime only: the clock starts at the runtime's now.
    fn setup_with(ttl: Duration, stale_for: Option<Duration>) -> (Arc<CountingStore>, TestCache) {
        let store = Arc::new(CountingStore {
            inner: MemoryStore::new(),
            loads: AtomicUsize::new(0),
            failing: Default::default(),
        });
        let clock = PausedClock {
            epoch: tokio::time::Instant::now(),
        };
        let cache = EntitlementCache::with_clock(
            store.clone(),
            ttl,
            100,
            stale_for,
            AccessRules::default(),
            clock,
        );
        (store, cache)
    }

    fn active() -> Entitlement {
        Entitlement {
            subscriptions: vec![Subscription::new(
                "sub_1",
                "cus_1",
                SubscriptionStatus::Active,
                1,
            )],
            ..Default::default()
        }
    }

    async fn put(store: &CountingStore, user: &str, ent: Entitlement) {
        store.update(user, &|_| Some(ent.clone())).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn hits_do_not_touch_the_store_and_misses_are_coalesced() {
        let (store, cache) = setup();
        let lookups: Vec<_> = (0..50).map(|_| cache.get("alice")).collect();
        for found in futures_util::future::join_all(lookups).await {
            assert_eq!(found.unwrap().status(), "none");
        }
        assert_eq!(
            store.loads.load(Ordering::SeqCst),
            1,
            "50 concurrent misses must be one store read"
        );
        cache.get("alice").await.unwrap();
        assert_eq!(
            store.loads.load(Ordering::SeqCst),
            1,
            "a hit must not read the store"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_forces_a_fresh_read() {
        let (store, cache) = setup();
        assert_eq!(cache.get("bob").await.unwrap().status(), "none");
        store
            .update("bob", &|_| {
                Some(Entitlement {
                    has_used_trial: true,
                    ..Default::default()
                })
            })
            .await
            .unwrap();
        assert!(
            !cache.get("bob").await.unwrap().plan.has_used_trial,
            "still cached"
        );
        cache.invalidate("bob").await;
        assert!(cache.get("bob").await.unwrap().plan.has_used_trial);
        assert_eq!(store.loads.load(Ordering::SeqCst), 2);
        cache.invalidate_all();
        cache.get("bob").await.unwrap();
        assert_eq!(
            store.loads.load(Ordering::SeqCst),
            3,
            "invalidate_all makes every entry stale"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalidation_during_a_load_is_not_lost() {
        let (store, cache) = setup();
        put(&store, "carol", active()).await;
        // The load starts (and reads "active"), the write and its invalidation
        // land while it is in flight: the loaded value must not stay fresh.
        let load = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get("carol").await.unwrap() }
        });
        while store.loads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let mut canceled = active();
        canceled.subscriptions[0].status = SubscriptionStatus::Canceled;
        let invalidation = {
            let cache = cache.clone();
            let store = store.clone();
            async move {
                put(&store, "carol", canceled).await;
                cache.invalidate("carol").await;
            }
        };
        invalidation.await;
        load.await.unwrap();
        assert_eq!(cache.get("carol").await.unwrap().status(), "canceled");
    }

    #[tokio::test(start_paused = true)]
    async fn last_known_state_is_served_during_an_outage_only_when_configured() {
        for stale_for in [Some(Duration::from_secs(3600)), None] {
            let (store, cache) = setup_with(Duration::from_millis(1), stale_for);
            put(&store, "dave", active()).await;
            assert_eq!(cache.get("dave").await.unwrap().status(), "active");
            advance(Duration::from_millis(5)).await; // past the 1 ms ttl
            store.failing.store(true, Ordering::SeqCst);
            let loads = store.loads.load(Ordering::SeqCst);
            let during: Vec<_> =
                futures_util::future::join_all((0..10).map(|_| cache.get("dave"))).await;
            assert_eq!(
                store.loads.load(Ordering::SeqCst),
                loads + 1,
                "one failed read, then the store is skipped"
            );
            for found in during {
                match stale_for {
                    Some(_) => assert_eq!(found.unwrap().status(), "active"),
                    None => assert!(found.is_err()),
                }
            }
            assert!(
                cache.get("nobody").await.is_err(),
                "no last-known state: the error surfaces"
            );
            store.failing.store(false, Ordering::SeqCst);
            // The read failed just now (skipped lookups take no time): the
            // store is left alone until STORE_RETRY_AFTER has passed, then read.
            advance(STORE_RETRY_AFTER - Duration::from_millis(1)).await;
            let loads = store.loads.load(Ordering::SeqCst);
            let skipped = cache.get("dave").await;
            assert_eq!(
                store.loads.load(Ordering::SeqCst),
                loads,
                "the store is skipped until STORE_RETRY_AFTER has passed"
            );
            match stale_for {
                Some(_) => assert_eq!(skipped.unwrap().status(), "active"),
                None => assert!(skipped.is_err()),
            }
            advance(Duration::from_millis(1)).await;
            assert_eq!(
                cache.get("dave").await.unwrap().status(),
                "active",
                "reads resume after the outage"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_load_keeps_the_last_known_state() {
        let (store, cache) = setup_with(Duration::from_millis(1), Some(Duration::from_secs(3600)));
        put(&store, "frank", active()).await;
        assert_eq!(cache.get("frank").await.unwrap().status(), "active");
        advance(Duration::from_millis(5)).await; // past the 1 ms ttl

        // A request whose client goes away while its store read is in flight.
        let loads = store.loads.load(Ordering::SeqCst);
        let abandoned = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get("frank").await }
        });
        while store.loads.load(Ordering::SeqCst) == loads {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        store.failing.store(true, Ordering::SeqCst);
        assert_eq!(
            cache.get("frank").await.unwrap().status(),
            "active",
            "served from last-known state"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_expires_when_its_override_ends() {
        let (store, cache) = setup();
        let grant = Override {
            until: UNIX_START + 2,
            reason: "comp".into(),
            features: vec![],
        };
        put(
            &store,
            "erin",
            Entitlement {
                grant_override: Some(grant),
                ..Default::default()
            },
        )
        .await;
        // Read at LOAD_DELAY after the start, still in the first Unix second:
        // fresh for two seconds from then, not for the 60 s ttl.
        assert_eq!(cache.get("erin").await.unwrap().status(), "override");
        advance(Duration::from_secs(2) - Duration::from_millis(1)).await;
        assert_eq!(
            cache.get("erin").await.unwrap().status(),
            "override",
            "fresh until the override's end"
        );
        assert_eq!(store.loads.load(Ordering::SeqCst), 1, "served from memory");
        advance(Duration::from_millis(1)).await;
        assert_eq!(
            cache.get("erin").await.unwrap().status(),
            "none",
            "the override's end must expire the 60 s entry"
        );
        assert_eq!(cache.get("erin").await.unwrap().status(), "none");
    }
}
