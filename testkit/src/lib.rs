//! Stand-ins for paygate's tests (unit and integration): a throwaway
//! `redis-server` ([`TestRedis`], with TLS through [`tls`]), a Redis Cluster of
//! them ([`TestCluster`]), Sentinel ([`TestSentinel`]) and a loopback HTTP
//! server ([`TestServer`]).
//!
//! Each belongs to one test, pick their port from the OS, and clean up on
//! drop, so tests never share state and all run in parallel. Every wait here
//! polls or awaits a signal with a deadline ([`DEADLINE`]); nothing sleeps to
//! synchronize. This crate knows nothing about paygate itself.

pub mod cluster;
pub mod http;
pub mod redis;
pub mod sentinel;
pub mod tls;

pub use cluster::TestCluster;
pub use http::{full, Body, Log, Reply, Seen, TestServer};
pub use redis::{free_port, TestRedis};
pub use sentinel::TestSentinel;
pub use tls::TlsFiles;

use std::time::Duration;

/// How long any single wait may take before the test fails. Generous, because
/// suites run many servers in parallel on a small machine; it is a failure
/// deadline, never a performance assertion.
pub const DEADLINE: Duration = Duration::from_secs(20);
