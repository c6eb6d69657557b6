//! Accepting connections: the server loop, the connection limit, the
//! per-connection head/idle deadlines and graceful drain, the same for the
//! public listener and the admin one. Knows nothing about paywalls; it hands
//! each request to a [`Handler`] (the [`Gateway`] or the admin API).
//!
//! The public listener speaks HTTP/1.1 in cleartext; with `[server.tls]`, TLS
//! with HTTP/2 or HTTP/1.1 as ALPN chooses; with `server.h2c`, HTTP/2 with
//! prior knowledge in cleartext too. The admin listener is always cleartext
//! HTTP/1.1.
//!
//! Shape borrowed from mini-redis: `run` takes an already-bound listener and a
//! shutdown future, so tests bind port 0 and trigger shutdown themselves.

mod conn;
pub(crate) mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::admin::AdminApi;
use crate::config::ServerConfig;
use crate::gateway::{Gateway, GatewayBody, Live};
use crate::proxy::headers::{self, Peer};
use crate::proxy::BoxError;
use conn::{ClientIo, ConnState, Deadlines, Tracked};
pub use tls::Tls;

/// Connections the kernel may queue before `accept` (at least
/// 1,024). Linux caps it at `net.core.somaxconn` (4,096 on current kernels).
/// With the default 128, a burst of connections overflows the queue and
/// clients wait for SYN retransmits (1 s, then 3 s).
pub const LISTEN_BACKLOG: u32 = 4096;

/// The largest request head accepted (request line and headers); more is 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Binds `addr` with [`LISTEN_BACKLOG`] (tokio's `TcpListener::bind` uses 1,024).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restart must not wait for the old process's TIME_WAIT sockets.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A service a listener serves: the gateway on the public listener, the admin
/// API on the admin one. Both get the same connection handling and drain.
pub(crate) trait Handler: Send + Sync + 'static {
    type Body: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;

    /// Answers one request; never fails (every error is a response).
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: &Peer,
    ) -> impl Future<Output = Response<Self::Body>> + Send;
}

impl Handler for Gateway {
    type Body = GatewayBody;

    fn handle(
        &self,
        request: Request<Incoming>,
        peer: &Peer,
    ) -> impl Future<Output = Response<GatewayBody>> + Send {
        Gateway::handle(self, request, peer)
    }
}

impl Handler for AdminApi {
    type Body = Full<Bytes>;

    fn handle(
        &self,
        request: Request<Incoming>,
        _peer: &Peer,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        AdminApi::handle(self, request)
    }
}

/// Where a listener gets the handler for each request.
pub(crate) trait Handlers: Send + Sync + 'static {
    type Handler: Handler;

    /// The handler for a request arriving now; the request keeps it to its end.
    fn current(&self) -> Arc<Self::Handler>;
}

/// The public listener serves whichever gateway generation is current when a
/// request arrives, so a reload never changes a request half-way.
impl Handlers for Live {
    type Handler = Gateway;

    fn current(&self) -> Arc<Gateway> {
        Live::current(self)
    }
}

/// A handler that never changes (the admin API reads the current generation itself).
struct Fixed<H>(Arc<H>);

impl<H: Handler> Handlers for Fixed<H> {
    type Handler = H;

    fn current(&self) -> Arc<H> {
        self.0.clone()
    }
}

/// What a listener speaks besides cleartext HTTP/1.1 (which is `None`: an
/// HTTP/2 preface is then answered with GOAWAY). The admin listener has none.
enum Edge {
    /// Cleartext HTTP/1.1, or HTTP/2 with prior knowledge (`server.h2c`).
    H2c,
    /// TLS; ALPN chooses HTTP/2 or HTTP/1.1.
    Tls(Arc<Tls>),
}

/// Serves the gateway on `listener` (over TLS with `tls`), and the admin API
/// on `admin` when given, until `shutdown` resolves. Then the gateway is marked as draining (readiness
/// 503), both listeners stop accepting, and in-flight requests get up to
/// `server.shutdown_grace`. Returns `true` when every connection finished in time.
///
/// The listener settings (`[server]` limits, deadlines, h2c) are read once,
/// here: a reload does not change them (it logs that they need a restart);
/// the certificate in `tls` is reloadable.
pub async fn run(
    listener: TcpListener,
    admin: Option<TcpListener>,
    gateway: Arc<Live>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let (stop_tx, stop_rx) = watch::channel(false);
    let config = gateway.current().config.clone();
    let signal = async {
        shutdown.await;
        gateway.start_draining();
        tracing::info!(grace = ?config.server.shutdown_grace, "draining in-flight requests");
        let _ = stop_tx.send(true);
    };
    let edge = match tls {
        Some(tls) => Some(Edge::Tls(tls)),
        None if config.server.h2c => Some(Edge::H2c),
        None => None,
    };
    let public = serve(
        listener,
        gateway.clone(),
        &config.server,
        edge,
        stop_rx.clone(),
    );
    let admin = async {
        match admin {
            Some(listener) => {
                let api = Arc::new(Fixed(Arc::new(AdminApi::new(gateway.clone()))));
                serve(listener, api, &config.server, None, stop_rx.clone()).await
            }
            None => true,
        }
    };
    let ((), public, admin) = tokio::join!(signal, public, admin);
    // The access log writes from its own thread: every line is out before the
    // process exits.
    crate::telemetry::flush();
    if public && admin {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
    public && admin
}

/// One listener's accept loop until `stop` turns true, then its drain (up to
/// `server.shutdown_grace`). Returns `true` when every connection finished in time.
async fn serve<H: Handlers>(
    listener: TcpListener,
    handler: Arc<H>,
    server: &ServerConfig,
    edge: Option<Edge>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // `ClientIo` enforces header_timeout (from a head's first byte) and
        // keepalive_timeout (between requests); hyper's own header timer would
        // also run while a keep-alive connection is idle, cutting every idle
        // connection at header_timeout whatever keepalive_timeout says.
        .header_read_timeout(None)
        // A request head (request line and headers) may take 64 KiB, else
        // hyper answers 431 (docs/responses.md, "Limits"); without it the head could
        // grow to hyper's 408 KiB buffer, and 10,000 slow heads hold 4 GB.
        // The 100-header limit is hyper's default: setting it explicitly
        // would move the parser's header array to the heap on every request.
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    // Shared by the connections of a TLS or h2c listener; `None` for plain
    // HTTP/1.1, whose connections carry no HTTP/2 or TLS state.
    let edge = match edge {
        None => None,
        Some(edge) => {
            let mut h2 = http2::Builder::new(TokioExecutor::new());
            h2.timer(TokioTimer::new())
                // The same 64 KiB as an HTTP/1.1 head (decoded names and values).
                .max_header_list_size(MAX_HEAD_BYTES as u32);
            Some(Arc::new((edge, h2)))
        }
    };
    let deadlines = Deadlines {
        head: server.header_timeout,
        idle: server.keepalive_timeout,
    };
    // Beyond `max_connections` the loop stops accepting: new connections wait
    // in the listen backlog until one closes, instead of each costing memory.
    let slots = Arc::new(Semaphore::new(server.max_connections));
    // Each connection task holds a clone of `alive`; once all are dropped,
    // `all_closed` yields None: that is how the drain knows it is done.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);

    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = stop.wait_for(|stopping| *stopping) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|stopping| *stopping) => break,
        };
        let _ = stream.set_nodelay(true);
        let accepted = tokio::time::Instant::now();
        let conn = Conn {
            stream,
            peer,
            handler: handler.clone(),
            deadlines,
            accepted,
            stop: stop.clone(),
        };
        let alive = alive.clone();
        // Two task bodies, so a plain HTTP/1.1 connection's task holds none of
        // the TLS or HTTP/2 state (an idle one stays ~2 KiB).
        match &edge {
            None => {
                let builder = builder.clone();
                tokio::spawn(async move {
                    conn.serve_plain(&builder).await;
                    drop(slot);
                    drop(alive);
                });
            }
            Some(edge) => {
                let (builder, edge) = (builder.clone(), edge.clone());
                tokio::spawn(async move {
                    conn.serve_edge(&builder, &edge.0, &edge.1).await;
                    drop(slot);
                    drop(alive);
                });
            }
        }
    }

    drop(listener);
    drop(alive);
    tokio::time::timeout(server.shutdown_grace, all_closed.recv())
        .await
        .is_ok()
}

/// One accepted connection and what serving it needs.
struct Conn<H> {
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
    deadlines: Deadlines,
    accepted: tokio::time::Instant,
    stop: watch::Receiver<bool>,
}

impl<H: Handlers> Conn<H> {
    /// Waits for the client's first byte. hyper is handed the socket only
    /// once the client has sent something: it allocates its 8 KiB read and
    /// write buffers at the start, which 4,000 idle connections turned into
    /// ~80 MB. A client silent for header_timeout is dropped here, unparsed.
    async fn first_byte(&mut self) -> bool {
        let mut first = [0u8; 1];
        let first_bytes = tokio::select! {
            // `peek` waits for a byte (or EOF); `readable` may answer at once.
            ready = tokio::time::timeout(self.deadlines.head, self.stream.peek(&mut first)) => matches!(ready, Ok(Ok(1))),
            _ = self.stop.wait_for(|stopping| *stopping) => false,
        };
        if !first_bytes {
            tracing::debug!(peer = %self.peer, "connection closed before its first byte (header_timeout or shutdown)");
        }
        first_bytes
    }

    /// Cleartext HTTP/1.1 (an HTTP/2 preface gets GOAWAY).
    async fn serve_plain(mut self, builder: &http1::Builder) {
        if !self.first_byte().await {
            return;
        }
        let state = Arc::new(ConnState::default());
        let io = ClientIo::<_, false>::new(
            self.stream,
            state.clone(),
            self.deadlines,
            self.accepted,
            true,
        );
        let service = service::<H, false>(self.handler, Peer::new(self.peer), state);
        if let Err(error) = serve_http1(builder, io, service, &mut self.stop).await {
            tracing::debug!(%error, peer = %self.peer, "connection ended with an error");
        }
    }

    /// h2c (the first bytes choose HTTP/2 or HTTP/1.1) or TLS (ALPN chooses).
    async fn serve_edge(
        mut self,
        builder: &http1::Builder,
        edge: &Edge,
        h2: &http2::Builder<TokioExecutor>,
    ) {
        if !self.first_byte().await {
            return;
        }
        let (peer, deadlines, accepted) = (self.peer, self.deadlines, self.accepted);
        // The protocol choice (and the TLS handshake) counts against the
        // first head's deadline.
        let head = accepted + deadlines.head;
        let state = Arc::new(ConnState::default());
        let stop = &mut self.stop;
        let result = match edge {
            Edge::H2c => {
                let sniffed = tokio::select! {
                    sniffed = tokio::time::timeout_at(head, conn::sniff_h2(self.stream)) => sniffed.ok().and_then(Result::ok),
                    _ = stop.wait_for(|stopping| *stopping) => None,
                };
                let (handler, client) = (self.handler, Peer::new(peer));
                match sniffed {
                    Some((true, stream)) => {
                        let service = service::<H, true>(handler, client, state.clone());
                        let io =
                            ClientIo::<_, true>::new(stream, state, deadlines, accepted, false);
                        serve_http2(h2, io, service, stop).await
                    }
                    Some((false, stream)) => {
                        let service = service::<H, false>(handler, client, state.clone());
                        let io =
                            ClientIo::<_, false>::new(stream, state, deadlines, accepted, false);
                        serve_http1(builder, io, service, stop).await
                    }
                    None => Ok(()),
                }
            }
            Edge::Tls(tls) => {
                let handshake = tokio::select! {
                    done = tokio::time::timeout_at(head, tls.acceptor().accept(self.stream)) => match done {
                        Ok(Ok(stream)) => Some(stream),
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %peer, "TLS handshake failed");
                            None
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake not complete within server.header_timeout");
                            None
                        }
                    },
                    _ = stop.wait_for(|stopping| *stopping) => None,
                };
                match handshake {
                    Some(stream) => {
                        let h2_chosen = stream.get_ref().1.alpn_protocol() == Some(tls::ALPN_H2);
                        let (handler, client) = (self.handler, Peer::new(peer).over_tls());
                        if h2_chosen {
                            let service = service::<H, true>(handler, client, state.clone());
                            let io =
                                ClientIo::<_, true>::new(stream, state, deadlines, accepted, false);
                            serve_http2(h2, io, service, stop).await
                        } else {
                            let service = service::<H, false>(handler, client, state.clone());
                            let io =
                                ClientIo::<_, false>::new(stream, state, deadlines, accepted, true);
                            serve_http1(builder, io, service, stop).await
                        }
                    }
                    None => Ok(()),
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, %peer, "connection ended with an error");
        }
    }
}

/// The per-connection service: hands each request (each stream, on HTTP/2:
/// `MUX`) to `handler` and keeps the connection marked busy until its response
/// has been written, so the idle deadline never cuts a response short.
fn service<H: Handlers, const MUX: bool>(
    handlers: Arc<H>,
    client: Peer,
    state: Arc<ConnState>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Tracked<<H::Handler as Handler>::Body>>,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    service_fn(move |mut request: Request<Incoming>| {
        if MUX {
            // From here on a request is one whatever its version: HTTP/2's
            // split `Cookie` fields are joined as HTTP/1.1 needs them.
            headers::join_cookie_crumbs(request.headers_mut());
        }
        // The one lookup of a reloadable config per request (an atomic load
        // and a reference count, in place of the clone it replaces).
        let handler = handlers.current();
        let client = client.clone();
        let busy = state.begin();
        async move {
            let response = handler.handle(request, &client).await;
            if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                // A WebSocket tunnel has its own life; the HTTP
                // deadlines stop with the switch.
                busy.switched();
            }
            Ok::<_, std::convert::Infallible>(response.map(|body| Tracked::new(body, busy)))
        }
    })
}

/// One HTTP/1.1 connection until it ends; on shutdown the request in flight
/// (if any) finishes, then the connection closes instead of waiting for the
/// next keep-alive request.
async fn serve_http1<I, S, B>(
    builder: &http1::Builder,
    io: I,
    service: S,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = std::convert::Infallible>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// One HTTP/2 connection until it ends; on shutdown GOAWAY stops new streams
/// and the ones in flight finish.
async fn serve_http2<I, S, B>(
    builder: &http2::Builder<TokioExecutor>,
    io: I,
    service: S,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = std::convert::Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
