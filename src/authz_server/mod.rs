//! The built-in OAuth2 authorization server (`authServerType: Self`), one file per endpoint:
//! [`authorize`], [`token`]; clients in [`clients`], minting in [`issue`], wire errors in
//! [`error`], what was issued here and not presented yet in [`recent`]. Codes and refresh tokens are opaque and stored hashed; access tokens are JWTs.

pub mod authorize;
pub mod clients;
pub mod device;
pub mod error;
pub mod exchange;
pub mod issue;
pub mod recent;
pub mod revoke;
pub mod token;
pub mod trusted_issuers;

use clients::Clients;

/// The stored form of an opaque credential (code, refresh token, device code): SHA-256 over
/// the client id and the value. A credential presented by another client then simply does not
/// exist — it can be neither redeemed nor burnt nor revoked through that client.
pub fn bound_digest(client_id: &str, value: &str) -> String {
    crate::session::digest_hex(&format!("{client_id}:{value}"))
}

/// State of the built-in AS.
pub struct AuthorizationServer {
    pub clients: Clients,
    /// Failed client authentications per client id.
    pub client_limiter: crate::ratelimit::FailureLimiter,
    /// Codes and refresh tokens issued here and not presented yet (saves a read per grant).
    pub recent: recent::RecentGrants,
    /// Issuers whose tokens are exchanged for access tokens (DESIGN.md §13).
    pub trusted_issuers: trusted_issuers::TrustedIssuers,
}

/// Failed client authentications tolerated per client within [`CLIENT_FAILURE_WINDOW_SECS`].
pub const MAX_CLIENT_FAILURES: u32 = 20;
pub const CLIENT_FAILURE_WINDOW_SECS: i64 = 300;
