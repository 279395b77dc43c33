//! The resource-server side: checking the credentials of incoming calls.
//!
//! - [`verifier`]: JWT access tokens → [`Identity`] (signature, claims, scope rule, cache).
//! - [`layer`]: the tower layer around every protected gRPC service.
//! - [`Authenticator`]: reads the token out of headers/metadata for both gRPC and REST.

mod cache;
mod error;
mod identity;
pub mod layer;
mod revocation;
pub mod verifier;

use std::sync::Arc;

pub use cache::TokenCache;
pub use error::AuthError;
pub use identity::{Credential, Identity, UserInfo};
pub use revocation::Revocations;
pub use verifier::{TokenVerifier, VerifierSettings};

/// Extracts and checks the caller's credentials from request headers.
pub struct Authenticator {
    pub verifier: TokenVerifier,
    /// The configured custom key (`flyte-authorization` by default), lower-case.
    pub custom_header: String,
}

impl Authenticator {
    /// The bearer token: the custom key wins over `authorization`; scheme `Bearer`,
    /// case-insensitive.
    pub fn bearer_token<'a>(&self, headers: &'a http::HeaderMap) -> Result<&'a str, AuthError> {
        bearer_token(headers, &self.custom_header)
    }

    /// Authenticates a request by its bearer token.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Arc<Identity>, AuthError> {
        let token = self.bearer_token(headers)?;
        self.verifier.verify(token)
    }

    /// Like [`authenticate`](Self::authenticate) with another custom header (REST uses
    /// `auth.httpAuthorizationHeader`).
    pub fn authenticate_with(
        &self,
        headers: &http::HeaderMap,
        custom_header: &str,
    ) -> Result<Arc<Identity>, AuthError> {
        self.verifier.verify(bearer_token(headers, custom_header)?)
    }
}

/// The bearer token of a request: `custom_header` wins over `authorization`; scheme
/// `Bearer`, case-insensitive.
pub fn bearer_token<'a>(
    headers: &'a http::HeaderMap,
    custom_header: &str,
) -> Result<&'a str, AuthError> {
    {
        let value = headers
            .get(custom_header)
            .or_else(|| headers.get(http::header::AUTHORIZATION))
            .ok_or(AuthError::MissingToken)?;
        let value = value
            .to_str()
            .map_err(|_| AuthError::Malformed("non-ASCII header"))?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::WrongScheme)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::WrongScheme);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        Ok(token)
    }
}
