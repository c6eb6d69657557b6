//! The verifier ([`Authenticator`]): picks the key by the algorithm family of
//! the token header, has jsonwebtoken check the signature, then lets
//! paygate's own readers judge the header and claims; and in front of all
//! that, the verified-token cache.
//!
//! The cache hit is the per-request path: one clock read by the caller, one
//! cache lookup, no allocation. The only I/O is the JWKS refetch on an
//! unknown `kid`, rate-limited in [`super::jwks`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::cache::{Cached, VerifiedTokens};
use super::claims::read_claims;
use super::header::read_header;
use super::identity::{loggable, AuthError, Identity, TokenReason};
use super::jwks::{Jwks, Lookup};
use super::settings::{static_keys, AlgorithmEntry, JwtSettings};
use super::token::TokenParts;
use crate::clock::unix_now;
use crate::outbound::OutboundClient;

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
    /// Tokens that verified recently (see `cache.rs`).
    verified: VerifiedTokens,
}

impl Authenticator {
    /// Builds key material; when jwks_url is set or discovery finds it,
    /// fetches the keys once (an error is returned for static-key problems and
    /// a failed discovery; a JWKS fetch failure at start is
    /// logged with tracing::warn and retried by the refresher, tokens fail as
    /// Invalid until keys exist).
    pub async fn new(settings: JwtSettings, http: OutboundClient) -> Result<Self, String> {
        let algorithms = static_keys(&settings)?;

        let jwks = Jwks::start(&settings, http).await?;

        Ok(Authenticator {
            settings,
            algorithms,
            jwks,
            refresher_started: AtomicBool::new(false),
            verified: VerifiedTokens::new(),
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
    pub(super) async fn verify_at(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Arc<Identity>, AuthError> {
        // A token seen recently skips the signature check (the hot path's
        // largest cost), but expiry is still checked on every use.
        match self.verified.lookup(token, now, self.settings.leeway) {
            Cached::Fresh(identity) => return Ok(identity),
            Cached::Expired => return Err(AuthError::Expired),
            Cached::Miss => {}
        }
        let identity = Arc::new(self.verify_uncached_at(token, now).await?);
        self.verified.remember(token, Arc::clone(&identity), now);
        Ok(identity)
    }

    /// Verifies without consulting or filling the verified-token cache (benches).
    #[cfg(feature = "bench")]
    pub async fn verify_uncached(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_uncached_at(token, unix_now()).await
    }

    pub(super) async fn verify_uncached_at(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::invalid(
                TokenReason::Malformed,
                "token longer than 16 KiB",
            ));
        }
        let parts = TokenParts::split(token)?;
        let header = read_header(parts.header)?;
        let entry = self
            .algorithms
            .iter()
            .find(|entry| entry.alg == header.alg)
            .ok_or_else(|| {
                AuthError::invalid_with(
                    TokenReason::AlgNotAllowed,
                    format!("alg={:?} is not in jwt.algorithms", header.alg),
                )
            })?;

        // HS* never looks at the JWKS, and a static key is used when there is
        // no JWKS or the token does not name a key: a token that names one
        // is meant for the provider's key set.
        let use_static = header.alg.family() == AlgorithmFamily::Hmac
            || (entry.static_key.is_some() && (self.jwks.is_none() || header.kid.is_none()));
        if use_static {
            let key = entry.static_key.as_ref().ok_or(NO_KEY)?;
            return self.decode(&parts, key, header.alg, now);
        }
        let Some(jwks) = &self.jwks else {
            return Err(NO_KEY);
        };

        let kid = header.kid.as_deref();
        let (seen_attempts, keys) = jwks.snapshot();
        match keys.find(header.alg, kid) {
            Lookup::Found(key) => return self.decode(&parts, key, header.alg, now),
            Lookup::WrongAlgorithm => return Err(wrong_algorithm(header.alg, kid)),
            Lookup::NotFound => {}
        }
        // The snapshot is dropped before waiting, so a refresh is never kept
        // from freeing the old set by a request parked here.
        drop(keys);
        let keys = jwks.refresh_on_miss(seen_attempts).await;
        match keys.find(header.alg, kid) {
            Lookup::Found(key) => self.decode(&parts, key, header.alg, now),
            Lookup::WrongAlgorithm => Err(wrong_algorithm(header.alg, kid)),
            Lookup::NotFound => Err(AuthError::invalid_with(
                TokenReason::UnknownKid,
                match kid {
                    Some(kid) => format!("kid={} is not in the key set", loggable(kid)),
                    None => "no kid, and no static key for the algorithm".to_string(),
                },
            )),
        }
    }

    /// The settings this authenticator was built from.
    #[cfg(feature = "bench")]
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
            Ok(false) => {
                return Err(AuthError::invalid(
                    TokenReason::BadSignature,
                    "signature does not verify",
                ))
            }
            Err(err) => return Err(map_jwt_error(err)),
        }
        read_claims(parts.payload, &self.settings, now)
    }
}

/// A token of an allowed algorithm for which no key is configured (an
/// asymmetric algorithm without a public key or a JWKS).
const NO_KEY: AuthError =
    AuthError::invalid(TokenReason::UnknownKid, "no key is configured for the alg");

/// A token whose `kid` names a key of another type than its `alg`: the
/// algorithm-confusion shape, refused before any check.
fn wrong_algorithm(alg: Algorithm, kid: Option<&str>) -> AuthError {
    AuthError::invalid_with(
        TokenReason::AlgNotAllowed,
        format!(
            "alg={alg:?} does not fit the key kid={}",
            loggable(kid.unwrap_or_default())
        ),
    )
}

/// Maps a failure of jsonwebtoken's signature check to our reason.
fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    let (reason, detail) = match err.kind() {
        ErrorKind::InvalidSignature => (TokenReason::BadSignature, "signature does not verify"),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => (
            TokenReason::AlgNotAllowed,
            "alg does not fit the selected key",
        ),
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => {
            // The token cannot be checked because a configured or published
            // key is broken: that is the operator's problem to see.
            tracing::warn!(error = %err, "JWT verification key is unusable");
            (
                TokenReason::BadSignature,
                "the verification key is unusable",
            )
        }
        // The signature part is not base64url.
        ErrorKind::Base64(_) => (TokenReason::Malformed, "signature is not base64url"),
        _ => (TokenReason::BadSignature, "signature check failed"),
    };
    AuthError::invalid(reason, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::*;
    use crate::auth::Credential;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::EncodingKey;
    use serde_json::json;
    use serde_json::Value;
    use tokio::task::JoinSet;

    // ---- HS256, the cache, and the order of the checks ---------------------

    #[tokio::test]
    async fn hs256_good_token() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let exp = now() + 600;
        let token =
            hs256(json!({"sub": "alice", "exp": exp, "iat": now(), "extra": {"nested": [1, 2]}}));
        assert_eq!(
            auth.verify(&token).await.map(|i| (*i).clone()),
            Identity::new("alice".to_owned(), exp)
        );
    }

    #[tokio::test]
    async fn verified_tokens_are_cached_but_never_past_exp() {
        let mut s = settings(&[Algorithm::HS256]);
        s.leeway = 0;
        let auth = authenticator(s).await;
        let token = hs256(json!({"sub": "alice", "exp": now() + 600}));
        assert!(auth.verify(&token).await.is_ok());
        assert!(auth.verified.contains(&token), "a good token is remembered");
        // Pretend the cached entry outlived its token: the cache must not serve it.
        let stale = Identity::new("alice".into(), now() - 1).unwrap();
        auth.verified.remember(&token, Arc::new(stale), now());
        assert_eq!(auth.verify(&token).await, Err(AuthError::Expired));
        // Bad tokens are never remembered.
        // Change a character well inside the signature (the last one carries
        // padding bits, so changing it may not change the signature).
        let mut bytes = token.clone().into_bytes();
        let i = bytes.len() - 10;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).unwrap();
        assert!(auth.verify(&forged).await.is_err());
        assert!(!auth.verified.contains(&forged));
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
            Err(invalid(TokenReason::BadSignature))
        );
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
            Err(invalid(TokenReason::AlgNotAllowed))
        );
        let token = es256(EC1_PRIVATE, None, valid_claims());
        assert_eq!(
            auth.verify(&token).await,
            Err(invalid(TokenReason::AlgNotAllowed))
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
                matches!(auth.verify(token).await, Err(AuthError::Invalid { .. })),
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
            Err(invalid(TokenReason::BadSignature))
        );
        // A header with critical extensions paygate does not implement.
        let token = raw_token(
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            &valid_claims().to_string(),
            "",
        );
        assert_eq!(
            auth.verify(&resign_hs256(&token)).await,
            Err(invalid(TokenReason::Malformed))
        );
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
            Err(invalid(TokenReason::AlgNotAllowed))
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
            Err(invalid(TokenReason::BadSignature))
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
            Identity::new("alice".to_owned(), exp)
        );
        // An EC key cannot stand in for the RSA one.
        let token = es256(EC1_PRIVATE, None, valid_claims());
        assert_eq!(
            auth.verify(&token).await,
            Err(invalid(TokenReason::AlgNotAllowed))
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
            Err(invalid(TokenReason::BadSignature))
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
            Err(invalid(TokenReason::Malformed))
        );
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
            Err(invalid(TokenReason::BadSignature))
        );
        // An ES256 token naming the RSA key is refused outright.
        assert_eq!(
            auth.verify(&es256(EC1_PRIVATE, Some("r1"), valid_claims()))
                .await,
            Err(invalid(TokenReason::AlgNotAllowed))
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

    /// Fifty verifications of ES256 tokens whose kids nobody knows, at once.
    /// Forged kids need no valid signature: the key lookup fails first.
    fn flood_of_unknown_kids(
        auth: &Arc<Authenticator>,
        round: usize,
    ) -> JoinSet<Result<Arc<Identity>, AuthError>> {
        let claims = valid_claims().to_string();
        let mut set = JoinSet::new();
        for i in 0..50 {
            let auth = Arc::clone(auth);
            let header = format!(r#"{{"alg":"ES256","kid":"forged-{round}-{i}"}}"#);
            let token = raw_token(&header, &claims, "AAAA");
            set.spawn(async move { auth.verify(&token).await });
        }
        set
    }

    #[tokio::test]
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
        // On one thread the fifty verifications run in turn, each until it
        // waits on the fetch lock or on the fetch itself, so they overlap the
        // fetch without a slow provider (the parallel test below needs one).

        // Building the tokens by hand keeps each flood far shorter than the
        // cooldown, even in a slow debug build.
        let flood = |round| flood_of_unknown_kids(&auth, round);
        let results = flood(0).join_all().await;
        assert!(results
            .iter()
            .all(|r| *r == Err(invalid(TokenReason::UnknownKid))));
        assert_eq!(server.hits(), 2, "fifty misses share one fetch");

        // Within the cooldown, another flood fetches nothing.
        let results = flood(1).join_all().await;
        assert!(results
            .iter()
            .all(|r| *r == Err(invalid(TokenReason::UnknownKid))));
        assert_eq!(server.hits(), 2, "the cooldown holds");

        // Once it has passed (tokio's clock moved, not waited for), one more
        // fetch is allowed, and only one.
        advance_clock(cooldown).await;
        let results = flood(2).join_all().await;
        assert!(results.iter().all(|r| r.is_err()));
        assert_eq!(server.hits(), 3);

        // Known keys kept working throughout.
        assert!(auth
            .verify(&es256(EC1_PRIVATE, Some("k1"), valid_claims()))
            .await
            .is_ok());
    }

    /// The single fetch and the cooldown with the verifications on two
    /// threads at once. No clock is moved here (tokio pauses time only on a
    /// current-thread runtime); the cooldown's end is tested above.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parallel_flood_of_unknown_kids_shares_one_fetch_within_the_cooldown() {
        let server = JwksServer::start(jwk_set(&[jwk_ec("k1", EC1_X, EC1_Y)])).await;
        let auth = Arc::new(
            authenticator(JwtSettings {
                jwks_cooldown: Duration::from_secs(60),
                ..jwks_settings(server.url(), &[Algorithm::ES256])
            })
            .await,
        );
        assert_eq!(server.hits(), 1);
        // A slow provider, so that the verifications really overlap the fetch.
        server.set_delay(Duration::from_millis(200));

        let flood = |round| flood_of_unknown_kids(&auth, round);
        let results = flood(0).join_all().await;
        assert!(results
            .iter()
            .all(|r| *r == Err(invalid(TokenReason::UnknownKid))));
        assert_eq!(server.hits(), 2, "fifty misses share one fetch");

        let results = flood(1).join_all().await;
        assert!(results
            .iter()
            .all(|r| *r == Err(invalid(TokenReason::UnknownKid))));
        assert_eq!(server.hits(), 2, "the cooldown holds");

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
            Err(invalid(TokenReason::UnknownKid))
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
            Err(invalid(TokenReason::UnknownKid))
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
        // 1.3 s pass at once: the refresher's timer fires, and its fetch (real
        // loopback I/O) is waited for by the attempt count, not by the clock.
        advance_clock(Duration::from_millis(1300)).await;
        let jwks = Arc::clone(auth.jwks.as_ref().expect("jwks configured"));
        wait_until(|| jwks.snapshot().0 == 3).await;
        drop(jwks);
        // Anything else due by now (a second refresher) runs to its end.
        settle().await;
        assert_eq!(server.hits(), 3, "one periodic refresh");
        assert!(auth.verify(&token).await.is_ok());

        let key_set = Arc::downgrade(auth.jwks.as_ref().expect("jwks configured"));
        drop(auth);
        // The refresher holds only a weak reference, so the keys went with
        // the authenticator and it has nothing left to refresh.
        assert_eq!(key_set.strong_count(), 0, "nothing else holds the keys");
        advance_clock(Duration::from_millis(1300)).await;
        settle().await;
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

    // ---- the reason of every refusal -----------------------------------------

    /// Each refusal site gives its one word, and the detail says what an
    /// operator needs (both issuers, the alg, the kid) without the token.
    #[tokio::test]
    async fn every_refusal_names_its_reason() {
        let auth = authenticator(JwtSettings {
            issuer: Some("http://127.0.0.1:24000/".to_owned()),
            audience: Some("api".to_owned()),
            ..settings(&[Algorithm::HS256])
        })
        .await;
        let exp = now() + 600;
        let good =
            json!({"sub": "alice", "exp": exp, "iss": "http://127.0.0.1:24000/", "aud": "api"});
        let with = |change: Value| {
            let mut claims = good.clone();
            for (k, v) in change.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            hs256(claims)
        };
        // The signature's first character changes: all of its bits count
        // (the last character's low bits are base64 padding).
        let signed = with(json!({}));
        let at = signed.rfind('.').unwrap() + 1;
        let wrong = if signed[at..].starts_with('A') {
            "B"
        } else {
            "A"
        };
        let tampered = format!("{}{wrong}{}", &signed[..at], &signed[at + 1..]);
        let hs384 = sign(
            Algorithm::HS384,
            &EncodingKey::from_secret(SECRET),
            None,
            good.clone(),
        );
        let cases: Vec<(&str, String, TokenReason, &str)> = vec![
            (
                "garbage",
                "not-a-jwt".to_owned(),
                TokenReason::Malformed,
                "three",
            ),
            (
                "bad base64 header",
                "!!.e30.x".to_owned(),
                TokenReason::Malformed,
                "header",
            ),
            (
                "too large",
                "a".repeat(MAX_TOKEN_LEN + 1),
                TokenReason::Malformed,
                "16 KiB",
            ),
            (
                "duplicate claim",
                signed_raw(
                    r#"{"alg":"HS256"}"#,
                    &format!(r#"{{"sub":"a","sub":"b","exp":{exp}}}"#),
                ),
                TokenReason::Malformed,
                "twice",
            ),
            (
                "crit",
                signed_raw(r#"{"alg":"HS256","crit":[]}"#, &good.to_string()),
                TokenReason::Malformed,
                "crit",
            ),
            (
                "expired",
                with(json!({"exp": now() - 3600})),
                TokenReason::Expired,
                "",
            ),
            (
                "not yet valid",
                with(json!({"nbf": now() + 3600})),
                TokenReason::NotYetValid,
                "nbf=",
            ),
            (
                "bad signature",
                tampered,
                TokenReason::BadSignature,
                "does not verify",
            ),
            (
                "alg not allowed",
                hs384,
                TokenReason::AlgNotAllowed,
                "HS384",
            ),
            (
                "alg none",
                raw_token(r#"{"alg":"none"}"#, &good.to_string(), ""),
                TokenReason::AlgNotAllowed,
                "no algorithm",
            ),
            (
                "issuer without the slash",
                with(json!({"iss": "http://127.0.0.1:24000"})),
                TokenReason::IssuerMismatch,
                r#"expected="http://127.0.0.1:24000/" got="http://127.0.0.1:24000""#,
            ),
            (
                "no issuer",
                with(json!({"iss": null})),
                TokenReason::IssuerMismatch,
                "got=none",
            ),
            (
                "issuer not a string",
                with(json!({"iss": ["x"]})),
                TokenReason::IssuerMismatch,
                r#"got=["x"]"#,
            ),
            (
                "audience",
                with(json!({"aud": "web"})),
                TokenReason::AudienceMismatch,
                r#"expected="api" got="web""#,
            ),
            (
                "no user claim",
                with(json!({"sub": null})),
                TokenReason::UserClaimInvalid,
                "no user claim",
            ),
            (
                "user claim with a space",
                with(json!({"sub": "al ice"})),
                TokenReason::UserClaimInvalid,
                "visible ASCII",
            ),
            (
                "user claim an object",
                with(json!({"sub": {"id": 1}})),
                TokenReason::UserClaimInvalid,
                "string or integer",
            ),
        ];
        for (name, token, reason, detail) in cases {
            let error = auth.verify(&token).await.expect_err(name);
            assert_eq!(error.reason(), reason, "{name}: {error}");
            assert!(
                error.detail().contains(detail),
                "{name}: {:?}",
                error.detail()
            );
            assert!(
                !token.is_empty() && !error.detail().contains(&token),
                "{name}"
            );
        }
        assert_eq!(
            Credential::None.required().map(drop),
            Err(AuthError::Missing)
        );
        assert_eq!(
            Credential::None.required().unwrap_err().reason().as_str(),
            "missing"
        );
        assert_eq!(
            Credential::Ambiguous.required().unwrap_err().reason(),
            TokenReason::Malformed
        );
        // A cached token that expired since is `expired` too.
        let soon = with(json!({"exp": now() + 1}));
        assert!(auth.verify_at(&soon, now()).await.is_ok());
        assert_eq!(
            auth.verify_at(&soon, now() + 10)
                .await
                .unwrap_err()
                .reason(),
            TokenReason::Expired
        );
    }

    /// The kid a token names is in the log of an unknown kid (quoted, cut),
    /// and a kid naming a key of another type is `alg_not_allowed`.
    #[tokio::test]
    async fn unknown_and_mismatched_kids_are_named() {
        let server = JwksServer::start(jwk_set(&[jwk_ec("k1", EC1_X, EC1_Y)])).await;
        let auth = authenticator(JwtSettings {
            jwks_cooldown: Duration::ZERO,
            ..jwks_settings(server.url(), &[Algorithm::ES256, Algorithm::RS256])
        })
        .await;
        let unknown = auth
            .verify(&es256(EC2_PRIVATE, Some("k2\nforged"), valid_claims()))
            .await
            .unwrap_err();
        assert_eq!(unknown.reason(), TokenReason::UnknownKid);
        assert_eq!(
            unknown.detail(),
            r#"kid="k2\nforged" is not in the key set"#
        );
        let confused = raw_token(
            r#"{"alg":"RS256","kid":"k1"}"#,
            &valid_claims().to_string(),
            "AAAA",
        );
        let error = auth.verify(&confused).await.unwrap_err();
        assert_eq!(error.reason(), TokenReason::AlgNotAllowed, "{error}");
        assert!(error.detail().contains("RS256"), "{error}");
    }
}
