//! Machine identities without shared secrets (DESIGN.md §13): the RFC 8693 token exchange
//! and RFC 7523 JWT bearer grants at `/oauth2/token`. A workload presents a JWT of a trusted
//! issuer (a Kubernetes service-account token, a CI job's OIDC token); if it passes
//! [`super::trusted_issuers`]'s checks and was never presented before (on any replica), the
//! workload gets an access token of the client its subject is mapped to, with an RFC 8693
//! `act` claim naming who it came from.
//!
//! Errors: a bad subject token is `invalid_request` for the token exchange (RFC 8693 §2.2.2)
//! and a bad assertion `invalid_grant` for the JWT bearer grant (RFC 7523 §3.1); an
//! unacceptable `audience`/`resource` is `invalid_target`, scopes beyond the mapping
//! `invalid_scope`.

use std::net::IpAddr;

use serde::Serialize;

use super::client_auth::ClientCredentials;
use super::error::OAuthError;
use super::issue::{sign_off_the_workers, TokenResponse};
use super::trusted_issuers::Rejection;
use super::{split_scopes, AuthorizationServer, Form};
use crate::keys::random_token;
use crate::secret::Secret;

pub(crate) use super::grant_types::{
    JWT_BEARER, TOKEN_EXCHANGE, TYPE_ACCESS_TOKEN, TYPE_ID_TOKEN, TYPE_JWT,
};

/// Whether `grant_type` is one of the two grants here (they need no client authentication).
pub(crate) fn handles(grant_type: &str) -> bool {
    grant_type == TOKEN_EXCHANGE || grant_type == JWT_BEARER
}

/// RFC 8693 §4.1: the actor — who presented the token the access token was issued for.
#[derive(Serialize)]
struct Actor<'a> {
    sub: &'a str,
    iss: &'a str,
}

/// The issued access token: the RFC 9068 shape of the other grants, plus `act`.
#[derive(Serialize)]
struct ExchangedClaims<'a> {
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
    act: Actor<'a>,
}

impl AuthorizationServer {
    /// The grant: `grant_type` is [`TOKEN_EXCHANGE`] or [`JWT_BEARER`]. Client authentication is
    /// optional: `client` holds the credentials when the request presented some (Basic, or a
    /// `client_secret`), or why they could not be read; checked after the grant's own parameters.
    /// `addr` is the client's address (client authentication limits).
    pub async fn exchange(
        &self,
        public: &str,
        grant_type: &str,
        form: &Form,
        client: Option<Result<ClientCredentials, OAuthError>>,
        addr: Option<IpAddr>,
    ) -> Result<TokenResponse, OAuthError> {
        let state = self;
        let trusted = &state.trusted_issuers;
        if trusted.is_empty() {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant_type {grant_type:?} is not enabled (no trusted issuers are configured)"
            )));
        }
        let exchange = grant_type == TOKEN_EXCHANGE;
        let refuse = |why: String| {
            if exchange {
                OAuthError::invalid_request(why)
            } else {
                OAuthError::invalid_grant(why)
            }
        };
        let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let token = if exchange {
            let token =
                param("subject_token").ok_or_else(|| refuse("subject_token is missing".into()))?;
            match param("subject_token_type") {
                Some(TYPE_JWT | TYPE_ID_TOKEN) => {}
                Some(other) => {
                    return Err(refuse(format!(
                "subject_token_type {other:?} is not supported; use {TYPE_JWT} or {TYPE_ID_TOKEN}"
            )))
                }
                None => return Err(refuse("subject_token_type is missing".into())),
            }
            // Delegation with a separate actor token is not offered: the subject is the actor.
            if param("actor_token").is_some() || param("actor_token_type").is_some() {
                return Err(refuse("actor_token is not supported".into()));
            }
            match param("requested_token_type") {
            None | Some(TYPE_ACCESS_TOKEN) => {}
            Some(other) => {
                return Err(refuse(format!(
                    "requested_token_type {other:?} is not supported; only {TYPE_ACCESS_TOKEN} is issued"
                )))
            }
        }
            token
        } else {
            param("assertion").ok_or_else(|| refuse("assertion is missing".into()))?
        };
        // Client authentication is optional (the token is the credential). A client that does
        // authenticate (Basic, or a client_secret), or only names itself (`client_id`, as a
        // public client would), must be the one the token's subject acts as.
        let client_id = match client {
            Some(credentials) => Some(
                state
                    .authenticate_client(credentials?, addr)
                    .await?
                    .id
                    .clone(),
            ),
            None => param("client_id").map(String::from),
        };
        let now = state.clock.now();
        let verified = match trusted.verify(token, now).await {
            Ok(v) => v,
            Err(why) => {
                refused_audit(grant_type, &why);
                return Err(refuse(why.to_string()));
            }
        };
        let mapping = verified.mapping;
        if let Some(id) = client_id {
            if id != mapping.client_id {
                return Err(refuse(format!(
                    "the token's subject acts as client {:?}, not {:?}",
                    mapping.client_id, id
                )));
            }
        }
        // RFC 6749 §3.3: the scope may narrow what the mapping grants, never widen it.
        let requested: Vec<String> = form
            .get("scope")
            .map(|s| split_scopes(s))
            .unwrap_or_default();
        if let Some(bad) = requested.iter().find(|s| !mapping.scopes.contains(s)) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {bad:?} is not granted to {:?}",
                mapping.client_id
            )));
        }
        let scopes = if requested.is_empty() {
            mapping.scopes.clone()
        } else {
            requested
        };
        // RFC 8693 §2.1: `audience` and `resource` name where the token is for; only this
        // deployment can be served (§2.2.2: invalid_target).
        for name in ["audience", "resource"] {
            if let Some(v) = param(name) {
                let ok = v.split(' ').filter(|a| !a.is_empty()).all(|a| {
                    let a = a.trim_end_matches('/');
                    state
                        .settings
                        .public_urls
                        .all()
                        .any(|p| p.trim_end_matches('/') == a)
                        || state.settings.issuer.trim_end_matches('/') == a
                });
                if !ok {
                    return Err(OAuthError::invalid_target(format!(
                        "{name} is not this deployment"
                    )));
                }
            }
        }
        // Single use, on every replica: the last check, so a request refused for another
        // reason does not burn the token.
        if !state
            .store
            .remember_exchanged_token(&verified.token_id, verified.remember_until, now)
            .await?
        {
            tracing::warn!(
                target: "flyteauth::audit",
                event = "exchange_replayed",
                grant = grant_type,
                issuer = verified.issuer,
                subject = %verified.subject,
                client_id = %mapping.client_id,
            );
            return Err(refuse(
                "the token was already exchanged (each token is accepted once)".into(),
            ));
        }
        let lifetime = state.settings.access_token_lifespan;
        let jti = random_token();
        let claims = ExchangedClaims {
            iss: &state.issuer(public),
            aud: [public],
            sub: &mapping.client_id,
            client_id: &mapping.client_id,
            scp: &scopes,
            iat: now,
            nbf: now,
            exp: now + lifetime,
            jti: &jti,
            auth_time: now,
            act: Actor {
                sub: &verified.subject,
                iss: verified.issuer,
            },
        };
        // Off the workers, so that other grants' turns at the database do not wait behind an
        // RSA signature; after the single-use write, so a replayed token never costs one.
        let payload = serde_json::to_vec(&claims).expect("JWT claims serialize");
        let access_token = sign_off_the_workers(state.keys.clone(), payload)
            .await
            .map_err(|_| OAuthError::server_error("signing the access token failed"))?;
        let label = if exchange {
            "token_exchange"
        } else {
            "jwt_bearer"
        };
        state.metrics.inc(
            "flyteauth_tokens_issued_total",
            &[("grant", label), ("client", mapping.client_id.as_str())],
        );
        tracing::info!(
            target: "flyteauth::audit",
            event = "token_exchanged",
            grant = label,
            issuer = verified.issuer,
            subject = %verified.subject,
            client_id = %mapping.client_id,
            scope = %scopes.join(" "),
        );
        Ok(TokenResponse {
            access_token: Secret::new(access_token),
            token_type: "Bearer",
            expires_in: lifetime,
            scope: scopes.join(" "),
            refresh_token: None,
            issued_token_type: exchange.then_some(TYPE_ACCESS_TOKEN),
        })
    }
}

fn refused_audit(grant_type: &str, why: &Rejection) {
    tracing::info!(
        target: "flyteauth::audit",
        event = "exchange_refused",
        grant = grant_type,
        reason = %why,
    );
}
