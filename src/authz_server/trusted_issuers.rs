//! Issuers whose JWTs the built-in AS takes in exchange for its own access tokens (DESIGN.md
//! §13): a Kubernetes cluster's service-account tokens, a CI system's OIDC tokens. Each issuer
//! names its keys (a JWKS URL, discovered from `<issuer>/.well-known/openid-configuration`
//! when not given, or a JWKS file), the audiences its tokens must carry, the oldest token it
//! accepts, and which subjects act as which client with which scopes.
//!
//! [`TrustedIssuers::verify`] checks an incoming token (RFC 7523 §3, RFC 8693 §2.1): the
//! algorithm against the asymmetric allow-list, the signature by the issuer's key, then `iss`,
//! `aud`, `exp`, `nbf`, `iat` (with the verifier's leeway) and the token's age; it maps the
//! `sub`. Single use (the store) is the grant's step, in `exchange`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::keysource::RemoteJwks;
use crate::config::ConfigError;
use crate::keys::{public_key_from_jwk, PublicKey};

pub(crate) use crate::config::trusted_issuers::TrustedIssuerFile;
use crate::config::trusted_issuers::{is_http_url, trim_slash, KEY};

/// Why an incoming token was refused. The messages are safe to return to the caller: they
/// never hold the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("issuer {0:?} is not trusted")]
    UntrustedIssuer(String),
    #[error("algorithm {0} is not allowed")]
    Algorithm(String),
    #[error("the token's key (kid) is not in the issuer's JWKS")]
    UnknownKey,
    #[error("the issuer's keys could not be fetched: {0}")]
    KeysUnavailable(String),
    #[error("bad signature")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("the token is too old: issued more than {0}s ago")]
    TooOld(i64),
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("audience mismatch: expected one of {0:?}")]
    Audience(Vec<String>),
    #[error("subject {0:?} is not mapped to a client")]
    UnknownSubject(String),
}

/// A subject's mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub client_id: String,
    pub scopes: Vec<String>,
}

/// A token that passed every check but single use.
#[derive(Debug)]
pub struct Verified<'a> {
    /// The issuer as configured.
    pub issuer: &'a str,
    /// The incoming `sub`.
    pub subject: String,
    pub mapping: &'a Mapping,
    /// What single use is keyed by: SHA-256 (hex) over the issuer and the `jti`, or the whole
    /// token when it has no `jti`.
    pub token_id: String,
    /// Until when the token must be remembered: it is refused after that anyway (expired or
    /// too old), leeway included.
    pub remember_until: i64,
}

/// The trusted issuers at run time.
pub struct TrustedIssuers {
    issuers: Vec<TrustedIssuer>,
    leeway: i64,
}

struct TrustedIssuer {
    issuer: String,
    audiences: Vec<String>,
    max_age: i64,
    /// Exact subjects.
    exact: BTreeMap<String, Mapping>,
    /// Prefixes, longest first (the most specific wins).
    prefixes: Vec<(String, Mapping)>,
    keys: Keys,
}

enum Keys {
    File(Vec<PublicKey>),
    Remote(Box<RemoteKeys>),
}

/// How long fetched keys are used before they are fetched again, in seconds (a key the issuer
/// dropped stops verifying within this time).
const KEYS_MAX_AGE: i64 = 300;
/// The least time between two fetches caused by tokens (unknown `kid`s, an unreachable JWKS),
/// in seconds: garbage tokens cannot cause a fetch storm.
const MIN_REFETCH: i64 = 10;

struct RemoteKeys {
    issuer: String,
    /// Fixed, or found by discovery (then set on the `jwks` once known).
    discover: bool,
    jwks: RemoteJwks,
    http: reqwest::Client,
    /// Single flight: one fetch at a time per issuer.
    fetch_lock: tokio::sync::Mutex<()>,
    state: Mutex<FetchState>,
}

/// Times are the service's clock (unix seconds).
#[derive(Default)]
struct FetchState {
    last_attempt: Option<i64>,
    last_success: Option<i64>,
    last_error: Option<String>,
    jwks_uri_known: bool,
}

impl RemoteKeys {
    fn fresh(&self, now: i64) -> bool {
        let s = self.state.lock().expect("lock");
        s.last_success.is_some_and(|t| now - t < KEYS_MAX_AGE)
    }

    /// Fetches (discovering the JWKS URL first if needed) unless a fetch was attempted less
    /// than [`MIN_REFETCH`] ago. The error of the last attempt when this one did not happen
    /// or failed and no keys were ever fetched.
    async fn refresh(&self, now: i64) -> Result<(), String> {
        let _single = self.fetch_lock.lock().await;
        {
            let s = self.state.lock().expect("lock");
            if s.last_attempt.is_some_and(|t| now - t < MIN_REFETCH) {
                return match (&s.last_success, &s.last_error) {
                    (None, Some(e)) => Err(e.clone()),
                    _ => Ok(()),
                };
            }
        }
        self.state.lock().expect("lock").last_attempt = Some(now);
        let result = self.fetch().await;
        let mut s = self.state.lock().expect("lock");
        match &result {
            Ok(()) => {
                s.last_success = Some(now);
                s.last_error = None;
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "trusted issuer's JWKS unavailable");
                s.last_error = Some(e.clone());
            }
        }
        result
    }

    async fn fetch(&self) -> Result<(), String> {
        let known = self.state.lock().expect("lock").jwks_uri_known;
        if self.discover && !known {
            let url = format!(
                "{}/.well-known/openid-configuration",
                trim_slash(&self.issuer)
            );
            let doc: Value = self
                .http
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("GET {url}: {e}"))?
                .json()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            // OpenID Connect Discovery §4.3: the document's issuer is the one asked for.
            if doc["issuer"].as_str().map(trim_slash) != Some(trim_slash(&self.issuer)) {
                return Err(format!("{url}: the document names another issuer"));
            }
            let jwks_uri = doc["jwks_uri"]
                .as_str()
                .filter(|u| is_http_url(u))
                .ok_or_else(|| format!("{url}: no jwks_uri"))?;
            self.jwks.set_url(jwks_uri.to_owned());
            self.state.lock().expect("lock").jwks_uri_known = true;
        }
        self.jwks.fetch().await.map(|_| ())
    }
}

/// The JWS header members read here (RFC 7515 §4.1).
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Flyte's name for `kid`.
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Reads a JWKS document's keys (signature keys of allowed algorithms only).
pub(crate) fn keys_from_jwks(doc: &Value) -> Vec<PublicKey> {
    doc.get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(public_key_from_jwk)
        .collect()
}

impl TrustedIssuers {
    /// Builds the run-time issuers; reads JWKS files (their paths already resolved). `proxy`
    /// is `auth.userAuth.httpProxyURL` (empty: none).
    pub fn load(list: &[TrustedIssuerFile], leeway: i64, proxy: &str) -> Result<Self, ConfigError> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if !proxy.is_empty() {
            b = b.proxy(
                reqwest::Proxy::all(proxy)
                    .map_err(|e| ConfigError::new("auth.userAuth.httpProxyURL", e.to_string()))?,
            );
        }
        let http = b
            .build()
            .map_err(|e| ConfigError::new(KEY, e.to_string()))?;
        let mut issuers = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let keys = if !t.jwks_file.is_empty() {
                let at = format!("{KEY}[{i}].jwksFile");
                let text = std::fs::read_to_string(&t.jwks_file)
                    .map_err(|e| ConfigError::new(&at, format!("{}: {e}", t.jwks_file)))?;
                let doc: Value = serde_json::from_str(&text)
                    .map_err(|e| ConfigError::new(&at, format!("not a JWKS document: {e}")))?;
                let keys = keys_from_jwks(&doc);
                if keys.is_empty() {
                    return Err(ConfigError::new(at, "holds no usable signature key"));
                }
                Keys::File(keys)
            } else {
                let jwks = RemoteJwks::new(http.clone(), Duration::from_secs(MIN_REFETCH as u64));
                let discover = t.jwks_uri.is_empty();
                if !discover {
                    jwks.set_url(t.jwks_uri.clone());
                }
                Keys::Remote(Box::new(RemoteKeys {
                    issuer: t.issuer.clone(),
                    discover,
                    jwks,
                    http: http.clone(),
                    fetch_lock: tokio::sync::Mutex::new(()),
                    state: Mutex::new(FetchState::default()),
                }))
            };
            let mut exact = BTreeMap::new();
            let mut prefixes = Vec::new();
            for (pattern, m) in &t.subjects {
                let mapping = Mapping {
                    client_id: m.client_id.clone(),
                    scopes: m.scopes.clone(),
                };
                match pattern.strip_suffix('*') {
                    Some(prefix) => prefixes.push((prefix.to_owned(), mapping)),
                    None => {
                        exact.insert(pattern.clone(), mapping);
                    }
                }
            }
            prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
            issuers.push(TrustedIssuer {
                issuer: trim_slash(&t.issuer).to_owned(),
                audiences: t
                    .audiences
                    .iter()
                    .map(|a| trim_slash(a).to_owned())
                    .collect(),
                max_age: t.max_token_age.as_secs() as i64,
                exact,
                prefixes,
                keys,
            });
        }
        Ok(Self { issuers, leeway })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Fetches every remote issuer's keys once (at start-up), so that the first exchange does
    /// not wait for them and an unreachable issuer is reported at once. Failures are logged;
    /// the next exchange tries again.
    pub async fn prefetch(&self, now: i64) {
        for i in &self.issuers {
            if let Keys::Remote(remote) = &i.keys {
                if remote.refresh(now).await.is_ok() {
                    tracing::info!(issuer = %i.issuer, "trusted issuer's keys loaded");
                }
            }
        }
    }

    /// Checks `token` at `now`: everything but single use.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Verified<'_>, Rejection> {
        if token.len() > 16 * 1024 {
            return Err(Rejection::Malformed("token too large"));
        }
        // JWS compact serialization: header.payload.signature (a JWE has five parts).
        let (signing_input, signature) = token
            .rsplit_once('.')
            .ok_or(Rejection::Malformed("not a signed JWT"))?;
        let (header, payload) = signing_input
            .split_once('.')
            .filter(|(_, p)| !p.contains('.'))
            .ok_or(Rejection::Malformed("not a signed JWT"))?;
        let header: Header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(Rejection::Malformed("unreadable header"))?;
        // RFC 7515 §4.1.11: extensions marked critical must be understood; none are.
        if header.crit.is_some() {
            return Err(Rejection::Malformed(
                "critical header extensions are not supported",
            ));
        }
        // The allow-list: asymmetric signatures only. Never `none`, never HS* (a public key
        // must not become an HMAC secret).
        let alg = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| crate::keys::verifiable(*a))
            .ok_or_else(|| Rejection::Algorithm(format!("{:?}", header.alg)))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Rejection::BadSignature)?;
        // The issuer is read before the signature is checked only to choose whose keys
        // check it; nothing else in the payload is believed before that.
        let claims: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(Rejection::Malformed("unreadable claims"))?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(Rejection::MissingClaim("iss"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == trim_slash(iss))
            .ok_or_else(|| Rejection::UntrustedIssuer(iss.chars().take(200).collect()))?;
        let kid = header.kid.as_deref().or(header.key_id.as_deref());
        issuer
            .check_signature(kid, alg, signing_input.as_bytes(), &signature, now)
            .await?;
        issuer.check_claims(token, &claims, now, self.leeway)
    }
}

impl TrustedIssuer {
    async fn check_signature(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        input: &[u8],
        signature: &[u8],
        now: i64,
    ) -> Result<(), Rejection> {
        let check = |key: &PublicKey| {
            if key.algorithm != alg {
                return Err(Rejection::Algorithm(format!("{alg:?} for this key")));
            }
            if !key.verify_signature(input, signature) {
                return Err(Rejection::BadSignature);
            }
            Ok(())
        };
        match &self.keys {
            Keys::File(keys) => match kid {
                Some(kid) => keys.iter().find(|k| k.kid == kid),
                None if keys.len() == 1 => keys.first(),
                None => None,
            }
            .map(check)
            .unwrap_or(Err(Rejection::UnknownKey)),
            Keys::Remote(remote) => {
                if !remote.fresh(now) {
                    // Keys not fetched yet, or due again: an unreachable JWKS with keys in
                    // hand keeps them (the error is logged).
                    if let Err(e) = remote.refresh(now).await {
                        if remote.state.lock().expect("lock").last_success.is_none() {
                            return Err(Rejection::KeysUnavailable(e));
                        }
                    }
                }
                if let Some(r) = remote.jwks.with_key(kid, check) {
                    return r;
                }
                // An unknown kid: the issuer may have rotated its keys.
                remote
                    .refresh(now)
                    .await
                    .map_err(Rejection::KeysUnavailable)?;
                remote
                    .jwks
                    .with_key(kid, check)
                    .unwrap_or(Err(Rejection::UnknownKey))
            }
        }
    }

    fn check_claims<'a>(
        &'a self,
        token: &str,
        claims: &Map<String, Value>,
        now: i64,
        leeway: i64,
    ) -> Result<Verified<'a>, Rejection> {
        let num = |name: &'static str| -> Result<i64, Rejection> {
            match claims.get(name) {
                Some(Value::Number(n)) => n
                    .as_i64()
                    .or_else(|| n.as_f64().map(|f| f as i64))
                    .ok_or(Rejection::Malformed("numeric date out of range")),
                None | Some(Value::Null) => Err(Rejection::MissingClaim(name)),
                Some(_) => Err(Rejection::Malformed("a numeric date claim is not a number")),
            }
        };
        // RFC 7523 §3 (4): exp is required; refused at or after it (with leeway).
        let exp = num("exp")?;
        if now > exp.saturating_add(leeway) {
            return Err(Rejection::Expired);
        }
        // §3 (5): not before nbf.
        match num("nbf") {
            Ok(nbf) if now.saturating_add(leeway) < nbf => return Err(Rejection::NotYetValid),
            Ok(_) | Err(Rejection::MissingClaim(_)) => {}
            Err(e) => return Err(e),
        }
        // §3 (6): the age limit needs iat.
        let iat = num("iat")?;
        if now.saturating_add(leeway) < iat {
            return Err(Rejection::IssuedInFuture);
        }
        if now.saturating_sub(iat) > self.max_age.saturating_add(leeway) {
            return Err(Rejection::TooOld(self.max_age));
        }
        // §3 (3): the audience must be one this issuer's tokens are accepted for.
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.audiences.iter().any(|x| x == trim_slash(a)),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audiences.iter().any(|x| x == trim_slash(a))),
            _ => false,
        };
        if !aud_ok {
            return Err(Rejection::Audience(self.audiences.clone()));
        }
        // §3 (2): the subject, mapped to the client it acts as.
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(Rejection::MissingClaim("sub"))?;
        let mapping = self
            .exact
            .get(subject)
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| subject.starts_with(p.as_str()))
                    .map(|(_, m)| m)
            })
            .ok_or_else(|| Rejection::UnknownSubject(subject.chars().take(200).collect()))?;
        // §3 (7): single use, keyed by jti (or, without one, by the token itself).
        let token_id = match claims.get("jti").and_then(Value::as_str) {
            Some(jti) if !jti.is_empty() => {
                crate::session::digest_hex(&format!("{}\0jti\0{jti}", self.issuer))
            }
            _ => crate::session::digest_hex(&format!("{}\0token\0{token}", self.issuer)),
        };
        let remember_until = exp
            .min(iat.saturating_add(self.max_age))
            .saturating_add(leeway);
        Ok(Verified {
            issuer: &self.issuer,
            subject: subject.to_owned(),
            mapping,
            token_id,
            remember_until,
        })
    }
}
