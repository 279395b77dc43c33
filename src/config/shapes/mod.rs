//! Stage 1: the configuration file as written — Flyte's `server:`, `auth:`, `secrets:`,
//! `database:` shapes key for key (Flyte's spellings), every struct `deny_unknown_fields`.
//! [`super::validate`] turns them into the typed runtime [`super::Config`].

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

mod auth;

pub use auth::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerFile,
    pub auth: AuthFile,
    pub secrets: SecretsFile,
    pub database: DatabaseFile,
    pub admin: AdminFile,
    /// `gateway:` (addition, DESIGN.md §11): absent, nothing is forwarded.
    pub gateway: Option<super::gateway::GatewayFile>,
    /// (addition) `/metrics` on its own listener.
    pub metrics: MetricsFile,
}

/// (addition, §14) `metrics.port`: when set, `/metrics` is served only on this port (not on
/// the public one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsFile {
    pub port: u16,
}

/// (addition, §14) Deadlines of a connection: the first bytes (TLS handshake and the protocol
/// known), a request's head, a request's body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ServerTimeoutsFile {
    #[serde(with = "go_duration")]
    pub handshake: Duration,
    #[serde(with = "go_duration")]
    pub request_head: Duration,
    #[serde(with = "go_duration")]
    pub body: Duration,
}

impl Default for ServerTimeoutsFile {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            request_head: Duration::from_secs(15),
            body: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ServerFile {
    pub http_port: u16,
    pub grpc: GrpcFile,
    /// Flyte's legacy spelling of `grpc.port`.
    pub grpc_port: Option<u16>,
    pub security: SecurityFile,
    /// Largest request body accepted on HTTP routes and largest gRPC message, in bytes.
    pub max_request_bytes: usize,
    /// (addition, §14) Peers whose `X-Forwarded-For` / `Forwarded` is believed (CIDRs).
    pub trusted_proxies: Vec<String>,
    /// (addition, §14) Open connections at most, in total and per client address.
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub timeouts: ServerTimeoutsFile,
    /// Flyte's `server.readHeaderTimeoutSeconds`: when set, it is `timeouts.requestHead`.
    pub read_header_timeout_seconds: Option<u64>,
}

impl Default for ServerFile {
    fn default() -> Self {
        Self {
            http_port: 8088,
            grpc: GrpcFile::default(),
            grpc_port: None,
            security: SecurityFile::default(),
            max_request_bytes: 1 << 20,
            trusted_proxies: Vec::new(),
            max_connections: 4096,
            max_connections_per_address: 1024,
            timeouts: ServerTimeoutsFile::default(),
            read_header_timeout_seconds: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct GrpcFile {
    /// gRPC-only listener (Flyte parity); 0 disables it.
    pub port: u16,
    pub server_reflection: bool,
    /// Flyte's largest incoming gRPC message; 0 (Flyte's default) keeps `server.maxRequestBytes`.
    pub max_message_size_bytes: usize,
    /// HTTP/2 streams one connection may have open at once (0: the transport's default).
    pub max_concurrent_streams: u32,
}

impl Default for GrpcFile {
    fn default() -> Self {
        Self {
            port: 8089,
            server_reflection: true,
            max_message_size_bytes: 0,
            max_concurrent_streams: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct SecurityFile {
    pub secure: bool,
    pub ssl: SslFile,
    pub use_auth: bool,
    pub insecure_cookie_header: bool,
    pub allow_cors: bool,
    pub allowed_origins: Vec<String>,
    pub allowed_headers: Vec<String>,
}

impl Default for SecurityFile {
    fn default() -> Self {
        Self {
            secure: false,
            ssl: SslFile::default(),
            use_auth: true,
            insecure_cookie_header: false,
            allow_cors: true,
            allowed_origins: Vec::new(),
            allowed_headers: vec!["Content-Type".into(), "flyte-authorization".into()],
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct SslFile {
    pub certificate_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsFile {
    #[serde(rename = "secrets-prefix")]
    pub secrets_prefix: String,
    #[serde(rename = "env-prefix")]
    pub env_prefix: String,
}

impl Default for SecretsFile {
    fn default() -> Self {
        Self {
            secrets_prefix: "/etc/secrets".into(),
            env_prefix: "FLYTE_SECRET_".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct DatabaseFile {
    /// Shorthand: `sqlite://path` or `postgres://user@host/db`.
    pub url: String,
    pub sqlite: Option<SqliteFile>,
    pub postgres: Option<PostgresFile>,
    pub connection_pool: ConnectionPoolFile,
    /// flytestdlib's pool keys at the `database:` level (Flyte's shape); when set they win
    /// over `connectionPool.*`.
    pub max_open_connections: Option<u32>,
    #[serde(default, with = "go_duration_opt")]
    pub conn_max_life_time: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteFile {
    pub file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct PostgresFile {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub username: String,
    pub password: String,
    pub password_path: String,
    pub options: String,
    pub debug: bool,
}

impl Default for PostgresFile {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 5432,
            dbname: "postgres".into(),
            username: "postgres".into(),
            password: String::new(),
            password_path: String::new(),
            options: String::new(),
            debug: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ConnectionPoolFile {
    pub max_open_connections: u32,
    pub max_idle_connections: u32,
    #[serde(with = "go_duration")]
    pub conn_max_life_time: Duration,
}

impl Default for ConnectionPoolFile {
    fn default() -> Self {
        Self {
            max_open_connections: 16,
            max_idle_connections: 4,
            conn_max_life_time: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminFile {
    pub domains: Vec<DomainFile>,
}

impl Default for AdminFile {
    fn default() -> Self {
        let d = |s: &str| DomainFile {
            id: s.into(),
            name: s.into(),
        };
        Self {
            domains: vec![d("development"), d("staging"), d("production")],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainFile {
    pub id: String,
    pub name: String,
}

/// An optional Go-style duration.
mod go_duration_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| crate::config::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Go-style durations (`30m`, `1h`, `1h30m0s`, `500ms`).
pub(crate) mod go_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::config::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses a Go duration string (`1h30m`, `5m0s`, `300ms`, `10s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses the YAML text into the file structs; errors carry the key path.
pub fn parse_file(yaml: &str) -> Result<FileConfig, ConfigError> {
    if yaml.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let de = serde_norway::Deserializer::from_str(yaml);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "<root>".to_string()
        } else {
            path
        };
        // serde_norway prefixes its message with the (parent) path again: drop that.
        let inner = e.into_inner().to_string();
        let message = match inner.split_once(": ") {
            Some((prefix, rest)) if path.starts_with(prefix) => rest.to_owned(),
            _ => inner,
        };
        ConfigError::new(path, message)
    })
}
