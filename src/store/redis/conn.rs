//! How the Redis store reaches Redis: the connection its commands go through
//! and the client its invalidation listener subscribes with.
//!
//! Every topology is one [`Conn`] that implements redis-rs's
//! `ConnectionLike`, so the store's commands, pipelines and scripts are written
//! once and run the same on each. This module must not know about keys or
//! records; it only connects, and reconnects when the topology changes.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use super::sentinel::Sentinel;
use crate::store::StoreError;

/// What connecting needs to know, from `[store]`.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    /// Standalone: the server; cluster: a seed node.
    pub(crate) url: String,
    /// Sentinel mode: the sentinels and the master's name (then `url` gives
    /// only the master's credentials, database and scheme).
    pub(crate) sentinel: Option<SentinelOptions>,
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
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
        }
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
    /// The client to subscribe with: the current master in sentinel mode.
    pub(crate) async fn pubsub_client(&self) -> redis::RedisResult<redis::Client> {
        match &self.conn {
            Conn::Sentinel(s) => s.master_client().await,
            _ => Ok(self.pubsub.clone()),
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

/// Connects lazily: the gateway starts (not ready) even when Redis is down, and
/// the connection reconnects by itself when it comes back.
pub(crate) fn connect(options: &ConnectOptions) -> Result<Topology, StoreError> {
    if let Some(sentinel) = &options.sentinel {
        return connect_sentinel(options, sentinel);
    }
    let client = redis::Client::open(options.url.as_str())
        .map_err(|e| StoreError::Unavailable(format!("bad redis_url: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let waits = ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(Topology {
        conn: Conn::Single(conn),
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
    let handle = Sentinel::new(&sentinel.urls, &sentinel.master, base)
        .map_err(|e| StoreError::Unavailable(format!("bad sentinel_urls: {e}")))?;
    Ok(Topology {
        waits: Conn::Sentinel(handle.for_waits()),
        conn: Conn::Sentinel(handle),
        pubsub: client,
    })
}
