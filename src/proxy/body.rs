//! A request body that streams through untouched but refuses to grow past a
//! limit or to stall, and tells the sender how it ended.
//!
//! Bodies are never buffered: each frame is passed on as it arrives and only its
//! length is counted. When the count passes the limit, the client's framing
//! breaks, or nothing arrives for `server.body_timeout`, the body yields an
//! error, which makes hyper abort the upstream request; the [`BodyWatch`] says
//! which it was so the gateway answers 413, 400 or 408 when no response has
//! started yet.
//! The watch also wakes the sender when the body has been sent completely:
//! `upstream.timeout` only counts from then, so a slow upload is not an
//! upstream timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a [`LimitedBody`] yields once the limit is passed.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the configured max_body")]
pub(crate) struct BodyTooLarge;

/// The error a [`LimitedBody`] yields when the client sent nothing for `body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled past server.body_timeout")]
pub(crate) struct BodyStalled;

/// How a request body ended, as far as the sender needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// Still streaming (or never polled).
    Open,
    /// Every byte was handed to the upstream connection.
    Complete,
    /// Grew past `max_body`.
    TooLarge,
    /// The client's framing broke (bad chunk, short body, closed mid-body).
    ClientError,
    /// Nothing arrived for `server.body_timeout`.
    Stalled,
}

/// Shared between the body (which writes it) and the sender (which reads it).
#[derive(Debug)]
pub(crate) struct BodyWatch {
    end: AtomicU8,
    /// Woken once when the body ends, however it ends.
    ended: Notify,
}

impl BodyWatch {
    fn new() -> BodyWatch {
        BodyWatch {
            end: AtomicU8::new(BodyEnd::Open as u8),
            ended: Notify::new(),
        }
    }

    pub(crate) fn end(&self) -> BodyEnd {
        match self.end.load(Ordering::Acquire) {
            1 => BodyEnd::Complete,
            2 => BodyEnd::TooLarge,
            3 => BodyEnd::ClientError,
            4 => BodyEnd::Stalled,
            _ => BodyEnd::Open,
        }
    }

    fn finish(&self, end: BodyEnd) {
        self.end.store(end as u8, Ordering::Release);
        // `notify_one` keeps a permit when nobody waits yet, so a sender that
        // starts waiting after the end still wakes at once.
        self.ended.notify_one();
    }

    /// Resolves once the body has ended (completely or not).
    pub(crate) async fn ended(&self) {
        if self.end() != BodyEnd::Open {
            return;
        }
        self.ended.notified().await;
    }
}

pin_project! {
    pub struct LimitedBody {
        #[pin]
        inner: Incoming,
        remaining: u64,
        watch: Arc<BodyWatch>,
        idle: Duration,
        // Made only once the body actually has to wait for the client: a
        // request without a body (most of them) never arms a timer.
        stall: Option<Pin<Box<Sleep>>>,
    }
}

impl LimitedBody {
    /// Wraps `inner`; returns the body and the watch that tells how it ended.
    pub(crate) fn new(inner: Incoming, limit: u64, idle: Duration) -> (Self, Arc<BodyWatch>) {
        let watch = Arc::new(BodyWatch::new());
        (
            LimitedBody {
                inner,
                remaining: limit,
                watch: watch.clone(),
                idle,
                stall: None,
            },
            watch,
        )
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(polled) => polled,
            Poll::Pending => {
                let idle = *this.idle;
                let stall = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                ready!(stall.as_mut().poll(cx));
                this.watch.finish(BodyEnd::Stalled);
                return Poll::Ready(Some(Err(Box::new(BodyStalled))));
            }
        };
        match polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        this.watch.finish(BodyEnd::TooLarge);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    *this.remaining -= len;
                }
                // The idle limit counts from the last frame.
                if let Some(stall) = this.stall.as_mut() {
                    stall.as_mut().reset(Instant::now() + *this.idle);
                }
                if this.inner.is_end_stream() {
                    this.watch.finish(BodyEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.watch.finish(BodyEnd::ClientError);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            None => {
                this.watch.finish(BodyEnd::Complete);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
