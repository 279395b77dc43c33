//! Configuration in two stages: the YAML file as written (Flyte's `server:`, `auth:`,
//! `secrets:`, `database:` shapes, key for key, every struct `deny_unknown_fields`), then
//! [`Config::from_file`] validates it into the typed runtime [`Config`]. Every error names the
//! key's path (`auth.appAuth.authServerType: ...`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::store::DatabaseTarget;

/// A configuration error: the key's path and what is wrong with it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("config error at {path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 1: the file as written.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerFile,
    pub auth: AuthFile,
    pub secrets: SecretsFile,
    pub database: DatabaseFile,
    pub admin: AdminFile,
    /// `gateway:` (addition, DESIGN.md §11): absent, nothing is forwarded.
    pub gateway: Option<crate::transport::gateway::config::GatewayFile>,
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
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct AuthFile {
    pub http_authorization_header: String,
    pub grpc_authorization_header: String,
    pub disable_for_http: bool,
    pub disable_for_grpc: bool,
    pub authorized_uris: Vec<String>,
    #[serde(rename = "httpProxyURL")]
    pub http_proxy_url: String,
    /// Extra accepted `aud` values for access tokens (addition; Flyte only has
    /// `externalAuthServer.allowedAudience`).
    pub audiences: Vec<String>,
    /// Scopes of which a token must carry at least one (Flyte's blanket rule: `all`).
    pub required_scopes: Vec<String>,
    pub token_cache: TokenCacheFile,
    /// Leeway on `exp`, `nbf` and `iat` (addition).
    #[serde(with = "go_duration")]
    pub clock_skew: Duration,
    /// Per-method authorization rules (addition).
    pub authorization: AuthorizationFile,
    pub user_auth: UserAuthFile,
    pub app_auth: AppAuthFile,
}

impl Default for AuthFile {
    fn default() -> Self {
        Self {
            http_authorization_header: "flyte-authorization".into(),
            grpc_authorization_header: "flyte-authorization".into(),
            disable_for_http: false,
            disable_for_grpc: false,
            authorized_uris: Vec::new(),
            http_proxy_url: String::new(),
            audiences: Vec::new(),
            required_scopes: vec!["all".into()],
            token_cache: TokenCacheFile::default(),
            clock_skew: Duration::from_secs(60),
            authorization: AuthorizationFile::default(),
            user_auth: UserAuthFile::default(),
            app_auth: AppAuthFile::default(),
        }
    }
}

/// `auth.authorization` (addition): rules beyond Flyte's blanket scope.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct AuthorizationFile {
    /// The claim holding the caller's groups (local users and OIDC logins put `groups` there).
    pub groups_claim: String,
    pub rules: Vec<AuthorizationRuleFile>,
    /// Roles on projects and domains (DESIGN.md §12); see [`crate::auth::roles`].
    pub bindings: Vec<crate::auth::roles::BindingFile>,
    /// Custom roles: name → actions.
    pub roles: BTreeMap<String, Vec<String>>,
}

impl Default for AuthorizationFile {
    fn default() -> Self {
        Self {
            groups_claim: "groups".into(),
            rules: Vec::new(),
            bindings: Vec::new(),
            roles: BTreeMap::new(),
        }
    }
}

/// One rule: for calls matching `methods` (`pkg.Service/Method`, `pkg.Service/*`, `*`), allow
/// callers with one of the scopes, groups or subjects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct AuthorizationRuleFile {
    pub methods: Vec<String>,
    pub allow_scopes: Vec<String>,
    pub allow_groups: Vec<String>,
    pub allow_subjects: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct TokenCacheFile {
    /// Verified tokens kept in memory; 0 disables the cache.
    pub max_entries: usize,
}

impl Default for TokenCacheFile {
    fn default() -> Self {
        // A cached identity costs about 2 KiB (docs/BENCHMARKS.md): ~40 MiB at most.
        Self {
            max_entries: 20_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct UserAuthFile {
    pub redirect_url: String,
    #[serde(rename = "httpProxyURL")]
    pub http_proxy_url: String,
    pub cookie_hash_key_secret_name: String,
    pub cookie_block_key_secret_name: String,
    pub cookie_setting: CookieSettingFile,
    pub idp_query_parameter: String,
    pub open_id: Option<OpenIdFile>,
    pub local_users: Vec<LocalUserFile>,
    pub session: SessionFile,
    /// (addition) Failed-login limits, per user and per client address.
    pub login_rate_limit: LoginRateLimitFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct LoginRateLimitFile {
    /// Failures within `window` after which the user (or address) is locked out.
    pub max_failures: u32,
    #[serde(with = "go_duration")]
    pub window: Duration,
}

impl Default for LoginRateLimitFile {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(15 * 60),
        }
    }
}

impl Default for UserAuthFile {
    fn default() -> Self {
        Self {
            redirect_url: "/console".into(),
            http_proxy_url: String::new(),
            cookie_hash_key_secret_name: "cookie_hash_key".into(),
            cookie_block_key_secret_name: "cookie_block_key".into(),
            cookie_setting: CookieSettingFile::default(),
            idp_query_parameter: String::new(),
            open_id: None,
            local_users: Vec::new(),
            session: SessionFile::default(),
            login_rate_limit: LoginRateLimitFile::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct CookieSettingFile {
    pub same_site_policy: String,
    pub domain: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct OpenIdFile {
    pub client_id: String,
    pub client_secret_name: String,
    pub client_secret_file: String,
    pub base_url: String,
    pub issuer_url: String,
    pub scopes: Vec<String>,
}

impl Default for OpenIdFile {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret_name: "oidc_client_secret".into(),
            client_secret_file: String::new(),
            base_url: String::new(),
            issuer_url: String::new(),
            scopes: vec!["openid".into(), "profile".into()],
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct LocalUserFile {
    pub username: String,
    /// bcrypt (`$2b$...`) or argon2 PHC string.
    pub password_hash: String,
    /// Name of a secret holding the password in clear instead; generated (random) at first
    /// start when missing, so a fresh install has no shared default password.
    pub password_secret_name: String,
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct SessionFile {
    #[serde(with = "go_duration")]
    pub idle_timeout: Duration,
    #[serde(with = "go_duration")]
    pub absolute_timeout: Duration,
}

impl Default for SessionFile {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(8 * 3600),
            absolute_timeout: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct AppAuthFile {
    pub auth_server_type: AuthServerType,
    pub self_auth_server: SelfAuthServerFile,
    pub external_auth_server: ExternalAuthServerFile,
    pub third_party_config: ThirdPartyConfigFile,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthServerType {
    /// The built-in authorization server (`Self` in Flyte's config).
    #[default]
    #[serde(rename = "Self")]
    Builtin,
    External,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct SelfAuthServerFile {
    pub issuer: String,
    #[serde(with = "go_duration")]
    pub access_token_lifespan: Duration,
    #[serde(with = "go_duration")]
    pub refresh_token_lifespan: Duration,
    #[serde(with = "go_duration")]
    pub authorization_code_lifespan: Duration,
    /// Lifetime of an RFC 8628 device code (and its user code).
    #[serde(with = "go_duration")]
    pub device_code_lifespan: Duration,
    pub claim_symmetric_encryption_key_secret_name: String,
    #[serde(rename = "tokenSigningRSAKeySecretName")]
    pub token_signing_rsa_key_secret_name: String,
    #[serde(rename = "oldTokenSigningRSAKeySecretName")]
    pub old_token_signing_rsa_key_secret_name: String,
    /// RS256 (default, Flyte's key), ES256 or EdDSA (addition).
    pub signing_algorithm: String,
    pub static_clients: Option<BTreeMap<String, StaticClientFile>>,
    /// (addition) Issuers whose JWTs are exchanged for access tokens (RFC 8693, RFC 7523;
    /// DESIGN.md §13), see `authz_server::trusted_issuers`.
    pub trusted_issuers: Vec<crate::authz_server::trusted_issuers::TrustedIssuerFile>,
    /// (addition, §14) How long a just-rotated refresh token may be redeemed again by the same
    /// client without revoking its family (concurrent refreshes of one user's processes).
    #[serde(with = "go_duration")]
    pub refresh_token_grace_period: Duration,
}

impl Default for SelfAuthServerFile {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            access_token_lifespan: Duration::from_secs(30 * 60),
            refresh_token_lifespan: Duration::from_secs(60 * 60),
            authorization_code_lifespan: Duration::from_secs(5 * 60),
            device_code_lifespan: Duration::from_secs(10 * 60),
            claim_symmetric_encryption_key_secret_name: "claim_symmetric_key".into(),
            token_signing_rsa_key_secret_name: "token_rsa_key.pem".into(),
            old_token_signing_rsa_key_secret_name: "token_rsa_key_old.pem".into(),
            signing_algorithm: "RS256".into(),
            static_clients: None,
            trusted_issuers: Vec::new(),
            refresh_token_grace_period: Duration::from_secs(5),
        }
    }
}

/// fosite's `DefaultClient` as Flyte writes it (snake_case keys).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticClientFile {
    pub id: String,
    /// base64 (std) of a bcrypt hash, as Flyte's config loader expects.
    pub client_secret: String,
    pub rotated_secrets: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub public: bool,
    /// Name of a secret holding the client secret in clear (generated at first start).
    pub client_secret_secret_name: String,
    /// (addition, §14) `false` lets a confidential client redeem codes without PKCE; public
    /// clients always need it. Default `true`.
    pub require_pkce: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ExternalAuthServerFile {
    pub base_url: String,
    pub allowed_audience: StringOrList,
    pub metadata_url: String,
    #[serde(rename = "httpProxyURL")]
    pub http_proxy_url: String,
    pub retry_attempts: u32,
    #[serde(with = "go_duration")]
    pub retry_delay: Duration,
    /// (addition) Minimum time between JWKS refetches caused by tokens with an unknown `kid`.
    #[serde(with = "go_duration")]
    pub jwks_refresh_interval: Duration,
}

impl Default for ExternalAuthServerFile {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            allowed_audience: StringOrList::default(),
            metadata_url: String::new(),
            http_proxy_url: String::new(),
            retry_attempts: 5,
            retry_delay: Duration::from_secs(1),
            jwks_refresh_interval: Duration::from_secs(30),
        }
    }
}

/// Flyte accepts `allowedAudience` as a list or as one comma-separated string.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(from = "StringOrListRepr")]
pub struct StringOrList(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrListRepr {
    One(String),
    Many(Vec<String>),
}

impl From<StringOrListRepr> for StringOrList {
    fn from(r: StringOrListRepr) -> Self {
        match r {
            StringOrListRepr::One(s) => StringOrList(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            StringOrListRepr::Many(v) => StringOrList(v),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ThirdPartyConfigFile {
    pub flyte_client: FlyteClientFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct FlyteClientFile {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub audience: String,
}

impl Default for FlyteClientFile {
    fn default() -> Self {
        Self {
            client_id: "flytectl".into(),
            redirect_uri: "http://localhost:53593/callback".into(),
            scopes: vec!["all".into(), "offline".into()],
            audience: String::new(),
        }
    }
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

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Go-style durations (`30m`, `1h`, `1h30m0s`, `500ms`).
pub(crate) mod go_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
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

// ---------------------------------------------------------------------------------------------
// Stage 2: the validated runtime configuration.
// ---------------------------------------------------------------------------------------------

/// The validated configuration the service runs with.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub secrets_dir: PathBuf,
    pub secrets_env_prefix: String,
    pub database: DatabaseTarget,
    pub database_pool: ConnectionPoolFile,
    pub domains: Vec<DomainFile>,
    /// The raw sections later issues read directly (user auth, the built-in AS).
    pub user_auth: UserAuthFile,
    pub app_auth: AppAuthFile,
    /// The validated `gateway:` section (DESIGN.md §11).
    pub gateway: Option<crate::transport::gateway::config::GatewayConfig>,
    /// What start-up should tell the operator: Flyte sections skipped, Flyte keys accepted but
    /// not acted on, settings that behave differently from FlyteAdmin.
    pub notices: Notices,
}

/// Start-up messages produced while loading (logged by `serve`, printed by `check-config`).
#[derive(Debug, Clone, Default)]
pub struct Notices {
    /// Informational lines (e.g. the sections of other Flyte components that were skipped).
    pub info: Vec<String>,
    /// Warnings: a Flyte key that is accepted but ignored, a setting that differs from Flyte.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub http_port: u16,
    /// `None` when the gRPC-only listener is disabled.
    pub grpc_port: Option<u16>,
    pub reflection: bool,
    pub tls: Option<TlsFiles>,
    pub use_auth: bool,
    pub insecure_cookie_header: bool,
    pub allow_cors: bool,
    pub allowed_origins: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub max_request_bytes: usize,
    pub trusted_proxies: crate::transport::client_addr::TrustedProxies,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub timeouts: ServerTimeoutsFile,
    /// `metrics.port`, when `/metrics` has its own listener.
    pub metrics_port: Option<u16>,
    /// `allowedOrigins` contained `"*"`: any origin gets CORS responses, without credentials.
    pub allow_any_origin: bool,
    /// Largest incoming gRPC message (`grpc.maxMessageSizeBytes`, else `maxRequestBytes`).
    pub max_grpc_message_bytes: usize,
    pub max_concurrent_streams: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certificate_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Lower-cased metadata key clients send the token in (besides `authorization`).
    pub grpc_authorization_header: String,
    pub http_authorization_header: String,
    pub disable_for_http: bool,
    pub disable_for_grpc: bool,
    /// Public URLs of this deployment, first one the default.
    pub authorized_uris: Vec<Url>,
    pub extra_audiences: Vec<String>,
    pub required_scopes: Vec<String>,
    pub token_cache_entries: usize,
    pub clock_skew_secs: i64,
    pub flyte_client: FlyteClientFile,
    pub issuer: Option<String>,
    pub signing_algorithm: crate::keys::SigningAlg,
    pub auth_server_type: AuthServerType,
    pub authorization: AuthorizationFile,
    /// Flyte's `auth.httpProxyURL`: the proxy for External mode's metadata and JWKS fetches
    /// when `externalAuthServer.httpProxyURL` is not set.
    pub http_proxy_url: String,
}

impl Config {
    /// Parses and validates a YAML document; `base_dir` resolves relative paths.
    /// Sections of other Flyte components are skipped and Flyte's spellings mapped, as for
    /// files ([`crate::config_files`]).
    pub fn from_yaml(yaml: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        crate::config_files::from_text(yaml, base_dir)
    }

    /// Reads, parses and validates the config file (or folder) at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_all(&[path.to_path_buf()])
    }

    /// Reads several files and folders, merged in order ([`crate::config_files`]).
    pub fn load_all(paths: &[PathBuf]) -> Result<Self, ConfigError> {
        crate::config_files::load(paths)
    }

    pub fn from_file(f: FileConfig, base: &Path) -> Result<Self, ConfigError> {
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let sec = &f.server.security;
        let tls = if sec.secure {
            if sec.ssl.certificate_file.is_empty() {
                return Err(ConfigError::new(
                    "server.security.ssl.certificateFile",
                    "required when server.security.secure is true",
                ));
            }
            if sec.ssl.key_file.is_empty() {
                return Err(ConfigError::new(
                    "server.security.ssl.keyFile",
                    "required when server.security.secure is true",
                ));
            }
            Some(TlsFiles {
                certificate_file: resolve(&sec.ssl.certificate_file),
                key_file: resolve(&sec.ssl.key_file),
            })
        } else {
            None
        };
        let mut notices = Notices::default();
        let allow_any_origin = sec.allowed_origins.iter().any(|o| o.trim() == "*");
        if allow_any_origin && sec.allow_cors {
            notices.warnings.push(
                "server.security.allowedOrigins contains \"*\": any origin gets CORS responses, \
                 but without credentials; the session cookie is honoured only from the public URLs \
                 and the origins listed explicitly"
                    .into(),
            );
        }
        for (i, o) in sec.allowed_origins.iter().enumerate() {
            if o.trim() == "*" {
                continue;
            }
            let u = Url::parse(o).map_err(|e| {
                ConfigError::new(
                    format!("server.security.allowedOrigins[{i}]"),
                    e.to_string(),
                )
            })?;
            if u.origin().ascii_serialization() != o.trim_end_matches('/') {
                return Err(ConfigError::new(
                    format!("server.security.allowedOrigins[{i}]"),
                    "must be an origin (scheme://host[:port]) without a path",
                ));
            }
        }
        let grpc_port = f.server.grpc_port.unwrap_or(f.server.grpc.port);
        let server = ServerConfig {
            http_port: f.server.http_port,
            grpc_port: (grpc_port != 0).then_some(grpc_port),
            reflection: f.server.grpc.server_reflection,
            tls,
            use_auth: sec.use_auth,
            insecure_cookie_header: sec.insecure_cookie_header,
            allow_cors: sec.allow_cors,
            allowed_origins: sec
                .allowed_origins
                .iter()
                .filter(|o| o.trim() != "*")
                .cloned()
                .collect(),
            allowed_headers: sec.allowed_headers.clone(),
            max_request_bytes: f.server.max_request_bytes,
            trusted_proxies: crate::transport::client_addr::TrustedProxies::parse(
                &f.server.trusted_proxies,
            )
            .map_err(|(i, e)| ConfigError::new(format!("server.trustedProxies[{i}]"), e))?,
            max_connections: f.server.max_connections,
            max_connections_per_address: f.server.max_connections_per_address,
            timeouts: {
                let mut t = f.server.timeouts.clone();
                // Flyte's key wins when set.
                if let Some(n) = f.server.read_header_timeout_seconds {
                    if n == 0 {
                        return Err(ConfigError::new(
                            "server.readHeaderTimeoutSeconds",
                            "must be greater than zero",
                        ));
                    }
                    t.request_head = Duration::from_secs(n);
                }
                t
            },
            allow_any_origin,
            max_grpc_message_bytes: match f.server.grpc.max_message_size_bytes {
                0 => f.server.max_request_bytes,
                n => n,
            },
            max_concurrent_streams: (f.server.grpc.max_concurrent_streams != 0)
                .then_some(f.server.grpc.max_concurrent_streams),
            metrics_port: (f.metrics.port != 0).then_some(f.metrics.port),
        };
        for (key, zero) in [
            ("server.maxConnections", server.max_connections == 0),
            (
                "server.maxConnectionsPerAddress",
                server.max_connections_per_address == 0,
            ),
            (
                "server.timeouts.handshake",
                server.timeouts.handshake.is_zero(),
            ),
            (
                "server.timeouts.requestHead",
                server.timeouts.request_head.is_zero(),
            ),
            ("server.timeouts.body", server.timeouts.body.is_zero()),
        ] {
            if zero {
                return Err(ConfigError::new(key, "must be greater than zero"));
            }
        }
        if server.max_request_bytes < 1024 {
            return Err(ConfigError::new(
                "server.maxRequestBytes",
                "must be at least 1024",
            ));
        }

        let a = &f.auth;
        let mut authorized_uris = Vec::new();
        for (i, u) in a.authorized_uris.iter().enumerate() {
            let url = Url::parse(u).map_err(|e| {
                ConfigError::new(format!("auth.authorizedUris[{i}]"), e.to_string())
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::new(
                    format!("auth.authorizedUris[{i}]"),
                    "must be an absolute http(s) URL",
                ));
            }
            authorized_uris.push(url);
        }
        let header = |path: &str, v: &str| -> Result<String, ConfigError> {
            let v = v.trim().to_ascii_lowercase();
            if v.is_empty() {
                return Ok("authorization".into());
            }
            http::HeaderName::from_bytes(v.as_bytes())
                .map_err(|_| ConfigError::new(path, "not a valid header name"))?;
            Ok(v)
        };
        let self_as = &f.auth.app_auth.self_auth_server;
        let signing_algorithm = self_as.signing_algorithm.parse().map_err(|e: String| {
            ConfigError::new("auth.appAuth.selfAuthServer.signingAlgorithm", e)
        })?;
        for (path, d) in [
            ("accessTokenLifespan", self_as.access_token_lifespan),
            ("refreshTokenLifespan", self_as.refresh_token_lifespan),
            (
                "authorizationCodeLifespan",
                self_as.authorization_code_lifespan,
            ),
            ("deviceCodeLifespan", self_as.device_code_lifespan),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(
                    format!("auth.appAuth.selfAuthServer.{path}"),
                    "must be greater than zero",
                ));
            }
        }
        crate::authz_server::trusted_issuers::validate(&self_as.trusted_issuers)?;
        for (i, r) in a.authorization.rules.iter().enumerate() {
            let path = format!("auth.authorization.rules[{i}]");
            if r.methods.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.methods"),
                    "must list at least one method pattern",
                ));
            }
            if r.allow_scopes.is_empty() && r.allow_groups.is_empty() && r.allow_subjects.is_empty()
            {
                return Err(ConfigError::new(
                    path,
                    "allows nobody: set allowScopes, allowGroups or allowSubjects",
                ));
            }
        }
        crate::auth::roles::config::compile(&a.authorization.bindings, &a.authorization.roles)?;
        if a.required_scopes.is_empty() {
            return Err(ConfigError::new(
                "auth.requiredScopes",
                "must list at least one scope (Flyte's default is [all])",
            ));
        }
        if let Some(oidc) = &f.auth.user_auth.open_id {
            if oidc.client_id.trim().is_empty() {
                return Err(ConfigError::new(
                    "auth.userAuth.openId.clientId",
                    "must not be empty (an empty client id would disable ID-token checks)",
                ));
            }
            if Url::parse(&oidc.base_url).is_err() {
                return Err(ConfigError::new(
                    "auth.userAuth.openId.baseUrl",
                    "must be the IdP's absolute issuer URL",
                ));
            }
        }
        for (i, u) in f.auth.user_auth.local_users.iter().enumerate() {
            let hash = &u.password_hash;
            if !(hash.is_empty() || hash.starts_with("$2") || hash.starts_with("$argon2")) {
                return Err(ConfigError::new(
                    format!("auth.userAuth.localUsers[{i}].passwordHash"),
                    "must be a bcrypt ($2b$...) or argon2 ($argon2id$...) PHC string",
                ));
            }
            if u.username.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("auth.userAuth.localUsers[{i}].username"),
                    "must not be empty",
                ));
            }
            if u.password_hash.is_empty() == u.password_secret_name.is_empty() {
                return Err(ConfigError::new(
                    format!("auth.userAuth.localUsers[{i}].passwordHash"),
                    "set exactly one of passwordHash and passwordSecretName",
                ));
            }
        }
        let cs = &f.auth.user_auth.cookie_setting;
        let same_site = crate::transport::http::cookies::parse_same_site(&cs.same_site_policy)
            .map_err(|e| ConfigError::new("auth.userAuth.cookieSetting.sameSitePolicy", e))?;
        if same_site == cookie::SameSite::None && sec.insecure_cookie_header {
            notices.warnings.push(
                "auth.userAuth.cookieSetting.sameSitePolicy is NoneMode while \
                 server.security.insecureCookieHeader drops Secure: browsers refuse such cookies"
                    .into(),
            );
        }
        if !cs.domain.is_empty()
            && (cs.domain.contains(['/', ':', ' '])
                || Url::parse(&format!("http://{}/", cs.domain.trim_start_matches('.'))).is_err())
        {
            return Err(ConfigError::new(
                "auth.userAuth.cookieSetting.domain",
                "must be a host name such as flyte.example.com",
            ));
        }
        let auth = AuthConfig {
            grpc_authorization_header: header(
                "auth.grpcAuthorizationHeader",
                &a.grpc_authorization_header,
            )?,
            http_authorization_header: header(
                "auth.httpAuthorizationHeader",
                &a.http_authorization_header,
            )?,
            disable_for_http: a.disable_for_http,
            disable_for_grpc: a.disable_for_grpc,
            authorized_uris,
            extra_audiences: a
                .audiences
                .iter()
                .chain(&a.app_auth.external_auth_server.allowed_audience.0)
                .cloned()
                .collect(),
            required_scopes: a.required_scopes.clone(),
            token_cache_entries: a.token_cache.max_entries,
            clock_skew_secs: a.clock_skew.as_secs() as i64,
            flyte_client: a.app_auth.third_party_config.flyte_client.clone(),
            issuer: (!self_as.issuer.is_empty()).then(|| self_as.issuer.clone()),
            signing_algorithm,
            auth_server_type: a.app_auth.auth_server_type,
            authorization: a.authorization.clone(),
            http_proxy_url: a.http_proxy_url.clone(),
        };

        let database = database_target(&f.database, &resolve)?;
        if f.admin.domains.is_empty() {
            return Err(ConfigError::new(
                "admin.domains",
                "must list at least one domain",
            ));
        }
        for (i, d) in f.admin.domains.iter().enumerate() {
            if d.id.is_empty() {
                return Err(ConfigError::new(
                    format!("admin.domains[{i}].id"),
                    "must not be empty",
                ));
            }
        }
        if f.secrets.secrets_prefix.is_empty() {
            return Err(ConfigError::new(
                "secrets.secrets-prefix",
                "must not be empty",
            ));
        }

        let gateway = f.gateway.as_ref().map(|g| g.validate(base)).transpose()?;
        let mut user_auth = f.auth.user_auth;
        if let Some(o) = user_auth.open_id.as_mut() {
            if !o.client_secret_file.is_empty() {
                o.client_secret_file = resolve(&o.client_secret_file)
                    .to_string_lossy()
                    .into_owned();
            }
        }
        let mut app_auth = f.auth.app_auth;
        for t in &mut app_auth.self_auth_server.trusted_issuers {
            if !t.jwks_file.is_empty() {
                t.jwks_file = resolve(&t.jwks_file).to_string_lossy().into_owned();
            }
        }
        let mut database_pool = f.database.connection_pool;
        if let Some(n) = f.database.max_open_connections {
            database_pool.max_open_connections = n;
        }
        if let Some(d) = f.database.conn_max_life_time {
            database_pool.conn_max_life_time = d;
        }
        if database_pool.max_open_connections == 0 {
            return Err(ConfigError::new(
                "database.maxOpenConnections",
                "must be at least 1",
            ));
        }
        Ok(Config {
            server,
            auth,
            secrets_dir: resolve(&f.secrets.secrets_prefix),
            secrets_env_prefix: f.secrets.env_prefix,
            database,
            database_pool,
            notices,
            domains: f.admin.domains,
            user_auth,
            app_auth,
            gateway,
        })
    }
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseTarget::Sqlite { path } => write!(f, "Sqlite({})", path.display()),
            // The URL may carry a password: print only where it points.
            DatabaseTarget::Postgres { url } => match Url::parse(url) {
                Ok(u) => write!(
                    f,
                    "Postgres({}:{}{})",
                    u.host_str().unwrap_or(""),
                    u.port().unwrap_or(5432),
                    u.path()
                ),
                Err(_) => f.write_str("Postgres(<unparsable url>)"),
            },
        }
    }
}

fn database_target(
    d: &DatabaseFile,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<DatabaseTarget, ConfigError> {
    let set = [!d.url.is_empty(), d.sqlite.is_some(), d.postgres.is_some()];
    if set.iter().filter(|b| **b).count() > 1 {
        return Err(ConfigError::new(
            "database",
            "set only one of database.url, database.sqlite, database.postgres",
        ));
    }
    if !d.url.is_empty() {
        if let Some(rest) = d.url.strip_prefix("sqlite://") {
            return Ok(DatabaseTarget::Sqlite {
                path: resolve(rest),
            });
        }
        if d.url.starts_with("postgres://") || d.url.starts_with("postgresql://") {
            Url::parse(&d.url).map_err(|e| ConfigError::new("database.url", e.to_string()))?;
            return Ok(DatabaseTarget::Postgres { url: d.url.clone() });
        }
        return Err(ConfigError::new(
            "database.url",
            "must start with sqlite:// or postgres://",
        ));
    }
    if let Some(pg) = &d.postgres {
        let mut url = Url::parse("postgres://localhost").expect("static url");
        url.set_host(Some(&pg.host))
            .map_err(|e| ConfigError::new("database.postgres.host", e.to_string()))?;
        let _ = url.set_port(Some(pg.port));
        let _ = url.set_username(&pg.username);
        let password = if !pg.password_path.is_empty() {
            std::fs::read_to_string(resolve(&pg.password_path))
                .map_err(|e| ConfigError::new("database.postgres.passwordPath", e.to_string()))?
                .trim_end()
                .to_owned()
        } else {
            pg.password.clone()
        };
        if !password.is_empty() {
            let _ = url.set_password(Some(&password));
        }
        url.set_path(&pg.dbname);
        // Flyte's `options` is a libpq keyword string such as "sslmode=disable".
        for kv in pg.options.split_whitespace() {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                ConfigError::new("database.postgres.options", "expected key=value pairs")
            })?;
            url.query_pairs_mut().append_pair(k, v);
        }
        return Ok(DatabaseTarget::Postgres { url: url.into() });
    }
    let file = d
        .sqlite
        .as_ref()
        .map(|s| s.file.clone())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "data/flyteauth.db".into());
    Ok(DatabaseTarget::Sqlite {
        path: resolve(&file),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(yaml, Path::new("/cfg"))
    }

    #[test]
    fn empty_config_has_flyte_defaults() {
        let c = load("").unwrap();
        assert_eq!(c.server.http_port, 8088);
        assert_eq!(c.server.grpc_port, Some(8089));
        assert_eq!(c.auth.grpc_authorization_header, "flyte-authorization");
        assert_eq!(c.auth.flyte_client.client_id, "flytectl");
        assert_eq!(c.auth.required_scopes, vec!["all"]);
        assert_eq!(c.domains.len(), 3);
        assert_eq!(c.secrets_dir, PathBuf::from("/etc/secrets"));
    }

    #[test]
    fn unknown_key_names_its_path() {
        let e = load("auth:\n  userAuth:\n    openId:\n      clientIdd: x\n").unwrap_err();
        assert_eq!(e.path, "auth.userAuth.openId.clientIdd", "{e}");
        assert!(e.message.starts_with("unknown field `clientIdd`"), "{e}");
        assert!(e.message.contains("clientIdd"), "{e}");
    }

    #[test]
    fn bad_value_names_its_path() {
        let e = load("auth:\n  appAuth:\n    authServerType: Foo\n").unwrap_err();
        assert_eq!(e.path, "auth.appAuth.authServerType", "{e}");
        let e = load("auth:\n  appAuth:\n    selfAuthServer:\n      accessTokenLifespan: soon\n")
            .unwrap_err();
        assert_eq!(
            e.path, "auth.appAuth.selfAuthServer.accessTokenLifespan",
            "{e}"
        );
        let e = load("server:\n  httpPort: 99999\n").unwrap_err();
        assert_eq!(e.path, "server.httpPort", "{e}");
        let e = load("auth:\n  authorizedUris: ['not a url']\n").unwrap_err();
        assert_eq!(e.path, "auth.authorizedUris[0]", "{e}");
        let e = load(
            "auth:\n  userAuth:\n    openId:\n      clientId: ''\n      baseUrl: https://idp\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "auth.userAuth.openId.clientId", "{e}");
        let e =
            load("server:\n  security:\n    allowedOrigins: ['*', 'not an origin']\n").unwrap_err();
        assert_eq!(e.path, "server.security.allowedOrigins[1]", "{e}");
    }

    #[test]
    fn flyte_shapes_load() {
        let yaml = r#"
server:
  httpPort: 8088
  grpc: { port: 0 }
  security: { secure: false, useAuth: true, allowCors: true, allowedOrigins: ["http://localhost:8088"], allowedHeaders: [Content-Type, flyte-authorization] }
auth:
  authorizedUris: [https://flyte.example.com, http://flyteadmin:80]
  appAuth:
    authServerType: Self
    selfAuthServer:
      accessTokenLifespan: 1h0m0s
      staticClients:
        flytepropeller:
          id: flytepropeller
          client_secret: JDJhJDA2JGQ2UFFuMlFBRlUzY0w1VjhNRGtldXVrNjN4dWJxVXhOeGp0ZlB3LkZjOU1VbEFDb0pZZG1hUw==
          redirect_uris: [http://localhost:3846/callback]
          grant_types: [refresh_token, client_credentials]
          response_types: [token]
          scopes: [all, offline, access_token]
          public: false
    externalAuthServer: { allowedAudience: "a,b", retryDelay: 1s }
    thirdPartyConfig: { flyteClient: { clientId: flytectl, redirectUri: "http://localhost:53593/callback", scopes: [all, offline] } }
secrets: { secrets-prefix: ./secrets }
database:
  postgres: { host: db, port: 5433, dbname: flyte, username: flyte, options: "sslmode=disable" }
"#;
        let c = load(yaml).unwrap();
        assert_eq!(c.server.grpc_port, None);
        assert_eq!(c.auth.authorized_uris.len(), 2);
        assert_eq!(c.auth.extra_audiences, vec!["a", "b"]);
        assert_eq!(c.secrets_dir, PathBuf::from("/cfg/./secrets"));
        match c.database {
            DatabaseTarget::Postgres { url } => {
                assert_eq!(url, "postgres://flyte@db:5433/flyte?sslmode=disable")
            }
            other => panic!("{other:?}"),
        }
    }
}
