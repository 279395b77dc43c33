//! RFC 6749 §5.2 errors: one value carries the wire code, the description and the HTTP
//! status (the transport writes it, `Cache-Control: no-store`).

use http::StatusCode;

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
    pub status: StatusCode,
    /// Answer `WWW-Authenticate: Basic` (client authentication via Basic failed).
    pub basic_challenge: bool,
    /// `Retry-After` seconds (rate limiting).
    pub retry_after: Option<i64>,
    /// What went wrong underneath (a store failure's own text): for the log line the
    /// transport writes when it answers, never sent to the client.
    pub cause: Option<String>,
}

impl OAuthError {
    fn new(error: &'static str, status: StatusCode, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
            status,
            basic_challenge: false,
            retry_after: None,
            cause: None,
        }
    }
    /// 429 after too many failed client authentications.
    pub fn too_many_attempts(retry_after: i64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                "invalid_client",
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed client authentications; retry later",
            )
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", StatusCode::BAD_REQUEST, d)
    }
    pub fn invalid_client(d: impl Into<String>, basic: bool) -> Self {
        Self {
            basic_challenge: basic,
            ..Self::new("invalid_client", StatusCode::UNAUTHORIZED, d)
        }
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", StatusCode::BAD_REQUEST, d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new("unauthorized_client", StatusCode::BAD_REQUEST, d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new("unsupported_grant_type", StatusCode::BAD_REQUEST, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new("invalid_scope", StatusCode::BAD_REQUEST, d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new("invalid_target", StatusCode::BAD_REQUEST, d)
    }
    /// RFC 8628 §3.5 polling answers (`authorization_pending`, `slow_down`, …): HTTP 400.
    pub fn device(error: &'static str, d: impl Into<String>) -> Self {
        Self::new(error, StatusCode::BAD_REQUEST, d)
    }
    pub fn too_large() -> Self {
        Self::new(
            "invalid_request",
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )
    }
    pub fn server_error(d: impl Into<String>) -> Self {
        Self::new("server_error", StatusCode::INTERNAL_SERVER_ERROR, d)
    }
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new(
            "temporarily_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            d,
        )
    }
}

/// The one mapping of a store failure at the authorization server's edge: unavailable is
/// `temporarily_unavailable` (503), anything else `server_error` (500). No side effect: the
/// transport logs [`OAuthError::cause`] when it answers.
impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        let cause = Some(e.to_string());
        let answer = match e {
            StoreError::Unavailable(_) => {
                Self::temporarily_unavailable("the authorization server's store is unavailable")
            }
            _ => Self::server_error("internal error"),
        };
        Self { cause, ..answer }
    }
}
