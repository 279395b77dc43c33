//! `check-config` tells the truth: for every configuration error `serve` can raise before it
//! binds a port or reaches the network or the database, `check-config` fails with the same
//! message and the same exit code (64), and it writes nothing. Also: several files / folders
//! merge as Flyte's loader does.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flyteauth");

/// Runs the binary; returns (exit code, last `flyteauth:` line of stderr, all stderr).
fn run(args: &[&str], config: &[&Path]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for c in config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{args:?} did not exit: it started serving");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("flyteauth: "))
        .unwrap_or("")
        .to_owned();
    (status.code().unwrap_or(-1), line, stderr)
}

/// No database section: the default SQLite file under the config folder (never opened: every
/// case fails before).
const BASE: &str = "server: { httpPort: 0, grpc: { port: 0 } }\n\
                    secrets: { secrets-prefix: ./secrets }\n";

/// A valid PEM-looking certificate that is not one.
const NOT_A_CERT: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

struct Case {
    name: &'static str,
    /// Extra YAML merged over [`BASE`] (in a second file, to exercise the merge too).
    yaml: &'static str,
    /// Files to write before the run (relative to the config folder).
    files: &'static [(&'static str, &'static str)],
    /// The key the message must name.
    key: &'static str,
}

/// Every configuration error `serve` raises before binding (src/config/, app::prepare,
/// server::check_tls).
const CASES: &[Case] = &[
    // The files themselves.
    Case { name: "yaml syntax", yaml: "server: [", files: &[], key: "not valid YAML" },
    Case { name: "not a map", yaml: "- a\n- b\n", files: &[], key: "must be a map" },
    Case { name: "unknown key", yaml: "auth: { userAuth: { openId: { clientIdd: x } } }", files: &[], key: "auth.userAuth.openId.clientIdd" },
    Case { name: "unknown top-level section", yaml: "propellor: { workers: 2 }", files: &[], key: "propellor" },
    Case { name: "unknown server key", yaml: "server: { kubeconfig: /x }", files: &[], key: "server.kubeconfig" },
    Case { name: "bad enum", yaml: "auth: { appAuth: { authServerType: Other } }", files: &[], key: "auth.appAuth.authServerType" },
    Case { name: "bad duration", yaml: "auth: { appAuth: { selfAuthServer: { accessTokenLifespan: soon } } }", files: &[], key: "auth.appAuth.selfAuthServer.accessTokenLifespan" },
    Case { name: "port range", yaml: "server: { httpPort: 99999 }", files: &[], key: "server.httpPort" },
    Case { name: "both domains spellings", yaml: "domains: [{ id: a, name: a }]\nadmin: { domains: [{ id: b, name: b }] }", files: &[], key: "domains" },
    // config.rs validation.
    Case { name: "secure without cert", yaml: "server: { security: { secure: true, ssl: { keyFile: k.pem } } }", files: &[], key: "server.security.ssl.certificateFile" },
    Case { name: "secure without key", yaml: "server: { security: { secure: true, ssl: { certificateFile: c.pem } } }", files: &[], key: "server.security.ssl.keyFile" },
    Case { name: "origin with path", yaml: "server: { security: { allowedOrigins: ['*', 'https://a.example/x'] } }", files: &[], key: "server.security.allowedOrigins[1]" },
    Case { name: "max request bytes", yaml: "server: { maxRequestBytes: 10 }", files: &[], key: "server.maxRequestBytes" },
    Case { name: "read header timeout", yaml: "server: { readHeaderTimeoutSeconds: 0 }", files: &[], key: "server.readHeaderTimeoutSeconds" },
    Case { name: "authorized uri", yaml: "auth: { authorizedUris: ['not a url'] }", files: &[], key: "auth.authorizedUris[0]" },
    Case { name: "authorized uri scheme", yaml: "auth: { authorizedUris: ['ftp://x.example'] }", files: &[], key: "auth.authorizedUris[0]" },
    Case { name: "header name", yaml: "auth: { grpcAuthorizationHeader: 'bad header' }", files: &[], key: "auth.grpcAuthorizationHeader" },
    Case { name: "http header name", yaml: "auth: { httpAuthorizationHeader: 'bad header' }", files: &[], key: "auth.httpAuthorizationHeader" },
    Case { name: "signing algorithm", yaml: "auth: { appAuth: { selfAuthServer: { signingAlgorithm: HS256 } } }", files: &[], key: "auth.appAuth.selfAuthServer.signingAlgorithm" },
    Case { name: "zero lifespan", yaml: "auth: { appAuth: { selfAuthServer: { deviceCodeLifespan: 0s } } }", files: &[], key: "auth.appAuth.selfAuthServer.deviceCodeLifespan" },
    Case { name: "rule without methods", yaml: "auth: { authorization: { rules: [{ allowScopes: [all] }] } }", files: &[], key: "auth.authorization.rules[0].methods" },
    Case { name: "rule allows nobody", yaml: "auth: { authorization: { rules: [{ methods: ['*'] }] } }", files: &[], key: "auth.authorization.rules[0]" },
    Case { name: "required scopes", yaml: "auth: { requiredScopes: [] }", files: &[], key: "auth.requiredScopes" },
    Case { name: "openId client id", yaml: "auth: { userAuth: { openId: { clientId: '', baseUrl: 'https://idp.example' } } }", files: &[], key: "auth.userAuth.openId.clientId" },
    Case { name: "openId base url", yaml: "auth: { userAuth: { openId: { clientId: flyte, baseUrl: 'idp' } } }", files: &[], key: "auth.userAuth.openId.baseUrl" },
    Case { name: "local user hash", yaml: "auth: { userAuth: { localUsers: [{ username: a, passwordHash: plain }] } }", files: &[], key: "auth.userAuth.localUsers[0].passwordHash" },
    Case { name: "local user name", yaml: "auth: { userAuth: { localUsers: [{ username: '', passwordSecretName: p }] } }", files: &[], key: "auth.userAuth.localUsers[0].username" },
    Case { name: "local user both", yaml: "auth: { userAuth: { localUsers: [{ username: a, passwordHash: '$2b$04$x', passwordSecretName: p }] } }", files: &[], key: "auth.userAuth.localUsers[0].passwordHash" },
    Case { name: "same site", yaml: "auth: { userAuth: { cookieSetting: { sameSitePolicy: Lax } } }", files: &[], key: "auth.userAuth.cookieSetting.sameSitePolicy" },
    Case { name: "cookie domain", yaml: "auth: { userAuth: { cookieSetting: { domain: 'https://x.example/' } } }", files: &[], key: "auth.userAuth.cookieSetting.domain" },
    Case { name: "two databases", yaml: "database: { url: 'postgres://db/x', sqlite: { file: x.db } }", files: &[], key: "database" },
    Case { name: "database url scheme", yaml: "database: { url: 'mysql://db/x' }", files: &[], key: "database.url" },
    Case { name: "password path", yaml: "database: { postgres: { host: db, passwordPath: ./missing } }", files: &[], key: "database.postgres.passwordPath" },
    Case { name: "postgres options", yaml: "database: { postgres: { host: db, options: sslmode } }", files: &[], key: "database.postgres.options" },
    Case { name: "max open connections", yaml: "database: { maxOpenConnections: 0 }", files: &[], key: "database.maxOpenConnections" },
    Case { name: "no domains", yaml: "admin: { domains: [] }", files: &[], key: "admin.domains" },
    Case { name: "empty domain id", yaml: "admin: { domains: [{ id: '', name: x }] }", files: &[], key: "admin.domains[0].id" },
    Case { name: "secrets prefix", yaml: "secrets: { secrets-prefix: '' }", files: &[], key: "secrets.secrets-prefix" },
    Case { name: "gateway ca unreadable", yaml: "gateway: { upstreams: [{ name: a, url: 'https://up.example', services: [a.B], caCertFile: ./missing-ca.pem }] }", files: &[], key: "gateway.upstreams[0].caCertFile" },
    Case { name: "gateway ca garbage", yaml: "gateway: { upstreams: [{ name: a, url: 'https://up.example', services: [a.B], caCertFile: ./ca.pem }] }", files: &[("ca.pem", "not a pem")], key: "gateway.upstreams[0].caCertFile" },
    // Start-up checks (state::prepare): TLS files, secrets, keys, clients, proxies.
    Case { name: "tls cert unreadable", yaml: "server: { security: { secure: true, ssl: { certificateFile: missing.pem, keyFile: missing-key.pem } } }", files: &[], key: "server.security.ssl.certificateFile" },
    Case { name: "tls cert garbage", yaml: "server: { security: { secure: true, ssl: { certificateFile: c.pem, keyFile: missing-key.pem } } }", files: &[("c.pem", NOT_A_CERT)], key: "server.security.ssl" },
    Case { name: "secrets dir not creatable", yaml: "secrets: { secrets-prefix: ./afile/secrets }", files: &[("afile", "x")], key: "secrets directory" },
    Case { name: "signing key malformed", yaml: "", files: &[("secrets/token_rsa_key.pem", "not a key")], key: "auth.appAuth.selfAuthServer.tokenSigningRSAKeySecretName" },
    Case { name: "old signing key malformed", yaml: "", files: &[("secrets/token_rsa_key_old.pem", "not a key")], key: "auth.appAuth.selfAuthServer.oldTokenSigningRSAKeySecretName" },
    Case { name: "cookie block key malformed", yaml: "", files: &[("secrets/cookie_block_key", "short")], key: "auth.userAuth.cookieBlockKeySecretName" },
    Case { name: "oidc secret missing", yaml: "auth: { userAuth: { openId: { clientId: flyte, baseUrl: 'https://idp.example' } } }", files: &[], key: "auth.userAuth.openId.clientSecretName" },
    Case { name: "oidc secret file unreadable", yaml: "auth: { userAuth: { openId: { clientId: flyte, baseUrl: 'https://idp.example', clientSecretFile: ./nope } } }", files: &[], key: "auth.userAuth.openId.clientSecretName" },
    Case { name: "oidc proxy", yaml: "auth: { userAuth: { httpProxyURL: 'http://[bad', openId: { clientId: flyte, baseUrl: 'https://idp.example', clientSecretFile: ./oidc } } }", files: &[("oidc", "s3cret")], key: "auth.userAuth.httpProxyURL" },
    Case { name: "static client secret not bcrypt", yaml: "auth: { appAuth: { selfAuthServer: { staticClients: { flytepropeller: { id: flytepropeller, client_secret: c2VjcmV0, grant_types: [client_credentials], scopes: [all] } } } } }", files: &[], key: "auth.appAuth.selfAuthServer.staticClients" },
    Case { name: "external without base url", yaml: "auth: { appAuth: { authServerType: External } }", files: &[], key: "auth.appAuth.externalAuthServer" },
    Case { name: "external proxy", yaml: "auth: { httpProxyURL: 'http://[bad', appAuth: { authServerType: External, externalAuthServer: { baseUrl: 'https://as.example' } } }", files: &[], key: "auth.httpProxyURL" },
    Case { name: "external own proxy", yaml: "auth: { appAuth: { authServerType: External, externalAuthServer: { baseUrl: 'https://as.example', httpProxyURL: 'http://[bad' } } }", files: &[], key: "auth.appAuth.externalAuthServer.httpProxyURL" },
];

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn check_config_fails_exactly_as_serve_for_every_startup_error() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("config.d");
        write(&conf, "000-base.yaml", BASE);
        write(&conf, "010-case.yaml", case.yaml);
        for (rel, text) in case.files {
            write(&conf, rel, text);
        }
        let before = listing(dir.path());
        let (check_code, check_line, check_err) = run(&["check-config"], &[&conf]);
        // check-config writes nothing (no secrets, no database).
        assert_eq!(
            listing(dir.path()),
            before,
            "{}: check-config wrote files",
            case.name
        );
        let (serve_code, serve_line, serve_err) = run(&["serve"], &[&conf]);
        let ok = check_code == 64
            && serve_code == 64
            && check_line == serve_line
            && serve_line.contains(case.key);
        if !ok {
            failures.push(format!(
                "{}: check-config {check_code} {check_line:?} / serve {serve_code} {serve_line:?} (want key {:?})\n  check stderr: {check_err}\n  serve stderr: {serve_err}",
                case.name, case.key
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_config_reports_a_missing_or_empty_config_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let empty = dir.path().join("empty.d");
    std::fs::create_dir_all(&empty).unwrap();
    for p in [&missing, &empty] {
        let (c1, l1, _) = run(&["check-config"], &[p]);
        let (c2, l2, _) = run(&["serve"], &[p]);
        assert_eq!((c1, c2, &l1), (64, 64, &l2), "{}", p.display());
        assert!(l1.contains(&p.display().to_string()), "{l1}");
    }
}

#[test]
fn files_and_folders_merge_in_order_with_paths_relative_to_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A folder rendered like flyte-binary's: the client secret's hash in a file of its own.
    write(
        d,
        "config.d/000-core.yaml",
        "propeller: { workers: 4 }\nlogger: { level: 4 }\nadmin: { endpoint: 'dns:///localhost:8089', insecure: true }\n\
         server: { httpPort: 0, grpc: { port: 0 } }\ndatabase: { sqlite: { file: ./db.sqlite } }\n",
    );
    write(
        d,
        "config.d/002-auth.yaml",
        "auth:\n  appAuth:\n    selfAuthServer:\n      staticClients:\n        flytepropeller:\n          id: flytepropeller\n          \
         grant_types: [client_credentials]\n          response_types: [token]\n          scopes: [all]\n          redirect_uris: []\n",
    );
    write(d, "config.d/not-yaml.txt", "garbage: [");
    // Without the secret file the static client has no secret: refused.
    let (code, line, _) = run(&["check-config"], &[&d.join("config.d")]);
    assert_eq!(code, 64, "{line}");
    assert!(line.contains("staticClients"), "{line}");
    // The hash in its own file (base64 of bcrypt("s3cret")), with a secrets-prefix relative
    // to THAT file's directory.
    let hash = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bcrypt::hash("s3cret", 4).unwrap())
    };
    write(
        d,
        "secret/014-auth-secrets.yaml",
        &format!(
            "auth: {{ appAuth: {{ selfAuthServer: {{ staticClients: {{ flytepropeller: {{ client_secret: '{hash}' }} }} }} }} }}\n\
             secrets: {{ secrets-prefix: ./keys }}\n"
        ),
    );
    let (code, line, stderr) = run(
        &["check-config"],
        &[&d.join("config.d"), &d.join("secret/014-auth-secrets.yaml")],
    );
    assert_eq!(code, 0, "{line}\n{stderr}");
    assert!(
        stderr.contains("skipped the settings of other Flyte components: admin.endpoint, admin.insecure, logger, propeller"),
        "{stderr}"
    );
    // The relative secrets-prefix resolved against secret/, not config.d/.
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(format!(
            "{},{}",
            d.join("config.d").display(),
            d.join("secret/014-auth-secrets.yaml").display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("in {}", d.join("secret/keys").display())),
        "{stdout}"
    );
}

/// The chart-shaped fixtures load unchanged; Flyte's keys land where flyteauth honours them.
#[test]
fn flyte_chart_fixtures_load_with_flytes_keys_honoured() {
    use flyteauth::testing::Config;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flyte-configs");
    let load = |p: &str| Config::load_all(&[root.join(p)]).unwrap_or_else(|e| panic!("{p}: {e}"));

    let bin = load("flyte-binary");
    assert_eq!(bin.notices.info.len(), 1, "{:?}", bin.notices);
    assert!(
        bin.notices.info[0].contains("propeller"),
        "{:?}",
        bin.notices
    );
    assert!(bin.notices.warnings.is_empty(), "{:?}", bin.notices);
    let c = bin
        .app_auth
        .self_auth_server
        .static_clients
        .as_ref()
        .unwrap();
    // 004-auth.yaml's client, completed by 014-auth-secrets.yaml's hash.
    assert_eq!(c["flytepropeller"].id, "flytepropeller");
    assert!(!c["flytepropeller"].client_secret.is_empty());
    assert_eq!(
        c["flytepropeller"].grant_types,
        ["refresh_token", "client_credentials"]
    );
    match &bin.database {
        flyteauth::testing::DatabaseTarget::Postgres { url } => {
            assert!(url.contains("flyte-db.flyte.svc.cluster.local"), "{url}")
        }
        other => panic!("{other:?}"),
    }

    // flyte-core: passwordPath must exist when the config loads; point it at a temp file
    // through an override layered last.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pass.txt"), "pw").unwrap();
    std::fs::write(
        dir.path().join("override.yaml"),
        "database: { postgres: { passwordPath: ./pass.txt } }\n",
    )
    .unwrap();
    let core =
        Config::load_all(&[root.join("flyte-core"), dir.path().join("override.yaml")]).unwrap();
    assert_eq!(core.server.max_grpc_message_bytes, 8388608);
    assert_eq!(core.server.timeouts.request_head, Duration::from_secs(30));
    assert!(core.server.allow_any_origin);
    assert!(core.server.allowed_origins.is_empty());
    assert_eq!(core.database_pool.max_open_connections, 50);
    assert_eq!(
        core.database_pool.conn_max_life_time,
        Duration::from_secs(1800)
    );
    assert_eq!(core.domains.len(), 3);
    let w = core.notices.warnings.join("\n");
    for k in [
        "allowedOrigins",
        "server.kube-config",
        "database.maxIdleConnections",
    ] {
        assert!(w.contains(k), "{w}");
    }
    assert_eq!(core.notices.warnings.len(), 3, "{w}");
    let skipped = &core.notices.info[0];
    for s in [
        "admin.clientSecretLocation",
        "event",
        "flyteadmin",
        "propeller",
        "task_resources",
    ] {
        assert!(skipped.contains(s), "{skipped}");
    }

    let azure = load("azure-single/flyteadmin.yaml");
    assert_eq!(azure.domains.len(), 2, "top-level domains");
    assert_eq!(azure.app_auth.self_auth_server.device_code_lifespan, 600);
    assert_eq!(
        azure.notices.warnings.len(),
        6,
        "{:?}",
        azure.notices.warnings
    );

    let ext = load("external-okta");
    assert_eq!(
        ext.auth.auth_server_type,
        flyteauth::testing::AuthServerType::External
    );
    assert_eq!(ext.auth.extra_audiences, ["api://flyte"]);
}
