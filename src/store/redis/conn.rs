//! How the Redis store reaches Redis: the connection its commands go through
//! and the client its invalidation listener subscribes with.
//!
//! Every topology is one [`Conn`] that implements redis-rs's
//! `ConnectionLike`, so the store's commands, pipelines and scripts are written
//! once and run the same on each. This module must not know about keys or
//! records; it only connects, and reconnects when the topology changes.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ConnectionAddr, Pipeline, RedisFuture, RedisResult, Value};

use crate::config::RedisMode;
use crate::store::StoreError;

/// What connecting needs to know, from `[store]`.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    /// Standalone: the server; cluster: a seed node.
    pub(crate) url: String,
    /// `store.redis_mode`.
    pub(crate) mode: RedisMode,
}

/// The connection the store's commands go through. Cheap to clone: every
/// variant is a handle to shared, self-healing connections.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server, through redis-rs's connection manager (reconnects by itself).
    Single(ConnectionManager),
    /// Redis Cluster: redis-rs's cluster client routes each command to the
    /// primary of its key's slot, follows `MOVED`/`ASK`, and re-reads the slot
    /// map after a redirect or a dead node (a failover).
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
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
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
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
    /// A client of a server that sees every `PUBLISH` of the store.
    pub(crate) pubsub: redis::Client,
}

impl Topology {
    /// The client to (re)subscribe with after `failures` failed attempts in a
    /// row. A cluster broadcasts every `PUBLISH` to all its nodes, so any node
    /// will do: the seed first, then, while subscribing keeps failing (the
    /// seed node died), the other nodes the cluster reports, in turn.
    pub(crate) async fn pubsub_client(&self, failures: u32) -> redis::Client {
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
    let client = redis::Client::open(options.url.as_str())
        .map_err(|e| StoreError::Unavailable(format!("bad redis_url: {e}")))?;
    let conn = match options.mode {
        RedisMode::Cluster => Conn::Cluster(connect_cluster(&client)?),
        _ => {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(1)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Conn::Single(conn)
        }
    };
    Ok(Topology {
        conn,
        pubsub: client,
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
fn connect_cluster(seed: &redis::Client) -> Result<ClusterConnection, StoreError> {
    let client = ClusterClientBuilder::new(vec![seed.get_connection_info().clone()])
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        // The store bounds each operation itself (2 s, retries included).
        .overall_response_timeout(None)
        .retries(5)
        .min_retry_wait(50)
        .max_retry_wait(400)
        .retry_wait_formula(50, 2)
        .max_connection_attempts(std::num::NonZeroUsize::new(3).expect("3 > 0"))
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
