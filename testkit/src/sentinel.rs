//! A throwaway Sentinel deployment per test: a master, one replica and one or
//! three `redis-server --sentinel` processes watching them, with a forced
//! failover ([`TestSentinel::failover`]) that returns once the switch is over.
//!
//! Everything listens on free loopback ports (never 6379) and dies on drop.
//! Every wait polls with [`DEADLINE`]; nothing sleeps to synchronize. Sentinel
//! state is read with `redis-cli` (its replies are nested arrays, which the
//! plain [`TestRedis::command`] does not parse), so `redis-cli` must be
//! installed next to `redis-server`.
//!
//! [`TestSentinel::start_tls`] makes the same deployment with the servers'
//! clients, replication and the sentinels' links to the servers on TLS ports,
//! so the sentinels name the TLS ports (each server keeps a plain port for
//! this crate's readiness checks and inspection only).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::redis::{free_port, TestRedis};
use crate::tls::TlsFiles;
use crate::DEADLINE;

/// The master name the sentinels monitor.
pub const MASTER_NAME: &str = "paygate-test";

/// One `redis-server --sentinel` process and its (rewritable) config file.
struct SentinelProcess {
    port: u16,
    child: Child,
    dir: TempDir,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SentinelProcess {
    /// `tls`: reach the servers over TLS (`master_port` is then a TLS port).
    fn spawn(
        master_port: u16,
        quorum: usize,
        tls: Option<&TlsFiles>,
    ) -> Result<SentinelProcess, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        // Low detection and failover timeouts keep the tests short; the
        // down-after is still well above a loaded machine's scheduling hiccups
        // so no failover happens unless a test asks for one.
        let mut text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {MASTER_NAME} 2000\n\
             sentinel failover-timeout {MASTER_NAME} 6000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.path().display(),
            log = dir.path().join("sentinel.log").display(),
        );
        if let Some(files) = tls {
            // `tls-replication` makes a sentinel speak TLS to the servers it
            // monitors; its own port stays plain.
            text.push_str(&format!(
                "tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\n",
                files.server_cert.display(),
                files.server_key.display(),
                files.ca_cert.display(),
            ));
        }
        std::fs::write(&config, text).map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server --sentinel: {e}"))?;
        Ok(SentinelProcess { port, child, dir })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

/// A master, its replica and the sentinels that monitor them, owned by one test.
pub struct TestSentinel {
    /// `nodes[master]` is the current master, the other one its replica.
    nodes: [TestRedis; 2],
    master: usize,
    /// The port the sentinels know each node by (its TLS port under TLS).
    announced: [u16; 2],
    sentinels: Vec<SentinelProcess>,
}

impl TestSentinel {
    /// A master, one replica and one sentinel (quorum 1), ready: the sentinel
    /// reports the master and knows the replica, and the replica is in sync.
    pub fn start() -> TestSentinel {
        TestSentinel::start_with_sentinels(1)
    }

    /// Like [`TestSentinel::start`] with `count` sentinels (quorum: a majority).
    pub fn start_with_sentinels(count: usize) -> TestSentinel {
        TestSentinel::start_deployment(count, None)
    }

    /// Like [`TestSentinel::start`], over TLS with `files` (no client
    /// certificates required): replication and the sentinels' links use the
    /// servers' TLS ports, so `SENTINEL get-master-addr-by-name` answers a TLS
    /// port (see [`TestRedis::tls_url`]). The sentinels themselves stay plain.
    pub fn start_tls(files: &TlsFiles) -> TestSentinel {
        TestSentinel::start_deployment(1, Some(files))
    }

    fn start_deployment(count: usize, tls: Option<&TlsFiles>) -> TestSentinel {
        let path = |p: &std::path::Path| p.to_str().expect("UTF-8 temp path").to_owned();
        let tls_args = |port: &str| -> Vec<String> {
            let Some(files) = tls else {
                return Vec::new();
            };
            vec![
                "--tls-port".into(),
                port.into(),
                "--tls-cert-file".into(),
                path(&files.server_cert),
                "--tls-key-file".into(),
                path(&files.server_key),
                "--tls-ca-cert-file".into(),
                path(&files.ca_cert),
                "--tls-auth-clients".into(),
                "no".into(),
                "--tls-replication".into(),
                "yes".into(),
            ]
        };
        let start = |replica_of: Option<u16>| {
            let tls_port = free_port();
            let mut args = tls_args(&tls_port.to_string());
            args.extend(["--repl-diskless-sync".into(), "no".into()]);
            if let Some(port) = replica_of {
                args.extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let node = TestRedis::start_with(&args);
            // A replica announces (and a sentinel then names) its TLS port
            // when it replicates over TLS.
            let announced = if tls.is_some() { tls_port } else { node.port() };
            (node, announced)
        };
        let (master, master_announced) = start(None);
        let (replica, replica_announced) = start(Some(master_announced));
        let quorum = count / 2 + 1;
        let sentinels = (0..count)
            .map(|_| {
                SentinelProcess::spawn(master_announced, quorum, tls)
                    .unwrap_or_else(|e| panic!("sentinel did not start: {e}"))
            })
            .collect();
        let deployment = TestSentinel {
            nodes: [master, replica],
            master: 0,
            announced: [master_announced, replica_announced],
            sentinels,
        };
        deployment.wait_until_settled("start");
        deployment
    }

    /// The name the sentinels know the master by.
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// `redis://127.0.0.1:PORT` of every sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The current master.
    pub fn master(&self) -> &TestRedis {
        &self.nodes[self.master]
    }

    /// The current replica.
    pub fn replica(&self) -> &TestRedis {
        &self.nodes[1 - self.master]
    }

    /// `SENTINEL FAILOVER` and waits until the switch is over: every sentinel
    /// reports the former replica as master, it says `role:master`, and the
    /// former master replicates from it (so `WAIT 1` can succeed again).
    /// Returns the new master's port.
    pub fn failover(&mut self) -> u16 {
        // A sentinel may not yet have a recent enough view of the replica
        // (`NOGOODSLAVE`): ask again until it has.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let reply = cli(
                self.sentinels[0].port,
                &["SENTINEL", "FAILOVER", MASTER_NAME],
            );
            if reply.trim() == "OK" {
                break;
            }
            assert!(
                reply.starts_with("NOGOODSLAVE") && Instant::now() < deadline,
                "SENTINEL FAILOVER answered {reply:?}"
            );
            // Polling interval, not a synchronization.
            std::thread::sleep(Duration::from_millis(100));
        }
        self.master = 1 - self.master;
        self.wait_until_settled("failover");
        self.master().port()
    }

    /// Polls until every sentinel reports `nodes[master]`, that node is a master
    /// and the other one is its replica with a live link.
    fn wait_until_settled(&self, what: &str) {
        let master_port = self.master().port();
        let master_announced = self.announced[self.master];
        let replica_announced = self.announced[1 - self.master];
        let deadline = Instant::now() + DEADLINE;
        loop {
            let reported = self.sentinels.iter().all(|s| {
                let addr = cli(
                    s.port,
                    &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
                );
                let known = cli(s.port, &["SENTINEL", "replicas", MASTER_NAME]);
                addr.lines().nth(1) == Some(master_announced.to_string().as_str())
                    && known.contains(&replica_announced.to_string())
            });
            let master_role = cli(master_port, &["ROLE"]);
            let replica_info = cli(self.replica().port(), &["INFO", "replication"]);
            let in_sync = replica_info.contains(&format!("master_port:{master_announced}"))
                && replica_info.contains("master_link_status:up");
            if reported && master_role.lines().next() == Some("master") && in_sync {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.sentinels.iter().map(SentinelProcess::log).collect();
                panic!(
                    "sentinel deployment did not settle after {what}: master {master_port} \
                     role {master_role:?}, replica {replica_info:?}; sentinel logs:\n{}",
                    logs.join("\n---\n")
                );
            }
            // Polling interval, not a synchronization.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the sentinels keep their files (for debugging a failed test).
    pub fn sentinel_dirs(&self) -> Vec<PathBuf> {
        self.sentinels
            .iter()
            .map(|s| s.dir.path().to_path_buf())
            .collect()
    }
}

/// One command to a sentinel or server through `redis-cli` (raw output, one value a line).
fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => panic!("cannot run redis-cli ({e}); install it next to redis-server"),
    }
}
