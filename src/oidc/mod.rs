//! The relying party: browser login at an external OpenID Connect IdP (`auth.userAuth.openId`).
//! flyteauth is a confidential client using the authorization code flow with `state`, `nonce`
//! and PKCE; the ID token is verified (signature by the IdP's JWKS and advertised algorithms,
//! `iss`, `aud` = clientId, `exp`, `nonce`) by the `openidconnect` crate. Discovery happens in
//! the background with retries, so an IdP that is down at start-up does not stop the service.
//! The pending login (state, nonce, PKCE verifier, where to go next) travels in a cookie sealed
//! with the cookie block key, so the callback may land on any replica.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::OpenIdFile;
use crate::secret::Secret;

/// What discovery found.
pub struct Discovered {
    pub metadata: CoreProviderMetadata,
    pub end_session_endpoint: Option<String>,
    pub discovery_url: String,
}

/// The configured IdP and what is known about it.
pub struct OidcProvider {
    pub cfg: OpenIdFile,
    client_secret: Secret<String>,
    http: reqwest::Client,
    discovered: RwLock<Option<Arc<Discovered>>>,
}

/// The state of one login round trip, sealed into a cookie. The `state`, `nonce` and PKCE
/// verifier are credentials: `Debug` prints them as `[redacted]`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    #[serde(with = "crate::secret::text")]
    pub state: Secret<String>,
    #[serde(with = "crate::secret::text")]
    pub nonce: Secret<String>,
    #[serde(with = "crate::secret::text")]
    pub verifier: Secret<String>,
    pub redirect_uri: String,
    pub next: String,
    pub expires_at: i64,
}

/// What a successful callback yields.
#[derive(Debug)]
pub struct LoggedIn {
    pub subject: String,
    pub profile: Value,
    pub refresh_token: Option<Secret<String>>,
}

/// Why a login failed (shown to the user as a short page; never contains secrets).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider is not reachable yet")]
    NotDiscovered,
    #[error("the identity provider did not accept the code: {0}")]
    Exchange(String),
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    #[error("the ID token was rejected: {0}")]
    IdToken(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl OidcProvider {
    pub fn new(
        cfg: OpenIdFile,
        client_secret: Secret<String>,
        proxy: &str,
    ) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if !proxy.is_empty() {
            b = b.proxy(reqwest::Proxy::all(proxy).map_err(|e| format!("httpProxyURL: {e}"))?);
        }
        Ok(Self {
            cfg,
            client_secret,
            http: b.build().map_err(|e| e.to_string())?,
            discovered: RwLock::new(None),
        })
    }

    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.cfg.base_url.trim_end_matches('/')
        )
    }

    pub fn discovered(&self) -> Option<Arc<Discovered>> {
        self.discovered.read().expect("lock").clone()
    }

    /// Fetches the discovery document and the JWKS. `issuer` must be `baseUrl` or the
    /// configured `issuerUrl` (Azure/Keycloak set-ups where they differ).
    pub async fn discover(&self) -> Result<(), String> {
        let url = self.discovery_url();
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        let raw: Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
        let end_session_endpoint = raw
            .get("end_session_endpoint")
            .and_then(Value::as_str)
            .map(String::from);
        let mut metadata: CoreProviderMetadata =
            serde_json::from_value(raw).map_err(|e| format!("{url}: {e}"))?;
        let issuer = metadata.issuer().as_str().trim_end_matches('/').to_owned();
        let accepted = [
            self.cfg.base_url.trim_end_matches('/'),
            self.cfg.issuer_url.trim_end_matches('/'),
        ];
        if !accepted.iter().any(|a| !a.is_empty() && *a == issuer) {
            return Err(format!(
                "{url}: issuer {issuer} is neither baseUrl nor issuerUrl"
            ));
        }
        let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| format!("JWKS: {e}"))?;
        metadata = metadata.set_jwks(jwks);
        *self.discovered.write().expect("lock") = Some(Arc::new(Discovered {
            metadata,
            end_session_endpoint,
            discovery_url: url,
        }));
        Ok(())
    }

    /// Discovers in the background: retries with backoff until it works, then refreshes
    /// every ten minutes (picks up IdP key rotation).
    pub fn spawn_discovery(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                match this.discover().await {
                    Ok(()) => {
                        tracing::info!(idp = %this.cfg.base_url, "OIDC discovery done");
                        delay = Duration::from_secs(600);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "OIDC discovery failed; retrying");
                        delay = if this.discovered().is_some() {
                            Duration::from_secs(60)
                        } else {
                            (delay * 2).min(Duration::from_secs(30))
                        };
                    }
                }
                tokio::time::sleep(delay).await;
            }
        })
    }

    fn client(&self, d: &Discovered, redirect_uri: &str) -> Result<DiscoveredClient, OidcError> {
        let client = CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            Some(ClientSecret::new(self.client_secret.expose().clone())),
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|e| OidcError::Config(e.to_string()))?,
        );
        Ok(client)
    }

    /// Starts a login: the IdP URL to send the browser to, and the pending state to seal.
    pub fn begin(
        &self,
        redirect_uri: &str,
        next: &str,
        now: i64,
        idp_hint: Option<(&str, &str)>,
    ) -> Result<(String, PendingLogin), OidcError> {
        let d = self.discovered().ok_or(OidcError::NotDiscovered)?;
        let client = self.client(&d, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &self.cfg.scopes {
            if s != "openid" {
                req = req.add_scope(Scope::new(s.clone()));
            }
        }
        // OIDC Core §11: a refresh token (offline_access) needs consent.
        if self.cfg.scopes.iter().any(|s| s == "offline_access") {
            req = req.add_prompt(openidconnect::core::CoreAuthPrompt::Consent);
        }
        if let Some((k, v)) = idp_hint {
            req = req.add_extra_param(k.to_owned(), v.to_owned());
        }
        let (url, state, nonce) = req.url();
        Ok((
            url.to_string(),
            PendingLogin {
                state: Secret::new(state.secret().clone()),
                nonce: Secret::new(nonce.secret().clone()),
                verifier: Secret::new(verifier.secret().clone()),
                redirect_uri: redirect_uri.to_owned(),
                next: next.to_owned(),
                expires_at: now + 600,
            },
        ))
    }

    /// Finishes a login: exchanges the code, verifies the ID token, reads userinfo.
    pub async fn finish(&self, pending: &PendingLogin, code: &str) -> Result<LoggedIn, OidcError> {
        let d = self.discovered().ok_or(OidcError::NotDiscovered)?;
        let client = self.client(&d, &pending.redirect_uri)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.expose().clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(exchange_error(&e)))?;
        let id_token = token.id_token().ok_or(OidcError::NoIdToken)?;
        let verifier = client.id_token_verifier();
        let verifier = if self.cfg.issuer_url.is_empty() {
            verifier
        } else {
            verifier.require_issuer_match(false)
        };
        let claims = id_token
            .claims(&verifier, &Nonce::new(pending.nonce.expose().clone()))
            .map_err(|e| OidcError::IdToken(e.to_string()))?;
        if !self.cfg.issuer_url.is_empty() {
            let iss = claims.issuer().as_str().trim_end_matches('/');
            let ok = [&self.cfg.base_url, &self.cfg.issuer_url]
                .iter()
                .any(|a| a.trim_end_matches('/') == iss);
            if !ok {
                return Err(OidcError::IdToken("issuer mismatch".into()));
            }
        }
        let subject = claims.subject().as_str().to_owned();
        let mut profile = json!({
            "subject": subject,
            "name": claims.name().and_then(|n| n.get(None)).map(|n| n.as_str()).unwrap_or(""),
            "preferred_username": claims.preferred_username().map(|u| u.as_str()).unwrap_or(""),
            "given_name": claims.given_name().and_then(|n| n.get(None)).map(|n| n.as_str()).unwrap_or(""),
            "family_name": claims.family_name().and_then(|n| n.get(None)).map(|n| n.as_str()).unwrap_or(""),
            "email": claims.email().map(|e| e.as_str()).unwrap_or(""),
            "picture": claims.picture().and_then(|p| p.get(None)).map(|p| p.as_str()).unwrap_or(""),
        });
        // Group claims (verified above) come from the raw payload: the typed claims drop them.
        if let Some(groups) = raw_claim(&id_token.to_string(), "groups") {
            profile["groups"] = groups;
        }
        // userinfo (when advertised) fills what the ID token left out.
        if let Ok(req) = client.user_info(token.access_token().clone(), None) {
            if let Ok(info) = req
                .request_async::<openidconnect::EmptyAdditionalClaims, _, _>(&self.http)
                .await
            {
                let info: CoreUserInfoClaims = info;
                if info.subject().as_str() == subject {
                    let mut fill = |key: &str, v: Option<String>| {
                        if let Some(v) = v {
                            if profile[key].as_str().unwrap_or("").is_empty() {
                                profile[key] = Value::String(v);
                            }
                        }
                    };
                    fill(
                        "name",
                        info.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
                    );
                    fill("email", info.email().map(|e| e.to_string()));
                    fill(
                        "preferred_username",
                        info.preferred_username().map(|u| u.to_string()),
                    );
                }
            }
        }
        Ok(LoggedIn {
            subject,
            profile,
            refresh_token: token
                .refresh_token()
                .map(|r| Secret::new(r.secret().clone())),
        })
    }
}

/// The client type `from_provider_metadata` yields: authorization endpoint known, token and
/// userinfo endpoints possibly advertised.
type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

fn exchange_error<E: std::error::Error>(e: &E) -> String {
    // The server's error code/description, never the request (which holds the code).
    let s = e.to_string();
    s.chars().take(200).collect()
}

/// One claim from a JWT's payload (the token must have been verified already).
fn raw_claim(jwt: &str, name: &str) -> Option<Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get(name).cloned()
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn pending_login_debug_hides_its_credentials() {
        let p = PendingLogin {
            state: Secret::new("state-value-1".into()),
            nonce: Secret::new("nonce-value-2".into()),
            verifier: Secret::new("verifier-value-3".into()),
            redirect_uri: "https://x/callback".into(),
            next: "/console".into(),
            expires_at: 1,
        };
        let shown = format!("{p:?}");
        for v in ["state-value-1", "nonce-value-2", "verifier-value-3"] {
            assert!(!shown.contains(v), "{shown}");
        }
        // The sealed form still round-trips.
        let back: PendingLogin = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back.verifier.expose(), "verifier-value-3");
    }

    #[test]
    fn logged_in_debug_hides_the_refresh_token() {
        let l = LoggedIn {
            subject: "u".into(),
            profile: Value::Null,
            refresh_token: Some(Secret::new("refresh-value-4".into())),
        };
        assert!(!format!("{l:?}").contains("refresh-value-4"));
    }
}
