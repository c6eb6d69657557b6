//! A throwaway `redis-server` per test: a free loopback port, its own temp dir,
//! no persistence, stoppable and restartable on the same port, killed on drop.
//!
//! Outage tests need Redis to go away and come back *at the same address* the
//! code under test was configured with, so [`TestRedis::restart`] reuses the
//! port. The machine's own Redis (6379) is never touched: the port always comes
//! from the OS. Readiness is a real `PING` answered `+PONG`, polled with a
//! deadline. The API is blocking (plain `#[test]`s use it too); the waits are
//! short and the server is another process, so calling it from async tests is
//! fine.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::DEADLINE;

/// How many fresh ports [`TestRedis::start`] tries when another process takes
/// the chosen port between our probe and redis-server's bind.
const START_ATTEMPTS: usize = 5;

/// A `redis-server` child process owned by one test.
pub struct TestRedis {
    port: u16,
    /// `None` while stopped.
    child: Option<Child>,
    /// Holds the working dir and log file.
    dir: TempDir,
    /// Extra `redis-server` arguments (TLS ports, cluster mode, `--replicaof`…),
    /// given at every (re)start.
    extra: Vec<String>,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen (SIGSTOP) process still dies on SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl TestRedis {
    /// Starts `redis-server` on a free port and waits until it answers `PING`.
    pub fn start() -> TestRedis {
        TestRedis::start_with(&[])
    }

    /// Like [`TestRedis::start`], with extra `redis-server` arguments appended
    /// to the command line (e.g. `["--cluster-enabled", "yes"]`). The plain
    /// port stays on, so readiness is still a plain `PING`.
    pub fn start_with(extra: &[&str]) -> TestRedis {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut redis = TestRedis {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().expect("temp dir for redis"),
                extra: extra.iter().map(|a| (*a).to_owned()).collect(),
            };
            match redis.spawn_and_wait() {
                Ok(()) => return redis,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `rediss://127.0.0.1:TLS_PORT/0`, for a server started with `--tls-port`
    /// (see [`crate::tls::start_redis`]).
    pub fn tls_url(&self) -> String {
        let port = self
            .extra
            .iter()
            .position(|a| a == "--tls-port")
            .and_then(|i| self.extra.get(i + 1))
            .expect("this redis-server was not started with --tls-port");
        format!("rediss://127.0.0.1:{port}/0")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (for files it writes, such as a cluster's
    /// `nodes.conf`, or test certificates).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL, as a crash would) and waits for it to exit, so
    /// the port is closed when this returns.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("redis is not running");
        child.kill().expect("kill redis-server");
        child.wait().expect("wait for redis-server");
    }

    /// Starts a new, empty server on the same port and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs stop() first");
        if let Err(e) = self.spawn_and_wait() {
            panic!("redis-server did not come back on port {}: {e}", self.port);
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is
    /// answered, as with a hung Redis or a network partition.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis is not running").id();
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {pid} failed");
    }

    /// Sends one command (as a RESP array of bulk strings) and returns the raw
    /// reply text, e.g. `":3\r\n"` for `DBSIZE`. For looking at what the code
    /// under test stored; the server must be running.
    pub fn command(&self, args: &[&str]) -> String {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        let exchange = || {
            let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
            stream.set_read_timeout(Some(DEADLINE))?;
            stream.write_all(request.as_bytes())?;
            // Read until one whole reply has arrived.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if reply_complete(&got) {
                    break;
                }
            }
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&got).into_owned())
        };
        exchange().unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// The keys matching `pattern` (`KEYS`), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&["KEYS", pattern]);
        let mut keys: Vec<String> = reply
            .split("\r\n")
            .skip(1)
            .filter(|line| !line.starts_with('$') && !line.is_empty())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Spawns the server on `self.port` and polls `PING` until `+PONG`.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        assert_ne!(self.port, 6379, "tests never use the machine's Redis port");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run redis-server ({e}); install it (CI: .ci/run installs it)")
            })?;
        self.child = Some(child);

        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().ok().flatten() {
                self.child = None;
                return Err(format!(
                    "redis-server exited ({status}) on port {}; log:\n{}",
                    self.port,
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                ));
            }
            if ping(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let mut child = self.child.take().unwrap();
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {} never answered PING; log:\n{}",
                    self.port,
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                ));
            }
            // Polling interval between PING probes, not a synchronization.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `got` holds one whole RESP reply (simple, error, integer, bulk, or
/// an array of bulk strings, which is all [`TestRedis::command`] is used for).
fn reply_complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let mut lines = text.split("\r\n");
    let Some(first) = lines.next() else {
        return false;
    };
    if !text.contains("\r\n") {
        return false;
    }
    let count = |s: &str| s[1..].parse::<i64>().unwrap_or(0);
    match first.as_bytes().first() {
        Some(b'+' | b'-' | b':') => true,
        Some(b'$') => count(first) < 0 || lines.count() >= 2,
        // `*N` then N `$len`/value pairs, then the trailing empty split.
        Some(b'*') => count(first) <= 0 || lines.count() > 2 * count(first) as usize,
        _ => true,
    }
}

/// A port the OS just handed out on 127.0.0.1 (free at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether a Redis on `port` answers `PING` with `+PONG` within a second.
fn ping(port: u16) -> bool {
    let attempt = || {
        let second = Some(Duration::from_secs(1));
        let mut stream =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
                .ok()?;
        stream.set_read_timeout(second).ok()?;
        stream.set_write_timeout(second).ok()?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").ok()?;
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n") {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Some(got == b"+PONG\r\n")
    };
    attempt() == Some(true)
}
