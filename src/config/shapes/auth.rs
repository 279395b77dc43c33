//! The `auth:` section as written (Flyte's `auth.userAuth`, `auth.appAuth`, …).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::go_duration;

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
    /// Roles on projects and domains (DESIGN.md §12); see [`crate::config::roles`].
    pub bindings: Vec<crate::config::roles::BindingFile>,
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

#[derive(Debug, Clone, Deserialize)]
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
    pub trusted_issuers: Vec<crate::config::trusted_issuers::TrustedIssuerFile>,
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
