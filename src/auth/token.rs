//! A token's compact form: the three base64url parts of a JWS, and how a
//! part is decoded without touching the heap.
//!
//! Structure only: what the parts must say is for `header.rs` and
//! `claims.rs`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine};

use super::identity::{AuthError, TokenReason};

/// The three parts of a compact JWS (`header.payload.signature`, base64url
/// without padding), still encoded.
pub(super) struct TokenParts<'t> {
    pub(super) header: &'t str,
    pub(super) payload: &'t str,
    pub(super) signature: &'t str,
    /// `header.payload`: what the signature covers.
    pub(super) signed: &'t str,
}

impl<'t> TokenParts<'t> {
    /// Exactly two dots, or the token is malformed. The parts may be empty
    /// here; an empty one fails to decode or to verify later.
    pub(super) fn split(token: &'t str) -> Result<TokenParts<'t>, AuthError> {
        const MALFORMED: AuthError =
            AuthError::invalid(TokenReason::Malformed, "not three dot-separated parts");
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

/// Calls `f` with the base64url-decoded `segment`, or returns None when it
/// is not valid base64url. JWT segments are small, so they are decoded into
/// a stack buffer, which keeps the hot path free of a heap allocation; an
/// unusually large one (a header carrying a certificate chain) falls back to
/// the heap.
pub(super) fn with_b64_decoded<R>(segment: &str, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
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

#[cfg(test)]
mod tests {
    use crate::auth::test_support::*;
    use crate::auth::AuthError;
    use jsonwebtoken::Algorithm;

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
                matches!(auth.verify(&bad).await, Err(AuthError::Invalid { .. })),
                "{bad}"
            );
        }
    }
}
