//! `paygate token`: mints an HS* token with the configured secret, for
//! trying a deployment out.
//!
//! Never on the request path; the only writer of tokens in paygate.

use std::time::Duration;

use jsonwebtoken::{AlgorithmFamily, EncodingKey, Header};

use super::identity::{is_valid_user_id, MAX_USER_ID_LEN};
use super::settings::JwtSettings;
use crate::clock::unix_now;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::*;
    use jsonwebtoken::Algorithm;

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
