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
use redis::{
    ClientTlsConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value,
};

use super::sentinel::Sentinel;
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

impl Topology {
    /// `error` with what to check when it is how a TLS misconfiguration shows
    /// (redis-rs reports the bare rustls or socket error, which does not say
    /// which `[store]` key is wrong). Other errors pass through unchanged.
    pub(crate) fn explain(&self, error: StoreError) -> StoreError {
        let StoreError::Unavailable(message) = error else {
            return error;
        };
        let tls = match self.pubsub.get_connection_info().addr() {
            redis::ConnectionAddr::TcpTls { .. } => true,
            redis::ConnectionAddr::Tcp(..) => false,
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

/// Connects lazily: the gateway starts (not ready) even when Redis is down, and
/// the connection reconnects by itself when it comes back.
pub(crate) fn connect(options: &ConnectOptions) -> Result<Topology, StoreError> {
    if let Some(sentinel) = &options.sentinel {
        return connect_sentinel(options, sentinel);
    }
    let client = client(&options.url, options)?;
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

/// The client for one node's `url`, with `options`' TLS settings when the URL
/// is `rediss://` (a `redis://` URL is plain and ignores them). Every topology
/// builds its node clients here, so TLS works the same on each.
///
/// Errors name the file or setting at fault and never show the URL (it may
/// hold a password).
pub(crate) fn client(url: &str, options: &ConnectOptions) -> Result<redis::Client, StoreError> {
    let bad_url = |e: redis::RedisError| {
        StoreError::Unavailable(format!("bad redis URL {}: {e}", redacted(url)))
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

/// `url` with any password hidden, for errors.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
