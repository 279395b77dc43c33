//! HTTP errors in one place: gRPC statuses become grpc-gateway's `google.rpc.Status` JSON with
//! the matching HTTP code; authentication failures add `WWW-Authenticate` (RFC 6750 §3).

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;
use tonic::Code;

use crate::auth::AuthError;
use crate::projects::ProjectError;
use crate::store::StoreError;

/// An error answered by a REST route.
#[derive(Debug)]
pub(crate) enum ApiError {
    Status(tonic::Status),
    Auth(AuthError),
    /// PERMISSION_DENIED by the method rules or the role bindings: 403.
    Forbidden(String),
    /// A request the route could not read: 400.
    BadRequest(String),
    /// The projects service refused (mapped straight to HTTP, see [`project_answer`]).
    Project(ProjectError),
    /// A body over `server.maxRequestBytes`: 413.
    TooLarge,
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        Self::Status(s)
    }
}

impl From<ProjectError> for ApiError {
    fn from(e: ProjectError) -> Self {
        Self::Project(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Project(ProjectError::Store(e))
    }
}

/// The one HTTP mapping of a projects error: its grpc-gateway code and message.
fn project_answer(e: ProjectError) -> (Code, String) {
    match e {
        ProjectError::InvalidArgument(m) => (Code::InvalidArgument, m),
        ProjectError::NotFound(m) => (Code::NotFound, m),
        ProjectError::AlreadyExists(m) => (Code::AlreadyExists, m),
        ProjectError::Store(e) => {
            crate::transport::store_errors::log(&e);
            crate::transport::store_errors::code_and_message(&e)
        }
    }
}

/// The code of an authentication refusal: UNAVAILABLE when the session store failed, else
/// UNAUTHENTICATED (as the gRPC layer answers).
fn auth_code(e: &AuthError) -> Code {
    match e {
        AuthError::Unavailable => Code::Unavailable,
        _ => Code::Unauthenticated,
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

/// grpc-gateway's mapping from gRPC code to HTTP status.
pub(crate) fn http_status(code: Code) -> StatusCode {
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
            ApiError::Forbidden(m) => status_body(Code::PermissionDenied, &m),
            ApiError::BadRequest(m) => status_body(Code::InvalidArgument, &m),
            ApiError::Project(e) => {
                let (code, message) = project_answer(e);
                status_body(code, &message)
            }
            ApiError::TooLarge => {
                let body = json!({"code": Code::ResourceExhausted as i32, "message": "request body too large", "details": []});
                (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
            }
            ApiError::Auth(e) => {
                let code = auth_code(&e);
                let mut resp = status_body(code, &e.to_string());
                if code == Code::Unauthenticated {
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
pub(crate) fn bad_request(message: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(message.to_string())
}

/// A JSON body the route could not read: 413 when over the size limit, else 400.
pub(crate) fn json_rejection(e: axum::extract::rejection::JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge
    } else {
        bad_request(e.body_text())
    }
}
