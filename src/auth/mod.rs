//! The resource-server side: checking the credentials of incoming calls.
//!
//! - [`verifier`]: JWT access tokens → [`Identity`] (signature, claims, scope rule, cache).
//! - [`Authenticator`]: the one authentication decision for gRPC, gRPC-web, Connect, REST
//!   and the gateway ([`Authenticator::authenticate_now`] / [`Authenticator::authenticate_call`]):
//!   credential extraction → verification → an [`Identity`] or a refusal reason
//!   ([`AuthError`]). Each transport only renders the refusal its own way (the gRPC layer is
//!   `transport/grpc/auth_layer.rs`).

mod cache;
mod error;
mod identity;
pub(crate) mod keysource;
mod revocation;
pub(crate) mod roles;
pub(crate) mod rules;
pub(crate) mod verifier;

use std::sync::Arc;

pub(crate) use error::AuthError;
pub use identity::{Credential, Identity, UserInfo};
pub(crate) use revocation::Revocations;
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
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

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
                .is_some_and(|s| crate::session::request_cookie(headers, s.cookie_name()).is_some())
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
        if require_csrf && csrf.is_none() && !self.csrf_exempt(headers) {
            return Err(AuthError::Csrf);
        }
        let session = sessions
            .of_request(headers)
            .await
            .map_err(|_| AuthError::Unavailable)?
            .ok_or(AuthError::SessionInvalid)?;
        if let Some(csrf) = csrf {
            if !bool::from(
                csrf.as_bytes()
                    .ct_eq(session.csrf_token.expose().as_bytes()),
            ) {
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

    /// DESIGN.md §6's one exception to the CSRF header, for Flyte 1's console behind the
    /// gateway: a call that is not CORS-simple (its content type is not one a cross-site
    /// `<form>` or a no-preflight `fetch` can send) whose `Origin` — or, without one, whose
    /// `Referer`'s origin — is allowed. A cross-site page cannot send such a request without a
    /// CORS preflight, which flyteauth answers only for the allowed origins.
    pub fn csrf_exempt(&self, headers: &http::HeaderMap) -> bool {
        if !not_cors_simple(headers) {
            return false;
        }
        let allowed = |origin: &str| {
            self.allowed_origins
                .iter()
                .any(|o| o == origin.trim_end_matches('/'))
        };
        match headers.get(http::header::ORIGIN) {
            Some(origin) => origin.to_str().is_ok_and(allowed),
            None => headers
                .get(http::header::REFERER)
                .and_then(|r| r.to_str().ok())
                .and_then(|r| url::Url::parse(r).ok())
                .is_some_and(|u| {
                    u.host_str().is_some() && allowed(&u.origin().ascii_serialization())
                }),
        }
    }

    /// One authentication decision for a call, gRPC, gRPC-web, Connect or REST alike (the
    /// gateway's forwarded calls use it): a bearer token (`custom_header` wins over
    /// `authorization`; an unknown key of a remote JWKS refetches it), else the session
    /// cookie with the CSRF rules of [`authenticate_session_with`](Self::authenticate_session_with).
    /// The outcome is counted.
    pub async fn authenticate_call(
        &self,
        headers: &http::HeaderMap,
        custom_header: &str,
        require_csrf: bool,
    ) -> Result<Arc<Identity>, AuthError> {
        let result = match self.credential_kind(headers, custom_header) {
            CredentialKind::Session => self.authenticate_session_with(headers, require_csrf).await,
            CredentialKind::Bearer => self.authenticate_refreshing(headers, custom_header).await,
        };
        self.record(&result);
        result
    }

    /// The same decision as [`authenticate_call`](Self::authenticate_call) when it needs no
    /// I/O (a bearer token whose key is known, or no remote JWKS to refetch): counted and
    /// returned. `None` when it needs I/O (a session cookie, or an unknown key of a remote
    /// JWKS): then call [`authenticate_call`](Self::authenticate_call).
    pub fn authenticate_now(
        &self,
        headers: &http::HeaderMap,
        custom_header: &str,
    ) -> Option<Result<Arc<Identity>, AuthError>> {
        if self.credential_kind(headers, custom_header) != CredentialKind::Bearer {
            return None;
        }
        let result = self.authenticate_with(headers, custom_header);
        if matches!(result, Err(AuthError::UnknownKey)) && self.verifier.remote_jwks().is_some() {
            return None;
        }
        self.record(&result);
        Some(result)
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

/// Whether a request's `Content-Type` makes it a non-simple CORS request (Fetch standard,
/// "CORS-safelisted request-header"): a well-formed `type/subtype` that is not
/// `application/x-www-form-urlencoded`, `multipart/form-data` or `text/plain`. A missing,
/// unparsable or listed value counts as simple (the strict reading: no exemption).
pub(crate) fn not_cors_simple(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(ty) || !token(sub) {
        return false;
    }
    let essence = essence.to_ascii_lowercase();
    !matches!(
        essence.as_str(),
        "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
    )
}

#[cfg(test)]
mod cors_simple_tests {
    use super::not_cors_simple;

    fn ct(v: Option<&str>) -> bool {
        let mut h = http::HeaderMap::new();
        if let Some(v) = v {
            h.insert(http::header::CONTENT_TYPE, v.parse().unwrap());
        }
        not_cors_simple(&h)
    }

    #[test]
    fn only_well_formed_non_safelisted_types_are_non_simple() {
        for v in [
            "application/octet-stream",
            "application/grpc-web+proto",
            "application/json",
            "application/JSON; charset=utf-8",
            "application/proto",
        ] {
            assert!(ct(Some(v)), "{v}");
        }
        for v in [
            None,
            Some("text/plain"),
            Some("Text/Plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("text/plain, application/json"),
            Some("garbage"),
            Some(""),
        ] {
            assert!(!ct(v), "{v:?}");
        }
    }
}
