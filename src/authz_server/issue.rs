//! Minting: JWT access tokens (RFC 9068 shape, DESIGN §5) and opaque refresh tokens.

use serde::Serialize;
use serde_json::Value;

use super::bound_digest;
use super::error::OAuthError;
use crate::keys::random_token;
use crate::state::AppState;
use crate::store::RefreshTokenRecord;

/// Who the tokens are for.
pub struct Grant<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    pub scopes: &'a [String],
    /// The user's profile for user tokens (`user_info` claim); `None` for client tokens.
    pub profile: Option<&'a Value>,
    pub auth_time: i64,
    /// The token family (authorization code → refresh chain); `None` for client tokens.
    pub family_id: Option<&'a str>,
    /// The grant that led here (metrics label).
    pub grant_type: &'static str,
}

/// The claims of an access token (RFC 9068 plus Flyte's `scp`, `client_id` and `user_info`).
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    aud: [&'a str; 1],
    sub: &'a str,
    client_id: &'a str,
    scp: &'a [String],
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_info: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a Value>,
}

/// RFC 6749 §5.1 success response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// The `iss` of tokens and of the authorization response for a request through `public`.
pub fn issuer(state: &AppState, public: &str) -> String {
    state
        .config
        .auth
        .issuer
        .clone()
        .unwrap_or_else(|| public.to_owned())
}

/// Signs an access token and, when `with_refresh`, stores a new refresh token of the family.
pub async fn issue(
    state: &AppState,
    public: &str,
    grant: Grant<'_>,
    with_refresh: bool,
) -> Result<TokenResponse, OAuthError> {
    let now = state.clock.now();
    let lifetime = state
        .config
        .app_auth
        .self_auth_server
        .access_token_lifespan
        .as_secs() as i64;
    let exp = now + lifetime;
    let jti = random_token();
    let claims = AccessClaims {
        iss: &issuer(state, public),
        aud: [public],
        sub: grant.subject,
        client_id: grant.client_id,
        scp: grant.scopes,
        iat: now,
        nbf: now,
        exp,
        jti: &jti,
        auth_time: grant.auth_time,
        user_info: grant.profile,
        groups: grant.profile.and_then(|p| p.get("groups")),
    };
    let access_token = state.keys.current.sign_jwt("at+jwt", &claims);
    let mut refresh_token = None;
    if let Some(family) = grant.family_id {
        // Kept on the revocation list until the token is dead even with the clock leeway.
        let dead_at = exp.saturating_add(state.config.auth.clock_skew_secs);
        state
            .store
            .record_access_token(family, &jti, dead_at)
            .await?;
        if with_refresh {
            let token = random_token();
            let refresh_life = state
                .config
                .app_auth
                .self_auth_server
                .refresh_token_lifespan
                .as_secs() as i64;
            state
                .store
                .insert_refresh_token(&RefreshTokenRecord {
                    token_hash: bound_digest(grant.client_id, &token),
                    family_id: family.to_owned(),
                    client_id: grant.client_id.to_owned(),
                    subject: grant.subject.to_owned(),
                    user_info: grant.profile.map(Value::to_string).unwrap_or_default(),
                    scopes: grant.scopes.to_vec(),
                    auth_time: grant.auth_time,
                    expires_at: now + refresh_life,
                })
                .await?;
            refresh_token = Some(token);
        }
    }
    state.metrics.inc(
        "flyteauth_tokens_issued_total",
        &[("grant", grant.grant_type), ("client", grant.client_id)],
    );
    tracing::info!(
        target: "flyteauth::audit",
        event = "token_issued",
        grant = grant.grant_type,
        subject = grant.subject,
        client_id = grant.client_id,
        refresh = refresh_token.is_some(),
    );
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        scope: grant.scopes.join(" "),
        refresh_token,
    })
}
