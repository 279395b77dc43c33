//! The built-in OAuth2 authorization server (`authServerType: Self`) as a domain service:
//! [`AuthorizationServer`] holds what the grants need (store, keys, clock, typed settings,
//! limiter) and has one method per grant, taking parsed, transport-neutral inputs and
//! answering with tokens or an [`error::OAuthError`]. The HTTP side (form parsing, client
//! credentials from Basic or the body, pages, redirects) is `crate::transport::http::oauth`.
//!
//! One file per grant: [`authorize`] (codes), [`token`] (authorization code, refresh, client
//! credentials), [`device`], [`exchange`] (token exchange / JWT bearer), [`revoke`] (revocation
//! and introspection); client authentication in [`client_auth`], clients in [`clients`],
//! minting in [`issue`], wire errors in [`error`], grant type names in [`grant_types`], what was
//! issued here and not presented yet in [`recent`]. Codes and refresh tokens are opaque and
//! stored hashed; access tokens are JWTs.

pub(crate) mod authorize;
pub(crate) mod client_auth;
pub(crate) mod clients;
pub(crate) mod device;
pub(crate) mod error;
pub(crate) mod exchange;
pub(crate) mod grant_types;
pub(crate) mod issue;
pub(crate) mod recent;
pub(crate) mod revoke;
pub(crate) mod token;
pub(crate) mod trusted_issuers;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use clients::Clients;

use crate::auth::Authenticator;
use crate::clock::SharedClock;
use crate::keys::KeySet;
use crate::public_url::PublicUrls;
use crate::store::Store;

/// The parameters of a request, each present at most once (already checked by the transport).
pub(crate) type Form = HashMap<String, String>;

/// The stored form of an opaque credential (code, refresh token, device code): SHA-256 over
/// the client id and the value. A credential presented by another client then simply does not
/// exist — it can be neither redeemed nor burnt nor revoked through that client.
pub(crate) fn bound_digest(client_id: &str, value: &str) -> String {
    crate::session::digest_hex(&format!("{client_id}:{value}"))
}

/// The built-in AS: its clients, limits and grants, with everything they need.
pub struct AuthorizationServer {
    pub clients: Clients,
    /// Failed client authentications per client id.
    pub client_limiter: crate::ratelimit::FailureLimiter,
    /// Codes and refresh tokens issued here and not presented yet (saves a read per grant).
    pub recent: recent::RecentGrants,
    /// Issuers whose tokens are exchanged for access tokens (DESIGN.md §13).
    pub trusted_issuers: trusted_issuers::TrustedIssuers,
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    /// The signing key (and the old one, for the JWKS).
    pub keys: Arc<KeySet>,
    pub clock: SharedClock,
    /// Verifies this AS's access tokens (revocation, introspection) and holds the revocation
    /// list of this replica.
    pub authenticator: Arc<Authenticator>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The settings the grants read, in seconds (from `auth` and `auth.appAuth.selfAuthServer`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `auth.issuer`; `None`: the `iss` is the public URL the request came through.
    pub configured_issuer: Option<String>,
    /// The deployment's issuer (configured, else the first public URL): an accepted audience.
    pub issuer: String,
    /// The deployment's public URLs (accepted audiences).
    pub public_urls: PublicUrls,
    pub access_token_lifespan: i64,
    pub refresh_token_lifespan: i64,
    /// Zero: a rotated refresh token is never accepted again.
    pub refresh_token_grace_period: i64,
    pub authorization_code_lifespan: i64,
    pub device_code_lifespan: i64,
    /// Leeway on token times (`auth.clockSkew`).
    pub clock_skew_secs: i64,
}

impl Settings {
    pub fn from_config(
        config: &crate::config::Config,
        issuer: String,
        public_urls: PublicUrls,
    ) -> Self {
        let s = &config.app_auth.self_auth_server;
        Self {
            configured_issuer: config.auth.issuer.clone(),
            issuer,
            public_urls,
            access_token_lifespan: s.access_token_lifespan,
            refresh_token_lifespan: s.refresh_token_lifespan,
            refresh_token_grace_period: s.refresh_token_grace_period,
            authorization_code_lifespan: s.authorization_code_lifespan,
            device_code_lifespan: s.device_code_lifespan,
            clock_skew_secs: config.auth.clock_skew_secs,
        }
    }
}

/// Failed client authentications tolerated per client within [`CLIENT_FAILURE_WINDOW_SECS`].
pub(crate) const MAX_CLIENT_FAILURES: u32 = 20;
pub(crate) const CLIENT_FAILURE_WINDOW_SECS: i64 = 300;

/// Scopes of a request (`scope`, space- or comma-separated), duplicates dropped, in order.
pub(crate) fn split_scopes(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split([' ', ',']).filter(|p| !p.is_empty()) {
        if !out.iter().any(|o| o == part) {
            out.push(part.to_owned());
        }
    }
    out
}
