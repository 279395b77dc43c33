//! `POST /oauth2/revoke` (RFC 7009) and `POST /oauth2/introspect` (RFC 7662).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use super::form::{authenticate_client, read_form, Body};
use super::{json_no_store, no_store};
use crate::authz_server::error::OAuthError;
use crate::transport::state::AppState;

/// `POST /oauth2/revoke`: always 200 for unknown or invalid tokens (§2.2).
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result: Result<(), OAuthError> = async {
        let form = read_form(&headers, body)?;
        let client = authenticate_client(&state, &headers, &form).await?;
        state.authz.revoke(client, &form).await
    }
    .await;
    match result {
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            no_store(&mut r);
            r
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /oauth2/introspect`: confidential clients only (§2.1).
pub(crate) async fn introspect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result: Result<serde_json::Value, OAuthError> = async {
        let form = read_form(&headers, body)?;
        let client = authenticate_client(&state, &headers, &form).await?;
        state.authz.introspect(client, &form).await
    }
    .await;
    match result {
        Ok(v) => json_no_store(v),
        Err(e) => e.into_response(),
    }
}
