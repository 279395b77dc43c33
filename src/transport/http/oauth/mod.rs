//! The HTTP side of the built-in authorization server (`/oauth2/*`) and of the metadata
//! documents: each handler reads the request (form, client credentials, session, origin),
//! calls [`crate::authz_server::AuthorizationServer`] and writes its answer.

pub(crate) mod authorize;
pub(crate) mod device;
pub(crate) mod form;
pub(crate) mod metadata;
pub(crate) mod revoke;
pub(crate) mod token;

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};

use crate::authz_server::error::OAuthError;
use crate::transport::grpc::RequestOrigin;
use crate::transport::state::AppState;

/// The public URL a request came through (`origin` as the dispatch derived it).
pub(crate) fn public_url(state: &AppState, origin: Option<&RequestOrigin>) -> String {
    state
        .public_urls
        .resolve(
            origin.and_then(|o| o.authority.as_deref()),
            origin.map(|o| o.scheme).unwrap_or("http"),
        )
        .to_owned()
}

/// Headers every token-endpoint response carries (RFC 6749 §5.1).
pub(crate) fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `value` as JSON, `Cache-Control: no-store`.
fn json_no_store(value: impl serde::Serialize) -> Response {
    let mut r = Json(value).into_response();
    no_store(&mut r);
    r
}

/// RFC 6749 §5.2: `{"error", "error_description"}`, `no-store`, and `Retry-After` or
/// `WWW-Authenticate: Basic` when the error says so.
impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            if self.status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(error = %cause, "store unavailable at the authorization server");
            } else {
                tracing::error!(error = %cause, "store error at the authorization server");
            }
        }
        let body = serde_json::json!({"error": self.error, "error_description": self.description});
        let mut resp = (self.status, Json(body)).into_response();
        no_store(&mut resp);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1) as u64));
        }
        if self.basic_challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"flyteauth\""),
            );
        }
        resp
    }
}
