//! Who a verified token says the caller is ([`Identity`]), why a request has
//! none ([`AuthError`]), and which user ids paygate accepts at all.
//!
//! Plain data and one syntax rule; nothing here reads a token or a clock.

use std::borrow::Cow;
use std::fmt;

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user claim, as a string whether the token held a string or an integer.
    pub user_id: String,
    /// `exp` claim, unix seconds
    pub expires_at: i64,
    /// `user_id` as the identity header's value, made once per verified token
    /// (cached with it).
    pub user_header: http::HeaderValue,
}

impl Identity {
    /// The identity of a user id that passed [`is_valid_user_id`] (visible
    /// ASCII, so always a valid header value); any other id is an invalid token.
    pub fn new(user_id: String, expires_at: i64) -> Result<Identity, AuthError> {
        let user_header = http::HeaderValue::from_str(&user_id).map_err(|_| {
            AuthError::invalid(
                TokenReason::UserClaimInvalid,
                "user id is not usable as a header value",
            )
        })?;
        Ok(Identity {
            user_id,
            expires_at,
            user_header,
        })
    }
}

/// Why a request has no usable identity; each maps to one refusal (docs/responses.md, "401: tokens").
///
/// Every variant names its [`TokenReason`], the one word logged as `reason`;
/// an invalid token also carries a `detail` for the log (never the token, never
/// a secret). The client learns neither: it gets only the variant's code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No token in the request (`UNAUTHENTICATED`).
    #[error("no bearer token")]
    Missing,
    /// Malformed, badly signed, or failing a claim check (`INVALID_TOKEN`).
    #[error("invalid token ({reason}): {detail}")]
    Invalid {
        reason: TokenReason,
        /// What exactly failed, for the operator. Static text on most
        /// refusals; built (on the refusal path only) where the values help,
        /// like the expected and the received issuer.
        detail: Cow<'static, str>,
    },
    /// Validly signed but past `exp` plus leeway (`TOKEN_EXPIRED`).
    #[error("token expired")]
    Expired,
}

/// Two refusals are equal when their reasons are (the reason also tells the
/// variant): the detail is free text for the log, not part of the meaning.
impl PartialEq for AuthError {
    fn eq(&self, other: &Self) -> bool {
        self.reason() == other.reason()
    }
}

impl Eq for AuthError {}

impl AuthError {
    /// An invalid token refused for `reason`, with fixed text for the log.
    pub(crate) const fn invalid(reason: TokenReason, detail: &'static str) -> AuthError {
        AuthError::Invalid {
            reason,
            detail: Cow::Borrowed(detail),
        }
    }

    /// An invalid token refused for `reason`, with text made for this refusal.
    pub(crate) fn invalid_with(reason: TokenReason, detail: String) -> AuthError {
        AuthError::Invalid {
            reason,
            detail: Cow::Owned(detail),
        }
    }

    /// The word logged as `reason`.
    pub fn reason(&self) -> TokenReason {
        match self {
            AuthError::Missing => TokenReason::Missing,
            AuthError::Invalid { reason, .. } => *reason,
            AuthError::Expired => TokenReason::Expired,
        }
    }

    /// What exactly failed (empty when the reason says it all).
    pub fn detail(&self) -> &str {
        match self {
            AuthError::Invalid { detail, .. } => detail,
            AuthError::Missing | AuthError::Expired => "",
        }
    }

    /// Logs this refusal at `info` on target `paygate::auth`: `reason` (one of
    /// [`TokenReason::as_str`]) and `detail`. Every place that answers a 401
    /// calls it, so every refused token is in the log once, explained.
    pub(crate) fn log_refusal(&self) {
        tracing::info!(
            target: "paygate::auth",
            reason = %self.reason(),
            detail = %self.detail(),
            "token refused"
        );
    }
}

/// Why a token was refused: the stable word an operator searches the log for
/// (docs/responses.md, "Why a token was refused"). Copy, one byte; the free
/// text goes into [`AuthError::detail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenReason {
    /// No token in the request.
    Missing,
    /// Not three base64url parts of JSON, a claim of the wrong type or twice,
    /// a `crit` header, several `Authorization` headers, too large.
    Malformed,
    /// Past `exp` plus the leeway.
    Expired,
    /// Before `nbf` minus the leeway.
    NotYetValid,
    /// The signature does not verify with the key it selects (or that key is unusable).
    BadSignature,
    /// The header's `alg` is not in `jwt.algorithms`, names no algorithm, or
    /// does not fit the key its `kid` names.
    AlgNotAllowed,
    /// No key for the token: its `kid` is not in the key set (after the
    /// rate-limited refresh), or no key of its algorithm is configured.
    UnknownKid,
    /// `iss` absent or not exactly `jwt.issuer`.
    IssuerMismatch,
    /// `aud` absent or not (containing) `jwt.audience`.
    AudienceMismatch,
    /// The user claim is absent, or not a user id paygate accepts.
    UserClaimInvalid,
}

impl TokenReason {
    /// Every reason, for tests and docs.
    #[cfg(test)]
    pub(crate) const ALL: [TokenReason; 10] = [
        TokenReason::Missing,
        TokenReason::Malformed,
        TokenReason::Expired,
        TokenReason::NotYetValid,
        TokenReason::BadSignature,
        TokenReason::AlgNotAllowed,
        TokenReason::UnknownKid,
        TokenReason::IssuerMismatch,
        TokenReason::AudienceMismatch,
        TokenReason::UserClaimInvalid,
    ];

    /// The word as logged (`reason=...`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenReason::Missing => "missing",
            TokenReason::Malformed => "malformed",
            TokenReason::Expired => "expired",
            TokenReason::NotYetValid => "not_yet_valid",
            TokenReason::BadSignature => "bad_signature",
            TokenReason::AlgNotAllowed => "alg_not_allowed",
            TokenReason::UnknownKid => "unknown_kid",
            TokenReason::IssuerMismatch => "issuer_mismatch",
            TokenReason::AudienceMismatch => "audience_mismatch",
            TokenReason::UserClaimInvalid => "user_claim_invalid",
        }
    }
}

impl fmt::Display for TokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value from a token, made safe to log: at most 100 characters, quoted and
/// escaped (`{:?}`), so a hostile claim cannot forge a log line or flood it.
pub(super) fn loggable(value: &str) -> String {
    const MAX_CHARS: usize = 100;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
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
pub(super) const MAX_USER_ID_LEN: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_snake_case_word() {
        let words: Vec<&str> = TokenReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            words,
            [
                "missing",
                "malformed",
                "expired",
                "not_yet_valid",
                "bad_signature",
                "alg_not_allowed",
                "unknown_kid",
                "issuer_mismatch",
                "audience_mismatch",
                "user_claim_invalid",
            ]
        );
        for reason in TokenReason::ALL {
            assert_eq!(reason.to_string(), reason.as_str());
        }
        assert_eq!(AuthError::Missing.reason(), TokenReason::Missing);
        assert_eq!(AuthError::Expired.reason(), TokenReason::Expired);
        assert_eq!(size_of::<TokenReason>(), 1);
    }

    #[test]
    fn token_values_are_quoted_escaped_and_cut_for_the_log() {
        assert_eq!(loggable("http://idp/"), "\"http://idp/\"");
        assert_eq!(loggable("a\nfake=line"), "\"a\\nfake=line\"");
        let long = loggable(&"x".repeat(500));
        assert!(long.len() < 110 && long.ends_with('…'), "{long}");
        // Cut on a character boundary.
        assert!(loggable(&"é".repeat(200)).ends_with('…'));
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
}
