//! The Redis store: shared by every gateway instance, updated by webhooks.
//!
//! Key layout (also in ARCHITECTURE.md); `{…}` is a Redis Cluster hash tag, so
//! each record lives in one slot and every script touches a single key:
//! - `{prefix}{u:<user id>}`: the user's entitlement (JSON), read with one GET;
//! - `{prefix}{c:<customer id>}`: the customer record the webhooks merge into (JSON);
//! - `{prefix}{e:<event id>}`: "this event was applied", expires after 30 days;
//! - `{prefix}{u:<user id>}:audit`: the user's audit trail (list, newest first, capped);
//! - `{prefix}deliveries`: recent webhook deliveries (list, newest first, capped);
//! - `{prefix}unlinked`: set of customer ids with events but no user link;
//! - `{prefix}ready`: readiness probe on a cluster (`1`, expires after a minute);
//! - channel `{prefix}invalidate`: JSON arrays of user ids whose record changed.
//!
//! On a Redis Cluster no command, pipeline or script spans two slots: the
//! per-record keys carry their own hash tag, the three global keys are one key
//! each (one slot), and `complete_event` splits into single-slot pipelines.
//! Invalidations use plain `PUBLISH`, which a cluster broadcasts to every node,
//! so the listener may subscribe on any node (see `conn.rs`).
//!
//! Writes are optimistic compare-and-set: read, compute in Rust, then a Lua
//! script swaps the value only if it is still what was read; on a conflict the
//! update is recomputed. That keeps the merge logic in one (Rust) place and still
//! lets two gateways apply events concurrently without losing one.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    AuditEntry, Delivery, EntitlementStore, Invalidation, OnInvalidation, StoreError, Update,
    AUDIT_KEPT, DELIVERIES_KEPT,
};
use crate::billing::record::CustomerRecord;
use crate::config::StoreConfig;
use crate::entitlement::Entitlement;

mod conn;

use conn::{Conn, ConnectOptions, Topology};

/// Swaps KEYS[1] from ARGV[1] to ARGV[2] ('' = absent) atomically; 1 on success.
const CAS_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
"#;

/// How long an applied event id is remembered for the duplicate fast path.
const EVENT_TTL_SECS: u64 = 30 * 24 * 3600;
/// Deadline for any single store operation, so a hung Redis fails fast.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// CAS attempts before giving up (the webhook then answers 503 and Stripe retries).
const CAS_ATTEMPTS: usize = 50;

/// The store's limits and durability settings, from `[store]`.
#[derive(Debug, Clone)]
struct Settings {
    /// `store.event_ttl`, in seconds.
    event_ttl_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            event_ttl_secs: EVENT_TTL_SECS,
        }
    }
}

impl From<&StoreConfig> for Settings {
    fn from(config: &StoreConfig) -> Self {
        Settings {
            event_ttl_secs: config.event_ttl.as_secs().max(1),
        }
    }
}

#[derive(Clone)]
pub(crate) struct RedisStore {
    topology: Topology,
    settings: Settings,
    prefix: String,
    cas: redis::Script,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

async fn timed<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(StoreError::Unavailable(
            "redis did not answer in time".into(),
        )),
    }
}

/// True when a command failed because its pooled connection had died (Redis
/// restarted, a proxy or NAT dropped an idle socket): the connection manager
/// reconnects on such an error, so the same command can go again at once on a
/// fresh connection. A refused connection or a timeout is an outage, not a
/// stale socket: trying again would only double the wait.
fn dead_connection(e: &redis::RedisError) -> bool {
    (e.is_connection_dropped() || e.is_io_error()) && !e.is_connection_refusal() && !e.is_timeout()
}

impl RedisStore {
    /// Runs one store command (a command, pipeline or script, each safe to
    /// repeat) and, if it failed on a dead pooled connection, once more on a
    /// fresh one before the request or webhook is failed.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(OP_TIMEOUT, op(self.topology.conn.clone())).await {
            Ok(Err(e)) if dead_connection(&e) => {
                tracing::info!(error = %e, "redis connection was dead; retrying once on a fresh one");
                timed(op(self.topology.conn.clone())).await
            }
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(
                "redis did not answer in time".into(),
            )),
        }
    }

    /// The store `[store]` names. Connects lazily: the gateway starts (not
    /// ready) even when Redis is down, and reconnects by itself.
    pub(crate) fn open(config: &StoreConfig) -> Result<RedisStore, StoreError> {
        let url = config.redis_url.clone().unwrap_or_default();
        let topology = conn::connect(&ConnectOptions {
            url,
            mode: config.redis_mode,
        })?;
        Ok(RedisStore::with(
            topology,
            &config.key_prefix,
            Settings::from(config),
        ))
    }

    /// A standalone server at `url` with the default settings (tests).
    #[cfg(test)]
    pub(crate) fn new(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let topology = conn::connect(&ConnectOptions {
            url: url.to_owned(),
            mode: crate::config::RedisMode::Standalone,
        })?;
        Ok(RedisStore::with(topology, prefix, Settings::default()))
    }

    /// A Redis Cluster seeded with `url`, with the default settings (tests).
    #[cfg(test)]
    pub(crate) fn new_cluster(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let topology = conn::connect(&ConnectOptions {
            url: url.to_owned(),
            mode: crate::config::RedisMode::Cluster,
        })?;
        Ok(RedisStore::with(topology, prefix, Settings::default()))
    }

    fn with(topology: Topology, prefix: &str, settings: Settings) -> RedisStore {
        RedisStore {
            topology,
            settings,
            prefix: prefix.to_string(),
            cas: redis::Script::new(CAS_SCRIPT),
        }
    }

    pub(crate) fn user_key(&self, user_id: &str) -> String {
        format!("{}{{u:{user_id}}}", self.prefix)
    }

    pub(crate) fn customer_key(&self, customer_id: &str) -> String {
        format!("{}{{c:{customer_id}}}", self.prefix)
    }

    fn event_key(&self, event_id: &str) -> String {
        format!("{}{{e:{event_id}}}", self.prefix)
    }

    fn audit_key(&self, user_id: &str) -> String {
        format!("{}{{u:{user_id}}}:audit", self.prefix)
    }

    /// Recent deliveries. One key, so one slot on a cluster; only ever touched
    /// by commands and pipelines of this key alone, which is why it needs no
    /// hash tag (and keeps its name from before cluster support).
    fn deliveries_key(&self) -> String {
        format!("{}deliveries", self.prefix)
    }

    /// Customers without a user link: one key, like [`Self::deliveries_key`].
    fn unlinked_key(&self) -> String {
        format!("{}unlinked", self.prefix)
    }

    /// Written (expiring) by readiness on a cluster, to prove a primary takes writes.
    fn ready_probe_key(&self) -> String {
        format!("{}ready", self.prefix)
    }

    async fn push_capped<T: Serialize>(
        &self,
        key: String,
        value: &T,
        cap: usize,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut pipe = redis::pipe();
        // On a cluster, redis-rs follows a MOVED inside a plain pipeline but
        // not inside MULTI/EXEC (the transaction just aborts), so there the two
        // commands go unwrapped: another push between them only trims once more.
        if !self.topology.conn.is_cluster() {
            pipe.atomic();
        }
        pipe.lpush(&key, text)
            .ignore()
            .ltrim(&key, 0, cap as isize - 1)
            .ignore();
        let pipe = &pipe;
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    async fn read_list<T: DeserializeOwned>(
        &self,
        key: String,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key_ref = &key;
        let raw: Vec<String> = self
            .run(|mut c| async move { c.lrange(key_ref, 0, limit as isize - 1).await })
            .await?;
        raw.iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
            })
            .collect()
    }

    fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let raw: Option<String> = self.run(|mut c| async move { c.get(key).await }).await?;
        raw.map(|text| {
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
        })
        .transpose()
    }

    /// Optimistic read-compute-swap of one JSON record.
    async fn update_json<T>(
        &self,
        key: &str,
        update: Update<'_, T>,
    ) -> Result<Option<T>, StoreError>
    where
        T: Serialize + DeserializeOwned + PartialEq,
    {
        for _ in 0..CAS_ATTEMPTS {
            let raw: Option<String> = self.run(|mut c| async move { c.get(key).await }).await?;
            let current: Option<T> = match &raw {
                Some(text) => Some(
                    serde_json::from_str(text)
                        .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?,
                ),
                None => None,
            };
            let unchanged_input = current
                .as_ref()
                .map(|c| serde_json::to_string(c).ok())
                .unwrap_or_default();
            let next = update(current);
            let next_text = match &next {
                Some(value) => {
                    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?
                }
                None => String::new(),
            };
            // Nothing to write: skip the round trip (duplicates are common).
            if raw.is_some() && unchanged_input.as_deref() == Some(next_text.as_str())
                || raw.is_none() && next.is_none()
            {
                return Ok(next);
            }
            let expected = raw.unwrap_or_default();
            let mut invocation = self.cas.key(key);
            invocation.arg(&expected).arg(&next_text);
            let invocation = &invocation;
            let swapped: i64 = self
                .run(|mut c| async move { invocation.invoke_async(&mut c).await })
                .await?;
            if swapped == 1 {
                return Ok(next);
            }
            // Someone else wrote in between: recompute from their value.
            tokio::task::yield_now().await;
        }
        Err(StoreError::Contention(key.to_string()))
    }

    /// Listens on the invalidation channel for as long as the process runs,
    /// reconnecting with backoff. After every (re)subscribe it reports
    /// [`Invalidation::All`], because messages sent while disconnected are lost.
    pub(crate) fn spawn_invalidation_listener(
        &self,
        on_change: impl Fn(Invalidation) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let topology = self.topology.clone();
        let channel = self.channel();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            // Failed attempts in a row: on a cluster, each one tries another node.
            let mut failures = 0;
            loop {
                let client = topology.pubsub_client(failures).await;
                failures += 1;
                match tokio::time::timeout(OP_TIMEOUT, client.get_async_pubsub()).await {
                    Ok(Ok(mut pubsub)) => {
                        if pubsub.subscribe(&channel).await.is_ok() {
                            backoff = Duration::from_millis(100);
                            failures = 0;
                            crate::metrics::store_reconnect();
                            on_change(Invalidation::All);
                            let mut messages = pubsub.on_message();
                            while let Some(message) = messages.next().await {
                                let payload: String = message.get_payload().unwrap_or_default();
                                match serde_json::from_str::<Vec<String>>(&payload) {
                                    Ok(users) => users
                                        .into_iter()
                                        .for_each(|u| on_change(Invalidation::User(u))),
                                    Err(_) => on_change(Invalidation::All),
                                }
                            }
                            tracing::warn!("invalidation subscription lost; reconnecting");
                        }
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "invalidation subscribe failed"),
                    Err(_) => tracing::debug!("invalidation subscribe timed out"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        })
    }
}

impl RedisStore {
    /// `complete_event` on a cluster, where no pipeline may span slots: two
    /// single-slot pipelines sent together, so still one round trip of wall time.
    /// 1. On the event key's node: `PUBLISH` (keyless on the server, and a
    ///    cluster broadcasts it to every node), then `SET` the event id. In this
    ///    order, so an event id is never remembered without its announcement
    ///    having gone out: a redelivery would be taken for a duplicate and the
    ///    other instances would keep a stale entry.
    /// 2. On the deliveries list's node: `LPUSH` + `LTRIM`.
    async fn complete_event_on_cluster(
        &self,
        event_id: &str,
        users: &[String],
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        let event_key = self.event_key(event_id);
        let mut announce = redis::pipe();
        if !users.is_empty() {
            let payload =
                serde_json::to_string(users).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            announce.publish(self.channel(), payload).ignore();
        }
        announce
            .set_ex(&event_key, 1, self.settings.event_ttl_secs)
            .ignore();
        let (event_key, announce) = (&event_key, &announce);
        let mark = self.run(|mut c| async move { c.pipeline_at(event_key, announce).await });
        let record = self.record_delivery(delivery);
        futures_util::future::try_join(mark, record).await?;
        Ok(())
    }
}

#[async_trait]
impl EntitlementStore for RedisStore {
    async fn load(&self, user_id: &str) -> Result<Option<Entitlement>, StoreError> {
        self.get_json(&self.user_key(user_id)).await
    }

    async fn update(
        &self,
        user_id: &str,
        update: Update<'_, Entitlement>,
    ) -> Result<Option<Entitlement>, StoreError> {
        self.update_json(&self.user_key(user_id), update).await
    }

    async fn load_customer(&self, customer_id: &str) -> Result<Option<CustomerRecord>, StoreError> {
        self.get_json(&self.customer_key(customer_id)).await
    }

    async fn update_customer(
        &self,
        customer_id: &str,
        update: Update<'_, CustomerRecord>,
    ) -> Result<Option<CustomerRecord>, StoreError> {
        self.update_json(&self.customer_key(customer_id), update)
            .await
    }

    async fn event_seen(&self, event_id: &str) -> Result<bool, StoreError> {
        let key = &self.event_key(event_id);
        self.run(|mut c| async move { c.exists(key).await }).await
    }

    async fn mark_event(&self, event_id: &str) -> Result<(), StoreError> {
        let key = &self.event_key(event_id);
        self.run(|mut c| async move {
            c.set_ex::<_, _, ()>(key, 1, self.settings.event_ttl_secs)
                .await
        })
        .await
    }

    async fn publish_invalidation(&self, user_ids: &[String]) -> Result<(), StoreError> {
        if user_ids.is_empty() {
            return Ok(());
        }
        let payload =
            serde_json::to_string(user_ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (channel, payload) = (&self.channel(), &payload);
        self.run(|mut c| async move { c.publish::<_, _, ()>(channel, payload).await })
            .await
    }

    async fn record_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.push_capped(self.deliveries_key(), delivery, DELIVERIES_KEPT)
            .await
    }

    async fn recent_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.read_list(self.deliveries_key(), limit).await
    }

    async fn append_audit(&self, user_id: &str, entry: &AuditEntry) -> Result<(), StoreError> {
        self.push_capped(self.audit_key(user_id), entry, AUDIT_KEPT)
            .await
    }

    async fn audit(&self, user_id: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read_list(self.audit_key(user_id), limit).await
    }

    async fn set_unlinked(&self, customer_id: &str, unlinked: bool) -> Result<(), StoreError> {
        let key = &self.unlinked_key();
        if unlinked {
            self.run(|mut c| async move { c.sadd::<_, _, ()>(key, customer_id).await })
                .await
        } else {
            self.run(|mut c| async move { c.srem::<_, _, ()>(key, customer_id).await })
                .await
        }
    }

    async fn unlinked_customers(&self) -> Result<Vec<String>, StoreError> {
        let key = &self.unlinked_key();
        let mut ids: Vec<String> = self
            .run(|mut c| async move { c.smembers(key).await })
            .await?;
        ids.sort();
        Ok(ids)
    }

    async fn complete_event(
        &self,
        event_id: &str,
        users: &[String],
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        if self.topology.conn.is_cluster() {
            return self
                .complete_event_on_cluster(event_id, users, delivery)
                .await;
        }
        // One pipelined round trip instead of three: on the ingestion path every
        // round trip counts (see benches/ingest.rs).
        let deliveries = self.deliveries_key();
        let record =
            serde_json::to_string(delivery).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut pipe = redis::pipe();
        if !users.is_empty() {
            let payload =
                serde_json::to_string(users).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            pipe.publish(self.channel(), payload).ignore();
        }
        pipe.set_ex(self.event_key(event_id), 1, self.settings.event_ttl_secs)
            .ignore()
            .lpush(&deliveries, record)
            .ignore()
            .ltrim(&deliveries, 0, DELIVERIES_KEPT as isize - 1)
            .ignore();
        let pipe = &pipe;
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Standalone: PING. Cluster: the cluster serves every slot and a
        // primary takes a write (see `conn::ready`).
        let probe = &self.ready_probe_key();
        self.run(|c| conn::ready(c, probe)).await
    }

    fn listen_for_invalidations(&self, on_change: OnInvalidation) {
        self.spawn_invalidation_listener(on_change);
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod cluster_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use paygate_testkit::TestRedis;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_store_behaviour_suite() {
        let redis = TestRedis::start();
        let store = RedisStore::new(&redis.url(), "t:").unwrap();
        crate::store::behaviour::run_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_are_hash_tagged_per_record() {
        let store = RedisStore::new("redis://127.0.0.1:1/0", "paygate:").unwrap();
        assert_eq!(store.user_key("42"), "paygate:{u:42}");
        assert_eq!(store.customer_key("cus_1"), "paygate:{c:cus_1}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_redis_is_an_error_not_a_hang() {
        let store = RedisStore::new("redis://127.0.0.1:1/0", "paygate:").unwrap();
        assert!(store.load("u").await.is_err());
        assert!(store.ping().await.is_err());
        assert!(store.update("u", &|c| c).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalidations_reach_listeners() {
        let redis = TestRedis::start();
        let store = RedisStore::new(&redis.url(), "t:").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        store.spawn_invalidation_listener(move |change| {
            let _ = tx.send(change);
        });
        assert_eq!(
            rx.recv().await,
            Some(Invalidation::All),
            "subscribing announces a full invalidation"
        );
        store
            .publish_invalidation(&["u1".into(), "u2".into()])
            .await
            .unwrap();
        assert_eq!(rx.recv().await, Some(Invalidation::User("u1".into())));
        assert_eq!(rx.recv().await, Some(Invalidation::User("u2".into())));
    }
}
