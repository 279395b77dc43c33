//! The built-in OAuth2 authorization server (`authServerType: Self`), one file per endpoint:
//! [`authorize`], [`token`]; clients in [`clients`], minting in [`issue`], wire errors in
//! [`error`]. Codes and refresh tokens are opaque and stored hashed; access tokens are JWTs.

pub mod authorize;
pub mod clients;
pub mod device;
pub mod error;
pub mod issue;
pub mod revoke;
pub mod token;

use clients::Clients;

/// State of the built-in AS.
pub struct AuthorizationServer {
    pub clients: Clients,
}
