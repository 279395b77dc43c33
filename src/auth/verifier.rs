//! Access-token verification (the resource-server side): signature by an allow-listed
//! algorithm and a known key, then `iss`, `aud`, `exp`/`nbf`/`iat` with leeway, then claim
//! normalisation into an [`Identity`] and Flyte's blanket scope rule. No store round trip.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::cache::{CacheKey, TokenCache};
use super::keysource::{KeySource, RemoteJwks};
use super::{AuthError, Credential, Identity, Revocations, UserInfo};
use crate::clock::SharedClock;

/// Default clock skew tolerated on `exp`, `nbf` and `iat` (seconds).
pub const DEFAULT_LEEWAY_SECS: i64 = 60;

/// What a valid token must look like.
pub struct VerifierSettings {
    /// Verification keys: the built-in AS's (current first; a token without `kid`/`key_id` is
    /// checked against the current one only) or an external JWKS. An unknown kid is refused.
    pub keys: KeySource,
    /// Accepted `iss` values.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (public URLs, the issuer, configured extras).
    pub audiences: Vec<String>,
    /// A token must carry one of these scopes (Flyte: `all`), unless it is a user token
    /// with neither scopes nor client id.
    pub required_scopes: Vec<String>,
    pub cache_entries: usize,
    /// Leeway on `exp`, `nbf` and `iat` (seconds).
    pub leeway_secs: i64,
}

/// Verifies bearer tokens and caches the result.
pub struct TokenVerifier {
    keys: KeySource,
    /// Replaced when an external AS's metadata (its `issuer`) is (re)fetched.
    issuers: std::sync::RwLock<Vec<String>>,
    audiences: Vec<String>,
    required_scopes: Vec<String>,
    cache: TokenCache,
    revocations: Revocations,
    leeway: i64,
    clock: SharedClock,
}

/// The JWS header members the verifier reads (RFC 7515 §4.1); other members are ignored,
/// a repeated member is an error.
#[derive(serde::Deserialize)]
struct JwsHeader<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<std::borrow::Cow<'a, str>>,
    /// Flyte's name for `kid`.
    #[serde(borrow, default)]
    key_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

fn trim_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

impl TokenVerifier {
    pub fn new(settings: VerifierSettings, clock: SharedClock) -> Self {
        Self {
            keys: settings.keys,
            issuers: std::sync::RwLock::new(
                settings
                    .issuers
                    .iter()
                    .map(|s| trim_slash(s).to_owned())
                    .collect(),
            ),
            audiences: settings
                .audiences
                .iter()
                .map(|s| trim_slash(s).to_owned())
                .collect(),
            required_scopes: settings.required_scopes,
            cache: TokenCache::new(settings.cache_entries),
            revocations: Revocations::default(),
            leeway: settings.leeway_secs,
            clock,
        }
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// The remote JWKS, when keys come from an external AS.
    pub fn remote_jwks(&self) -> Option<&Arc<RemoteJwks>> {
        match &self.keys {
            KeySource::Remote(r) => Some(r),
            KeySource::Static(_) => None,
        }
    }

    /// Sets the accepted issuers (external AS metadata).
    pub fn set_issuers(&self, issuers: Vec<String>) {
        *self.issuers.write().expect("lock") =
            issuers.iter().map(|s| trim_slash(s).to_owned()).collect();
    }

    /// Verifies; on an unknown `kid` with a remote JWKS, refetches it (rate-limited) and
    /// tries once more.
    pub async fn verify_refreshing(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        match self.verify(token) {
            Err(AuthError::UnknownKey) => match self.remote_jwks() {
                Some(jwks) if jwks.refresh_if_due().await => self.verify(token),
                _ => Err(AuthError::UnknownKey),
            },
            other => other,
        }
    }

    /// Housekeeping: forgets expired cache entries and revocations.
    pub fn purge_expired(&self, now: i64) {
        self.cache.purge_expired(now, self.leeway);
        self.revocations.purge(now);
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Marks an access token (by `jti`) as revoked until it would have expired anyway.
    pub fn revoke(&self, jti: &str, expires_at: i64) {
        self.revocations
            .insert(jti, expires_at.saturating_add(self.leeway));
        self.cache.forget_token_id(jti);
    }

    /// Verifies a bearer token, consulting the cache first.
    pub fn verify(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        let now = self.clock.now();
        let key = self.cache.enabled().then(|| CacheKey::of(token)).flatten();
        let identity = match key {
            None => Arc::new(self.verify_uncached(token, now)?),
            Some(key) => match self.cache.get(&key, now, self.leeway) {
                Some(hit) => hit,
                None => {
                    let identity = Arc::new(self.verify_uncached(token, now)?);
                    self.cache.insert(&key, identity.clone(), now, self.leeway);
                    identity
                }
            },
        };
        if let Some(jti) = &identity.token_id {
            if self.revocations.contains(jti) {
                return Err(AuthError::Revoked);
            }
        }
        Ok(identity)
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<Identity, AuthError> {
        if token.len() > 16 * 1024 {
            return Err(AuthError::Malformed("token too large"));
        }
        // JWS compact serialization: header.payload.signature, base64url without padding.
        let (signing_input, signature) = token
            .rsplit_once('.')
            .ok_or(AuthError::Malformed("not a JWS compact serialization"))?;
        let (header, payload) = signing_input
            .split_once('.')
            .filter(|(_, p)| !p.contains('.'))
            .ok_or(AuthError::Malformed("not a JWS compact serialization"))?;
        let unreadable = AuthError::Malformed("unreadable header (or unsupported alg)");
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| unreadable.clone())?;
        let header: JwsHeader<'_> =
            serde_json::from_slice(&header).map_err(|_| unreadable.clone())?;
        // RFC 7515 §4.1.11: extensions marked critical must be understood; none are.
        if header.crit.is_some() {
            return Err(AuthError::Malformed(
                "critical header extensions are not supported",
            ));
        }
        let alg: Algorithm = header.alg.parse().map_err(|_| unreadable)?;
        // The allow-list: asymmetric signatures only (never `none`, never HS*: a public key
        // must not become an HMAC secret); each key is then bound to exactly one of them.
        if !crate::keys::verifiable(alg) {
            return Err(AuthError::AlgorithmNotAllowed(format!("{alg:?}")));
        }
        // kid, else Flyte's key_id; neither → the current key only. Unknown → refused.
        let kid = header.kid.as_deref().or(header.key_id.as_deref());
        // The signature first: nothing in the payload is looked at before it is proven.
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::BadSignature)?;
        self.keys
            .with_key(kid, |key| {
                if key.algorithm != alg {
                    return Err(AuthError::AlgorithmNotAllowed(format!(
                        "{alg:?} for this key"
                    )));
                }
                if !key.verify_signature(signing_input.as_bytes(), &signature) {
                    return Err(AuthError::BadSignature);
                }
                Ok(())
            })
            .ok_or(AuthError::UnknownKey)??;
        let claims: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(AuthError::Malformed("unreadable claims"))?;
        self.check_claims(claims, now)
    }

    fn check_claims(&self, claims: Map<String, Value>, now: i64) -> Result<Identity, AuthError> {
        let num = |name: &str| -> Result<Option<i64>, AuthError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .or_else(|| n.as_f64().map(|f| f as i64))
                    .map(Some)
                    .ok_or(AuthError::Malformed("numeric date out of range")),
                Some(_) => Err(AuthError::Malformed("numeric date claim is not a number")),
            }
        };
        // RFC 7519 §4.1.4: reject at or after exp (with leeway). exp is required.
        let exp = num("exp")?.ok_or(AuthError::Malformed("missing exp"))?;
        if now > exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        // §4.1.5: not before nbf.
        if let Some(nbf) = num("nbf")? {
            if now.saturating_add(self.leeway) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        if let Some(iat) = num("iat")? {
            if now.saturating_add(self.leeway) < iat {
                return Err(AuthError::IssuedInFuture);
            }
        }
        let iss = claims.get("iss").and_then(Value::as_str).map(trim_slash);
        {
            let issuers = self.issuers.read().expect("lock");
            if !iss.is_some_and(|iss| issuers.iter().any(|i| i == iss)) {
                return Err(AuthError::IssuerMismatch(issuers.clone()));
            }
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.audiences.iter().any(|x| x == trim_slash(a)),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audiences.iter().any(|x| x == trim_slash(a))),
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::AudienceMismatch(self.audiences.clone()));
        }
        let identity = identity_from_claims(claims, exp)?;
        // Flyte's BlanketAuthorization: a required scope, or a user-only token (no scopes,
        // no client id) which is treated like a browser session.
        let user_only = identity.client_id.is_none() && identity.scopes.is_empty();
        if !user_only
            && !self
                .required_scopes
                .iter()
                .any(|r| identity.scopes.iter().any(|s| s == r))
        {
            return Err(AuthError::MissingScope(self.required_scopes.clone()));
        }
        Ok(identity)
    }
}

/// Builds an identity from verified claims, normalising the shapes different authorization
/// servers use: scopes from `scp` (array or space string) ∪ `scope`; client id from
/// `client_id` | `azp` | `cid` | `appid`.
pub(crate) fn identity_from_claims(
    claims: Map<String, Value>,
    exp: i64,
) -> Result<Identity, AuthError> {
    let mut scopes: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    };
    match claims.get("scp") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).for_each(&mut push),
        Some(Value::String(s)) => s.split(' ').for_each(&mut push),
        None | Some(Value::Null) => {}
        Some(_) => return Err(AuthError::Malformed("scp must be an array or a string")),
    }
    if let Some(Value::String(s)) = claims.get("scope") {
        s.split(' ').for_each(&mut push);
    }
    let client_id = ["client_id", "azp", "cid", "appid"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(String::from);
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| client_id.clone())
        .unwrap_or_default();
    let mut user_info: UserInfo = match claims.get("user_info") {
        Some(v @ Value::Object(_)) => serde_json::from_value(v.clone()).unwrap_or_default(),
        _ => UserInfo::default(),
    };
    if user_info.subject.is_empty() {
        user_info.subject = subject.clone();
    }
    if let Some(email) = claims.get("email").and_then(Value::as_str) {
        user_info.email = email.to_owned();
    }
    let token_id = claims.get("jti").and_then(Value::as_str).map(String::from);
    Ok(Identity {
        subject,
        client_id,
        scopes,
        user_info,
        claims,
        expires_at: exp,
        token_id,
        credential: Credential::Bearer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate_pem, SigningAlg, SigningKey};

    /// A verifier of `key`'s tokens for issuer and audience `https://i`, scope `all`.
    fn verifier_for(key: &SigningKey) -> TokenVerifier {
        TokenVerifier::new(
            VerifierSettings {
                keys: KeySource::Static(vec![key.public().clone()]),
                issuers: vec!["https://i".into()],
                audiences: vec!["https://i".into()],
                required_scopes: vec!["all".into()],
                cache_entries: 10,
                leeway_secs: 60,
            },
            std::sync::Arc::new(crate::clock::SystemClock),
        )
    }

    /// RFC 7515 §4.1.11: a header with `crit` names extensions this verifier does not
    /// implement, so the token is refused even with a good signature.
    #[test]
    fn critical_header_extensions_are_refused() {
        let pem = generate_pem(SigningAlg::ES256).unwrap();
        let key = SigningKey::from_pem(pem.as_bytes(), SigningAlg::ES256).unwrap();
        let v = verifier_for(&key);
        let claims = serde_json::json!({"iss": "https://i", "aud": "https://i", "exp": 4_000_000_000u64, "scp": ["all"], "sub": "x"});
        let sign = |crit: bool| {
            let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
            header.kid = Some(key.kid().to_owned());
            if crit {
                header.extras.insert("crit".into(), "exp".into());
            }
            let enc = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
            jsonwebtoken::encode(&header, &claims, &enc).unwrap()
        };
        assert_eq!(v.verify(&sign(false)).unwrap().subject, "x");
        assert!(matches!(
            v.verify(&sign(true)),
            Err(AuthError::Malformed(m)) if m.contains("critical")
        ));
    }

    /// Found by fuzzing: an `exp` near `i64::MAX` must not overflow the leeway arithmetic.
    #[test]
    fn huge_exp_does_not_overflow() {
        let key = SigningKey::from_pem(
            generate_pem(SigningAlg::ES256).unwrap().as_bytes(),
            SigningAlg::ES256,
        )
        .unwrap();
        let v = verifier_for(&key);
        let claims = serde_json::json!({"iss": "https://i", "aud": "https://i", "exp": 11700000000700003605u64, "scp": ["all"], "sub": "x"});
        let id = v.verify(&key.sign_jwt("JWT", &claims)).unwrap();
        assert_eq!(id.subject, "x");
        v.revoke(id.token_id.as_deref().unwrap_or("j"), id.expires_at);
        v.purge_expired(0);
    }
}
