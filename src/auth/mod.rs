//! Verifies bearer tokens (JWT) and extracts the caller's user id.
//!
//! It does no I/O on the request path except the rate-limited JWKS refresh
//! when a token names a key paygate does not know (see [`jwks`]). Everything
//! a verification needs (keys per allowed algorithm) is built once in
//! [`Authenticator::new`].
//!
//! What a token must be is decided here, by paygate's own readers of the
//! header ([`read_header`]) and the claims ([`read_claims`]), whose comments
//! state the rules; jsonwebtoken only checks signatures. That keeps every
//! rule in one place, where the property tests (`proptests.rs`) hold it
//! against a plain model of the same rules.
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
//! - A user id that is accepted is 1 to 256 visible ASCII characters other
//!   than `,`, so it reaches the store and the identity header unchanged and
//!   every HTTP parser reads it the same way.

pub mod jwks;
#[cfg(test)]
mod proptests;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::unix_now;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine};
use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header};
use serde::de::{
    self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use crate::outbound::OutboundClient;
use jwks::{Jwks, Lookup};

/// Compiled [jwt] settings (the config module builds this; secrets already resolved from env).
#[derive(Clone)]
pub struct JwtSettings {
    /// Allowlist: a token whose header names another algorithm is invalid.
    pub algorithms: Vec<Algorithm>,
    /// HS* shared secret.
    pub secret: Option<Vec<u8>>,
    /// RS*/PS*/ES*/EdDSA static public key (PEM contents).
    pub public_key_pem: Option<Vec<u8>>,
    /// Where the identity provider publishes its keys (refreshed, kid-aware).
    pub jwks_url: Option<String>,
    /// Required `iss` value, when set.
    pub issuer: Option<String>,
    /// Required member of `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// The claim holding the app's user id, e.g. "sub" or "user_id".
    pub user_claim: String,
    /// Cookie that may carry the token when no bearer header does.
    pub cookie: Option<String>,
    /// Periodic JWKS refresh interval (default 5m).
    pub jwks_refresh: Duration,
    /// Minimum time between refreshes triggered by an unknown kid (default 30s).
    pub jwks_cooldown: Duration,
}

/// Written by hand rather than derived so that the HMAC secret never ends up
/// in a log line or a panic message through `{:?}`.
impl fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSettings")
            .field("algorithms", &self.algorithms)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field(
                "public_key_pem",
                &self.public_key_pem.as_ref().map(|k| k.len()),
            )
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("user_claim", &self.user_claim)
            .field("cookie", &self.cookie)
            .field("jwks_refresh", &self.jwks_refresh)
            .field("jwks_cooldown", &self.jwks_cooldown)
            .finish()
    }
}

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user claim, as a string whether the token held a string or an integer.
    pub user_id: String,
    /// `exp` claim, unix seconds
    pub expires_at: i64,
    /// `user_id` as the identity header's value, made once per verified token
    /// (cached with it); `None` when the id cannot be a header value.
    pub user_header: Option<http::HeaderValue>,
}

impl Identity {
    pub fn new(user_id: String, expires_at: i64) -> Identity {
        let user_header = http::HeaderValue::from_str(&user_id).ok();
        Identity {
            user_id,
            expires_at,
            user_header,
        }
    }
}

/// Why a request has no usable identity; each maps to one refusal (README, "The response contract").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the request (`UNAUTHENTICATED`).
    #[error("no bearer token")]
    Missing,
    /// Malformed, badly signed, or failing a claim check (`INVALID_TOKEN`);
    /// the reason is for logs, not for the client.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// Validly signed but past `exp` plus leeway (`TOKEN_EXPIRED`).
    #[error("token expired")]
    Expired,
}

/// What a request offers as a credential (see [`extract_token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No token: no `Authorization: Bearer` header and no token in the
    /// configured cookie.
    None,
    /// The request's one token.
    Token(&'a str),
    /// More than one `Authorization` header. Which of them counts would
    /// depend on who reads the request (some frameworks take the first, some
    /// the last, some join them), so none does: it is an invalid token.
    Ambiguous,
}

impl<'a> Credential<'a> {
    /// The token, for callers that need one: a missing token is
    /// [`AuthError::Missing`], an ambiguous one [`AuthError::Invalid`].
    pub fn required(self) -> Result<&'a str, AuthError> {
        match self {
            Credential::Token(token) => Ok(token),
            Credential::None => Err(AuthError::Missing),
            Credential::Ambiguous => Err(AuthError::Invalid(AMBIGUOUS)),
        }
    }
}

/// The reason logged for a request with several `Authorization` headers.
pub(crate) const AMBIGUOUS: &str = "more than one Authorization header";

/// Finds the token: `Authorization: Bearer <t>` (see [`bearer_token`]) wins
/// over the cookie; two or more `Authorization` headers are
/// [`Credential::Ambiguous`], whatever they and the cookie hold.
///
/// The contract says that an `Authorization` header with another scheme "counts
/// as no token". We read that as: such a header contributes no token, so a
/// token in the configured cookie is still used, and only without one is
/// the result `None` (answered `UNAUTHENTICATED`). Browsers send
/// `Authorization: Basic` on their own to sites behind HTTP basic auth (a
/// common way to fence off a staging deployment) while the app's session
/// token rides in the cookie; refusing those requests would lock users out,
/// and honouring the cookie gives a caller nothing they could not get by
/// leaving the header off. A `Bearer` header with an empty token is treated
/// the same way.
///
/// Allocation-free: the common request (one header) costs one header lookup.
pub fn extract_token<'a>(headers: &'a HeaderMap, cookie: Option<&str>) -> Credential<'a> {
    match authorization_bearer(headers) {
        Credential::None => {}
        found => return found,
    }
    let Some(name) = cookie else {
        return Credential::None;
    };
    // HTTP/2 clients may split cookies over several `Cookie` headers.
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            if key.trim() != name {
                return None;
            }
            let value = value.trim();
            // RFC 6265 allows a cookie value wrapped in double quotes.
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (!value.is_empty()).then_some(value)
        })
        .map_or(Credential::None, Credential::Token)
}

/// The bearer token of the request's `Authorization` header alone (no
/// cookie): what both listeners use, so that the public and the admin
/// listener read a header the same way. `None` without a header or with
/// another scheme; `Ambiguous` with more than one header.
pub(crate) fn authorization_bearer(headers: &HeaderMap) -> Credential<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Credential::None;
    };
    if values.next().is_some() {
        return Credential::Ambiguous;
    }
    first
        .to_str()
        .ok()
        .and_then(bearer_token)
        .map_or(Credential::None, Credential::Token)
}

/// The token of an `Authorization` header value of the `Bearer` scheme, if
/// it is one.
///
/// RFC 9110 §11.4 writes `credentials = auth-scheme [ 1*SP token68 ]`, the
/// scheme being case-insensitive. paygate also accepts a horizontal tab
/// wherever it accepts a space (around the value and between scheme and
/// token), because that is how the upstream frameworks read the header
/// (Django REST framework and simplejwt split it on any whitespace, and the
/// only whitespace a header value can hold is SP and HTAB): the token paygate
/// authorizes is then the one the upstream would read. Both listeners use
/// this one parser.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    const WHITESPACE: [char; 2] = [' ', '\t'];
    let (scheme, token) = value.trim_matches(WHITESPACE).split_once(WHITESPACE)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(WHITESPACE);
    (!token.is_empty()).then_some(token)
}

/// Whether `id` may be a user id: 1 to 256 characters, each visible ASCII
/// (`!` to `~`) other than `,`. The id is a store key and the value of the
/// user-id header: whitespace would be trimmed by the upstream's HTTP parser
/// (so `"alice "` would reach the upstream as `alice`, looked up here as
/// someone else), a comma would read as a list, and control or non-ASCII
/// characters are read differently by different parsers.
pub(crate) fn is_valid_user_id(id: &str) -> bool {
    (1..=MAX_USER_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| matches!(b, b'!'..=b'~') && b != b',')
}

/// Longest user id accepted, in bytes (all of them ASCII).
pub(crate) const MAX_USER_ID_LEN: usize = 256;

/// Longest token `verify` looks at. Real tokens are well under 2 KiB; the
/// cap keeps a giant header value from costing a large base64 decode before
/// it is refused.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verifies tokens against the configured keys. Send + Sync; share it
/// through an `Arc`.
pub struct Authenticator {
    settings: JwtSettings,
    /// One entry per allowed algorithm, in allowlist order. A short vector
    /// scanned linearly beats a map for the at most twelve algorithms there
    /// are.
    algorithms: Vec<AlgorithmEntry>,
    /// Present when `jwks_url` is set. In an `Arc` so that the refresher task
    /// can hold a weak reference and stop once the authenticator is gone.
    jwks: Option<Arc<Jwks>>,
    /// Makes a second `spawn_refresher` call a no-op instead of a second
    /// refresh loop.
    refresher_started: AtomicBool,
    /// Tokens that verified, keyed by the whole token text (not a hash of it:
    /// a hash collision must never hand one user another's identity). Bounded
    /// in size and age; an entry is never served past its token's `exp`. A
    /// hit is a shard read lock and a reference-count bump (quick_cache, like
    /// the entitlement cache: see `store/cache.rs` for why not moka).
    verified: quick_cache::sync::Cache<String, Verified>,
}

/// One remembered token: who it is, and when it was checked (unix seconds, the
/// clock `exp` is compared with, so one clock read serves both checks).
#[derive(Clone)]
struct Verified {
    identity: Arc<Identity>,
    checked_at: i64,
}

/// How many verified tokens are remembered, and for how long at most. The age
/// bound also bounds how long a token signed by a key that was since removed
/// from the JWKS keeps working.
const VERIFIED_CACHE_CAPACITY: usize = 100_000;
const VERIFIED_CACHE_TTL_SECS: i64 = 60;

/// What verifying a token of one algorithm needs, prepared once.
struct AlgorithmEntry {
    alg: Algorithm,
    /// The secret for HS*, the static public key of this family for the
    /// others (None when the keys come from the JWKS only).
    static_key: Option<DecodingKey>,
}

impl Authenticator {
    /// Builds key material; when jwks_url is set, fetches it once (an error is
    /// returned only for static-key problems; a JWKS fetch failure at start is
    /// logged with tracing::warn and retried by the refresher, tokens fail as
    /// Invalid until keys exist).
    pub async fn new(settings: JwtSettings, http: OutboundClient) -> Result<Self, String> {
        if settings.algorithms.is_empty() {
            return Err("jwt.algorithms: the allowlist is empty".to_owned());
        }
        let hmac_key = match settings.secret.as_deref() {
            Some([]) => return Err("jwt.secret: the secret is empty".to_owned()),
            Some(secret) => Some(DecodingKey::from_secret(secret)),
            None => None,
        };
        let public_keys = match settings.public_key_pem.as_deref() {
            Some(pem) => parse_public_pem(pem)?,
            None => Vec::new(),
        };

        let mut algorithms: Vec<AlgorithmEntry> = Vec::with_capacity(settings.algorithms.len());
        for &alg in &settings.algorithms {
            if algorithms.iter().any(|entry| entry.alg == alg) {
                continue;
            }
            let family = alg.family();
            let static_key = if family == AlgorithmFamily::Hmac {
                let key = hmac_key.clone().ok_or_else(|| {
                    format!("jwt.algorithms: {alg:?} is allowed but no jwt secret is configured")
                })?;
                Some(key)
            } else {
                let key = public_keys.iter().find(|k| k.family() == family).cloned();
                if key.is_none() && settings.jwks_url.is_none() {
                    return Err(format!(
                        "jwt.algorithms: {alg:?} is allowed but neither a public key of that type \
                         (public_key_file) nor jwks_url is configured"
                    ));
                }
                key
            };
            algorithms.push(AlgorithmEntry { alg, static_key });
        }
        if !public_keys.is_empty()
            && algorithms
                .iter()
                .all(|e| e.alg.family() == AlgorithmFamily::Hmac)
        {
            tracing::warn!(
                "jwt public key is configured but jwt.algorithms allows only HS*; it is unused"
            );
        }

        let jwks = match &settings.jwks_url {
            Some(url) => {
                if url.starts_with("http://") {
                    tracing::warn!(%url, "jwt.jwks_url uses plain http: the keys can be tampered with in transit");
                }
                let jwks = Arc::new(Jwks::new(url.clone(), http, settings.jwks_cooldown));
                if jwks.refresh().await.is_err() {
                    // The failure itself is logged by the fetch.
                    tracing::warn!(%url, "no JWKS keys at start; tokens signed with them are invalid until a refresh succeeds");
                }
                Some(jwks)
            }
            None => None,
        };

        Ok(Authenticator {
            settings,
            algorithms,
            jwks,
            refresher_started: AtomicBool::new(false),
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_CAPACITY),
        })
    }

    /// Spawns the periodic JWKS refresher (no-op without jwks_url). Call once after new().
    ///
    /// After a failed refresh (or when start-up found no keys) the next try
    /// comes after `jwks_cooldown` instead of a whole `jwks_refresh` period.
    /// The task ends by itself once the authenticator is dropped. Must be
    /// called inside a Tokio runtime.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let Some(jwks) = &self.jwks else { return };
        if self.refresher_started.swap(true, Ordering::AcqRel) {
            return;
        }
        // A zero or tiny interval would turn the refresher into a busy loop
        // against the identity provider, so both delays have a floor.
        const FLOOR: Duration = Duration::from_secs(1);
        let period = self.settings.jwks_refresh.max(FLOOR);
        let retry = self.settings.jwks_cooldown.min(period).max(FLOOR);
        let mut delay = if jwks.current().is_empty() {
            retry
        } else {
            period
        };
        let jwks = Arc::downgrade(jwks);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(delay).await;
                let Some(jwks) = jwks.upgrade() else { return };
                delay = match jwks.refresh().await {
                    Ok(_) => period,
                    Err(_) => retry,
                };
            }
        });
    }

    /// Verifies `token` and returns who it identifies. Expired (beyond the
    /// leeway, everything else valid) is [`AuthError::Expired`]; anything
    /// else wrong is [`AuthError::Invalid`].
    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        self.verify_at(token, unix_now()).await
    }

    /// [`Authenticator::verify`] with the clock read by the caller (`now`,
    /// unix seconds), so that tests can pin it.
    async fn verify_at(&self, token: &str, now: i64) -> Result<Arc<Identity>, AuthError> {
        // A token seen recently skips the signature check (the hot path's
        // largest cost), but expiry is still checked on every use.
        if let Some(hit) = self.verified.get(token) {
            if is_expired(hit.identity.expires_at, now, self.settings.leeway) {
                self.verified.remove(token);
                return Err(AuthError::Expired);
            }
            if now - hit.checked_at < VERIFIED_CACHE_TTL_SECS {
                return Ok(hit.identity);
            }
        }
        let identity = Arc::new(self.verify_uncached_at(token, now).await?);
        self.verified.insert(
            token.to_string(),
            Verified {
                identity: identity.clone(),
                checked_at: now,
            },
        );
        Ok(identity)
    }

    /// Verifies without consulting or filling the verified-token cache (benches).
    pub async fn verify_uncached(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_uncached_at(token, unix_now()).await
    }

    async fn verify_uncached_at(&self, token: &str, now: i64) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid("token too large"));
        }
        let parts = TokenParts::split(token)?;
        let header = read_header(parts.header)?;
        let entry = self
            .algorithms
            .iter()
            .find(|entry| entry.alg == header.alg)
            .ok_or(AuthError::Invalid("algorithm not allowed"))?;

        // HS* never looks at the JWKS, and a static key is used when there is
        // no JWKS or the token does not name a key: a token that names one
        // is meant for the provider's key set.
        let use_static = header.alg.family() == AlgorithmFamily::Hmac
            || (entry.static_key.is_some() && (self.jwks.is_none() || header.kid.is_none()));
        if use_static {
            let key = entry
                .static_key
                .as_ref()
                .ok_or(AuthError::Invalid("no key for algorithm"))?;
            return self.decode(&parts, key, header.alg, now);
        }
        let Some(jwks) = &self.jwks else {
            return Err(AuthError::Invalid("no key for algorithm"));
        };

        let kid = header.kid.as_deref();
        let (seen_attempts, keys) = jwks.snapshot();
        match keys.find(header.alg, kid) {
            Lookup::Found(key) => return self.decode(&parts, key, header.alg, now),
            Lookup::WrongAlgorithm => {
                return Err(AuthError::Invalid("key does not match algorithm"))
            }
            Lookup::NotFound => {}
        }
        // The snapshot is dropped before waiting, so a refresh is never kept
        // from freeing the old set by a request parked here.
        drop(keys);
        let keys = jwks.refresh_on_miss(seen_attempts).await;
        match keys.find(header.alg, kid) {
            Lookup::Found(key) => self.decode(&parts, key, header.alg, now),
            Lookup::WrongAlgorithm => Err(AuthError::Invalid("key does not match algorithm")),
            Lookup::NotFound => Err(AuthError::Invalid("unknown key id")),
        }
    }

    /// The settings this authenticator was built from.
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Checks the signature with jsonwebtoken, then reads and checks the
    /// (now trusted) claims.
    fn decode(
        &self,
        parts: &TokenParts<'_>,
        key: &DecodingKey,
        alg: Algorithm,
        now: i64,
    ) -> Result<Identity, AuthError> {
        match jsonwebtoken::crypto::verify(parts.signature, parts.signed.as_bytes(), key, alg) {
            Ok(true) => {}
            Ok(false) => return Err(AuthError::Invalid("bad signature")),
            Err(err) => return Err(map_jwt_error(err)),
        }
        read_claims(parts.payload, &self.settings, now)
    }
}

/// Whether a token with this `exp` is past it at `now`, allowing `leeway`
/// seconds of clock skew. The one definition, for fresh and cached tokens.
fn is_expired(exp: i64, now: i64, leeway: u64) -> bool {
    exp.saturating_add(i64::try_from(leeway).unwrap_or(i64::MAX)) < now
}

/// The static public keys a PEM yields: tried as RSA, EC and Ed25519, since
/// the settings do not say which it is. Err when it is none of them.
fn parse_public_pem(pem: &[u8]) -> Result<Vec<DecodingKey>, String> {
    let keys: Vec<DecodingKey> = [
        DecodingKey::from_rsa_pem(pem),
        DecodingKey::from_ec_pem(pem),
        DecodingKey::from_ed_pem(pem),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .collect();
    if keys.is_empty() {
        return Err("jwt.public_key_file: not a PEM RSA, EC or Ed25519 public key".to_owned());
    }
    Ok(keys)
}

/// The three parts of a compact JWS (`header.payload.signature`, base64url
/// without padding), still encoded.
struct TokenParts<'t> {
    header: &'t str,
    payload: &'t str,
    signature: &'t str,
    /// `header.payload`: what the signature covers.
    signed: &'t str,
}

impl<'t> TokenParts<'t> {
    /// Exactly two dots, or the token is malformed. The parts may be empty
    /// here; an empty one fails to decode or to verify later.
    fn split(token: &'t str) -> Result<TokenParts<'t>, AuthError> {
        const MALFORMED: AuthError = AuthError::Invalid("malformed token");
        let (signed, signature) = token.rsplit_once('.').ok_or(MALFORMED)?;
        let (header, payload) = signed.split_once('.').ok_or(MALFORMED)?;
        if payload.contains('.') {
            return Err(MALFORMED);
        }
        Ok(TokenParts {
            header,
            payload,
            signature,
            signed,
        })
    }
}

/// The parts of a token header that decide how it is verified.
struct TokenHeader {
    alg: Algorithm,
    /// Kept only for asymmetric algorithms, the only ones that use it, so
    /// that an HS token's header costs no allocation.
    kid: Option<String>,
}

/// Reads the token header. The rules:
/// - base64url without padding, of a JSON object (nothing else: not an
///   array, and nothing after the object but whitespace);
/// - `alg` present once, a string; a name other than an allowed algorithm's
///   (compared exactly: `hs256` and `none` are no algorithm) is refused by
///   the caller;
/// - `kid` at most once, a string or null;
/// - no `crit` at all, whatever its value (null and `[]` included): RFC 7515
///   §4.1.11 has a verifier refuse a token whose critical extensions it does
///   not implement, paygate implements none, and a value that does not parse
///   as a list is no reason to let the token through;
/// - every other member is ignored, whatever its value.
///
/// Duplicate `alg`, `kid` or `crit` make the header malformed: which one
/// counts would depend on the parser.
fn read_header(segment: &str) -> Result<TokenHeader, AuthError> {
    const MALFORMED: AuthError = AuthError::Invalid("malformed token");
    with_b64_decoded(segment, |json| {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let raw = deserializer
            .deserialize_map(HeaderVisitor)
            .and_then(|raw| deserializer.end().map(|()| raw))
            .map_err(|_| MALFORMED)?;
        if raw.crit {
            return Err(AuthError::Invalid("unsupported critical header"));
        }
        let alg = raw
            .alg
            .ok_or(MALFORMED)?
            .ok_or(AuthError::Invalid("algorithm not allowed"))?;
        let kid = match alg.family() {
            AlgorithmFamily::Hmac => None,
            _ => raw.kid.map(Cow::into_owned),
        };
        Ok(TokenHeader { alg, kid })
    })
    .unwrap_or(Err(MALFORMED))
}

/// A header as read, before its rules are applied.
struct RawHeader<'de> {
    /// `None`: absent; `Some(None)`: a name that is no algorithm.
    alg: Option<Option<Algorithm>>,
    kid: Option<Cow<'de, str>>,
    kid_seen: bool,
    crit: bool,
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = RawHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object (a JWT header)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader<'de>, A::Error> {
        let mut raw = RawHeader {
            alg: None,
            kid: None,
            kid_seen: false,
            crit: false,
        };
        while let Some(name) = map.next_key_seed(NameIs(&["alg", "kid", "crit"]))? {
            match name {
                Some(0) if raw.alg.is_some() => return Err(de::Error::duplicate_field("alg")),
                Some(0) => raw.alg = Some(map.next_value_seed(AlgorithmName)?),
                Some(1) if raw.kid_seen => return Err(de::Error::duplicate_field("kid")),
                Some(1) => {
                    raw.kid_seen = true;
                    raw.kid = map.next_value_seed(KeyId)?;
                }
                Some(2) if raw.crit => return Err(de::Error::duplicate_field("crit")),
                Some(2) => {
                    raw.crit = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(raw)
    }
}

/// Reads a member name and says which of a few names it is (its index),
/// without allocating it. Escaped names are compared once unescaped, as every
/// JSON parser reads them.
struct NameIs<'n>(&'n [&'n str]);

impl<'de> DeserializeSeed<'de> for NameIs<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameIs<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|known| *known == name))
    }
}

/// `alg`: a string; `None` when it names no algorithm jsonwebtoken knows
/// (`none` among them, so unsigned tokens end there whatever the allowlist).
struct AlgorithmName;

impl<'de> DeserializeSeed<'de> for AlgorithmName {
    type Value = Option<Algorithm>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for AlgorithmName {
    type Value = Option<Algorithm>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an algorithm name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<Algorithm>, E> {
        Ok(Algorithm::from_str(name).ok())
    }
}

/// `kid`: a string (borrowed from the decoded header when it has no escapes)
/// or null.
struct KeyId;

impl<'de> DeserializeSeed<'de> for KeyId {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyId {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key id string or null")
    }

    fn visit_borrowed_str<E: de::Error>(self, kid: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(kid)))
    }

    fn visit_str<E: de::Error>(self, kid: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(kid.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads and checks the claims of a token whose signature was verified. The
/// rules (`now` and the [jwt] settings decide the checks):
/// - base64url without padding, of a JSON object (not an array, nothing after
///   it but whitespace);
/// - the user claim, each registered claim (`iss`, `sub`, `aud`, `exp`,
///   `nbf`, `iat`, `jti`) at most once: RFC 7519 §4 lets a reader refuse
///   duplicates, and which value counts would depend on the parser;
/// - the user claim present, a string that [`is_valid_user_id`], or an
///   integer (JSON number without fraction or exponent, within 64 bits),
///   which becomes its decimal text;
/// - `exp` present and a NumericDate: a JSON number, not negative, a fraction
///   rounded to the nearest second, anything beyond `i64::MAX` read as
///   `i64::MAX`. The token is expired when `exp + leeway < now`;
/// - `nbf`, when present, a NumericDate too, and `nbf <= now + leeway`;
/// - with `jwt.issuer`: `iss` present, a string equal to it;
/// - with `jwt.audience`: `aud` present, a string equal to it or an array of
///   strings one of which is;
/// - every other claim (and `iss`, `aud` when not configured, and `iat`) is
///   ignored, whatever its value.
///
/// [`AuthError::Expired`] only for a token that passes every other rule.
fn read_claims(segment: &str, settings: &JwtSettings, now: i64) -> Result<Identity, AuthError> {
    let seed = ClaimsSeed {
        user_claim: &settings.user_claim,
        issuer: settings.issuer.as_deref(),
        audience: settings.audience.as_deref(),
    };
    let found = with_b64_decoded(segment, |json| {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let found = seed.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok::<_, serde_json::Error>(found)
    })
    .ok_or(AuthError::Invalid("malformed token"))?
    .map_err(|_| AuthError::Invalid("malformed claims"))?;

    if found.duplicate {
        return Err(AuthError::Invalid("duplicate claim"));
    }
    let user_id = found
        .user
        .ok_or(AuthError::Invalid("missing user claim"))?
        .into_user_id()
        .map_err(AuthError::Invalid)?;
    let expires_at = found
        .exp
        .ok_or(AuthError::Invalid("missing exp"))?
        .numeric_date()
        .ok_or(AuthError::Invalid("malformed exp"))?;
    let leeway = i64::try_from(settings.leeway).unwrap_or(i64::MAX);
    if let Some(nbf) = found.nbf {
        let nbf = nbf
            .numeric_date()
            .ok_or(AuthError::Invalid("malformed nbf"))?;
        if nbf > now.saturating_add(leeway) {
            return Err(AuthError::Invalid("token not yet valid"));
        }
    }
    if settings.issuer.is_some() {
        match found.iss {
            None => return Err(AuthError::Invalid("missing iss")),
            Some(ClaimValue::Str { matches: true, .. }) => {}
            Some(_) => return Err(AuthError::Invalid("wrong issuer")),
        }
    }
    if settings.audience.is_some() {
        match found.aud {
            None => return Err(AuthError::Invalid("missing aud")),
            Some(ClaimValue::Str { matches: true, .. } | ClaimValue::Strings { matches: true }) => {
            }
            Some(_) => return Err(AuthError::Invalid("wrong audience")),
        }
    }
    if is_expired(expires_at, now, settings.leeway) {
        return Err(AuthError::Expired);
    }
    Ok(Identity::new(user_id, expires_at))
}

/// Calls `f` with the base64url-decoded `segment`, or returns None when it
/// is not valid base64url. JWT segments are small, so they are decoded into
/// a stack buffer, which keeps the hot path free of a heap allocation; an
/// unusually large one (a header carrying a certificate chain) falls back to
/// the heap.
fn with_b64_decoded<R>(segment: &str, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let mut buf = [0u8; 1024];
    match URL_SAFE_NO_PAD.decode_slice(segment, &mut buf) {
        Ok(len) => Some(f(&buf[..len])),
        Err(DecodeSliceError::OutputSliceTooSmall) => URL_SAFE_NO_PAD
            .decode(segment)
            .ok()
            .map(|decoded| f(&decoded)),
        Err(DecodeSliceError::DecodeError(_)) => None,
    }
}

/// Maps a failure of jsonwebtoken's signature check to our reason.
fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    let reason = match err.kind() {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm not allowed",
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => {
            // The token cannot be checked because a configured or published
            // key is broken: that is the operator's problem to see.
            tracing::warn!(error = %err, "JWT verification key is unusable");
            "unusable verification key"
        }
        // The signature part is not base64url.
        ErrorKind::Base64(_) => "malformed token",
        _ => "invalid token",
    };
    AuthError::Invalid(reason)
}

/// For `paygate token`: mints an HS* token (first HS algorithm in the allowlist) with claims {user_claim: user, exp: now+ttl, iat: now, iss?, aud?}. Err when no HS secret/algorithm is configured ("refuses when only public keys are configured").
///
/// The user id is written as a JSON string; `verify` accepts strings and
/// integers alike, so this round-trips whatever the app's ids look like.
pub fn mint_token(settings: &JwtSettings, user: &str, ttl: Duration) -> Result<String, String> {
    let alg = settings
        .algorithms
        .iter()
        .copied()
        .find(|alg| alg.family() == AlgorithmFamily::Hmac)
        .ok_or("jwt.algorithms has no HS* algorithm: paygate can only mint tokens with a shared secret")?;
    let secret = settings
        .secret
        .as_deref()
        .filter(|secret| !secret.is_empty())
        .ok_or("no jwt secret is configured: paygate can only mint tokens with a shared secret")?;
    if !is_valid_user_id(user) {
        return Err(format!(
            "the user id must be 1 to {MAX_USER_ID_LEN} visible ASCII characters other than ','"
        ));
    }
    if ["exp", "iat", "nbf", "iss", "aud"].contains(&settings.user_claim.as_str()) {
        return Err(format!(
            "jwt.user_claim {:?} collides with a registered claim",
            settings.user_claim
        ));
    }

    let now =
        u64::try_from(unix_now()).map_err(|_| "the system clock is before 1970".to_owned())?;
    let mut claims = serde_json::Map::new();
    claims.insert(settings.user_claim.clone(), user.into());
    claims.insert("exp".to_owned(), now.saturating_add(ttl.as_secs()).into());
    claims.insert("iat".to_owned(), now.into());
    if let Some(issuer) = &settings.issuer {
        claims.insert("iss".to_owned(), issuer.as_str().into());
    }
    if let Some(audience) = &settings.audience {
        claims.insert("aud".to_owned(), audience.as_str().into());
    }
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| format!("signing the token failed: {e}"))
}

/// Reads a claims object, keeping only what [`read_claims`] checks and
/// skipping every other value without building it.
struct ClaimsSeed<'c> {
    user_claim: &'c str,
    /// The configured `iss` and `aud`, compared while reading so that the
    /// claims' strings need not be kept.
    issuer: Option<&'c str>,
    audience: Option<&'c str>,
}

/// The registered claims of RFC 7519 §4.1, each of which may appear once. A
/// claim's bit in [`ClaimsFound::seen`] is `1 << index`; the user claim has
/// the bit after them.
const REGISTERED: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];
const ISS: u8 = 1 << 0;
const AUD: u8 = 1 << 2;
const EXP: u8 = 1 << 3;
const NBF: u8 = 1 << 4;
const USER: u8 = 1 << 7;

#[derive(Default)]
struct ClaimsFound {
    user: Option<ClaimValue>,
    exp: Option<ClaimValue>,
    nbf: Option<ClaimValue>,
    iss: Option<ClaimValue>,
    aud: Option<ClaimValue>,
    /// The claims seen so far, as bits (see [`REGISTERED`]).
    seen: u8,
    duplicate: bool,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = ClaimsFound;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<ClaimsFound, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = ClaimsFound;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClaimsFound, A::Error> {
        let mut found = ClaimsFound::default();
        while let Some(roles) = map.next_key_seed(ClaimName {
            user_claim: self.user_claim,
        })? {
            found.duplicate |= found.seen & roles != 0;
            found.seen |= roles;
            if roles & (USER | EXP | NBF | ISS | AUD) == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            // A name has at most one of ISS and AUD, so at most one expected
            // value applies.
            let expected = match roles {
                r if r & ISS != 0 => self.issuer,
                r if r & AUD != 0 => self.audience,
                _ => None,
            };
            let value = map.next_value_seed(ClaimValueSeed {
                keep_string: roles & USER != 0,
                expected,
                element: false,
            })?;
            // The user claim may share its name with a registered claim
            // (`sub`, most often), so one value may fill several roles.
            for (role, slot) in [
                (EXP, &mut found.exp),
                (NBF, &mut found.nbf),
                (ISS, &mut found.iss),
                (AUD, &mut found.aud),
            ] {
                if roles & role != 0 {
                    *slot = Some(value.clone());
                }
            }
            if roles & USER != 0 {
                found.user = Some(value);
            }
        }
        Ok(found)
    }
}

/// Classifies a claim name without allocating it: its bits (see
/// [`REGISTERED`]), 0 for a claim paygate ignores.
struct ClaimName<'c> {
    user_claim: &'c str,
}

impl<'de> DeserializeSeed<'de> for ClaimName<'_> {
    type Value = u8;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<u8, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ClaimName<'_> {
    type Value = u8;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<u8, E> {
        let registered = REGISTERED
            .iter()
            .position(|known| *known == name)
            .map_or(0, |i| 1 << i);
        let user = if name == self.user_claim { USER } else { 0 };
        Ok(registered | user)
    }
}

/// The value of a claim paygate reads, whatever its JSON type.
#[derive(Clone, Debug)]
enum ClaimValue {
    Str {
        /// The string, kept only for the user claim.
        text: Option<String>,
        /// Whether it equals the configured value (`iss`, `aud`).
        matches: bool,
    },
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    /// An array of strings only; `matches` when one of them equals the
    /// configured value.
    Strings {
        matches: bool,
    },
    /// null, a boolean, an object, or an array with something other than a
    /// string in it.
    Other,
}

impl ClaimValue {
    fn into_user_id(self) -> Result<String, &'static str> {
        match self {
            ClaimValue::Str { text: Some(id), .. } if is_valid_user_id(&id) => Ok(id),
            ClaimValue::Str { .. } => {
                Err("user claim is not 1 to 256 visible ASCII characters other than ','")
            }
            ClaimValue::Signed(n) => Ok(n.to_string()),
            ClaimValue::Unsigned(n) => Ok(n.to_string()),
            ClaimValue::Float(_) | ClaimValue::Strings { .. } | ClaimValue::Other => {
                Err("user claim is not a string or integer")
            }
        }
    }

    /// The value as a NumericDate (RFC 7519 §2) in unix seconds: a number,
    /// not negative; a fraction is rounded to the nearest second (as
    /// jsonwebtoken and PyJWT do) and a value beyond `i64::MAX` is read as
    /// `i64::MAX` (`as` saturates). `-0` counts as 0.
    fn numeric_date(&self) -> Option<i64> {
        match *self {
            ClaimValue::Signed(n) if n >= 0 => Some(n),
            ClaimValue::Unsigned(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
            ClaimValue::Float(f) if f >= 0.0 => Some(f.round() as i64),
            _ => None,
        }
    }
}

/// Reads one claim value: keeps the string only when asked to, and compares
/// strings (alone or in an array) with `expected`.
///
/// It never descends more than one array deep: what an element of an array
/// holds beyond that is skipped, which the JSON parser does without
/// recursion. However a token nests its claims, reading them takes a few
/// stack frames, not one per level.
#[derive(Clone, Copy)]
struct ClaimValueSeed<'e> {
    keep_string: bool,
    expected: Option<&'e str>,
    /// Reading an element of an array: an array or object here is skipped.
    element: bool,
}

impl<'de> DeserializeSeed<'de> for ClaimValueSeed<'_> {
    type Value = ClaimValue;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<ClaimValue, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ClaimValueSeed<'_> {
    type Value = ClaimValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Str {
            matches: self.expected == Some(v),
            text: self.keep_string.then(|| v.to_owned()),
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Str {
            matches: self.expected == Some(v.as_str()),
            text: self.keep_string.then_some(v),
        })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Float(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClaimValue, A::Error> {
        if self.element {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(ClaimValue::Other);
        }
        let element = ClaimValueSeed {
            keep_string: false,
            element: true,
            ..self
        };
        let (mut all_strings, mut matches) = (true, false);
        while let Some(value) = seq.next_element_seed(element)? {
            match value {
                ClaimValue::Str { matches: m, .. } => matches |= m,
                _ => all_strings = false,
            }
        }
        Ok(if all_strings {
            ClaimValue::Strings { matches }
        } else {
            ClaimValue::Other
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClaimValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(ClaimValue::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::jwks::test_server::JwksServer;
    use super::*;
    use http::HeaderValue;
    use serde_json::{json, Value};
    use tokio::task::JoinSet;

    const SECRET: &[u8] = b"test-secret-of-a-reasonable-length!";

    // Throwaway keys generated once with openssl for these tests only.
    const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC3V0TQfpQC0+sU
CMPlOz33SCOox0h6NSEMTg6zxioi9TDQR1+gN3ExfB/fD1PpqFiv0TY9eQj0sXqo
ZIZ9n3fc3vMSqrD4ingzQ2brPF1BVxaVw0DbXFxHkDyn8AI9ScYIlRYlkkpU3+fT
ieOff8PB2Briuat8WmTrFRTxt2JDbxgcezJ6DCNKRV6mCs2HXoUWJDwljIpx8YyK
LM7XwwhKLsqWgpXj7YNSZYZ9RgQah49qDFVotYwq+4nHEiDnShPHtkILJoQT8Tz1
zryuygzOrzE7e3w15ZQhpeZzh6aV2YJjDXWbmWd4WWiRxJyguKrZIpsEtywEBSqr
Kgxc7BIdAgMBAAECgf9p5VGJZlDx+AUuyZZ/Cl+gl0DzIZ3VJm19LIprS+fT+KuM
kz/IH4XAYsBntJVBv3xDjKqcacVBDAtIdIh2XRWcSbn/hvmRNg2Qi50lyTltJTC1
cn8GdBMpZRfXl7r1jqncOeovBbqnKNTx+1QZhFlCiWeZXyYsLsIQCU4g3x6gdJmj
/Ke2puvE8ixOH7++TGhC+ggVroW3R6HsPJgV5OrRspuggXeG+XIEgysaOerlA7Vk
hckwkFOOTh9AAIWPheX1KbJi4WVW8/uMAxWCgs8wCb3MI1c2iz0jnvGNRpgoITG8
RxaFq0kNnOBDZcItIk0QN5V3Rlitc+3h2meLGWECgYEA9pnYqcznFkWuuFbO4aw4
5nnBtrt2Vo7qrqynF7SIeyM/VRYEIy7s+BvrCbnXSsu9KAz0eLRtMNSKHYXMysMU
eecizPYbPxyJyGOr3Oibmi6GErHxVZB15ZYlJ8CoDcFLgqM6vDlLBDIF7mk1KcKs
xu2eLvZ+CPcucgLXxgEO888CgYEAvlQtMBnNTyreX/r+lv+s1CXu0EKWg3EGejUh
kmW6rsbS6+TtTZyVWPDfEUWvzExwEh3SPgnubWqNpHdAcMVbf5THaUHgJmT7L9CM
46zutlZyDeXqiMz4Rpe/jSAhU/oXGSekonv/AMx5dH+MBrU+zv9HduoSUpkDgHYo
2X6wGlMCgYEAu3YgepRFZ2z5cTCsfGmLp8kPNXY0c4CZbsfZDfAzgEg/MNNXuddG
VSYD+pTH0RgoZ3XRsqCWEPTBOcgo8kpyGmlWzzCXbdan9ymt0HUTNJYBXdzfdQgo
V6tX+2w9VJeIa3rif4ueN0Y/tAlOXLyc02x3P4QqM26UZB89IExVrYkCgYEAjPDi
wZLp0W1KXUMN0p2kyzkH3trggJdrF4ZOxQ1mL9T2Dk9pVybUBZfhZ/X119Dm0NOa
g+xwzj+wghD4/El5l0GCZbStm2D+DYtfOZ4u64GaViZjBkjatdPbulMHuxsgjbUo
mlY+IMZKTnXBKJqA12J89lchmF7NFAzr9Rt2pxcCgYBegOy23CmJAicc4Wn6dTcZ
E75nVkAXc6wF+3bZIxHe3ZT1LdjygWrp4BXbIsIikqShCR918gUHsczBaZo7RMeF
1nu4np/B/MopTmhJWg4+8EcRfNbr4dMpciHBDUaz8dGFdBXTdpBnBjNiHBm4ZRZg
bRjul2IdL3d1Uzc3U40UTg==
-----END PRIVATE KEY-----
";
    const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAt1dE0H6UAtPrFAjD5Ts9
90gjqMdIejUhDE4Os8YqIvUw0EdfoDdxMXwf3w9T6ahYr9E2PXkI9LF6qGSGfZ93
3N7zEqqw+Ip4M0Nm6zxdQVcWlcNA21xcR5A8p/ACPUnGCJUWJZJKVN/n04njn3/D
wdga4rmrfFpk6xUU8bdiQ28YHHsyegwjSkVepgrNh16FFiQ8JYyKcfGMiizO18MI
Si7KloKV4+2DUmWGfUYEGoePagxVaLWMKvuJxxIg50oTx7ZCCyaEE/E89c68rsoM
zq8xO3t8NeWUIaXmc4emldmCYw11m5lneFlokcScoLiq2SKbBLcsBAUqqyoMXOwS
HQIDAQAB
-----END PUBLIC KEY-----
";
    const RSA_N: &str = "t1dE0H6UAtPrFAjD5Ts990gjqMdIejUhDE4Os8YqIvUw0EdfoDdxMXwf3w9T6ahYr9E2PXkI9LF6qGSGfZ933N7zEqqw-Ip4M0Nm6zxdQVcWlcNA21xcR5A8p_ACPUnGCJUWJZJKVN_n04njn3_Dwdga4rmrfFpk6xUU8bdiQ28YHHsyegwjSkVepgrNh16FFiQ8JYyKcfGMiizO18MISi7KloKV4-2DUmWGfUYEGoePagxVaLWMKvuJxxIg50oTx7ZCCyaEE_E89c68rsoMzq8xO3t8NeWUIaXmc4emldmCYw11m5lneFlokcScoLiq2SKbBLcsBAUqqyoMXOwSHQ";

    const EC1_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglgzzXhnQasGPTfox
J/vR8Wfws++xoHzbw0HaWmbl6cuhRANCAARE5X1qKcVOIvK8LjYMqVu1EswJ4uw9
np24H32rxP0QeP3Sger/gYqnlYmY1E743lsrXBTGIaV4hm4yJmZpFg+9
-----END PRIVATE KEY-----
";
    const EC1_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEROV9ainFTiLyvC42DKlbtRLMCeLs
PZ6duB99q8T9EHj90oHq/4GKp5WJmNRO+N5bK1wUxiGleIZuMiZmaRYPvQ==
-----END PUBLIC KEY-----
";
    const EC1_X: &str = "ROV9ainFTiLyvC42DKlbtRLMCeLsPZ6duB99q8T9EHg";
    const EC1_Y: &str = "_dKB6v-BiqeViZjUTvjeWytcFMYhpXiGbjImZmkWD70";

    const EC2_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgkl9ZK1/3FnPK+V8h
jVqZcaZx14XEfiLt3N/UN4lhBJChRANCAASMg10ayB4IZmWAV9EcWxXiLxtbMnLE
rbsIatIOjSnvYsgaOysnbt+diRXFYdO/cLZCQB5THcF8asLV3ZSvdFxM
-----END PRIVATE KEY-----
";
    const EC2_X: &str = "jINdGsgeCGZlgFfRHFsV4i8bWzJyxK27CGrSDo0p72I";
    const EC2_Y: &str = "yBo7Kydu352JFcVh079wtkJAHlMdwXxqwtXdlK90XEw";

    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIHLLhcpKWMHW0RpY3kHfl8+yNE3XsuOIrLrR/1L9nXyI
-----END PRIVATE KEY-----
";
    const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEASU45WxP9f4gDsytCFYdlijCNdV/gJZpdoeyITByUeXM=
-----END PUBLIC KEY-----
";
    const ED_X: &str = "SU45WxP9f4gDsytCFYdlijCNdV_gJZpdoeyITByUeXM";

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn settings(algorithms: &[Algorithm]) -> JwtSettings {
        JwtSettings {
            algorithms: algorithms.to_vec(),
            secret: Some(SECRET.to_vec()),
            public_key_pem: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            leeway: 0,
            user_claim: "sub".to_owned(),
            cookie: None,
            jwks_refresh: Duration::from_secs(300),
            jwks_cooldown: Duration::from_secs(30),
        }
    }

    fn public_key_settings(algorithm: Algorithm, pem: &str) -> JwtSettings {
        JwtSettings {
            secret: None,
            public_key_pem: Some(pem.as_bytes().to_vec()),
            ..settings(&[algorithm])
        }
    }

    fn jwks_settings(url: String, algorithms: &[Algorithm]) -> JwtSettings {
        JwtSettings {
            secret: None,
            jwks_url: Some(url),
            ..settings(algorithms)
        }
    }

    async fn authenticator(settings: JwtSettings) -> Authenticator {
        Authenticator::new(settings, OutboundClient::new(Duration::from_secs(5)))
            .await
            .expect("authenticator")
    }

    fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, key).expect("encode")
    }

    fn hs256(claims: Value) -> String {
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET),
            None,
            claims,
        )
    }

    fn es256(private: &str, kid: Option<&str>, claims: Value) -> String {
        let key = EncodingKey::from_ec_pem(private.as_bytes()).expect("ec key");
        sign(Algorithm::ES256, &key, kid, claims)
    }

    fn valid_claims() -> Value {
        json!({"sub": "alice", "exp": now() + 600})
    }

    /// Builds a token from raw JSON header and claims and a raw signature,
    /// for the shapes no well-behaved library would produce.
    fn raw_token(header: &str, claims: &str, signature: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            signature
        )
    }

    fn jwk_ec(kid: &str, x: &str, y: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"})
    }

    fn jwk_set(keys: &[Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    // ---- HS256 and claim rules -------------------------------------------

    #[tokio::test]
    async fn hs256_good_token() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let exp = now() + 600;
        let token =
            hs256(json!({"sub": "alice", "exp": exp, "iat": now(), "extra": {"nested": [1, 2]}}));
        assert_eq!(
            auth.verify(&token).await.map(|i| (*i).clone()),
            Ok(Identity::new("alice".to_owned(), exp))
        );
    }

    #[tokio::test]
    async fn verified_tokens_are_cached_but_never_past_exp() {
        let mut s = settings(&[Algorithm::HS256]);
        s.leeway = 0;
        let auth = authenticator(s).await;
        let token = hs256(json!({"sub": "alice", "exp": now() + 600}));
        assert!(auth.verify(&token).await.is_ok());
        assert!(
            auth.verified.get(&token).is_some(),
            "a good token is remembered"
        );
        // Pretend the cached entry outlived its token: the cache must not serve it.
        let stale = Identity::new("alice".into(), now() - 1);
        auth.verified.insert(
            token.clone(),
            Verified {
                identity: Arc::new(stale),
                checked_at: now(),
            },
        );
        assert_eq!(auth.verify(&token).await, Err(AuthError::Expired));
        // Bad tokens are never remembered.
        // Change a character well inside the signature (the last one carries
        // padding bits, so changing it may not change the signature).
        let mut bytes = token.clone().into_bytes();
        let i = bytes.len() - 10;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).unwrap();
        assert!(auth.verify(&forged).await.is_err());
        assert!(auth.verified.get(&forged).is_none());
    }

    #[tokio::test]
    async fn user_claim_may_be_an_integer_or_a_string() {
        let auth = authenticator(JwtSettings {
            user_claim: "user_id".to_owned(),
            ..settings(&[Algorithm::HS256])
        })
        .await;
        let exp = now() + 600;
        for (value, expected) in [
            (json!(42), "42"),
            (json!("42"), "42"),
            (json!(-7), "-7"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(i64::MIN), "-9223372036854775808"),
            (json!("user@example.com"), "user@example.com"),
            (json!("a".repeat(256)), &*"a".repeat(256)),
        ] {
            let token = hs256(json!({"user_id": value, "sub": "ignored", "exp": exp}));
            assert_eq!(
                auth.verify(&token).await.map(|i| (*i).clone()),
                Ok(Identity::new(expected.to_owned(), exp)),
                "{value}"
            );
        }
    }

    #[tokio::test]
    async fn user_claim_missing_empty_or_of_another_type_is_invalid() {
        let auth = authenticator(JwtSettings {
            user_claim: "user_id".to_owned(),
            ..settings(&[Algorithm::HS256])
        })
        .await;
        let exp = now() + 600;
        let missing = hs256(json!({"sub": "alice", "exp": exp}));
        assert_eq!(
            auth.verify(&missing).await,
            Err(AuthError::Invalid("missing user claim"))
        );
        for value in [
            json!(""),
            json!(1.5),
            json!(true),
            json!(null),
            json!({"id": 1}),
            json!([1]),
            json!(["alice"]),
            json!("a\nb"),
            // What an HTTP parser would trim, or read as a list.
            json!("alice "),
            json!(" alice"),
            json!("alice\t"),
            json!("alice,bob"),
            json!("user_ünïcode"),
            json!("a".repeat(257)),
            // Integers beyond 64 bits are floats to JSON parsers.
            json!(1e20),
        ] {
            let token = hs256(json!({"user_id": value, "exp": exp}));
            assert!(
                matches!(auth.verify(&token).await, Err(AuthError::Invalid(_))),
                "{value}"
            );
        }
        // A duplicated user claim is ambiguous, whichever value comes last.
        let token = raw_token(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &format!(r#"{{"user_id":"alice","user_id":"bob","exp":{exp}}}"#),
            "",
        );
        let token = resign_hs256(&token);
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::Invalid("duplicate claim"))
        );
    }

    /// Signs the header and payload of `token` with the test secret, so a
    /// hand-written payload gets a valid HS256 signature.
    fn resign_hs256(token: &str) -> String {
        let mut parts = token.splitn(3, '.');
        let (header, payload) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let message = format!("{header}.{payload}");
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(SECRET),
            Algorithm::HS256,
        )
        .expect("sign");
        format!("{message}.{signature}")
    }

    #[tokio::test]
    async fn missing_exp_is_invalid() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let token = hs256(json!({"sub": "alice"}));
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::Invalid("missing exp"))
        );
        for exp in [
            json!("tomorrow"),
            json!(null),
            json!(-1),
            json!(-0.6),
            json!([1]),
        ] {
            let token = hs256(json!({"sub": "alice", "exp": exp}));
            assert_eq!(
                auth.verify(&token).await,
                Err(AuthError::Invalid("malformed exp")),
                "{exp}"
            );
        }
    }

    #[tokio::test]
    async fn expired_token_is_expired() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let token = hs256(json!({"sub": "alice", "exp": now() - 10}));
        assert_eq!(auth.verify(&token).await, Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn expired_token_with_a_bad_signature_is_invalid_not_expired() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let token = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"another secret"),
            None,
            json!({"sub": "alice", "exp": now() - 10}),
        );
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::Invalid("bad signature"))
        );
    }

    #[tokio::test]
    async fn expired_within_leeway_is_accepted() {
        let auth = authenticator(JwtSettings {
            leeway: 60,
            ..settings(&[Algorithm::HS256])
        })
        .await;
        let exp = now() - 30;
        let token = hs256(json!({"sub": "alice", "exp": exp}));
        assert_eq!(
            auth.verify(&token).await.map(|i| (*i).clone()),
            Ok(Identity::new("alice".to_owned(), exp))
        );
        let token = hs256(json!({"sub": "alice", "exp": now() - 120}));
        assert_eq!(auth.verify(&token).await, Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn nbf_in_the_future_is_invalid() {
        let auth = authenticator(JwtSettings {
            leeway: 30,
            ..settings(&[Algorithm::HS256])
        })
        .await;
        let exp = now() + 600;
        let token = hs256(json!({"sub": "alice", "exp": exp, "nbf": now() + 300}));
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::Invalid("token not yet valid"))
        );
        // Within the leeway, and in the past, it is fine.
        let token = hs256(json!({"sub": "alice", "exp": exp, "nbf": now() + 10}));
        assert!(auth.verify(&token).await.is_ok());
        let token = hs256(json!({"sub": "alice", "exp": exp, "nbf": now() - 10}));
        assert!(auth.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn issuer_is_checked_when_configured() {
        let auth = authenticator(JwtSettings {
            issuer: Some("https://auth.example.com/".to_owned()),
            ..settings(&[Algorithm::HS256])
        })
        .await;
        let exp = now() + 600;
        let good = hs256(json!({"sub": "alice", "exp": exp, "iss": "https://auth.example.com/"}));
        assert!(auth.verify(&good).await.is_ok());
        let wrong = hs256(json!({"sub": "alice", "exp": exp, "iss": "https://evil.example.com/"}));
        assert_eq!(
            auth.verify(&wrong).await,
            Err(AuthError::Invalid("wrong issuer"))
        );
        let missing = hs256(json!({"sub": "alice", "exp": exp}));
        assert_eq!(
            auth.verify(&missing).await,
            Err(AuthError::Invalid("missing iss"))
        );
    }

    #[tokio::test]
    async fn audience_is_checked_when_configured() {
        let auth = authenticator(JwtSettings {
            audience: Some("api".to_owned()),
            ..settings(&[Algorithm::HS256])
        })
        .await;
        let exp = now() + 600;
        for aud in [json!("api"), json!(["other", "api"])] {
            let token = hs256(json!({"sub": "alice", "exp": exp, "aud": aud}));
            assert!(auth.verify(&token).await.is_ok(), "{aud}");
        }
        let wrong = hs256(json!({"sub": "alice", "exp": exp, "aud": "admin"}));
        assert_eq!(
            auth.verify(&wrong).await,
            Err(AuthError::Invalid("wrong audience"))
        );
        let missing = hs256(json!({"sub": "alice", "exp": exp}));
        assert_eq!(
            auth.verify(&missing).await,
            Err(AuthError::Invalid("missing aud"))
        );

        // Without a configured audience, a token's `aud` is not held against it.
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let token = hs256(json!({"sub": "alice", "exp": exp, "aud": "anything"}));
        assert!(auth.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn algorithm_outside_the_allowlist_is_invalid() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let token = sign(
            Algorithm::HS384,
            &EncodingKey::from_secret(SECRET),
            None,
            valid_claims(),
        );
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::Invalid("algorithm not allowed"))
        );
        let token = es256(EC1_PRIVATE, None, valid_claims());
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::Invalid("algorithm not allowed"))
        );
    }

    #[tokio::test]
    async fn alg_none_is_always_rejected() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let claims = valid_claims().to_string();
        for alg in ["none", "None", "NONE", ""] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
            for signature in ["", "AAAA"] {
                let token = raw_token(&header, &claims, signature);
                assert_eq!(
                    auth.verify(&token).await,
                    Err(AuthError::Invalid("algorithm not allowed")),
                    "{alg}"
                );
            }
        }
        let token = raw_token(r#"{"typ":"JWT"}"#, &claims, "");
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::Invalid("malformed token"))
        );
    }

    #[tokio::test]
    async fn malformed_and_tampered_tokens_are_invalid() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        for token in [
            "",
            "abc",
            "a.b",
            "a.b.c",
            "..",
            "a.b.c.d",
            "!!!.???.***",
            "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.sig",
        ] {
            assert!(
                matches!(auth.verify(token).await, Err(AuthError::Invalid(_))),
                "{token:?}"
            );
        }
        // Changing the payload of a good token breaks its signature.
        let good = hs256(valid_claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(json!({"sub": "mallory", "exp": now() + 600}).to_string());
        parts[1] = &forged_payload;
        assert_eq!(
            auth.verify(&parts.join(".")).await,
            Err(AuthError::Invalid("bad signature"))
        );
        // A header with critical extensions paygate does not implement.
        let token = raw_token(
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            &valid_claims().to_string(),
            "",
        );
        assert_eq!(
            auth.verify(&resign_hs256(&token)).await,
            Err(AuthError::Invalid("unsupported critical header"))
        );
    }

    /// Signs a hand-written header and claims with the test secret (HS256
    /// signature whatever the header says).
    fn signed_raw(header: &str, claims: &str) -> String {
        resign_hs256(&raw_token(header, claims, ""))
    }

    #[tokio::test]
    async fn crit_is_refused_in_every_shape() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let claims = valid_claims().to_string();
        for crit in [
            "null",
            "[]",
            r#"["b64"]"#,
            r#"["exp"]"#,
            "{}",
            r#""b64""#,
            "0",
            "false",
        ] {
            let header = format!(r#"{{"alg":"HS256","crit":{crit}}}"#);
            assert_eq!(
                auth.verify(&signed_raw(&header, &claims)).await,
                Err(AuthError::Invalid("unsupported critical header")),
                "{crit}"
            );
        }
        // An escaped name is the same name.
        let header = r#"{"alg":"HS256","\u0063rit":null}"#;
        assert_eq!(
            auth.verify(&signed_raw(header, &claims)).await,
            Err(AuthError::Invalid("unsupported critical header"))
        );
    }

    #[tokio::test]
    async fn header_rules() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let claims = valid_claims().to_string();
        for good in [
            r#"{"alg":"HS256"}"#,
            r#" {"typ":"JWT", "alg":"HS256"} "#,
            r#"{"alg":"HS256","kid":null}"#,
            r#"{"alg":"HS256","kid":"k1","typ":7,"x":[{"y":null}],"x":1}"#,
            r#"{"\u0061lg":"HS\u0032\u0035\u0036"}"#,
        ] {
            assert!(
                auth.verify(&signed_raw(good, &claims)).await.is_ok(),
                "{good}"
            );
        }
        for bad in [
            r#"["HS256"]"#,
            r#""HS256""#,
            r#"{}"#,
            r#"{"alg":null}"#,
            r#"{"alg":["HS256"]}"#,
            r#"{"alg":"HS256","alg":"HS256"}"#,
            r#"{"alg":"HS256","kid":"a","kid":"a"}"#,
            r#"{"alg":"HS256","kid":1}"#,
            r#"{"alg":"HS256"}x"#,
            r#"{"alg":"HS256""#,
        ] {
            assert_eq!(
                auth.verify(&signed_raw(bad, &claims)).await,
                Err(AuthError::Invalid("malformed token")),
                "{bad}"
            );
        }
        for unknown in ["hs256", "HS256 ", "none", ""] {
            let header = format!(r#"{{"alg":"{unknown}"}}"#);
            assert_eq!(
                auth.verify(&signed_raw(&header, &claims)).await,
                Err(AuthError::Invalid("algorithm not allowed")),
                "{unknown}"
            );
        }
    }

    #[tokio::test]
    async fn token_structure_rules() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let good = hs256(valid_claims());
        assert!(auth.verify(&good).await.is_ok());
        let (signed, signature) = good.rsplit_once('.').unwrap();
        for bad in [
            format!("{good}."),
            format!(".{good}"),
            format!("{signed}.{signature}="),
            format!("{signed}=.{signature}"),
            signed.to_string(),
            format!("{signed}.{signature}.{signature}"),
            format!(
                "{signed}.{}",
                signature.replace(|c: char| c.is_ascii_digit(), "+")
            ),
            format!("{signed}."),
            good.replacen('.', "..", 1),
        ] {
            assert!(
                matches!(auth.verify(&bad).await, Err(AuthError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn claims_rules() {
        let exp = now() + 600;
        let auth = authenticator(JwtSettings {
            leeway: 30,
            ..settings(&[Algorithm::HS256])
        })
        .await;
        let header = r#"{"alg":"HS256"}"#;
        let check = |claims: String| {
            let auth = &auth;
            async move { auth.verify(&signed_raw(header, &claims)).await }
        };
        // Duplicates of a registered claim, whichever it is.
        for name in ["exp", "iat", "nbf", "iss", "aud", "jti", "sub"] {
            let claims = format!(r#"{{"sub":"alice","exp":{exp},"{name}":1,"{name}":1}}"#);
            assert_eq!(
                check(claims.clone()).await,
                Err(AuthError::Invalid("duplicate claim")),
                "{claims}"
            );
        }
        // Other duplicates do not matter.
        assert!(
            check(format!(r#"{{"sub":"alice","exp":{exp},"x":1,"x":[]}}"#))
                .await
                .is_ok()
        );
        // Not an object.
        assert_eq!(
            check(format!(r#"["alice",{exp}]"#)).await,
            Err(AuthError::Invalid("malformed claims"))
        );
        // A fractional exp is rounded; a huge one never expires.
        let fractional = check(format!(r#"{{"sub":"alice","exp":{exp}.5}}"#)).await;
        assert_eq!(fractional.map(|i| i.expires_at), Ok(exp + 1));
        let huge = check(r#"{"sub":"alice","exp":1e300}"#.to_owned()).await;
        assert_eq!(huge.map(|i| i.expires_at), Ok(i64::MAX));
        // nbf must be a number too.
        for nbf in [r#""0""#, "null", "-1", "true"] {
            assert_eq!(
                check(format!(r#"{{"sub":"alice","exp":{exp},"nbf":{nbf}}}"#)).await,
                Err(AuthError::Invalid("malformed nbf")),
                "{nbf}"
            );
        }
        // Expired is reported only for an otherwise valid token.
        let past = now() - 3600;
        assert_eq!(
            check(format!(r#"{{"sub":"alice","exp":{past}}}"#)).await,
            Err(AuthError::Expired)
        );
        for other in [
            format!(r#"{{"sub":"alice ","exp":{past}}}"#),
            format!(r#"{{"sub":"alice","exp":{past},"nbf":"x"}}"#),
            format!(r#"{{"exp":{past}}}"#),
        ] {
            assert!(
                matches!(check(other.clone()).await, Err(AuthError::Invalid(_))),
                "{other}"
            );
        }
    }

    #[tokio::test]
    async fn configured_issuer_must_be_a_string_and_audience_a_string_or_strings() {
        let auth = authenticator(JwtSettings {
            issuer: Some("https://id.example/".to_owned()),
            audience: Some("api".to_owned()),
            ..settings(&[Algorithm::HS256])
        })
        .await;
        let exp = now() + 600;
        let with = |iss: Value, aud: Value| {
            hs256(json!({"sub": "alice", "exp": exp, "iss": iss, "aud": aud}))
        };
        assert!(auth
            .verify(&with(json!("https://id.example/"), json!("api")))
            .await
            .is_ok());
        assert!(auth
            .verify(&with(json!("https://id.example/"), json!(["web", "api"])))
            .await
            .is_ok());
        for (iss, aud, reason) in [
            (json!(["https://id.example/"]), json!("api"), "wrong issuer"),
            (json!(null), json!("api"), "wrong issuer"),
            (json!("https://id.example"), json!("api"), "wrong issuer"),
            (
                json!("https://id.example/"),
                json!(["api", 1]),
                "wrong audience",
            ),
            (json!("https://id.example/"), json!([]), "wrong audience"),
            (
                json!("https://id.example/"),
                json!({"api": true}),
                "wrong audience",
            ),
            (json!("https://id.example/"), json!("API"), "wrong audience"),
        ] {
            assert_eq!(
                auth.verify(&with(iss.clone(), aud.clone())).await,
                Err(AuthError::Invalid(reason)),
                "{iss} {aud}"
            );
        }
    }

    // ---- asymmetric static keys ----------------------------------------

    #[tokio::test]
    async fn hs256_signed_with_the_rsa_public_key_is_invalid() {
        // The classic key-confusion attack: the attacker knows the public
        // key and uses its PEM bytes as an HMAC secret.
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            None,
            valid_claims(),
        );
        let auth = authenticator(public_key_settings(Algorithm::RS256, RSA_PUBLIC)).await;
        assert_eq!(
            auth.verify(&forged).await,
            Err(AuthError::Invalid("algorithm not allowed"))
        );

        // Even with HS256 allowed next to RS256, HS tokens are only ever
        // checked with the configured secret.
        let auth = authenticator(JwtSettings {
            public_key_pem: Some(RSA_PUBLIC.as_bytes().to_vec()),
            ..settings(&[Algorithm::HS256, Algorithm::RS256])
        })
        .await;
        assert_eq!(
            auth.verify(&forged).await,
            Err(AuthError::Invalid("bad signature"))
        );
        assert!(auth.verify(&hs256(valid_claims())).await.is_ok());
    }

    #[tokio::test]
    async fn rs256_with_a_static_public_key() {
        let auth = authenticator(public_key_settings(Algorithm::RS256, RSA_PUBLIC)).await;
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa key");
        let exp = now() + 600;
        // A kid is ignored when there is no JWKS to look it up in.
        let token = sign(
            Algorithm::RS256,
            &key,
            Some("whatever"),
            json!({"sub": "alice", "exp": exp}),
        );
        assert_eq!(
            auth.verify(&token).await.map(|i| (*i).clone()),
            Ok(Identity::new("alice".to_owned(), exp))
        );
        // An EC key cannot stand in for the RSA one.
        let token = es256(EC1_PRIVATE, None, valid_claims());
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::Invalid("algorithm not allowed"))
        );
    }

    #[tokio::test]
    async fn es256_with_a_static_public_key() {
        let auth = authenticator(public_key_settings(Algorithm::ES256, EC1_PUBLIC)).await;
        assert!(auth
            .verify(&es256(EC1_PRIVATE, None, valid_claims()))
            .await
            .is_ok());
        // Signed by another P-256 key.
        assert_eq!(
            auth.verify(&es256(EC2_PRIVATE, None, valid_claims())).await,
            Err(AuthError::Invalid("bad signature"))
        );
    }

    #[tokio::test]
    async fn eddsa_with_a_static_public_key() {
        let auth = authenticator(public_key_settings(Algorithm::EdDSA, ED_PUBLIC)).await;
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).expect("ed key");
        assert!(auth
            .verify(&sign(Algorithm::EdDSA, &key, None, valid_claims()))
            .await
            .is_ok());
        let expired = sign(
            Algorithm::EdDSA,
            &key,
            None,
            json!({"sub": "alice", "exp": now() - 100}),
        );
        assert_eq!(auth.verify(&expired).await, Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn new_refuses_broken_static_key_settings() {
        let http = || OutboundClient::new(Duration::from_secs(1));
        let cases = [
            settings(&[]),
            JwtSettings {
                secret: None,
                ..settings(&[Algorithm::HS256])
            },
            JwtSettings {
                secret: Some(Vec::new()),
                ..settings(&[Algorithm::HS256])
            },
            JwtSettings {
                secret: None,
                ..settings(&[Algorithm::RS256])
            },
            public_key_settings(Algorithm::RS256, "not a pem"),
            // An RSA key does not serve an ES256 allowlist.
            public_key_settings(Algorithm::ES256, RSA_PUBLIC),
        ];
        for case in cases {
            let description = format!("{case:?}");
            assert!(
                Authenticator::new(case, http()).await.is_err(),
                "{description}"
            );
        }
    }

    #[tokio::test]
    async fn authenticator_and_verify_future_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        fn assert_send<T: Send>(_: &T) {}
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        assert_send_sync(&auth);
        let future = auth.verify("a.b.c");
        assert_send(&future);
        assert!(future.await.is_err());
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            auth.verify(&huge).await,
            Err(AuthError::Invalid("token too large"))
        );
    }

    #[test]
    fn debug_output_redacts_the_secret() {
        let text = format!("{:?}", settings(&[Algorithm::HS256]));
        assert!(!text.contains("reasonable"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    // ---- JWKS ------------------------------------------------------------

    #[tokio::test]
    async fn jwks_key_is_found_by_kid() {
        let rsa = json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "r1", "alg": "RS256"});
        let server = JwksServer::start(jwk_set(&[
            jwk_ec("k1", EC1_X, EC1_Y),
            jwk_ec("k2", EC2_X, EC2_Y),
            rsa,
        ]))
        .await;
        let auth = authenticator(jwks_settings(
            server.url(),
            &[Algorithm::ES256, Algorithm::RS256],
        ))
        .await;
        assert_eq!(server.hits(), 1);

        assert!(auth
            .verify(&es256(EC1_PRIVATE, Some("k1"), valid_claims()))
            .await
            .is_ok());
        assert!(auth
            .verify(&es256(EC2_PRIVATE, Some("k2"), valid_claims()))
            .await
            .is_ok());
        // The right key type under the wrong kid fails the signature check.
        assert_eq!(
            auth.verify(&es256(EC1_PRIVATE, Some("k2"), valid_claims()))
                .await,
            Err(AuthError::Invalid("bad signature"))
        );
        // An ES256 token naming the RSA key is refused outright.
        assert_eq!(
            auth.verify(&es256(EC1_PRIVATE, Some("r1"), valid_claims()))
                .await,
            Err(AuthError::Invalid("key does not match algorithm"))
        );
        let rsa_key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa key");
        assert!(auth
            .verify(&sign(
                Algorithm::RS256,
                &rsa_key,
                Some("r1"),
                valid_claims()
            ))
            .await
            .is_ok());
        // None of that needed another fetch.
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_and_then_succeeds_after_rotation() {
        let server = JwksServer::start(jwk_set(&[jwk_ec("k1", EC1_X, EC1_Y)])).await;
        let auth = authenticator(jwks_settings(server.url(), &[Algorithm::ES256])).await;
        assert_eq!(server.hits(), 1);

        // The provider rotates to k2 and starts signing with it.
        server.set_body(jwk_set(&[
            jwk_ec("k1", EC1_X, EC1_Y),
            jwk_ec("k2", EC2_X, EC2_Y),
        ]));
        let token = es256(EC2_PRIVATE, Some("k2"), valid_claims());
        assert!(auth.verify(&token).await.is_ok());
        assert_eq!(server.hits(), 2);
        // Now known: no more fetches.
        assert!(auth.verify(&token).await.is_ok());
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_unknown_kids_causes_at_most_one_fetch_per_cooldown() {
        let server = JwksServer::start(jwk_set(&[jwk_ec("k1", EC1_X, EC1_Y)])).await;
        let cooldown = Duration::from_secs(2);
        let auth = Arc::new(
            authenticator(JwtSettings {
                jwks_cooldown: cooldown,
                ..jwks_settings(server.url(), &[Algorithm::ES256])
            })
            .await,
        );
        assert_eq!(server.hits(), 1);
        // A slow provider, so that the verifications really overlap the fetch.
        server.set_delay(Duration::from_millis(200));

        // Forged kids need no valid signature: the key lookup fails first.
        // Building them by hand also keeps each flood far shorter than the
        // cooldown, even in a slow debug build.
        let claims = valid_claims().to_string();
        let flood = |round: usize| {
            let mut set = JoinSet::new();
            for i in 0..50 {
                let auth = Arc::clone(&auth);
                let header = format!(r#"{{"alg":"ES256","kid":"forged-{round}-{i}"}}"#);
                let token = raw_token(&header, &claims, "AAAA");
                set.spawn(async move { auth.verify(&token).await });
            }
            set
        };
        let results = flood(0).join_all().await;
        assert!(results
            .iter()
            .all(|r| *r == Err(AuthError::Invalid("unknown key id"))));
        assert_eq!(server.hits(), 2, "fifty misses share one fetch");

        // Within the cooldown, another flood fetches nothing.
        let results = flood(1).join_all().await;
        assert!(results
            .iter()
            .all(|r| *r == Err(AuthError::Invalid("unknown key id"))));
        assert_eq!(server.hits(), 2, "the cooldown holds");

        // Once it has passed, one more fetch is allowed, and only one.
        tokio::time::sleep(cooldown).await;
        let results = flood(2).join_all().await;
        assert!(results.iter().all(|r| r.is_err()));
        assert_eq!(server.hits(), 3);

        // Known keys kept working throughout.
        assert!(auth
            .verify(&es256(EC1_PRIVATE, Some("k1"), valid_claims()))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn failed_refresh_keeps_the_old_keys() {
        let server = JwksServer::start(jwk_set(&[jwk_ec("k1", EC1_X, EC1_Y)])).await;
        let auth = authenticator(JwtSettings {
            jwks_cooldown: Duration::ZERO,
            ..jwks_settings(server.url(), &[Algorithm::ES256])
        })
        .await;
        server.set_status(503);
        let unknown = es256(EC2_PRIVATE, Some("k2"), valid_claims());
        assert_eq!(
            auth.verify(&unknown).await,
            Err(AuthError::Invalid("unknown key id"))
        );
        assert_eq!(server.hits(), 2);
        assert!(auth
            .verify(&es256(EC1_PRIVATE, Some("k1"), valid_claims()))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn jwks_down_at_start_is_not_fatal_and_recovers() {
        let server = JwksServer::start(jwk_set(&[jwk_ec("k1", EC1_X, EC1_Y)])).await;
        server.set_status(500);
        let auth = authenticator(JwtSettings {
            jwks_cooldown: Duration::ZERO,
            ..jwks_settings(server.url(), &[Algorithm::ES256])
        })
        .await;
        let token = es256(EC1_PRIVATE, Some("k1"), valid_claims());
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::Invalid("unknown key id"))
        );

        server.set_status(200);
        assert!(auth.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn refresher_picks_up_rotated_keys_and_stops_with_the_authenticator() {
        let server = JwksServer::start(jwk_set(&[jwk_ec("k1", EC1_X, EC1_Y)])).await;
        let auth = Arc::new(
            authenticator(JwtSettings {
                jwks_refresh: Duration::from_secs(1),
                // A long cooldown: a miss right after start-up must not
                // fetch, so only the refresher can bring k2 in.
                jwks_cooldown: Duration::from_secs(60),
                ..jwks_settings(server.url(), &[Algorithm::ES256])
            })
            .await,
        );
        auth.spawn_refresher();
        auth.spawn_refresher(); // a second call starts nothing
        let token = es256(EC2_PRIVATE, Some("k2"), valid_claims());
        // This miss uses up the cooldown's one fetch.
        assert!(auth.verify(&token).await.is_err());
        assert_eq!(server.hits(), 2);

        server.set_body(jwk_set(&[jwk_ec("k2", EC2_X, EC2_Y)]));
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(server.hits(), 3, "one periodic refresh");
        assert!(auth.verify(&token).await.is_ok());

        drop(auth);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(server.hits(), 3, "the refresher stopped");
    }

    #[tokio::test]
    async fn eddsa_key_from_jwks() {
        let okp = json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"});
        let server = JwksServer::start(jwk_set(&[okp])).await;
        let auth = authenticator(jwks_settings(server.url(), &[Algorithm::EdDSA])).await;
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).expect("ed key");
        assert!(auth
            .verify(&sign(Algorithm::EdDSA, &key, Some("ed"), valid_claims()))
            .await
            .is_ok());
        // Without a kid, the only Ed25519 key is used.
        assert!(auth
            .verify(&sign(Algorithm::EdDSA, &key, None, valid_claims()))
            .await
            .is_ok());
    }

    // ---- extract_token ---------------------------------------------------

    /// The token `extract_token` finds; panics on an ambiguous credential.
    fn token_in<'a>(map: &'a HeaderMap, cookie: Option<&str>) -> Option<&'a str> {
        match extract_token(map, cookie) {
            Credential::Token(token) => Some(token),
            Credential::None => None,
            Credential::Ambiguous => panic!("ambiguous credential"),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn token_from_the_authorization_header() {
        let map = headers(&[("authorization", "Bearer abc.def.ghi")]);
        assert_eq!(token_in(&map, None), Some("abc.def.ghi"));
        let map = headers(&[("authorization", "bearer   abc.def.ghi  ")]);
        assert_eq!(token_in(&map, Some("access_token")), Some("abc.def.ghi"));
        let map = headers(&[("authorization", "BEARER abc")]);
        assert_eq!(token_in(&map, None), Some("abc"));
        assert_eq!(token_in(&HeaderMap::new(), None), None);
    }

    #[test]
    fn token_from_the_cookie() {
        let map = headers(&[("cookie", "access_token=abc.def.ghi")]);
        assert_eq!(token_in(&map, Some("access_token")), Some("abc.def.ghi"));
        // The cookie is only read when configured.
        assert_eq!(token_in(&map, None), None);
        assert_eq!(token_in(&map, Some("other")), None);
    }

    #[test]
    fn token_from_a_cookie_among_several() {
        let map = headers(&[(
            "cookie",
            "theme=dark; session=xyz;access_token=\"tok\"; a=b",
        )]);
        assert_eq!(token_in(&map, Some("access_token")), Some("tok"));
        // Split over several Cookie headers, and a name that only ends the same.
        let map = headers(&[
            ("cookie", "my_access_token=no; theme=dark"),
            ("cookie", "access_token=yes"),
        ]);
        assert_eq!(token_in(&map, Some("access_token")), Some("yes"));
        let map = headers(&[("cookie", "access_token=; theme=dark")]);
        assert_eq!(token_in(&map, Some("access_token")), None);
    }

    #[test]
    fn header_wins_over_cookie() {
        let map = headers(&[
            ("authorization", "Bearer from-header"),
            ("cookie", "access_token=from-cookie"),
        ]);
        assert_eq!(token_in(&map, Some("access_token")), Some("from-header"));
    }

    #[test]
    fn another_scheme_counts_as_no_token() {
        for value in [
            "Basic dXNlcjpwYXNz",
            "Token abc",
            "Bearerabc",
            "Bearer",
            "Bearer   ",
            "abc.def.ghi",
        ] {
            let map = headers(&[("authorization", value)]);
            assert_eq!(token_in(&map, Some("access_token")), None, "{value}");
        }
        // ... so a token in the cookie is still used (see extract_token).
        let map = headers(&[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("cookie", "access_token=tok"),
        ]);
        assert_eq!(token_in(&map, Some("access_token")), Some("tok"));
    }

    #[test]
    fn several_authorization_headers_are_ambiguous_whatever_they_hold() {
        for pair in [
            ["Bearer a.b.c", "Bearer a.b.c"],
            ["Bearer a.b.c", "Bearer d.e.f"],
            ["Basic dXNlcjpwYXNz", "Bearer a.b.c"],
            ["Bearer a.b.c", ""],
        ] {
            let map = headers(&[
                ("authorization", pair[0]),
                ("authorization", pair[1]),
                ("cookie", "access_token=tok"),
            ]);
            assert_eq!(
                extract_token(&map, Some("access_token")),
                Credential::Ambiguous,
                "{pair:?}"
            );
            assert_eq!(authorization_bearer(&map), Credential::Ambiguous);
            assert_eq!(
                extract_token(&map, None).required(),
                Err(AuthError::Invalid(AMBIGUOUS))
            );
        }
        let map = headers(&[("authorization", "Bearer a.b.c")]);
        assert_eq!(extract_token(&map, None).required(), Ok("a.b.c"));
        assert_eq!(
            extract_token(&HeaderMap::new(), None).required(),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn bearer_scheme_and_token_are_separated_by_spaces_or_tabs() {
        for (value, expected) in [
            ("Bearer abc", Some("abc")),
            ("bEaReR abc", Some("abc")),
            ("Bearer\tabc", Some("abc")),
            ("Bearer \t  abc \t", Some("abc")),
            ("\t Bearer abc", Some("abc")),
            ("Bearer", None),
            ("Bearer \t ", None),
            ("Bearerabc", None),
            ("Bearer-abc", None),
            ("Basic\tabc", None),
            ("", None),
            // Not a token paygate accepts, but a bearer one: verify refuses it.
            ("Bearer a b", Some("a b")),
        ] {
            assert_eq!(bearer_token(value), expected, "{value:?}");
        }
    }

    #[test]
    fn user_id_syntax() {
        let longest = "x".repeat(MAX_USER_ID_LEN);
        for good in ["alice", "42", "-7", "a!~b", "user@example.com", &longest] {
            assert!(is_valid_user_id(good), "{good:?}");
        }
        let too_long = "x".repeat(MAX_USER_ID_LEN + 1);
        for bad in [
            "",
            "alice ",
            " alice",
            "al ice",
            "alice,bob",
            "a\tb",
            "a\nb",
            "a\u{7f}",
            "ünïcode",
            "\u{a0}alice",
            &too_long,
        ] {
            assert!(!is_valid_user_id(bad), "{bad:?}");
        }
    }

    // ---- mint_token --------------------------------------------------------

    #[tokio::test]
    async fn minted_token_round_trips() {
        let settings = JwtSettings {
            algorithms: vec![Algorithm::RS256, Algorithm::HS512, Algorithm::HS256],
            public_key_pem: Some(RSA_PUBLIC.as_bytes().to_vec()),
            issuer: Some("paygate-test".to_owned()),
            audience: Some("api".to_owned()),
            user_claim: "user_id".to_owned(),
            ..settings(&[])
        };
        let token = mint_token(&settings, "42", Duration::from_secs(3600)).expect("mint");
        assert_eq!(
            jsonwebtoken::decode_header(&token).expect("header").alg,
            Algorithm::HS512
        );
        let auth = authenticator(settings).await;
        let identity = auth.verify(&token).await.expect("verify");
        assert_eq!(identity.user_id, "42");
        assert!((identity.expires_at - (now() + 3600)).abs() <= 2);
    }

    #[test]
    fn minting_is_refused_without_a_secret_or_hs_algorithm() {
        // Only a public key configured.
        let public_only = public_key_settings(Algorithm::RS256, RSA_PUBLIC);
        assert!(mint_token(&public_only, "alice", Duration::from_secs(60)).is_err());
        // A secret, but HS is not allowed.
        let no_hs = JwtSettings {
            public_key_pem: Some(RSA_PUBLIC.as_bytes().to_vec()),
            ..settings(&[Algorithm::RS256])
        };
        assert!(mint_token(&no_hs, "alice", Duration::from_secs(60)).is_err());
        // HS allowed, but no secret.
        let no_secret = JwtSettings {
            secret: None,
            ..settings(&[Algorithm::HS256])
        };
        assert!(mint_token(&no_secret, "alice", Duration::from_secs(60)).is_err());
        assert!(mint_token(&settings(&[Algorithm::HS256]), "", Duration::from_secs(60)).is_err());
    }
}
