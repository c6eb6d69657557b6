//! Entitlement: what paygate knows about a user's subscriptions, and the pure
//! decision of whether that grants access now.
//!
//! Nothing in here does I/O or reads the clock: the store loads the data, the
//! gateway passes the time in, so every rule can be unit tested over plain values.

pub mod decide;
pub(crate) mod model;
pub(crate) mod summary;

pub use decide::*;
pub use model::*;
pub use summary::AccessSummary;
