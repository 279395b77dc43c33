//! The upstream's gRPC response body, streamed through, and the bounded metric labels.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Frame;

use super::super::Gateway;
use super::Protocol;

/// A bounded label for a gRPC status code.
pub(super) fn code_label(v: &str) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    CODES.iter().find(|c| **c == v).copied().unwrap_or("other")
}

/// A bounded label for an HTTP status (its class).
pub(super) fn status_label(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The upstream's gRPC response body, streamed through: frames pass as they come; a reset
/// stream ends with UNAVAILABLE and a passed deadline with DEADLINE_EXCEEDED (as trailers),
/// and the final status is counted.
pub(super) struct GrpcBody {
    pub(super) inner: RecvStream,
    /// Set once the DATA frames have ended (the trailers are next).
    pub(super) data_done: bool,
    pub(super) deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    pub(super) upstream: String,
    /// Set while the status is still to be counted.
    pub(super) gateway: Option<Arc<Gateway>>,
    pub(super) protocol: Protocol,
    pub(super) done: bool,
}

impl GrpcBody {
    fn finish(
        &mut self,
        code: &'static str,
        message: Option<&str>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.done = true;
        if let Some(g) = self.gateway.take() {
            g.count(&self.upstream, self.protocol, code);
        }
        match message {
            None => Poll::Ready(None),
            Some(m) => {
                let mut t = HeaderMap::new();
                t.insert("grpc-status", HeaderValue::from_static(code));
                if let Ok(v) = HeaderValue::from_str(m) {
                    t.insert("grpc-message", v);
                }
                Poll::Ready(Some(Ok(Frame::trailers(t))))
            }
        }
    }

    /// The upstream reset the stream or the connection failed: UNAVAILABLE, as trailers.
    fn failed(
        &mut self,
        e: &h2::Error,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        tracing::warn!(upstream = %self.upstream, error = %e, "upstream stream failed");
        let m = format!("upstream {} is unavailable (stream reset)", self.upstream);
        self.finish("14", Some(&m))
    }
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(d) = this.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                let m = format!("deadline exceeded waiting for upstream {}", this.upstream);
                return this.finish("4", Some(&m));
            }
        }
        if !this.data_done {
            match this.inner.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    // Passed on: the upstream may send as much again.
                    let _ = this.inner.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return this.failed(&e),
                Poll::Ready(None) => this.data_done = true,
            }
        }
        match this.inner.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(None)) => this.finish("0", None),
            Poll::Ready(Ok(Some(trailers))) => {
                let code = trailers
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map(code_label)
                    .unwrap_or("other");
                this.done = true;
                if let Some(g) = this.gateway.take() {
                    g.count(&this.upstream, this.protocol, code);
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Ready(Err(e)) => this.failed(&e),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

use std::future::Future as _;
