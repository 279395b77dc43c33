//! Why authentication failed: one enum, mapped to the wire in one place (gRPC status and
//! HTTP 401 with `WWW-Authenticate`). Reasons are short, stable and never contain token
//! material.

/// An authentication failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing access token")]
    MissingToken,
    #[error("authorization scheme must be Bearer")]
    WrongScheme,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("audience mismatch: expected one of [{}]", .0.join(", "))]
    AudienceMismatch(Vec<String>),
    #[error("issuer mismatch: expected one of [{}]", .0.join(", "))]
    IssuerMismatch(Vec<String>),
    #[error("authenticated user doesn't have required scope (one of [{}])", .0.join(", "))]
    MissingScope(Vec<String>),
    #[error("token revoked")]
    Revoked,
    #[error("session expired or logged out")]
    SessionInvalid,
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("origin not allowed")]
    OriginNotAllowed,
    #[error("authentication temporarily unavailable")]
    Unavailable,
}

impl AuthError {
    /// A stable label for metrics and audit logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::WrongScheme => "wrong_scheme",
            Self::Malformed(_) => "malformed",
            Self::AlgorithmNotAllowed(_) => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::AudienceMismatch(_) => "audience",
            Self::IssuerMismatch(_) => "issuer",
            Self::MissingScope(_) => "scope",
            Self::Revoked => "revoked",
            Self::SessionInvalid => "session",
            Self::Csrf => "csrf",
            Self::OriginNotAllowed => "origin",
            Self::Unavailable => "unavailable",
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            // Never UNKNOWN, never PERMISSION_DENIED: clients (re)authenticate on UNAUTHENTICATED.
            AuthError::Unavailable => tonic::Status::unavailable(e.to_string()),
            AuthError::MissingToken
            | AuthError::WrongScheme
            | AuthError::Malformed(_)
            | AuthError::AlgorithmNotAllowed(_)
            | AuthError::UnknownKey
            | AuthError::BadSignature
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::IssuedInFuture
            | AuthError::AudienceMismatch(_)
            | AuthError::IssuerMismatch(_)
            | AuthError::MissingScope(_)
            | AuthError::Revoked
            | AuthError::SessionInvalid
            | AuthError::Csrf
            | AuthError::OriginNotAllowed => tonic::Status::unauthenticated(e.to_string()),
        }
    }
}
