//! A forwarded call that ends at the gateway, answered in the caller's protocol (gRPC
//! status, Connect error JSON, grpc-gateway JSON).

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use tonic::Code;

use super::Protocol;
use crate::auth::AuthError;

/// Why a forwarded call ended at the gateway.
#[derive(Debug)]
pub(super) enum CallError {
    Auth(AuthError),
    Forbidden(String),
    TooLarge,
    Malformed(&'static str),
    /// The client went away while sending.
    Cancelled,
    Unavailable(String),
    Deadline(String),
    NoRoute,
}

impl CallError {
    pub(super) fn status(&self) -> tonic::Status {
        match self {
            Self::Auth(e) => e.clone().into(),
            Self::Forbidden(m) => tonic::Status::permission_denied(m.clone()),
            Self::TooLarge => tonic::Status::resource_exhausted(
                "request message larger than server.maxRequestBytes",
            ),
            Self::Malformed(m) => tonic::Status::invalid_argument(*m),
            Self::Cancelled => tonic::Status::cancelled("the client went away"),
            Self::Unavailable(u) => {
                tonic::Status::unavailable(format!("upstream {u} is unavailable"))
            }
            Self::Deadline(u) => tonic::Status::deadline_exceeded(format!(
                "deadline exceeded waiting for upstream {u}"
            )),
            Self::NoRoute => tonic::Status::unimplemented("no upstream serves this call"),
        }
    }
}

/// The Connect protocol's name of a code.
fn connect_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// An error in the caller's protocol.
pub(super) fn error_response(protocol: Protocol, e: CallError) -> Response<axum::body::Body> {
    let status = e.status();
    match (protocol, e) {
        (Protocol::Grpc | Protocol::GrpcWeb, _) => status.into_http::<axum::body::Body>(),
        (Protocol::Connect, e) => {
            let http_status = match status.code() {
                Code::Cancelled => StatusCode::from_u16(499).expect("valid"),
                c => crate::transport::http::error::http_status(c),
            };
            let body = serde_json::json!({"code": connect_code(status.code()), "message": status.message()});
            let mut resp = Response::new(axum::body::Body::from(body.to_string()));
            *resp.status_mut() = http_status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let CallError::Auth(a) = e {
                www_authenticate(resp.headers_mut(), &a);
            }
            resp
        }
        (Protocol::Http, CallError::Auth(a)) => axum::response::IntoResponse::into_response(
            crate::transport::http::error::ApiError::Auth(a),
        ),
        (Protocol::Http, CallError::TooLarge) => axum::response::IntoResponse::into_response(
            crate::transport::http::error::ApiError::TooLarge,
        ),
        (Protocol::Http, _) => axum::response::IntoResponse::into_response(
            crate::transport::http::error::ApiError::Status(status),
        ),
    }
}

fn www_authenticate(h: &mut HeaderMap, e: &AuthError) {
    if tonic::Status::from(e.clone()).code() == Code::Unauthenticated {
        let v = format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            e.to_string().replace('"', "'")
        );
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
    }
}
