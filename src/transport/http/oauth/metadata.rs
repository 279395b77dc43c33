//! The metadata documents (RFC 8414, Flyte's public client config) as this deployment serves
//! them, and their HTTP routes; the gRPC `AuthMetadataService` serves the same documents.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header;

use crate::metadata::{OAuth2Metadata, PublicClientConfig};
use crate::transport::grpc::RequestOrigin;
use crate::transport::state::AppState;

/// The metadata clients are given: the built-in AS as seen through the public URL `public`,
/// or the external AS's document (`None` while it has not been fetched yet).
pub(crate) fn current_metadata(state: &AppState, public: &str) -> Option<OAuth2Metadata> {
    match &state.external {
        Some(ext) => ext.metadata().map(|m| (*m).clone()),
        None => Some(oauth2_metadata(state, public)),
    }
}

/// Metadata of the built-in AS as seen through the public URL `public`.
pub(crate) fn oauth2_metadata(state: &AppState, public: &str) -> OAuth2Metadata {
    OAuth2Metadata::built_in(
        state.authz.issuer(public),
        public,
        !state.authz.trusted_issuers.is_empty(),
    )
}

pub(crate) fn public_client_config(state: &AppState) -> PublicClientConfig {
    let fc = &state.config.auth.flyte_client;
    PublicClientConfig {
        client_id: fc.client_id.clone(),
        redirect_uri: fc.redirect_uri.clone(),
        scopes: fc.scopes.clone(),
        authorization_metadata_key: state.config.auth.grpc_authorization_header.clone(),
        service_http_endpoint: String::new(),
        audience: fc.audience.clone(),
    }
}

/// `GET /.well-known/oauth-authorization-server`.
pub(crate) async fn oauth_metadata(
    State(state): State<Arc<AppState>>,
    origin: Option<axum::Extension<RequestOrigin>>,
) -> Response {
    let public = super::public_url(&state, origin.as_ref().map(|o| &o.0));
    match current_metadata(&state, &public) {
        Some(m) => Json(m).into_response(),
        None => crate::transport::http::error::ApiError::Status(tonic::Status::unavailable(
            "the external authorization server's metadata is not available yet",
        ))
        .into_response(),
    }
}

/// `GET /config/v1/flyte_client`.
pub(crate) async fn flyte_client(State(state): State<Arc<AppState>>) -> Response {
    Json(public_client_config(&state)).into_response()
}

/// `GET /oauth2/jwks`.
pub(crate) async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.keys.jwks()),
    )
        .into_response()
}
