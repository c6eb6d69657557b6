//! The gateway under test: `paygate serve` as a child process with its own temp config.
//!
//! [`Config`] renders a TOML config (docs/configuration.md plus the test seed
//! file); its defaults are the documented example routes and a set of seeded users
//! ([`standard_users`]), and each test changes only what it is about.
//! [`Gateway::start`] writes the config to a temp dir, spawns the binary, reads
//! the `paygate listening on http://...` line to learn the port, and polls
//! `/_paygate/healthz` until it answers. The process is killed when the
//! `Gateway` is dropped, so a failing test never leaks it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::time::{sleep, timeout, Instant};

use super::jwt::{self, SECRET};
use super::raw::{self, RawConn, RawResponse, Request};
use super::upstream::{Recorded, Upstream};
use super::DEADLINE;

/// A `paygate` command for the binary under test, with `$PAYGATE_CONFIG`
/// cleared so the caller's environment cannot leak into a test.
pub(crate) fn paygate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paygate"));
    cmd.env_remove("PAYGATE_CONFIG").stdin(Stdio::null());
    cmd
}

/// Users seeded into the memory store by default (`[store] seed_file`).
///
/// | user  | state |
/// | ----- | ----- |
/// | alice | `active`, price `price_basic` (no features) |
/// | bob   | `canceled` |
/// | carol | `active`, `features: ["export"]` from Stripe Entitlements |
/// | dave  | absent: never subscribed |
/// | erin  | `trialing`, trial ends in 7 days |
/// | frank | `past_due` since yesterday |
/// | gina  | `canceled`, override until tomorrow granting `export` |
/// | hank  | `incomplete` |
/// | ivan  | `active`, price `price_pro` (`[plans]` maps it to `export`) |
/// | judy  | `canceled`, override that ended yesterday |
pub(crate) fn standard_users() -> Value {
    let now = jwt::now();
    let day = 86_400;
    json!({
        "alice": {
            "customers": ["cus_alice"],
            "subscriptions": [{
                "id": "sub_alice", "customer": "cus_alice", "status": "active",
                "created": 1_700_000_000, "current_period_end": now + 30 * day,
                "price_ids": ["price_basic"], "product_ids": ["prod_basic"]
            }]
        },
        "bob": {
            "customers": ["cus_bob"],
            "subscriptions": [{"id": "sub_bob", "customer": "cus_bob", "status": "canceled", "created": 1_700_000_000}]
        },
        "carol": {
            "subscriptions": [{"id": "sub_carol", "status": "active", "created": 1_700_000_000}],
            "features": ["export"]
        },
        "erin": {
            "subscriptions": [{
                "id": "sub_erin", "status": "trialing", "created": now - day,
                "trial_start": now - day, "trial_end": now + 7 * day
            }],
            "has_used_trial": true,
            "first_trial_at": now - day
        },
        "frank": {
            "subscriptions": [{
                "id": "sub_frank", "status": "past_due", "created": 1_700_000_000,
                "past_due_since": now - day
            }]
        },
        "gina": {
            "subscriptions": [{"id": "sub_gina", "status": "canceled", "created": 1_700_000_000}],
            "override": {"until": now + day, "reason": "support comp", "features": ["export"]}
        },
        "hank": {
            "subscriptions": [{"id": "sub_hank", "status": "incomplete", "created": 1_700_000_000}]
        },
        "ivan": {
            "subscriptions": [{
                "id": "sub_ivan", "status": "active", "created": 1_700_000_000,
                "price_ids": ["price_pro"], "product_ids": ["prod_pro"]
            }]
        },
        "judy": {
            "subscriptions": [{"id": "sub_judy", "status": "canceled", "created": 1_700_000_000}],
            "override": {"until": now - day, "reason": "expired comp"}
        }
    })
}

/// A gateway config under construction. Values are raw TOML (`"\"1KiB\""`,
/// `"[\"HS256\"]"`); [`Config::set_str`] quotes a string for you.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// `[section]` tables in output order, each with `key = value` lines.
    sections: Vec<(String, Vec<(String, String)>)>,
    /// Bodies of the `[[routes]]` tables.
    routes: Vec<String>,
    /// `[plans."id"]` tables: id and features.
    plans: Vec<(String, Vec<String>)>,
    /// The seed file's JSON; `None` writes no seed file.
    users: Option<Value>,
    /// Environment variables for the gateway process.
    env: Vec<(String, String)>,
    /// Extra files written next to the config (name, content).
    files: Vec<(String, String)>,
    /// With [`Config::tls`]: the PEM of the CA that signed the gateway's
    /// certificate, which clients (and the readiness probe) trust.
    tls_ca: Option<String>,
}

/// Quotes a string as a TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

impl Config {
    /// The documented example config, pointed at `upstream_url`, with the test secret,
    /// fast timeouts, [`standard_users`] seeded and `price_pro` granting `export`.
    pub(crate) fn new(upstream_url: &str) -> Config {
        let s = |v: &str| toml_str(v);
        let section = |name: &str, kv: &[(&str, String)]| {
            (
                name.to_string(),
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect::<Vec<_>>(),
            )
        };
        Config {
            sections: vec![
                section(
                    "server",
                    &[
                        ("listen", s("127.0.0.1:0")),
                        ("max_body", s("10MiB")),
                        ("header_timeout", s("10s")),
                        ("shutdown_grace", s("10s")),
                    ],
                ),
                section(
                    "upstream",
                    &[("url", s(upstream_url)), ("connect_timeout", s("2s")), ("timeout", s("10s"))],
                ),
                section(
                    "jwt",
                    &[
                        ("algorithms", r#"["HS256"]"#.to_string()),
                        ("secret", s(SECRET)),
                        ("leeway", s("30s")),
                        ("user_claim", s("sub")),
                    ],
                ),
                section("store", &[("seed_file", s("users.json"))]),
                section(
                    "access",
                    &[
                        ("grant_statuses", r#"["active", "trialing"]"#.to_string()),
                        ("past_due_grace", s("0s")),
                        ("default", s("subscription")),
                        ("checkout_redirect", s("/checkout")),
                        ("expired_redirect", s("/subscription/expired")),
                    ],
                ),
            ],
            routes: vec![
                "prefix = \"/health\"\npolicy = \"public\"".to_string(),
                "prefix = \"/api/subscriptions\"\npolicy = \"authenticated\"".to_string(),
                "prefix = \"/api/banking\"\npolicy = \"subscription\"".to_string(),
                "prefix = \"/api/reports/export\"\npolicy = \"subscription\"\nfeatures = [\"export\"]\nmethods = [\"POST\"]"
                    .to_string(),
            ],
            plans: vec![("price_pro".to_string(), vec!["export".to_string()])],
            users: Some(standard_users()),
            env: Vec::new(),
            files: Vec::new(),
            tls_ca: None,
        }
    }

    /// Serves TLS with the server certificate of `files` (copied next to the
    /// config as `tls-cert.pem` and `tls-key.pem`); clients trust its CA.
    pub(crate) fn tls(self, files: &paygate_testkit::TlsFiles) -> Config {
        let read = |p: &Path| std::fs::read_to_string(p).expect("read generated PEM");
        let mut cfg = self
            .file("tls-cert.pem", &read(&files.server_cert))
            .file("tls-key.pem", &read(&files.server_key))
            .set_str("server.tls.cert_file", "tls-cert.pem")
            .set_str("server.tls.key_file", "tls-key.pem");
        cfg.tls_ca = Some(read(&files.ca_cert));
        cfg
    }

    /// Sets `section.key` to a raw TOML value (adds the section if needed).
    pub(crate) fn set(mut self, path: &str, raw_value: &str) -> Config {
        let (section, key) = path.split_once('.').expect("path is section.key");
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let entries = &mut self.sections[idx].1;
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = raw_value.to_string(),
            None => entries.push((key.to_string(), raw_value.to_string())),
        }
        self
    }

    /// Sets `section.key` to a TOML string.
    pub(crate) fn set_str(self, path: &str, value: &str) -> Config {
        self.set(path, &toml_str(value))
    }

    /// Removes `section.key`.
    pub(crate) fn unset(mut self, path: &str) -> Config {
        let (section, key) = path.split_once('.').expect("path is section.key");
        if let Some((_, entries)) = self.sections.iter_mut().find(|(s, _)| s == section) {
            entries.retain(|(k, _)| k != key);
        }
        self
    }

    /// Adds a `[[routes]]` table with just a prefix and a policy.
    pub(crate) fn route(self, prefix: &str, policy: &str) -> Config {
        self.route_toml(&format!(
            "prefix = {}\npolicy = {}",
            toml_str(prefix),
            toml_str(policy)
        ))
    }

    /// Adds a `[[routes]]` table with the given body lines.
    pub(crate) fn route_toml(mut self, body: &str) -> Config {
        self.routes.push(body.to_string());
        self
    }

    /// Adds (or replaces) a `[plans."id"]` table.
    pub(crate) fn plan(mut self, id: &str, features: &[&str]) -> Config {
        self.plans.retain(|(p, _)| p != id);
        self.plans.push((
            id.to_string(),
            features.iter().map(|f| f.to_string()).collect(),
        ));
        self
    }

    /// Replaces the seeded users (`None`: no seed file at all).
    pub(crate) fn users(mut self, users: Option<Value>) -> Config {
        if users.is_none() {
            self = self.unset("store.seed_file");
        }
        self.users = users;
        self
    }

    /// Adds or replaces one seeded user.
    pub(crate) fn user(mut self, id: &str, entitlement: Value) -> Config {
        let users = self.users.get_or_insert_with(|| json!({}));
        users[id] = entitlement;
        self
    }

    /// Sets an environment variable for the gateway process.
    pub(crate) fn env(mut self, name: &str, value: &str) -> Config {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Writes an extra file next to the config.
    pub(crate) fn file(mut self, name: &str, content: &str) -> Config {
        self.files.push((name.to_string(), content.to_string()));
        self
    }

    /// The TOML text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (section, entries) in &self.sections {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in entries {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        for route in &self.routes {
            out.push_str(&format!("[[routes]]\n{route}\n\n"));
        }
        for (id, features) in &self.plans {
            let list: Vec<String> = features.iter().map(|f| toml_str(f)).collect();
            out.push_str(&format!(
                "[plans.{}]\nfeatures = [{}]\n\n",
                toml_str(id),
                list.join(", ")
            ));
        }
        out
    }

    /// Writes `paygate.toml`, the seed file and extra files into `dir`; returns
    /// the config path.
    pub(crate) fn write_to(&self, dir: &Path) -> PathBuf {
        let path = dir.join("paygate.toml");
        std::fs::write(&path, self.render()).expect("write config");
        if let Some(users) = &self.users {
            std::fs::write(
                dir.join("users.json"),
                serde_json::to_vec_pretty(users).unwrap(),
            )
            .expect("write seed file");
        }
        for (name, content) in &self.files {
            std::fs::write(dir.join(name), content).expect("write extra file");
        }
        path
    }

    /// The environment variables set with [`Config::env`].
    pub(crate) fn envs(&self) -> &[(String, String)] {
        &self.env
    }
}

/// A running `paygate serve`. Killed (SIGKILL) on drop unless it already exited.
pub(crate) struct Gateway {
    /// Where it listens, from its `paygate listening on` line.
    pub addr: SocketAddr,
    /// The CA clients trust, when it serves TLS (`paygate listening on https://`).
    pub ca: Option<String>,
    child: Child,
    /// stderr (and any stdout after the first line), for failure messages.
    log: Arc<Mutex<String>>,
    log_threads: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
    barriers: AtomicUsize,
    /// Holds the config dir for as long as the process runs.
    dir: TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Gateway {
    /// Starts a gateway and waits until `/_paygate/healthz` answers `200`.
    pub(crate) async fn start(cfg: &Config) -> Gateway {
        match Gateway::try_start(cfg).await {
            Ok(gw) => gw,
            Err(e) => panic!("{e}\n--- config ---\n{}", cfg.render()),
        }
    }

    /// Like [`Gateway::start`], but a gateway that does not come up is an `Err`
    /// carrying its exit status and stderr.
    pub(crate) async fn try_start(cfg: &Config) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = cfg.write_to(dir.path());
        let mut cmd = paygate();
        cmd.arg("serve")
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &cfg.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn paygate");

        let log = Arc::new(Mutex::new(String::new()));
        let (line_tx, line_rx) = tokio::sync::oneshot::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out_log = log.clone();
        let out_thread = std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = line_tx.send(first);
            }
            for line in lines.map_while(Result::ok) {
                out_log
                    .lock()
                    .unwrap()
                    .push_str(&format!("[stdout] {line}\n"));
            }
        });
        let err_log = log.clone();
        let err_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                err_log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let mut gw = Gateway {
            addr: "127.0.0.1:1".parse().unwrap(),
            ca: cfg.tls_ca.clone(),
            child,
            log,
            log_threads: vec![out_thread, err_thread],
            exit: None,
            barriers: AtomicUsize::new(0),
            dir,
        };

        let line = match timeout(DEADLINE, line_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => return Err(gw.fail("paygate closed stdout without a `listening` line")),
            Err(_) => return Err(gw.fail("paygate printed no `listening` line in time")),
        };
        let scheme = if gw.ca.is_some() { "https" } else { "http" };
        let Some(addr) = line
            .strip_prefix(&format!("paygate listening on {scheme}://"))
            .and_then(|a| a.trim_end().parse::<SocketAddr>().ok())
        else {
            return Err(gw.fail(&format!(
                "first stdout line must be `paygate listening on {scheme}://127.0.0.1:PORT`, got {line:?}"
            )));
        };
        gw.addr = addr;
        if let Some(ca) = gw.ca.clone() {
            // Ready once a TLS request for the health endpoint is answered.
            let deadline = Instant::now() + DEADLINE;
            loop {
                if let Ok(Some(status)) = gw.child.try_wait() {
                    gw.exit = Some(status);
                    return Err(gw.fail(&format!(
                        "paygate exited ({status}) before becoming healthy"
                    )));
                }
                if let Ok((stream, _)) = super::https::tls(addr, &ca, &[b"http/1.1"]).await {
                    if let Ok((mut sender, connection)) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                    {
                        tokio::spawn(connection);
                        let request = http::Request::get("/_paygate/healthz")
                            .header("host", "localhost")
                            .body(super::https::whole(""))
                            .unwrap();
                        if let Ok(answer) = super::https::send_h1(&mut sender, request).await {
                            if answer.status == 200 {
                                return Ok(gw);
                            }
                        }
                    }
                }
                if Instant::now() > deadline {
                    return Err(gw.fail("/_paygate/healthz never answered 200 over TLS"));
                }
                // Polling interval between readiness probes, not a synchronization.
                sleep(Duration::from_millis(25)).await;
            }
        }

        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = gw.child.try_wait() {
                gw.exit = Some(status);
                return Err(gw.fail(&format!(
                    "paygate exited ({status}) before becoming healthy"
                )));
            }
            if let Ok(Ok(mut conn)) =
                timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await
                    .map(|r| r.map(RawConn::from_stream))
            {
                let req = raw::get("/_paygate/healthz").to_bytes();
                if conn.write(&req).await.is_ok() {
                    if let Ok(Ok(resp)) =
                        timeout(Duration::from_secs(2), conn.try_read_response()).await
                    {
                        if resp.status == 200 {
                            return Ok(gw);
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(gw.fail("/_paygate/healthz never answered 200"));
            }
            // Polling interval between readiness probes, not a synchronization.
            sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the process (if running) and builds a failure message with its log.
    fn fail(&mut self, what: &str) -> String {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        for t in self.log_threads.drain(..) {
            let _ = t.join();
        }
        format!(
            "{what}; exit: {:?}\n--- paygate log ---\n{}",
            self.exit,
            self.log()
        )
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config directory (holds `paygate.toml` and `users.json`).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the process wrote to stderr so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Polls stderr until a JSON log line satisfies `pred`; fails after
    /// [`DEADLINE`] with the log.
    pub(crate) async fn json_line(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let found = self
                .log()
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|value| pred(value));
            if let Some(value) = found {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "no matching log line in:\n{}",
                self.log()
            );
            // Polling interval for the log reader thread, not a synchronization.
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends one request on a fresh connection and reads the response.
    pub(crate) async fn send(&self, req: Request) -> RawResponse {
        raw::send(self.addr, req).await
    }

    /// Opens a raw connection to the gateway.
    pub(crate) async fn connect(&self) -> RawConn {
        RawConn::connect(self.addr).await
    }

    /// Sends a signal (`"TERM"`, `"INT"`) with `kill`.
    pub(crate) fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit and returns its status.
    pub(crate) async fn wait_exit(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "paygate did not exit in time\n--- log ---\n{}",
                self.log()
            );
            // Polling interval for the child's exit, not a synchronization.
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process's resident set size in KiB (`VmRSS` in `/proc/PID/status`).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sends a public request through the gateway and waits for it at the
    /// upstream; returns every other request that arrived there before it.
    ///
    /// A request the gateway denied would have been forwarded before the
    /// gateway answered it, so once a later request has made the round trip,
    /// "nothing else arrived" is a real observation rather than a race. Needs
    /// the default public `/health` route.
    pub(crate) async fn barrier(&self, up: &Upstream) -> Vec<Recorded> {
        let n = self.barriers.fetch_add(1, Ordering::SeqCst);
        let target = format!("/health/__barrier{n}");
        let resp = self.send(raw::get(&target)).await;
        assert!(
            resp.status == 200 && resp.answered_by_upstream(),
            "barrier request {target} was not forwarded (needs the public /health route): {} {:?}",
            resp.status,
            resp.text()
        );
        let deadline = Instant::now() + DEADLINE;
        loop {
            let arrivals = up.arrivals();
            if arrivals.iter().any(|r| r.target == target) {
                return arrivals
                    .into_iter()
                    .filter(|r| !r.target.starts_with("/health/__barrier"))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "barrier {target} never reached the upstream"
            );
            up.wait_arrivals(arrivals.len() + 1).await;
        }
    }

    /// Asserts that nothing but barrier requests reached the upstream.
    pub(crate) async fn assert_nothing_forwarded(&self, up: &Upstream) {
        let got = self.barrier(up).await;
        assert!(
            got.is_empty(),
            "expected nothing to reach the upstream, it got {:#?}",
            got.iter()
                .map(|r| (&r.method, &r.target))
                .collect::<Vec<_>>()
        );
    }
}
