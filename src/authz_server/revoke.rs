//! `POST /oauth2/revoke` (RFC 7009) and `POST /oauth2/introspect` (RFC 7662).
//!
//! Revoking a refresh token revokes its whole family (and the access tokens issued in it);
//! revoking an access token puts its `jti` on the revocation list, which this replica honours
//! at once and the others within one poll interval (`state::REVOCATION_POLL`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::bound_digest;
use super::error::{no_store, OAuthError};
use super::token::{authenticate_client, read_form};
use crate::store::StoreError;
use crate::transport::state::AppState;

fn ok_empty() -> Response {
    let mut r = StatusCode::OK.into_response();
    no_store(&mut r);
    r
}

/// `POST /oauth2/revoke`: always 200 for unknown or invalid tokens (§2.2).
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    match handle_revoke(&state, &headers, body).await {
        Ok(()) => ok_empty(),
        Err(e) => e.into_response(),
    }
}

async fn handle_revoke(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(), OAuthError> {
    let form = read_form(headers, body)?;
    let client = authenticate_client(state, headers, &form).await?;
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
                    super::issue::revoke_family(state, &r.family_id).await?;
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
                    let dead_at = id
                        .expires_at
                        .saturating_add(state.config.auth.clock_skew_secs);
                    state.store.revoke_access_token(jti, dead_at, now).await?;
                    state.authenticator.verifier.revoke(jti, id.expires_at);
                    tracing::info!(target: "flyteauth::audit", event = "access_token_revoked", client_id = %client.id, subject = %id.subject);
                }
            }
        }
    }
    Ok(())
}

/// `POST /oauth2/introspect`: confidential clients only (§2.1).
pub async fn introspect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    match handle_introspect(&state, &headers, body).await {
        Ok(v) => {
            let mut r = Json(v).into_response();
            no_store(&mut r);
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn handle_introspect(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Value, OAuthError> {
    let form = read_form(headers, body)?;
    let client = authenticate_client(state, headers, &form).await?;
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
