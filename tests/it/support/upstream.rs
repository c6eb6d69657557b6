//! The application behind the gateway: a testkit HTTP server that records what it received.
//!
//! Tests assert on what the upstream actually got on the wire (method, request
//! target, headers, body length and checksum), never on what the gateway says
//! it did. How the upstream answers is programmable per request through
//! [`Reply`]; [`Signal`] lets a test hold a response until it decides to
//! release it, which is how streaming and draining are tested by causality
//! rather than by timing. [`RawUpstream`] hands the test the bare TCP
//! connections instead, for protocol upgrades.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use paygate_testkit::{full, Body, Log, TestServer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use super::DEADLINE;

/// A one-way latch: `fire` once, every `wait` (before or after) completes.
#[derive(Clone)]
pub(crate) struct Signal(Arc<watch::Sender<bool>>);

impl Default for Signal {
    fn default() -> Self {
        Signal::new()
    }
}

impl Signal {
    pub(crate) fn new() -> Signal {
        Signal(Arc::new(watch::channel(false).0))
    }

    pub(crate) fn fire(&self) {
        self.0.send_replace(true);
    }

    pub(crate) fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits for `fire` with no deadline (the holder decides how long).
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

/// FNV-1a over a byte stream; chunk boundaries do not change the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checksum(pub u64);

impl Default for Checksum {
    fn default() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }
}

impl Checksum {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// What the upstream received for one request.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: String,
    /// The request target exactly as it came on the wire (path and query).
    pub target: String,
    /// Lowercased names, values as received, in order (duplicates kept).
    pub headers: Vec<(String, String)>,
    /// Body bytes received (all of them, or until the body broke off).
    pub body_len: u64,
    /// [`Checksum`] of the body bytes received.
    pub body_checksum: u64,
    /// The first [`BODY_KEEP`] bytes of the body.
    pub body: Vec<u8>,
    /// `false` when the body ended in an error (the sender aborted it).
    pub body_complete: bool,
}

/// How much of each body a record keeps verbatim.
pub(crate) const BODY_KEEP: usize = 1 << 20;

impl Recorded {
    /// The first value of a header (case-insensitive name).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of a header (case-insensitive name).
    pub(crate) fn header_all(&self, name: &str) -> Vec<&str> {
        super::header_values(&self.headers, name)
    }

    /// The path part of the target.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// How the upstream answers one request. The body is always read in full first
/// (so the record is complete) except where noted.
pub(crate) enum Reply {
    /// `200`, body `upstream ok`.
    Ok,
    /// Any status, extra headers and body.
    Custom {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// `200 upstream ok`, but only once the signal fired.
    HoldUntil(Signal),
    /// A `200` chunked response that sends `first`, then waits for `then`, then
    /// sends `rest` and ends.
    Stream {
        first: Bytes,
        then: Signal,
        rest: Bytes,
    },
    /// Never answers (until the test ends).
    Never,
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

struct State {
    /// Requests whose head arrived, in arrival order (bodies not yet read).
    arrivals: Log<Recorded>,
    /// Requests whose body was read to its end (or its error).
    records: Log<Recorded>,
    handler: Box<Handler>,
}

/// A recording upstream on `127.0.0.1:0`. Stops accepting when dropped.
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    server: TestServer,
    state: Arc<State>,
}

impl Upstream {
    /// An upstream that answers every request `200 upstream ok`.
    pub(crate) async fn start() -> Upstream {
        Upstream::with(|_| Reply::Ok).await
    }

    /// An upstream whose answers `handler` decides from the request head (the
    /// `Recorded` it is given has no body fields filled yet).
    pub(crate) async fn with(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Upstream {
        let state = Arc::new(State {
            arrivals: Log::default(),
            records: Log::default(),
            handler: Box::new(handler),
        });
        let serving = state.clone();
        let server = TestServer::start(move |req| handle(serving.clone(), req)).await;
        Upstream {
            addr: server.addr,
            server,
            state,
        }
    }

    /// How many TCP connections the upstream has accepted.
    pub(crate) fn connections(&self) -> usize {
        self.server.connections()
    }

    /// `http://127.0.0.1:PORT`, for `upstream.url`.
    pub(crate) fn url(&self) -> String {
        self.server.url()
    }

    /// Requests whose head arrived so far.
    pub(crate) fn arrivals(&self) -> Vec<Recorded> {
        self.state.arrivals.all()
    }

    /// Requests fully received so far.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.state.records.all()
    }

    /// Waits until at least `n` request heads arrived; returns them all.
    pub(crate) async fn wait_arrivals(&self, n: usize) -> Vec<Recorded> {
        let arrived = self.state.arrivals.wait_len(n).await;
        arrived.unwrap_or_else(|_| self.timed_out(&format!("{n} request(s) to arrive")))
    }

    /// Waits until at least `n` requests were fully received; returns them all.
    pub(crate) async fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        let received = self.state.records.wait_len(n).await;
        received.unwrap_or_else(|_| self.timed_out(&format!("{n} request(s) to complete")))
    }

    /// The one request the upstream received (fails if it got another count).
    pub(crate) async fn only_request(&self) -> Recorded {
        let mut all = self.wait_requests(1).await;
        assert_eq!(
            all.len(),
            1,
            "expected exactly one upstream request, got {all:#?}"
        );
        all.remove(0)
    }

    fn timed_out(&self, what: &str) -> ! {
        panic!(
            "timed out waiting for {what}; upstream saw {:#?}",
            self.arrivals()
                .iter()
                .map(|r| (&r.method, &r.target))
                .collect::<Vec<_>>()
        );
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let mut rec = Recorded {
        method: req.method().to_string(),
        target: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.uri().to_string()),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_len: 0,
        body_checksum: Checksum::default().0,
        body: Vec::new(),
        body_complete: true,
    };
    state.arrivals.push(rec.clone());
    let reply = (state.handler)(&rec);

    let mut body = req.into_body();
    let mut sum = Checksum::default();
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    sum.update(&data);
                    rec.body_len += data.len() as u64;
                    let room = BODY_KEEP.saturating_sub(rec.body.len());
                    rec.body.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) => {
                rec.body_complete = false;
                break;
            }
        }
    }
    rec.body_checksum = sum.0;
    state.records.push(rec);

    match reply {
        Reply::Ok => ok_response(),
        Reply::Custom {
            status,
            headers,
            body,
        } => {
            let mut resp = Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("x-upstream", "1");
            for (n, v) in headers {
                resp = resp.header(n, v);
            }
            resp.body(full(body)).unwrap()
        }
        Reply::HoldUntil(signal) => {
            signal.wait().await;
            ok_response()
        }
        Reply::Stream { first, then, rest } => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(first))).await;
                then.wait().await;
                let _ = tx.send(Ok(Frame::data(rest))).await;
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|frame| (frame, rx))
            });
            Response::builder()
                .header("x-upstream", "1")
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
        Reply::Never => std::future::pending().await,
    }
}

fn ok_response() -> Response<Body> {
    Response::builder()
        .header("x-upstream", "1")
        .header("content-type", "text/plain")
        .body(full("upstream ok"))
        .unwrap()
}

/// An upstream that hands each accepted TCP connection to the test as is.
pub(crate) struct RawUpstream {
    pub addr: SocketAddr,
    conns: tokio::sync::Mutex<mpsc::UnboundedReceiver<TcpStream>>,
    accept: JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl RawUpstream {
    pub(crate) async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw upstream");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if tx.send(stream).is_err() {
                    return;
                }
            }
        });
        RawUpstream {
            addr,
            conns: tokio::sync::Mutex::new(rx),
            accept,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next accepted connection.
    pub(crate) async fn accept(&self) -> TcpStream {
        timeout(DEADLINE, async { self.conns.lock().await.recv().await })
            .await
            .expect("timed out waiting for the gateway to connect upstream")
            .expect("raw upstream stopped")
    }
}

/// Reads one request head (up to and including the blank line) from a raw
/// connection; returns it as text and any bytes read past it.
pub(crate) async fn read_request_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(i) = super::raw::find(&buf, b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("timed out reading a request head")
            .expect("reading a request head");
        assert!(
            n > 0,
            "connection closed inside a request head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}
