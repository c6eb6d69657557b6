//! Accepting connections: the HTTP/1.1 server loop, the connection limit, the
//! per-connection head/idle deadlines and graceful drain, the same for the
//! public listener and the admin one. Knows nothing about paywalls; it hands
//! each request to a [`Handler`] (the [`Gateway`] or the admin API).
//!
//! Shape borrowed from mini-redis: `run` takes an already-bound listener and a
//! shutdown future, so tests bind port 0 and trigger shutdown themselves.

mod conn;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};

use crate::admin::AdminApi;
use crate::config::ServerConfig;
use crate::gateway::{Gateway, GatewayBody, Live};
use crate::proxy::headers::Peer;
use crate::proxy::BoxError;
use conn::{ClientIo, ConnState, Deadlines, Tracked};

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

/// Where a listener gets the handler for each request.
pub(crate) trait Handlers: Send + Sync + 'static {
    type Handler: Handler;

    /// The handler for a request arriving now; the request keeps it to its end.
    fn current(&self) -> Arc<Self::Handler>;

    /// Changes whenever [`Handlers::current`] would return another handler.
    fn generation(&self) -> u64;
}

/// The public listener serves whichever gateway generation is current when a
/// request arrives, so a reload never changes a request half-way.
impl Handlers for Live {
    type Handler = Gateway;

    fn current(&self) -> Arc<Gateway> {
        Live::current(self)
    }

    fn generation(&self) -> u64 {
        Live::generation(self)
    }
}

/// A handler that never changes (the admin API reads the current generation itself).
struct Fixed<H>(Arc<H>);

impl<H: Handler> Handlers for Fixed<H> {
    type Handler = H;

    fn current(&self) -> Arc<H> {
        self.0.clone()
    }

    fn generation(&self) -> u64 {
        0
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

/// Serves the gateway on `listener`, and the admin API on `admin` when given,
/// until `shutdown` resolves. Then the gateway is marked as draining (readiness
/// 503), both listeners stop accepting, and in-flight requests get up to
/// `server.shutdown_grace`. Returns `true` when every connection finished in time.
///
/// The listener settings (`[server]` limits and deadlines) are read once, here:
/// a reload does not change them (it logs that they need a restart).
pub async fn run(
    listener: TcpListener,
    admin: Option<TcpListener>,
    gateway: Arc<Live>,
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
    let public = serve(listener, gateway.clone(), &config.server, stop_rx.clone());
    let admin = async {
        match admin {
            Some(listener) => {
                let api = Arc::new(Fixed(Arc::new(AdminApi::new(gateway.clone()))));
                serve(listener, api, &config.server, stop_rx.clone()).await
            }
            None => true,
        }
    };
    let ((), public, admin) = tokio::join!(signal, public, admin);
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
    handlers: Arc<H>,
    server: &ServerConfig,
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
        let handlers = handlers.clone();
        let builder = builder.clone();
        let alive = alive.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            // hyper is handed the socket only once the client has sent
            // something: it allocates its 8 KiB read and write buffers at the
            // start, which 4,000 idle connections turned into ~80 MB. A client
            // silent for header_timeout is dropped here, unparsed.
            let mut first = [0u8; 1];
            let first_bytes = tokio::select! {
                // `peek` waits for a byte (or EOF); `readable` may answer at once.
                ready = tokio::time::timeout(deadlines.head, stream.peek(&mut first)) => matches!(ready, Ok(Ok(1))),
                _ = stop.wait_for(|stopping| *stopping) => false,
            };
            if !first_bytes {
                tracing::debug!(%peer, "connection closed before its first byte (header_timeout or shutdown)");
                drop(slot);
                drop(alive);
                return;
            }
            let client = Peer::new(peer);
            let state = Arc::new(ConnState::default());
            let io = ClientIo::new(stream, state.clone(), deadlines, accepted);
            // The connection keeps the handler generation it last used and
            // looks the current one up only after a reload: per request that
            // is one load and a compare besides the reference count.
            let kept = std::cell::RefCell::new((handlers.generation(), handlers.current()));
            let service = service_fn(move |request| {
                let handler = {
                    let mut kept = kept.borrow_mut();
                    let now = handlers.generation();
                    if kept.0 != now {
                        *kept = (now, handlers.current());
                    }
                    kept.1.clone()
                };
                let client = client.clone();
                // Marks the connection busy until the response body has been
                // written, so the idle deadline never cuts a response short.
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
            });
            let connection = builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                    // Finish the request in flight (if any), then close instead
                    // of waiting for the next keep-alive request.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(slot);
            drop(alive);
        });
    }

    drop(listener);
    drop(alive);
    tokio::time::timeout(server.shutdown_grace, all_closed.recv())
        .await
        .is_ok()
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
