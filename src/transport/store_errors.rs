//! Store errors at the transport edges, in one place: the one gRPC mapping (`From` for
//! [`tonic::Status`], no side effect; HTTP answers take its [`code_and_message`] and
//! `http::error` turns the code into a status) and the log line for the failures the caller
//! cannot act on ([`log`], called by the edges that answer them).

use tonic::{Code, Status};

use crate::store::StoreError;

/// Logs a store failure the caller cannot act on (unavailable, internal); the others are
/// the caller's (not found, exists, invalid) and are not logged.
pub(crate) fn log(e: &StoreError) {
    match e {
        StoreError::Unavailable(m) => tracing::warn!(error = %m, "database unavailable"),
        StoreError::Internal(m) => tracing::error!(error = %m, "database error"),
        StoreError::NotFound | StoreError::AlreadyExists | StoreError::Invalid(_) => {}
    }
}

/// The gRPC code and the message the caller sees (never the database's own text for
/// unavailable/internal failures).
pub(crate) fn code_and_message(e: &StoreError) -> (Code, String) {
    match e {
        StoreError::NotFound => (Code::NotFound, "not found".into()),
        StoreError::AlreadyExists => (Code::AlreadyExists, "already exists".into()),
        StoreError::Invalid(m) => (Code::InvalidArgument, m.clone()),
        StoreError::Unavailable(_) => (Code::Unavailable, "database unavailable".into()),
        StoreError::Internal(_) => (Code::Internal, "database error".into()),
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        let (code, message) = code_and_message(&e);
        Status::new(code, message)
    }
}
