//! paygate: a reverse proxy that puts a Stripe subscription paywall in front of
//! an existing application API. See ARCHITECTURE.md for the module map and the
//! layering every module keeps; docs/ for the reference.
//!
//! The library exists for the binary (`src/main.rs` calls [`main`]) and for
//! embedding the gateway in a test or another program ([`Config`], [`Gateway`],
//! [`server`]). Everything else is private to the crate.

mod admin;
mod apply;
mod auth;
mod billing;
mod cli;
mod clock;
mod config;
mod deny;
mod entitlement;
mod gateway;
mod metrics;
mod outbound;
mod proxy;
mod routes;
pub mod server;
mod store;
mod stripe;
mod sync;
mod telemetry;
mod webhook;

pub use auth::mint_token;
pub use cli::main;
pub use config::{Config, ConfigErrors};
pub use gateway::{Gateway, Live};
pub use telemetry::init as init_logging;

/// The internals the criterion benches in `benches/` measure. Only with the
/// `bench` feature; not a stable API.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench {
    pub use crate::auth::{mint_token, Authenticator};
    pub use crate::config::Config;
    pub use crate::entitlement::{
        decide, AccessSummary, Entitlement, Subscription, SubscriptionStatus,
    };
    pub use crate::outbound::{OutboundClient, OutboundConfig};
    pub use crate::routes::path::normalize;
    pub use crate::store::{EntitlementCache, EntitlementStore, MemoryStore};
    pub use crate::stripe::event::parse as parse_event;
    pub use crate::stripe::sample::sample_subscription_event;
    pub use crate::stripe::signature::{sign, verify};
}
