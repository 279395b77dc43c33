//! The Connect protocol (connectrpc.com/docs/protocol) on flyteauth's own services, unary
//! only: `POST /package.Service/Method` with `content-type: application/proto` or
//! `application/json`, over HTTP/1.1 or HTTP/2, with or without TLS, on the one port.
//!
//! A Connect call is translated into a gRPC call on the same tonic routes that serve gRPC and
//! gRPC-web (as tonic-web does for gRPC-web), so the one [`crate::transport::grpc::auth_layer::AuthLayer`]
//! around each protected service decides for all three protocols: bearer token in
//! `authorization` or the configured key, or the session cookie with the CSRF header and an
//! allowed `Origin`. The gRPC answer is translated back: the message (binary, or proto3 JSON
//! through `prost-reflect`), or a Connect error body with Connect's HTTP status.
//!
//! Why not a Connect crate: the maintained Rust implementation (`connectrpc`) brings its own
//! message types (buffa) and service traits; serving Connect with it would mean a second
//! implementation of every service and a second place where authentication is decided.
//!
//! Per request, in order: the body is read (up to `server.maxRequestBytes`; over it, drained
//! a bounded amount, see [`crate::transport::drain`]) so that every answer, refusals included, reaches a
//! client that is still sending; then procedure, protocol version, codec, compression
//! (`identity`, `gzip`) and `connect-timeout-ms` are checked; the message is decompressed
//! (again bounded), converted, framed and handed to the gRPC routes under the deadline.

mod codec;
pub(crate) mod error;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};

pub(crate) use codec::{Codec, Procedures};
pub(crate) use error::ConnectError;

use crate::transport::drain::{read_limited, BodyError};

/// Header of the protocol version (`1`); optional for unary calls, checked when sent.
const PROTOCOL_VERSION: &str = "connect-protocol-version";
/// The caller's deadline in milliseconds.
const TIMEOUT_MS: &str = "connect-timeout-ms";

/// Whether a request is a Connect call: `POST` to `/package.Service/Method` with a Connect
/// content type (`application/proto`, `application/json`, or a streaming
/// `application/connect+…`, which is answered `unimplemented`).
pub(crate) fn is_connect<B>(req: &Request<B>) -> bool {
    if req.method() != http::Method::POST || !is_procedure_path(req.uri().path()) {
        return false;
    }
    let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/proto")
        || media.eq_ignore_ascii_case("application/json")
        || media
            .get(..20)
            .is_some_and(|p| p.eq_ignore_ascii_case("application/connect+"))
}

/// `/package.Service/Method`: two segments, the first a dotted name.
fn is_procedure_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let Some((service, method)) = rest.split_once('/') else {
        return false;
    };
    !service.starts_with('.')
        && service.contains('.')
        && !method.is_empty()
        && !method.contains('/')
}

/// The Connect side of the one port, in front of the gRPC routes.
#[derive(Clone)]
pub(crate) struct ConnectService {
    grpc: tonic::service::Routes,
    procedures: Arc<Procedures>,
    max_bytes: usize,
}

impl ConnectService {
    pub(crate) fn new(grpc: tonic::service::Routes, max_bytes: usize) -> Self {
        Self {
            grpc,
            procedures: Arc::new(Procedures::builtin()),
            max_bytes,
        }
    }
}

impl Service<Request<Body>> for ConnectService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let h1 = req.version() <= http::Version::HTTP_11;
            Ok(match this.unary(req).await {
                Ok(resp) => resp,
                Err(Refusal { error, close }) => {
                    let mut resp = error.into_response();
                    if close && h1 {
                        // Part of the body is still unread: the client must not reuse this
                        // connection (hyper closes it after the answer).
                        resp.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    resp
                }
            })
        })
    }
}

/// A refused call: the error, and whether the connection must close (body left unread).
struct Refusal {
    error: ConnectError,
    close: bool,
}

impl From<ConnectError> for Refusal {
    fn from(error: ConnectError) -> Self {
        Self {
            error,
            close: false,
        }
    }
}

fn refuse(code: tonic::Code, message: impl Into<String>) -> Refusal {
    ConnectError::new(code, message).into()
}

impl ConnectService {
    async fn unary(self, req: Request<Body>) -> Result<Response<Body>, Refusal> {
        let (mut parts, body) = req.into_parts();
        let body = read_limited(body, self.max_bytes).await;

        let path = parts.uri.path().to_owned();
        let Some(procedure) = self.procedures.get(&path).cloned() else {
            return Err(Refusal {
                error: ConnectError::unknown_procedure(&path),
                close: matches!(body, Err(BodyError::TooLarge { drained: false })),
            });
        };
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if procedure.streaming || content_type.to_ascii_lowercase().contains("connect+") {
            return Err(refuse(
                tonic::Code::Unimplemented,
                format!("{path} is served over Connect as a unary call only; use gRPC for streams"),
            ));
        }
        if let Some(v) = parts.headers.get(PROTOCOL_VERSION) {
            if v.as_bytes() != b"1" {
                return Err(refuse(
                    tonic::Code::InvalidArgument,
                    "connect-protocol-version must be \"1\"",
                ));
            }
        }
        let Some(codec) = Codec::from_content_type(content_type) else {
            return Err(refuse(
                tonic::Code::InvalidArgument,
                "content-type must be application/proto or application/json (UTF-8)",
            ));
        };
        let gzip = match parts
            .headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("identity") | Some("") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(refuse(
                    tonic::Code::Unimplemented,
                    format!(
                        "content-encoding {:?} is not supported: use gzip or identity",
                        other.chars().take(32).collect::<String>()
                    ),
                ))
            }
        };
        let timeout = parse_timeout(parts.headers.get(TIMEOUT_MS))?;

        let body = body.map_err(|e| match e {
            BodyError::TooLarge { drained } => Refusal {
                error: ConnectError::new(
                    tonic::Code::ResourceExhausted,
                    format!(
                        "request body larger than server.maxRequestBytes ({} bytes)",
                        self.max_bytes
                    ),
                ),
                close: !drained,
            },
            BodyError::Broken => refuse(tonic::Code::Cancelled, "the request body was cut off"),
        })?;
        let body = if gzip {
            gunzip(&body, self.max_bytes)?
        } else {
            body
        };
        let message = codec::request_to_proto(codec, &procedure.input, body)
            .map_err(|m| refuse(tonic::Code::InvalidArgument, m))?;

        // The gRPC call: same path, headers (credentials, cookies, Origin, CSRF, request id)
        // and extensions (peer, public URL); Connect's own headers replaced by gRPC's.
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::ACCEPT_ENCODING,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::TE,
        ] {
            parts.headers.remove(name);
        }
        let connect_headers: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|k| k.as_str().starts_with("connect-") || k.as_str().starts_with("grpc-"))
            .cloned()
            .collect();
        for name in connect_headers {
            parts.headers.remove(name);
        }
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
        if let Some(t) = timeout {
            if let Ok(v) = HeaderValue::from_str(&format!("{}m", t.as_millis())) {
                parts.headers.insert("grpc-timeout", v);
            }
        }
        parts.version = http::Version::HTTP_2;
        let mut framed = BytesMut::with_capacity(5 + message.len());
        framed.put_u8(0);
        framed
            .put_u32(u32::try_from(message.len()).map_err(|_| {
                refuse(tonic::Code::ResourceExhausted, "request message too large")
            })?);
        framed.put_slice(&message);
        let grpc_req = Request::from_parts(parts, Body::from(framed.freeze()));

        let call = async {
            let resp = self
                .grpc
                .oneshot(grpc_req)
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            let (head, body) = resp.into_parts();
            if let Some(status) = tonic::Status::from_header_map(&head.headers) {
                if status.code() != tonic::Code::Ok {
                    return Err(status);
                }
            }
            let collected = body.collect().await?;
            let trailers = collected.trailers().cloned().unwrap_or_default();
            match tonic::Status::from_header_map(&trailers) {
                Some(s) if s.code() == tonic::Code::Ok => {}
                Some(s) => return Err(s),
                None if head.headers.contains_key("grpc-status") => {}
                None => return Err(tonic::Status::internal("the call ended without a status")),
            }
            Ok((head.headers, collected.to_bytes(), trailers))
        };
        let outcome = match timeout {
            Some(t) => tokio::time::timeout(t, call).await.unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(
                    "the call's deadline (connect-timeout-ms) passed",
                ))
            }),
            None => call.await,
        };
        let (headers, data, trailers) = outcome.map_err(|s| Refusal::from(grpc_error(&s)))?;
        let message = unframe(data)?;
        let body = codec::response_from_proto(codec, &procedure.output, message)
            .map_err(|m| refuse(tonic::Code::Internal, m))?;

        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = StatusCode::OK;
        let out = resp.headers_mut();
        copy_metadata(&headers, out, "");
        copy_metadata(&trailers, out, "trailer-");
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(codec.content_type()),
        );
        Ok(resp)
    }
}

/// The gRPC status as a Connect error. tonic reports a message over the decoding limit as
/// OUT_OF_RANGE (Connect, like gRPC's guide, says RESOURCE_EXHAUSTED) and a message that does
/// not decode as INTERNAL (connect-go says INVALID_ARGUMENT: the caller's input is wrong).
fn grpc_error(status: &tonic::Status) -> ConnectError {
    if status.code() == tonic::Code::OutOfRange
        && status.message().contains("message length too large")
    {
        return ConnectError::new(tonic::Code::ResourceExhausted, status.message());
    }
    if status.code() == tonic::Code::Internal
        && status
            .message()
            .starts_with("failed to decode Protobuf message")
    {
        return ConnectError::new(tonic::Code::InvalidArgument, status.message());
    }
    ConnectError::from_status(status)
}

/// `connect-timeout-ms`: a positive integer of at most 10 digits.
fn parse_timeout(value: Option<&HeaderValue>) -> Result<Option<Duration>, Refusal> {
    let Some(v) = value else { return Ok(None) };
    let s = v.as_bytes();
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return Err(refuse(
            tonic::Code::InvalidArgument,
            "connect-timeout-ms must be a positive integer of at most 10 digits",
        ));
    }
    let ms: u64 = std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Some(Duration::from_millis(ms)))
}

/// Decompresses a gzip body, at most `max` bytes of output, as a Connect refusal when not.
fn gunzip(body: &[u8], max: usize) -> Result<Bytes, Refusal> {
    use crate::transport::gzip::GunzipError;
    crate::transport::gzip::gunzip(body, max)
        .map(Bytes::from)
        .map_err(|e| match e {
            GunzipError::Invalid => refuse(
                tonic::Code::InvalidArgument,
                "the request body is not valid gzip",
            ),
            GunzipError::TooLarge => refuse(
                tonic::Code::ResourceExhausted,
                format!("decompressed request larger than server.maxRequestBytes ({max} bytes)"),
            ),
        })
}

/// The one message of a unary gRPC response body.
fn unframe(data: Bytes) -> Result<Bytes, Refusal> {
    if data.len() < 5 || data[0] != 0 {
        return Err(refuse(
            tonic::Code::Internal,
            "the service answered no (uncompressed) message",
        ));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data.len() != 5 + len {
        return Err(refuse(
            tonic::Code::Internal,
            "the service answered other than one message",
        ));
    }
    Ok(data.slice(5..))
}

/// Response metadata as Connect headers (trailers prefixed `trailer-`); gRPC's own and
/// framing headers are not metadata.
fn copy_metadata(from: &HeaderMap, to: &mut HeaderMap, prefix: &str) {
    for (name, value) in from {
        let n = name.as_str();
        if n.starts_with("grpc-")
            || n == "content-type"
            || n == "content-length"
            || n == "transfer-encoding"
            || n == "te"
        {
            continue;
        }
        if prefix.is_empty() {
            to.append(name.clone(), value.clone());
        } else if let Ok(name) = HeaderName::from_bytes(format!("{prefix}{n}").as_bytes()) {
            to.append(name, value.clone());
        }
    }
}

#[cfg(test)]
mod tests;
