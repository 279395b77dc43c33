//! `gateway:` (DESIGN.md §11): the file shape (`deny_unknown_fields`) and its validation into
//! [`GatewayConfig`]. Every error names the key (`gateway.upstreams[0].url: ...`), so `serve`
//! and `check-config` fail alike (exit 64). Nothing here contacts an upstream: one that is down
//! at start-up does not stop flyteauth from starting.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use super::ConfigError;

/// `gateway:` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct GatewayFile {
    pub upstreams: Vec<UpstreamFile>,
    pub identity_headers: IdentityHeadersFile,
}

/// `gateway.upstreams[i]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct UpstreamFile {
    pub name: String,
    /// `http://` = h2c (gRPC) / HTTP/1.1 (Connect, REST); `https://` = TLS.
    pub url: String,
    /// Fully qualified service names (`flyteidl.service.AdminService`) or package prefixes
    /// ending in `*` (`flyteidl2.*`).
    pub services: Vec<String>,
    /// Plain HTTP path prefixes forwarded as they are (`/api/v1/`).
    pub http_prefixes: Vec<String>,
    /// A PEM bundle of CAs trusted for an `https://` upstream (besides the system roots).
    pub ca_cert_file: String,
}

/// `gateway.identityHeaders`: the headers the verified identity is forwarded in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct IdentityHeadersFile {
    pub subject: String,
    pub email: String,
    pub preferred_username: String,
    pub groups: String,
    pub claims_jwt: String,
}

impl Default for IdentityHeadersFile {
    fn default() -> Self {
        Self {
            subject: "X-Auth-Request-User".into(),
            email: "X-Auth-Request-Email".into(),
            preferred_username: "X-Auth-Request-Preferred-Username".into(),
            groups: "X-Auth-Request-Groups".into(),
            claims_jwt: "X-Flyte-Identity".into(),
        }
    }
}

/// A validated upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// `scheme://host:port`, without a path.
    pub base: Url,
    pub tls: bool,
    /// Exact service names.
    pub services: Vec<String>,
    /// Package prefixes (`flyteidl2.`) from `pkg.*` entries.
    pub service_prefixes: Vec<String>,
    pub http_prefixes: Vec<String>,
    pub ca_cert_file: Option<PathBuf>,
}

/// The validated identity header names (lower-case).
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub subject: http::HeaderName,
    pub email: http::HeaderName,
    pub preferred_username: http::HeaderName,
    pub groups: http::HeaderName,
    pub claims_jwt: http::HeaderName,
}

/// The validated `gateway:` section.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub upstreams: Vec<Upstream>,
    pub identity_headers: IdentityHeaders,
}

/// Services that are always flyteauth's own: a gateway entry never takes them.
pub(crate) const OWN_SERVICES: [&str; 6] = [
    "flyteidl.service.AuthMetadataService",
    "flyteidl.service.IdentityService",
    "flyteidl2.auth.AuthMetadataService",
    "flyteidl2.auth.IdentityService",
    "grpc.health.v1.Health",
    "grpc.reflection.",
];

impl GatewayFile {
    /// Validates the section; `base` resolves a relative `caCertFile`.
    pub fn validate(&self, base: &Path) -> Result<GatewayConfig, ConfigError> {
        let mut upstreams = Vec::with_capacity(self.upstreams.len());
        for (i, u) in self.upstreams.iter().enumerate() {
            let key = |k: &str| format!("gateway.upstreams[{i}].{k}");
            let name = u.name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(ConfigError::new(
                    key("name"),
                    "must be a non-empty name of letters, digits, '-', '_' or '.'",
                ));
            }
            if upstreams.iter().any(|x: &Upstream| x.name == name) {
                return Err(ConfigError::new(key("name"), "is used by another upstream"));
            }
            let base_url = Url::parse(&u.url)
                .map_err(|e| ConfigError::new(key("url"), format!("{:?}: {e}", u.url)))?;
            let tls = match base_url.scheme() {
                "http" => false,
                "https" => true,
                other => {
                    return Err(ConfigError::new(
                        key("url"),
                        format!("scheme {other:?} is not http or https"),
                    ))
                }
            };
            if base_url.host_str().is_none_or(str::is_empty)
                || !matches!(base_url.path(), "" | "/")
                || base_url.query().is_some()
                || base_url.fragment().is_some()
                || !base_url.username().is_empty()
                || base_url.password().is_some()
            {
                return Err(ConfigError::new(
                    key("url"),
                    "must be scheme://host[:port] without a path, query or credentials",
                ));
            }
            if u.services.is_empty() && u.http_prefixes.is_empty() {
                return Err(ConfigError::new(
                    key("services"),
                    "set services or httpPrefixes (an upstream nothing is routed to)",
                ));
            }
            let mut services = Vec::new();
            let mut service_prefixes = Vec::new();
            for (j, s) in u.services.iter().enumerate() {
                let s = s.trim();
                let bad = |m: &str| ConfigError::new(format!("{}[{j}]", key("services")), m);
                let (stem, prefix) = match s.strip_suffix('*') {
                    Some(p) => (p.trim_end_matches('.'), true),
                    None => (s, false),
                };
                if stem.is_empty()
                    || !stem.split('.').all(|p| {
                        !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    })
                {
                    return Err(bad(
                        "must be a service name (pkg.Service) or a package prefix (pkg.*)",
                    ));
                }
                if prefix {
                    service_prefixes.push(format!("{stem}."));
                } else {
                    if OWN_SERVICES.iter().any(|o| o.trim_end_matches('.') == stem) {
                        return Err(bad("is served by flyteauth itself and cannot be forwarded"));
                    }
                    services.push(stem.to_owned());
                }
            }
            let mut http_prefixes = Vec::new();
            for (j, p) in u.http_prefixes.iter().enumerate() {
                if !p.starts_with('/') || p == "/" || p.contains("..") || p.contains(['?', '#']) {
                    return Err(ConfigError::new(
                        format!("{}[{j}]", key("httpPrefixes")),
                        "must be a path prefix such as /api/v1/ (not / itself)",
                    ));
                }
                http_prefixes.push(p.clone());
            }
            let ca_cert_file = if u.ca_cert_file.is_empty() {
                None
            } else {
                if !tls {
                    return Err(ConfigError::new(
                        key("caCertFile"),
                        "only applies to an https:// upstream",
                    ));
                }
                let p = Path::new(&u.ca_cert_file);
                Some(if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                })
            };
            upstreams.push(Upstream {
                name: name.to_owned(),
                base: base_url,
                tls,
                services,
                service_prefixes,
                http_prefixes,
                ca_cert_file,
            });
        }
        let h = &self.identity_headers;
        let header = |k: &str, v: &str| -> Result<http::HeaderName, ConfigError> {
            http::HeaderName::from_bytes(v.trim().to_ascii_lowercase().as_bytes()).map_err(|_| {
                ConfigError::new(
                    format!("gateway.identityHeaders.{k}"),
                    "not a valid header name",
                )
            })
        };
        let identity_headers = IdentityHeaders {
            subject: header("subject", &h.subject)?,
            email: header("email", &h.email)?,
            preferred_username: header("preferredUsername", &h.preferred_username)?,
            groups: header("groups", &h.groups)?,
            claims_jwt: header("claimsJwt", &h.claims_jwt)?,
        };
        for (k, n) in [
            ("subject", &identity_headers.subject),
            ("email", &identity_headers.email),
            ("preferredUsername", &identity_headers.preferred_username),
            ("groups", &identity_headers.groups),
            ("claimsJwt", &identity_headers.claims_jwt),
        ] {
            if matches!(
                n.as_str(),
                "authorization" | "cookie" | "host" | "content-type" | "te" | "connection"
            ) || n.as_str().starts_with("grpc-")
            {
                return Err(ConfigError::new(
                    format!("gateway.identityHeaders.{k}"),
                    format!("{n} cannot carry the identity"),
                ));
            }
        }
        Ok(GatewayConfig {
            upstreams,
            identity_headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<GatewayConfig, ConfigError> {
        let f: GatewayFile =
            serde_norway::from_str(yaml).map_err(|e| ConfigError::new("gateway", e.to_string()))?;
        f.validate(Path::new("/etc/flyteauth"))
    }

    #[test]
    fn defaults_and_prefixes() {
        let g = parse(
            "upstreams:\n- name: flyteadmin\n  url: http://flyteadmin:8089\n  services: [flyteidl.service.AdminService]\n  httpPrefixes: [/api/v1/]\n- name: flyte2\n  url: https://runs:8090\n  services: ['flyteidl2.*']\n  caCertFile: ca.pem\n",
        )
        .unwrap();
        assert_eq!(g.identity_headers.subject.as_str(), "x-auth-request-user");
        assert_eq!(g.identity_headers.claims_jwt.as_str(), "x-flyte-identity");
        assert_eq!(
            g.upstreams[1].service_prefixes,
            vec!["flyteidl2.".to_owned()]
        );
        assert_eq!(
            g.upstreams[1].ca_cert_file.as_deref(),
            Some(Path::new("/etc/flyteauth/ca.pem"))
        );
        assert!(!g.upstreams[0].tls && g.upstreams[1].tls);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (yaml, key) in [
            ("upstreams:\n- name: a\n  url: 'flyteadmin:8089'\n  services: [a.B]\n", "gateway.upstreams[0].url"),
            ("upstreams:\n- name: a\n  url: 'ftp://x'\n  services: [a.B]\n", "gateway.upstreams[0].url"),
            ("upstreams:\n- name: a\n  url: 'http://x/api'\n  services: [a.B]\n", "gateway.upstreams[0].url"),
            ("upstreams:\n- name: a\n  url: 'http://x'\n", "gateway.upstreams[0].services"),
            ("upstreams:\n- name: ''\n  url: 'http://x'\n  services: [a.B]\n", "gateway.upstreams[0].name"),
            ("upstreams:\n- name: a\n  url: 'http://x'\n  services: [flyteidl.service.IdentityService]\n", "gateway.upstreams[0].services[0]"),
            ("upstreams:\n- name: a\n  url: 'http://x'\n  services: ['a b']\n", "gateway.upstreams[0].services[0]"),
            ("upstreams:\n- name: a\n  url: 'http://x'\n  httpPrefixes: [api]\n", "gateway.upstreams[0].httpPrefixes[0]"),
            ("upstreams:\n- name: a\n  url: 'http://x'\n  services: [a.B]\n  caCertFile: ca.pem\n", "gateway.upstreams[0].caCertFile"),
            ("identityHeaders:\n  subject: 'bad header'\n", "gateway.identityHeaders.subject"),
            ("identityHeaders:\n  email: authorization\n", "gateway.identityHeaders.email"),
        ] {
            let e = parse(yaml).unwrap_err();
            assert_eq!(e.path, key, "{yaml}: {e}");
        }
    }
}
