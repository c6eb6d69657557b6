//! paygate's reader of a token's claims: the user id, `exp`, `nbf`, `iss`
//! and `aud`, each registered claim at most once.
//!
//! The rules are stated on [`read_claims`]. It runs only on a payload whose
//! signature was verified, reads the clock from its caller (`now`), and
//! skips every value it does not check without building it.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::identity::{is_valid_user_id, loggable, AuthError, Identity, TokenReason};
use super::settings::JwtSettings;
use super::token::with_b64_decoded;

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
pub(super) fn read_claims(
    segment: &str,
    settings: &JwtSettings,
    now: i64,
) -> Result<Identity, AuthError> {
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
    .ok_or(AuthError::invalid(
        TokenReason::Malformed,
        "payload is not base64url",
    ))?
    .map_err(|_| AuthError::invalid(TokenReason::Malformed, "payload is not a JSON object"))?;

    if found.duplicate {
        return Err(AuthError::invalid(
            TokenReason::Malformed,
            "a registered or the user claim appears twice",
        ));
    }
    let user_id = found
        .user
        .ok_or(AuthError::invalid(
            TokenReason::UserClaimInvalid,
            "no user claim",
        ))?
        .into_user_id()
        .map_err(|detail| AuthError::invalid(TokenReason::UserClaimInvalid, detail))?;
    let expires_at = found
        .exp
        .ok_or(AuthError::invalid(TokenReason::Malformed, "no exp"))?
        .numeric_date()
        .ok_or(AuthError::invalid(
            TokenReason::Malformed,
            "exp is not a NumericDate",
        ))?;
    let leeway = i64::try_from(settings.leeway).unwrap_or(i64::MAX);
    if let Some(nbf) = found.nbf {
        let nbf = nbf.numeric_date().ok_or(AuthError::invalid(
            TokenReason::Malformed,
            "nbf is not a NumericDate",
        ))?;
        if nbf > now.saturating_add(leeway) {
            return Err(AuthError::invalid_with(
                TokenReason::NotYetValid,
                format!("nbf={nbf} now={now} leeway={leeway}s"),
            ));
        }
    }
    if let Some(expected) = settings.issuer.as_deref() {
        if !matches!(found.iss, Some(ClaimValue::Str { matches: true, .. })) {
            return Err(mismatch(
                TokenReason::IssuerMismatch,
                segment,
                "iss",
                expected,
            ));
        }
    }
    if let Some(expected) = settings.audience.as_deref() {
        if !matches!(
            found.aud,
            Some(ClaimValue::Str { matches: true, .. } | ClaimValue::Strings { matches: true })
        ) {
            return Err(mismatch(
                TokenReason::AudienceMismatch,
                segment,
                "aud",
                expected,
            ));
        }
    }
    if is_expired(expires_at, now, settings.leeway) {
        return Err(AuthError::Expired);
    }
    Identity::new(user_id, expires_at)
}

/// The refusal of a claim that is not the configured value, with both values
/// for the log (`expected="…" got="…"`; issuers and audiences are no
/// secrets, and a one-character difference such as a trailing `/` is what
/// the operator needs to see). The claims reader compares without keeping
/// the token's value, so it is read again here, on the refusal path only.
fn mismatch(reason: TokenReason, segment: &str, claim: &str, expected: &str) -> AuthError {
    let got = with_b64_decoded(segment, |json| {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json)
            .ok()
            .and_then(|mut claims| claims.remove(claim))
    })
    .flatten();
    let got = match got {
        None => "none".to_string(),
        Some(serde_json::Value::String(text)) => loggable(&text),
        // Compact JSON is already escaped; only its length needs a bound.
        Some(other) => {
            let text = other.to_string();
            match text.char_indices().nth(100) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text,
            }
        }
    };
    AuthError::invalid_with(reason, format!("expected={} got={got}", loggable(expected)))
}

/// Whether a token with this `exp` is past it at `now`, allowing `leeway`
/// seconds of clock skew. The one definition, for fresh and cached tokens.
pub(super) fn is_expired(exp: i64, now: i64, leeway: u64) -> bool {
    exp.saturating_add(i64::try_from(leeway).unwrap_or(i64::MAX)) < now
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
    use crate::auth::test_support::*;
    use crate::auth::{AuthError, Identity, JwtSettings};
    use jsonwebtoken::Algorithm;
    use serde_json::{json, Value};

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
                Identity::new(expected.to_owned(), exp),
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
            Err(invalid(TokenReason::UserClaimInvalid))
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
                matches!(auth.verify(&token).await, Err(AuthError::Invalid { .. })),
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
            Err(invalid(TokenReason::Malformed))
        );
    }

    #[tokio::test]
    async fn missing_exp_is_invalid() {
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let token = hs256(json!({"sub": "alice"}));
        assert_eq!(
            auth.verify(&token).await,
            Err(invalid(TokenReason::Malformed))
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
                Err(invalid(TokenReason::Malformed)),
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
            Identity::new("alice".to_owned(), exp)
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
            Err(invalid(TokenReason::NotYetValid))
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
            Err(invalid(TokenReason::IssuerMismatch))
        );
        let missing = hs256(json!({"sub": "alice", "exp": exp}));
        assert_eq!(
            auth.verify(&missing).await,
            Err(invalid(TokenReason::IssuerMismatch))
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
            Err(invalid(TokenReason::AudienceMismatch))
        );
        let missing = hs256(json!({"sub": "alice", "exp": exp}));
        assert_eq!(
            auth.verify(&missing).await,
            Err(invalid(TokenReason::AudienceMismatch))
        );

        // Without a configured audience, a token's `aud` is not held against it.
        let auth = authenticator(settings(&[Algorithm::HS256])).await;
        let token = hs256(json!({"sub": "alice", "exp": exp, "aud": "anything"}));
        assert!(auth.verify(&token).await.is_ok());
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
                Err(invalid(TokenReason::Malformed)),
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
            Err(invalid(TokenReason::Malformed))
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
                Err(invalid(TokenReason::Malformed)),
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
                matches!(check(other.clone()).await, Err(AuthError::Invalid { .. })),
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
            (
                json!(["https://id.example/"]),
                json!("api"),
                TokenReason::IssuerMismatch,
            ),
            (json!(null), json!("api"), TokenReason::IssuerMismatch),
            (
                json!("https://id.example"),
                json!("api"),
                TokenReason::IssuerMismatch,
            ),
            (
                json!("https://id.example/"),
                json!(["api", 1]),
                TokenReason::AudienceMismatch,
            ),
            (
                json!("https://id.example/"),
                json!([]),
                TokenReason::AudienceMismatch,
            ),
            (
                json!("https://id.example/"),
                json!({"api": true}),
                TokenReason::AudienceMismatch,
            ),
            (
                json!("https://id.example/"),
                json!("API"),
                TokenReason::AudienceMismatch,
            ),
        ] {
            assert_eq!(
                auth.verify(&with(iss.clone(), aud.clone())).await,
                Err(invalid(reason)),
                "{iss} {aud}"
            );
        }
    }
}
