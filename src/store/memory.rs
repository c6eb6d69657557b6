//! The embedded in-memory store: one process, not durable. For demos, tests and
//! single-instance trials; production uses Redis.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    AuditEntry, Delivery, EntitlementStore, StoreError, Update, AUDIT_KEPT, DELIVERIES_KEPT,
};
use crate::billing::record::CustomerRecord;
use crate::entitlement::Entitlement;

#[derive(Default)]
struct Data {
    users: HashMap<String, Entitlement>,
    customers: HashMap<String, CustomerRecord>,
    events: HashSet<String>,
    deliveries: VecDeque<Delivery>,
    audit: HashMap<String, VecDeque<AuditEntry>>,
    unlinked: BTreeSet<String>,
}

#[derive(Default)]
pub struct MemoryStore {
    /// A plain mutex is enough: it is only taken on cache misses and writes,
    /// never held across an await, and critical sections are a map operation.
    data: Mutex<Data>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
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
        Ok(self.lock().events.contains(event_id))
    }

    async fn mark_event(&self, event_id: &str) -> Result<(), StoreError> {
        self.lock().events.insert(event_id.to_string());
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

    async fn append_audit(&self, user_id: &str, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut data = self.lock();
        let trail = data.audit.entry(user_id.to_string()).or_default();
        trail.push_front(entry.clone());
        trail.truncate(AUDIT_KEPT);
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
            data.unlinked.insert(customer_id.to_string());
        } else {
            data.unlinked.remove(customer_id);
        }
        Ok(())
    }

    async fn unlinked_customers(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().unlinked.iter().cloned().collect())
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
