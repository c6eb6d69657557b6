//! The configuration: a TOML file compiled into a validated [`Config`].
//!
//! Compilation reports *every* problem, each naming its key, before anything
//! starts (`check-config` prints them; `serve` refuses to start). Nothing else
//! in the crate reads TOML or environment variables for settings: modules get
//! typed, already-validated values from here.

mod reader;
mod restart;
pub(crate) mod tls;
pub(crate) mod units;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use http::header::HeaderName;
use ipnet::IpNet;
use toml::{Table, Value};

use crate::auth::JwtSettings;
use crate::entitlement::{AccessRules, SubscriptionStatus};
use crate::outbound::OutboundConfig;
use crate::routes::{self, Policy, Route, RouteTable};

pub(crate) use reader::ConfigError;
use reader::{Errors, Section};
pub(crate) use restart::keep_restart_only;

/// The validated configuration every module is built from.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub jwt: JwtSettings,
    pub store: StoreConfig,
    /// `None` when the file has no `[stripe]` section: no webhook endpoint is served.
    pub stripe: Option<StripeConfig>,
    pub access: AccessConfig,
    pub routes: RouteTable,
    /// `None` when the file has no `[admin]` section.
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
    pub headers: IdentityHeaders,
    /// `[outbound]`: whom control-plane HTTPS calls trust.
    pub outbound: OutboundConfig,
    /// `[telemetry]`: span export over OTLP/HTTP.
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Request bodies larger than this are refused (413) or cut off.
    pub max_body: u64,
    /// A client that has not sent a complete request head in this time is disconnected.
    pub header_timeout: Duration,
    /// Only peers in these networks may set `X-Forwarded-*` for us.
    pub trusted_proxies: Vec<IpNet>,
    pub shutdown_grace: Duration,
    /// Threads serving requests; `None`: one per CPU. `Some(1)` runs everything
    /// on one thread with no cross-thread wake-ups (like one nginx worker).
    pub workers: Option<usize>,
    /// Idle limit on a request body: a body that sends nothing for this long is
    /// aborted (408 `REQUEST_TIMEOUT` when no response has started).
    pub body_timeout: Duration,
    /// Open client connections at most; beyond it new ones wait in the backlog.
    pub max_connections: usize,
    /// An idle keep-alive connection is closed after this long.
    pub keepalive_timeout: Duration,
    /// `[server.tls]`: the listener speaks TLS (ALPN `h2`, `http/1.1`).
    pub tls: Option<TlsConfig>,
    /// HTTP/2 with prior knowledge on the cleartext listener (never through
    /// `Upgrade: h2c`).
    pub h2c: bool,
}

/// The public listener's certificate chain and key, PEM files. Validated
/// (readable, a certificate and a key present, the key matching the leaf) at
/// compile time and read again on each reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `scheme://authority` of the application, without a path.
    pub url: http::Uri,
    pub connect_timeout: Duration,
    /// Deadline for the upstream's response head (504 after it).
    pub timeout: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle_timeout: Duration,
    /// Speak HTTP/2 (prior knowledge) to the upstream, on one multiplexed
    /// connection: for gRPC backends.
    pub http2: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Serve the last known state, up to `max_stale` old.
    Stale,
    /// Answer 503 `ENTITLEMENT_UNAVAILABLE`.
    Deny,
    /// Let the request through (fail open).
    Allow,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `None`: the embedded in-memory store.
    pub redis_url: Option<String>,
    pub key_prefix: String,
    pub cache_ttl: Duration,
    pub cache_capacity: u64,
    pub on_store_error: OnStoreError,
    pub max_stale: Duration,
    /// Memory store only: JSON file of `user id -> entitlement` loaded at start
    /// (a paygate extension for demos and tests).
    pub seed_file: Option<PathBuf>,
    /// How `redis_url` is reached: one server, a Cluster, or through Sentinel.
    pub redis_mode: RedisMode,
    /// Sentinel mode: the sentinels (`redis://host:port`), asked for the master.
    pub sentinel_urls: Vec<String>,
    /// Sentinel mode: the monitored master's name.
    pub sentinel_master: Option<String>,
    /// TLS (`rediss://`): a PEM bundle of CAs to trust instead of the system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// TLS client certificate and key (PEM), for mutual TLS; both or neither.
    pub tls_client_cert_file: Option<PathBuf>,
    pub tls_client_key_file: Option<PathBuf>,
    /// Replicas that must have a webhook's writes (Redis `WAIT`) before it is
    /// acknowledged; 0 acknowledges once the primary has them.
    pub min_replica_acks: u32,
    /// How long a webhook waits for those replicas before it is answered 503.
    pub replica_ack_timeout: Duration,
    /// Entries kept in each user's audit trail.
    pub audit_max_entries: usize,
    /// An audit trail untouched for this long expires.
    pub audit_ttl: Duration,
    /// How long an applied event id is remembered for the duplicate fast path.
    pub event_ttl: Duration,
}

impl StoreConfig {
    /// Whether the store is Redis (in any mode) rather than the embedded memory store.
    pub(crate) fn is_redis(&self) -> bool {
        self.redis_url.is_some() || self.redis_mode == RedisMode::Sentinel
    }
}

/// `store.redis_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// One server (or a proxy in front of many) at `redis_url`.
    #[default]
    Standalone,
    /// Redis Cluster; `redis_url` is a seed node, the others are discovered.
    Cluster,
    /// The master `sentinel_master` as `sentinel_urls` report it; `redis_url`,
    /// when set, carries the master's credentials, database and TLS scheme.
    Sentinel,
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub webhook_path: String,
    /// Every secret that may have signed a webhook (several during rotation).
    pub webhook_secrets: Vec<String>,
    pub tolerance: Duration,
    pub max_body: u64,
    pub user_metadata_keys: Vec<String>,
    pub api_key: Option<String>,
    pub api_base: String,
    /// When set, events whose `livemode` differs are ignored.
    pub livemode: Option<bool>,
    pub refetch: bool,
    /// The whole webhook body must arrive within this (a total limit; 408 after it).
    pub body_timeout: Duration,
    /// Webhook bodies read at once at most; more get 503 `OVERLOADED` unread.
    pub max_concurrent: usize,
}

#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub rules: AccessRules,
    pub default: Policy,
    pub checkout_redirect: String,
    pub expired_redirect: String,
    /// Route prefixes match ignoring ASCII case, for upstreams that
    /// route that way (Express, ASP.NET).
    pub case_insensitive_paths: bool,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `paygate=debug`.
    pub level: String,
}

/// Names of the identity headers set for the upstream.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user_id: HeaderName,
    pub status: HeaderName,
    pub entitlements: HeaderName,
}

/// Every problem found, ready to print one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "config error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The secrets a command uses. A secret named by a `*_env` key whose
/// variable is unset is an error only when its use is listed here; otherwise
/// it is left out of the compiled config, so `sync` runs without the webhook
/// secret and `user show` without the JWT secret. `serve` and `check-config`
/// need them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secrets {
    /// `jwt.secret_env`: verifying and minting HS* tokens.
    pub jwt: bool,
    /// `stripe.webhook_secret_env` (or `STRIPE_WEBHOOK_SECRET`): verifying webhooks.
    pub webhook: bool,
    /// `stripe.api_key_env`: reading the Stripe API.
    pub stripe_api_key: bool,
    /// `admin.token_env`: guarding the admin API.
    pub admin_token: bool,
}

impl Secrets {
    pub const ALL: Secrets = Secrets {
        jwt: true,
        webhook: true,
        stripe_api_key: true,
        admin_token: true,
    };
    pub const NONE: Secrets = Secrets {
        jwt: false,
        webhook: false,
        stripe_api_key: false,
        admin_token: false,
    };
}

impl Config {
    /// Reads and compiles `path`, taking secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_needing(path, Secrets::ALL)
    }

    /// [`Config::load`], requiring only the secrets in `needs`.
    pub fn load_needing(path: &Path, needs: Secrets) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: path.display().to_string(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::compile_needing(&text, base, &|name| std::env::var(name).ok(), needs)
    }

    /// Compiles config text. `base_dir` resolves relative file paths; `env`
    /// looks up `*_env` secrets (injected so tests need not touch the process env).
    pub fn compile(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        Config::compile_needing(text, base_dir, env, Secrets::ALL)
    }

    /// [`Config::compile`], requiring only the secrets in `needs`.
    pub fn compile_needing(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        needs: Secrets,
    ) -> Result<Config, ConfigErrors> {
        let root: Table = toml::from_str(text).map_err(|e| {
            // Only the position and toml's message: the offending line could
            // hold a secret, so it is never echoed.
            let at = e
                .span()
                .map(|span| {
                    let (line, column) = line_column(text, span.start);
                    format!(" at line {line}, column {column}")
                })
                .unwrap_or_default();
            ConfigErrors(vec![ConfigError {
                key: "config".into(),
                message: format!("not valid TOML{at}: {}", e.message().trim_end()),
            }])
        })?;
        // PAYGATE_LISTEN and friends replace their keys before anything reads them.
        let mut root = root;
        let overridden = apply_env_overrides(&mut root, env);
        let mut errors = Errors::default();
        let ctx = Ctx {
            base_dir,
            env,
            needs,
        };

        for key in root.keys() {
            if !KNOWN_SECTIONS.contains(&key.as_str()) {
                errors.push(
                    key.clone(),
                    reader::unknown(
                        "unknown section or key",
                        key,
                        KNOWN_SECTIONS.iter().copied(),
                    ),
                );
            }
        }

        let server = compile_server(&root, &ctx, &mut errors);
        let upstream = compile_upstream(&root, &mut errors);
        let jwt = compile_jwt(&root, &ctx, &mut errors);
        let store = compile_store(&root, &ctx, &mut errors);
        let stripe = compile_stripe(&root, &ctx, &mut errors);
        let plans = compile_plans(&root, &mut errors);
        let access = compile_access(&root, plans, &mut errors);
        let routes = compile_routes(
            &root,
            access
                .as_ref()
                .map(|a| (a.default, a.case_insensitive_paths)),
            &mut errors,
        );
        let admin = compile_admin(&root, &ctx, &mut errors);
        let log = compile_log(&root, &mut errors);
        let headers = compile_headers(&root, &mut errors);
        let outbound = compile_outbound(&root, &ctx, &mut errors);
        // Its errors are in `errors`, which keeps a config from being built.
        let telemetry = compile_telemetry(&root, &mut errors).unwrap_or_default();

        if let Some(Some(stripe)) = &stripe {
            if stripe.webhook_path.starts_with("/_paygate/") {
                errors.push(
                    "stripe.webhook_path",
                    "must not be under /_paygate/ (reserved for the gateway's own endpoints)",
                );
            }
        }

        match (
            server, upstream, jwt, store, stripe, access, routes, admin, log, headers, outbound,
        ) {
            (
                Some(server),
                Some(upstream),
                Some(jwt),
                Some(store),
                Some(stripe),
                Some(access),
                Some(routes),
                Some(admin),
                Some(log),
                Some(headers),
                Some(outbound),
            ) if errors.0.is_empty() => Ok(Config {
                server,
                upstream,
                jwt,
                store,
                stripe,
                access,
                routes,
                admin,
                log,
                headers,
                outbound,
                telemetry,
            }),
            _ => {
                if errors.0.is_empty() {
                    errors.push("config", "invalid configuration");
                }
                Err(ConfigErrors(name_env_overrides(errors.0, &overridden)))
            }
        }
    }

    /// A human summary for `check-config`.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let protocols = match (&self.server.tls, self.server.h2c) {
            (Some(tls), _) => format!(
                "TLS ({}), HTTP/2 and HTTP/1.1 by ALPN",
                tls.cert_file.display()
            ),
            (None, true) => "cleartext HTTP/1.1 and HTTP/2 (h2c)".to_string(),
            (None, false) => "cleartext HTTP/1.1".to_string(),
        };
        let _ = writeln!(out, "listen     {} ({protocols})", self.server.listen);
        let upstream_version = if self.upstream.http2 {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        let _ = writeln!(out, "upstream   {} ({upstream_version})", self.upstream.url);
        let store = &self.store;
        let store = match (store.redis_mode, &store.redis_url) {
            (RedisMode::Sentinel, _) => format!(
                "redis sentinel, master {:?} from {} sentinel(s)",
                store.sentinel_master.as_deref().unwrap_or_default(),
                store.sentinel_urls.len()
            ),
            (RedisMode::Cluster, Some(url)) => format!("redis cluster, seed {}", redact_url(url)),
            (_, Some(url)) => format!("redis {}", redact_url(url)),
            (_, None) => "memory (embedded, one instance, not durable)".to_string(),
        };
        let _ = writeln!(out, "store      {store}");
        let algs: Vec<String> = self
            .jwt
            .algorithms
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        let keys = match (&self.jwt.jwks_url, self.jwt.discovery, &self.jwt.issuer) {
            (Some(url), _, _) => format!("; keys from {url}"),
            (None, true, Some(issuer)) => format!("; keys by discovery from {issuer}"),
            _ => String::new(),
        };
        let _ = writeln!(out, "jwt        {}{keys}", algs.join(", "));
        if let Some(stripe) = &self.stripe {
            let _ = writeln!(
                out,
                "webhook    POST {} ({} secret(s))",
                stripe.webhook_path,
                stripe.webhook_secrets.len()
            );
        }
        if let Some(admin) = &self.admin {
            let _ = writeln!(out, "admin      {}", admin.listen);
        }
        let _ = writeln!(out, "routes:");
        for route in self.routes.routes() {
            let methods = match &route.methods {
                Some(m) => m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
                None => "*".into(),
            };
            let features = if route.features.is_empty() {
                String::new()
            } else {
                format!(" features={}", route.features.join(","))
            };
            let _ = writeln!(
                out,
                "  {:<28} {:<14} methods={}{}",
                route.prefix,
                route.policy.as_str(),
                methods,
                features
            );
        }
        let _ = write!(
            out,
            "  {:<28} {}",
            "(default)",
            self.routes.default_policy().as_str()
        );
        out
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Hides a password in a `redis://user:pass@host` URL for display.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

const KNOWN_SECTIONS: &[&str] = &[
    "server",
    "upstream",
    "jwt",
    "store",
    "stripe",
    "access",
    "routes",
    "plans",
    "admin",
    "log",
    "headers",
    "outbound",
    "telemetry",
];

struct Ctx<'a> {
    base_dir: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    needs: Secrets,
}

impl Ctx<'_> {
    fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// A secret given either inline (`key`) or through an environment variable
    /// (`key_env`). Both set is an error; a named variable that is unset is an
    /// error when the command `needed` the secret, and `None` otherwise.
    fn secret<'a>(
        &self,
        section: &mut Section<'a>,
        key: &'a str,
        env_key: &'a str,
        needed: bool,
        errors: &mut Errors,
    ) -> Option<String> {
        let inline = section.string(key, errors);
        let var = section.string(env_key, errors);
        match (inline, var) {
            (Some(_), Some(_)) => {
                errors.push(
                    section.key(key),
                    format!("set either {key} or {env_key}, not both"),
                );
                None
            }
            (Some(value), None) => Some(value),
            (None, Some(name)) => match (self.env)(&name) {
                Some(value) if !value.is_empty() => Some(value),
                _ if !needed => None,
                _ => {
                    errors.push(
                        section.key(env_key),
                        format!("environment variable {name} is not set"),
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }
}

fn parse_addr(
    section: &Section<'_>,
    key: &str,
    text: &str,
    errors: &mut Errors,
) -> Option<SocketAddr> {
    match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.push(
                section.key(key),
                format!("{text:?} is not an address like \"127.0.0.1:8080\""),
            );
            None
        }
    }
}

fn compile_server(root: &Table, ctx: &Ctx<'_>, errors: &mut Errors) -> Option<ServerConfig> {
    let mut s = Section::from_root(root, "server", errors);
    let listen_text = s
        .string("listen", errors)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = parse_addr(&s, "listen", &listen_text, errors);
    let max_body = s.size("max_body", 10 << 20, errors);
    let header_timeout = s.duration("header_timeout", Duration::from_secs(10), errors);
    let shutdown_grace = s.duration("shutdown_grace", Duration::from_secs(30), errors);
    let workers = match s.integer("workers", errors) {
        None => Some(None),
        Some(n) if (1..=1024).contains(&n) => Some(Some(n as usize)),
        Some(_) => {
            errors.push(
                "server.workers",
                "must be an integer from 1 to 1024 (leave it out for one per CPU)",
            );
            None
        }
    };
    let mut trusted_proxies = Vec::new();
    for (i, text) in s
        .string_list("trusted_proxies", errors)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        // A bare address is accepted as a one-host network.
        let parsed =
            IpNet::from_str(&text).or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => errors.push(
                format!("server.trusted_proxies[{i}]"),
                format!("{text:?} is not a CIDR like \"10.0.0.0/8\""),
            ),
        }
    }
    let body_timeout = s.duration("body_timeout", Duration::from_secs(30), errors);
    let keepalive_timeout = s.duration("keepalive_timeout", Duration::from_secs(60), errors);
    let max_connections = match s.integer("max_connections", errors) {
        None => Some(10_000),
        Some(n) if (1..=10_000_000).contains(&n) => Some(n as usize),
        Some(_) => {
            errors.push(
                "server.max_connections",
                "must be an integer from 1 to 10000000",
            );
            None
        }
    };
    for (key, value) in [
        ("header_timeout", header_timeout),
        ("body_timeout", body_timeout),
        ("keepalive_timeout", keepalive_timeout),
    ] {
        if value == Some(Duration::ZERO) {
            errors.push(format!("server.{key}"), "must be greater than zero");
        }
    }
    let h2c = s.bool("h2c", errors).unwrap_or(false);
    let tls = s
        .table("tls", errors)
        .and_then(|table| compile_server_tls(table, ctx, errors));
    if h2c && s.has("tls") {
        errors.push(
            "server.h2c",
            "is for a cleartext listener; with [server.tls], HTTP/2 comes through ALPN",
        );
    }
    s.finish(errors);
    Some(ServerConfig {
        listen: listen?,
        max_body: max_body?,
        header_timeout: header_timeout?,
        trusted_proxies,
        shutdown_grace: shutdown_grace?,
        workers: workers?,
        body_timeout: body_timeout?,
        max_connections: max_connections?,
        keepalive_timeout: keepalive_timeout?,
        tls,
        h2c,
    })
}

/// `[server.tls]`: both files are required, and what they hold is checked
/// here (the same check a reload runs), so `check-config` catches a key that
/// does not match its certificate.
fn compile_server_tls(table: &Table, ctx: &Ctx<'_>, errors: &mut Errors) -> Option<TlsConfig> {
    let mut s = Section::new("server.tls", Some(table));
    let mut file = |key: &'static str, s: &mut Section<'_>| match s.string(key, errors) {
        Some(path) => Some(ctx.resolve(&path)),
        None => {
            if !s.has(key) {
                errors.push(s.key(key), "is required with [server.tls]");
            }
            None
        }
    };
    let cert_file = file("cert_file", &mut s);
    let key_file = file("key_file", &mut s);
    s.finish(errors);
    let tls = TlsConfig {
        cert_file: cert_file?,
        key_file: key_file?,
    };
    if let Err(error) = tls::certified_key(&tls) {
        errors.push(error.key, error.message);
        return None;
    }
    Some(tls)
}

fn compile_upstream(root: &Table, errors: &mut Errors) -> Option<UpstreamConfig> {
    let mut s = Section::from_root(root, "upstream", errors);
    if !s.is_present() {
        errors.push("upstream", "missing section: [upstream] url is required");
    }
    let url = match s.string("url", errors) {
        None => {
            if s.is_present() {
                errors.push("upstream.url", "is required");
            }
            None
        }
        Some(text) => match text.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http") | Some("https"))
                    && uri.authority().is_some() =>
            {
                if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
                    errors.push("upstream.url", format!("{text:?} must not have a path or query (paths are forwarded as requested)"));
                    None
                } else {
                    Some(uri)
                }
            }
            _ => {
                errors.push(
                    "upstream.url",
                    format!("{text:?} is not a URL like \"http://127.0.0.1:8000\""),
                );
                None
            }
        },
    };
    let connect_timeout = s.duration("connect_timeout", Duration::from_secs(2), errors);
    let timeout = s.duration("timeout", Duration::from_secs(30), errors);
    let pool_idle_timeout = s.duration("pool_idle_timeout", Duration::from_secs(90), errors);
    let http2 = s.bool("http2", errors).unwrap_or(false);
    s.finish(errors);
    Some(UpstreamConfig {
        url: url?,
        connect_timeout: connect_timeout?,
        timeout: timeout?,
        pool_idle_timeout: pool_idle_timeout?,
        http2,
    })
}

fn compile_jwt(root: &Table, ctx: &Ctx<'_>, errors: &mut Errors) -> Option<JwtSettings> {
    use jsonwebtoken::Algorithm;
    let mut s = Section::from_root(root, "jwt", errors);
    let mut ok = true;
    let listed = s.string_list("algorithms", errors);
    // Keys that come only from the identity provider's key set (no secret, no
    // static key) decide the algorithms themselves: an RSA key verifies RS*
    // and PS*, an EC key ES*, an Ed25519 key EdDSA, and a key's own `alg`
    // narrows that further. So without an explicit list every asymmetric
    // algorithm is allowed, and HS* never is.
    let keys_from_jwks_only = (s.has("jwks_url") || s.has("discovery"))
        && !(s.has("secret") || s.has("secret_env") || s.has("public_key_file"));
    let names = listed.unwrap_or_else(|| {
        if keys_from_jwks_only {
            [
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
            ]
            .map(String::from)
            .to_vec()
        } else {
            vec!["HS256".into()]
        }
    });
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Algorithm::from_str(name) {
            Ok(alg) => algorithms.push(alg),
            Err(_) => {
                ok = false;
                errors.push(format!("jwt.algorithms[{i}]"), format!("unknown algorithm {name:?} (use HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"));
            }
        }
    }
    if names.is_empty() {
        ok = false;
        errors.push("jwt.algorithms", "must list at least one algorithm");
    }
    let secret = ctx.secret(&mut s, "secret", "secret_env", ctx.needs.jwt, errors);
    let public_key_pem = match s.string("public_key_file", errors) {
        None => None,
        Some(file) => match std::fs::read(ctx.resolve(&file)) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                ok = false;
                errors.push("jwt.public_key_file", format!("cannot read {file:?}: {e}"));
                None
            }
        },
    };
    let jwks_url = s.string("jwks_url", errors);
    if let Some(url) = &jwks_url {
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.parse::<http::Uri>().is_err()
        {
            ok = false;
            errors.push("jwt.jwks_url", format!("{url:?} is not an http(s) URL"));
        }
    }
    let discovery = s.bool("discovery", errors).unwrap_or(false);
    let issuer = s.string("issuer", errors);
    if discovery {
        ok &= check_discovery(
            issuer.as_deref(),
            [
                ("jwks_url", s.has("jwks_url")),
                ("public_key_file", s.has("public_key_file")),
                ("secret", s.has("secret")),
                ("secret_env", s.has("secret_env")),
            ],
            errors,
        );
    }
    let is_hs = |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    // With `secret_env` named, an unset variable is reported (or, for a
    // command that signs and verifies nothing, allowed) by `ctx.secret`.
    if algorithms.iter().any(is_hs) && secret.is_none() && !s.has("secret_env") {
        ok = false;
        errors.push(
            "jwt.secret_env",
            "an HS* algorithm is allowed but no secret is configured (secret or secret_env)",
        );
    }
    if algorithms.iter().any(|a| !is_hs(a))
        && public_key_pem.is_none()
        && jwks_url.is_none()
        && !discovery
    {
        ok = false;
        errors.push("jwt.algorithms", "an asymmetric algorithm is allowed but neither public_key_file nor jwks_url (nor issuer with discovery = true) is configured");
    }
    if secret.as_ref().is_some_and(|s| s.len() < 16) {
        errors.push(
            "jwt.secret",
            "is shorter than 16 bytes; use a long random secret",
        );
    }
    let audience = s.string("audience", errors);
    let leeway = s.duration("leeway", Duration::from_secs(30), errors);
    let user_claim = s
        .string("user_claim", errors)
        .unwrap_or_else(|| "sub".into());
    if user_claim.is_empty() {
        errors.push("jwt.user_claim", "must not be empty");
    }
    let cookie = s.string("cookie", errors);
    let jwks_refresh = s.duration("jwks_refresh", Duration::from_secs(300), errors);
    let jwks_cooldown = s.duration("jwks_cooldown", Duration::from_secs(30), errors);
    s.finish(errors);
    if !ok {
        return None;
    }
    Some(JwtSettings {
        algorithms,
        secret: secret.map(String::into_bytes),
        public_key_pem,
        jwks_url,
        discovery,
        issuer,
        audience,
        leeway: leeway?.as_secs(),
        user_claim,
        cookie,
        jwks_refresh: jwks_refresh?,
        jwks_cooldown: jwks_cooldown?,
    })
}

/// The rules of `jwt.discovery = true`: the keys come from the issuer's
/// discovery document, so `jwt.issuer` must be an http(s) URL and no other
/// key source (`others`: each key with whether it is set) may compete with
/// it. Returns whether they all hold.
fn check_discovery<const N: usize>(
    issuer: Option<&str>,
    others: [(&str, bool); N],
    errors: &mut Errors,
) -> bool {
    let mut ok = true;
    match issuer {
        None => {
            ok = false;
            errors.push(
                "jwt.discovery",
                "needs jwt.issuer: the keys are found from the issuer's /.well-known/openid-configuration",
            );
        }
        Some(issuer) => {
            let is_url = (issuer.starts_with("https://") || issuer.starts_with("http://"))
                && issuer
                    .parse::<http::Uri>()
                    .is_ok_and(|uri| uri.host().is_some_and(|h| !h.is_empty()));
            if !is_url || issuer.contains(['?', '#']) {
                ok = false;
                errors.push(
                    "jwt.issuer",
                    format!(
                        "{issuer:?} is not an http(s) URL without query or fragment, which discovery = true needs"
                    ),
                );
            }
        }
    }
    let set: Vec<&str> = others
        .iter()
        .filter(|(_, is_set)| *is_set)
        .map(|(key, _)| *key)
        .collect();
    if !set.is_empty() {
        ok = false;
        errors.push(
            "jwt.discovery",
            format!(
                "discovery = true takes the keys from the identity provider; remove {}",
                set.iter()
                    .map(|key| format!("jwt.{key}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    ok
}

/// `[outbound]`: extra certificate authorities for control-plane HTTPS
/// (identity provider, Stripe API). The file is read here too, so that
/// `check-config` reports an unreadable or empty one.
fn compile_outbound(root: &Table, ctx: &Ctx<'_>, errors: &mut Errors) -> Option<OutboundConfig> {
    let mut s = Section::from_root(root, "outbound", errors);
    let ca_file = s.string("ca_file", errors).map(|f| ctx.resolve(&f));
    s.finish(errors);
    if let Some(path) = &ca_file {
        if let Err(e) = crate::outbound::read_ca_file(path) {
            // The message already starts with the key.
            let message = e.strip_prefix("outbound.ca_file: ").unwrap_or(&e);
            errors.push("outbound.ca_file", message);
            return None;
        }
    }
    Some(OutboundConfig { ca_file })
}

/// `[telemetry]`: where spans go. Without `otlp_endpoint` nothing is exported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces URL: `otlp_endpoint` + `/v1/traces`.
    pub otlp_traces_url: Option<http::Uri>,
    /// The `service.name` resource attribute of exported spans.
    pub service_name: String,
    /// How often a batch of spans is sent (sooner when a batch is full).
    pub export_interval: Duration,
}

fn compile_telemetry(root: &Table, errors: &mut Errors) -> Option<TelemetryConfig> {
    let mut s = Section::from_root(root, "telemetry", errors);
    let mut ok = true;
    let otlp_traces_url = s.string("otlp_endpoint", errors).and_then(|text| {
        // The OTLP/HTTP convention: the endpoint is the collector's base URL
        // and traces go to `/v1/traces` under it.
        let url = format!("{}/v1/traces", text.trim_end_matches('/'));
        match url.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http") | Some("https"))
                    && uri.authority().is_some()
                    && uri.query().is_none() =>
            {
                Some(uri)
            }
            _ => {
                errors.push(
                    "telemetry.otlp_endpoint",
                    format!("{text:?} is not an http(s) URL like \"http://collector:4318\""),
                );
                ok = false;
                None
            }
        }
    });
    let service_name = s
        .string("service_name", errors)
        .unwrap_or_else(|| "paygate".into());
    if service_name.is_empty() {
        errors.push("telemetry.service_name", "must not be empty");
        ok = false;
    }
    let export_interval = s.duration("export_interval", Duration::from_secs(5), errors);
    if export_interval.is_some_and(|d| d.is_zero()) {
        errors.push("telemetry.export_interval", "must be more than 0s");
        ok = false;
    }
    s.finish(errors);
    ok.then_some(TelemetryConfig {
        otlp_traces_url,
        service_name,
        export_interval: export_interval?,
    })
}

#[cfg(test)]
mod telemetry_tests {
    use super::*;

    fn compile(extra: &str) -> Result<Config, ConfigErrors> {
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[jwt]\nsecret_env = \"SECRET\"\n{extra}"
        );
        Config::compile(&text, Path::new("."), &|name| {
            (name == "SECRET").then(|| "a-test-secret-of-32-bytes-length".into())
        })
    }

    #[test]
    fn telemetry_is_off_by_default() {
        let config = compile("").unwrap();
        assert_eq!(config.telemetry.otlp_traces_url, None);
        assert_eq!(config.telemetry.service_name, "paygate");
        assert_eq!(config.telemetry.export_interval, Duration::from_secs(5));
    }

    #[test]
    fn the_endpoint_gets_the_traces_path() {
        let config = compile(
            "[telemetry]\notlp_endpoint = \"http://collector:4318/\"\nservice_name = \"edge\"\nexport_interval = \"100ms\"",
        )
        .unwrap();
        let url = config.telemetry.otlp_traces_url.unwrap();
        assert_eq!(url.to_string(), "http://collector:4318/v1/traces");
        assert_eq!(config.telemetry.service_name, "edge");
        assert_eq!(config.telemetry.export_interval, Duration::from_millis(100));
    }

    #[test]
    fn bad_telemetry_settings_name_their_key() {
        for (text, key) in [
            (
                "otlp_endpoint = \"collector:4318\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "otlp_endpoint = \"ftp://collector\"",
                "telemetry.otlp_endpoint",
            ),
            ("service_name = \"\"", "telemetry.service_name"),
            ("export_interval = \"0s\"", "telemetry.export_interval"),
            ("endpoint = \"http://c:4318\"", "telemetry.endpoint"),
        ] {
            let errors = compile(&format!("[telemetry]\n{text}")).unwrap_err();
            assert!(
                errors.0.iter().any(|e| e.key == key),
                "{text}: {:?}",
                errors.0
            );
        }
    }
}

fn compile_store(root: &Table, ctx: &Ctx<'_>, errors: &mut Errors) -> Option<StoreConfig> {
    let mut s = Section::from_root(root, "store", errors);
    let redis_url = s.string("redis_url", errors);
    if let Some(url) = &redis_url {
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://"))
        {
            errors.push(
                "store.redis_url",
                format!("{:?} is not a redis:// URL", redact_url(url)),
            );
        }
    }
    let key_prefix = s
        .string("key_prefix", errors)
        .unwrap_or_else(|| "paygate:".into());
    let cache_ttl = s.duration("cache_ttl", Duration::from_secs(5), errors);
    let cache_capacity = match s.integer("cache_capacity", errors) {
        None => Some(100_000),
        Some(n) if n > 0 => Some(n as u64),
        Some(_) => {
            errors.push("store.cache_capacity", "must be a positive integer");
            None
        }
    };
    let on_store_error = match s.string("on_store_error", errors).as_deref() {
        None | Some("stale") => Some(OnStoreError::Stale),
        Some("deny") => Some(OnStoreError::Deny),
        Some("allow") => Some(OnStoreError::Allow),
        Some(other) => {
            errors.push(
                "store.on_store_error",
                format!("{other:?} is not one of \"stale\", \"deny\", \"allow\""),
            );
            None
        }
    };
    let max_stale = s.duration("max_stale", Duration::from_secs(300), errors);
    let seed_file = s.string("seed_file", errors).map(|f| ctx.resolve(&f));
    if seed_file.is_some() && redis_url.is_some() {
        errors.push(
            "store.seed_file",
            "only applies to the in-memory store (remove redis_url or seed_file)",
        );
    }
    if let Some(path) = &seed_file {
        if !path.is_file() {
            errors.push(
                "store.seed_file",
                format!("{} does not exist", path.display()),
            );
        }
    }
    let redis_mode = match s.string("redis_mode", errors).as_deref() {
        None | Some("standalone") => Some(RedisMode::Standalone),
        Some("cluster") => Some(RedisMode::Cluster),
        Some("sentinel") => Some(RedisMode::Sentinel),
        Some(other) => {
            errors.push(
                "store.redis_mode",
                format!("{other:?} is not one of \"standalone\", \"cluster\", \"sentinel\""),
            );
            None
        }
    };
    let sentinel_urls = s.string_list("sentinel_urls", errors).unwrap_or_default();
    for url in &sentinel_urls {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            errors.push(
                "store.sentinel_urls",
                format!("{:?} is not a redis:// URL", redact_url(url)),
            );
        }
    }
    let sentinel_master = s.string("sentinel_master", errors);
    match redis_mode {
        Some(RedisMode::Sentinel) => {
            if sentinel_urls.is_empty() {
                errors.push(
                    "store.sentinel_urls",
                    "sentinel mode needs at least one sentinel",
                );
            }
            if sentinel_master.as_deref().is_none_or(str::is_empty) {
                errors.push(
                    "store.sentinel_master",
                    "sentinel mode needs the master's name",
                );
            }
        }
        Some(RedisMode::Cluster) if redis_url.is_none() => {
            errors.push("store.redis_url", "cluster mode needs a seed node's URL");
        }
        Some(_) if !sentinel_urls.is_empty() || sentinel_master.is_some() => {
            errors.push(
                "store.redis_mode",
                "sentinel_urls and sentinel_master only apply with redis_mode = \"sentinel\"",
            );
        }
        _ => {}
    }
    let tls_file = |key: &'static str, s: &mut Section<'_>, errors: &mut Errors| {
        let path = s.string(key, errors).map(|f| ctx.resolve(&f))?;
        if !path.is_file() {
            errors.push(
                format!("store.{key}"),
                format!("{} does not exist", path.display()),
            );
        }
        Some(path)
    };
    let tls_ca_file = tls_file("tls_ca_file", &mut s, errors);
    let tls_client_cert_file = tls_file("tls_client_cert_file", &mut s, errors);
    let tls_client_key_file = tls_file("tls_client_key_file", &mut s, errors);
    if tls_client_cert_file.is_some() != tls_client_key_file.is_some() {
        errors.push(
            "store.tls_client_cert_file",
            "mutual TLS needs both tls_client_cert_file and tls_client_key_file",
        );
    }
    let min_replica_acks = match s.integer("min_replica_acks", errors) {
        None => Some(0),
        Some(n) if (0..=16).contains(&n) => Some(n as u32),
        Some(_) => {
            errors.push("store.min_replica_acks", "must be an integer from 0 to 16");
            None
        }
    };
    let replica_ack_timeout = s.duration("replica_ack_timeout", Duration::from_secs(1), errors);
    // `WAIT` counts the replicas of one shard; a webhook's writes span several
    // shards of a cluster, so one `WAIT` cannot confirm them.
    if redis_mode == Some(RedisMode::Cluster) && min_replica_acks.is_some_and(|n| n > 0) {
        errors.push(
            "store.min_replica_acks",
            "is not supported with redis_mode = \"cluster\" (WAIT confirms one shard only); use 0",
        );
    }
    let audit_max_entries = match s.integer("audit_max_entries", errors) {
        None => Some(50),
        Some(n) if (1..=10_000).contains(&n) => Some(n as usize),
        Some(_) => {
            errors.push(
                "store.audit_max_entries",
                "must be an integer from 1 to 10000",
            );
            None
        }
    };
    let audit_ttl = s.duration("audit_ttl", Duration::from_secs(180 * 86_400), errors);
    let event_ttl = s.duration("event_ttl", Duration::from_secs(30 * 86_400), errors);
    for (key, value) in [("audit_ttl", audit_ttl), ("event_ttl", event_ttl)] {
        if value.is_some_and(|d| d.as_secs() == 0) {
            errors.push(format!("store.{key}"), "must be at least one second");
        }
    }
    s.finish(errors);
    Some(StoreConfig {
        redis_url,
        key_prefix,
        cache_ttl: cache_ttl?,
        cache_capacity: cache_capacity?,
        on_store_error: on_store_error?,
        max_stale: max_stale?,
        seed_file,
        redis_mode: redis_mode?,
        sentinel_urls,
        sentinel_master,
        tls_ca_file,
        tls_client_cert_file,
        tls_client_key_file,
        min_replica_acks: min_replica_acks?,
        replica_ack_timeout: replica_ack_timeout?,
        audit_max_entries: audit_max_entries?,
        audit_ttl: audit_ttl?,
        event_ttl: event_ttl?,
    })
}

/// `Some(None)` when the section is absent (valid), `None` on errors.
fn compile_stripe(
    root: &Table,
    ctx: &Ctx<'_>,
    errors: &mut Errors,
) -> Option<Option<StripeConfig>> {
    let mut s = Section::from_root(root, "stripe", errors);
    if !s.is_present() {
        return Some(None);
    }
    let webhook_path = s
        .string("webhook_path", errors)
        .unwrap_or_else(|| "/stripe/webhook".into());
    if routes::validate_prefix(&webhook_path).is_err() || webhook_path == "/" {
        errors.push(
            "stripe.webhook_path",
            format!(
                "{webhook_path:?} must be an absolute, normalized path like \"/stripe/webhook\""
            ),
        );
    }
    let has_secret_key = s.has("webhook_secret") || s.has("webhook_secret_env");
    let secret = if has_secret_key {
        ctx.secret(
            &mut s,
            "webhook_secret",
            "webhook_secret_env",
            ctx.needs.webhook,
            errors,
        )
    } else {
        // The documented default variable.
        match (ctx.env)("STRIPE_WEBHOOK_SECRET") {
            Some(v) if !v.is_empty() => Some(v),
            _ if !ctx.needs.webhook => None,
            _ => {
                errors.push(
                    "stripe.webhook_secret_env",
                    "environment variable STRIPE_WEBHOOK_SECRET is not set",
                );
                None
            }
        }
    };
    let webhook_secrets: Vec<String> = secret
        .map(|v| {
            v.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let tolerance = s.duration("tolerance", Duration::from_secs(300), errors);
    let max_body = s.size("max_body", 2 << 20, errors);
    let user_metadata_keys = s
        .string_list("user_metadata_keys", errors)
        .unwrap_or_else(|| vec!["user_id".into(), "djstripe_subscriber".into()]);
    let api_key = ctx.secret(
        &mut s,
        "api_key",
        "api_key_env",
        ctx.needs.stripe_api_key,
        errors,
    );
    let api_base = s
        .string("api_base", errors)
        .unwrap_or_else(|| "https://api.stripe.com".into());
    if api_base
        .parse::<http::Uri>()
        .map(|u| u.scheme().is_none())
        .unwrap_or(true)
    {
        errors.push(
            "stripe.api_base",
            format!("{api_base:?} is not an http(s) URL"),
        );
    }
    let livemode = s.bool("livemode", errors);
    let refetch = s.bool("refetch", errors).unwrap_or(false);
    let body_timeout = s.duration("body_timeout", Duration::from_secs(10), errors);
    if body_timeout == Some(Duration::ZERO) {
        errors.push("stripe.body_timeout", "must be greater than zero");
    }
    let max_concurrent = match s.integer("max_concurrent", errors) {
        None => Some(16),
        Some(n) if (1..=10_000).contains(&n) => Some(n as usize),
        Some(_) => {
            errors.push(
                "stripe.max_concurrent",
                "must be an integer from 1 to 10000",
            );
            None
        }
    };
    if refetch && api_key.is_none() && !s.has("api_key_env") {
        errors.push(
            "stripe.refetch",
            "needs api_key_env (the Stripe API is read to refetch subscriptions)",
        );
    }
    s.finish(errors);
    Some(Some(StripeConfig {
        webhook_path,
        webhook_secrets,
        tolerance: tolerance?,
        max_body: max_body?,
        user_metadata_keys,
        api_key,
        api_base: api_base.trim_end_matches('/').to_string(),
        livemode,
        refetch,
        body_timeout: body_timeout?,
        max_concurrent: max_concurrent?,
    }))
}

fn compile_plans(root: &Table, errors: &mut Errors) -> HashMap<String, Vec<String>> {
    let mut plans = HashMap::new();
    match root.get("plans") {
        None => {}
        Some(Value::Table(table)) => {
            for (id, value) in table {
                let path = format!("plans.{id:?}");
                match value {
                    Value::Table(t) => {
                        let mut s = Section::new(path, Some(t));
                        let features = s.string_list("features", errors).unwrap_or_default();
                        s.finish(errors);
                        plans.insert(id.clone(), features);
                    }
                    _ => errors.push(path, "must be a table with `features = [...]`"),
                }
            }
        }
        Some(_) => errors.push(
            "plans",
            "must be a table of [plans.\"price_or_product_id\"]",
        ),
    }
    plans
}

fn compile_access(
    root: &Table,
    plans: HashMap<String, Vec<String>>,
    errors: &mut Errors,
) -> Option<AccessConfig> {
    let mut s = Section::from_root(root, "access", errors);
    let mut grant_statuses = Vec::new();
    let names = s
        .string_list("grant_statuses", errors)
        .unwrap_or_else(|| vec!["active".into(), "trialing".into()]);
    for (i, name) in names.iter().enumerate() {
        match SubscriptionStatus::parse(name) {
            Some(status) => grant_statuses.push(status),
            None => errors.push(
                format!("access.grant_statuses[{i}]"),
                format!("{name:?} is not a Stripe subscription status"),
            ),
        }
    }
    let past_due_grace = s.duration("past_due_grace", Duration::ZERO, errors);
    let default = match s.string("default", errors).as_deref() {
        None => Some(Policy::Subscription),
        Some(name) => Policy::parse(name).or_else(|| {
            errors.push(
                "access.default",
                format!("{name:?} is not one of \"public\", \"authenticated\", \"subscription\""),
            );
            None
        }),
    };
    let checkout_redirect = s
        .string("checkout_redirect", errors)
        .unwrap_or_else(|| "/checkout".into());
    let expired_redirect = s
        .string("expired_redirect", errors)
        .unwrap_or_else(|| "/subscription/expired".into());
    let case_insensitive_paths = s.bool("case_insensitive_paths", errors).unwrap_or(false);
    s.finish(errors);
    Some(AccessConfig {
        rules: AccessRules {
            grant_statuses,
            past_due_grace: past_due_grace?.as_secs() as i64,
            plans,
        },
        default: default?,
        checkout_redirect,
        expired_redirect,
        case_insensitive_paths,
    })
}

/// `access` is `access.default` and `access.case_insensitive_paths` (`None` when
/// that section had errors).
fn compile_routes(
    root: &Table,
    access: Option<(Policy, bool)>,
    errors: &mut Errors,
) -> Option<RouteTable> {
    let ignore_case = access.is_some_and(|(_, ignore_case)| ignore_case);
    let mut routes = Vec::new();
    let entries: &[Value] = match root.get("routes") {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(_) => {
            errors.push("routes", "must be an array of tables ([[routes]])");
            &[]
        }
    };
    let mut ok = true;
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("routes[{i}]");
        let Value::Table(table) = entry else {
            errors.push(path, "must be a table");
            ok = false;
            continue;
        };
        let mut s = Section::new(path.clone(), Some(table));
        let prefix = s.string("prefix", errors);
        if prefix.is_none() && !s.has("prefix") {
            errors.push(format!("{path}.prefix"), "is required");
        }
        if let Some(p) = &prefix {
            if let Err(reason) = routes::validate_prefix(p) {
                errors.push(format!("{path}.prefix"), reason);
                ok = false;
            }
            let reserved = |p: &str| p == "/_paygate" || p.starts_with("/_paygate/");
            if reserved(p) || (ignore_case && reserved(&p.to_ascii_lowercase())) {
                errors.push(
                    format!("{path}.prefix"),
                    "/_paygate/ is reserved for the gateway's own endpoints",
                );
                ok = false;
            }
        }
        let policy = match s.string("policy", errors).as_deref() {
            None => {
                errors.push(
                    format!("{path}.policy"),
                    "is required (\"public\", \"authenticated\" or \"subscription\")",
                );
                None
            }
            Some(name) => Policy::parse(name).or_else(|| {
                errors.push(
                    format!("{path}.policy"),
                    format!(
                        "{name:?} is not one of \"public\", \"authenticated\", \"subscription\""
                    ),
                );
                None
            }),
        };
        let features = s.string_list("features", errors).unwrap_or_default();
        if !features.is_empty() && policy.is_some_and(|p| p != Policy::Subscription) {
            errors.push(
                format!("{path}.features"),
                "only applies to policy = \"subscription\"",
            );
            ok = false;
        }
        let methods = match s.string_list("methods", errors) {
            None => None,
            Some(names) => {
                let mut methods = Vec::new();
                for (j, name) in names.iter().enumerate() {
                    match http::Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
                        Ok(m) if name.chars().all(|c| c.is_ascii_alphabetic()) => methods.push(m),
                        _ => {
                            errors.push(
                                format!("{path}.methods[{j}]"),
                                format!("{name:?} is not an HTTP method"),
                            );
                            ok = false;
                        }
                    }
                }
                if methods.is_empty() {
                    errors.push(
                        format!("{path}.methods"),
                        "must list at least one method (omit it for every method)",
                    );
                    ok = false;
                }
                Some(methods)
            }
        };
        s.finish(errors);
        match (prefix, policy) {
            (Some(prefix), Some(policy)) => routes.push(Route {
                prefix,
                policy,
                features,
                methods,
            }),
            _ => ok = false,
        }
    }
    // Two routes with the same prefix and overlapping methods would make the
    // winner depend on file order: refuse. A `GET` route also applies to `HEAD`,
    // and with case-insensitive paths `/API` and `/api` are one prefix.
    let same_method = |m: &http::Method, n: &http::Method| {
        m == n || matches!((m.as_str(), n.as_str()), ("GET", "HEAD") | ("HEAD", "GET"))
    };
    for i in 0..routes.len() {
        for j in (i + 1)..routes.len() {
            let (a, b) = (&routes[i], &routes[j]);
            let overlap = match (&a.methods, &b.methods) {
                (None, None) => true,
                (Some(x), Some(y)) => x.iter().any(|m| y.iter().any(|n| same_method(m, n))),
                _ => false,
            };
            let same_prefix =
                a.prefix == b.prefix || (ignore_case && a.prefix.eq_ignore_ascii_case(&b.prefix));
            if same_prefix && overlap {
                errors.push(
                    format!("routes[{j}].prefix"),
                    format!("{:?} duplicates routes[{i}] for the same methods", b.prefix),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    Some(RouteTable::new(routes, access?.0).with_case_insensitive_paths(ignore_case))
}

fn compile_admin(root: &Table, ctx: &Ctx<'_>, errors: &mut Errors) -> Option<Option<AdminConfig>> {
    let mut s = Section::from_root(root, "admin", errors);
    if !s.is_present() {
        return Some(None);
    }
    let listen_text = s
        .string("listen", errors)
        .unwrap_or_else(|| "127.0.0.1:9090".into());
    let listen = parse_addr(&s, "listen", &listen_text, errors);
    let token = ctx.secret(&mut s, "token", "token_env", ctx.needs.admin_token, errors);
    if token.as_ref().is_some_and(|t| t.len() < 16) {
        errors.push(
            "admin.token",
            "is shorter than 16 bytes; use a long random token",
        );
    }
    s.finish(errors);
    Some(Some(AdminConfig {
        listen: listen?,
        token,
    }))
}

fn compile_log(root: &Table, errors: &mut Errors) -> Option<LogConfig> {
    let mut s = Section::from_root(root, "log", errors);
    let format = match s.string("format", errors).as_deref() {
        None | Some("text") => Some(LogFormat::Text),
        Some("json") => Some(LogFormat::Json),
        Some(other) => {
            errors.push(
                "log.format",
                format!("{other:?} is not one of \"text\", \"json\""),
            );
            None
        }
    };
    let level = s.string("level", errors).unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        errors.push(
            "log.level",
            format!("{level:?} is not a log filter like \"info\" or \"paygate=debug\""),
        );
    }
    s.finish(errors);
    Some(LogConfig {
        format: format?,
        level,
    })
}

fn compile_headers(root: &Table, errors: &mut Errors) -> Option<IdentityHeaders> {
    let mut s = Section::from_root(root, "headers", errors);
    let name = |key: &'static str,
                default: &str,
                s: &mut Section<'_>,
                errors: &mut Errors|
     -> Option<HeaderName> {
        let text = s.string(key, errors).unwrap_or_else(|| default.into());
        match HeaderName::from_bytes(text.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                errors.push(s.key(key), format!("{text:?} is not a valid header name"));
                None
            }
        }
    };
    let user_id = name("user_id", "X-User-Id", &mut s, errors);
    let status = name("status", "X-Subscription-Status", &mut s, errors);
    let entitlements = name("entitlements", "X-Entitlements", &mut s, errors);
    s.finish(errors);
    Some(IdentityHeaders {
        user_id: user_id?,
        status: status?,
        entitlements: entitlements?,
    })
}

/// Environment variables that replace one key of the file, so a container
/// or a compose file can point one image at its own listener, upstream and
/// Redis without writing a config file. The value goes into the parsed table
/// in place of the key's own, and so is validated exactly like it.
const ENV_OVERRIDES: &[(&str, &str, &str)] = &[
    ("PAYGATE_LISTEN", "server", "listen"),
    ("PAYGATE_UPSTREAM_URL", "upstream", "url"),
    ("PAYGATE_REDIS_URL", "store", "redis_url"),
];

/// Writes each set (non-empty) override into `root`; returns the keys it
/// replaced, with their variable, for [`name_env_overrides`]. A section that
/// is present but not a table is left alone: its own error says what is wrong.
fn apply_env_overrides(
    root: &mut Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, &'static str)> {
    let mut replaced = Vec::new();
    for &(var, section, key) in ENV_OVERRIDES {
        let Some(value) = env(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let table = root
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(table) = table {
            table.insert(key.to_string(), Value::String(value));
            replaced.push((format!("{section}.{key}"), var));
        }
    }
    replaced
}

/// An error about an overridden key names the variable first, as in
/// `PAYGATE_LISTEN (server.listen)`: the file's value was not the one read.
fn name_env_overrides(
    mut errors: Vec<ConfigError>,
    replaced: &[(String, &'static str)],
) -> Vec<ConfigError> {
    for error in &mut errors {
        if let Some((key, var)) = replaced.iter().find(|(key, _)| *key == error.key) {
            error.key = format!("{var} ({key})");
        }
    }
    errors
}

#[cfg(test)]
mod tests;
