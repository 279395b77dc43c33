//! The documents clients read anonymously to learn how to authenticate: RFC 8414
//! authorization-server metadata and Flyte's public client config. The transport
//! (`crate::transport::http::oauth::metadata`) fills them for the gRPC services (v1 and
//! flyteidl2) and the JSON routes.

use serde::{Deserialize, Serialize};

use crate::authz_server::grant_types;

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
pub(crate) struct PublicClientConfig {
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

impl OAuth2Metadata {
    /// The built-in AS as seen through the public URL `public`: `issuer` is its `iss`;
    /// `token_exchange` whether the token exchange and JWT bearer grants are offered (trusted
    /// issuers are configured).
    pub fn built_in(issuer: String, public: &str, token_exchange: bool) -> Self {
        let url = |path: &str| format!("{public}{path}");
        let mut grants = strings(&[
            grant_types::AUTHORIZATION_CODE,
            grant_types::CLIENT_CREDENTIALS,
            grant_types::REFRESH_TOKEN,
            grant_types::DEVICE_CODE,
        ]);
        if token_exchange {
            grants.push(grant_types::TOKEN_EXCHANGE.into());
            grants.push(grant_types::JWT_BEARER.into());
        }
        OAuth2Metadata {
            issuer,
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
            grant_types_supported: grants,
            device_authorization_endpoint: url("/oauth2/device_authorization"),
        }
    }
}
