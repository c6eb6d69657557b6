//! One client connection's socket as hyper sees it: the request-head deadline
//! (`server.header_timeout`, from a head's first byte), the idle deadline
//! between requests (`server.keepalive_timeout`), and the answer to an HTTP/2
//! client that skipped the upgrade (prior knowledge) when HTTP/2 is off; with
//! `server.h2c`, the look at the first bytes that tells HTTP/2 from HTTP/1.1.
//!
//! The socket may be TCP or TLS over TCP. On an HTTP/2 connection (`MUX`)
//! streams are multiplexed: it is idle when no stream is in flight, and frames
//! that arrive meanwhile (PING, SETTINGS, WINDOW_UPDATE) do not start a head.
//!
//! Why here and not in hyper: hyper's `header_read_timeout` starts as soon as
//! the connection is ready for a head, so it also runs while a keep-alive
//! connection is idle; an idle limit longer than the head limit (nginx's 75 s
//! against 60 s, a load balancer's 60 s idle timeout) was impossible. hyper
//! polls the socket for bytes whenever it waits for a head, a body or EOF, so
//! a deadline checked where a read would block sees every wait.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The two limits a waiting read is held to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    /// A request head must be complete this long after it started (and the
    /// first one this long after the connection was accepted).
    pub head: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle: Duration,
}

/// What the request side tells the socket side of one connection.
#[derive(Debug, Default)]
pub(super) struct ConnState {
    /// Requests whose response has not been completely written yet.
    busy: AtomicUsize,
    /// The connection was switched to WebSocket: from then on it is a tunnel
    /// (on another task) and the HTTP deadlines no longer apply.
    tunnel: AtomicBool,
    /// Requests started so far: a new value means a new wait began.
    started: AtomicU64,
}

impl ConnState {
    /// Called when hyper hands a parsed request head to the service.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }
}

/// Held by a response body until hyper has written it (or dropped it).
pub(super) struct Busy(Arc<ConnState>);

impl Busy {
    /// The response is a `101`: the socket now belongs to the tunnel.
    pub(super) fn switched(&self) {
        self.0.tunnel.store(true, Ordering::Relaxed);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// A response body that keeps its connection marked busy while it is written.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        _busy: Busy,
    }
}

impl<B> Tracked<B> {
    pub(super) fn new(inner: B, busy: Busy) -> Self {
        Tracked { inner, _busy: busy }
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Which wait the armed timer belongs to, by the value of `started` then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    Nothing,
    /// Waiting for the rest of a head (or for the first one).
    Head(u64),
    /// Idle between requests.
    Idle(u64),
}

/// The start of the HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// What a prior-knowledge HTTP/2 client gets: an empty SETTINGS frame (the
/// server preface) and GOAWAY with HTTP_1_1_REQUIRED (0xd): the HTTP/2 way
/// of saying "use HTTP/1.1", so the client reports why instead of seeing a
/// bare close. (curl 7.88 with prior knowledge reports it; it does not retry.)
const H2_GOAWAY: &[u8] = &[
    0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS, length 0, stream 0
    0, 0, 8, 7, 0, 0, 0, 0, 0, // GOAWAY, length 8, stream 0
    0, 0, 0, 0, // last stream id 0
    0, 0, 0, 0xd, // HTTP_1_1_REQUIRED
];

pub(super) struct ClientIo<S = TcpStream, const MUX: bool = false> {
    stream: S,
    state: Arc<ConnState>,
    limits: Deadlines,
    /// Made on the first wait; reset, never reallocated, after that.
    timer: Option<Pin<Box<Sleep>>>,
    armed: Armed,
    /// The value of `started` that `head_started` speaks about.
    seen: u64,
    /// Bytes arrived while no request was in flight: a head has started.
    head_started: bool,
    /// The first bytes have been looked at (HTTP/2 preface check).
    sniffed: bool,
    /// The timer was polled since it was last armed (its waker is registered).
    registered: bool,
    /// When the connection was accepted: the first head's deadline counts from it.
    accepted: Instant,
}

impl<S, const MUX: bool> ClientIo<S, MUX> {
    /// `refuse_h2`: answer an HTTP/2 preface with GOAWAY (HTTP/2 is off and
    /// hyper would otherwise answer it as a bad HTTP/1.1 request).
    pub(super) fn new(
        stream: S,
        state: Arc<ConnState>,
        limits: Deadlines,
        accepted: Instant,
        refuse_h2: bool,
    ) -> Self {
        ClientIo {
            stream,
            state,
            limits,
            timer: None,
            armed: Armed::Nothing,
            seen: 0,
            head_started: false,
            sniffed: !refuse_h2,
            registered: false,
            accepted,
        }
    }

    fn arm(&mut self, armed: Armed, after: Duration) {
        let from = if armed == Armed::Head(0) {
            self.accepted
        } else {
            Instant::now()
        };
        let deadline = from + after;
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.armed = armed;
        self.registered = false;
    }

    /// Called when a read would block: which deadline applies to this wait,
    /// and whether it has passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        if self.state.tunnel.load(Ordering::Relaxed) {
            return None;
        }
        let busy = self.state.busy.load(Ordering::Relaxed) > 0;
        let started = self.catch_up();
        // While a request is served (its body has `server.body_timeout`, the
        // upstream `upstream.timeout`) the idle deadline is armed already:
        // hyper may not read again once the response is written, so the timer
        // is what wakes this connection to close it if it stays idle.
        let wanted = if busy || !(started == 0 || self.head_started) {
            Armed::Idle(started)
        } else {
            Armed::Head(started)
        };
        if self.armed != wanted {
            let after = if matches!(wanted, Armed::Head(_)) {
                self.limits.head
            } else {
                self.limits.idle
            };
            self.arm(wanted, after);
        }
        let timer = self.timer.as_mut()?;
        if self.registered {
            // Polled since it was armed, by this same task (a tunnel, the only
            // other reader, never gets here), so it wakes us when it fires;
            // reading its state is cheaper than polling it again.
            if !timer.is_elapsed() {
                return None;
            }
        } else if timer.as_mut().poll(cx).is_pending() {
            self.registered = true;
            return None;
        }
        if busy {
            // Still serving: the idle time starts over.
            self.arm(wanted, self.limits.idle);
            self.registered = self.timer.as_mut()?.as_mut().poll(cx).is_pending();
            return None;
        }
        Some(match wanted {
            Armed::Idle(_) => "idle past server.keepalive_timeout",
            _ => "request head not complete within server.header_timeout",
        })
    }

    /// The number of requests started; a new one since last time means the
    /// previous head is complete, so no head is in progress any more.
    fn catch_up(&mut self) -> u64 {
        let started = self.state.started.load(Ordering::Relaxed);
        if started != self.seen {
            self.seen = started;
            self.head_started = false;
        }
        started
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, const MUX: bool> AsyncRead for ClientIo<S, MUX> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                if !got.is_empty() {
                    if !this.sniffed {
                        this.sniffed = true;
                        let n = got.len().min(H2_PREFACE_START.len());
                        if got[..n] == H2_PREFACE_START[..n] && n == H2_PREFACE_START.len() {
                            // Best effort: the socket buffer is empty at this point.
                            let _ = Pin::new(&mut this.stream).poll_write(cx, H2_GOAWAY);
                            tracing::debug!(
                                "HTTP/2 prior knowledge refused with GOAWAY(HTTP_1_1_REQUIRED)"
                            );
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "HTTP/2 without upgrade",
                            )));
                        }
                    }
                    // HTTP/2 frames between streams are not a request head.
                    if !MUX && this.state.busy.load(Ordering::Relaxed) == 0 {
                        // No clock read here: the head deadline is armed at
                        // the next wait, i.e. only if the head does not
                        // complete in this read. The first head's deadline
                        // runs from the accept and is not moved.
                        this.catch_up();
                        this.head_started = true;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.expired(cx) {
                Some(reason) => {
                    tracing::debug!(reason, "closing client connection");
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, reason)))
                }
                None => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin, const MUX: bool> AsyncWrite for ClientIo<S, MUX> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The whole HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream whose first bytes were already read (to choose the protocol) and
/// are handed out again before the rest.
pub(super) struct Prefixed<S> {
    prefix: [u8; 24],
    start: usize,
    end: usize,
    inner: S,
}

/// Reads the first bytes of a cleartext connection until they either are the
/// HTTP/2 preface (prior knowledge: `true`) or cannot be (`false`, HTTP/1.1).
/// An HTTP/1.1 request line differs from the preface within its first few
/// bytes, so this usually takes one read.
pub(super) async fn sniff_h2(mut stream: TcpStream) -> io::Result<(bool, Prefixed<TcpStream>)> {
    let mut prefix = [0u8; 24];
    let mut end = 0;
    let h2 = loop {
        let n = stream.read(&mut prefix[end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        end += n;
        if prefix[..end] != H2_PREFACE[..end] {
            break false;
        }
        if end == H2_PREFACE.len() {
            break true;
        }
    };
    Ok((
        h2,
        Prefixed {
            prefix,
            start: 0,
            end,
            inner: stream,
        },
    ))
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.start < this.end {
            let n = (this.end - this.start).min(buf.remaining());
            buf.put_slice(&this.prefix[this.start..this.start + n]);
            this.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
