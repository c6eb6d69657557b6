//! JSON Web Key Sets: parses an identity provider's published keys (RSA, EC
//! P-256/P-384, OKP Ed25519) into ready-to-use verification keys, and keeps
//! them fresh.
//!
//! The request path only ever takes a snapshot of the current key set (a
//! cloned `Arc`, no lock held across an await). It waits on the network only
//! when a token names a key that is not in the set, and then under two rules
//! that keep a stream of forged key ids from turning paygate into a load
//! generator against the identity provider: there is at most one fetch in
//! flight (concurrent misses wait for it instead of starting their own), and
//! at most one miss-triggered fetch per cooldown. A failed fetch keeps the
//! keys that were there before.
//!
//! The key set's URL is `jwt.jwks_url`, or the `jwks_uri` that OpenID Connect
//! discovery found for `jwt.issuer` (`discovery.rs`); a discovered URL is
//! looked up again with every periodic refresh, so a provider that moves its
//! keys is followed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

use super::discovery;
use super::settings::JwtSettings;
use crate::outbound::OutboundClient;

/// Upper bound on a JWKS document. Real ones are a few KiB (a handful of RSA
/// keys); anything far larger is a misconfigured URL or a hostile server.
const MAX_JWKS_BODY: usize = 1024 * 1024;

/// The set of keys from one successful fetch, immutable once built.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    /// Every usable key, in document order.
    keys: Vec<JwksKey>,
    /// Position in `keys` of each key that has a `kid`, so the common case
    /// (token names its key) is one hash lookup. When a document repeats a
    /// `kid`, the first key wins, as the document order is the provider's.
    by_kid: HashMap<String, usize>,
}

/// One verification key taken from a JWK.
#[derive(Debug)]
struct JwksKey {
    kid: Option<String>,
    /// What kind of key this is, which decides the token algorithms it may
    /// verify. This is what makes key confusion impossible: an RSA key is
    /// never offered to an ES256 token, and no JWKS key is ever used for
    /// HMAC.
    kind: KeyKind,
    /// The JWK's own `alg`, when it names one: the key is then restricted to
    /// exactly that algorithm.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

/// The outcome of looking up the key for a token.
pub(crate) enum Lookup<'a> {
    /// Verify the token with this key.
    Found(&'a DecodingKey),
    /// The token's `kid` names a key, but of another type or for another
    /// algorithm than the token's header claims: the token is invalid, and
    /// refetching cannot change that.
    WrongAlgorithm,
    /// No key fits: the provider may have rotated, so a refresh may help.
    NotFound,
}

impl KeySet {
    /// Parses a JWKS document. Keys that paygate cannot use (encryption keys,
    /// symmetric keys, unknown key types or curves, malformed members) are
    /// skipped with a warning rather than failing the whole set, so that one
    /// exotic key published next to the real ones does not lock everybody
    /// out. The document itself must be a JSON object with a `keys` array.
    pub(crate) fn parse(body: &[u8]) -> Result<KeySet, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;

        let mut set = KeySet::default();
        for (index, value) in document.keys.into_iter().enumerate() {
            match usable_key(value) {
                Ok(key) => {
                    if let Some(kid) = &key.kid {
                        set.by_kid.entry(kid.clone()).or_insert(set.keys.len());
                    }
                    set.keys.push(key);
                }
                Err(reason) => {
                    tracing::warn!(index, reason, "skipping JWKS key that paygate cannot use")
                }
            }
        }
        Ok(set)
    }

    /// How many usable keys the set holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Finds the key for a token signed with `alg` and naming `kid`.
    ///
    /// A token that names a key gets that key or nothing, except that a key
    /// published without a `kid` is used when it is the only key that fits
    /// the algorithm (some providers publish a single key without an id but
    /// still stamp one into their tokens). A token without a `kid` gets the
    /// only key that fits its algorithm, else the only fitting key that has
    /// no `kid`; when several keys fit it is ambiguous and gets nothing.
    pub(crate) fn find(&self, alg: Algorithm, kid: Option<&str>) -> Lookup<'_> {
        if let Some(kid) = kid {
            if let Some(&index) = self.by_kid.get(kid) {
                let key = &self.keys[index];
                return if key.fits(alg) {
                    Lookup::Found(&key.key)
                } else {
                    Lookup::WrongAlgorithm
                };
            }
        }

        let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
        let only_fitting = match (fitting.next(), fitting.next()) {
            (Some(key), None) => Some(key),
            _ => None,
        };
        if let Some(key) = only_fitting {
            if kid.is_none() || key.kid.is_none() {
                return Lookup::Found(&key.key);
            }
            return Lookup::NotFound;
        }
        if kid.is_none() {
            let mut anonymous = self.keys.iter().filter(|k| k.kid.is_none() && k.fits(alg));
            if let (Some(key), None) = (anonymous.next(), anonymous.next()) {
                return Lookup::Found(&key.key);
            }
        }
        Lookup::NotFound
    }
}

impl JwksKey {
    /// Whether this key may verify a token signed with `alg`.
    fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|own| own != alg) {
            return false;
        }
        match self.kind {
            KeyKind::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyKind::EcP256 => alg == Algorithm::ES256,
            KeyKind::EcP384 => alg == Algorithm::ES384,
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
        }
    }
}

/// Turns one JWK into a verification key, or says why it is not one.
fn usable_key(value: serde_json::Value) -> Result<JwksKey, &'static str> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "unsupported or malformed JWK")?;
    let common = &jwk.common;

    if matches!(common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("key is for encryption (use=enc)");
    }
    if let Some(ops) = &common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return Err("key_ops does not include verify");
        }
    }

    let alg = match common.key_algorithm {
        None => None,
        Some(key_alg) => Some(signing_algorithm(key_alg).ok_or("alg is not a signing algorithm")?),
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            _ => return Err("unsupported EC curve"),
        },
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return Err("unsupported OKP curve"),
        },
        // A symmetric key has no business in a published key set; using it
        // would let anybody who can read the JWKS mint tokens.
        AlgorithmParameters::OctetKey(_) => return Err("symmetric (oct) keys are never used"),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "key material is not valid base64url")?;
    let key = JwksKey {
        kid: common.key_id.clone(),
        kind,
        alg,
        key,
    };
    if let Some(alg) = key.alg {
        if !key.fits(alg) {
            return Err("alg does not match the key type");
        }
    }
    Ok(key)
}

/// The JWT signing algorithm a JWK's `alg` names, if it names one.
fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A JWKS endpoint and the keys last fetched from it.
pub(crate) struct Jwks {
    /// The issuer whose discovery document names the key set's URL; `None`
    /// when the URL was configured (`jwt.jwks_url`).
    discovered_for: Option<String>,
    http: OutboundClient,
    /// Minimum time between two fetches triggered by unknown key ids.
    cooldown: Duration,
    /// The current keys. Readers clone the `Arc` and drop the lock at once,
    /// so a refresh never waits on a verification and vice versa.
    keys: RwLock<Arc<KeySet>>,
    /// Counts finished fetch attempts, successful or not. A miss remembers
    /// the count it saw next to the keys; if the count has moved by the time
    /// it may fetch, another fetch finished meanwhile and its result is the
    /// answer, so the miss does not fetch again.
    attempts: AtomicU64,
    /// Held for the whole of a fetch, so there is one fetch at a time; it is
    /// an async mutex because it is held across the HTTP call. It guards
    /// what only fetchers touch: the URL and the time of the last
    /// miss-triggered fetch.
    fetch: tokio::sync::Mutex<FetchState>,
}

struct FetchState {
    /// Where the keys are fetched from; a re-discovery may change it.
    url: String,
    last_miss_fetch: Option<Instant>,
}

impl Jwks {
    /// The key set `settings` name, with its keys fetched once; `None` when
    /// the keys are static only (no `jwks_url`, no discovery).
    ///
    /// With discovery, the discovery document is read first, and any failure
    /// there (unreachable, an untrusted certificate, another issuer) is an
    /// error: without it paygate does not know where the keys are. A failed
    /// fetch of the keys themselves is only logged, as for a configured
    /// `jwks_url`: the refresher tries again, and tokens that need those keys
    /// are invalid until then.
    pub(crate) async fn start(
        settings: &JwtSettings,
        http: OutboundClient,
    ) -> Result<Option<Arc<Jwks>>, String> {
        let (url, discovered_for) = match (&settings.jwks_url, settings.discovery) {
            (Some(url), _) => (url.clone(), None),
            (None, true) => {
                let issuer = settings
                    .issuer
                    .as_deref()
                    .ok_or("jwt.discovery: needs jwt.issuer")?;
                if issuer.starts_with("http://") {
                    tracing::warn!(%issuer, "jwt.issuer uses plain http: the discovery document and the keys can be tampered with in transit");
                }
                let found = discovery::discover(issuer, &http).await?;
                tracing::info!(%issuer, jwks_uri = %found.jwks_uri, "OpenID Connect discovery: taking the keys from the provider's jwks_uri");
                (found.jwks_uri, Some(issuer.to_owned()))
            }
            (None, false) => return Ok(None),
        };
        if url.starts_with("http://") && discovered_for.is_none() {
            tracing::warn!(%url, "jwt.jwks_url uses plain http: the keys can be tampered with in transit");
        }
        let mut jwks = Jwks::new(url.clone(), http, settings.jwks_cooldown);
        jwks.discovered_for = discovered_for;
        let jwks = Arc::new(jwks);
        if jwks.load().await.is_err() {
            // The failure itself is logged by the fetch.
            tracing::warn!(%url, "no JWKS keys at start; tokens signed with them are invalid until a refresh succeeds");
        }
        Ok(Some(jwks))
    }

    /// Creates the fetcher for a configured URL with an empty key set; call
    /// [`Jwks::refresh`] to load the keys.
    pub(crate) fn new(url: String, http: OutboundClient, cooldown: Duration) -> Self {
        Jwks {
            discovered_for: None,
            http,
            cooldown,
            keys: RwLock::new(Arc::new(KeySet::default())),
            attempts: AtomicU64::new(0),
            fetch: tokio::sync::Mutex::new(FetchState {
                url,
                last_miss_fetch: None,
            }),
        }
    }

    /// The current keys, with the attempt count to hand back to
    /// [`Jwks::refresh_on_miss`] if they do not hold the wanted key.
    pub(crate) fn snapshot(&self) -> (u64, Arc<KeySet>) {
        // The count is read before the keys: a fetch stores its keys before
        // bumping the count, so a reader can pair old keys with a new count
        // (harmless: the miss then just re-reads) but never new keys with an
        // old count that would trigger a needless fetch.
        let attempts = self.attempts.load(Ordering::Acquire);
        (attempts, self.current())
    }

    /// The current keys.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        // The lock is only ever held to clone or replace an `Arc`, which
        // cannot panic, so a poisoned lock still holds a consistent value.
        Arc::clone(
            &self
                .keys
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Fetches the keys now (the periodic refresher), waiting for a fetch
    /// already in flight to finish first; a discovered key set's URL is
    /// looked up again before. Returns how many usable keys the new set
    /// holds; on error the previous keys stay in place.
    pub(crate) async fn refresh(&self) -> Result<usize, String> {
        let mut state = self.fetch.lock().await;
        if let Some(issuer) = &self.discovered_for {
            self.rediscover(issuer, &mut state).await;
        }
        self.fetch_and_store(&state.url).await
    }

    /// Fetches the keys from the current URL, without re-discovery (start-up,
    /// right after discovery).
    async fn load(&self) -> Result<usize, String> {
        let state = self.fetch.lock().await;
        self.fetch_and_store(&state.url).await
    }

    /// Reads the issuer's discovery document again and follows a changed
    /// `jwks_uri`. A failure keeps the URL in use: the keys there are still
    /// the best guess, and the failure is logged for the operator.
    async fn rediscover(&self, issuer: &str, state: &mut FetchState) {
        match discovery::discover(issuer, &self.http).await {
            Ok(found) if found.jwks_uri != state.url => {
                tracing::info!(%issuer, old = %state.url, new = %found.jwks_uri, "the identity provider moved its keys; following its jwks_uri");
                state.url = found.jwks_uri;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%issuer, %error, url = %state.url, "OpenID Connect re-discovery failed; keeping the key set URL");
            }
        }
    }

    /// Called when no key fits a token. Fetches the keys again unless a
    /// fetch finished since `seen_attempts` was read (then its result is
    /// used) or a miss already triggered a fetch within the cooldown; then
    /// returns the keys to retry with.
    pub(crate) async fn refresh_on_miss(&self, seen_attempts: u64) -> Arc<KeySet> {
        // Waiting here is what makes concurrent misses share one fetch: the
        // first one fetches while holding the lock, the others find the
        // attempt count moved when they get it.
        let mut state = self.fetch.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen_attempts {
            return self.current();
        }
        let now = Instant::now();
        if let Some(last) = state.last_miss_fetch {
            if now.saturating_duration_since(last) < self.cooldown {
                tracing::debug!(url = %state.url, "unknown JWT key id; JWKS refetch suppressed by cooldown");
                return self.current();
            }
        }
        state.last_miss_fetch = Some(now);
        tracing::info!(url = %state.url, "unknown JWT key id; refetching JWKS");
        // A failure is already logged, and the old keys are what the caller
        // retries with either way.
        let _ = self.fetch_and_store(&state.url).await;
        self.current()
    }

    /// One fetch from `url`. The caller holds the fetch lock.
    async fn fetch_and_store(&self, url: &str) -> Result<usize, String> {
        let result = self.fetch_once(url).await;
        crate::metrics::jwks_refresh(result.is_ok());
        match &result {
            Ok(set) => {
                tracing::debug!(%url, keys = set.len(), "JWKS refreshed");
            }
            Err(error) => {
                tracing::warn!(%url, %error, "JWKS refresh failed; keeping the previous keys");
            }
        }
        let result = result.map(|set| {
            let count = set.len();
            *self
                .keys
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(set);
            count
        });
        self.attempts.fetch_add(1, Ordering::Release);
        result
    }

    async fn fetch_once(&self, url: &str) -> Result<KeySet, String> {
        let response = self
            .http
            .get(url, &[], MAX_JWKS_BODY)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status.is_success() {
            return Err(format!("JWKS endpoint answered {}", response.status));
        }
        let set = KeySet::parse(&response.body)?;
        // A set with no usable key would reject every token. Far more often
        // that is a broken deployment of the provider than a deliberate
        // revocation of all keys, so it is treated as a failed fetch and the
        // previous keys stay.
        if set.is_empty() {
            return Err("JWK set holds no usable signing key".to_owned());
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Public parts of the shared throwaway test keys, as a provider would
    // publish them.
    use crate::auth::test_support::{
        advance_clock, settings, JwksServer, EC1_X as EC_X, EC1_Y as EC_Y, ED_X, RSA_N,
    };
    use paygate_testkit::{Reply, TestServer};
    use serde_json::json;

    fn rsa(kid: Option<&str>) -> serde_json::Value {
        let mut key = json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "use": "sig"});
        if let Some(kid) = kid {
            key["kid"] = json!(kid);
        }
        key
    }

    fn ec(kid: &str, crv: &str) -> serde_json::Value {
        json!({"kty": "EC", "crv": crv, "x": EC_X, "y": EC_Y, "kid": kid})
    }

    fn parse(keys: serde_json::Value) -> KeySet {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes()).expect("parse")
    }

    #[test]
    fn parses_rsa_ec_and_okp_keys_and_skips_unusable_ones() {
        // Parsing does not check that coordinates lie on the named curve (a
        // bad point fails at verification), so the P-256 coordinates stand
        // in for a P-384 key here.
        let set = parse(json!([
            rsa(Some("r1")),
            ec("e256", "P-256"),
            ec("e384", "P-384"),
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"},
            // Unusable: encryption key, symmetric key, unknown kty, P-521,
            // X25519, a key whose ops exclude verify, and an RSA key whose
            // alg names an EC algorithm.
            {"kty": "RSA", "n": RSA_N, "e": "AQAB", "use": "enc", "kid": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
            {"kty": "XYZ", "kid": "xyz"},
            ec("e521", "P-521"),
            {"kty": "OKP", "crv": "X25519", "x": ED_X, "kid": "x"},
            {"kty": "RSA", "n": RSA_N, "e": "AQAB", "key_ops": ["encrypt"], "kid": "ops"},
            {"kty": "RSA", "n": RSA_N, "e": "AQAB", "alg": "ES256", "kid": "mismatch"},
        ]));
        assert_eq!(set.len(), 4);
        assert!(matches!(
            set.find(Algorithm::RS256, Some("r1")),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.find(Algorithm::PS512, Some("r1")),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.find(Algorithm::ES256, Some("e256")),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.find(Algorithm::ES384, Some("e384")),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.find(Algorithm::EdDSA, Some("ed")),
            Lookup::Found(_)
        ));
        for kid in ["enc", "oct", "xyz", "e521", "x", "ops", "mismatch"] {
            assert!(
                matches!(set.find(Algorithm::RS256, Some(kid)), Lookup::NotFound),
                "{kid}"
            );
        }
    }

    #[test]
    fn a_kid_never_lends_its_key_to_another_algorithm() {
        let set = parse(json!([rsa(Some("r1")), ec("e256", "P-256")]));
        assert!(matches!(
            set.find(Algorithm::ES256, Some("r1")),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            set.find(Algorithm::HS256, Some("r1")),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            set.find(Algorithm::ES384, Some("e256")),
            Lookup::WrongAlgorithm
        ));
        // A JWK `alg` restricts the key further than its type does.
        let mut restricted = rsa(Some("r2"));
        restricted["alg"] = json!("RS256");
        let set = parse(json!([restricted]));
        assert!(matches!(
            set.find(Algorithm::RS256, Some("r2")),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.find(Algorithm::PS256, Some("r2")),
            Lookup::WrongAlgorithm
        ));
    }

    #[test]
    fn keys_without_kid() {
        // A token without kid gets the only fitting key, whatever its kid.
        let set = parse(json!([rsa(Some("r1")), ec("e256", "P-256")]));
        assert!(matches!(set.find(Algorithm::RS256, None), Lookup::Found(_)));
        // Several fitting keys: only a single kid-less one can be chosen.
        let set = parse(json!([rsa(Some("r1")), rsa(None)]));
        assert!(matches!(set.find(Algorithm::RS256, None), Lookup::Found(_)));
        let set = parse(json!([rsa(Some("r1")), rsa(Some("r2"))]));
        assert!(matches!(set.find(Algorithm::RS256, None), Lookup::NotFound));
        // A token with an unknown kid may use a kid-less key only when it is
        // the only key for the algorithm.
        let set = parse(json!([rsa(None)]));
        assert!(matches!(
            set.find(Algorithm::RS256, Some("zz")),
            Lookup::Found(_)
        ));
        let set = parse(json!([rsa(None), rsa(Some("r1"))]));
        assert!(matches!(
            set.find(Algorithm::RS256, Some("zz")),
            Lookup::NotFound
        ));
        let set = parse(json!([rsa(Some("r1"))]));
        assert!(matches!(
            set.find(Algorithm::RS256, Some("zz")),
            Lookup::NotFound
        ));
    }

    #[test]
    fn rejects_documents_that_are_not_key_sets() {
        assert!(KeySet::parse(b"not json").is_err());
        assert!(KeySet::parse(b"{\"keys\": 3}").is_err());
        assert!(KeySet::parse(b"[]").is_err());
    }

    fn jwks(keys: serde_json::Value) -> String {
        json!({ "keys": keys }).to_string()
    }

    #[tokio::test]
    async fn failed_refresh_keeps_old_keys() {
        let server = JwksServer::start(jwks(json!([rsa(Some("r1"))]))).await;
        let jwks_client = Jwks::new(
            server.url(),
            OutboundClient::for_tests(Duration::from_secs(5)),
            Duration::from_secs(30),
        );
        assert_eq!(jwks_client.refresh().await, Ok(1));

        server.set_status(500);
        assert!(jwks_client.refresh().await.is_err());
        assert!(matches!(
            jwks_client.current().find(Algorithm::RS256, Some("r1")),
            Lookup::Found(_)
        ));

        // A well-formed set without one usable key counts as a failure too.
        server.set_status(200);
        server.set_body(jwks(json!([{"kty": "oct", "k": "c2VjcmV0"}])));
        assert!(jwks_client.refresh().await.is_err());
        server.set_body("garbage".to_owned());
        assert!(jwks_client.refresh().await.is_err());
        assert!(matches!(
            jwks_client.current().find(Algorithm::RS256, Some("r1")),
            Lookup::Found(_)
        ));
        assert_eq!(server.hits(), 4);
    }

    /// A provider on loopback publishing its discovery document (issuer: its
    /// own URL) and two key sets, `/keys1` (kid `r1`) and `/keys2` (`r2`);
    /// the document names `/keys1`.
    async fn provider() -> (TestServer, String) {
        let server = TestServer::routes([
            (
                "GET",
                "/keys1",
                Reply::new(200).body(jwks(json!([rsa(Some("r1"))]))),
            ),
            (
                "GET",
                "/keys2",
                Reply::new(200).body(jwks(json!([rsa(Some("r2"))]))),
            ),
        ])
        .await;
        let issuer = server.url();
        publish(&server, &issuer, "/keys1");
        (server, issuer)
    }

    fn publish(server: &TestServer, issuer: &str, keys: &str) {
        let document = json!({"issuer": issuer, "jwks_uri": format!("{}{keys}", server.url())});
        server.route(
            "GET",
            "/.well-known/openid-configuration",
            Reply::new(200).body(document.to_string()),
        );
    }

    fn discovery_settings(issuer: &str) -> JwtSettings {
        JwtSettings {
            secret: None,
            discovery: true,
            issuer: Some(issuer.to_owned()),
            ..settings(&[Algorithm::RS256])
        }
    }

    fn has(jwks: &Jwks, kid: &str) -> bool {
        matches!(
            jwks.current().find(Algorithm::RS256, Some(kid)),
            Lookup::Found(_)
        )
    }

    #[tokio::test]
    async fn discovery_finds_the_keys_and_refresh_follows_a_moved_jwks_uri() {
        let (server, issuer) = provider().await;
        let http = OutboundClient::for_tests(Duration::from_secs(5));
        let jwks = Jwks::start(&discovery_settings(&issuer), http)
            .await
            .expect("discovery")
            .expect("a key set");
        assert!(has(&jwks, "r1"));

        publish(&server, &issuer, "/keys2");
        assert_eq!(jwks.refresh().await, Ok(1));
        assert!(has(&jwks, "r2") && !has(&jwks, "r1"));

        // A failed re-discovery keeps the URL in use: the keys still refresh.
        server.route("GET", "/.well-known/openid-configuration", Reply::new(503));
        let before = server.requests().len();
        assert_eq!(jwks.refresh().await, Ok(1));
        let paths: Vec<String> = server.requests()[before..]
            .iter()
            .map(|seen| seen.path().to_owned())
            .collect();
        assert_eq!(paths, ["/.well-known/openid-configuration", "/keys2"]);
        assert!(has(&jwks, "r2"));

        // An unknown kid refetches the keys, not the discovery document.
        let before = server.requests().len();
        let (seen, _) = jwks.snapshot();
        jwks.refresh_on_miss(seen).await;
        let paths: Vec<String> = server.requests()[before..]
            .iter()
            .map(|seen| seen.path().to_owned())
            .collect();
        assert_eq!(paths, ["/keys2"]);
    }

    #[tokio::test]
    async fn discovery_failures_at_start_are_errors_that_say_why() {
        let (server, issuer) = provider().await;
        let http = || OutboundClient::for_tests(Duration::from_secs(5));

        // The document speaks for the issuer without the trailing slash.
        let slash = format!("{issuer}/");
        let err = Jwks::start(&discovery_settings(&slash), http())
            .await
            .err()
            .expect("issuer mismatch");
        assert!(
            err.contains(&format!(
                "the provider says issuer {issuer:?} but jwt.issuer is {slash:?}"
            )),
            "{err}"
        );

        server.route("GET", "/.well-known/openid-configuration", Reply::new(404));
        let err = Jwks::start(&discovery_settings(&issuer), http())
            .await
            .err()
            .expect("no document");
        assert!(
            err.starts_with("jwt.discovery:") && err.contains("404"),
            "{err}"
        );

        // Nothing listens on the port of a dropped server.
        drop(server);
        let err = Jwks::start(&discovery_settings(&issuer), http())
            .await
            .err()
            .expect("unreachable");
        assert!(
            err.starts_with("jwt.discovery: cannot fetch")
                && err.contains("/.well-known/openid-configuration"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn misses_are_rate_limited_by_the_cooldown() {
        let server = JwksServer::start(jwks(json!([rsa(Some("r1"))]))).await;
        let jwks_client = Jwks::new(
            server.url(),
            OutboundClient::for_tests(Duration::from_secs(5)),
            Duration::from_millis(300),
        );
        let (seen, _) = jwks_client.snapshot();
        jwks_client.refresh_on_miss(seen).await;
        assert_eq!(server.hits(), 1);

        // Within the cooldown, a miss that saw the latest keys does not fetch.
        let (seen, _) = jwks_client.snapshot();
        jwks_client.refresh_on_miss(seen).await;
        assert_eq!(server.hits(), 1);

        // The cooldown passes without waiting for it.
        advance_clock(Duration::from_millis(350)).await;
        let (seen, _) = jwks_client.snapshot();
        jwks_client.refresh_on_miss(seen).await;
        assert_eq!(server.hits(), 2);
    }
}
