//! The grants of `POST /oauth2/token` that a client authenticates for (RFC 6749 §4.1.3, §4.4,
//! §6; RFC 7636 §4.6; RFC 9700 §4.14): authorization code, refresh token, client credentials
//! (and, through [`super::device`], the device code). Unknown parameters are ignored
//! (flytekit echoes every authorize parameter).

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::authorize::is_pkce_value;
use super::clients::Client;
use super::error::OAuthError;
use super::grant_types::{AUTHORIZATION_CODE, CLIENT_CREDENTIALS, DEVICE_CODE, REFRESH_TOKEN};
use super::issue::{Family, Grant, TokenResponse};
use super::recent::Recent;
use super::{bound_digest, split_scopes, AuthorizationServer, Form};
use crate::store::{AuthCodeRecord, Found, RefreshTokenRecord, Spend, StoreError};

impl AuthorizationServer {
    /// The grant `grant_type` for the authenticated `client`, at the public URL `public`.
    pub async fn token_grant(
        &self,
        public: &str,
        client: &Client,
        grant_type: &str,
        form: &Form,
    ) -> Result<TokenResponse, OAuthError> {
        match grant_type {
            AUTHORIZATION_CODE => self.authorization_code(public, client, form).await,
            REFRESH_TOKEN => self.refresh_token(public, client, form).await,
            CLIENT_CREDENTIALS => self.client_credentials(public, client, form).await,
            DEVICE_CODE => self.device_poll(public, client, form).await,
            other => Err(OAuthError::unsupported_grant_type(format!(
                "grant_type {other:?} is not supported"
            ))),
        }
    }
}

fn required<'f>(form: &'f Form, name: &str) -> Result<&'f str, OAuthError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::invalid_request(format!("{name} is missing")))
}

impl AuthorizationServer {
    /// §4.1.3 with RFC 7636 §4.6.
    pub async fn authorization_code(
        &self,
        public: &str,
        client: &Client,
        form: &Form,
    ) -> Result<TokenResponse, OAuthError> {
        let state = self;
        client.require_grant("authorization_code", "authorization_code")?;
        let code = required(form, "code")?;
        let now = state.clock.now();
        let hash = bound_digest(&client.id, code);
        let found = grant_record(
            &state.recent.codes,
            &hash,
            |record| check_code_request(record, client, form, now).is_ok(),
            || state.store.find_auth_code(&hash),
            "unknown authorization code",
        )
        .await?;
        let record = found.record;
        let family = Family {
            id: &record.family_id,
            spend: Spend::AuthCode(hash),
            user_info: &record.user_info,
            refresh_scopes: (record.scopes.iter().any(|s| s == "offline")
                && client.allows_grant("refresh_token"))
            .then_some(record.scopes.as_slice()),
        };
        let profile = profile_of(&record.user_info);
        let grant = user_grant(
            &record.subject,
            client,
            &record.scopes,
            &profile,
            record.auth_time,
            "authorization_code",
        );
        if found.used || found.family_revoked {
            // §4.1.2: a code used twice is refused and the tokens issued from it revoked.
            return Err(state.spent_twice(&family, &grant).await);
        }
        if let Err(refused) = check_code_request(&record, client, form, now) {
            // A code is spent by any presentation, good or bad: a guessed verifier or a wrong
            // redirect_uri gets no second try.
            if let Spend::AuthCode(hash) = &family.spend {
                state.store.redeem_auth_code(hash, now).await?;
            }
            return Err(refused);
        }
        state
            .issue(
                public,
                Grant {
                    family: Some(family),
                    ..grant
                },
            )
            .await
    }
}

/// The stored profile (JSON text) as the `user_info` claim.
fn profile_of(user_info: &str) -> serde_json::Value {
    serde_json::from_str(user_info).unwrap_or_default()
}

/// A user's grant from a stored code or refresh token; its family is set once it may spend.
fn user_grant<'a>(
    subject: &'a str,
    client: &'a Client,
    scopes: &'a [String],
    profile: &'a serde_json::Value,
    auth_time: i64,
    grant_type: &'static str,
) -> Grant<'a> {
    Grant {
        subject,
        client_id: &client.id,
        scopes,
        profile: Some(profile),
        auth_time,
        family: None,
        grant_type,
    }
}

/// Whether the token request may redeem the (unused) code.
fn check_code_request(
    record: &AuthCodeRecord,
    client: &Client,
    form: &Form,
    now: i64,
) -> Result<(), OAuthError> {
    if now >= record.expires_at {
        return Err(OAuthError::invalid_grant("authorization code expired"));
    }
    if record.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    // §4.1.3: redirect_uri must be identical to the one of the authorization request.
    if form.get("redirect_uri").map(String::as_str).unwrap_or("") != record.redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    if !record.code_challenge.is_empty() {
        let verifier = form
            .get("code_verifier")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("code_verifier is missing"))?;
        if !is_pkce_value(verifier) {
            return Err(OAuthError::invalid_grant("malformed code_verifier"));
        }
        // §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge.
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        if !bool::from(computed.as_bytes().ct_eq(record.code_challenge.as_bytes())) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
    } else if form.get("code_verifier").is_some_and(|v| !v.is_empty()) {
        // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a downgrade.
        return Err(OAuthError::invalid_grant(
            "code_verifier sent but the authorization request had no code_challenge",
        ));
    } else if client.requires_pkce() {
        return Err(OAuthError::invalid_grant("this client must use PKCE"));
    }
    Ok(())
}

impl AuthorizationServer {
    /// §6, rotating (RFC 9700 §4.14.2): every use returns a new refresh token; a reused one
    /// revokes its whole family.
    pub async fn refresh_token(
        &self,
        public: &str,
        client: &Client,
        form: &Form,
    ) -> Result<TokenResponse, OAuthError> {
        let state = self;
        client.require_grant("refresh_token", "refresh_token")?;
        let token = required(form, "refresh_token")?;
        let now = state.clock.now();
        let hash = bound_digest(&client.id, token);
        let found = grant_record(
            &state.recent.refresh_tokens,
            &hash,
            |record| refresh_scopes(record, client, form, now).is_ok(),
            || state.store.find_refresh_token(&hash),
            "unknown refresh token",
        )
        .await?;
        let record = found.record;
        if found.family_revoked {
            return Err(OAuthError::invalid_grant("refresh token revoked"));
        }
        let profile = profile_of(&record.user_info);
        let family = Family {
            id: &record.family_id,
            spend: Spend::RefreshToken(hash),
            user_info: &record.user_info,
            refresh_scopes: Some(&record.scopes),
        };
        let grant = user_grant(
            &record.subject,
            client,
            &record.scopes,
            &profile,
            record.auth_time,
            "refresh_token",
        );
        // §14: one user's processes refreshing with the same token at once. Within the grace
        // period after its rotation, the same client (the digest is bound to it) may redeem it
        // again: new tokens in the same family, nothing revoked. Later, reuse revokes the family.
        let in_grace = found.used && state.used_within_grace(found.used_at, now);
        if found.used && !in_grace {
            return Err(state.spent_twice(&family, &grant).await);
        }
        let family = if in_grace {
            tracing::info!(target: "flyteauth::audit", event = "refresh_reuse_in_grace", client_id = %client.id, subject = %record.subject);
            Family {
                spend: Spend::Nothing,
                ..family
            }
        } else {
            family
        };
        // A refused request spends nothing: the client keeps its refresh token.
        let scopes = refresh_scopes(&record, client, form, now)?;
        state
            .issue(
                public,
                Grant {
                    scopes: &scopes,
                    family: Some(family),
                    ..grant
                },
            )
            .await
    }
}

/// The access token's scopes if the refresh request may redeem the (unused) token.
fn refresh_scopes(
    record: &RefreshTokenRecord,
    client: &Client,
    form: &Form,
    now: i64,
) -> Result<Vec<String>, OAuthError> {
    if now >= record.expires_at {
        return Err(OAuthError::invalid_grant("refresh token expired"));
    }
    if record.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    // §6: the scope may only narrow.
    match form.get("scope").map(|s| split_scopes(s)) {
        Some(requested) if !requested.is_empty() => {
            if let Some(bad) = requested.iter().find(|s| !record.scopes.contains(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope {bad:?} was not granted originally"
                )));
            }
            Ok(requested)
        }
        _ => Ok(record.scopes.clone()),
    }
}

/// The stored code or refresh token `hash`: issued here and not presented since, if the
/// request `passes` on it, without a read (whether it is still unspent and its family alive
/// is then left to the grant's transaction, see [`super::recent`]); otherwise as `read`
/// finds it (called only then), `unknown` if it does not exist.
async fn grant_record<T, Read>(
    recent: &Recent<T>,
    hash: &str,
    passes: impl FnOnce(&T) -> bool,
    read: impl FnOnce() -> Read,
    unknown: &'static str,
) -> Result<Found<T>, OAuthError>
where
    Read: std::future::Future<Output = Result<Found<T>, StoreError>>,
{
    if let Some(record) = recent.take(hash).filter(passes) {
        return Ok(Found {
            record,
            used: false,
            used_at: None,
            family_revoked: false,
        });
    }
    match read().await {
        Err(StoreError::NotFound) => Err(OAuthError::invalid_grant(unknown)),
        found => Ok(found?),
    }
}

impl AuthorizationServer {
    /// §4.4: confidential clients only; the token's subject is the client.
    pub async fn client_credentials(
        &self,
        public: &str,
        client: &Client,
        form: &Form,
    ) -> Result<TokenResponse, OAuthError> {
        let state = self;
        if client.public {
            return Err(OAuthError::unauthorized_client(
                "client_credentials requires a confidential client",
            ));
        }
        client.require_grant("client_credentials", "client_credentials")?;
        let requested = form
            .get("scope")
            .map(|s| split_scopes(s))
            .unwrap_or_default();
        let scopes: Vec<String> = if requested.is_empty() {
            client
                .scopes
                .iter()
                .filter(|s| *s != "access_token" && *s != "offline" && !s.contains('*'))
                .cloned()
                .collect()
        } else {
            if let Some(bad) = requested.iter().find(|s| !client.allows_scope(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope {bad:?} is not allowed for this client"
                )));
            }
            requested
        };
        // Auth0-style clients send `audience`: accept this deployment's own audiences.
        if let Some(aud) = form.get("audience").filter(|a| !a.is_empty()) {
            let ok = aud.split(' ').all(|a| {
                let a = a.trim_end_matches('/');
                state.settings.public_urls.all().any(|p| p == a)
                    || state.settings.issuer.trim_end_matches('/') == a
                    || client.audience.iter().any(|c| c == a)
            });
            if !ok {
                return Err(OAuthError::invalid_target(
                    "audience is not this deployment",
                ));
            }
        }
        state
            .issue(
                public,
                Grant {
                    subject: &client.id,
                    client_id: &client.id,
                    scopes: &scopes,
                    profile: None,
                    auth_time: state.clock.now(),
                    family: None,
                    grant_type: "client_credentials",
                },
            )
            .await
    }
}
