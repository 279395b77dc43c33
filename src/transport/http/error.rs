//! HTTP errors in one place: gRPC statuses become grpc-gateway's `google.rpc.Status` JSON with
//! the matching HTTP code; authentication failures add `WWW-Authenticate` (RFC 6750 §3).

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;
use tonic::Code;

use crate::auth::AuthError;

/// An error answered by a REST route.
#[derive(Debug)]
pub enum ApiError {
    Status(tonic::Status),
    Auth(AuthError),
    /// A body over `server.maxRequestBytes`: 413.
    TooLarge,
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        Self::Status(s)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

/// grpc-gateway's mapping from gRPC code to HTTP status.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).expect("valid"),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn status_body(code: Code, message: &str) -> Response {
    let body = json!({"code": code as i32, "message": message, "details": []});
    (http_status(code), Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Status(s) => status_body(s.code(), s.message()),
            ApiError::TooLarge => {
                let body = json!({"code": Code::ResourceExhausted as i32, "message": "request body too large", "details": []});
                (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
            }
            ApiError::Auth(e) => {
                let status: tonic::Status = e.clone().into();
                let mut resp = status_body(status.code(), status.message());
                if status.code() == Code::Unauthenticated {
                    let challenge = format!(
                        "Bearer error=\"invalid_token\", error_description=\"{}\"",
                        e.to_string().replace('"', "'")
                    );
                    if let Ok(v) = HeaderValue::from_str(&challenge) {
                        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                    }
                }
                resp
            }
        }
    }
}

/// A 400 for a body or query the route could not read.
pub fn bad_request(message: impl std::fmt::Display) -> ApiError {
    ApiError::Status(tonic::Status::invalid_argument(message.to_string()))
}

/// A JSON body the route could not read: 413 when over the size limit, else 400.
pub fn json_rejection(e: axum::extract::rejection::JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge
    } else {
        bad_request(e.body_text())
    }
}
