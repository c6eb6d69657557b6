//! Sentinel mode: which server is the master right now, and a connection to it
//! that follows it through failovers.
//!
//! The master is asked of the sentinels (`SENTINEL get-master-addr-by-name`)
//! on first use, and asked again when a command meets `READONLY` (we are
//! talking to a demoted master), when the connection is lost or refused, and
//! when a sentinel announces `+switch-master`. A candidate is used only once it
//! says `ROLE` master itself, so a sentinel's stale answer during a switch is
//! never written to. Every switch bumps an epoch, which lets the store refuse
//! to acknowledge writes that may have straddled two masters (see
//! `RedisStore::confirm_writes`). This module must not know about keys or
//! records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisError, RedisResult, TlsCertificates, Value,
};
use tokio::sync::watch;

/// Deadline for one question to one sentinel or one candidate master.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// A lost connection is not asked about more often than this: during an outage
/// every request fails, and the sentinels need not hear about each one.
const REDISCOVER_INTERVAL: Duration = Duration::from_millis(100);

/// The current master: where it is, the connections to it, and its epoch.
#[derive(Clone)]
struct Master {
    host: String,
    port: u16,
    /// Every command of the store.
    commands: ConnectionManager,
    /// Only `WAIT` (which blocks its connection until the replicas answer, so
    /// it must not hold up the commands of requests).
    waits: ConnectionManager,
    /// Pub/sub (a subscription needs its own connection).
    client: redis::Client,
    epoch: u64,
}

struct Shared {
    sentinels: Vec<redis::Client>,
    name: String,
    /// Credentials, database and TLS of the master (its address is replaced).
    base: ConnectionInfo,
    /// `store.tls_ca_file` / client identity for a `rediss://` master.
    tls: Option<TlsCertificates>,
    current: Mutex<Option<Master>>,
    /// Serializes rediscovery, so a burst of failures asks the sentinels once.
    asking: tokio::sync::Mutex<Option<Instant>>,
    switches: watch::Sender<u64>,
    watching: AtomicBool,
}

/// A handle to the master Sentinel reports. Cheap to clone; every clone follows
/// the same master. `waits` selects the connection reserved for `WAIT`.
#[derive(Clone)]
pub(crate) struct Sentinel {
    shared: Arc<Shared>,
    waits: bool,
}

/// Whether an error means the master may have moved: a write refused by a
/// replica, or the connection lost or refused.
fn master_may_have_moved(e: &RedisError) -> bool {
    e.code() == Some("READONLY")
        || e.to_string().contains("READONLY")
        || e.code() == Some("EXECABORT")
        || e.is_connection_dropped()
        || e.is_io_error()
        || e.is_connection_refusal()
}

fn error(detail: String) -> RedisError {
    RedisError::from((redis::ErrorKind::Io, "sentinel", detail))
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200))
}

impl Sentinel {
    /// Lazy: nothing is asked until the first command. `base` is the master's
    /// `redis_url` (credentials, db, `rediss://`), its host and port ignored.
    pub(crate) fn new(
        sentinels: Vec<redis::Client>,
        name: &str,
        base: ConnectionInfo,
        tls: Option<TlsCertificates>,
    ) -> RedisResult<Sentinel> {
        let (switches, _) = watch::channel(0);
        Ok(Sentinel {
            shared: Arc::new(Shared {
                sentinels,
                name: name.to_owned(),
                base,
                tls,
                current: Mutex::new(None),
                asking: tokio::sync::Mutex::new(None),
                switches,
                watching: AtomicBool::new(false),
            }),
            waits: false,
        })
    }

    /// The same master, through the connection reserved for `WAIT`.
    pub(crate) fn for_waits(&self) -> Sentinel {
        Sentinel {
            shared: self.shared.clone(),
            waits: true,
        }
    }

    /// How many times the master has changed since start.
    pub(crate) fn epoch(&self) -> u64 {
        *self.shared.switches.borrow()
    }

    /// Fires on every master switch (the pub/sub listener resubscribes).
    pub(crate) fn switches(&self) -> watch::Receiver<u64> {
        self.shared.switches.subscribe()
    }

    /// A client of the current master (for pub/sub).
    pub(crate) async fn master_client(&self) -> RedisResult<redis::Client> {
        Ok(self.master().await?.client)
    }

    fn current(&self) -> Option<Master> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn master(&self) -> RedisResult<Master> {
        self.watch_switches();
        match self.current() {
            Some(master) => Ok(master),
            None => self.rediscover(None, false).await,
        }
    }

    /// The connection to the current master (the one for `WAIT` if this
    /// handle is for waits) and the master's epoch.
    async fn connection(&self) -> RedisResult<(ConnectionManager, u64)> {
        let master = self.master().await?;
        let conn = if self.waits {
            master.waits
        } else {
            master.commands
        };
        Ok((conn, master.epoch))
    }

    /// After a command on the master of `epoch`: when its failure says the
    /// master may have moved, asks the sentinels again, so the next command
    /// goes to the new one.
    async fn after<T>(&self, epoch: u64, result: &RedisResult<T>) {
        if let Err(e) = result {
            if master_may_have_moved(e) {
                if let Err(again) = self.rediscover(Some(epoch), false).await {
                    tracing::debug!(error = %again, "sentinel rediscovery failed");
                }
            }
        }
    }

    /// Asks the sentinels (in order) for the master and switches to it, unless
    /// another task switched since `stale` was current, or (unless `forced`)
    /// they were asked less than [`REDISCOVER_INTERVAL`] ago.
    async fn rediscover(&self, stale: Option<u64>, forced: bool) -> RedisResult<Master> {
        let mut last = self.shared.asking.lock().await;
        let recently = !forced && last.is_some_and(|at| at.elapsed() < REDISCOVER_INTERVAL);
        match self.current() {
            Some(current) if Some(current.epoch) != stale || recently => return Ok(current),
            None if recently => {
                return Err(error(
                    "no master known yet; the sentinels were just asked".into(),
                ))
            }
            _ => {}
        }
        *last = Some(Instant::now());
        let mut failures = Vec::new();
        for sentinel in &self.shared.sentinels {
            match tokio::time::timeout(ASK_TIMEOUT, self.ask(sentinel)).await {
                Ok(Ok(master)) => return Ok(master),
                Ok(Err(e)) => failures.push(e.to_string()),
                Err(_) => failures.push("timed out".to_owned()),
            }
        }
        Err(error(format!(
            "no sentinel named a writable master {:?}: {}",
            self.shared.name,
            failures.join("; ")
        )))
    }

    /// One sentinel's answer, checked against the candidate's own `ROLE`.
    async fn ask(&self, sentinel: &redis::Client) -> RedisResult<Master> {
        let mut conn = sentinel.get_multiplexed_async_connection().await?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.shared.name)
            .query_async(&mut conn)
            .await?;
        let Some((host, port)) = addr else {
            return Err(error("the sentinel does not know this master".into()));
        };
        let current = self.current();
        if let Some(current) = current
            .as_ref()
            .filter(|c| c.host == host && c.port == port)
        {
            // Same address: keep its connections (they reconnect by themselves),
            // but only if it is still the master.
            let mut commands = current.commands.clone();
            check_role(&mut commands).await?;
            return Ok(current.clone());
        }
        let info = self.shared.base.clone().set_addr(self.address(&host, port));
        let client = match &self.shared.tls {
            Some(tls) => redis::Client::build_with_tls(info, tls.clone())?,
            None => redis::Client::open(info)?,
        };
        let mut commands =
            ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
        check_role(&mut commands).await?;
        let waits = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())?;
        let mut slot = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let epoch = match slot.as_ref() {
            Some(previous) => previous.epoch + 1,
            None => 0,
        };
        let master = Master {
            host,
            port,
            commands,
            waits,
            client,
            epoch,
        };
        *slot = Some(master.clone());
        drop(slot);
        if epoch > 0 {
            tracing::warn!(master = %format!("{}:{}", master.host, master.port), epoch, "redis master switched (sentinel)");
        } else {
            tracing::info!(master = %format!("{}:{}", master.host, master.port), "redis master found (sentinel)");
        }
        if epoch > 0 {
            self.shared.switches.send_replace(epoch);
        }
        Ok(master)
    }

    /// The master's address with the scheme (TLS or not) of `store.redis_url`.
    fn address(&self, host: &str, port: u16) -> ConnectionAddr {
        match self.shared.base.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        }
    }

    /// Starts (once) one task per sentinel that listens for `+switch-master`
    /// and rediscovers at once, instead of at the next failed command. The
    /// tasks end when the store is dropped.
    fn watch_switches(&self) {
        if self.shared.watching.swap(true, Ordering::Relaxed) {
            return;
        }
        for index in 0..self.shared.sentinels.len() {
            let weak = Arc::downgrade(&self.shared);
            tokio::spawn(watch_one(weak, index));
        }
    }
}

async fn watch_one(weak: Weak<Shared>, index: usize) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(client) = weak.upgrade().map(|s| s.sentinels[index].clone()) else {
            return;
        };
        if let Ok(Ok(mut pubsub)) =
            tokio::time::timeout(ASK_TIMEOUT, client.get_async_pubsub()).await
        {
            if pubsub.subscribe("+switch-master").await.is_ok() {
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let payload: String = message.get_payload().unwrap_or_default();
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    // `<name> <old ip> <old port> <new ip> <new port>`
                    if payload.split(' ').next() != Some(shared.name.as_str()) {
                        continue;
                    }
                    let sentinel = Sentinel {
                        shared,
                        waits: false,
                    };
                    let stale = sentinel.current().map(|m| m.epoch);
                    // A sentinel's word beats the rate limit on asking.
                    if let Err(e) = sentinel.rediscover(stale, true).await {
                        tracing::warn!(error = %e, "+switch-master: the new master is not reachable yet");
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Fails unless the server says it is a master.
async fn check_role(conn: &mut ConnectionManager) -> RedisResult<()> {
    let role: Vec<Value> = redis::cmd("ROLE").query_async(conn).await?;
    match role.first() {
        Some(Value::BulkString(r)) if r == b"master" => Ok(()),
        Some(Value::SimpleString(r)) if r == "master" => Ok(()),
        _ => Err(error(
            "the server the sentinel named is not a master (yet)".into(),
        )),
    }
}

impl ConnectionLike for Sentinel {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        Box::pin(async move {
            let (mut conn, epoch) = self.connection().await?;
            let result = conn.req_packed_command(cmd).await;
            self.after(epoch, &result).await;
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (mut conn, epoch) = self.connection().await?;
            let result = conn.req_packed_commands(cmd, offset, count).await;
            self.after(epoch, &result).await;
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.base.redis_settings().db()
    }
}
