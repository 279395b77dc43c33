//! The `grant_type` values of the token endpoint (RFC 6749 §4, RFC 8628 §3.4, RFC 8693 §2.1,
//! RFC 7523 §2.1), and the RFC 8693 token types.

pub(crate) const AUTHORIZATION_CODE: &str = "authorization_code";
pub(crate) const REFRESH_TOKEN: &str = "refresh_token";
pub(crate) const CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 8628 §3.4.
pub(crate) const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8693 §2.1.
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523 §2.1.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// RFC 8693 §3 token type identifiers.
pub(crate) const TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub(crate) const TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub(crate) const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
