//! `auth.appAuth.selfAuthServer.trustedIssuers` (RFC 8693 / RFC 7523 exchange, DESIGN.md §13):
//! the file shape and its checks. The issuers themselves (keys, verification) are
//! `authz_server::trusted_issuers`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

pub(crate) const KEY: &str = "auth.appAuth.selfAuthServer.trustedIssuers";

/// `auth.appAuth.selfAuthServer.trustedIssuers[]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct TrustedIssuerFile {
    /// The tokens' `iss`, exactly (a trailing `/` is ignored).
    pub issuer: String,
    /// The issuer's JWKS; empty: `jwks_uri` of `<issuer>/.well-known/openid-configuration`.
    pub jwks_uri: String,
    /// A JWKS document on disk instead (e.g. `kubectl get --raw /openid/v1/jwks`).
    pub jwks_file: String,
    /// The incoming token's `aud` must hold one of these.
    pub audiences: Vec<String>,
    /// Tokens issued (`iat`) longer ago than this are refused (default 1h).
    #[serde(with = "super::shapes::go_duration")]
    pub max_token_age: Duration,
    /// Subject (exact) or subject prefix (ending in `*`) → the client it acts as.
    pub subjects: BTreeMap<String, SubjectFile>,
}

impl Default for TrustedIssuerFile {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            jwks_uri: String::new(),
            jwks_file: String::new(),
            audiences: Vec::new(),
            max_token_age: Duration::from_secs(3600),
            subjects: BTreeMap::new(),
        }
    }
}

/// What a subject acts as.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct SubjectFile {
    /// The issued token's `client_id` and `sub`.
    pub client_id: String,
    /// The scopes it may have (all of them unless the request narrows them).
    pub scopes: Vec<String>,
}

pub(crate) fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// Checks the shapes (called by `Config::from_file`); the JWKS file is read at start-up.
pub(crate) fn validate(list: &[TrustedIssuerFile]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, t) in list.iter().enumerate() {
        let at = |k: &str| format!("{KEY}[{i}].{k}");
        if !is_http_url(&t.issuer) {
            return Err(ConfigError::new(
                at("issuer"),
                "must be the issuer's http(s) URL",
            ));
        }
        if !seen.insert(trim_slash(&t.issuer).to_owned()) {
            return Err(ConfigError::new(at("issuer"), "is listed twice"));
        }
        if !t.jwks_uri.is_empty() && !t.jwks_file.is_empty() {
            return Err(ConfigError::new(
                at("jwksFile"),
                "set jwksUri or jwksFile, not both",
            ));
        }
        if !t.jwks_uri.is_empty() && !is_http_url(&t.jwks_uri) {
            return Err(ConfigError::new(at("jwksUri"), "must be an http(s) URL"));
        }
        if t.audiences.iter().all(|a| a.trim().is_empty()) {
            return Err(ConfigError::new(
                at("audiences"),
                "must name at least one audience (a token for any audience would do otherwise)",
            ));
        }
        if t.max_token_age.is_zero() {
            return Err(ConfigError::new(
                at("maxTokenAge"),
                "must be greater than zero",
            ));
        }
        if t.subjects.is_empty() {
            return Err(ConfigError::new(
                at("subjects"),
                "must map at least one subject to a client",
            ));
        }
        for (pattern, m) in &t.subjects {
            let at = |k: &str| format!("{KEY}[{i}].subjects.{pattern}{k}");
            let stem = pattern.strip_suffix('*').unwrap_or(pattern);
            if stem.is_empty() {
                return Err(ConfigError::new(
                    at(""),
                    "would match every subject of the issuer; name the subject or a prefix",
                ));
            }
            if stem.contains('*') {
                return Err(ConfigError::new(
                    at(""),
                    "`*` is only allowed at the end (a prefix)",
                ));
            }
            if m.client_id.trim().is_empty() {
                return Err(ConfigError::new(at(".clientId"), "must not be empty"));
            }
            if m.scopes.is_empty() || m.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
                return Err(ConfigError::new(
                    at(".scopes"),
                    "must list at least one scope (without spaces)",
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn trim_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}
