//! The documents clients read anonymously to learn how to authenticate: RFC 8414
//! authorization-server metadata and Flyte's public client config. One builder feeds the
//! gRPC services (v1 and flyteidl2) and the JSON routes.

use serde::{Deserialize, Serialize};

use crate::transport::state::AppState;

/// RFC 8414 metadata, field for field flyteidl's `OAuth2MetadataResponse` (unknown fields of
/// a proxied document are dropped, as Flyte does).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OAuth2Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub response_types_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub jwks_uri: String,
    pub code_challenge_methods_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub device_authorization_endpoint: String,
}

/// flyteidl's `PublicClientAuthConfigResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct PublicClientConfig {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub authorization_metadata_key: String,
    pub service_http_endpoint: String,
    pub audience: String,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The metadata clients are given: the built-in AS as seen through the public URL `public`,
/// or the external AS's document (`None` while it has not been fetched yet).
pub fn current_metadata(state: &AppState, public: &str) -> Option<OAuth2Metadata> {
    match &state.external {
        Some(ext) => ext.metadata().map(|m| (*m).clone()),
        None => Some(oauth2_metadata(state, public)),
    }
}

/// Metadata of the built-in AS as seen through the public URL `public`.
pub fn oauth2_metadata(state: &AppState, public: &str) -> OAuth2Metadata {
    let url = |path: &str| format!("{public}{path}");
    let mut grant_types = strings(&[
        "authorization_code",
        "client_credentials",
        "refresh_token",
        crate::authz_server::device::GRANT_TYPE,
    ]);
    if !state.authz.trusted_issuers.is_empty() {
        grant_types.push(crate::authz_server::exchange::TOKEN_EXCHANGE.into());
        grant_types.push(crate::authz_server::exchange::JWT_BEARER.into());
    }
    OAuth2Metadata {
        issuer: state
            .config
            .auth
            .issuer
            .clone()
            .unwrap_or_else(|| public.to_owned()),
        authorization_endpoint: url("/oauth2/authorize"),
        token_endpoint: url("/oauth2/token"),
        response_types_supported: strings(&["code"]),
        scopes_supported: strings(&["all", "offline"]),
        token_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
            "none",
        ]),
        jwks_uri: url("/oauth2/jwks"),
        code_challenge_methods_supported: strings(&["S256"]),
        grant_types_supported: grant_types,
        device_authorization_endpoint: url("/oauth2/device_authorization"),
    }
}

pub fn public_client_config(state: &AppState) -> PublicClientConfig {
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
