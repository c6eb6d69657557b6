//! A request body that streams through untouched but refuses to grow past a limit.
//!
//! Bodies are never buffered: each frame is passed on as it arrives and only its
//! length is counted. When the count passes the limit the body yields an error,
//! which makes hyper abort the upstream request, and raises a flag so the gateway
//! can answer 413 when no response has started yet (SPEC §9 "Limits").

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a [`LimitedBody`] yields once the limit is passed.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the configured max_body")]
pub struct BodyTooLarge;

pin_project! {
    pub struct LimitedBody {
        #[pin]
        inner: Incoming,
        remaining: u64,
        tripped: Arc<AtomicBool>,
    }
}

impl LimitedBody {
    /// Wraps `inner`; returns the body and a flag that turns true if the limit trips.
    pub fn new(inner: Incoming, limit: u64) -> (Self, Arc<AtomicBool>) {
        let tripped = Arc::new(AtomicBool::new(false));
        (LimitedBody { inner, remaining: limit, tripped: tripped.clone() }, tripped)
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        this.tripped.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
