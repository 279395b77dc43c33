//! `POST /oauth2/token` (RFC 6749 §3.2, §4.1.3, §4.4, §6; RFC 7636 §4.6; RFC 9700 §4.14):
//! client authentication by Basic or form, then one function per grant. Unknown parameters
//! are ignored (flytekit echoes every authorize parameter).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::authorize::is_pkce_value;
use super::bound_digest;
use super::clients::Client;
use super::error::{no_store, OAuthError};
use super::issue::{issue, spent_twice, Family, Grant};
use super::recent::Recent;
use crate::store::{AuthCodeRecord, Found, RefreshTokenRecord, Spend, StoreError};
use crate::transport::grpc::RequestOrigin;
use crate::transport::state::AppState;

type Form = HashMap<String, String>;

/// `POST /oauth2/token`.
pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    origin: Option<axum::Extension<RequestOrigin>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let (authority, scheme) = match &origin {
        Some(axum::Extension(o)) => (o.authority.as_deref(), o.scheme),
        None => (None, "http"),
    };
    let public = state.public_urls.resolve(authority, scheme).to_owned();
    match handle(&state, &headers, &public, body).await {
        Ok(resp) => {
            let mut r = Json(resp).into_response();
            no_store(&mut r);
            r
        }
        Err(e) => {
            tracing::info!(target: "flyteauth::audit", route = "/oauth2/token", outcome = "deny", error = e.error);
            e.into_response()
        }
    }
}

/// Reads an `application/x-www-form-urlencoded` body whose parameters appear at most once.
pub fn read_form(
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Form, OAuthError> {
    let body = body.map_err(|e| {
        if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
            OAuthError::too_large()
        } else {
            OAuthError::invalid_request("unreadable body")
        }
    })?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut form = Form::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        // §3.2: parameters MUST NOT be repeated.
        if form.insert(k.to_string(), v.to_string()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {k} is repeated"
            )));
        }
    }
    Ok(form)
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    public: &str,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<super::issue::TokenResponse, OAuthError> {
    let form = read_form(headers, body)?;
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant_type.is_empty() {
        return Err(OAuthError::invalid_request("grant_type is missing"));
    }
    if super::exchange::handles(grant_type) {
        return super::exchange::grant(state, headers, public, &form, grant_type).await;
    }
    let client = authenticate_client(state, headers, &form).await?;
    match grant_type {
        "authorization_code" => authorization_code(state, public, client, &form).await,
        "refresh_token" => refresh_token(state, public, client, &form).await,
        "client_credentials" => client_credentials(state, public, client, &form).await,
        super::device::GRANT_TYPE => super::device::poll(state, public, client, &form).await,
        other => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {other:?} is not supported"
        ))),
    }
}

/// §2.3.1: HTTP Basic (id and secret form-urlencoded inside) or form parameters.
pub async fn authenticate_client<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    form: &Form,
) -> Result<&'a Client, OAuthError> {
    let basic = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if v.len() > 6 && v[..6].eq_ignore_ascii_case("basic ") => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v[6..].trim())
                .map_err(|_| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let raw = String::from_utf8(raw)
                .map_err(|_| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let (id, secret) = raw
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let decode = |s: &str| -> String {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Some((decode(id), decode(secret)))
        }
        _ => None,
    };
    let used_basic = basic.is_some();
    // §2.3: a client MUST NOT use more than one authentication method in a request.
    if used_basic && form.contains_key("client_secret") {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method (Basic and client_secret)",
        ));
    }
    let (id, secret) = match (basic, form.get("client_id")) {
        (Some((id, secret)), form_id) => {
            if form_id.is_some_and(|f| *f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the Basic credentials",
                ));
            }
            (id, Some(secret).filter(|s| !s.is_empty()))
        }
        (None, Some(id)) => (
            id.clone(),
            form.get("client_secret").cloned().filter(|s| !s.is_empty()),
        ),
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "client authentication is missing",
                false,
            ))
        }
    };
    let client = state
        .authz
        .clients
        .get(&id)
        .ok_or_else(|| OAuthError::invalid_client("unknown client", used_basic))?;
    if client.public {
        return Ok(client);
    }
    let Some(secret) = secret else {
        return Err(OAuthError::invalid_client(
            "client secret is missing",
            used_basic,
        ));
    };
    // Guessing a client's secret: after too many failures the client is locked for a while
    // at the address that failed (even for the right secret), and no bcrypt is spent
    // meanwhile. Per address (§14): wrong secrets from elsewhere never stop the client itself.
    // The attempt is counted before the check, so a concurrent burst cannot exceed the limit.
    let now = state.clock.now();
    let addr = crate::transport::client_addr::current()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let key = format!("client:{}@{addr}", client.id);
    if let Err(retry) = state
        .authz
        .client_limiter
        .attempt(std::slice::from_ref(&key), now)
        .await
    {
        return Err(OAuthError::too_many_attempts(retry));
    }
    if !state.authz.clients.verify_secret(client, &secret).await {
        tracing::info!(target: "flyteauth::audit", event = "client_auth_failed", client_id = %client.id, peer = %addr);
        return Err(OAuthError::invalid_client(
            "client authentication failed",
            used_basic,
        ));
    }
    state.authz.client_limiter.forget(&key).await;
    Ok(client)
}

fn required<'f>(form: &'f Form, name: &str) -> Result<&'f str, OAuthError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::invalid_request(format!("{name} is missing")))
}

/// §4.1.3 with RFC 7636 §4.6.
async fn authorization_code(
    state: &AppState,
    public: &str,
    client: &Client,
    form: &Form,
) -> Result<super::issue::TokenResponse, OAuthError> {
    if !client.allows_grant("authorization_code") {
        return Err(OAuthError::unauthorized_client(
            "this client may not use authorization_code",
        ));
    }
    let code = required(form, "code")?;
    let now = state.clock.now();
    let hash = bound_digest(&client.id, code);
    let found = grant_record(
        &state.authz.recent.codes,
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
        return Err(spent_twice(state, &family, &grant).await);
    }
    if let Err(refused) = check_code_request(&record, client, form, now) {
        // A code is spent by any presentation, good or bad: a guessed verifier or a wrong
        // redirect_uri gets no second try.
        if let Spend::AuthCode(hash) = &family.spend {
            state.store.redeem_auth_code(hash, now).await?;
        }
        return Err(refused);
    }
    issue(
        state,
        public,
        Grant {
            family: Some(family),
            ..grant
        },
    )
    .await
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

fn split_scopes(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split([' ', ',']).filter(|p| !p.is_empty()) {
        if !out.iter().any(|o| o == part) {
            out.push(part.to_owned());
        }
    }
    out
}

/// §6, rotating (RFC 9700 §4.14.2): every use returns a new refresh token; a reused one
/// revokes its whole family.
async fn refresh_token(
    state: &AppState,
    public: &str,
    client: &Client,
    form: &Form,
) -> Result<super::issue::TokenResponse, OAuthError> {
    if !client.allows_grant("refresh_token") {
        return Err(OAuthError::unauthorized_client(
            "this client may not use refresh_token",
        ));
    }
    let token = required(form, "refresh_token")?;
    let now = state.clock.now();
    let hash = bound_digest(&client.id, token);
    let found = grant_record(
        &state.authz.recent.refresh_tokens,
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
    let in_grace = found.used && super::issue::used_within_grace(state, found.used_at, now);
    if found.used && !in_grace {
        return Err(spent_twice(state, &family, &grant).await);
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
    issue(
        state,
        public,
        Grant {
            scopes: &scopes,
            family: Some(family),
            ..grant
        },
    )
    .await
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

/// §4.4: confidential clients only; the token's subject is the client.
async fn client_credentials(
    state: &AppState,
    public: &str,
    client: &Client,
    form: &Form,
) -> Result<super::issue::TokenResponse, OAuthError> {
    if client.public {
        return Err(OAuthError::unauthorized_client(
            "client_credentials requires a confidential client",
        ));
    }
    if !client.allows_grant("client_credentials") {
        return Err(OAuthError::unauthorized_client(
            "this client may not use client_credentials",
        ));
    }
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
            state.public_urls.all().any(|p| p == a)
                || state.issuer.trim_end_matches('/') == a
                || client.audience.iter().any(|c| c == a)
        });
        if !ok {
            return Err(OAuthError::invalid_target(
                "audience is not this deployment",
            ));
        }
    }
    issue(
        state,
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
