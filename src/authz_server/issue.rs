//! Minting: JWT access tokens (RFC 9068 shape, DESIGN §5) and opaque refresh tokens.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;
use serde::Serialize;
use serde_json::Value;

use super::error::OAuthError;
use super::{bound_digest, AuthorizationServer};
use crate::keys::{random_token, KeySet};
use crate::secret::Secret;
use crate::store::{Issuance, IssueOutcome, RefreshTokenRecord, Spend};

/// Who the tokens are for.
pub struct Grant<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    /// The access token's scopes.
    pub scopes: &'a [String],
    /// The user's profile for user tokens (`user_info` claim); `None` for client tokens.
    pub profile: Option<&'a Value>,
    pub auth_time: i64,
    /// The token family of a user grant; `None` for client tokens (nothing is stored).
    pub family: Option<Family<'a>>,
    /// The grant that led here (metrics label).
    pub grant_type: &'static str,
}

/// A user grant's place in its token family (authorization code → refresh chain).
pub struct Family<'a> {
    pub id: &'a str,
    /// The code or refresh token the grant was made with, spent when the tokens are stored.
    pub spend: Spend,
    /// The user's profile as stored (JSON text), kept as it is for the new refresh token.
    pub user_info: &'a str,
    /// The scopes of a new refresh token; `None` for no refresh token. RFC 6749 §6: a
    /// rotated refresh token keeps the original scope even when the access token narrows it.
    pub refresh_scopes: Option<&'a [String]>,
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

/// RFC 6749 §5.1 success response. Both tokens are [`Secret`]s: `Debug` cannot show them.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    #[serde(with = "crate::secret::text")]
    pub access_token: Secret<String>,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::secret::text_opt::serialize"
    )]
    pub refresh_token: Option<Secret<String>>,
    /// RFC 8693 §2.2.1: set by the token exchange only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

/// Signs an access token's `payload` without stalling a worker: an RSA signature (~0.3 ms) on
/// a blocking thread, started at once; a quick one (ES256, EdDSA) in the calling task when the
/// future is first polled, where a hand-off would cost about as much as signing.
pub(super) fn sign_off_the_workers(
    keys: Arc<KeySet>,
    payload: Vec<u8>,
) -> impl Future<Output = Result<String, tokio::task::JoinError>> {
    let quick = keys.current.alg().signs_quickly();
    let sign = move || keys.current.sign_jwt_payload("at+jwt", &payload);
    if quick {
        Either::Left(async move { Ok(sign()) })
    } else {
        Either::Right(tokio::task::spawn_blocking(sign))
    }
}

impl AuthorizationServer {
    /// The `iss` of tokens and of the authorization response for a request through `public`.
    pub fn issuer(&self, public: &str) -> String {
        self.settings
            .configured_issuer
            .clone()
            .unwrap_or_else(|| public.to_owned())
    }

    /// Signs an access token; for a user grant, spends the family's code or refresh token and
    /// stores the new refresh token in one transaction, side by side with the signature.
    pub async fn issue(&self, public: &str, grant: Grant<'_>) -> Result<TokenResponse, OAuthError> {
        let state = self;
        let now = state.clock.now();
        let lifetime = state.settings.access_token_lifespan;
        let exp = now + lifetime;
        let jti = random_token();
        let claims = AccessClaims {
            iss: &state.issuer(public),
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
        let (access_token, refresh_token) = match &grant.family {
            None => (state.keys.current.sign_jwt("at+jwt", &claims), None),
            Some(family) => {
                let payload = serde_json::to_vec(&claims).expect("JWT claims serialize");
                let refresh_token = family.refresh_scopes.map(|_| random_token());
                let refresh_life = state.settings.refresh_token_lifespan;
                let issuance = Issuance {
                    family_id: family.id.to_owned(),
                    jti,
                    // Kept on the revocation list until the token is dead even with the leeway.
                    jti_expires_at: exp.saturating_add(state.settings.clock_skew_secs),
                    refresh: refresh_token.as_deref().zip(family.refresh_scopes).map(
                        |(token, scopes)| RefreshTokenRecord {
                            token_hash: bound_digest(grant.client_id, token),
                            family_id: family.id.to_owned(),
                            client_id: grant.client_id.to_owned(),
                            subject: grant.subject.to_owned(),
                            user_info: family.user_info.to_owned(),
                            scopes: scopes.to_vec(),
                            auth_time: grant.auth_time,
                            expires_at: now + refresh_life,
                        },
                    ),
                };
                // The transaction waits on the database (or, on SQLite, runs in this task) and
                // the signature is CPU work: they run side by side. An RSA signature starts at
                // once on a blocking thread, so that no worker stalls for its ~0.2 ms; a quick
                // one (ES256, EdDSA) runs here once the store operation is under way, where
                // handing it to a thread would cost about as much as signing. A token signed for
                // a grant that then loses is dropped unseen.
                let signing = sign_off_the_workers(state.keys.clone(), payload);
                let (stored, signed) = tokio::join!(
                    biased;
                    state.store.spend_and_issue(&family.spend, now, &issuance),
                    signing
                );
                match stored? {
                    IssueOutcome::Issued => {}
                    // A concurrent request rotated the refresh token first (§14 grace period).
                    IssueOutcome::AlreadyUsed
                        if state.rotated_within_grace(&family.spend, now).await =>
                    {
                        match state
                            .store
                            .spend_and_issue(&Spend::Nothing, now, &issuance)
                            .await?
                        {
                            IssueOutcome::Issued => {}
                            _ => return Err(OAuthError::invalid_grant("the grant was revoked")),
                        }
                    }
                    IssueOutcome::AlreadyUsed => {
                        return Err(state.spent_twice(family, &grant).await)
                    }
                    IssueOutcome::FamilyRevoked => {
                        return Err(OAuthError::invalid_grant("the grant was revoked"))
                    }
                }
                if let Some(record) = issuance.refresh {
                    let recent = &state.recent.refresh_tokens;
                    recent.put(record.token_hash.clone(), record);
                }
                let access_token = signed
                    .map_err(|_| OAuthError::server_error("signing the access token failed"))?;
                (access_token, refresh_token)
            }
        };
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
            access_token: Secret::new(access_token),
            token_type: "Bearer",
            expires_in: lifetime,
            scope: grant.scopes.join(" "),
            refresh_token: refresh_token.map(Secret::new),
            issued_token_type: None,
        })
    }

    /// Whether a refresh token first used at `used_at` may still be redeemed again at `now`
    /// (`auth.appAuth.selfAuthServer.refreshTokenGracePeriod`; zero: never).
    pub fn used_within_grace(&self, used_at: Option<i64>, now: i64) -> bool {
        let grace = self.settings.refresh_token_grace_period;
        grace > 0 && used_at.is_some_and(|u| now >= u && now - u <= grace)
    }

    /// After a grant lost the race to spend its refresh token: whether the winner rotated it
    /// within the grace period (read from the store, so replicas agree) and the family lives.
    async fn rotated_within_grace(&self, spend: &Spend, now: i64) -> bool {
        let state = self;
        let Spend::RefreshToken(hash) = spend else {
            return false;
        };
        match state.store.find_refresh_token(hash).await {
            Ok(found) => !found.family_revoked && state.used_within_grace(found.used_at, now),
            Err(_) => false,
        }
    }

    /// Revokes a family: its refresh tokens, and its access tokens on every replica.
    pub async fn revoke_family(&self, family_id: &str) -> Result<(), OAuthError> {
        let state = self;
        let now = state.clock.now();
        for t in state.store.revoke_family(family_id, now).await? {
            state.authenticator.verifier.revoke(&t.jti, t.expires_at);
        }
        Ok(())
    }

    /// A code or refresh token presented twice (RFC 6749 §4.1.2, RFC 9700 §4.14.2): the family is
    /// revoked, and the error says so.
    pub async fn spent_twice(&self, family: &Family<'_>, grant: &Grant<'_>) -> OAuthError {
        if let Err(e) = self.revoke_family(family.id).await {
            return e;
        }
        let (event, message) = match family.spend {
            Spend::RefreshToken(_) => (
                "refresh_reuse",
                "refresh token reuse detected; the session is revoked",
            ),
            _ => ("code_replayed", "authorization code already used"),
        };
        tracing::warn!(target: "flyteauth::audit", event, client_id = grant.client_id, subject = grant.subject);
        OAuthError::invalid_grant(message)
    }
}

#[cfg(test)]
mod tests {
    use super::TokenResponse;
    use crate::secret::Secret;
    use crate::session::Session;
    use crate::store::SessionRecord;

    /// Tokens, CSRF tokens and IdP refresh tokens never reach a `{:?}` (a log line, a panic).
    #[test]
    fn debug_output_holds_no_credential() {
        let response = TokenResponse {
            access_token: Secret::new("eyJ.access-secret.sig".into()),
            token_type: "Bearer",
            expires_in: 600,
            scope: "all".into(),
            refresh_token: Some(Secret::new("refresh-secret".into())),
            issued_token_type: None,
        };
        let session = Session {
            id_hash: "h".into(),
            subject: "alice".into(),
            profile: serde_json::json!({}),
            csrf_token: crate::secret::Secret::new("csrf-secret".into()),
        };
        let record = SessionRecord {
            id_hash: "h".into(),
            subject: "alice".into(),
            user_info: "{}".into(),
            csrf_token: "csrf-secret".into(),
            created_at: 1,
            last_seen_at: 1,
            expires_at: 2,
            idp_refresh_token: Some(b"idp-secret".to_vec()),
        };
        let printed = format!("{response:?} {session:?} {record:?}");
        for secret in [
            "access-secret",
            "refresh-secret",
            "csrf-secret",
            "idp-secret",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        // The non-secret fields are still there for debugging.
        assert!(printed.contains("alice") && printed.contains("Bearer"));
        let idp_bytes = format!("{:?}", b"idp-secret".to_vec());
        assert!(!printed.contains(&idp_bytes));
    }
}
