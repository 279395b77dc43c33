//! `AuthMetadataService` (flyteidl v1 and flyteidl2): anonymous.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::RequestOrigin;
use crate::metadata::{OAuth2Metadata, PublicClientConfig};
use crate::pb::flyteidl::service as v1;
use crate::pb::flyteidl2::auth as v2;
use crate::transport::http::oauth::metadata::{current_metadata, public_client_config};
use crate::transport::state::AppState;

#[derive(Clone)]
pub(crate) struct AuthMetadataApi {
    state: Arc<AppState>,
}

impl AuthMetadataApi {
    pub(crate) fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    fn metadata<T>(&self, req: &Request<T>) -> Result<OAuth2Metadata, Status> {
        let origin = req.extensions().get::<RequestOrigin>();
        let public = self.state.public_urls.resolve(
            origin.and_then(|o| o.authority.as_deref()),
            origin.map(|o| o.scheme).unwrap_or("http"),
        );
        current_metadata(&self.state, public).ok_or_else(|| {
            Status::unavailable("the external authorization server's metadata is not available yet")
        })
    }
}

/// The RFC 8414 document as flyteidl's (v1) or flyteidl2's response message: the same fields.
macro_rules! metadata_response {
    ($message:path, $m:expr) => {{
        let m = $m;
        $message {
            issuer: m.issuer,
            authorization_endpoint: m.authorization_endpoint,
            token_endpoint: m.token_endpoint,
            response_types_supported: m.response_types_supported,
            scopes_supported: m.scopes_supported,
            token_endpoint_auth_methods_supported: m.token_endpoint_auth_methods_supported,
            jwks_uri: m.jwks_uri,
            code_challenge_methods_supported: m.code_challenge_methods_supported,
            grant_types_supported: m.grant_types_supported,
            device_authorization_endpoint: m.device_authorization_endpoint,
        }
    }};
}

#[tonic::async_trait]
impl v1::auth_metadata_service_server::AuthMetadataService for AuthMetadataApi {
    async fn get_o_auth2_metadata(
        &self,
        req: Request<v1::OAuth2MetadataRequest>,
    ) -> Result<Response<v1::OAuth2MetadataResponse>, Status> {
        let m = self.metadata(&req)?;
        Ok(Response::new(metadata_response!(
            v1::OAuth2MetadataResponse,
            m
        )))
    }

    async fn get_public_client_config(
        &self,
        _req: Request<v1::PublicClientAuthConfigRequest>,
    ) -> Result<Response<v1::PublicClientAuthConfigResponse>, Status> {
        let PublicClientConfig {
            client_id,
            redirect_uri,
            scopes,
            authorization_metadata_key,
            service_http_endpoint,
            audience,
        } = public_client_config(&self.state);
        Ok(Response::new(v1::PublicClientAuthConfigResponse {
            client_id,
            redirect_uri,
            scopes,
            authorization_metadata_key,
            service_http_endpoint,
            audience,
        }))
    }
}

#[tonic::async_trait]
impl v2::auth_metadata_service_server::AuthMetadataService for AuthMetadataApi {
    async fn get_o_auth2_metadata(
        &self,
        req: Request<v2::GetOAuth2MetadataRequest>,
    ) -> Result<Response<v2::GetOAuth2MetadataResponse>, Status> {
        let m = self.metadata(&req)?;
        Ok(Response::new(metadata_response!(
            v2::GetOAuth2MetadataResponse,
            m
        )))
    }

    async fn get_public_client_config(
        &self,
        _req: Request<v2::GetPublicClientConfigRequest>,
    ) -> Result<Response<v2::GetPublicClientConfigResponse>, Status> {
        let c = public_client_config(&self.state);
        Ok(Response::new(v2::GetPublicClientConfigResponse {
            client_id: c.client_id,
            redirect_uri: c.redirect_uri,
            scopes: c.scopes,
            authorization_metadata_key: c.authorization_metadata_key,
            service_http_endpoint: c.service_http_endpoint,
            audience: c.audience,
            dataplane_domain: String::new(),
        }))
    }
}
