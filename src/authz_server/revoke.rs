//! Revocation (RFC 7009) and introspection (RFC 7662), for an authenticated client.
//!
//! Revoking a refresh token revokes its whole family (and the access tokens issued in it);
//! revoking an access token puts its `jti` on the revocation list, which this replica honours
//! at once and the others within one poll interval (`state::REVOCATION_POLL`).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::clients::Client;
use super::error::OAuthError;
use super::{bound_digest, AuthorizationServer, Form};
use crate::store::StoreError;

impl AuthorizationServer {
    /// §2.1: `token` of `client`, with its `token_type_hint`. Unknown or invalid tokens are no
    /// error (§2.2).
    pub async fn revoke(&self, client: &Client, form: &Form) -> Result<(), OAuthError> {
        let state = self;
        let token = form
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let hint = form
            .get("token_type_hint")
            .map(String::as_str)
            .unwrap_or("");
        let now = state.clock.now();
        let looks_like_jwt = token.split('.').count() == 3;
        if hint != "access_token" && !looks_like_jwt {
            // Revoking the family spends all its refresh tokens, this one included.
            match state
                .store
                .find_refresh_token(&bound_digest(&client.id, token))
                .await
            {
                Ok(found) => {
                    let r = found.record;
                    if !found.family_revoked && r.client_id == client.id {
                        state.revoke_family(&r.family_id).await?;
                        tracing::info!(target: "flyteauth::audit", event = "refresh_revoked", client_id = %client.id, subject = %r.subject);
                    }
                    return Ok(());
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if looks_like_jwt {
            // Only our own, validly signed tokens of this client can be revoked.
            if let Ok(id) = state.authenticator.verifier.verify(token) {
                if id.client_id.as_deref() == Some(client.id.as_str()) {
                    if let Some(jti) = &id.token_id {
                        let dead_at = id.expires_at.saturating_add(state.settings.clock_skew_secs);
                        state.store.revoke_access_token(jti, dead_at, now).await?;
                        state.authenticator.verifier.revoke(jti, id.expires_at);
                        tracing::info!(target: "flyteauth::audit", event = "access_token_revoked", client_id = %client.id, subject = %id.subject);
                    }
                }
            }
        }
        Ok(())
    }

    /// §2.1: what `token` is, for a confidential `client`.
    pub async fn introspect(&self, client: &Client, form: &Form) -> Result<Value, OAuthError> {
        let state = self;
        if client.public {
            return Err(OAuthError::invalid_client(
                "introspection requires a confidential client",
                false,
            ));
        }
        let token = form
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let inactive = json!({"active": false});
        if token.split('.').count() != 3 {
            // Refresh tokens are opaque; their state is not disclosed beyond "not an access token".
            return Ok(inactive);
        }
        let Ok(id) = state.authenticator.verifier.verify(token) else {
            return Ok(inactive);
        };
        let mut out: HashMap<&str, Value> = HashMap::new();
        out.insert("active", json!(true));
        out.insert("scope", json!(id.scopes.join(" ")));
        out.insert("client_id", json!(id.client_id.clone().unwrap_or_default()));
        out.insert("sub", json!(id.subject));
        out.insert("username", json!(id.user_info.preferred_username));
        out.insert("token_type", json!("Bearer"));
        out.insert("exp", json!(id.expires_at));
        // `act`: who an exchanged token came from (RFC 8693 §4.1).
        for k in ["iat", "nbf", "iss", "aud", "jti", "act"] {
            if let Some(v) = id.claims.get(k) {
                out.insert(k, v.clone());
            }
        }
        Ok(json!(out))
    }
}
