//! Connect errors on the wire: a JSON body `{"code": "...", "message": "..."}` with the HTTP
//! status the Connect protocol assigns to the code (connectrpc.com/docs/protocol, "Error
//! Codes", as amended by Connect RFC 003). Every gRPC status maps here, exhaustively.

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};

/// A Connect error about to be written: the code and a short, non-secret message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectError {
    pub code: tonic::Code,
    pub message: String,
    /// The HTTP status, when it is not the code's own (an unknown procedure: 404).
    status: Option<StatusCode>,
}

impl ConnectError {
    pub(crate) fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: None,
        }
    }

    /// A procedure flyteauth does not serve: `unimplemented` in an HTTP 404 (the answer of a
    /// Connect server's router to a path it does not know).
    pub(crate) fn unknown_procedure(path: &str) -> Self {
        Self {
            code: tonic::Code::Unimplemented,
            message: format!("{} is not served here", truncate(path, 200)),
            status: Some(StatusCode::NOT_FOUND),
        }
    }

    /// From a gRPC status of the translated call.
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        Self::new(status.code(), status.message())
    }

    pub(crate) fn http_status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| http_status(self.code))
    }

    /// The response: JSON error body, `content-type: application/json`.
    pub(crate) fn into_response(self) -> Response<Body> {
        let status = self.http_status();
        let mut body = serde_json::Map::new();
        body.insert("code".into(), code_name(self.code).into());
        if !self.message.is_empty() {
            body.insert("message".into(), self.message.into());
        }
        let mut resp = Response::new(Body::from(
            serde_json::to_vec(&serde_json::Value::Object(body)).unwrap_or_default(),
        ));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The Connect name of a code (`snake_case`).
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "canceled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a Connect error code.
pub(crate) fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code::*;
    match code {
        Ok => StatusCode::OK,
        // 499 Client Closed Request (nginx's; not in the http crate's constants).
        Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Unknown | Internal | DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        InvalidArgument | FailedPrecondition | OutOfRange => StatusCode::BAD_REQUEST,
        DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists | Aborted => StatusCode::CONFLICT,
        PermissionDenied => StatusCode::FORBIDDEN,
        ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_connect_names_and_statuses() {
        let cases = [
            (tonic::Code::Unauthenticated, "unauthenticated", 401),
            (tonic::Code::PermissionDenied, "permission_denied", 403),
            (tonic::Code::ResourceExhausted, "resource_exhausted", 429),
            (tonic::Code::InvalidArgument, "invalid_argument", 400),
            (tonic::Code::FailedPrecondition, "failed_precondition", 400),
            (tonic::Code::NotFound, "not_found", 404),
            (tonic::Code::AlreadyExists, "already_exists", 409),
            (tonic::Code::Unimplemented, "unimplemented", 501),
            (tonic::Code::Unavailable, "unavailable", 503),
            (tonic::Code::DeadlineExceeded, "deadline_exceeded", 504),
            (tonic::Code::Cancelled, "canceled", 499),
            (tonic::Code::Internal, "internal", 500),
        ];
        for (code, name, status) in cases {
            assert_eq!(code_name(code), name);
            assert_eq!(http_status(code).as_u16(), status, "{name}");
        }
    }

    #[test]
    fn unknown_procedure_is_unimplemented_in_a_404() {
        let e = ConnectError::unknown_procedure("/x.Y/Z");
        assert_eq!(e.code, tonic::Code::Unimplemented);
        assert_eq!(e.http_status(), StatusCode::NOT_FOUND);
    }
}
