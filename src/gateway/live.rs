//! Live reload: the running [`Gateway`] generation behind an atomic pointer.
//! A reload builds the next generation from a new config off to the side and
//! swaps it in; the next request uses it, while requests already in flight
//! (and the connections they came on) finish on the generation they started
//! with, which lives until its last request drops it.
//!
//! What a reload cannot change (listeners, the store connection) stays with the
//! process: the store is opened once here and handed to every generation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;

use super::Gateway;
use crate::config::Config;
use crate::store::{self, EntitlementStore, Invalidation};

/// The gateway as the listeners see it: whichever generation is current.
pub struct Live {
    current: ArcSwap<Gateway>,
    store: Arc<dyn EntitlementStore>,
    /// Shared with every generation: readiness reads it there.
    draining: Arc<AtomicBool>,
}

impl Live {
    /// Opens the store the config names and builds the first generation.
    pub async fn build(config: Config) -> Result<Arc<Live>, String> {
        let store = store::open(&config.store)?;
        Self::with_store(config, store).await
    }

    /// Like [`Live::build`] with a given store (tests inject one).
    pub(crate) async fn with_store(
        config: Config,
        store: Arc<dyn EntitlementStore>,
    ) -> Result<Arc<Live>, String> {
        crate::metrics::init();
        crate::metrics::spawn_upkeep();
        let draining = Arc::new(AtomicBool::new(false));
        let first = Gateway::generation(config, store.clone(), draining.clone(), None).await?;
        let live = Arc::new(Live {
            current: ArcSwap::from_pointee(first),
            store: store.clone(),
            draining,
        });
        // Other instances announce the users they changed; drop those entries
        // from the current generation's cache so a webhook anywhere is seen
        // everywhere within a second. Registered once for the process (the
        // subscription is the store's), so it looks the cache up each time.
        let weak: Weak<Live> = Arc::downgrade(&live);
        store.listen_for_invalidations(Box::new(move |change| {
            let Some(live) = weak.upgrade() else { return };
            let cache = live.current().entitlements.clone();
            match change {
                Invalidation::User(user) => {
                    tokio::spawn(async move { cache.invalidate(&user).await });
                }
                Invalidation::All => cache.invalidate_all(),
            }
        }));
        Ok(live)
    }

    /// The generation a new request is served by.
    pub(crate) fn current(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Builds the next generation from `config` (already checked for what
    /// needs a restart) without making it current: on error (the identity
    /// provider's keys cannot be fetched, say) nothing has changed.
    pub(crate) async fn prepare(&self, config: Config) -> Result<Gateway, String> {
        let previous = self.current();
        Gateway::generation(
            config,
            self.store.clone(),
            self.draining.clone(),
            Some(&previous),
        )
        .await
    }

    /// Makes `next` current: the next request is served by it.
    pub(crate) fn install(&self, next: Gateway) {
        self.current.store(Arc::new(next));
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}
