//! Finds a request's token: the `Authorization: Bearer` header, else the
//! configured cookie, and the one `Bearer` parser both listeners use.
//!
//! Only reads headers: it never judges a token (that is `verify`'s job) and
//! never allocates.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::identity::{AuthError, TokenReason};

/// What a request offers as a credential (see [`extract_token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
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
    pub(crate) fn required(self) -> Result<&'a str, AuthError> {
        match self {
            Credential::Token(token) => Ok(token),
            Credential::None => Err(AuthError::Missing),
            Credential::Ambiguous => Err(AuthError::invalid(TokenReason::Malformed, AMBIGUOUS)),
        }
    }
}

/// The reason logged for a request with several `Authorization` headers.
const AMBIGUOUS: &str = "more than one Authorization header";

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
pub(crate) fn extract_token<'a>(headers: &'a HeaderMap, cookie: Option<&str>) -> Credential<'a> {
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
pub(super) fn bearer_token(value: &str) -> Option<&str> {
    const WHITESPACE: [char; 2] = [' ', '\t'];
    let (scheme, token) = value.trim_matches(WHITESPACE).split_once(WHITESPACE)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(WHITESPACE);
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::invalid;
    use http::HeaderValue;

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
                Err(invalid(TokenReason::Malformed))
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
}
