//! How the Redis store reaches Redis: the connection its commands go through
//! and the client its invalidation listener subscribes with.
//!
//! Every topology is one [`Conn`] that implements redis-rs's
//! `ConnectionLike`, so the store's commands, pipelines and scripts are written
//! once and run the same on each. This module must not know about keys or
//! records; it only connects, and reconnects when the topology changes. TLS
//! (`rediss://`, a private CA, mutual TLS) is set up in one place, [`client`],
//! so every topology's nodes are reached the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    ClientTlsConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult,
    TlsCertificates, Value,
};

use super::sentinel::Sentinel;
use crate::config::{redact_url, RedisMode};
use crate::store::StoreError;

/// What connecting needs to know, from `[store]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectOptions {
    /// Standalone: the server; cluster: a seed node.
    pub(crate) url: String,
    /// `rediss://` only: PEM bundle of the CAs to trust instead of the system roots.
    pub(crate) tls_ca_file: Option<PathBuf>,
    /// `rediss://` only: client certificate and key (PEM) for mutual TLS.
    pub(crate) tls_client_cert_file: Option<PathBuf>,
    pub(crate) tls_client_key_file: Option<PathBuf>,
    /// Sentinel mode: the sentinels and the master's name (then `url` gives
    /// only the master's credentials, database and scheme).
    pub(crate) sentinel: Option<SentinelOptions>,
    /// `store.redis_mode`.
    pub(crate) mode: RedisMode,
}

/// `store.sentinel_urls` and `store.sentinel_master`.
#[derive(Debug, Clone)]
pub(crate) struct SentinelOptions {
    pub(crate) urls: Vec<String>,
    pub(crate) master: String,
}

/// The connection the store's commands go through. Cheap to clone: every
/// variant is a handle to shared, self-healing connections.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server, through redis-rs's connection manager (reconnects by itself).
    Single(ConnectionManager),
    /// The master Sentinel reports, followed through failovers.
    Sentinel(Sentinel),
    /// Redis Cluster: redis-rs's cluster client routes each command to the
    /// primary of its key's slot, follows `MOVED`/`ASK`, and re-reads the slot
    /// map after a redirect or a dead node (a failover).
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Whether commands go to a Redis Cluster (where a pipeline may only hold
    /// keys of one slot).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Runs `pipe` on the node that owns `key`'s slot. On a cluster this lets a
    /// pipeline carry keyless commands (`PUBLISH`) next to `key`'s commands:
    /// redis-rs would otherwise route `PUBLISH` by its channel name and refuse
    /// the pipeline as cross-slot. A redirect re-sends the whole pipeline, so
    /// its commands must be safe to repeat; it must not be atomic.
    pub(crate) async fn pipeline_at(&mut self, key: &str, pipe: &Pipeline) -> RedisResult<()> {
        match self {
            Conn::Single(c) => pipe.query_async(c).await,
            Conn::Sentinel(c) => pipe.query_async(c).await,
            Conn::Cluster(c) => {
                let route =
                    SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
                // Not atomic (no MULTI/EXEC): every reply is read.
                let replies = c.route_pipeline(pipe.clone(), 0, pipe.len(), route).await?;
                // A server error inside a pipeline comes back as a value.
                replies
                    .into_iter()
                    .try_for_each(|v| v.extract_error().map(|_| ()))
            }
        }
    }
}

/// Readiness on a cluster: the node asked reports `cluster_state:ok` (every
/// slot served) and the primary of `probe_key`'s slot takes a write. Two light
/// commands, sent together; elsewhere a plain `PING`.
pub(crate) async fn ready(mut conn: Conn, probe_key: &str) -> RedisResult<()> {
    if !conn.is_cluster() {
        return redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ());
    }
    let mut info_conn = conn.clone();
    let info = async move {
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async::<String>(&mut info_conn)
            .await
    };
    let mut probe = redis::cmd("SET");
    probe.arg(probe_key).arg(1).arg("PX").arg(60_000);
    let write = probe.query_async::<()>(&mut conn);
    let (info, ()) = futures_util::future::try_join(info, write).await?;
    if info.lines().any(|l| l.trim() == "cluster_state:ok") {
        Ok(())
    } else {
        Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "redis cluster is not ok",
            info.lines()
                .find(|l| l.starts_with("cluster_state:"))
                .unwrap_or("cluster_state unknown")
                .to_owned(),
        )))
    }
}

/// A connected topology: the command connection and the client pub/sub uses.
#[derive(Clone)]
pub(crate) struct Topology {
    pub(crate) conn: Conn,
    /// A client of a server that sees every `PUBLISH` of the store (sentinel
    /// mode: unused, see [`Topology::pubsub_client`]).
    pub(crate) pubsub: redis::Client,
    /// The connection `WAIT` goes through: `WAIT` blocks its connection, so it
    /// must not share the one request lookups use. It still covers every
    /// earlier write of the store, because a replica acknowledges a position in
    /// the master's single replication stream.
    pub(crate) waits: Conn,
}

impl Topology {
    /// The client to (re)subscribe with after `failures` failed attempts in a
    /// row: the current master in sentinel mode, a node of the cluster in
    /// cluster mode ([`Topology::cluster_pubsub_client`]), else the server.
    pub(crate) async fn pubsub_client(&self, failures: u32) -> RedisResult<redis::Client> {
        match &self.conn {
            Conn::Sentinel(s) => s.master_client().await,
            Conn::Cluster(_) => Ok(self.cluster_pubsub_client(failures).await),
            Conn::Single(_) => Ok(self.pubsub.clone()),
        }
    }

    /// Changes whenever the server taking the writes is replaced (sentinel
    /// mode); `None` where the topology never switches by itself.
    pub(crate) fn switches(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match &self.conn {
            Conn::Sentinel(s) => Some(s.switches()),
            _ => None,
        }
    }

    /// How many times the server taking the writes was replaced (0 where it
    /// never is): writes made under two epochs may have gone to two masters.
    pub(crate) fn epoch(&self) -> u64 {
        match &self.conn {
            Conn::Sentinel(s) => s.epoch(),
            _ => 0,
        }
    }
}

impl Topology {
    /// `error` with what to check when it is how a TLS misconfiguration shows
    /// (redis-rs reports the bare rustls or socket error, which does not say
    /// which `[store]` key is wrong). Other errors pass through unchanged.
    pub(crate) fn explain(&self, error: StoreError) -> StoreError {
        let StoreError::Unavailable(message) = error else {
            return error;
        };
        let tls = match self.pubsub.get_connection_info().addr() {
            ConnectionAddr::TcpTls { .. } => true,
            ConnectionAddr::Tcp(..) => false,
            _ => return StoreError::Unavailable(message),
        };
        StoreError::Unavailable(match tls_hint(&message, tls) {
            Some(hint) => format!("{hint}: {message}"),
            None => message,
        })
    }
}

/// What a failure `message` means when it is a TLS misconfiguration; `tls` is
/// whether the URL was `rediss://` (else `redis://` over TCP).
fn tls_hint(message: &str, tls: bool) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    if !tls {
        // A TLS-only port resets a plain client's first command; a crashed or
        // restarted server shows as a refused or closed connection instead.
        return lower.contains("connection reset").then_some(
            "redis reset a plain connection (if that port serves TLS, the URL must be rediss://)",
        );
    }
    if lower.contains("invalid peer certificate") {
        Some("redis TLS: the server's certificate is not trusted (check store.tls_ca_file and the URL's host)")
    } else if lower.contains("certificaterequired")
        || lower.contains("handshakefailure")
        || lower.contains("badcertificate")
        || lower.contains("unknownca")
        || lower.contains("decrypterror")
    {
        Some("redis TLS: the server refused the client (it requires a client certificate it trusts: check store.tls_client_cert_file and store.tls_client_key_file)")
    } else if lower.contains("corrupt message") || lower.contains("invalidcontenttype") {
        Some("redis TLS: the server does not speak TLS on that port (use redis:// or the TLS port)")
    } else {
        None
    }
}

impl Topology {
    /// A cluster node to subscribe with after `failures` failed attempts in a
    /// row. A cluster broadcasts every `PUBLISH` to all its nodes, so any node
    /// will do: the seed first, then, while subscribing keeps failing (the
    /// seed node died), the other nodes the cluster reports, in turn.
    async fn cluster_pubsub_client(&self, failures: u32) -> redis::Client {
        let Conn::Cluster(cluster) = &self.conn else {
            return self.pubsub.clone();
        };
        if failures == 0 {
            return self.pubsub.clone();
        }
        let mut cluster = cluster.clone();
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let slots = slots.query_async::<Value>(&mut cluster);
        let nodes = match tokio::time::timeout(Duration::from_secs(1), slots).await {
            Ok(Ok(value)) => node_addresses(&value),
            _ => Vec::new(),
        };
        match nodes.get(failures as usize % (nodes.len() + 1)) {
            Some((host, port)) => {
                let seed = self.pubsub.get_connection_info().clone();
                let addr = match seed.addr().clone() {
                    ConnectionAddr::TcpTls {
                        insecure,
                        tls_params,
                        ..
                    } => ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure,
                        tls_params,
                    },
                    _ => ConnectionAddr::Tcp(host.clone(), *port),
                };
                redis::Client::open(seed.set_addr(addr)).unwrap_or_else(|_| self.pubsub.clone())
            }
            // One turn in every `nodes + 1` goes back to the seed.
            None => self.pubsub.clone(),
        }
    }
}

/// Every node (`host`, `port`) in a `CLUSTER SLOTS` reply, primaries and
/// replicas, without repeats.
fn node_addresses(slots: &Value) -> Vec<(String, u16)> {
    let mut nodes = Vec::new();
    let Value::Array(ranges) = slots else {
        return nodes;
    };
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        // [start, end, [host, port, id, …], [host, port, id, …]…]
        for node in parts.iter().skip(2) {
            let Value::Array(fields) = node else { continue };
            let host = match fields.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => continue,
            };
            let port = match fields.get(1) {
                Some(Value::Int(p)) => u16::try_from(*p).ok(),
                _ => None,
            };
            if let Some(port) = port {
                if !host.is_empty() && !nodes.contains(&(host.clone(), port)) {
                    nodes.push((host, port));
                }
            }
        }
    }
    nodes
}

/// Connects lazily: the gateway starts (not ready) even when Redis is down, and
/// the connection reconnects by itself when it comes back.
pub(crate) fn connect(options: &ConnectOptions) -> Result<Topology, StoreError> {
    if let Some(sentinel) = &options.sentinel {
        return connect_sentinel(options, sentinel);
    }
    let client = client(&options.url, options)?;
    if options.mode == RedisMode::Cluster {
        let conn = Conn::Cluster(connect_cluster(&client, options)?);
        // `WAIT` is per shard on a cluster; `min_replica_acks` is refused
        // there at config time, so this connection only answers `WAIT 0`.
        return Ok(Topology {
            waits: conn.clone(),
            conn,
            pubsub: client,
        });
    }
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    let conn = Conn::Single(
        ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| StoreError::Unavailable(e.to_string()))?,
    );
    let waits = ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(Topology {
        conn,
        pubsub: client,
        waits: Conn::Single(waits),
    })
}

/// Sentinel mode: nothing is asked until the first command (so the gateway
/// starts, not ready, while the sentinels are down). `options.url`, when set,
/// gives the master's credentials, database and scheme; its host is ignored.
fn connect_sentinel(
    options: &ConnectOptions,
    sentinel: &SentinelOptions,
) -> Result<Topology, StoreError> {
    let base_url = if options.url.is_empty() {
        "redis://127.0.0.1/0"
    } else {
        options.url.as_str()
    };
    let base = base_url
        .into_connection_info()
        .map_err(|e| StoreError::Unavailable(format!("bad redis_url: {e}")))?;
    let client = redis::Client::open(base.clone())
        .map_err(|e| StoreError::Unavailable(format!("bad redis_url: {e}")))?;
    let tls = if base_url.starts_with("rediss://") {
        tls_certificates(options)?
    } else {
        None
    };
    // The sentinels themselves: `rediss://` ones with the same CA and identity.
    let sentinels = sentinel
        .urls
        .iter()
        .map(|url| self::client(url, options))
        .collect::<Result<Vec<_>, _>>()?;
    let handle = Sentinel::new(sentinels, &sentinel.master, base, tls)
        .map_err(|e| StoreError::Unavailable(format!("bad sentinel_urls: {e}")))?;
    Ok(Topology {
        waits: Conn::Sentinel(handle.for_waits()),
        conn: Conn::Sentinel(handle),
        pubsub: client,
    })
}

/// The client for one node's `url`, with `options`' TLS settings when the URL
/// is `rediss://` (a `redis://` URL is plain and ignores them). Every topology
/// builds its node clients here, so TLS works the same on each.
///
/// Errors name the file or setting at fault and never show the URL (it may
/// hold a password).
pub(crate) fn client(url: &str, options: &ConnectOptions) -> Result<redis::Client, StoreError> {
    let bad_url = |e: redis::RedisError| {
        StoreError::Unavailable(format!("bad redis URL {}: {e}", redact_url(url)))
    };
    if !url.starts_with("rediss://") {
        return redis::Client::open(url).map_err(bad_url);
    }
    let info = url.into_connection_info().map_err(bad_url)?;
    match tls_certificates(options)? {
        None => redis::Client::open(info).map_err(bad_url),
        // The files held PEM blocks, but rustls could not use them (an
        // encrypted key, a malformed certificate).
        Some(certificates) => redis::Client::build_with_tls(info, certificates).map_err(|e| {
            StoreError::Unavailable(format!(
                "store.tls_ca_file / tls_client_cert_file / tls_client_key_file: {e}"
            ))
        }),
    }
}

/// The CA bundle and client identity `options` name, read and checked now so a
/// wrong file fails at start-up rather than at every connection; `None` when
/// neither is set (the system roots, no client certificate).
pub(crate) fn tls_certificates(
    options: &ConnectOptions,
) -> Result<Option<TlsCertificates>, StoreError> {
    let root_cert = match &options.tls_ca_file {
        Some(path) => {
            let pem = read_pem("store.tls_ca_file", path)?;
            if !pem_has(&pem, "CERTIFICATE") {
                return Err(StoreError::Unavailable(format!(
                    "store.tls_ca_file: no PEM certificate in {}",
                    path.display()
                )));
            }
            Some(pem)
        }
        None => None,
    };
    let client_tls =
        match (&options.tls_client_cert_file, &options.tls_client_key_file) {
            (Some(cert), Some(key)) => {
                let client_cert = read_pem("store.tls_client_cert_file", cert)?;
                if !pem_has(&client_cert, "CERTIFICATE") {
                    return Err(StoreError::Unavailable(format!(
                        "store.tls_client_cert_file: no PEM certificate in {}",
                        cert.display()
                    )));
                }
                let client_key = read_pem("store.tls_client_key_file", key)?;
                if !pem_has(&client_key, "PRIVATE KEY") {
                    return Err(StoreError::Unavailable(format!(
                        "store.tls_client_key_file: no PEM private key in {}",
                        key.display()
                    )));
                }
                Some(ClientTlsConfig {
                    client_cert,
                    client_key,
                })
            }
            (None, None) => None,
            // Config validation rejects half a pair; refuse it here too rather
            // than silently connecting without the identity the server expects.
            _ => return Err(StoreError::Unavailable(
                "mutual TLS needs both store.tls_client_cert_file and store.tls_client_key_file"
                    .into(),
            )),
        };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path)
        .map_err(|e| StoreError::Unavailable(format!("{key}: cannot read {}: {e}", path.display())))
}

/// Whether `pem` holds a `-----BEGIN …LABEL-----` block (`PRIVATE KEY` also
/// matches `EC PRIVATE KEY` and `RSA PRIVATE KEY`).
fn pem_has(pem: &[u8], label: &str) -> bool {
    String::from_utf8_lossy(pem).lines().any(|line| {
        line.starts_with("-----BEGIN ") && line.trim_end().ends_with(&format!("{label}-----"))
    })
}

/// The cluster client, seeded with `redis_url` (the other nodes are learned
/// from `CLUSTER SLOTS`), connecting in the background.
///
/// Timing, chosen so a failover is ridden out inside the store's 2 s deadline
/// for one operation: 1 s to connect to a node, 1 s for one node's answer;
/// up to 5 retries of a command (a redirect, a dead node, `CLUSTERDOWN`,
/// `TRYAGAIN`), waiting 50 to 400 ms between them while the slot map is re-read.
/// A node that stops answering is dropped after 3 connection attempts and
/// comes back with the next slot map that names it.
fn connect_cluster(
    seed: &redis::Client,
    options: &ConnectOptions,
) -> Result<ClusterConnection, StoreError> {
    let mut builder = ClusterClientBuilder::new(vec![seed.get_connection_info().clone()])
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        // The store bounds each operation itself (2 s, retries included).
        .overall_response_timeout(None)
        .retries(5)
        .min_retry_wait(50)
        .max_retry_wait(400)
        .retry_wait_formula(50, 2)
        .max_connection_attempts(std::num::NonZeroUsize::new(3).expect("3 > 0"));
    // The same CA and client identity as every other node (`rediss://` seeds).
    if options.url.starts_with("rediss://") {
        if let Some(certificates) = tls_certificates(options)? {
            builder = builder.certs(certificates);
        }
    }
    let client = builder
        .build()
        .map_err(|e| StoreError::Unavailable(format!("bad redis_url for a cluster: {e}")))?;
    let config = ClusterConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1));
    Ok(client.get_pending_async_connection_with_config(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_reply_yields_every_node_once() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |a: i64, b: i64, nodes: Vec<Value>| {
            let mut parts = vec![Value::Int(a), Value::Int(b)];
            parts.extend(nodes);
            Value::Array(parts)
        };
        let reply = Value::Array(vec![
            range(
                0,
                5460,
                vec![node("10.0.0.1", 7000), node("10.0.0.4", 7003)],
            ),
            range(5461, 10922, vec![node("10.0.0.2", 7001)]),
            range(10923, 16383, vec![node("10.0.0.1", 7000)]),
        ]);
        assert_eq!(
            node_addresses(&reply),
            vec![
                ("10.0.0.1".to_owned(), 7000),
                ("10.0.0.4".to_owned(), 7003),
                ("10.0.0.2".to_owned(), 7001),
            ]
        );
        assert!(node_addresses(&Value::Nil).is_empty());
    }
}
