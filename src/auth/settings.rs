//! The [jwt] settings as the config module compiles them ([`JwtSettings`]),
//! and the static key material they yield: one entry per allowed algorithm,
//! with the key its family may be checked with.
//!
//! Built once, at start-up; nothing here runs per request or does I/O.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

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
    /// Find the key set through OpenID Connect discovery: the `jwks_uri` of
    /// `{issuer}/.well-known/openid-configuration` (see `discovery.rs`).
    /// The config module only sets it with an issuer and without `jwks_url`.
    pub discovery: bool,
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
            .field("discovery", &self.discovery)
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

/// What verifying a token of one algorithm needs, prepared once.
pub(super) struct AlgorithmEntry {
    pub(super) alg: Algorithm,
    /// The secret for HS*, the static public key of this family for the
    /// others (None when the keys come from the JWKS only).
    pub(super) static_key: Option<DecodingKey>,
}

/// The static key material of `settings`: one entry per allowed algorithm
/// (duplicates dropped, allowlist order kept), HS* with the secret, the
/// others with the configured public key of their family, or with none when
/// the JWKS is to provide it. Err when the allowlist is empty or names an
/// algorithm no configured key can check.
pub(super) fn static_keys(settings: &JwtSettings) -> Result<Vec<AlgorithmEntry>, String> {
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
            if key.is_none() && settings.jwks_url.is_none() && !settings.discovery {
                return Err(format!(
                    "jwt.algorithms: {alg:?} is allowed but neither a public key of that type \
                     (public_key_file) nor jwks_url (nor discovery) is configured"
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
    Ok(algorithms)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::*;
    use crate::auth::Authenticator;
    use crate::outbound::OutboundClient;

    #[tokio::test]
    async fn new_refuses_broken_static_key_settings() {
        let http = || OutboundClient::for_tests(Duration::from_secs(1));
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

    #[test]
    fn debug_output_redacts_the_secret() {
        let text = format!("{:?}", settings(&[Algorithm::HS256]));
        assert!(!text.contains("reasonable"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}
