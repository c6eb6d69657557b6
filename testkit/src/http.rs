//! A loopback HTTP/1.1 server for test stand-ins (upstreams, the Stripe API,
//! a JWKS endpoint, whatever a client under test talks to).
//!
//! [`TestServer::routes`] answers by method and path with canned [`Reply`]s
//! (changeable while running) and records every request it gets ([`Seen`],
//! body included). [`TestServer::start`] hands every request to a handler
//! instead, for stand-ins with state or streaming answers; they record what they
//! need in a [`Log`]. Either way the server listens on `127.0.0.1:0`, counts the
//! connections it accepts, and stops accepting when dropped. It must stay a
//! well-behaved hyper server: byte-exact misbehaviour belongs in raw sockets.
//!
//! [`TestServer::start_tls`] and [`TestServer::routes_tls`] serve the same over
//! HTTPS with a certificate from [`crate::tls::generate`], for clients that must
//! trust (or refuse) a CA made in the test.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::DEADLINE;

/// The response body every handler returns.
pub type Body = BoxBody<Bytes, Infallible>;

/// A complete body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A canned answer: status, headers, body, and how long to wait before
/// sending it (for timeout tests).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
}

impl Reply {
    /// `status` with no headers, an empty body and no delay.
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// The response, ignoring the delay.
    pub fn response(&self) -> Response<Body> {
        let mut response = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(name, value);
        }
        response
            .body(full(self.body.clone()))
            .expect("a valid canned reply")
    }
}

/// One request a [`TestServer::routes`] server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    /// Lowercased names, values as received, in order (duplicates kept).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Seen {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// An append-only list a test can wait on: handlers push, tests read or wait
/// until enough entries arrived.
pub struct Log<T> {
    items: Mutex<Vec<T>>,
    /// Bumped on every push so waiters can re-check.
    changed: watch::Sender<usize>,
}

impl<T: Clone> Default for Log<T> {
    fn default() -> Self {
        Log {
            items: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl<T: Clone> Log<T> {
    pub fn push(&self, item: T) {
        let len = {
            let mut items = self.items.lock().unwrap();
            items.push(item);
            items.len()
        };
        self.changed.send_replace(len);
    }

    /// Every entry so far, in push order.
    pub fn all(&self) -> Vec<T> {
        self.items.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least `n` entries arrived and returns them all; after
    /// [`DEADLINE`] returns `Err` with what did arrive, for the caller's
    /// failure message.
    pub async fn wait_len(&self, n: usize) -> Result<Vec<T>, Vec<T>> {
        let deadline = Instant::now() + DEADLINE;
        let mut rx = self.changed.subscribe();
        while self.len() < n {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(self.all());
            }
        }
        Ok(self.all())
    }
}

/// `(method, path, reply)` in the order added; the last match wins.
type Routes = Mutex<Vec<(String, String, Reply)>>;

/// A running server on `127.0.0.1:0`. Stops accepting when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// `"http"`, or `"https"` for a TLS server.
    scheme: &'static str,
    connections: Arc<AtomicUsize>,
    routes: Arc<Routes>,
    seen: Arc<Log<Seen>>,
    accept: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TestServer {
    /// Answers every request with `handler` (which owns the request body).
    /// Nothing is recorded for it: [`TestServer::requests`] stays empty.
    pub async fn start<F, Fut>(handler: F) -> TestServer
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        TestServer::serve(Arc::default(), Arc::default(), None, handler).await
    }

    /// [`TestServer::start`] over HTTPS (HTTP/1.1), with the PEM certificate
    /// chain at `cert_pem` and its key at `key_pem` (such as
    /// [`crate::TlsFiles::server_cert`] and `server_key`). A client that
    /// refuses the certificate just sees its handshake fail.
    pub async fn start_tls<F, Fut>(cert_pem: &Path, key_pem: &Path, handler: F) -> TestServer
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let acceptor = tls_acceptor(cert_pem, key_pem);
        TestServer::serve(Arc::default(), Arc::default(), Some(acceptor), handler).await
    }

    /// [`TestServer::routes`] over HTTPS, with the certificate and key of
    /// [`TestServer::start_tls`].
    pub async fn routes_tls<'a>(
        cert_pem: &Path,
        key_pem: &Path,
        routes: impl IntoIterator<Item = (&'a str, &'a str, Reply)>,
    ) -> TestServer {
        TestServer::with_routes(Some(tls_acceptor(cert_pem, key_pem)), routes).await
    }

    /// Answers each `(method, path, reply)` route with its reply (after reading
    /// the request body), anything else `404`, and records every request.
    pub async fn routes<'a>(
        routes: impl IntoIterator<Item = (&'a str, &'a str, Reply)>,
    ) -> TestServer {
        TestServer::with_routes(None, routes).await
    }

    async fn with_routes<'a>(
        tls: Option<TlsAcceptor>,
        routes: impl IntoIterator<Item = (&'a str, &'a str, Reply)>,
    ) -> TestServer {
        let table: Arc<Routes> = Arc::default();
        let seen: Arc<Log<Seen>> = Arc::default();
        let (answer_table, answer_seen) = (table.clone(), seen.clone());
        let server = TestServer::serve(table, seen, tls, move |req| {
            answer(answer_table.clone(), answer_seen.clone(), req)
        })
        .await;
        for (method, path, reply) in routes {
            server.route(method, path, reply);
        }
        server
    }

    /// Adds a route, or replaces the reply of the same method and path.
    pub fn route(&self, method: &str, path: &str, reply: Reply) {
        let mut routes = self.routes.lock().unwrap();
        routes.retain(|(m, p, _)| !(m == method && p == path));
        routes.push((method.to_string(), path.to_string(), reply));
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` for a TLS server.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// How many TCP connections the server has accepted (pool reuse shows here).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// What a [`TestServer::routes`] server received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.all()
    }

    /// Waits until a [`TestServer::routes`] server received `n` requests;
    /// returns them all.
    pub async fn wait_requests(&self, n: usize) -> Vec<Seen> {
        self.seen.wait_len(n).await.unwrap_or_else(|seen| {
            panic!("timed out waiting for {n} request(s); the server saw {seen:#?}")
        })
    }

    async fn serve<F, Fut>(
        routes: Arc<Routes>,
        seen: Arc<Log<Seen>>,
        tls: Option<TlsAcceptor>,
        handler: F,
    ) -> TestServer
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a test server on 127.0.0.1:0");
        let addr = listener.local_addr().expect("test server address");
        let connections = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let accepted = connections.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let response = handler(req);
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        // A failed handshake (the client refused the
                        // certificate) just ends the connection.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        TestServer {
            addr,
            scheme,
            connections,
            routes,
            seen,
            accept,
        }
    }
}

/// A TLS acceptor (HTTP/1.1 over ALPN) for the PEM chain and key files.
fn tls_acceptor(cert_pem: &Path, key_pem: &Path) -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("read the certificate {}: {e}", cert_pem.display()));
    let key = PrivateKeyDer::from_pem_file(key_pem)
        .unwrap_or_else(|e| panic!("read the key {}: {e}", key_pem.display()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a usable certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// The route handler: read and record the request, then answer its route.
async fn answer(
    routes: Arc<Routes>,
    seen: Arc<Log<Seen>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (head, body) = req.into_parts();
    let request = Seen {
        method: head.method.to_string(),
        target: head
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers: head
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default(),
    };
    let reply = routes
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(m, p, _)| *m == request.method && p == request.path())
        .map(|(_, _, reply)| reply.clone());
    seen.push(request);
    match reply {
        Some(reply) => {
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            reply.response()
        }
        None => Reply::new(404).body("no route for this request").response(),
    }
}
