//! Clients for the gateway's TLS and HTTP/2 listeners: hyper's own HTTP/1.1
//! and HTTP/2 client connections, over tokio-rustls trusting a test CA (ALPN
//! chooses the protocol) or over cleartext TCP (HTTP/2 with prior knowledge).
//!
//! A real client stack rather than bytes on a socket: HTTP/2 framing and HPACK
//! are not something a test should hand-write. [`RawConn`](super::RawConn)
//! stays the tool for HTTP/1.1 byte tricks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::DEADLINE;

/// A request body the clients send: whole (with a length) or streamed.
pub(crate) type ClientBody = BoxBody<Bytes, Infallible>;

/// A body of known length (hyper sends `content-length` for it).
pub(crate) fn whole(bytes: impl Into<Bytes>) -> ClientBody {
    Full::new(bytes.into()).boxed()
}

/// A body of `chunks` with no length announced (HTTP/2 DATA frames only).
pub(crate) fn streamed(chunks: Vec<Bytes>) -> ClientBody {
    let frames = chunks
        .into_iter()
        .map(|c| Ok::<_, Infallible>(Frame::data(c)));
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

/// What came back: the status and headers, the whole body, and the trailers.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A TLS client trusting only `ca_pem`, offering `alpn`.
pub(crate) fn connector(ca_pem: &str, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add the test CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// Connects over TLS to `addr` as `localhost`; returns the stream and the
/// protocol ALPN chose.
pub(crate) async fn tls(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    let stream = timeout(DEADLINE, connector(ca_pem, alpn).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    Ok((stream, alpn))
}

/// An HTTP/2 connection over TLS (ALPN `h2`, asserted).
pub(crate) async fn h2_tls(addr: SocketAddr, ca_pem: &str) -> http2::SendRequest<ClientBody> {
    let (stream, alpn) = tls(addr, ca_pem, &[b"h2", b"http/1.1"])
        .await
        .expect("TLS connection");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "ALPN should choose h2");
    h2_handshake(stream).await.expect("HTTP/2 handshake")
}

/// An HTTP/1.1 connection over TLS (ALPN `http/1.1` only, asserted).
pub(crate) async fn h1_tls(addr: SocketAddr, ca_pem: &str) -> http1::SendRequest<ClientBody> {
    let (stream, alpn) = tls(addr, ca_pem, &[b"http/1.1"])
        .await
        .expect("TLS connection");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    sender
}

/// HTTP/2 with prior knowledge over cleartext TCP.
pub(crate) async fn h2c(addr: SocketAddr) -> Result<http2::SendRequest<ClientBody>, hyper::Error> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    h2_handshake(tcp).await
}

async fn h2_handshake<S>(stream: S) -> Result<http2::SendRequest<ClientBody>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends `request` on an HTTP/2 connection and reads the whole answer.
pub(crate) async fn send_h2(
    sender: &mut http2::SendRequest<ClientBody>,
    request: Request<ClientBody>,
) -> Result<Answer, hyper::Error> {
    let response = timeout(DEADLINE, sender.send_request(request))
        .await
        .expect("HTTP/2 answer in time")?;
    collect(response).await
}

/// Sends `request` on an HTTP/1.1 connection and reads the whole answer.
pub(crate) async fn send_h1(
    sender: &mut http1::SendRequest<ClientBody>,
    request: Request<ClientBody>,
) -> Result<Answer, hyper::Error> {
    let response = timeout(DEADLINE, sender.send_request(request))
        .await
        .expect("HTTP/1.1 answer in time")?;
    collect(response).await
}

async fn collect(response: http::Response<hyper::body::Incoming>) -> Result<Answer, hyper::Error> {
    let (parts, body) = response.into_parts();
    let collected = timeout(DEADLINE, body.collect())
        .await
        .expect("whole body in time")?;
    let trailers = collected.trailers().cloned();
    Ok(Answer {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}
