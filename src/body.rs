//! The one body type keygate sends and receives. Requests stream from the
//! caller through [`Body::limited`], which counts bytes and fails the stream
//! the moment `max_request_body` is passed (a `Content-Length` over the
//! limit is refused before this, with 413 and no upstream call). Responses
//! stream from the upstream unchanged; keygate's own answers are `Full`.
//! Nothing is buffered whole except through [`read_at_most`], which is
//! bounded.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads a whole body of at most `limit` bytes: the one place keygate
/// buffers a body (admin requests, token and JWKS answers, a small request
/// kept for one retry). Past `limit` the error is an
/// [`http_body_util::LengthLimitError`]; otherwise it is the body's own.
pub async fn read_at_most<B>(body: B, limit: usize) -> Result<Bytes, BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    #[expect(
        clippy::disallowed_methods,
        reason = "wrapped in `Limited`: at most `limit` bytes are held"
    )]
    let collected =
        http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await?;
    Ok(collected.to_bytes())
}

#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body over the connector's max_request_body")
    }
}

impl std::error::Error for BodyTooLarge {}

#[derive(Debug)]
pub enum Body {
    Full(Option<Bytes>),
    Stream(Incoming),
    Limited {
        inner: Incoming,
        remaining: u64,
        tripped: Arc<AtomicBool>,
    },
}

impl Body {
    pub fn empty() -> Self {
        Body::Full(None)
    }

    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        Body::Full((!b.is_empty()).then_some(b))
    }

    /// Streams `inner`, failing once more than `limit` bytes pass; `tripped`
    /// tells the proxy afterwards that the failure was the limit (→ 413).
    pub fn limited(inner: Incoming, limit: u64, tripped: Arc<AtomicBool>) -> Self {
        Body::Limited {
            inner,
            remaining: limit,
            tripped,
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Body::Limited {
                inner,
                remaining,
                tripped,
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        let len = data.len() as u64;
                        if len > *remaining {
                            tripped.store(true, Ordering::Release);
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                        }
                        *remaining -= len;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                other => other.map_err(Into::into),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Stream(i) => i.is_end_stream(),
            Body::Limited { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(i) => i.size_hint(),
            Body::Limited { inner, .. } => inner.size_hint(),
        }
    }
}
