//! The caller's identity as the upstream sees it (DESIGN.md §11): every identity-looking
//! header the client sent is removed, then the configured ones are set from the verified
//! [`Identity`], with `X-Flyte-Identity`: a short-lived JWT signed with flyteauth's current
//! key (its `kid` is in `/oauth2/jwks`), so an upstream can check the headers came from here.

use std::sync::Arc;

use dashmap::DashMap;
use http::{HeaderMap, HeaderValue};
use serde::Serialize;

use super::config::IdentityHeaders;
use crate::auth::{Credential, Identity};
use crate::clock::SharedClock;
use crate::keys::KeySet;

/// Lifetime of an identity JWT: long enough for a slow upstream to check it, short enough that
/// a leaked one is soon useless.
pub(crate) const IDENTITY_JWT_SECS: i64 = 90;
/// A minted JWT is reused for a caller while it has at least this long left.
const REUSE_MIN_LEFT_SECS: i64 = 60;
/// Bound on the memo of minted JWTs (cleared when full; entries are cheap to remake).
const MAX_MEMO: usize = 10_000;

/// Removes every header a client could assert an identity with: the configured ones and any
/// `x-auth-request-*`, `x-amzn-oidc-*`, `x-flyte-identity`.
pub(crate) fn strip(headers: &mut HeaderMap, names: &IdentityHeaders) {
    for n in [
        &names.subject,
        &names.email,
        &names.preferred_username,
        &names.groups,
        &names.claims_jwt,
    ] {
        headers.remove(n);
    }
    let forged: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with("x-auth-request-")
                || k.starts_with("x-amzn-oidc-")
                || k == "x-flyte-identity"
        })
        .cloned()
        .collect();
    for k in forged {
        headers.remove(k);
    }
}

#[derive(Serialize)]
struct IdentityClaims<'a> {
    iss: &'a str,
    /// The upstream the JWT is for (`flyteauth-gateway:<name>`): one upstream cannot replay it
    /// to another that checks `aud`.
    aud: String,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    scp: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    email: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    preferred_username: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    groups: Vec<&'a str>,
    /// `bearer` or `session`: how the caller authenticated.
    credential: &'static str,
}

/// Mints (and briefly reuses) the identity JWTs.
pub(crate) struct IdentityMinter {
    keys: Arc<KeySet>,
    clock: SharedClock,
    issuer: String,
    /// (upstream, caller) → (JWT, exp).
    memo: DashMap<String, (HeaderValue, i64)>,
}

impl IdentityMinter {
    pub(crate) fn new(keys: Arc<KeySet>, clock: SharedClock, issuer: String) -> Self {
        Self {
            keys,
            clock,
            issuer,
            memo: DashMap::new(),
        }
    }

    /// The audience of the JWTs for `upstream`.
    pub(crate) fn audience(upstream: &str) -> String {
        format!("flyteauth-gateway:{upstream}")
    }

    /// The JWT for `id` calling `upstream` (an RSA signature costs ~0.2 ms: a caller's JWT is
    /// reused while it has a minute left).
    pub(crate) fn jwt(&self, upstream: &str, id: &Identity, groups: &[&str]) -> HeaderValue {
        let now = self.clock.now();
        let credential = match id.credential {
            Credential::Bearer => "bearer",
            Credential::Session => "session",
        };
        // The memo key holds no credential: the token's jti (or its expiry) and the subject.
        let key = format!(
            "{upstream}\u{0}{}\u{0}{}\u{0}{credential}\u{0}{}",
            id.subject,
            id.token_id.as_deref().unwrap_or(""),
            id.expires_at
        );
        if let Some(hit) = self.memo.get(&key) {
            if hit.1 - now >= REUSE_MIN_LEFT_SECS {
                return hit.0.clone();
            }
        }
        let exp = now + IDENTITY_JWT_SECS;
        let claims = IdentityClaims {
            iss: &self.issuer,
            aud: Self::audience(upstream),
            sub: &id.subject,
            iat: now,
            nbf: now,
            exp,
            client_id: id.client_id.as_deref(),
            scp: &id.scopes,
            email: &id.user_info.email,
            preferred_username: &id.user_info.preferred_username,
            name: &id.user_info.name,
            groups: groups.to_vec(),
            credential,
        };
        let jwt = self.keys.current.sign_jwt("JWT", &claims);
        let value = HeaderValue::from_str(&jwt).expect("a JWS is ASCII");
        if self.memo.len() >= MAX_MEMO {
            self.memo.clear();
        }
        self.memo.insert(key, (value.clone(), exp));
        value
    }
}

/// Sets the identity headers from `id`. A value a header cannot carry (a control character)
/// leaves that header unset rather than failing the call.
pub(crate) fn set(
    headers: &mut HeaderMap,
    names: &IdentityHeaders,
    id: &Identity,
    groups: &[&str],
    jwt: HeaderValue,
) {
    let mut put = |name: &http::HeaderName, value: &str| {
        if value.is_empty() {
            return;
        }
        match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(v) => {
                headers.insert(name.clone(), v);
            }
            Err(_) => {
                tracing::warn!(header = %name, "identity value not representable in a header; not set")
            }
        }
    };
    put(&names.subject, &id.subject);
    put(&names.email, &id.user_info.email);
    put(&names.preferred_username, &id.user_info.preferred_username);
    put(&names.groups, &groups.join(","));
    headers.insert(names.claims_jwt.clone(), jwt);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_identity_looking_header() {
        let names = crate::transport::gateway::config::GatewayFile::default()
            .validate(std::path::Path::new("."))
            .unwrap()
            .identity_headers;
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-auth-request-user", "admin"),
            ("X-Auth-Request-Groups", "admins"),
            ("x-auth-request-access-token", "t"),
            ("x-amzn-oidc-identity", "admin"),
            ("x-flyte-identity", "forged"),
            ("authorization", "Bearer keep"),
            ("x-other", "keep"),
        ] {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        strip(&mut h, &names);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["authorization", "x-other"]);
    }
}
