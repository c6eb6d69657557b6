//! The Redis store: shared by every gateway instance, updated by webhooks.
//!
//! Key layout (also in ARCHITECTURE.md); `{…}` is a Redis Cluster hash tag, so
//! each record lives in one slot and every script touches a single slot (the
//! user record's compare-and-set also writes its audit list, same tag):
//! - `{prefix}{u:<user id>}`: the user's entitlement (JSON), read with one GET;
//! - `{prefix}{c:<customer id>}`: the customer record the webhooks merge into (JSON);
//! - `{prefix}{e:<event id>}`: "this event was applied", expires after `store.event_ttl`;
//! - `{prefix}{u:<user id>}:audit`: the user's audit trail (list, newest first,
//!   capped at `store.audit_max_entries`, expires `store.audit_ttl` after its last entry);
//! - `{prefix}deliveries`: recent webhook deliveries (list, newest first, capped);
//! - `{prefix}refused`: recent refused webhook deliveries (list, newest first,
//!   capped apart, so forged ones never push out the record of applied ones);
//! - `{prefix}unlinked`: set of customer ids with events but no user link;
//! - `{prefix}ready`: readiness probe on a cluster (`1`, expires after a minute);
//! - channel `{prefix}invalidate`: JSON arrays of user ids whose record changed.
//!
//! On a Redis Cluster no command, pipeline or script spans two slots: the
//! per-record keys carry their own hash tag, the four global keys are one key
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
    Audit, AuditEntry, Delivery, EntitlementStore, Invalidation, OnInvalidation, RefusedDelivery,
    StoreError, UnlinkedPage, Update, AUDIT_KEPT, DELIVERIES_KEPT, REFUSALS_KEPT,
};
use crate::billing::record::CustomerRecord;
use crate::config::StoreConfig;
use crate::entitlement::Entitlement;

mod conn;
mod sentinel;
#[cfg(test)]
mod sentinel_tests;
#[cfg(test)]
mod tls_tests;

use crate::config::RedisMode;
use conn::{Conn, ConnectOptions, SentinelOptions, Topology};

/// Swaps KEYS[1] from ARGV[1] to ARGV[2] ('' = absent) atomically; 1 on success.
const CAS_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
"#;

/// The CAS above on a user record (KEYS[1]) that, when it swaps and ARGV[3] is
/// not '', also pushes ARGV[3] onto the user's audit list (KEYS[2], same hash
/// slot), trims it to ARGV[4] entries and sets its TTL to ARGV[5] seconds: the
/// record and its audit entry in one round trip, atomically.
const CAS_AUDIT_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
if ARGV[3] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return 1
"#;

/// Pushes ARGV[1] onto the list KEYS[1], trims it to ARGV[2] entries and sets
/// its TTL to ARGV[3] seconds: one command where a MULTI pipeline sends five
/// (MULTI, LPUSH, LTRIM, EXPIRE, EXEC).
const PUSH_CAPPED_SCRIPT: &str = r#"
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// How long an applied event id is remembered for the duplicate fast path.
const EVENT_TTL_SECS: u64 = 30 * 24 * 3600;
/// How long an audit trail nobody wrote to is kept.
const AUDIT_TTL_SECS: u64 = 180 * 24 * 3600;
/// Largest `SSCAN COUNT` asked for: bounds the work of one page.
const UNLINKED_MAX_PAGE: usize = 1000;
/// Deadline for any single store operation, so a hung Redis fails fast.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// CAS attempts before giving up (the webhook then answers 503 and Stripe retries).
const CAS_ATTEMPTS: usize = 50;

/// The store's limits and durability settings, from `[store]`.
#[derive(Debug, Clone)]
struct Settings {
    /// `store.event_ttl`, in seconds.
    event_ttl_secs: u64,
    /// `store.audit_max_entries`: entries kept per user's audit list.
    audit_max_entries: usize,
    /// `store.audit_ttl`, in seconds: an audit list untouched this long expires.
    audit_ttl_secs: u64,
    /// `store.min_replica_acks`: replicas `WAIT` must hear from before a
    /// webhook (or an operator write) is acknowledged; 0: no `WAIT`.
    min_replica_acks: u32,
    /// `store.replica_ack_timeout`: how long that `WAIT` may block.
    replica_ack_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            event_ttl_secs: EVENT_TTL_SECS,
            audit_max_entries: AUDIT_KEPT,
            audit_ttl_secs: AUDIT_TTL_SECS,
            min_replica_acks: 0,
            replica_ack_timeout: Duration::from_secs(1),
        }
    }
}

impl From<&StoreConfig> for Settings {
    fn from(config: &StoreConfig) -> Self {
        Settings {
            event_ttl_secs: config.event_ttl.as_secs().max(1),
            audit_max_entries: config.audit_max_entries.max(1),
            audit_ttl_secs: config.audit_ttl.as_secs().max(1),
            min_replica_acks: config.min_replica_acks,
            replica_ack_timeout: config.replica_ack_timeout,
        }
    }
}

/// Builds the audit entry for a value about to be written (see [`Audit`]).
type AuditOf<'a, T> = &'a (dyn Fn(Option<&T>) -> Option<AuditEntry> + Send + Sync);

#[derive(Clone)]
pub(crate) struct RedisStore {
    topology: Topology,
    settings: Settings,
    prefix: String,
    cas: redis::Script,
    cas_audit: redis::Script,
    push_capped: redis::Script,
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
        || read_only(e)
}

/// A write refused because the server is (now) a replica. In sentinel mode the
/// connection has already asked for the new master, so trying again at once
/// reaches it; elsewhere the second try fails the same way.
fn read_only(e: &redis::RedisError) -> bool {
    e.code() == Some("READONLY") || e.to_string().contains("READONLY")
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
        let result = match tokio::time::timeout(OP_TIMEOUT, op(self.topology.conn.clone())).await {
            Ok(Err(e)) if dead_connection(&e) => {
                tracing::info!(error = %e, "redis connection was dead; retrying once on a fresh one");
                timed(op(self.topology.conn.clone())).await
            }
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(
                "redis did not answer in time".into(),
            )),
        };
        result.map_err(|e| self.topology.explain(e))
    }

    /// The store `[store]` names. Connects lazily: the gateway starts (not
    /// ready) even when Redis is down, and reconnects by itself.
    pub(crate) fn open(config: &StoreConfig) -> Result<RedisStore, StoreError> {
        let sentinel = (config.redis_mode == RedisMode::Sentinel).then(|| SentinelOptions {
            urls: config.sentinel_urls.clone(),
            master: config.sentinel_master.clone().unwrap_or_default(),
        });
        let topology = conn::connect(&ConnectOptions {
            url: config.redis_url.clone().unwrap_or_default(),
            tls_ca_file: config.tls_ca_file.clone(),
            tls_client_cert_file: config.tls_client_cert_file.clone(),
            tls_client_key_file: config.tls_client_key_file.clone(),
            sentinel,
            mode: config.redis_mode,
        })?;
        let store = RedisStore::with(topology, &config.key_prefix, Settings::from(config));
        // Once, in the background: the store connects lazily and must not
        // delay or fail the start (`sync` and the CLI open it outside a runtime).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let probe = store.clone();
            runtime.spawn(async move { probe.warn_if_records_can_be_evicted().await });
        }
        Ok(store)
    }

    /// Reads `maxmemory-policy` and, when it is `allkeys-*`, warns: Redis may
    /// then evict user and customer records (which have no TTL) at maxmemory,
    /// and a paying user whose record went answers 402. `volatile-*` only
    /// evicts keys with a TTL (event ids, audit trails), `noeviction` refuses
    /// writes instead (webhooks answer 503 and Stripe retries). Managed Redis
    /// often refuses `CONFIG`: that is logged at debug and otherwise ignored.
    /// While Redis cannot be reached it asks again every few seconds, so a
    /// gateway started before its Redis still checks. Returns the policy read
    /// (`None`: refused), for tests.
    pub(crate) async fn warn_if_records_can_be_evicted(&self) -> Option<String> {
        let mut config_get = redis::cmd("CONFIG");
        config_get.arg("GET").arg("maxmemory-policy");
        let reply: Vec<String> = loop {
            let mut conn = self.topology.conn.clone();
            match tokio::time::timeout(OP_TIMEOUT, config_get.query_async(&mut conn)).await {
                Ok(Ok(reply)) => break reply,
                // The server answered with an error: CONFIG is renamed, denied
                // by an ACL or unknown to a proxy. Nothing more to learn.
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
                    ) =>
                {
                    tracing::debug!(error = %e, "could not read maxmemory-policy (CONFIG refused); not checked");
                    return None;
                }
                // Not reachable (yet): ask again once it may be.
                Ok(Err(_)) | Err(_) => tokio::time::sleep(Duration::from_secs(5)).await,
            }
        };
        let policy = reply.get(1).cloned()?;
        if policy.starts_with("allkeys-") {
            tracing::warn!(
                maxmemory_policy = %policy,
                "redis maxmemory-policy {policy} may evict user and customer records at maxmemory: paying users would get 402; use noeviction or a volatile-* policy"
            );
        }
        Some(policy)
    }

    /// A standalone server at `url` with the default settings (tests).
    #[cfg(test)]
    pub(crate) fn new(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let topology = conn::connect(&ConnectOptions {
            url: url.to_owned(),
            ..ConnectOptions::default()
        })?;
        Ok(RedisStore::with(topology, prefix, Settings::default()))
    }

    /// A Redis Cluster seeded with `url`, with the default settings (tests).
    #[cfg(test)]
    pub(crate) fn new_cluster(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let topology = conn::connect(&ConnectOptions {
            url: url.to_owned(),
            mode: RedisMode::Cluster,
            ..ConnectOptions::default()
        })?;
        Ok(RedisStore::with(topology, prefix, Settings::default()))
    }

    /// The master `master` as the sentinels at `sentinel_urls` report it,
    /// requiring `min_replica_acks` replicas for every acknowledged write (tests).
    #[cfg(test)]
    pub(crate) fn new_sentinel(
        sentinel_urls: &[String],
        master: &str,
        prefix: &str,
        min_replica_acks: u32,
    ) -> Result<RedisStore, StoreError> {
        let topology = conn::connect(&ConnectOptions {
            url: String::new(),
            sentinel: Some(SentinelOptions {
                urls: sentinel_urls.to_vec(),
                master: master.to_owned(),
            }),
            ..ConnectOptions::default()
        })?;
        let settings = Settings {
            min_replica_acks,
            replica_ack_timeout: Duration::from_secs(2),
            ..Settings::default()
        };
        Ok(RedisStore::with(topology, prefix, settings))
    }

    /// A standalone server at `url` requiring `min_replica_acks` replicas for
    /// every acknowledged write (tests).
    #[cfg(test)]
    pub(crate) fn new_with_acks(
        url: &str,
        prefix: &str,
        min_replica_acks: u32,
    ) -> Result<RedisStore, StoreError> {
        let mut store = RedisStore::new(url, prefix)?;
        store.settings.min_replica_acks = min_replica_acks;
        store.settings.replica_ack_timeout = Duration::from_millis(300);
        Ok(store)
    }

    fn with(topology: Topology, prefix: &str, settings: Settings) -> RedisStore {
        RedisStore {
            topology,
            settings,
            prefix: prefix.to_string(),
            cas: redis::Script::new(CAS_SCRIPT),
            cas_audit: redis::Script::new(CAS_AUDIT_SCRIPT),
            push_capped: redis::Script::new(PUSH_CAPPED_SCRIPT),
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

    /// Pushes onto a list that expires `ttl_secs` after its last push, in one
    /// command (a script on one key).
    async fn push_capped_expiring(
        &self,
        key: String,
        text: String,
        cap: usize,
        ttl_secs: u64,
    ) -> Result<(), StoreError> {
        let mut invocation = self.push_capped.key(&key);
        invocation.arg(text).arg(cap).arg(ttl_secs);
        let invocation = &invocation;
        self.run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await
            .map(|_| ())
    }

    /// Recent deliveries. One key, so one slot on a cluster; only ever touched
    /// by commands and pipelines of this key alone, which is why it needs no
    /// hash tag (and keeps its name from before cluster support).
    fn deliveries_key(&self) -> String {
        format!("{}deliveries", self.prefix)
    }

    /// Refused deliveries: one key, like [`Self::deliveries_key`].
    fn refusals_key(&self) -> String {
        format!("{}refused", self.prefix)
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
        // Not MULTI/EXEC: a trim that did not run leaves the list one entry
        // over its cap until the next push, which costs nothing to tolerate;
        // the transaction cost two commands on every delivery. The list
        // expires `event_ttl` after its last push: only records live forever.
        let mut pipe = redis::pipe();
        pipe.lpush(&key, text)
            .ignore()
            .ltrim(&key, 0, cap as isize - 1)
            .ignore()
            .expire(&key, self.settings.event_ttl_secs as i64)
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
        self.update_json_audited(key, update, None).await
    }

    /// [`update_json`](Self::update_json) that, with `audit` = (the audit
    /// list's key, in the record's hash slot; the entry builder), also pushes
    /// the entry built from the value written, in the swap's script: the
    /// audited write costs the same two round trips as an unaudited one.
    async fn update_json_audited<T>(
        &self,
        key: &str,
        update: Update<'_, T>,
        audit: Option<(&str, AuditOf<'_, T>)>,
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
            let entry = match audit {
                Some((_, build)) => build(next.as_ref())
                    .map(|e| serde_json::to_string(&e))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                None => None,
            };
            // Nothing to write: skip the round trip (duplicates are common).
            if raw.is_some() && unchanged_input.as_deref() == Some(next_text.as_str())
                || raw.is_none() && next.is_none()
            {
                // An entry for a value already stored (a change that serialized
                // the same) is still appended, as it would be without the fold.
                if let (Some((audit_key, _)), Some(text)) = (audit, entry) {
                    self.push_capped_expiring(
                        audit_key.to_string(),
                        text,
                        self.settings.audit_max_entries,
                        self.settings.audit_ttl_secs,
                    )
                    .await?;
                }
                return Ok(next);
            }
            let expected = raw.unwrap_or_default();
            let mut invocation = match audit {
                Some((audit_key, _)) => {
                    let mut i = self.cas_audit.key(key);
                    i.key(audit_key);
                    i
                }
                None => self.cas.key(key),
            };
            invocation.arg(&expected).arg(&next_text);
            if audit.is_some() {
                invocation
                    .arg(entry.as_deref().unwrap_or(""))
                    .arg(self.settings.audit_max_entries)
                    .arg(self.settings.audit_ttl_secs);
            }
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

    /// Whether the store can take writes now: the server says `ROLE` master
    /// and accepts a write command (which a replica refuses with `READONLY`, a
    /// master short of `min-replicas-to-write` with `NOREPLICAS`, a master
    /// that cannot persist with `MISCONF`). The write is a `DEL` of a key that
    /// never exists: refused like any write, yet it changes nothing and is not
    /// replicated. One pipelined round trip.
    async fn writable(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ROLE")
            .cmd("DEL")
            .arg(format!("{}ready", self.prefix))
            .ignore();
        let pipe = &pipe;
        let (role,): (Vec<redis::Value>,) = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r == b"master" => Ok(()),
            Some(redis::Value::SimpleString(r)) if r == "master" => Ok(()),
            _ => Err(StoreError::Unavailable(
                "connected to a replica, not a master".into(),
            )),
        }
    }

    /// Succeeds once the writes made since `epoch` was read are on
    /// `min_replica_acks` replicas (Redis `WAIT`), and only if the master did
    /// not change in between (writes may then have gone to a master that was
    /// demoted before they were replicated). The `WAIT` follows a one-key write
    /// on a connection of its own, so it blocks no request's lookup and still
    /// covers every earlier write: a replica acknowledges a position in the
    /// master's single replication stream.
    pub(crate) async fn confirm_replicated(&self, epoch: u64) -> Result<(), StoreError> {
        let switched = || {
            StoreError::Unavailable(
                "the redis master changed while the writes were made; not acknowledged".into(),
            )
        };
        if self.topology.epoch() != epoch {
            return Err(switched());
        }
        let wanted = self.settings.min_replica_acks;
        if wanted == 0 {
            return Ok(());
        }
        let timeout = self.settings.replica_ack_timeout;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("{}acked", self.prefix))
            .arg(1)
            .ignore()
            .cmd("WAIT")
            .arg(wanted)
            .arg(timeout.as_millis().max(1) as u64);
        let mut conn = self.topology.waits.clone();
        let (acks,): (u32,) =
            match tokio::time::timeout(timeout + OP_TIMEOUT, pipe.query_async(&mut conn)).await {
                Ok(result) => result.map_err(unavailable)?,
                Err(_) => {
                    return Err(StoreError::Unavailable(
                        "WAIT did not answer in time".into(),
                    ))
                }
            };
        if acks < wanted {
            return Err(StoreError::Unavailable(format!(
                "{acks} of {wanted} replicas confirmed the writes within {} ms",
                timeout.as_millis()
            )));
        }
        if self.topology.epoch() != epoch {
            return Err(switched());
        }
        Ok(())
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
                // Taken before the client, so a switch while subscribing is seen.
                let mut switches = topology.switches();
                let attempt = failures;
                failures += 1;
                let subscribed = async {
                    let client = topology.pubsub_client(attempt).await?;
                    client.get_async_pubsub().await
                };
                match tokio::time::timeout(OP_TIMEOUT, subscribed).await {
                    Ok(Ok(mut pubsub)) => {
                        if pubsub.subscribe(&channel).await.is_ok() {
                            backoff = Duration::from_millis(100);
                            failures = 0;
                            crate::metrics::store_reconnect();
                            on_change(Invalidation::All);
                            let mut messages = pubsub.on_message();
                            // In sentinel mode the subscription moves with the
                            // master: a demoted master may be cut off from the
                            // new one and would stay silent.
                            let switched = async {
                                match switches.as_mut() {
                                    Some(rx) => {
                                        let _ = rx.changed().await;
                                    }
                                    None => std::future::pending::<()>().await,
                                }
                            };
                            tokio::pin!(switched);
                            loop {
                                tokio::select! {
                                    message = messages.next() => {
                                        let Some(message) = message else { break };
                                        let payload: String =
                                            message.get_payload().unwrap_or_default();
                                        match serde_json::from_str::<Vec<String>>(&payload) {
                                            Ok(users) => users
                                                .into_iter()
                                                .for_each(|u| on_change(Invalidation::User(u))),
                                            Err(_) => on_change(Invalidation::All),
                                        }
                                    }
                                    () = &mut switched => {
                                        tracing::info!("redis master switched; resubscribing");
                                        break;
                                    }
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

    async fn update_audited(
        &self,
        user_id: &str,
        update: Update<'_, Entitlement>,
        audit: Audit<'_>,
    ) -> Result<Option<Entitlement>, StoreError> {
        let audit_key = self.audit_key(user_id);
        self.update_json_audited(&self.user_key(user_id), update, Some((&audit_key, audit)))
            .await
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

    async fn record_refusal(&self, refusal: &RefusedDelivery) -> Result<(), StoreError> {
        self.push_capped(self.refusals_key(), refusal, REFUSALS_KEPT)
            .await
    }

    async fn recent_refusals(&self, limit: usize) -> Result<Vec<RefusedDelivery>, StoreError> {
        self.read_list(self.refusals_key(), limit).await
    }

    async fn append_audit(&self, user_id: &str, entry: &AuditEntry) -> Result<(), StoreError> {
        let text = serde_json::to_string(entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.push_capped_expiring(
            self.audit_key(user_id),
            text,
            self.settings.audit_max_entries,
            self.settings.audit_ttl_secs,
        )
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

    async fn unlinked_page(&self, cursor: u64, limit: usize) -> Result<UnlinkedPage, StoreError> {
        // SSCAN does bounded work per call; SMEMBERS on a large set blocks
        // Redis for every client (about 0.3 s per million members).
        let key = &self.unlinked_key();
        let count = limit.clamp(1, UNLINKED_MAX_PAGE);
        let (next_cursor, mut customers): (u64, Vec<String>) = self
            .run(|mut c| async move {
                redis::cmd("SSCAN")
                    .arg(key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        customers.sort();
        Ok(UnlinkedPage {
            customers,
            next_cursor,
        })
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
            .ignore()
            .expire(&deliveries, self.settings.event_ttl_secs as i64)
            .ignore();
        let pipe = &pipe;
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.topology.conn.is_cluster() {
            // The cluster serves every slot and a primary takes a write (see
            // `conn::ready`).
            let probe = &self.ready_probe_key();
            return self.run(|c| conn::ready(c, probe)).await;
        }
        self.writable().await
    }

    fn write_epoch(&self) -> u64 {
        self.topology.epoch()
    }

    async fn confirm_writes(&self, epoch: u64) -> Result<(), StoreError> {
        self.confirm_replicated(epoch).await
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
    async fn an_acl_user_with_a_password_passes_the_suite_and_a_wrong_one_is_not_shown() {
        let redis = TestRedis::start();
        redis.command(&[
            "ACL",
            "SETUSER",
            "paygate",
            "on",
            ">s3cret-pw",
            "~*",
            "&*",
            "+@all",
        ]);
        let url = format!("redis://paygate:s3cret-pw@127.0.0.1:{}/0", redis.port());
        let store = RedisStore::new(&url, "acl:").unwrap();
        crate::store::behaviour::run_all(&store).await;

        let wrong = format!("redis://paygate:not-the-pw@127.0.0.1:{}/0", redis.port());
        let store = RedisStore::new(&wrong, "acl:").unwrap();
        let error = store.ping().await.expect_err("a wrong password is refused");
        let text = error.to_string();
        assert!(!text.contains("not-the-pw"), "{text}");
    }

    fn ttl(redis: &TestRedis, key: &str) -> i64 {
        redis
            .command(&["TTL", key])
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn audit_and_event_retention_follow_the_settings_and_records_never_expire() {
        let redis = TestRedis::start();
        let topology = conn::connect(&ConnectOptions {
            url: redis.url(),
            ..ConnectOptions::default()
        })
        .unwrap();
        let settings = Settings {
            event_ttl_secs: 600,
            audit_max_entries: 3,
            audit_ttl_secs: 900,
            ..Settings::default()
        };
        let store = RedisStore::with(topology, "t:", settings);
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
        assert!((1..=900).contains(&ttl(&redis, "t:{u:u}:audit")));

        // The audited write: record without TTL, trail capped and expiring.
        let audit = |_: Option<&Entitlement>| {
            Some(AuditEntry {
                at: 9,
                source: "t".into(),
                summary: "s".into(),
            })
        };
        store
            .update_audited("v", &|_| Some(Entitlement::default()), &audit)
            .await
            .unwrap();
        assert_eq!(ttl(&redis, "t:{u:v}"), -1, "user records never expire");
        assert!((1..=900).contains(&ttl(&redis, "t:{u:v}:audit")));
        store
            .update_customer("cus_x", &|_| Some(CustomerRecord::new("cus_x")))
            .await
            .unwrap();
        assert_eq!(
            ttl(&redis, "t:{c:cus_x}"),
            -1,
            "customer records never expire"
        );

        let delivery = Delivery {
            event_id: "evt_ttl".into(),
            event_type: "t".into(),
            result: "applied".into(),
            at: 1,
        };
        store
            .complete_event("evt_ttl", &[], &delivery)
            .await
            .unwrap();
        assert!((1..=600).contains(&ttl(&redis, "t:{e:evt_ttl}")));
        assert!(
            (1..=600).contains(&ttl(&redis, "t:deliveries")),
            "the deliveries list expires event_ttl after its last delivery"
        );
        store.mark_event("evt_ttl2").await.unwrap();
        assert!((1..=600).contains(&ttl(&redis, "t:{e:evt_ttl2}")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_allkeys_eviction_policy_is_detected_and_a_refused_config_tolerated() {
        let redis = TestRedis::start_with(&["--maxmemory-policy", "allkeys-lru"]);
        let store = RedisStore::new(&redis.url(), "t:").unwrap();
        assert_eq!(
            store.warn_if_records_can_be_evicted().await.as_deref(),
            Some("allkeys-lru")
        );
        let managed = TestRedis::start_with(&["--rename-command", "CONFIG", ""]);
        let store = RedisStore::new(&managed.url(), "t:").unwrap();
        assert_eq!(store.warn_if_records_can_be_evicted().await, None);
        assert!(
            store.ping().await.is_ok(),
            "a refused CONFIG breaks nothing"
        );
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
