//! OpenID Connect discovery: finds where an identity provider publishes its
//! signing keys from its issuer URL alone (`jwt.issuer` with
//! `jwt.discovery = true`), by reading `{issuer}/.well-known/openid-configuration`
//! and taking its `jwks_uri`. The keys themselves are then handled by
//! `jwks.rs` exactly as for a configured `jwt.jwks_url`.
//!
//! It must not accept a document that speaks for another issuer: its
//! `issuer` has to equal `jwt.issuer` character for character (OpenID
//! Connect Discovery 1.0, section 4.3), trailing slash included, since tokens
//! are checked against that same string and a provider that writes it
//! differently issues tokens paygate would refuse anyway. Nothing here runs
//! per request: discovery happens at start and with the periodic key refresh.

use serde::Deserialize;

use crate::outbound::OutboundClient;

/// Where discovery documents live, below the issuer.
const WELL_KNOWN_PATH: &str = "/.well-known/openid-configuration";

/// Upper bound on a discovery document. Real ones are a few KiB (lists of
/// supported scopes, claims and algorithms); far more is a wrong URL.
const MAX_DOCUMENT_BODY: usize = 256 * 1024;

/// What paygate takes from a discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Discovered {
    /// The URL of the provider's JWK set.
    pub(crate) jwks_uri: String,
}

/// The discovery document's URL for `issuer`: the well-known path appended
/// to the issuer without its trailing slash, as the specification says, so
/// `https://id.example.com/` and `https://id.example.com` both give
/// `https://id.example.com/.well-known/openid-configuration`.
pub(crate) fn document_url(issuer: &str) -> String {
    format!("{}{WELL_KNOWN_PATH}", issuer.trim_end_matches('/'))
}

/// Fetches and checks `issuer`'s discovery document. Every error starts
/// with `jwt.discovery:` and says what to look at: the URL that failed, the
/// transport error (such as an untrusted certificate), or both issuer values.
pub(crate) async fn discover(issuer: &str, http: &OutboundClient) -> Result<Discovered, String> {
    let url = document_url(issuer);
    let response = http
        .get(&url, &[], MAX_DOCUMENT_BODY)
        .await
        .map_err(|e| format!("jwt.discovery: cannot fetch {url}: {e}"))?;
    if !response.status.is_success() {
        return Err(format!("jwt.discovery: {url} answered {}", response.status));
    }
    parse(&response.body, issuer).map_err(|e| format!("jwt.discovery: {e} (from {url})"))
}

/// Reads a discovery document and checks it against `expected_issuer`
/// (`jwt.issuer`). Err with a sentence when it is not a JSON object, has no
/// `issuer` or `jwks_uri` string, names another issuer, or names a key set
/// that is not an absolute http(s) URL (or a plain http one for an https
/// issuer, which would let anyone on the path swap the keys that a TLS
/// protected document pointed to).
pub(crate) fn parse(body: &[u8], expected_issuer: &str) -> Result<Discovered, String> {
    /// The two members paygate uses; every other member is ignored.
    #[derive(Deserialize)]
    struct Document {
        issuer: Option<String>,
        jwks_uri: Option<String>,
    }
    let document: Document = serde_json::from_slice(body)
        .map_err(|e| format!("not an OpenID configuration document: {e}"))?;
    let issuer = document
        .issuer
        .ok_or("the discovery document has no issuer")?;
    if issuer != expected_issuer {
        return Err(format!(
            "the provider says issuer {issuer:?} but jwt.issuer is {expected_issuer:?}; \
             they must be equal character for character"
        ));
    }
    let jwks_uri = document
        .jwks_uri
        .ok_or("the discovery document has no jwks_uri")?;
    let uri: http::Uri = jwks_uri
        .parse()
        .map_err(|_| format!("jwks_uri {jwks_uri:?} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => {}
        (Some("http"), Some(_)) if !expected_issuer.starts_with("https://") => {}
        (Some("http"), Some(_)) => {
            return Err(format!(
                "jwks_uri {jwks_uri:?} is plain http while the issuer is https"
            ))
        }
        _ => {
            return Err(format!(
                "jwks_uri {jwks_uri:?} is not an absolute http(s) URL"
            ))
        }
    }
    Ok(Discovered { jwks_uri })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(document: serde_json::Value, issuer: &str) -> Result<Discovered, String> {
        parse(document.to_string().as_bytes(), issuer)
    }

    #[test]
    fn document_url_drops_one_trailing_slash_of_the_issuer() {
        assert_eq!(
            document_url("https://id.example.com"),
            "https://id.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            document_url("https://id.example.com/"),
            "https://id.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            document_url("https://id.example.com/realms/main/"),
            "https://id.example.com/realms/main/.well-known/openid-configuration"
        );
    }

    #[test]
    fn takes_the_jwks_uri_and_ignores_other_members() {
        let found = parse_json(
            json!({
                "issuer": "https://id.example.com",
                "jwks_uri": "https://id.example.com/jwks",
                "authorization_endpoint": "https://id.example.com/auth",
                "id_token_signing_alg_values_supported": ["RS256"],
            }),
            "https://id.example.com",
        )
        .expect("parse");
        assert_eq!(found.jwks_uri, "https://id.example.com/jwks");
    }

    #[test]
    fn the_issuer_must_match_exactly_and_both_values_are_shown() {
        let document =
            json!({"issuer": "http://127.0.0.1:24000", "jwks_uri": "http://127.0.0.1:24000/jwks"});
        let err = parse_json(document.clone(), "http://127.0.0.1:24000/").expect_err("mismatch");
        assert!(
            err.contains(r#"the provider says issuer "http://127.0.0.1:24000" but jwt.issuer is "http://127.0.0.1:24000/""#),
            "{err}"
        );
        // Neither case nor a default port makes two issuers equal.
        for other in [
            "HTTP://127.0.0.1:24000",
            "http://127.0.0.1:24000:80",
            "http://127.0.0.1:2400",
            "",
        ] {
            assert!(parse_json(document.clone(), other).is_err(), "{other}");
        }
        assert!(parse_json(document, "http://127.0.0.1:24000").is_ok());
    }

    #[test]
    fn refuses_documents_without_what_paygate_needs() {
        let issuer = "https://id.example.com";
        let cases = [
            json!([]),
            json!("text"),
            json!({"jwks_uri": "https://id.example.com/jwks"}),
            json!({"issuer": issuer}),
            json!({"issuer": 7, "jwks_uri": "https://id.example.com/jwks"}),
            json!({"issuer": issuer, "jwks_uri": ["https://id.example.com/jwks"]}),
            json!({"issuer": issuer, "jwks_uri": "/jwks"}),
            json!({"issuer": issuer, "jwks_uri": "ftp://id.example.com/jwks"}),
            json!({"issuer": issuer, "jwks_uri": "not a url"}),
            // A TLS-protected document must not point to keys anyone on the
            // path could replace.
            json!({"issuer": issuer, "jwks_uri": "http://id.example.com/jwks"}),
        ];
        for case in cases {
            assert!(parse_json(case.clone(), issuer).is_err(), "{case}");
        }
        assert!(parse(b"not json", issuer).is_err());
    }

    #[test]
    fn a_plain_http_issuer_may_name_a_plain_http_key_set() {
        let found = parse_json(
            json!({"issuer": "http://127.0.0.1:9000", "jwks_uri": "http://127.0.0.1:9000/jwks"}),
            "http://127.0.0.1:9000",
        )
        .expect("parse");
        assert_eq!(found.jwks_uri, "http://127.0.0.1:9000/jwks");
    }
}
