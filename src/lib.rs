//! paygate: a reverse proxy that puts a Stripe subscription paywall in front of
//! an existing application API. See ARCHITECTURE.md for the module map.

pub mod admin;
pub mod apply;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deny;
pub mod endpoints;
pub mod entitlement;
pub mod gateway;
pub mod metrics;
pub mod outbound;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod store;
pub mod stripe_api;
pub mod sync;
pub mod telemetry;
pub mod webhook;
