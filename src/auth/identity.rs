//! Who is calling: the result of a successful authentication, put into request extensions.

use serde::{Deserialize, Serialize};

/// OIDC userinfo-shaped profile (flyteidl `UserInfoResponse` minus `additional_claims`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserInfo {
    pub subject: String,
    pub name: String,
    pub preferred_username: String,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub picture: String,
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An access token in `authorization` / the configured metadata key.
    Bearer,
    /// A browser session cookie (with the CSRF header).
    Session,
}

/// An authenticated caller. Handlers read it from request extensions as `Arc<Identity>`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `sub` of the token: a user id, or the client id for client-credentials tokens.
    pub subject: String,
    /// The OAuth2 client the token was issued to, if any.
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub user_info: UserInfo,
    /// Every claim of the token (becomes `additional_claims`).
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// When the credential stops being valid (unix seconds).
    pub expires_at: i64,
    /// `jti` of the token, when it has one.
    pub token_id: Option<String>,
    pub credential: Credential,
}

impl Identity {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl crate::session::Session {
    /// The session's profile as [`UserInfo`] (defaults where it does not parse).
    pub fn user_info(&self) -> UserInfo {
        serde_json::from_value(self.profile.clone()).unwrap_or_default()
    }
}
