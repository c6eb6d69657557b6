//! How the Redis store reaches Redis: the connection its commands go through
//! and the client its invalidation listener subscribes with.
//!
//! Every topology is one [`Conn`] that implements redis-rs's
//! `ConnectionLike`, so the store's commands, pipelines and scripts are written
//! once and run the same on each. This module must not know about keys or
//! records; it only connects, and reconnects when the topology changes.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::store::StoreError;

/// What connecting needs to know, from `[store]`.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    /// Standalone: the server; cluster: a seed node.
    pub(crate) url: String,
}

/// The connection the store's commands go through. Cheap to clone: every
/// variant is a handle to shared, self-healing connections.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server, through redis-rs's connection manager (reconnects by itself).
    Single(ConnectionManager),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
        }
    }
}

/// A connected topology: the command connection and the client pub/sub uses.
#[derive(Clone)]
pub(crate) struct Topology {
    pub(crate) conn: Conn,
    /// A client of a server that sees every `PUBLISH` of the store.
    pub(crate) pubsub: redis::Client,
}

/// Connects lazily: the gateway starts (not ready) even when Redis is down, and
/// the connection reconnects by itself when it comes back.
pub(crate) fn connect(options: &ConnectOptions) -> Result<Topology, StoreError> {
    let client = redis::Client::open(options.url.as_str())
        .map_err(|e| StoreError::Unavailable(format!("bad redis_url: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(Topology {
        conn: Conn::Single(conn),
        pubsub: client,
    })
}
