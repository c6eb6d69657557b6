//! paygate's integration tests, one binary: every module runs the real
//! `paygate` executable (`CARGO_BIN_EXE_paygate`) and talks to it only over
//! HTTP, files, the command line and Redis, never through the library. The
//! stand-ins it talks to live in `support/` and in the `paygate-testkit` crate.

mod support;

mod access_log;
mod admin;
mod auth;
mod billing_repros;
mod cli;
mod deploy;
mod hardening;
mod layers;
mod oidc;
mod paths;
mod paywall;
mod proxy;
mod reasons;
mod redis_cluster;
mod redis_sentinel;
mod redis_store;
mod redis_tls;
mod reload;
mod sync;
mod tls_h2;
mod traces;
mod webhook_attacks;
mod webhooks;
