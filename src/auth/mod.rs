//! The resource-server side: checking the credentials of incoming calls.
//!
//! - [`verifier`]: JWT access tokens → [`Identity`] (signature, claims, scope rule, cache).
//! - [`layer`]: the tower layer around every protected gRPC service.
//! - [`Authenticator`]: reads the token out of headers/metadata for both gRPC and REST.

mod cache;
mod error;
mod identity;
pub mod keysource;
pub mod layer;
mod revocation;
pub mod rules;
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
    /// Browser sessions, for cookie-authenticated gRPC-web and REST calls.
    pub sessions: Option<Arc<crate::session::Sessions>>,
    /// Origins a cookie-authenticated call may come from (`allowedOrigins` and the public URLs).
    pub allowed_origins: Vec<String>,
    /// Per-method authorization rules.
    pub rules: rules::Rules,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `flyteauth_authn_total` for the allowed outcomes, resolved once (hot path).
    allowed: [crate::metrics::Counter; 2],
}

/// Which credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Bearer,
    Session,
}

/// Name of the double-submit CSRF header for cookie-authenticated calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

impl Authenticator {
    pub fn new(
        verifier: TokenVerifier,
        custom_header: String,
        sessions: Option<Arc<crate::session::Sessions>>,
        allowed_origins: Vec<String>,
        rules: rules::Rules,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let allowed = ["bearer", "session"].map(|credential| {
            metrics.counter(
                "flyteauth_authn_total",
                &[
                    ("outcome", "allow"),
                    ("reason", "ok"),
                    ("credential", credential),
                ],
            )
        });
        Self {
            verifier,
            custom_header,
            sessions,
            allowed_origins,
            rules,
            metrics,
            allowed,
        }
    }

    /// Counts an authentication decision (bounded labels only).
    pub fn record(&self, result: &Result<Arc<Identity>, AuthError>) {
        match result {
            Ok(id) => match id.credential {
                Credential::Bearer => self.allowed[0].inc(),
                Credential::Session => self.allowed[1].inc(),
            },
            Err(e) => self.metrics.inc(
                "flyteauth_authn_total",
                &[
                    ("outcome", "deny"),
                    ("reason", e.kind()),
                    ("credential", ""),
                ],
            ),
        }
    }

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

    /// A bearer token wins; a session cookie is used only when no token header is present.
    pub fn credential_kind(
        &self,
        headers: &http::HeaderMap,
        custom_header: &str,
    ) -> CredentialKind {
        let has_token = headers.contains_key(custom_header)
            || headers.contains_key(http::header::AUTHORIZATION);
        if !has_token
            && self.sessions.is_some()
            && self
                .sessions
                .as_ref()
                .is_some_and(|s| crate::http::cookies::get(headers, s.cookie_name()).is_some())
        {
            CredentialKind::Session
        } else {
            CredentialKind::Bearer
        }
    }

    /// Authenticates a cookie-carrying browser call: the session must be live, the
    /// `x-csrf-token` header must equal the session's CSRF token (double submit), and an
    /// `Origin`, when sent, must be allowed.
    pub async fn authenticate_session(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Arc<Identity>, AuthError> {
        self.authenticate_session_with(headers, true).await
    }

    /// As [`authenticate_session`](Self::authenticate_session); `require_csrf: false` is for
    /// safe (GET/HEAD) REST reads such as `/me` behind nginx `auth_request`, which cannot
    /// change state and whose responses other origins cannot read (CORS).
    pub async fn authenticate_session_with(
        &self,
        headers: &http::HeaderMap,
        require_csrf: bool,
    ) -> Result<Arc<Identity>, AuthError> {
        use subtle::ConstantTimeEq;
        let sessions = self.sessions.as_ref().ok_or(AuthError::MissingToken)?;
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| AuthError::OriginNotAllowed)?;
            if !self
                .allowed_origins
                .iter()
                .any(|o| o == origin.trim_end_matches('/'))
            {
                return Err(AuthError::OriginNotAllowed);
            }
        }
        let csrf = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        if require_csrf && csrf.is_none() {
            return Err(AuthError::Csrf);
        }
        let session = sessions
            .from_headers(headers)
            .await
            .map_err(|_| AuthError::Unavailable)?
            .ok_or(AuthError::SessionInvalid)?;
        if let Some(csrf) = csrf {
            if !bool::from(csrf.as_bytes().ct_eq(session.csrf_token.as_bytes())) {
                return Err(AuthError::Csrf);
            }
        }
        let mut claims = session.profile.as_object().cloned().unwrap_or_default();
        claims.insert(
            "sub".into(),
            serde_json::Value::String(session.subject.clone()),
        );
        let mut user_info = session.user_info();
        if user_info.subject.is_empty() {
            user_info.subject = session.subject.clone();
        }
        Ok(Arc::new(Identity {
            subject: session.subject,
            client_id: None,
            // A browser session is a user-only credential: Flyte's blanket rule grants `all`.
            scopes: vec!["all".into()],
            user_info,
            claims,
            expires_at: i64::MAX,
            token_id: None,
            credential: Credential::Session,
        }))
    }

    /// [`authenticate`](Self::authenticate), refetching a remote JWKS on an unknown key.
    pub async fn authenticate_refreshing(
        &self,
        headers: &http::HeaderMap,
        custom_header: &str,
    ) -> Result<Arc<Identity>, AuthError> {
        self.verifier
            .verify_refreshing(bearer_token(headers, custom_header)?)
            .await
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
