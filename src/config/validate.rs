//! Stage 2: the file shapes ([`super::shapes`]) → the typed runtime [`Config`]. Every check
//! `serve` and `check-config` share that needs no secret, port, network or database is here;
//! every error names the key's path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::database::database_target;
use super::{
    AppAuthConfig, AppAuthFile, AuthConfig, Config, ConfigError, CookieSettings, FileConfig,
    Notices, SelfAuthServerConfig, ServerConfig, TlsFiles, TrustedProxies, UserAuthConfig,
};

pub(super) fn from_file(f: FileConfig, base: &Path) -> Result<Config, ConfigError> {
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
        trusted_proxies: TrustedProxies::parse(&f.server.trusted_proxies)
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
        let url = Url::parse(u)
            .map_err(|e| ConfigError::new(format!("auth.authorizedUris[{i}]"), e.to_string()))?;
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
    let signing_algorithm = self_as
        .signing_algorithm
        .parse()
        .map_err(|e: String| ConfigError::new("auth.appAuth.selfAuthServer.signingAlgorithm", e))?;
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
    super::trusted_issuers::validate(&self_as.trusted_issuers)?;
    for (i, r) in a.authorization.rules.iter().enumerate() {
        let path = format!("auth.authorization.rules[{i}]");
        if r.methods.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.methods"),
                "must list at least one method pattern",
            ));
        }
        if r.allow_scopes.is_empty() && r.allow_groups.is_empty() && r.allow_subjects.is_empty() {
            return Err(ConfigError::new(
                path,
                "allows nobody: set allowScopes, allowGroups or allowSubjects",
            ));
        }
    }
    super::roles::compile(&a.authorization.bindings, &a.authorization.roles)?;
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
    let same_site = super::parse_same_site(&cs.same_site_policy)
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
    let ua = f.auth.user_auth;
    let mut open_id = ua.open_id;
    if let Some(o) = open_id.as_mut() {
        if !o.client_secret_file.is_empty() {
            o.client_secret_file = resolve(&o.client_secret_file)
                .to_string_lossy()
                .into_owned();
        }
    }
    let user_auth = UserAuthConfig {
        redirect_url: ua.redirect_url,
        http_proxy_url: ua.http_proxy_url,
        cookie_hash_key_secret_name: ua.cookie_hash_key_secret_name,
        cookie_block_key_secret_name: ua.cookie_block_key_secret_name,
        cookie_setting: CookieSettings {
            same_site,
            domain: (!ua.cookie_setting.domain.is_empty()).then_some(ua.cookie_setting.domain),
        },
        idp_query_parameter: ua.idp_query_parameter,
        open_id,
        local_users: ua.local_users,
        session: ua.session,
        login_rate_limit: ua.login_rate_limit,
    };
    let app_auth = app_auth(f.auth.app_auth, &resolve);
    let database_pool = super::database::database_pool(&f.database)?;
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

/// `auth.appAuth` (its lifespans checked above) → [`AppAuthConfig`]: durations in the
/// seconds the token handlers use, the trusted issuers' `jwksFile` resolved.
fn app_auth(a: AppAuthFile, resolve: &dyn Fn(&str) -> PathBuf) -> AppAuthConfig {
    let s = a.self_auth_server;
    let secs = |d: std::time::Duration| d.as_secs() as i64;
    let mut trusted_issuers = s.trusted_issuers;
    for t in &mut trusted_issuers {
        if !t.jwks_file.is_empty() {
            t.jwks_file = resolve(&t.jwks_file).to_string_lossy().into_owned();
        }
    }
    AppAuthConfig {
        self_auth_server: SelfAuthServerConfig {
            access_token_lifespan: secs(s.access_token_lifespan),
            refresh_token_lifespan: secs(s.refresh_token_lifespan),
            authorization_code_lifespan: secs(s.authorization_code_lifespan),
            device_code_lifespan: secs(s.device_code_lifespan),
            refresh_token_grace_period: secs(s.refresh_token_grace_period),
            claim_symmetric_encryption_key_secret_name: s
                .claim_symmetric_encryption_key_secret_name,
            token_signing_rsa_key_secret_name: s.token_signing_rsa_key_secret_name,
            old_token_signing_rsa_key_secret_name: s.old_token_signing_rsa_key_secret_name,
            static_clients: s.static_clients,
            trusted_issuers,
        },
        external_auth_server: a.external_auth_server,
    }
}

/// The CA bundles of `https://` upstreams (`gateway.upstreams[i].caCertFile`): readable, at
/// least one certificate, each usable as a root. Part of [`Config::check_files`], so
/// `check-config` refuses what `serve` would refuse when it builds the upstream clients.
pub(super) fn check_gateway_ca_files(g: &super::gateway::GatewayConfig) -> Result<(), ConfigError> {
    use rustls::pki_types::pem::PemObject;
    for (i, u) in g.upstreams.iter().enumerate() {
        let (true, Some(path)) = (u.tls, &u.ca_cert_file) else {
            continue;
        };
        let key = format!("gateway.upstreams[{i}].caCertFile");
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ConfigError::new(&key, format!("cannot read {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(ConfigError::new(
                &key,
                format!("no certificate in {}", path.display()),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots
                .add(c)
                .map_err(|e| ConfigError::new(&key, format!("{}: {e}", path.display())))?;
        }
    }
    Ok(())
}
