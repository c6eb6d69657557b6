//! A throwaway Redis Cluster per test: `redis-server`s in cluster mode (each a
//! [`TestRedis`] in its own dir), joined with `redis-cli --cluster create`,
//! ready when every node reports `cluster_state:ok`; a master can be failed
//! over or killed.
//!
//! Cluster administration goes through `redis-cli` (installed with
//! `redis-server`), whose replies are plain text. Every wait polls with a
//! deadline ([`DEADLINE`]); nothing sleeps to synchronize. Like
//! [`TestRedis`], the API is blocking and the servers die with the value.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{free_port, TestRedis, DEADLINE};

/// How long a node may be silent before the others count it as failed. Short,
/// so a killed master's replica takes over within about two seconds.
const NODE_TIMEOUT_MS: &str = "1000";

/// A Redis Cluster owned by one test.
pub struct TestCluster {
    /// Every node, in start order.
    nodes: Vec<TestRedis>,
    /// Whether each node is running (not stopped by `kill` or `stop`).
    up: Vec<bool>,
    /// How many healthy replicas every node must see before the cluster
    /// counts as settled.
    replicas: usize,
}

impl TestCluster {
    /// Starts `masters` masters (at least 3, as `redis-cli` requires) with
    /// `replicas_per_master` replicas each, creates the cluster and waits until
    /// every node reports `cluster_state:ok` and agrees on the slot map.
    pub fn start(masters: usize, replicas_per_master: usize) -> TestCluster {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let count = masters * (1 + replicas_per_master);
        let nodes: Vec<TestRedis> = (0..count)
            .map(|_| {
                // The bus port is given explicitly: the default (port + 10000)
                // may be taken or above 65535 for an OS-chosen port.
                let bus = free_port().to_string();
                TestRedis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    NODE_TIMEOUT_MS,
                    // Replicas sync at once, not after the default 5 s wait
                    // for more replicas (a manual failover waits for the sync).
                    "--repl-diskless-sync-delay",
                    "0",
                ])
            })
            .collect();
        let cluster = TestCluster {
            up: vec![true; nodes.len()],
            nodes,
            replicas: masters * replicas_per_master,
        };
        let addresses: Vec<String> = cluster
            .running()
            .map(|(_, n)| format!("127.0.0.1:{}", n.port()))
            .collect();
        let replicas = replicas_per_master.to_string();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas, "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_until_ok("the new cluster");
        cluster.wait_for("every replica to be in sync", || {
            let synced = cluster
                .running()
                .filter(|(_, n)| {
                    cli(n.port(), &["INFO", "replication"])
                        .is_ok_and(|i| i.contains("master_link_status:up"))
                })
                .count();
            synced == cluster.replicas
        });
        cluster
    }

    /// A seed URL (`redis://127.0.0.1:PORT/0`) of the first running node.
    pub fn seed_url(&self) -> String {
        self.urls().into_iter().next().expect("a running node")
    }

    /// The URLs of every running node.
    pub fn urls(&self) -> Vec<String> {
        self.running().map(|(_, n)| n.url()).collect()
    }

    /// The URL of node `index`, running or not.
    pub fn node_url(&self, index: usize) -> String {
        self.nodes[index].url()
    }

    /// A running node, by index (0-based, in start order).
    pub fn node(&self, index: usize) -> &TestRedis {
        assert!(self.up[index], "node {index} is not running");
        &self.nodes[index]
    }

    /// The text of one `redis-cli` command on node `index`.
    pub fn cli(&self, index: usize, args: &[&str]) -> String {
        cli(self.node(index).port(), args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The index of the master currently serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> usize {
        let (first, _) = self.running().next().expect("a running node");
        let slot: u16 = self
            .cli(first, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number");
        let nodes = self.cli(first, &["CLUSTER", "NODES"]);
        let line = nodes
            .lines()
            .find(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields.get(2).is_some_and(|f| f.contains("master"))
                    && !fields[2].contains("fail")
                    && fields.iter().skip(8).any(|r| serves(r, slot))
            })
            .unwrap_or_else(|| panic!("no master serves slot {slot}:\n{nodes}"));
        self.index_of_address(line)
    }

    /// Fails `master` over to one of its replicas with `CLUSTER FAILOVER` (no
    /// write is lost) and waits until the replica is master and the cluster is
    /// ok. Returns the new master's index.
    pub fn failover(&self, master: usize) -> usize {
        let replica = self.replica_of(master);
        let answer = self.cli(replica, &["CLUSTER", "FAILOVER"]);
        assert_eq!(answer.trim(), "OK", "CLUSTER FAILOVER: {answer}");
        self.wait_for(&format!("node {replica} to become master"), || {
            role(self.node(replica).port()).as_deref() == Some("master")
                && role(self.node(master).port()).as_deref() == Some("slave")
        });
        self.wait_until_ok("the cluster after a failover");
        replica
    }

    /// Kills `master` (as a crash would) and waits until one of its replicas
    /// took over its slots and every remaining node reports `cluster_state:ok`.
    /// Returns the new master's index.
    pub fn kill(&mut self, master: usize) -> usize {
        let replica = self.replica_of(master);
        self.stop(master);
        self.replicas -= 1;
        self.wait_for(&format!("node {replica} to take over"), || {
            role(self.node(replica).port()).as_deref() == Some("master")
        });
        self.wait_until_ok("the cluster after a master died");
        replica
    }

    /// Kills a node without waiting for anything (e.g. a master without
    /// replicas, to see the cluster fail).
    pub fn stop(&mut self, index: usize) {
        assert!(self.up[index], "node {index} is not running");
        self.nodes[index].stop();
        self.up[index] = false;
    }

    /// Starts a node stopped with [`TestCluster::stop`] again, on its port and
    /// with its `nodes.conf` (its data is gone: nothing is persisted), and
    /// waits until the cluster is ok.
    pub fn restart(&mut self, index: usize) {
        assert!(!self.up[index], "node {index} is running");
        self.nodes[index].restart();
        self.up[index] = true;
        self.wait_until_ok("the cluster after a restart");
    }

    /// Whether node `index` reports `cluster_state:ok`.
    pub fn is_ok(&self, index: usize) -> bool {
        cluster_ok(self.node(index).port())
    }

    fn running(&self) -> impl Iterator<Item = (usize, &TestRedis)> {
        self.nodes.iter().enumerate().filter(|(i, _)| self.up[*i])
    }

    /// The index of a replica of `master` (by `CLUSTER NODES` on the master).
    pub fn replica_of(&self, master: usize) -> usize {
        let id = self.cli(master, &["CLUSTER", "MYID"]).trim().to_owned();
        let nodes = self.cli(master, &["CLUSTER", "NODES"]);
        let line = nodes
            .lines()
            .find(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields.get(2).is_some_and(|f| f.contains("slave"))
                    && fields.get(3) == Some(&id.as_str())
            })
            .unwrap_or_else(|| panic!("node {master} has no replica:\n{nodes}"));
        self.index_of_address(line)
    }

    /// The index of the node a `CLUSTER NODES` line describes.
    fn index_of_address(&self, line: &str) -> usize {
        // `<id> 127.0.0.1:PORT@BUS[,hostname] …`
        let address = line.split_whitespace().nth(1).expect("address field");
        let port: u16 = address
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line}"));
        self.running()
            .find(|(_, n)| n.port() == port)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no running node on port {port}"))
    }

    /// Polls until every running node reports `cluster_state:ok`, the same
    /// masters serving slots, and every healthy replica as a replica (a node
    /// that just changed role is known as such everywhere).
    fn wait_until_ok(&self, what: &str) {
        self.wait_for(&format!("{what} to report cluster_state:ok"), || {
            let views: Vec<Option<(String, usize)>> =
                self.running().map(|(_, n)| view(n.port())).collect();
            self.running().all(|(_, n)| cluster_ok(n.port()))
                && views.iter().all(|v| {
                    v.as_ref()
                        .is_some_and(|(_, replicas)| *replicas == self.replicas)
                        && *v == views[0]
                })
        });
    }

    fn wait_for(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            // Polling interval, not a synchronization.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether `slot` is in a `CLUSTER NODES` slot field (`5461-10922` or `42`;
/// `[…]` migration markers are not served slots).
fn serves(range: &str, slot: u16) -> bool {
    if range.starts_with('[') {
        return false;
    }
    let mut bounds = range.splitn(2, '-').map(|b| b.parse::<u16>().ok());
    match (bounds.next().flatten(), bounds.next()) {
        (Some(a), None) => a == slot,
        (Some(a), Some(Some(b))) => (a..=b).contains(&slot),
        _ => false,
    }
}

/// Runs `redis-cli -p PORT args…` and returns its output.
fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| format!("run redis-cli: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-cli -p {port} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cluster_ok(port: u16) -> bool {
    cli(port, &["CLUSTER", "INFO"]).is_ok_and(|info| info.contains("cluster_state:ok"))
}

/// `master` or `slave`, from `ROLE`.
fn role(port: u16) -> Option<String> {
    cli(port, &["ROLE"])
        .ok()
        .and_then(|r| r.lines().next().map(|l| l.trim().to_owned()))
}

/// As one node sees the cluster: the sorted addresses of the healthy masters
/// that serve slots, and how many healthy replicas there are.
fn view(port: u16) -> Option<(String, usize)> {
    let nodes = cli(port, &["CLUSTER", "NODES"]).ok()?;
    let mut masters = Vec::new();
    let mut replicas = 0;
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(flags) = fields.get(2) else { continue };
        if flags.contains("fail") {
            continue;
        }
        if flags.contains("master") && fields.len() > 8 {
            masters.push(fields[1].to_owned());
        } else if flags.contains("slave") {
            replicas += 1;
        }
    }
    masters.sort();
    Some((masters.join(" "), replicas))
}

#[cfg(test)]
mod tests {
    use super::serves;

    #[test]
    fn slot_fields_are_read_as_ranges() {
        assert!(serves("0-5460", 0));
        assert!(serves("0-5460", 5460));
        assert!(!serves("0-5460", 5461));
        assert!(serves("42", 42));
        assert!(!serves("[42->-abc]", 42));
    }
}
