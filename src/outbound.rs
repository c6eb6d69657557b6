//! HTTP client for control-plane calls (the identity provider's discovery
//! document and keys, the Stripe API): one pooled hyper-util legacy client
//! over hyper-rustls, speaking https and plain http (tests and local setups).
//!
//! Whom it trusts: the system's root certificates (`SSL_CERT_FILE` /
//! `SSL_CERT_DIR` when set, as OpenSSL reads them) plus the PEM certificates
//! of `outbound.ca_file`, so an identity provider behind a private CA works
//! without rebuilding anything. Only a system without any root certificate
//! (a scratch container) falls back to Mozilla's roots as webpki-roots ships
//! them.
//!
//! It must not be used to forward user traffic: it buffers whole bodies (up to
//! a cap) and applies one deadline to the whole exchange, which is right for
//! small JSON documents and wrong for proxied requests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// How long an idle pooled connection is kept. Control-plane calls are rare
/// (a JWKS refresh every few minutes), so keeping connections longer than
/// this would mostly hold sockets that the server has already closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The value of the `User-Agent` header, so the identity provider and Stripe
/// can tell paygate's calls apart in their logs.
const USER_AGENT_VALUE: &str = concat!("paygate/", env!("CARGO_PKG_VERSION"));

/// The `[outbound]` settings, as the config module compiles them.
#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    /// PEM file of extra certificate authorities trusted next to the
    /// system's roots (a private CA in front of the identity provider).
    /// Already resolved against the config file's directory.
    pub ca_file: Option<PathBuf>,
}

/// A cheap-to-clone handle on a shared connection pool for control-plane
/// calls. Every request gets the same deadline, set at construction.
#[derive(Clone)]
pub struct OutboundClient {
    /// The pooled client. Cloning it clones a handle on the same pool, which
    /// is why `OutboundClient` itself can derive `Clone`.
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// Deadline for one whole exchange: connect, TLS, response head and
    /// body. A control-plane endpoint that hangs must not stall a refresher
    /// or a CLI command forever.
    timeout: Duration,
}

/// Why an outbound call produced no response.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The URL (or one of the extra headers) could not be turned into a
    /// request; this is a configuration or programming error, not a network
    /// one, so retrying will not help.
    #[error("invalid request URL or header: {0}")]
    InvalidUrl(String),
    /// The whole exchange did not finish within the client's timeout.
    #[error("request timed out")]
    Timeout,
    /// Connecting, TLS, or reading the response failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// The response body was longer than the caller's cap.
    #[error("response body too large")]
    BodyTooLarge,
}

/// A fully read response.
pub struct OutboundResponse {
    /// The response status, whatever it is.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body, at most the caller's `max_body` bytes.
    pub body: Bytes,
}

impl OutboundClient {
    /// Builds the client. `timeout` bounds every request made through it,
    /// from connecting to the last byte of the body. Err (naming the key)
    /// when `outbound.ca_file` cannot be read or holds no usable certificate.
    pub fn new(timeout: Duration, config: &OutboundConfig) -> Result<Self, String> {
        let mut roots = system_roots().clone();
        if let Some(path) = &config.ca_file {
            for (index, cert) in read_ca_file(path)?.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    format!(
                        "outbound.ca_file: certificate {} in {} is not usable: {e}",
                        index + 1,
                        path.display()
                    )
                })?;
            }
        }

        // The provider is named rather than taken from rustls' process-wide
        // default: that default is only implied by crate features, and a
        // second provider enabled by some dependency would make it ambiguous
        // (rustls then panics on first use).
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("outbound TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        // The connector must accept `https` URIs so that the TLS layer on top
        // of it can handle them; by default it refuses anything but `http`.
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);

        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        Ok(OutboundClient { client, timeout })
    }

    /// The same connection pool with another deadline per request, for a
    /// caller whose calls may legitimately take longer (or must be shorter).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        OutboundClient {
            client: self.client.clone(),
            timeout,
        }
    }

    /// A client trusting the system's roots only, for tests.
    #[cfg(test)]
    pub(crate) fn for_tests(timeout: Duration) -> Self {
        OutboundClient::new(timeout, &OutboundConfig::default()).expect("outbound client")
    }

    /// GET with extra headers; body read fully but capped at `max_body` bytes.
    ///
    /// Any status is a successful exchange: the caller decides what a `404` or
    /// `500` means. Redirects are not followed, since neither a JWKS endpoint
    /// nor the Stripe API should redirect, and following one silently would
    /// hide a misconfigured URL.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        max_body: usize,
    ) -> Result<OutboundResponse, OutboundError> {
        let request = build_get(url, headers)?;
        match tokio::time::timeout(self.timeout, self.exchange(request, max_body)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(OutboundError::Timeout),
        }
    }

    /// Sends the request and reads the body, without a deadline of its own.
    async fn exchange(
        &self,
        request: Request<Empty<Bytes>>,
        max_body: usize,
    ) -> Result<OutboundResponse, OutboundError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| OutboundError::Transport(with_trust_hint(error_chain(&e))))?;
        let (parts, mut body) = response.into_parts();

        // Refuse early when the server announces a body over the cap, so that
        // nothing of it is read.
        let announced = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|len| len > max_body as u64) {
            return Err(OutboundError::BodyTooLarge);
        }

        // Read frame by frame and stop as soon as the cap is passed: a
        // chunked body has no announced length, and a server must not be able
        // to make paygate buffer an unbounded amount of memory.
        let mut buf = BytesMut::with_capacity(announced.map_or(0, |len| len as usize));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| OutboundError::Transport(error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > max_body {
                    return Err(OutboundError::BodyTooLarge);
                }
                buf.extend_from_slice(&data);
            }
        }

        Ok(OutboundResponse {
            status: parts.status,
            headers: parts.headers,
            body: buf.freeze(),
        })
    }
}

/// Builds a GET request with paygate's default headers, then the caller's.
/// The caller's headers replace the defaults of the same name, so a caller
/// can ask for another `Accept`.
fn build_get(url: &str, headers: &[(&str, &str)]) -> Result<Request<Empty<Bytes>>, OutboundError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| OutboundError::InvalidUrl(format!("{url}: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(OutboundError::InvalidUrl(format!(
                "{url}: only http and https URLs are supported"
            )))
        }
    }
    if uri.host().is_none() {
        return Err(OutboundError::InvalidUrl(format!("{url}: missing host")));
    }

    let mut request = Request::new(Empty::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    let map = request.headers_mut();
    map.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    map.insert(ACCEPT, HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| OutboundError::InvalidUrl(format!("invalid header name {name:?}")))?;
        // The value is not echoed: it may be a credential (Stripe's API key).
        let value = HeaderValue::from_str(value)
            .map_err(|_| OutboundError::InvalidUrl(format!("invalid value for header {name}")))?;
        map.insert(name, value);
    }
    Ok(request)
}

/// The certificates of a PEM file of certificate authorities
/// (`outbound.ca_file`); Err, naming the key, when the file cannot be read or
/// holds no certificate. Other PEM blocks (a key, say) are skipped.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("outbound.ca_file: cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("outbound.ca_file: {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "outbound.ca_file: no certificate (-----BEGIN CERTIFICATE-----) in {}",
            path.display()
        ));
    }
    Ok(certs)
}

/// The system's root certificates, read once per process: they come from
/// files (or `SSL_CERT_FILE` / `SSL_CERT_DIR`) that do not change while it
/// runs, and reading a few hundred certificates on every client built would
/// be wasted work. Without any, Mozilla's roots stand in, which is logged
/// (once) since it means the system's own trust settings are not applied.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
        if !loaded.errors.is_empty() || ignored > 0 {
            let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
            tracing::debug!(
                added,
                ignored,
                ?errors,
                "some system root certificates could not be loaded"
            );
        }
        if roots.is_empty() {
            tracing::warn!(
                "no system root certificates found (nor through SSL_CERT_FILE / SSL_CERT_DIR); \
                 outbound HTTPS trusts the webpki-roots bundle (Mozilla's roots) instead"
            );
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

/// Adds what to do to a certificate error: the operator reading "invalid
/// peer certificate: UnknownIssuer" needs to know where paygate takes its
/// trust from.
fn with_trust_hint(mut text: String) -> String {
    if text.contains("invalid peer certificate") {
        text.push_str(
            " (paygate trusts the system's root certificates, SSL_CERT_FILE / SSL_CERT_DIR \
             when set, and outbound.ca_file)",
        );
    }
    text
}

/// Renders an error with its sources, because hyper's top-level messages
/// ("client error (Connect)") hide the part an operator needs ("connection
/// refused", "invalid peer certificate").
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use hyper::body::Incoming;
    use hyper::Response;
    use paygate_testkit::{full, Reply, TestServer};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn get_reads_status_headers_body_and_sends_extra_headers() {
        // Echoes a request header back, so the handler form of the server.
        let server = TestServer::start(|req: Request<Incoming>| async move {
            let seen = req
                .headers()
                .get("x-test")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            Response::builder()
                .status(203)
                .header("x-seen", seen)
                .body(full(Bytes::from_static(b"hello")))
                .expect("response")
        })
        .await;
        let client = OutboundClient::for_tests(Duration::from_secs(5));
        let res = client
            .get(&format!("{}/x", server.url()), &[("x-test", "yes")], 1024)
            .await
            .expect("get");
        assert_eq!(res.status, StatusCode::NON_AUTHORITATIVE_INFORMATION);
        assert_eq!(
            res.headers.get("x-seen").map(|v| v.as_bytes()),
            Some(&b"yes"[..])
        );
        assert_eq!(&res.body[..], b"hello");
    }

    #[tokio::test]
    async fn body_over_cap_is_refused() {
        let server =
            TestServer::routes([("GET", "/", Reply::new(200).body(vec![b'a'; 4096]))]).await;
        let client = OutboundClient::for_tests(Duration::from_secs(5));
        let err = client
            .get(&format!("{}/", server.url()), &[], 100)
            .await
            .err()
            .expect("must fail");
        assert!(matches!(err, OutboundError::BodyTooLarge), "{err:?}");
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let slow = Reply::new(200).delay(Duration::from_secs(5));
        let server = TestServer::routes([("GET", "/", slow)]).await;
        let client = OutboundClient::for_tests(Duration::from_millis(100));
        let err = client
            .get(&format!("{}/", server.url()), &[], 100)
            .await
            .err()
            .expect("must fail");
        assert!(matches!(err, OutboundError::Timeout), "{err:?}");
    }

    #[tokio::test]
    async fn refused_connection_is_a_transport_error() {
        // Bind and drop a listener to get a port that nothing listens on.
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listener.local_addr().expect("addr")
        };
        let client = OutboundClient::for_tests(Duration::from_secs(5));
        let err = client
            .get(&format!("http://{addr}/"), &[], 100)
            .await
            .err()
            .expect("must fail");
        assert!(matches!(err, OutboundError::Transport(_)), "{err:?}");
    }

    /// A TLS test server with a CA made here, answering `200 trusted` to
    /// `GET /`; returns it with the directory holding `ca.pem`.
    async fn tls_server() -> (TestServer, tempfile::TempDir, paygate_testkit::TlsFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = paygate_testkit::tls::generate(dir.path());
        let server = TestServer::routes_tls(
            &tls.server_cert,
            &tls.server_key,
            [("GET", "/", Reply::new(200).body("trusted"))],
        )
        .await;
        (server, dir, tls)
    }

    #[tokio::test]
    async fn a_private_ca_is_trusted_only_through_ca_file() {
        let (server, _dir, tls) = tls_server().await;
        let url = format!("{}/", server.url());
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");

        let system_only = OutboundClient::for_tests(Duration::from_secs(5));
        let err = system_only
            .get(&url, &[], 100)
            .await
            .err()
            .expect("an unknown CA must be refused");
        let text = err.to_string();
        assert!(
            matches!(err, OutboundError::Transport(_)) && text.contains("UnknownIssuer"),
            "{text}"
        );

        let config = OutboundConfig {
            ca_file: Some(tls.ca_cert.clone()),
        };
        let with_ca = OutboundClient::new(Duration::from_secs(5), &config).expect("client");
        let res = with_ca.get(&url, &[], 100).await.expect("trusted");
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(&res.body[..], b"trusted");

        // Another CA of the same kind does not vouch for this server.
        let other = tempfile::tempdir().expect("temp dir");
        let other = paygate_testkit::tls::generate(other.path());
        let config = OutboundConfig {
            ca_file: Some(other.ca_cert),
        };
        let wrong_ca = OutboundClient::new(Duration::from_secs(5), &config).expect("client");
        assert!(wrong_ca.get(&url, &[], 100).await.is_err());
    }

    #[test]
    fn ca_file_errors_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = paygate_testkit::tls::generate(dir.path());
        let build = |path: &Path| {
            let config = OutboundConfig {
                ca_file: Some(path.to_path_buf()),
            };
            OutboundClient::new(Duration::from_secs(1), &config)
                .err()
                .expect("must fail")
        };
        let missing = dir.path().join("missing.pem");
        let err = build(&missing);
        assert!(
            err.starts_with("outbound.ca_file: cannot read") && err.contains("missing.pem"),
            "{err}"
        );
        // A PEM file without any certificate (a private key).
        let err = build(&tls.server_key);
        assert!(
            err.starts_with("outbound.ca_file: no certificate") && err.contains("server.key"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        assert!(build(&empty).starts_with("outbound.ca_file: no certificate"));
    }

    #[tokio::test]
    async fn with_timeout_changes_only_the_deadline() {
        let slow = Reply::new(200).delay(Duration::from_secs(5));
        let server = TestServer::routes([("GET", "/", slow)]).await;
        let client = OutboundClient::for_tests(Duration::from_secs(30));
        let hasty = client.with_timeout(Duration::from_millis(100));
        let err = hasty
            .get(&format!("{}/", server.url()), &[], 100)
            .await
            .err()
            .expect("must time out");
        assert!(matches!(err, OutboundError::Timeout), "{err:?}");
        assert_eq!(client.timeout, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn bad_urls_and_headers_are_rejected_before_any_io() {
        let client = OutboundClient::for_tests(Duration::from_secs(5));
        for url in ["not a url", "ftp://example.com/", "/relative"] {
            let err = client.get(url, &[], 10).await.err().expect("must fail");
            assert!(
                matches!(err, OutboundError::InvalidUrl(_)),
                "{url}: {err:?}"
            );
        }
        let err = client
            .get("http://127.0.0.1:9/", &[("bad header", "x")], 10)
            .await
            .err()
            .expect("must fail");
        assert!(matches!(err, OutboundError::InvalidUrl(_)), "{err:?}");
    }
}
