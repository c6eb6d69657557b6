//! Who a verified token says the caller is ([`Identity`]), why a request has
//! none ([`AuthError`]), and which user ids paygate accepts at all.
//!
//! Plain data and one syntax rule; nothing here reads a token or a clock.

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
        let user_header = http::HeaderValue::from_str(&user_id)
            .map_err(|_| AuthError::Invalid("user id is not usable as a header value"))?;
        Ok(Identity {
            user_id,
            expires_at,
            user_header,
        })
    }
}

/// Why a request has no usable identity; each maps to one refusal (docs/responses.md, "401: tokens").
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
