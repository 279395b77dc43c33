//! `POST /oauth2/token` (RFC 6749 §3.2): the form, client authentication by Basic or form
//! (optional for the token exchange and JWT bearer grants), then the grant.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap};

use super::form::{authenticate_client, client_addr, client_credentials, read_form, Body};
use super::{json_no_store, public_url};
use crate::authz_server::error::OAuthError;
use crate::authz_server::exchange;
use crate::authz_server::issue::TokenResponse;
use crate::transport::grpc::RequestOrigin;
use crate::transport::state::AppState;

/// `POST /oauth2/token`.
pub(crate) async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    origin: Option<axum::Extension<RequestOrigin>>,
    body: Body,
) -> Response {
    let public = public_url(&state, origin.as_ref().map(|o| &o.0));
    match handle(&state, &headers, &public, body).await {
        Ok(resp) => json_no_store(resp),
        Err(e) => {
            tracing::info!(target: "flyteauth::audit", route = "/oauth2/token", outcome = "deny", error = e.error);
            e.into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    public: &str,
    body: Body,
) -> Result<TokenResponse, OAuthError> {
    let form = read_form(headers, body)?;
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant_type.is_empty() {
        return Err(OAuthError::invalid_request("grant_type is missing"));
    }
    if exchange::handles(grant_type) {
        // Client authentication is optional there: only when credentials are presented.
        let client = (headers.contains_key(header::AUTHORIZATION)
            || form.contains_key("client_secret"))
        .then(|| client_credentials(headers, &form));
        return state
            .authz
            .exchange(public, grant_type, &form, client, client_addr())
            .await;
    }
    let client = authenticate_client(state, headers, &form).await?;
    state
        .authz
        .token_grant(public, client, grant_type, &form)
        .await
}
