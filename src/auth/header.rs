//! paygate's reader of a token header: which algorithm, which key id, and
//! no critical extensions.
//!
//! The rules are stated on [`read_header`]; jsonwebtoken is not asked, so
//! no rule depends on its version. Runs before the signature is checked, so
//! everything it reads is untrusted and it must not allocate for an HS token.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};

use super::identity::{AuthError, TokenReason};
use super::token::with_b64_decoded;

/// The parts of a token header that decide how it is verified.
pub(super) struct TokenHeader {
    pub(super) alg: Algorithm,
    /// Kept only for asymmetric algorithms, the only ones that use it, so
    /// that an HS token's header costs no allocation.
    pub(super) kid: Option<String>,
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
pub(super) fn read_header(segment: &str) -> Result<TokenHeader, AuthError> {
    const MALFORMED: AuthError =
        AuthError::invalid(TokenReason::Malformed, "header is not a JWT header");
    with_b64_decoded(segment, |json| {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let raw = deserializer
            .deserialize_map(HeaderVisitor)
            .and_then(|raw| deserializer.end().map(|()| raw))
            .map_err(|_| MALFORMED)?;
        if raw.crit {
            return Err(AuthError::invalid(
                TokenReason::Malformed,
                "header has crit (no extension is supported)",
            ));
        }
        let alg = raw.alg.ok_or(MALFORMED)?.ok_or(AuthError::invalid(
            TokenReason::AlgNotAllowed,
            "alg names no algorithm paygate knows",
        ))?;
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

#[cfg(test)]
mod tests {
    use crate::auth::test_support::*;
    use jsonwebtoken::Algorithm;

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
                    Err(invalid(TokenReason::AlgNotAllowed)),
                    "{alg}"
                );
            }
        }
        let token = raw_token(r#"{"typ":"JWT"}"#, &claims, "");
        assert_eq!(
            auth.verify(&token).await,
            Err(invalid(TokenReason::Malformed))
        );
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
                Err(invalid(TokenReason::Malformed)),
                "{crit}"
            );
        }
        // An escaped name is the same name.
        let header = r#"{"alg":"HS256","\u0063rit":null}"#;
        assert_eq!(
            auth.verify(&signed_raw(header, &claims)).await,
            Err(invalid(TokenReason::Malformed))
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
                Err(invalid(TokenReason::Malformed)),
                "{bad}"
            );
        }
        for unknown in ["hs256", "HS256 ", "none", ""] {
            let header = format!(r#"{{"alg":"{unknown}"}}"#);
            assert_eq!(
                auth.verify(&signed_raw(&header, &claims)).await,
                Err(invalid(TokenReason::AlgNotAllowed)),
                "{unknown}"
            );
        }
    }
}
