//! An identity provider found by OpenID Connect discovery, over HTTPS from a
//! private CA: the gateway configured with only `jwt.issuer` and
//! `jwt.discovery = true` reads `{issuer}/.well-known/openid-configuration`,
//! takes the keys from its `jwks_uri` and verifies the provider's RS256
//! tokens; a token from another key is refused. The CA is trusted through
//! `outbound.ca_file` or `SSL_CERT_FILE`; without either, and when the
//! document names another issuer, `serve` stops at start with a message
//! that says why. A process without any system root certificate falls back
//! to the bundled roots (logged) and still trusts `outbound.ca_file`; a plain
//! `http://` issuer works with a warning.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use paygate_testkit::tls::{self, TlsFiles};
use paygate_testkit::{Reply as Canned, TestServer};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::jwt::{self, claims};
use crate::support::*;

/// The modulus of `support/rsa_public.pem` (base64url), as a provider
/// publishes it in its JWK set (exponent 65537: `AQAB`).
const RSA_N: &str = "55oAKqP0gHA_KOtMbLZZDdzDP0no_zFpdPphjG2JoHuk4wRQcMxKhN4uRIW0O8sSuARO3eVjCIeGkYvXxfAw_z4co24L0IHxf8G7JPgAPW-J8OtYrT0b9mq0TKRmVcybh6cEp7FGd8idl-xrH782cBNQC9zWYUSxWFJsmQq9pe0XoFF3kRvULsHJk9L7sgvyE3EeesSQyMHbQT-O33izWFZI5AEqKX_5a_ICaLhqa9w_fnec1UcOKkXGker8nQ7sG4ok3znRfd5Vb92T4ZJKLA0x9C2GPzuWxUjUreqF9bEnP1N9gXyTwlQQPlHHdDH-bGprp9I1UaE5qfvDbPzPQQ";

/// Another RSA key (made with `openssl genrsa` for this test only): what
/// an attacker who is not the provider signs with.
const FOREIGN_RSA_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDHHc0CKMlcxSC8
h8B/eZ8vuglSwfP+sPYQbL8LGYOS9IH/rotW0uehYbA1p2mOfuXBsWMOBs7Y9Wey
q9XS/svx3YoUcN6FQt/uy2M8FGsGo6ckgEviSXwlrs6sQalnrX3Tu7KfhBO+LS6+
vy33Nh7m5yFr8fK2gh5uohSp8Z2GzuaX/up156Z3BOoGDxMUQg+dhbQOHrfqCxX2
VH0dU8lStu6zN+XopaUwFbhdx9PaMZtPChoX0nnsfc5sC86TYVocYeXbqEXzL6R4
hMn9z+Rl1FsGKD1nqMyZmvgn6sW1z0cPnHM+8+cKIWm/UzUsKWGzyfwiICagW/yu
9xeW/Oz9AgMBAAECggEAI2mvrSdjXrI5lwY+zH0tPGAGKfeQRVckQDoTBS6ZucBu
QXLB2eSDKS7WV8iJS7xScQ8zKoq37ZrBwWNx0UebLo5D8Uw8qy9AY/g80zHfcgwX
nTSLKnj+0TXkkHrSHfwbYZWjmF61YzCmfGrEik/QEamARnI+xEpijrMZYTs1VMT1
SJX2E57s7/rgq3K0vmf5A/6z8wKFyxVtkUqVY6rQ8E4btmZU7v/olWl9AS8DyicI
FfAQoKZHkZGoPzPRnjXhnp7lkYmLw9MUKnIJmpSokWbH29kLpmsbgZCkZJfYj4uf
VkF77ML7G3g/s2qVhURvbMBbZ0vkrKeaOFuH/jHayQKBgQD5Bykbwf8q249IkE87
IHI3qTeq9AH6cDdhcZ7JGV22iQOidUUCx+LVD8WXpto4VA7+1SweegJ3yfH1qWGJ
zUIQcfDsHvze7qNdYnDcAFZFNR84CbExgdfVzcEoJLQLPC37PdsnYJtCacG3dVI4
3n9J4u6fwPqY/zIY+docJAjdeQKBgQDMsOmxFVOoUkPXhAdA3RdrJfb8HIjLH7H8
7UvUgTxqFCv5sqUXS3YZNTngDO5SaNs9zEaot2KuQSiG2HC9TCdoLxP2OtMpGEN4
HRAwdbU/zUbsjtvWK6d84Q2hcejb+MF4O2cqYULf7cJyF4aS6kwlVIms8BmZrOhw
90zHI2IepQKBgQDQwPnq9PMMYEV6lM52SDq3AjlSK35FDDDAlNiAx6zRSYYsd5XE
QP+bj78Z45rmwUBYyyZS3gCXnkggoT7Mn64TzxAhP9DGqNF1hQIKypWHKoLjHOzX
DXt7FSIonqv3BxmclTvThJ5iS/lB6y1j0tBthbh3XvQzsSmz2i7GjEaKMQKBgQCZ
Hb2yOcHap68YCCtk2f4qqLuY2794Mr1x9hBDZmlK8Mv0fS4BvvEY6jfg4ctk2gsm
rygsDQJEV3l5ZW7wK4dO5+iGyHosw3m04Ai8N1Dd6TCkxDiufPlM8QzBN/R4mBwh
VE5X5WmhGLnbnr2MKLfNNO/H7dM4oZ8+4b8NN+quAQKBgDMgpucDtJOzAzfAWmDQ
vlPiXQGjQJTgMiV+ERRrjqsxefY2WyZCO6Zb66va/9rbg26cY8qpLF/lSM2YNbkU
TwkWuebCzOZua4OSLfA/g9G8bDATzZKvok20ZrwAoYWRAGhU9QiR9emOaDvldCQU
a6G6DtbE5wRs3WG8Q2QJ5ucG
-----END PRIVATE KEY-----
";

/// The key id the provider publishes its key under.
const KID: &str = "provider-key-1";

/// A provider on loopback over HTTPS with a certificate from a CA made for
/// the test: its discovery document names the issuer `issuer` (its own URL
/// unless the test says otherwise) and `/jwks`, the set with the one RSA key.
struct Provider {
    server: TestServer,
    files: TlsFiles,
    _dir: TempDir,
}

impl Provider {
    async fn start() -> Provider {
        let dir = tempfile::tempdir().unwrap();
        let files = tls::generate(dir.path());
        let server = TestServer::routes_tls(&files.server_cert, &files.server_key, []).await;
        let provider = Provider {
            server,
            files,
            _dir: dir,
        };
        provider.publish(&provider.issuer());
        let keys = json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID, "n": RSA_N, "e": "AQAB"
        }]});
        provider.server.route(
            "GET",
            "/jwks",
            Canned::new(200)
                .header("content-type", "application/json")
                .body(keys.to_string()),
        );
        provider
    }

    /// `https://127.0.0.1:PORT`, without a trailing slash.
    fn issuer(&self) -> String {
        self.server.url()
    }

    /// Serves a discovery document that says `issuer`.
    fn publish(&self, issuer: &str) {
        let document = json!({
            "issuer": issuer,
            "jwks_uri": format!("{}/jwks", self.server.url()),
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        self.server.route(
            "GET",
            "/.well-known/openid-configuration",
            Canned::new(200)
                .header("content-type", "application/json")
                .body(document.to_string()),
        );
    }

    fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.files.ca_cert).unwrap()
    }

    /// The paths the provider was asked for, in order.
    fn paths(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .map(|seen| seen.path().to_owned())
            .collect()
    }
}

/// A gateway whose `[jwt]` is just the provider's issuer and discovery
/// (the test config's secret and algorithm list removed).
fn issuer_only(up: &Upstream, issuer: &str) -> Config {
    Config::new(&up.url())
        .unset("jwt.secret")
        .unset("jwt.algorithms")
        .set_str("jwt.issuer", issuer)
        .set("jwt.discovery", "true")
}

/// `user`'s claims as the provider issues them.
fn provider_claims(user: &str, issuer: &str) -> Value {
    let mut claims = claims(user);
    claims["iss"] = json!(issuer);
    claims
}

fn rs256(pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa key");
    encode(&header, claims, &key).expect("encode jwt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_discovery_are_enough_to_verify_the_providers_tokens() {
    let provider = Provider::start().await;
    let issuer = provider.issuer();
    let up = Upstream::start().await;
    let config = issuer_only(&up, &issuer)
        .set_str("outbound.ca_file", "provider-ca.pem")
        .file("provider-ca.pem", &provider.ca_pem());
    let gw = Gateway::start(&config).await;
    assert_eq!(
        provider.paths(),
        ["/.well-known/openid-configuration", "/jwks"],
        "discovery first, then the jwks_uri it names"
    );

    let claims = provider_claims("alice", &issuer);
    let token = rs256(jwt::RSA_PRIVATE_PEM, Some(KID), &claims);
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token)).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);

    // Signed by another key, under the provider's key id or none: refused.
    for kid in [Some(KID), None] {
        let foreign = rs256(FOREIGN_RSA_PRIVATE_PEM, kid, &claims);
        let resp = gw.send(get("/api/banking").bearer(&foreign)).await;
        assert_error(&resp, 401, "INVALID_TOKEN");
    }
    // No HS256 token gets in: no secret is configured, and the provider's
    // keys are RSA.
    let hs = jwt::sign(&claims);
    assert_error(
        &gw.send(get("/api/banking").bearer(&hs)).await,
        401,
        "INVALID_TOKEN",
    );
    assert_eq!(
        gw.barrier(&up).await.len(),
        1,
        "only the provider's token reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_differs_from_the_documents_stops_start_showing_both() {
    let provider = Provider::start().await;
    let issuer = provider.issuer();
    let up = Upstream::start().await;
    // The document says "https://127.0.0.1:PORT"; the config adds a slash.
    let configured = format!("{issuer}/");
    let config = issuer_only(&up, &configured)
        .set_str("outbound.ca_file", "provider-ca.pem")
        .file("provider-ca.pem", &provider.ca_pem());
    let err = Gateway::try_start(&config)
        .await
        .err()
        .expect("start must fail");
    let expected = format!(
        "discovery: the provider says issuer \"{issuer}\" but jwt.issuer is \"{configured}\""
    );
    assert!(err.contains(&expected), "expected {expected:?} in:\n{err}");
    assert!(
        !provider.paths().contains(&"/jwks".to_owned()),
        "no keys fetched from a document for another issuer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_provider_is_refused_and_start_says_why() {
    let provider = Provider::start().await;
    let up = Upstream::start().await;
    let err = Gateway::try_start(&issuer_only(&up, &provider.issuer()))
        .await
        .err()
        .expect("start must fail");
    assert!(
        err.contains("jwt.discovery: cannot fetch")
            && err.contains("/.well-known/openid-configuration")
            && err.contains("invalid peer certificate")
            && err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_trusts_the_ca_without_ca_file() {
    let provider = Provider::start().await;
    let issuer = provider.issuer();
    let up = Upstream::start().await;
    let ca = provider.files.ca_cert.to_str().unwrap().to_owned();
    let config = issuer_only(&up, &issuer)
        .env("SSL_CERT_FILE", &ca)
        .env("SSL_CERT_DIR", "");
    let gw = Gateway::start(&config).await;
    let token = rs256(
        jwt::RSA_PRIVATE_PEM,
        Some(KID),
        &provider_claims("alice", &issuer),
    );
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token)).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_issuer_works_with_a_warning() {
    let provider = TestServer::routes([]).await;
    let issuer = provider.url();
    let keys = json!({"keys": [{"kty": "RSA", "kid": KID, "n": RSA_N, "e": "AQAB"}]});
    let document = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
    provider.route("GET", "/jwks", Canned::new(200).body(keys.to_string()));
    provider.route(
        "GET",
        "/.well-known/openid-configuration",
        Canned::new(200).body(document.to_string()),
    );
    let up = Upstream::start().await;
    let gw = Gateway::start(&issuer_only(&up, &issuer)).await;
    // The warning is written before the listening line, but stderr is read
    // by another thread: poll for it.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !gw.log().contains("jwt.issuer uses plain http") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no plain-http warning in:\n{}",
            gw.log()
        );
        // Polling interval for the log reader thread, not a synchronization.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let token = rs256(
        jwt::RSA_PRIVATE_PEM,
        Some(KID),
        &provider_claims("alice", &issuer),
    );
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token)).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_system_root_the_bundled_roots_stand_in_and_ca_file_still_counts() {
    let provider = Provider::start().await;
    let issuer = provider.issuer();
    let up = Upstream::start().await;
    // Both variables naming nothing: the process finds no system root at all,
    // as in a scratch container.
    let config = issuer_only(&up, &issuer)
        .set_str("outbound.ca_file", "provider-ca.pem")
        .file("provider-ca.pem", &provider.ca_pem())
        .env("SSL_CERT_FILE", "/nonexistent/paygate-test-roots.pem")
        .env("SSL_CERT_DIR", "/nonexistent/paygate-test-roots");
    let gw = Gateway::start(&config).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !gw.log().contains("no system root certificates found") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no fallback warning in:\n{}",
            gw.log()
        );
        // Polling interval for the log reader thread, not a synchronization.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        gw.log()
            .matches("no system root certificates found")
            .count(),
        1,
        "logged once"
    );
    let token = rs256(
        jwt::RSA_PRIVATE_PEM,
        Some(KID),
        &provider_claims("alice", &issuer),
    );
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token)).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
}
