//! Keep-alive connections to the upstream: hyper's HTTP/1 client connections,
//! reused most-recently-used first.
//!
//! Why not hyper-util's pooled `Client` (what this replaced): it is built for
//! many hosts, and per request it hashed the (scheme, authority) key with
//! SipHash several times, built a lazy connect future it then dropped, and
//! spawned a task to wait for the connection to be reusable. Measured with
//! callgrind on the HS256 warm path, that machinery was about 10% of the
//! gateway's instructions per request. paygate has exactly one upstream, so a
//! pool is a `Vec` of ready senders behind a mutex held for a push or a pop.
//!
//! A connection goes back to the pool when its response body has ended (see
//! [`UpstreamBody`]); a body dropped half-read, an error, or a protocol switch
//! means the connection is not reused. A request that hyper could not even
//! start writing on a pooled connection (the upstream had just closed it) is
//! retried once on a new connection, as hyper-util's client did.
//!
//! With `upstream.http2` (gRPC backends) there is no pool: one HTTP/2
//! connection (prior knowledge on `http://`, ALPN `h2` on `https://`) carries
//! every request as its own stream, and a new one is opened when it closes.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, HOST, TE};
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::ServiceExt;

use super::body::{BoxError, LimitedBody};

pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// At most this many idle connections are kept.
const MAX_IDLE: usize = 256;

pub(crate) struct Pool {
    inner: Arc<Inner>,
    /// `Some` with `upstream.http2`: the one multiplexed connection used instead
    /// of the HTTP/1.1 pool.
    multiplexed: Option<Multiplexed>,
}

/// The HTTP/2 connection to the upstream, shared by every request.
struct Multiplexed {
    /// The connection's handle (cloned per request); `None` before the first
    /// request. A closed one is replaced on the next request.
    current: Mutex<Option<http2::SendRequest<LimitedBody>>>,
    /// Held while connecting, so a burst after a close opens one connection,
    /// not one per request.
    connecting: tokio::sync::Mutex<()>,
}

struct Inner {
    connector: Connector,
    /// `scheme://authority` of the upstream: what the connector dials.
    target: Uri,
    idle: Mutex<Vec<Idle>>,
    idle_timeout: Duration,
}

struct Idle {
    sender: SendRequest<LimitedBody>,
    since: Instant,
}

/// Why a request got no response head.
#[derive(Debug)]
pub(crate) enum SendError {
    Connect(BoxError),
    Request(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Request(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) => e.source(),
            SendError::Request(e) => std::error::Error::source(e),
        }
    }
}

impl SendError {
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

impl Pool {
    /// Must be called inside a Tokio runtime: it starts the idle reaper.
    /// With `http2`, requests go as streams of one HTTP/2 connection.
    pub(crate) fn new(
        connector: Connector,
        target: Uri,
        idle_timeout: Duration,
        http2: bool,
    ) -> Pool {
        let inner = Arc::new(Inner {
            connector,
            target,
            idle: Mutex::new(Vec::new()),
            idle_timeout,
        });
        let multiplexed = if http2 {
            Some(Multiplexed {
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
        } else {
            spawn_reaper(Arc::downgrade(&inner));
            None
        };
        Pool { inner, multiplexed }
    }

    /// Sends `request` (origin-form URI, `Host` set) on an idle connection or a
    /// new one, and returns the response head with a body that gives the
    /// connection back to the pool once it has been read to the end.
    pub(crate) async fn send(
        &self,
        mut request: Request<LimitedBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        if let Some(multiplexed) = &self.multiplexed {
            // Boxed: the HTTP/2 path (its connect and handshake above all)
            // would otherwise make every request's future several KiB larger,
            // and hyper moves that future once per request: measured at
            // +9,000 instructions per HTTP/1.1 request with callgrind.
            return Box::pin(self.send_h2(multiplexed, request)).await;
        }
        let mut retried = false;
        loop {
            let (mut sender, pooled) = match self.checkout() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    // After a protocol switch the connection belongs to the tunnel.
                    let keep = response.status() != http::StatusCode::SWITCHING_PROTOCOLS;
                    let back = keep.then(|| Return {
                        sender,
                        pool: Arc::downgrade(&self.inner),
                    });
                    return Ok(response.map(|inner| UpstreamBody { inner, back }));
                }
                Err(mut error) => match error.take_message() {
                    // Not a byte was written: the pooled connection was closed
                    // under us (keep-alive race). Safe to send again, once.
                    Some(unsent) if pooled && !retried => {
                        retried = true;
                        request = unsent;
                    }
                    _ => return Err(SendError::Request(error.into_error())),
                },
            }
        }
    }

    /// [`Pool::send`] over the HTTP/2 connection. The target becomes absolute
    /// (HTTP/2 carries scheme and authority as pseudo-headers, replacing
    /// `Host`), and `TE: trailers` is sent: gRPC servers require it, and
    /// trailers are passed on to the client.
    async fn send_h2(
        &self,
        multiplexed: &Multiplexed,
        mut request: Request<LimitedBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let mut parts = self.inner.target.clone().into_parts();
        parts.path_and_query = request.uri().path_and_query().cloned();
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        *request.version_mut() = Version::HTTP_2;
        request.headers_mut().remove(HOST);
        request
            .headers_mut()
            .insert(TE, HeaderValue::from_static("trailers"));
        let mut retried = false;
        loop {
            let mut sender = self.h2_sender(multiplexed).await?;
            match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|inner| UpstreamBody { inner, back: None }));
                }
                Err(mut error) => match error.take_message() {
                    // The connection closed (GOAWAY, upstream restart) before
                    // this stream started: send it once on a new connection.
                    Some(unsent) if !retried => {
                        retried = true;
                        request = unsent;
                        // This handle's connection took no new stream: the
                        // next request opens another.
                        *multiplexed
                            .current
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    _ => return Err(SendError::Request(error.into_error())),
                },
            }
        }
    }

    /// The open HTTP/2 connection, or a new one when there is none.
    async fn h2_sender(
        &self,
        multiplexed: &Multiplexed,
    ) -> Result<http2::SendRequest<LimitedBody>, SendError> {
        let open = || {
            let current = multiplexed
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            current.as_ref().filter(|s| !s.is_closed()).cloned()
        };
        if let Some(sender) = open() {
            return Ok(sender);
        }
        let _connecting = multiplexed.connecting.lock().await;
        if let Some(sender) = open() {
            return Ok(sender);
        }
        let io = self.dial().await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(SendError::Request)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream HTTP/2 connection ended with an error");
            }
        });
        *multiplexed
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    /// The most recently used connection that can take a request now. Closed
    /// ones are dropped; busy ones (still finishing a request body) stay.
    fn checkout(&self) -> Option<SendRequest<LimitedBody>> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].sender.is_closed() {
                idle.swap_remove(i);
            } else if idle[i].sender.is_ready() {
                return Some(idle.swap_remove(i).sender);
            }
        }
        None
    }

    /// A new connection (TCP, or TLS for `https://`) to the upstream.
    async fn dial(&self) -> Result<<Connector as tower::Service<Uri>>::Response, SendError> {
        self.inner
            .connector
            .clone()
            .oneshot(self.inner.target.clone())
            .await
            .map_err(SendError::Connect)
    }

    async fn connect(&self) -> Result<SendRequest<LimitedBody>, SendError> {
        let io = self.dial().await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Request)?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

impl Inner {
    fn put(&self, sender: SendRequest<LimitedBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// Closes connections idle longer than `pool_idle_timeout`, so a quiet gateway
/// does not hold sockets the upstream has long forgotten. Stops with the pool.
fn spawn_reaper(pool: Weak<Inner>) {
    let Some(period) = pool
        .upgrade()
        .map(|p| (p.idle_timeout / 2).max(Duration::from_millis(50)))
    else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            let expired: Vec<Idle> = {
                let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
                let (keep, expired) = idle
                    .drain(..)
                    .partition(|i| !i.sender.is_closed() && i.since.elapsed() < pool.idle_timeout);
                *idle = keep;
                expired
            };
            // Dropped outside the lock: dropping a sender ends its connection.
            drop(expired);
        }
    });
}

/// Gives a connection back to the pool (held by the response body until its end).
struct Return {
    sender: SendRequest<LimitedBody>,
    pool: Weak<Inner>,
}

impl Return {
    fn give_back(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(self.sender);
        }
    }
}

/// The upstream's response body, streamed as it arrives. At its end the
/// connection returns to the pool; dropped before its end, the connection is
/// closed (hyper cannot reuse a connection with an unread response).
pub(crate) struct UpstreamBody {
    inner: Incoming,
    back: Option<Return>,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(back) = self.back.take() {
                    back.give_back();
                }
            }
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Bodies known to be empty (204, 304, HEAD, Content-Length: 0) are
        // never polled: they end here.
        if let Some(back) = self.back.take() {
            if self.inner.is_end_stream() {
                back.give_back();
            }
        }
    }
}
