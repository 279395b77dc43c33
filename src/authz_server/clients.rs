//! OAuth2 clients of the built-in AS: Flyte's `staticClients` shape (fosite `DefaultClient`),
//! Flyte's three defaults, redirect-URI matching (exact, or any port on loopback, RFC 8252
//! §7.3), fosite's wildcard scope matching, and client-secret checks that cost one bcrypt per
//! secret, not per request.

use std::collections::BTreeMap;

use base64::Engine;
use dashmap::DashMap;
use subtle::ConstantTimeEq;
use url::Url;

use crate::config::StaticClientFile;
use crate::secret::{Secret, SecretStore};

/// The secret a confidential client authenticates with.
pub enum ClientSecret {
    /// A bcrypt hash (Flyte's `client_secret`, base64-decoded).
    Bcrypt(String),
    /// A secret held in clear in the secrets store (generated at first start).
    Plain(Secret<String>),
}

pub struct Client {
    pub id: String,
    pub public: bool,
    pub secrets: Vec<ClientSecret>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    /// (§14) `false` only for a confidential client configured `require_pkce: false`.
    pub require_pkce: bool,
}

/// The name of the generated secret of the default `flytepropeller` client.
pub(crate) const PROPELLER_SECRET_NAME: &str = "flytepropeller_client_secret";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Client {
    /// Public clients always; confidential ones unless configured otherwise (RFC 9700 §2.1.1).
    pub fn requires_pkce(&self) -> bool {
        self.public || self.require_pkce
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// [`allows_grant`](Self::allows_grant) as the token endpoint answers it:
    /// `unauthorized_client` naming `what` (the grant, or the flow it belongs to).
    pub fn require_grant(&self, grant: &str, what: &str) -> Result<(), super::error::OAuthError> {
        if self.allows_grant(grant) {
            Ok(())
        } else {
            Err(super::error::OAuthError::unauthorized_client(format!(
                "this client may not use {what}"
            )))
        }
    }

    /// RFC 6749 §3.1.2.3 simple string comparison, except RFC 8252 §7.3: for a registered
    /// loopback `http` redirect (127.0.0.1, [::1], localhost), any port matches.
    pub fn redirect_uri_matches(&self, requested: &str) -> bool {
        self.redirect_uris.iter().any(|registered| {
            if registered == requested {
                return true;
            }
            let (Ok(r), Ok(q)) = (Url::parse(registered), Url::parse(requested)) else {
                return false;
            };
            let loopback = matches!(r.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
            loopback
                && r.scheme() == "http"
                && q.scheme() == "http"
                && r.host_str() == q.host_str()
                && r.path() == q.path()
                && r.query() == q.query()
                && q.fragment().is_none()
                && q.username().is_empty()
        })
    }

    /// fosite's wildcard strategy: `a.b` matches client scope `a.b` or `a.*`.
    pub fn allows_scope(&self, requested: &str) -> bool {
        self.scopes.iter().any(|allowed| {
            let a: Vec<&str> = allowed.split('.').collect();
            let r: Vec<&str> = requested.split('.').collect();
            a.len() == r.len() && a.iter().zip(&r).all(|(a, r)| *a == "*" || a == r)
        })
    }
}

/// The registered clients and the cache of verified secret digests.
pub struct Clients {
    clients: BTreeMap<String, Client>,
    verified: DashMap<String, [u8; 32]>,
}

/// A client entry that could not be loaded: the config key and why.
#[derive(Debug)]
pub struct ClientConfigError {
    pub key: String,
    pub message: String,
}

impl Clients {
    /// Flyte's defaults when `staticClients` is absent; the configured map replaces them.
    pub fn load(
        configured: Option<&BTreeMap<String, StaticClientFile>>,
        secrets: &SecretStore,
    ) -> Result<Self, ClientConfigError> {
        let mut clients = BTreeMap::new();
        match configured {
            None => {
                for id in ["flytectl", "flyte-cli"] {
                    clients.insert(
                        id.to_owned(),
                        Client {
                            id: id.to_owned(),
                            public: true,
                            secrets: vec![],
                            redirect_uris: strings(&[
                                "http://localhost:53593/callback",
                                "http://localhost:12345/callback",
                            ]),
                            grant_types: strings(&[
                                "refresh_token",
                                "authorization_code",
                                super::grant_types::DEVICE_CODE,
                            ]),
                            response_types: strings(&["code"]),
                            scopes: strings(&["all", "offline", "access_token"]),
                            audience: vec![],
                            require_pkce: true,
                        },
                    );
                }
                let secret =
                    secrets
                        .get_text(PROPELLER_SECRET_NAME)
                        .map_err(|e| ClientConfigError {
                            key: "auth.appAuth.selfAuthServer.staticClients".into(),
                            message: e.to_string(),
                        })?;
                clients.insert(
                    "flytepropeller".into(),
                    Client {
                        id: "flytepropeller".into(),
                        public: false,
                        secrets: vec![ClientSecret::Plain(secret)],
                        redirect_uris: strings(&["http://localhost:3846/callback"]),
                        grant_types: strings(&["refresh_token", "client_credentials"]),
                        response_types: strings(&["token"]),
                        scopes: strings(&["all", "offline", "access_token"]),
                        audience: vec![],
                        require_pkce: true,
                    },
                );
            }
            Some(map) => {
                for (key, c) in map {
                    let path = format!("auth.appAuth.selfAuthServer.staticClients.{key}");
                    let id = if c.id.is_empty() {
                        key.clone()
                    } else {
                        c.id.clone()
                    };
                    let mut list = Vec::new();
                    for (i, s) in std::iter::once(&c.client_secret)
                        .chain(&c.rotated_secrets)
                        .enumerate()
                        .filter(|(_, s)| !s.is_empty())
                    {
                        let field = if i == 0 {
                            "client_secret".to_string()
                        } else {
                            format!("rotated_secrets[{}]", i - 1)
                        };
                        list.push(ClientSecret::Bcrypt(decode_bcrypt(s).ok_or_else(|| {
                            ClientConfigError {
                                key: format!("{path}.{field}"),
                                message: "must be base64 of a bcrypt hash (flyteauth hash-secret)"
                                    .into(),
                            }
                        })?));
                    }
                    if !c.client_secret_secret_name.is_empty() {
                        let s = secrets
                            .get_text(&c.client_secret_secret_name)
                            .map_err(|e| ClientConfigError {
                                key: format!("{path}.client_secret_secret_name"),
                                message: e.to_string(),
                            })?;
                        list.push(ClientSecret::Plain(s));
                    }
                    if !c.public && list.is_empty() {
                        return Err(ClientConfigError {
                            key: format!("{path}.client_secret"),
                            message: "a confidential client needs a secret (or set public: true)"
                                .into(),
                        });
                    }
                    clients.insert(
                        id.clone(),
                        Client {
                            id,
                            public: c.public,
                            secrets: list,
                            redirect_uris: c.redirect_uris.clone(),
                            grant_types: c.grant_types.clone(),
                            response_types: c.response_types.clone(),
                            scopes: c.scopes.clone(),
                            audience: c.audience.clone(),
                            require_pkce: c.public || c.require_pkce.unwrap_or(true),
                        },
                    );
                }
            }
        }
        Ok(Self {
            clients,
            verified: DashMap::new(),
        })
    }

    pub fn get(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }

    /// Checks a confidential client's secret. After one successful bcrypt check the secret's
    /// SHA-256 is cached, and later requests compare digests in constant time.
    pub async fn verify_secret(&self, client: &Client, presented: &str) -> bool {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if let Some(known) = self.verified.get(&client.id) {
            if bool::from(known.ct_eq(&digest)) {
                return true;
            }
        }
        let mut ok = client.secrets.iter().any(|s| match s {
            ClientSecret::Plain(p) => p.ct_eq(presented.as_bytes()),
            ClientSecret::Bcrypt(_) => false,
        });
        if !ok {
            let hashes: Vec<String> = client
                .secrets
                .iter()
                .filter_map(|s| match s {
                    ClientSecret::Bcrypt(h) => Some(h.clone()),
                    ClientSecret::Plain(_) => None,
                })
                .collect();
            let presented = presented.to_owned();
            ok = tokio::task::spawn_blocking(move || {
                hashes
                    .iter()
                    .any(|h| bcrypt::verify(&presented, h).unwrap_or(false))
            })
            .await
            .unwrap_or(false);
        }
        if ok {
            self.verified.insert(client.id.clone(), digest);
        }
        ok
    }
}

/// Flyte stores `client_secret` as base64 (std) of the bcrypt hash; accept a raw hash too.
fn decode_bcrypt(s: &str) -> Option<String> {
    if s.starts_with("$2") {
        return Some(s.to_owned());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    let h = String::from_utf8(raw).ok()?;
    h.starts_with("$2").then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str]) -> Client {
        Client {
            id: "c".into(),
            public: true,
            secrets: vec![],
            redirect_uris: strings(uris),
            grant_types: vec![],
            response_types: vec![],
            scopes: strings(&["all", "offline", "f.*"]),
            audience: vec![],
            require_pkce: true,
        }
    }

    #[test]
    fn redirect_matching() {
        let c = client(&["http://localhost:53593/callback", "https://app.example/cb"]);
        assert!(c.redirect_uri_matches("http://localhost:53593/callback"));
        assert!(
            c.redirect_uri_matches("http://localhost:1234/callback"),
            "loopback: any port"
        );
        assert!(!c.redirect_uri_matches("http://localhost:1234/other"));
        assert!(
            !c.redirect_uri_matches("http://127.0.0.1:53593/callback"),
            "host must match"
        );
        assert!(c.redirect_uri_matches("https://app.example/cb"));
        assert!(
            !c.redirect_uri_matches("https://app.example:444/cb"),
            "not loopback: exact"
        );
        assert!(!c.redirect_uri_matches("https://app.example/cb?x=1"));
        assert!(!c.redirect_uri_matches("https://evil.example/cb"));
    }

    #[test]
    fn wildcard_scopes() {
        let c = client(&[]);
        assert!(c.allows_scope("all"));
        assert!(c.allows_scope("f.anything"));
        assert!(!c.allows_scope("admin"));
        assert!(!c.allows_scope("f.a.b"));
    }

    #[test]
    fn flyte_default_secret_decodes() {
        let h = decode_bcrypt(
            "JDJhJDA2JGQ2UFFuMlFBRlUzY0w1VjhNRGtldXVrNjN4dWJxVXhOeGp0ZlB3LkZjOU1VbEFDb0pZZG1hUw==",
        )
        .unwrap();
        assert!(h.starts_with("$2a$06$"));
        assert!(decode_bcrypt("not base64!").is_none());
    }
}
