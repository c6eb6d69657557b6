//! The embedded in-memory store: one process, not durable. For demos, tests and
//! single-instance trials; production uses Redis.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    AuditEntry, Delivery, EntitlementStore, RefusedDelivery, StoreError, UnlinkedPage, Update,
    AUDIT_KEPT, DELIVERIES_KEPT, REFUSALS_KEPT,
};
use crate::billing::record::CustomerRecord;
use crate::entitlement::{Entitlement, UnixTime};

/// Events marked before the first sweep of expired ones.
const FIRST_EVENT_SWEEP: usize = 1024;

#[derive(Default)]
struct Data {
    users: HashMap<String, Entitlement>,
    customers: HashMap<String, CustomerRecord>,
    /// Applied event id → when it is forgotten (`store.event_ttl` after).
    events: HashMap<String, UnixTime>,
    /// Sweep expired event ids when this many are held (doubles with the live
    /// count, so sweeping costs O(1) per mark).
    next_event_sweep: usize,
    deliveries: VecDeque<Delivery>,
    refusals: VecDeque<RefusedDelivery>,
    audit: HashMap<String, VecDeque<AuditEntry>>,
    unlinked: Unlinked,
}

/// The unlinked set, walkable by cursor like Redis `SSCAN`: every id gets a
/// sequence number when added, and a cursor is the last number returned, so a
/// removal during a walk cannot make it skip an id that stayed.
#[derive(Default)]
struct Unlinked {
    by_seq: BTreeMap<u64, String>,
    seq_of: HashMap<String, u64>,
    last_seq: u64,
}

impl Unlinked {
    fn insert(&mut self, id: &str) {
        if !self.seq_of.contains_key(id) {
            self.last_seq += 1;
            self.by_seq.insert(self.last_seq, id.to_string());
            self.seq_of.insert(id.to_string(), self.last_seq);
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(seq) = self.seq_of.remove(id) {
            self.by_seq.remove(&seq);
        }
    }

    fn page(&self, cursor: u64, limit: usize) -> UnlinkedPage {
        let mut rest = self.by_seq.range(cursor.saturating_add(1)..);
        let taken: Vec<(u64, String)> = rest
            .by_ref()
            .take(limit.max(1))
            .map(|(seq, id)| (*seq, id.clone()))
            .collect();
        let next_cursor = match (rest.next(), taken.last()) {
            (Some(_), Some((seq, _))) => *seq,
            _ => 0,
        };
        let mut customers: Vec<String> = taken.into_iter().map(|(_, id)| id).collect();
        customers.sort();
        UnlinkedPage {
            customers,
            next_cursor,
        }
    }
}

pub struct MemoryStore {
    /// A plain mutex is enough: it is only taken on cache misses and writes,
    /// never held across an await, and critical sections are a map operation.
    data: Mutex<Data>,
    /// Audit entries kept per user (`store.audit_max_entries`).
    audit_kept: usize,
    /// Seconds an applied event id is remembered (`store.event_ttl`).
    event_ttl_secs: i64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            data: Mutex::default(),
            audit_kept: AUDIT_KEPT,
            event_ttl_secs: 30 * 86_400,
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps at most `audit_kept` audit entries per user
    /// (`store.audit_max_entries`) and applied event ids for `event_ttl`
    /// (`store.event_ttl`), so a long-running single instance stays bounded.
    pub(crate) fn with_retention(mut self, audit_kept: usize, event_ttl: Duration) -> Self {
        self.audit_kept = audit_kept.max(1);
        self.event_ttl_secs = event_ttl.as_secs().clamp(1, i64::MAX as u64) as i64;
        self
    }

    fn event_seen_at(&self, event_id: &str, now: UnixTime) -> bool {
        self.lock()
            .events
            .get(event_id)
            .is_some_and(|until| *until > now)
    }

    fn mark_event_at(&self, event_id: &str, now: UnixTime) {
        let mut data = self.lock();
        let until = now.saturating_add(self.event_ttl_secs);
        data.events.insert(event_id.to_string(), until);
        if data.events.len() >= data.next_event_sweep.max(FIRST_EVENT_SWEEP) {
            data.events.retain(|_, until| *until > now);
            data.next_event_sweep = (data.events.len() * 2).max(FIRST_EVENT_SWEEP);
        }
    }

    /// Loads a JSON object `{ "user id": entitlement, ... }` (the `store.seed_file`).
    pub fn from_seed_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let users: HashMap<String, Entitlement> = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a valid seed file: {e}", path.display()))?;
        Ok(MemoryStore {
            data: Mutex::new(Data {
                users,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().users.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        // A panic while holding the lock cannot leave a half-written entry (every
        // write is a single insert/remove), so a poisoned lock is safe to reuse.
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Read-modify-write of one map entry under the caller's lock.
fn apply<T: Clone>(map: &mut HashMap<String, T>, key: &str, update: Update<'_, T>) -> Option<T> {
    let next = update(map.get(key).cloned());
    match &next {
        Some(value) => {
            map.insert(key.to_string(), value.clone());
        }
        None => {
            map.remove(key);
        }
    }
    next
}

#[async_trait]
impl EntitlementStore for MemoryStore {
    async fn load(&self, user_id: &str) -> Result<Option<Entitlement>, StoreError> {
        Ok(self.lock().users.get(user_id).cloned())
    }

    async fn update(
        &self,
        user_id: &str,
        update: Update<'_, Entitlement>,
    ) -> Result<Option<Entitlement>, StoreError> {
        Ok(apply(&mut self.lock().users, user_id, update))
    }

    async fn load_customer(&self, customer_id: &str) -> Result<Option<CustomerRecord>, StoreError> {
        Ok(self.lock().customers.get(customer_id).cloned())
    }

    async fn update_customer(
        &self,
        customer_id: &str,
        update: Update<'_, CustomerRecord>,
    ) -> Result<Option<CustomerRecord>, StoreError> {
        Ok(apply(&mut self.lock().customers, customer_id, update))
    }

    async fn event_seen(&self, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.event_seen_at(event_id, crate::clock::unix_now()))
    }

    async fn mark_event(&self, event_id: &str) -> Result<(), StoreError> {
        self.mark_event_at(event_id, crate::clock::unix_now());
        Ok(())
    }

    async fn publish_invalidation(&self, _user_ids: &[String]) -> Result<(), StoreError> {
        // One process: the caller already invalidated its own cache.
        Ok(())
    }

    async fn record_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let mut data = self.lock();
        data.deliveries.push_front(delivery.clone());
        data.deliveries.truncate(DELIVERIES_KEPT);
        Ok(())
    }

    async fn recent_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        Ok(self.lock().deliveries.iter().take(limit).cloned().collect())
    }

    async fn record_refusal(&self, refusal: &RefusedDelivery) -> Result<(), StoreError> {
        let mut data = self.lock();
        data.refusals.push_front(refusal.clone());
        data.refusals.truncate(REFUSALS_KEPT);
        Ok(())
    }

    async fn recent_refusals(&self, limit: usize) -> Result<Vec<RefusedDelivery>, StoreError> {
        Ok(self.lock().refusals.iter().take(limit).cloned().collect())
    }

    async fn append_audit(&self, user_id: &str, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut data = self.lock();
        let trail = data.audit.entry(user_id.to_string()).or_default();
        trail.push_front(entry.clone());
        trail.truncate(self.audit_kept);
        Ok(())
    }

    async fn audit(&self, user_id: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .lock()
            .audit
            .get(user_id)
            .map(|t| t.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn set_unlinked(&self, customer_id: &str, unlinked: bool) -> Result<(), StoreError> {
        let mut data = self.lock();
        if unlinked {
            data.unlinked.insert(customer_id);
        } else {
            data.unlinked.remove(customer_id);
        }
        Ok(())
    }

    async fn unlinked_page(&self, cursor: u64, limit: usize) -> Result<UnlinkedPage, StoreError> {
        Ok(self.lock().unlinked.page(cursor, limit))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_store_behaviour_suite() {
        crate::store::behaviour::run_all(&MemoryStore::new()).await;
    }

    #[test]
    fn event_ids_are_forgotten_after_the_event_ttl_and_swept() {
        let store = MemoryStore::new().with_retention(50, Duration::from_secs(100));
        store.mark_event_at("evt_old", 1_000);
        assert!(store.event_seen_at("evt_old", 1_099));
        assert!(!store.event_seen_at("evt_old", 1_100));
        for i in 0..FIRST_EVENT_SWEEP {
            store.mark_event_at(&format!("evt_{i}"), 2_000);
        }
        assert!(
            !store.lock().events.contains_key("evt_old"),
            "expired ids are swept"
        );
        assert!(store.event_seen_at("evt_7", 2_050));
    }

    #[tokio::test]
    async fn audit_is_capped_at_the_configured_length() {
        let store = MemoryStore::new().with_retention(3, Duration::from_secs(60));
        for i in 0..5 {
            let entry = AuditEntry {
                at: i,
                source: "t".into(),
                summary: format!("{i}"),
            };
            store.append_audit("u", &entry).await.unwrap();
        }
        let trail = store.audit("u", 10).await.unwrap();
        assert_eq!(
            trail.iter().map(|e| e.at).collect::<Vec<_>>(),
            vec![4, 3, 2]
        );
    }

    #[test]
    fn seed_file_loads_and_bad_seed_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("users.json");
        std::fs::write(
            &good,
            r#"{"alice":{"subscriptions":[{"id":"sub_1","status":"active"}]}}"#,
        )
        .unwrap();
        assert_eq!(MemoryStore::from_seed_file(&good).unwrap().len(), 1);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"alice": 5}"#).unwrap();
        let err = MemoryStore::from_seed_file(&bad).err().unwrap();
        assert!(err.contains("bad.json"), "{err}");
    }
}
