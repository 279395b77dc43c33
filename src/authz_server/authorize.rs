//! The authorization request (RFC 6749 §4.1.1–4.1.2, RFC 7636, RFC 8252 §7.3): its checks,
//! and the code issued once the user is known. Errors before the client and redirect URI are
//! trusted are shown as a page by the transport (§4.1.2.1: never redirect to an unverified
//! URI); after, they go back to the client as `error=` on the redirect.

use url::Url;

use super::clients::Client;
use super::{bound_digest, AuthorizationServer, Form};
use crate::keys::random_token;
use crate::store::{AuthCodeRecord, StoreError};

/// RFC 7636 §4.1/4.2: 43–128 characters of the unreserved set.
pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An authorization request that passed the checks.
pub struct AuthorizationRequest<'a> {
    pub client: &'a Client,
    pub redirect_uri: String,
    /// The client's `state`, returned as it came.
    pub state: Option<String>,
    pub scopes: Vec<String>,
    /// Empty without PKCE.
    pub code_challenge: String,
}

/// Why an authorization request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeRefusal {
    /// Shown to the user as a page (HTTP 400): the client or its redirect URI is not trusted.
    Page {
        title: &'static str,
        message: &'static str,
    },
    /// Sent back to the client's (trusted) redirect URI as `error=` (§4.1.2.1).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl AuthorizeRefusal {
    fn page(title: &'static str, message: &'static str) -> Self {
        Self::Page { title, message }
    }
}

impl AuthorizationServer {
    /// A code for `request`, issued to the signed-in user `subject` (profile `profile`).
    pub async fn issue_code(
        &self,
        request: &AuthorizationRequest<'_>,
        subject: &str,
        profile: &serde_json::Value,
    ) -> Result<String, StoreError> {
        let code = random_token();
        let now = self.clock.now();
        let record = AuthCodeRecord {
            code_hash: bound_digest(&request.client.id, &code),
            client_id: request.client.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            subject: subject.to_owned(),
            user_info: profile.to_string(),
            scopes: request.scopes.clone(),
            code_challenge: request.code_challenge.clone(),
            family_id: random_token(),
            auth_time: now,
            expires_at: now + self.settings.authorization_code_lifespan,
        };
        if let Err(e) = self.store.insert_auth_code(&record).await {
            tracing::warn!(error = %e, "cannot store authorization code");
            return Err(e);
        }
        tracing::info!(target: "flyteauth::audit", event = "code_issued", subject = %subject, client_id = %request.client.id);
        self.recent.codes.put(record.code_hash.clone(), record);
        Ok(code)
    }
}

impl AuthorizationServer {
    /// Checks an authorization request's parameters `p` (§4.1.1): the client, its redirect URI,
    /// then the rest.
    pub fn validate_authorization(
        &self,
        p: &Form,
    ) -> Result<AuthorizationRequest<'_>, AuthorizeRefusal> {
        let state = self;
        // §4.1.2.1: client and redirect URI first; their errors are never redirected.
        let Some(client_id) = p.get("client_id").filter(|c| !c.is_empty()) else {
            return Err(AuthorizeRefusal::page(
                "Invalid authorization request",
                "client_id is missing.",
            ));
        };
        let Some(client) = state.clients.get(client_id) else {
            return Err(AuthorizeRefusal::page(
                "Unknown client",
                "This application is not registered.",
            ));
        };
        let redirect_uri = match p.get("redirect_uri").filter(|r| !r.is_empty()) {
            Some(r) => r.clone(),
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return Err(AuthorizeRefusal::page(
                    "Invalid authorization request",
                    "redirect_uri is missing.",
                ))
            }
        };
        if Url::parse(&redirect_uri).is_err()
            || redirect_uri.contains('#')
            || !client.redirect_uri_matches(&redirect_uri)
        {
            return Err(AuthorizeRefusal::page(
                "Invalid redirect URI",
                "The redirect_uri is not registered for this application.",
            ));
        }
        let state_param = p.get("state").cloned();
        let fail = |error: &'static str, description: &str| {
            Err(AuthorizeRefusal::Redirect {
                redirect_uri: redirect_uri.clone(),
                state: state_param.clone(),
                error,
                description: description.to_owned(),
            })
        };

        // Never issue a code the client may not redeem.
        if !client.allows_grant("authorization_code") {
            return fail(
                "unauthorized_client",
                "this client may not use the authorization_code grant",
            );
        }
        match p.get("response_type").map(String::as_str) {
            Some("code") => {}
            None | Some("") => return fail("invalid_request", "response_type is missing"),
            Some(_) => {
                return fail(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                )
            }
        }
        let requested: Vec<String> = p
            .get("scope")
            .map(|s| {
                s.split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let scopes = if requested.is_empty() {
            client
                .scopes
                .iter()
                .filter(|s| *s != "access_token" && !s.contains('*'))
                .cloned()
                .collect()
        } else {
            if let Some(bad) = requested.iter().find(|s| !client.allows_scope(s)) {
                return fail(
                    "invalid_scope",
                    &format!("scope {bad:?} is not allowed for this client"),
                );
            }
            let mut dedup = Vec::new();
            for s in requested {
                if !dedup.contains(&s) {
                    dedup.push(s);
                }
            }
            dedup
        };
        // RFC 7636 / RFC 9700 §2.1.1: PKCE S256 required for public clients; `plain` refused.
        let challenge = p.get("code_challenge").filter(|c| !c.is_empty()).cloned();
        let method = p
            .get("code_challenge_method")
            .map(String::as_str)
            .unwrap_or("");
        let code_challenge = match (challenge, method) {
            (None, _) if client.requires_pkce() => {
                return fail(
                    "invalid_request",
                    "code_challenge (PKCE, S256) is required for this client",
                )
            }
            (None, "") => String::new(),
            (None, _) => {
                return fail(
                    "invalid_request",
                    "code_challenge_method without code_challenge",
                )
            }
            (Some(_), "plain") => {
                return fail(
                    "invalid_request",
                    "code_challenge_method plain is not supported; use S256",
                )
            }
            (Some(_), m) if m != "S256" => {
                return fail("invalid_request", "code_challenge_method must be S256")
            }
            (Some(c), _) if !is_pkce_value(&c) => {
                return fail("invalid_request", "malformed code_challenge")
            }
            (Some(c), _) => c,
        };
        Ok(AuthorizationRequest {
            client,
            redirect_uri,
            state: state_param,
            scopes,
            code_challenge,
        })
    }
}
