//! Configuration, in stages: the files as deployed, merged and triaged ([`files`]); the YAML
//! as written (Flyte's `server:`, `auth:`, `secrets:`, `database:` shapes, key for key, every
//! struct `deny_unknown_fields`: [`shapes`], with the sections [`roles`], [`gateway`],
//! [`trusted_issuers`]); then one validation ([`Config::from_file`]) into the typed runtime
//! [`Config`] the service runs with. Every error names the key's path
//! (`auth.appAuth.authServerType: ...`).
//!
//! This is the core layer: the domain modules and the transports take their typed settings
//! from here; nothing here imports them.

use std::path::{Path, PathBuf};

use url::Url;

pub(crate) mod database;
pub(crate) mod files;
pub(crate) mod gateway;
mod net;
pub(crate) mod roles;
pub(crate) mod shapes;
pub(crate) mod trusted_issuers;
mod validate;

pub(crate) use database::DatabasePool;
pub use database::DatabaseTarget;
pub(crate) use net::{parse_same_site, TrustedProxies};
pub use shapes::*;

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

/// The validated configuration the service runs with.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub secrets_dir: PathBuf,
    pub secrets_env_prefix: String,
    pub database: DatabaseTarget,
    pub database_pool: DatabasePool,
    pub domains: Vec<DomainFile>,
    /// `auth.userAuth`, validated (paths resolved, the cookie policy parsed).
    pub user_auth: UserAuthConfig,
    /// `auth.appAuth` (the built-in AS, the external one), validated.
    pub app_auth: AppAuthConfig,
    /// The validated `gateway:` section (DESIGN.md §11).
    pub gateway: Option<gateway::GatewayConfig>,
    /// What start-up should tell the operator: Flyte sections skipped, Flyte keys accepted but
    /// not acted on, settings that behave differently from FlyteAdmin.
    pub notices: Notices,
}

/// `auth.userAuth` as the service uses it.
#[derive(Debug, Clone)]
pub struct UserAuthConfig {
    pub redirect_url: String,
    /// Flyte's `auth.userAuth.httpProxyURL`: the proxy of the IdP's discovery and JWKS.
    pub http_proxy_url: String,
    pub cookie_hash_key_secret_name: String,
    pub cookie_block_key_secret_name: String,
    pub cookie_setting: CookieSettings,
    pub idp_query_parameter: String,
    /// `clientSecretFile` resolved against the config's folder.
    pub open_id: Option<OpenIdFile>,
    pub local_users: Vec<LocalUserFile>,
    pub session: SessionFile,
    pub login_rate_limit: LoginRateLimitFile,
}

/// `auth.appAuth` as the service uses it (`authServerType`, `issuer` and `signingAlgorithm`
/// are in [`AuthConfig`]).
#[derive(Debug)]
pub struct AppAuthConfig {
    pub self_auth_server: SelfAuthServerConfig,
    pub external_auth_server: ExternalAuthServerFile,
}

/// `auth.appAuth.selfAuthServer`, validated: lifespans in the seconds the token handlers use
/// (each greater than zero), the trusted issuers' `jwksFile` resolved against the config's
/// folder.
#[derive(Debug)]
pub struct SelfAuthServerConfig {
    pub access_token_lifespan: i64,
    pub refresh_token_lifespan: i64,
    pub authorization_code_lifespan: i64,
    pub device_code_lifespan: i64,
    /// Zero: a rotated refresh token is never accepted again.
    pub refresh_token_grace_period: i64,
    pub claim_symmetric_encryption_key_secret_name: String,
    pub token_signing_rsa_key_secret_name: String,
    pub old_token_signing_rsa_key_secret_name: String,
    pub static_clients: Option<std::collections::BTreeMap<String, StaticClientFile>>,
    pub trusted_issuers: Vec<trusted_issuers::TrustedIssuerFile>,
}

/// `auth.userAuth.cookieSetting`, parsed.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// Flyte's `sameSitePolicy` (`DefaultMode` is Lax).
    pub same_site: cookie::SameSite,
    /// `Domain=` of the cookies, when set.
    pub domain: Option<String>,
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
    pub trusted_proxies: TrustedProxies,
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
    /// files ([`files`]).
    pub fn from_yaml(yaml: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        files::from_text(yaml, base_dir)
    }

    /// Reads, parses and validates the config file (or folder) at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_all(&[path.to_path_buf()])
    }

    /// Reads several files and folders, merged in order ([`files`]).
    pub fn load_all(paths: &[PathBuf]) -> Result<Self, ConfigError> {
        files::load(paths)
    }

    /// The one validation `serve` and `check-config` share: file shapes → typed settings
    /// ([`validate`]); `base` resolves relative paths.
    pub fn from_file(f: FileConfig, base: &Path) -> Result<Self, ConfigError> {
        validate::from_file(f, base)
    }

    /// The second half of the one validation, run at start-up by `serve` and `check-config`
    /// alike (`app::prepare`): the files the config names are readable and well-formed (the
    /// gateway's CA bundles). Separate from [`Config::from_file`] so a config can be parsed
    /// where its files do not exist (the docs' examples).
    pub fn check_files(&self) -> Result<(), ConfigError> {
        if let Some(g) = &self.gateway {
            validate::check_gateway_ca_files(g)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
