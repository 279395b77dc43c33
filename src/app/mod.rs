//! Start-up: turns a validated [`Config`] into the shared [`AppState`] — secrets (generated
//! on first start where Flyte's `secret init` would), signing keys, the store, the token
//! verifier and the public URLs.

pub(crate) mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use url::Url;

use crate::auth::{Authenticator, TokenVerifier, VerifierSettings};
use crate::authz_server::clients::{Clients, PROPELLER_SECRET_NAME};
use crate::authz_server::AuthorizationServer;
use crate::clock::SharedClock;
use crate::config::{AuthServerType, Config, ConfigError};
use crate::keys::{self, KeyError, KeySet, SigningAlg, SigningKey};
use crate::login::local::LocalUsers;
use crate::public_url::PublicUrls;
use crate::ratelimit::FailureLimiter;
use crate::secret::{write_new_secret, SecretError, SecretStore};
use crate::session::Sessions;
use crate::store::{self, StoreError};
use crate::transport::http::cookies::CookieFactory;
use crate::transport::state::AppState;

/// Why the service could not start. Each variant names the config key involved.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{key}: {source}")]
    Secret { key: String, source: SecretError },
    #[error("{key}: cannot use key `{name}`: {source}")]
    Key {
        key: String,
        name: String,
        source: KeyError,
    },
    #[error("secrets directory {}: {source}", dir.display())]
    SecretsDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The TLS certificate or key cannot be used (the message names the key).
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Other(String),
}

impl StartupError {
    /// Process exit code: 64 (EX_USAGE) for configuration and secrets, 69 (EX_UNAVAILABLE)
    /// for a database that cannot be reached, 70 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_)
            | Self::Secret { .. }
            | Self::Key { .. }
            | Self::SecretsDir { .. }
            | Self::Tls(_) => 64,
            Self::Store(_) => 69,
            Self::Other(_) => 70,
        }
    }
}

/// What `serve` needs besides the config: the environment snapshot (secrets by env), the
/// clock, and where the main listener is bound (to derive the public URL when
/// `auth.authorizedUris` is empty).
pub struct StartOptions {
    pub env: Vec<(String, String)>,
    pub clock: SharedClock,
    pub http_addr: SocketAddr,
}

/// What start-up does with secrets that are missing: `serve` generates them into the secrets
/// directory; `check-config` only checks that it could, and stands in values in memory so
/// every later check runs as `serve` would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretsMode {
    Generate,
    DryRun,
}

/// Everything start-up derives from the config without a bound port, the network or the
/// database: the one validation `serve` and `check-config` share ([`prepare`]).
pub struct Prepared {
    pub config: Config,
    pub secrets: SecretStore,
    /// Secrets created (or, in a dry run, that would be created), names only.
    pub generated_secrets: Vec<String>,
    pub keys: Arc<KeySet>,
    clients: Clients,
    local_users: LocalUsers,
    sealer: crate::sealed::Sealer,
    oidc: Option<Arc<crate::oidc::OidcProvider>>,
    external: Option<Arc<crate::external::ExternalAuthServer>>,
}

/// Runs every start-up check that needs no bound port, network or database: secrets present
/// and well-formed (generated where Flyte's `secret init` would), keys parse, static clients
/// and local users valid, the IdP / external AS settings and proxies usable, TLS files
/// readable.
pub(crate) fn prepare(
    config: Config,
    env: Vec<(String, String)>,
    mode: SecretsMode,
) -> Result<Prepared, StartupError> {
    crate::transport::tls::check_tls(&config.server).map_err(StartupError::Tls)?;
    config.check_files()?;
    let mut secrets = SecretStore::new(
        config.secrets_dir.clone(),
        config.secrets_env_prefix.clone(),
        env,
    );
    let signing_secret = signing_key_secret_name(&config);
    let generated_secrets = ensure_secrets(&mut secrets, &config, &signing_secret, mode)?;
    let keys = Arc::new(load_keys(&secrets, &config, &signing_secret)?);
    check_named_secrets(&secrets, &config)?;
    let clients = Clients::load(
        config.app_auth.self_auth_server.static_clients.as_ref(),
        &secrets,
    )
    .map_err(|e| ConfigError::new(e.key, e.message))?;
    let local_users = LocalUsers::load(&config.user_auth.local_users, &secrets)
        .map_err(|(key, source)| StartupError::Secret { key, source })?;
    let block_key_name = &config.user_auth.cookie_block_key_secret_name;
    let block_key = secrets
        .get(block_key_name)
        .map_err(|source| StartupError::Secret {
            key: "auth.userAuth.cookieBlockKeySecretName".into(),
            source,
        })?;
    let sealer = crate::sealed::Sealer::from_secret(block_key.expose())
        .map_err(|e| ConfigError::new("auth.userAuth.cookieBlockKeySecretName", e))?;
    let oidc = match &config.user_auth.open_id {
        None => None,
        Some(o) => {
            let secret = if o.client_secret_file.is_empty() {
                secrets.get_text(&o.client_secret_name)
            } else {
                std::fs::read_to_string(&o.client_secret_file)
                    .map(|s| crate::secret::Secret::new(s.trim_end().to_owned()))
                    .map_err(|source| crate::secret::SecretError::Io {
                        name: o.client_secret_file.clone(),
                        path: o.client_secret_file.clone().into(),
                        source,
                    })
            }
            .map_err(|source| StartupError::Secret {
                key: "auth.userAuth.openId.clientSecretName".into(),
                source,
            })?;
            let provider =
                crate::oidc::OidcProvider::new(o.clone(), secret, &config.user_auth.http_proxy_url)
                    .map_err(|e| ConfigError::new("auth.userAuth.httpProxyURL", e))?;
            Some(Arc::new(provider))
        }
    };

    let external = match config.auth.auth_server_type {
        AuthServerType::Builtin => None,
        AuthServerType::External => {
            let fallback = config
                .user_auth
                .open_id
                .as_ref()
                .map(|o| o.base_url.clone())
                .unwrap_or_default();
            let ext_cfg = &config.app_auth.external_auth_server;
            // Flyte: `auth.httpProxyURL` is the proxy of the metadata fetch; the
            // `externalAuthServer` one wins when both are set.
            let (proxy_key, proxy) = if ext_cfg.http_proxy_url.is_empty() {
                ("auth.httpProxyURL", &config.auth.http_proxy_url)
            } else {
                (
                    "auth.appAuth.externalAuthServer.httpProxyURL",
                    &ext_cfg.http_proxy_url,
                )
            };
            let ext = crate::external::ExternalAuthServer::new(ext_cfg, &fallback, proxy).map_err(
                |e| {
                    if e.starts_with("httpProxyURL") {
                        ConfigError::new(proxy_key, e)
                    } else {
                        ConfigError::new("auth.appAuth.externalAuthServer", e)
                    }
                },
            )?;
            Some(Arc::new(ext))
        }
    };
    Ok(Prepared {
        config,
        secrets,
        generated_secrets,
        keys,
        clients,
        local_users,
        sealer,
        oidc,
        external,
    })
}

impl AppState {
    pub async fn build(config: Config, opts: StartOptions) -> Result<Arc<Self>, StartupError> {
        let env = opts.env.clone();
        Self::from_prepared(prepare(config, env, SecretsMode::Generate)?, opts).await
    }

    /// The rest of start-up after [`prepare`]: public URLs, the verifier, the store.
    pub async fn from_prepared(p: Prepared, opts: StartOptions) -> Result<Arc<Self>, StartupError> {
        let Prepared {
            config,
            secrets,
            generated_secrets,
            keys,
            clients,
            local_users,
            sealer,
            oidc,
            external,
        } = p;
        let tls = config.server.tls.is_some();
        let public_urls = if config.auth.authorized_uris.is_empty() {
            let scheme = if tls { "https" } else { "http" };
            let port = opts.http_addr.port();
            PublicUrls::new(vec![
                Url::parse(&format!("{scheme}://localhost:{port}")).expect("valid url"),
                Url::parse(&format!("{scheme}://127.0.0.1:{port}")).expect("valid url"),
            ])
        } else {
            PublicUrls::new(config.auth.authorized_uris.clone())
        };
        let issuer = config
            .auth
            .issuer
            .clone()
            .unwrap_or_else(|| public_urls.first().to_owned());
        let mut audiences: Vec<String> = public_urls.all().map(String::from).collect();
        audiences.push(issuer.clone());
        audiences.extend(config.auth.extra_audiences.iter().cloned());
        // External mode: the issuer is the AS's own, set once its metadata is fetched.
        let mut issuers: Vec<String> = if external.is_some() {
            vec![]
        } else {
            vec![issuer.clone()]
        };
        if config.auth.issuer.is_none() && external.is_none() {
            issuers.extend(public_urls.all().map(String::from));
        }
        dedup(&mut issuers);
        dedup(&mut audiences);
        let verifier = TokenVerifier::new(
            VerifierSettings {
                keys: match &external {
                    Some(ext) => crate::auth::keysource::KeySource::Remote(ext.jwks.clone()),
                    None => crate::auth::keysource::KeySource::Static(keys.verification_keys()),
                },
                issuers,
                audiences,
                required_scopes: config.auth.required_scopes.clone(),
                cache_entries: config.auth.token_cache_entries,
                leeway_secs: config.auth.clock_skew_secs,
            },
            opts.clock.clone(),
        );
        let trusted_issuers = crate::authz_server::trusted_issuers::TrustedIssuers::load(
            &config.app_auth.self_auth_server.trusted_issuers,
            config.auth.clock_skew_secs,
            &config.user_auth.http_proxy_url,
        )?;
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let store = store::open(
            &config.database,
            config.database_pool.max_open_connections.max(1),
            std::time::Duration::from_secs(5),
            Some(config.database_pool.conn_max_life_time),
        )
        .await?;

        let session_cfg = &config.user_auth.session;
        let sessions = Arc::new(
            Sessions::new(
                store.clone(),
                opts.clock.clone(),
                session_cfg.idle_timeout.as_secs() as i64,
                session_cfg.absolute_timeout.as_secs() as i64,
            )
            .with_cookie_name(
                if config.server.tls.is_some() && !config.server.insecure_cookie_header {
                    crate::transport::http::cookies::host_name(
                        crate::transport::http::cookies::SESSION,
                    )
                } else {
                    crate::transport::http::cookies::SESSION
                },
            ),
        );
        // Cookie-authenticated calls may come from the listed console origins or from this
        // deployment's own public URLs.
        let mut allowed_origins: Vec<String> = config
            .server
            .allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_owned())
            .collect();
        for p in public_urls.all() {
            if let Ok(u) = Url::parse(p) {
                allowed_origins.push(u.origin().ascii_serialization());
            }
        }
        dedup(&mut allowed_origins);
        let authenticator = Arc::new(Authenticator::new(
            verifier,
            config.auth.grpc_authorization_header.clone(),
            Some(sessions.clone()),
            allowed_origins,
            crate::auth::rules::Rules::from_config(&config.auth.authorization),
            metrics.clone(),
        ));
        let cookie_setting = &config.user_auth.cookie_setting;
        let cookies = CookieFactory {
            secure: !config.server.insecure_cookie_header,
            // `__Host-` forbids `Domain=`: no prefix when cookieSetting.domain is set.
            host_prefix: config.server.tls.is_some()
                && !config.server.insecure_cookie_header
                && cookie_setting.domain.is_none(),
            same_site: cookie_setting.same_site,
            domain: cookie_setting.domain.clone(),
        };
        let authorizer = crate::auth::roles::Authorizer::from_config(
            &config.auth.authorization,
            Some(&*metrics),
        )?
        .map(Arc::new);
        let gateway = match &config.gateway {
            None => None,
            Some(g) => Some(Arc::new(crate::transport::gateway::Gateway::new(
                g,
                crate::transport::gateway::GatewayDeps {
                    auth: authenticator.clone(),
                    keys: keys.clone(),
                    clock: opts.clock.clone(),
                    metrics: metrics.clone(),
                    issuer: issuer.clone(),
                    grpc_token_header: config.auth.grpc_authorization_header.clone(),
                    http_token_header: config.auth.http_authorization_header.clone(),
                    use_auth: config.server.use_auth,
                    disable_for_grpc: config.auth.disable_for_grpc,
                    disable_for_http: config.auth.disable_for_http,
                    max_request_bytes: config.server.max_request_bytes,
                    authorizer: authorizer.clone(),
                },
            )?)),
        };
        Ok(Arc::new(Self {
            authorizer,
            gateway,
            sessions,
            local_users,
            login_limiter: FailureLimiter::new(
                config.user_auth.login_rate_limit.max_failures.max(1),
                config.user_auth.login_rate_limit.window.as_secs() as i64,
            )
            .with_store(store.clone()),
            cookies,
            authz: AuthorizationServer {
                clients,
                client_limiter: FailureLimiter::new(
                    crate::authz_server::MAX_CLIENT_FAILURES,
                    crate::authz_server::CLIENT_FAILURE_WINDOW_SECS,
                )
                .with_store(store.clone()),
                recent: Default::default(),
                trusted_issuers,
                settings: crate::authz_server::Settings::from_config(
                    &config,
                    issuer.clone(),
                    public_urls.clone(),
                ),
                store: store.clone(),
                keys: keys.clone(),
                clock: opts.clock.clone(),
                authenticator: authenticator.clone(),
                metrics: metrics.clone(),
            },
            oidc,
            sealer,
            external,
            metrics,
            config,
            clock: opts.clock,
            secrets,
            store,
            keys,
            authenticator,
            public_urls,
            issuer,
            generated_secrets,
            tls,
        }))
    }
}

fn signing_key_secret_name(config: &Config) -> String {
    let s = &config.app_auth.self_auth_server;
    match config.auth.signing_algorithm {
        SigningAlg::RS256 => s.token_signing_rsa_key_secret_name.clone(),
        SigningAlg::ES256 => "token_es256_key.pem".into(),
        SigningAlg::EdDSA => "token_ed25519_key.pem".into(),
    }
}

/// Produces the value of a generated secret.
pub(crate) type SecretMaker = Box<dyn Fn() -> Result<String, KeyError>>;

/// Creates the secrets Flyte's `secret init` would create, where they are missing.
fn ensure_secrets(
    secrets: &mut SecretStore,
    config: &Config,
    signing_secret: &str,
    mode: SecretsMode,
) -> Result<Vec<String>, StartupError> {
    let ua = &config.user_auth;
    let mut wanted: Vec<(String, SecretMaker)> = vec![
        (
            ua.cookie_hash_key_secret_name.clone(),
            Box::new(|| Ok(keys::random_b64_secret(64))),
        ),
        (
            ua.cookie_block_key_secret_name.clone(),
            Box::new(|| Ok(keys::random_b64_secret(32))),
        ),
        (
            config
                .app_auth
                .self_auth_server
                .claim_symmetric_encryption_key_secret_name
                .clone(),
            Box::new(|| Ok(keys::random_b64_secret(32))),
        ),
    ];
    let alg = config.auth.signing_algorithm;
    wanted.push((
        signing_secret.to_owned(),
        Box::new(move || keys::generate_pem(alg)),
    ));
    // Random credentials where Flyte would ship a shared default: the flytepropeller client
    // secret (default clients only) and local users' passwords held in secrets.
    if config.app_auth.self_auth_server.static_clients.is_none() {
        wanted.push((
            PROPELLER_SECRET_NAME.into(),
            Box::new(|| Ok(keys::random_token())),
        ));
    }
    for u in &config.user_auth.local_users {
        if !u.password_secret_name.is_empty() {
            wanted.push((
                u.password_secret_name.clone(),
                Box::new(|| Ok(keys::random_b64_secret(12))),
            ));
        }
    }
    let mut generated = Vec::new();
    for (name, make) in wanted {
        if secrets.exists(&name) {
            continue;
        }
        let value = make().map_err(|source| StartupError::Key {
            key: "secrets".into(),
            name: name.clone(),
            source,
        })?;
        // The same probe in both modes, so `check-config` fails exactly as `serve` would.
        if generated.is_empty() {
            probe_writable(&secrets.dir).map_err(|source| StartupError::SecretsDir {
                dir: secrets.dir.clone(),
                source,
            })?;
        }
        if mode == SecretsMode::DryRun {
            secrets.insert_in_memory(&name, value);
            generated.push(name);
            continue;
        }
        write_new_secret(&secrets.path_of(&name), value.as_bytes()).map_err(|source| {
            StartupError::SecretsDir {
                dir: secrets.dir.clone(),
                source,
            }
        })?;
        generated.push(name);
    }
    Ok(generated)
}

fn load_keys(
    secrets: &SecretStore,
    config: &Config,
    signing_secret: &str,
) -> Result<KeySet, StartupError> {
    let key_path = "auth.appAuth.selfAuthServer.tokenSigningRSAKeySecretName";
    let pem = secrets
        .get(signing_secret)
        .map_err(|source| StartupError::Secret {
            key: key_path.into(),
            source,
        })?;
    let current =
        SigningKey::from_pem(pem.expose(), config.auth.signing_algorithm).map_err(|source| {
            StartupError::Key {
                key: key_path.into(),
                name: signing_secret.into(),
                source,
            }
        })?;
    let old_name = &config
        .app_auth
        .self_auth_server
        .old_token_signing_rsa_key_secret_name;
    let old_path = "auth.appAuth.selfAuthServer.oldTokenSigningRSAKeySecretName";
    let old = match secrets
        .get_optional(old_name)
        .map_err(|source| StartupError::Secret {
            key: old_path.into(),
            source,
        })? {
        None => None,
        Some(pem) => Some(
            [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA]
                .into_iter()
                .find_map(|alg| SigningKey::from_pem(pem.expose(), alg).ok())
                .ok_or_else(|| StartupError::Key {
                    key: old_path.into(),
                    name: old_name.clone(),
                    source: KeyError::Rejected("not an RS256, ES256 or EdDSA private key".into()),
                })?
                .public()
                .clone(),
        ),
    };
    Ok(KeySet { current, old })
}

/// Secrets the config names that are never generated: they must exist.
fn check_named_secrets(secrets: &SecretStore, config: &Config) -> Result<(), StartupError> {
    if let Some(oidc) = &config.user_auth.open_id {
        if oidc.client_secret_file.is_empty() {
            secrets
                .get(&oidc.client_secret_name)
                .map_err(|source| StartupError::Secret {
                    key: "auth.userAuth.openId.clientSecretName".into(),
                    source,
                })?;
        }
    }
    Ok(())
}

/// Whether a secret could be written into `dir` (created if missing), without writing one:
/// a probe file is created and removed in `dir` or in its nearest existing ancestor.
fn probe_writable(dir: &std::path::Path) -> std::io::Result<()> {
    let mut at = dir.to_path_buf();
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p.to_path_buf(),
            _ => {
                at = PathBuf::from(".");
                break;
            }
        }
    }
    if !at.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a directory", at.display()),
        ));
    }
    let probe = at.join(format!(".flyteauth-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Removes repeated entries, keeping the first occurrence's position.
fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
}
