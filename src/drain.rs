//! Reading what is left of a refused request's body before answering (DESIGN.md §14).
//!
//! An HTTP/1.1 request refused before its body was read (no token, wrong CSRF, a foreign
//! Origin) leaves that body on the connection; hyper then closes the connection after the
//! response, and a client still streaming a chunked body sees EPIPE or a reset instead of its
//! gRPC / Connect status. Draining up to the request limit first lets the answer arrive on a
//! connection that stays healthy. The body's own deadline (`server.timeouts.body`, set by the
//! server's dispatch) bounds the wait. HTTP/2 needs none of this (a stream is reset alone).
//!
//! Any protocol layer can use it: the gRPC auth layer does; a Connect handler can call
//! [`drain`] the same way before returning its error.

use http_body::Body;
use http_body_util::BodyExt;

/// Marks a request that arrived over HTTP/1.x (set by the server's dispatch: tonic-web
/// rewrites a gRPC-web request's version to HTTP/2).
#[derive(Debug, Clone, Copy)]
pub struct Http1;

/// Whether a refused request of `version` should have its body drained first.
pub fn needs_drain(version: http::Version, body_is_end: bool) -> bool {
    version <= http::Version::HTTP_11 && !body_is_end
}

/// [`needs_drain`] for a request, by its [`Http1`] mark or its version.
pub fn request_needs_drain<B: Body>(req: &http::Request<B>) -> bool {
    let version = if req.extensions().get::<Http1>().is_some() {
        http::Version::HTTP_11
    } else {
        req.version()
    };
    needs_drain(version, req.body().is_end_stream())
}

/// Reads and discards `body` until it ends, fails, or more than `limit` bytes arrived.
/// Returns `true` when the body was read to its end.
pub async fn drain<B>(body: B, limit: usize) -> bool
where
    B: Body + Unpin,
{
    let mut body = body;
    let mut seen = 0usize;
    loop {
        match body.frame().await {
            None => return true,
            Some(Err(_)) => return false,
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    seen = seen.saturating_add(bytes::Buf::remaining(data));
                    if seen > limit {
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_to_the_end_or_stops_at_the_limit() {
        let small = http_body_util::Full::new(bytes::Bytes::from_static(b"0123456789"));
        assert!(drain(small, 100).await);
        let big = http_body_util::Full::new(bytes::Bytes::from(vec![0u8; 200]));
        assert!(!drain(big, 100).await);
        assert!(needs_drain(http::Version::HTTP_11, false));
        assert!(!needs_drain(http::Version::HTTP_2, false));
        assert!(!needs_drain(http::Version::HTTP_11, true));
    }
}
