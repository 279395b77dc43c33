//! "Read, or drain, then answer": a request body read up to a limit, and when it is over the
//! limit, drained a bounded amount more before the refusal is written. An HTTP/1.1 client
//! still streaming its body (chunked, as connect-node sends) then reads the answer in its own
//! protocol instead of a connection reset (DESIGN §14).
//!
//! The same holds for a request refused before its body was read at all (no token, wrong
//! CSRF, a foreign Origin): hyper would close the connection after the response under a client
//! still sending, so the gRPC auth layer drains it first ([`request_needs_drain`], [`drain`]).
//! HTTP/2 needs none of this (a stream is reset alone).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

/// How long an oversized body is drained before the refusal is written regardless.
pub(crate) const DRAIN_WINDOW: Duration = Duration::from_secs(2);
/// How much of an oversized body is drained, in multiples of the limit.
pub(crate) const DRAIN_FACTOR: usize = 4;

/// Why a body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over the limit. `drained`: the rest of the body was read and discarded, so the
    /// connection is clean; otherwise the answer should close it.
    TooLarge { drained: bool },
    /// The client broke off or the body was malformed (HTTP framing).
    Broken,
}

/// Marks a request that arrived over HTTP/1.x (set by the server's dispatch: tonic-web
/// rewrites a gRPC-web request's version to HTTP/2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Http1;

/// Whether a refused request of `version` should have its body drained first.
pub(crate) fn needs_drain(version: http::Version, body_is_end: bool) -> bool {
    version <= http::Version::HTTP_11 && !body_is_end
}

/// [`needs_drain`] for a request, by its [`Http1`] mark or its version.
pub(crate) fn request_needs_drain<B: Body>(req: &http::Request<B>) -> bool {
    let version = if req.extensions().get::<Http1>().is_some() {
        http::Version::HTTP_11
    } else {
        req.version()
    };
    needs_drain(version, req.body().is_end_stream())
}

/// Reads `body` whole when it is at most `limit` bytes. Over the limit, reads on and discards
/// up to [`DRAIN_FACTOR`] × `limit` more bytes for at most [`DRAIN_WINDOW`], then gives up on
/// it.
pub(crate) async fn read_limited<B>(mut body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > limit as u64 {
        let drained = drain(&mut body, limit.saturating_mul(DRAIN_FACTOR)).await;
        return Err(BodyError::TooLarge { drained });
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                let drained = drain(&mut body, limit.saturating_mul(DRAIN_FACTOR)).await;
                return Err(BodyError::TooLarge { drained });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards up to `budget` bytes of what is left of `body`, for at most
/// [`DRAIN_WINDOW`]. True when the body ended within that.
pub(crate) async fn drain<B>(body: &mut B, budget: usize) -> bool
where
    B: Body<Data = Bytes> + Unpin,
{
    let work = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(d) = f.into_data() {
                        seen += d.len();
                        if seen > budget {
                            return false;
                        }
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_WINDOW, work)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn within_the_limit_is_read_whole() {
        let b = read_limited(Full::new(Bytes::from_static(b"hello")), 5)
            .await
            .unwrap();
        assert_eq!(&b[..], b"hello");
    }

    #[tokio::test]
    async fn over_the_limit_is_drained_when_small_enough() {
        // Known length over the limit: refused without buffering, drained.
        let e = read_limited(Full::new(Bytes::from(vec![0u8; 10])), 5).await;
        assert_eq!(e, Err(BodyError::TooLarge { drained: true }));
        // Streamed in chunks: refused once over, the rest drained.
        let chunks = (0..4).map(|_| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![1u8; 4])))
        });
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        let e = read_limited(body, 6).await;
        assert_eq!(e, Err(BodyError::TooLarge { drained: true }));
    }

    #[tokio::test]
    async fn far_over_the_limit_is_not_drained_for_ever() {
        let chunks = (0..100).map(|_| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![1u8; 4])))
        });
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        let e = read_limited(body, 8).await;
        assert_eq!(e, Err(BodyError::TooLarge { drained: false }));
    }

    #[test]
    fn only_unfinished_http1_bodies_are_drained() {
        assert!(needs_drain(http::Version::HTTP_11, false));
        assert!(!needs_drain(http::Version::HTTP_2, false));
        assert!(!needs_drain(http::Version::HTTP_11, true));
    }
}
