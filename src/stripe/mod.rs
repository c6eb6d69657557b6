//! Stripe's side of the wire, with no knowledge of paygate's store or HTTP
//! server: webhook signatures ([`signature`]), event bodies turned into typed
//! events ([`event`]), and the read-only API client ([`api`]).
//!
//! Everything here is either pure (signature, event) or talks only to Stripe
//! through `outbound` (api). Deciding, storing and answering webhooks happen in
//! higher layers (`apply`, `webhook`).

pub(crate) mod api;
pub(crate) mod event;
#[cfg(test)]
mod event_props;
#[cfg(any(test, feature = "bench"))]
pub(crate) mod sample;
pub(crate) mod signature;
#[cfg(test)]
mod signature_props;
#[cfg(test)]
mod testing;
