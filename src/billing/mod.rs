//! Billing state as plain data and pure rules: a Stripe customer's record, the
//! commutative merge of what each event says about it ([`record`]), and the
//! projection of a record into a user's entitlement ([`project`]).
//!
//! Nothing here does I/O or reads the clock. `apply` does the reading and
//! writing around these rules; the store only serializes the records.

pub(crate) mod project;
pub(crate) mod record;
