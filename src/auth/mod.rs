//! Verifies bearer tokens (JWT) and extracts the caller's user id.
//!
//! It does no I/O on the request path except the rate-limited JWKS refresh
//! when a token names a key paygate does not know (see [`jwks`]). Everything
//! a verification needs (keys per allowed algorithm) is built once in
//! [`Authenticator::new`].
//!
//! What a token must be is decided here, by paygate's own readers of the
//! header (`header.rs`) and the claims (`claims.rs`), whose comments state
//! the rules; jsonwebtoken only checks signatures. That keeps every rule in
//! one place, where the property tests (`proptests.rs`) hold it against a
//! plain model of the same rules.
//!
//! Invariants a change must not break:
//! - The key is chosen by the algorithm family of the token header: HS* only
//!   ever with the configured secret, asymmetric algorithms only with a
//!   public key of the matching type. An HS256 token can therefore never be
//!   checked against public key bytes used as an HMAC secret.
//! - Claims are read only after the signature was verified, and
//!   [`AuthError::Expired`] is returned only for a token that passed every
//!   other check; every other failure is [`AuthError::Invalid`], so a forged
//!   token never learns more than "invalid".
//! - Every refusal names its [`identity::TokenReason`] (the word logged as
//!   `reason`) and a detail for the operator; neither ever holds the token or
//!   a secret, and building them costs nothing on the success path.
//! - A user id that is accepted is 1 to 256 visible ASCII characters other
//!   than `,`, so it reaches the store and the identity header unchanged and
//!   every HTTP parser reads it the same way.
//!
//! The files, in the order a request meets them:
//! - `extract.rs`: the token of a request (header beats cookie; several
//!   `Authorization` headers are ambiguous) and the one `Bearer` parser;
//! - `verify.rs`: [`Authenticator`], key selection and the signature check,
//!   in front of it the verified-token cache (`cache.rs`);
//! - `token.rs`, `header.rs`, `claims.rs`: the compact form, the header
//!   reader and the claims reader;
//! - `identity.rs`: [`Identity`], [`AuthError`] and the user-id syntax;
//! - `settings.rs`: [`JwtSettings`] and the static keys they yield;
//! - `jwks.rs`: the identity provider's key set and its refresh;
//! - `discovery.rs`: the key set's URL from the issuer's OpenID Connect
//!   discovery document (`jwt.discovery`);
//! - `mint.rs`: [`mint_token`], for `paygate token`.
//!
//! Time is always the caller's: verification takes `now` (unix seconds,
//! read once per request from `crate::clock`), and what measures intervals
//! (the JWKS cooldown and refresher) uses tokio's clock, so tests move
//! either without waiting.

mod cache;
mod claims;
mod discovery;
mod extract;
mod header;
mod identity;
pub(crate) mod jwks;
mod mint;
mod settings;
mod token;
mod verify;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_support;

pub(crate) use extract::{extract_token, Credential};
pub(crate) use identity::{AuthError, Identity};
pub use mint::mint_token;
pub(crate) use settings::JwtSettings;
pub use verify::Authenticator;

pub(crate) use extract::authorization_bearer;
pub(crate) use identity::is_valid_user_id;
