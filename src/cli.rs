//! The command line: `serve`, `check-config`, `secret init`, `hash-secret`, `hash-password`,
//! `token`, `whoami`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use clap::{Parser, Subcommand};

use crate::app::{prepare, SecretsMode, StartOptions};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::transport::server::Listeners;

/// Exit code for bad configuration, secrets or usage (sysexits EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

#[derive(Parser)]
#[command(
    name = "flyteauth",
    version,
    about = "Authentication for Flyte's control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// Config files or folders (every *.yaml / *.yml in name order); repeat the flag or
        /// separate with commas. Later files merge over earlier ones, as in Flyte.
        #[arg(long, default_value = "config.yaml", value_delimiter = ',', action = clap::ArgAction::Append)]
        config: Vec<PathBuf>,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Run every start-up check `serve` runs that needs no port, network or database (keys,
    /// values, paths, secrets, signing keys, clients, TLS files), then exit: 0 valid, 64 not.
    CheckConfig {
        /// As `serve --config`.
        #[arg(long, default_value = "config.yaml", value_delimiter = ',', action = clap::ArgAction::Append)]
        config: Vec<PathBuf>,
    },
    /// Secrets management.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Hash a client secret with bcrypt, printed base64-encoded as Flyte's `client_secret`
    /// expects. Reads the secret from stdin.
    HashSecret {
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
    /// Hash a local user's password (argon2id PHC string). Reads the password from stdin.
    HashPassword,
    /// Get an access token and print it (stdout only): client credentials, or the exchange of
    /// a token of a trusted issuer (`--subject-token-file`, e.g. a Kubernetes service-account
    /// token; RFC 8693), so that Flyte clients can use this as their `ExternalCommand`.
    Token(TokenArgs),
    /// Call IdentityService.UserInfo with a client-credentials token and print the identity.
    Whoami(TokenArgs),
    /// Print the authorization table: every RPC, the action it needs and where its project,
    /// domain and org are read from (DESIGN.md §12), tab-separated.
    AuthzTable,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The service's base URL, e.g. http://localhost:8088 (default: $FLYTEAUTH_ENDPOINT, else
    /// http://localhost:8088).
    #[arg(long)]
    endpoint: Option<String>,
    /// The client (default flytepropeller for client credentials; with a subject token, sent
    /// only when given, and then it must be the client the token's subject acts as).
    #[arg(long)]
    client_id: Option<String>,
    /// File holding the client secret (e.g. data/secrets/flytepropeller_client_secret).
    #[arg(long, conflicts_with_all = ["client_secret_env", "subject_token_file"])]
    client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    #[arg(long, conflicts_with = "subject_token_file")]
    client_secret_env: Option<String>,
    /// File holding a JWT of a trusted issuer to exchange (RFC 8693), read on every run, e.g.
    /// a projected service-account token: /var/run/secrets/tokens/flyteauth.
    #[arg(long)]
    subject_token_file: Option<PathBuf>,
    /// The subject token's type (RFC 8693 §3).
    #[arg(long, default_value = crate::authz_server::exchange::TYPE_JWT)]
    subject_token_type: String,
    /// Space-separated scopes to request (default: all for client credentials; with a subject
    /// token, the scopes its subject is mapped to).
    #[arg(long)]
    scope: Option<String>,
}

impl TokenArgs {
    fn endpoint(&self) -> String {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("FLYTEAUTH_ENDPOINT").ok())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "http://localhost:8088".into())
    }
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Generate Flyte's secrets (cookie_hash_key, cookie_block_key, claim_symmetric_key,
    /// token_rsa_key.pem) and the default flytepropeller client secret into a directory,
    /// keeping any that exist.
    Init {
        #[arg(long, short = 'p', default_value = "/etc/secrets")]
        dir: PathBuf,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_json } => {
            init_logging(log_json);
            serve(&config)
        }
        Command::CheckConfig { config } => check_config(&config),
        Command::Secret {
            command: SecretCommand::Init { dir },
        } => secret_init(&dir),
        Command::HashSecret { cost } => hash_secret(cost),
        Command::HashPassword => hash_password(),
        Command::Token(args) => runtime().block_on(async {
            match fetch_token(&args).await {
                Ok(t) => {
                    println!("{}", t.expose());
                    0
                }
                Err(e) => fail(e, 69),
            }
        }),
        Command::Whoami(args) => runtime().block_on(whoami(args)),
        Command::AuthzTable => {
            print!("{}", crate::auth::roles::Table::shared().render());
            0
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn env_snapshot() -> Vec<(String, String)> {
    std::env::vars().collect()
}

fn fail(msg: impl std::fmt::Display, code: i32) -> i32 {
    eprintln!("flyteauth: {msg}");
    code
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn serve(paths: &[PathBuf]) -> i32 {
    let config = match Config::load_all(paths) {
        Ok(c) => c,
        Err(e) => return fail(e, EXIT_CONFIG),
    };
    for line in &config.notices.info {
        tracing::info!("{line}");
    }
    for line in &config.notices.warnings {
        tracing::warn!("{line}");
    }
    runtime().block_on(async move {
        let prepared = match prepare(config, env_snapshot(), SecretsMode::Generate) {
            Ok(p) => p,
            Err(e) => return fail(&e, e.exit_code()),
        };
        let config = &prepared.config;
        let bind =
            |port: u16| async move { tokio::net::TcpListener::bind(("0.0.0.0", port)).await };
        let http = match bind(config.server.http_port).await {
            Ok(l) => l,
            Err(e) => {
                return fail(
                    format!(
                        "server.httpPort: cannot bind port {}: {e}",
                        config.server.http_port
                    ),
                    EXIT_CONFIG,
                )
            }
        };
        let grpc = match config.server.grpc_port {
            None => None,
            Some(p) => match bind(p).await {
                Ok(l) => Some(l),
                Err(e) => {
                    return fail(
                        format!("server.grpc.port: cannot bind port {p}: {e}"),
                        EXIT_CONFIG,
                    )
                }
            },
        };
        let http_addr = http.local_addr().expect("bound");
        let opts = StartOptions {
            env: env_snapshot(),
            clock: Arc::new(SystemClock),
            http_addr,
        };
        let listeners = Listeners { http, grpc };
        match crate::app::serve::serve(prepared, opts, listeners, shutdown_signal()).await {
            Ok(()) => 0,
            Err(e) => fail(&e, e.exit_code()),
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `check-config`: the same loading and start-up validation as `serve` ([`prepare`]), with
/// missing secrets only checked for (not written), then exit.
fn check_config(paths: &[PathBuf]) -> i32 {
    let config = match Config::load_all(paths) {
        Ok(c) => c,
        Err(e) => return fail(e, EXIT_CONFIG),
    };
    for line in &config.notices.info {
        eprintln!("note: {line}");
    }
    for line in &config.notices.warnings {
        eprintln!("warning: {line}");
    }
    let prepared =
        runtime().block_on(async { prepare(config, env_snapshot(), SecretsMode::DryRun) });
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => return fail(&e, e.exit_code()),
    };
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    println!("{}: configuration is valid", names.join(", "));
    for name in &prepared.generated_secrets {
        println!(
            "note: secret {name} does not exist yet in {}; `serve` will generate it",
            prepared.secrets.dir.display()
        );
    }
    0
}

fn secret_init(dir: &Path) -> i32 {
    let items: [(&str, crate::app::SecretMaker); 5] = [
        (
            "claim_symmetric_key",
            Box::new(|| Ok(crate::keys::random_b64_secret(32))),
        ),
        (
            "cookie_hash_key",
            Box::new(|| Ok(crate::keys::random_b64_secret(64))),
        ),
        (
            "cookie_block_key",
            Box::new(|| Ok(crate::keys::random_b64_secret(32))),
        ),
        ("token_rsa_key.pem", Box::new(crate::keys::generate_rsa_pem)),
        (
            crate::authz_server::clients::PROPELLER_SECRET_NAME,
            Box::new(|| Ok(crate::keys::random_token())),
        ),
    ];
    for (name, make) in items {
        let path = dir.join(name);
        if path.exists() {
            println!("kept {}", path.display());
            continue;
        }
        let value = match make() {
            Ok(v) => v,
            Err(e) => return fail(e, 70),
        };
        if let Err(e) = crate::secret::write_new_secret(&path, value.as_bytes()) {
            return fail(format!("{}: {e}", path.display()), 73);
        }
        println!("wrote {}", path.display());
    }
    0
}

fn read_stdin_line(prompt: &str) -> Option<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    (!line.is_empty()).then_some(line)
}

fn hash_secret(cost: u32) -> i32 {
    let Some(secret) = read_stdin_line("client secret: ") else {
        return fail("no secret given on stdin", EXIT_CONFIG);
    };
    match bcrypt::hash(secret, cost) {
        Ok(h) => {
            println!("{}", base64::engine::general_purpose::STANDARD.encode(h));
            0
        }
        Err(e) => fail(e, EXIT_CONFIG),
    }
}

fn hash_password() -> i32 {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let Some(password) = read_stdin_line("password: ") else {
        return fail("no password given on stdin", EXIT_CONFIG);
    };
    let salt = SaltString::encode_b64(&crate::keys::random_bytes(16)).expect("16-byte salt");
    match argon2::Argon2::default().hash_password(password.as_bytes(), &salt) {
        Ok(h) => {
            println!("{h}");
            0
        }
        Err(e) => fail(e, 70),
    }
}

/// Gets a client-credentials token, or exchanges a subject token, at the token endpoint the
/// service advertises.
async fn fetch_token(args: &TokenArgs) -> Result<crate::secret::Secret<String>, String> {
    use serde_json::Value;
    let subject_token = match &args.subject_token_file {
        None => None,
        Some(path) => {
            let t = std::fs::read_to_string(path)
                .map_err(|e| format!("--subject-token-file {}: {e}", path.display()))?;
            let t = t.trim().to_owned();
            if t.is_empty() {
                return Err(format!("--subject-token-file {}: empty", path.display()));
            }
            Some(crate::secret::Secret::new(t))
        }
    };
    let secret = match (&args.client_secret_file, &args.client_secret_env) {
        _ if subject_token.is_some() => String::new(),
        (Some(path), _) => std::fs::read_to_string(path)
            .map(|s| s.trim_end().to_owned())
            .map_err(|e| format!("--client-secret-file {}: {e}", path.display()))?,
        (None, Some(var)) => {
            std::env::var(var).map_err(|_| format!("--client-secret-env: {var} is not set"))?
        }
        (None, None) => {
            return Err(
                "give --client-secret-file, --client-secret-env or --subject-token-file".into(),
            )
        }
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
    let endpoint = args.endpoint();
    let base = endpoint.trim_end_matches('/');
    let md: Value = http
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("metadata: {e}"))?
        .json()
        .await
        .map_err(|e| format!("metadata: {e}"))?;
    let token_endpoint = md["token_endpoint"]
        .as_str()
        .ok_or("metadata has no token_endpoint")?;
    // RFC 6749 §2.3.1: id and secret are form-urlencoded inside Basic.
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let request = match &subject_token {
        Some(subject_token) => {
            let mut form = vec![
                ("grant_type", crate::authz_server::exchange::TOKEN_EXCHANGE),
                ("subject_token", subject_token.expose().as_str()),
                ("subject_token_type", args.subject_token_type.as_str()),
                (
                    "requested_token_type",
                    crate::authz_server::exchange::TYPE_ACCESS_TOKEN,
                ),
            ];
            if let Some(scope) = &args.scope {
                form.push(("scope", scope.as_str()));
            }
            if let Some(id) = &args.client_id {
                form.push(("client_id", id.as_str()));
            }
            http.post(token_endpoint).form(&form)
        }
        None => {
            let id = args.client_id.as_deref().unwrap_or("flytepropeller");
            http.post(token_endpoint)
                .basic_auth(enc(id), Some(enc(&secret)))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", args.scope.as_deref().unwrap_or("all")),
                ])
        }
    };
    let resp = request
        .send()
        .await
        .map_err(|e| format!("token endpoint: {e}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("token endpoint: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "token endpoint: HTTP {status}: {} {}",
            body["error"].as_str().unwrap_or(""),
            body["error_description"].as_str().unwrap_or("")
        ));
    }
    body["access_token"]
        .as_str()
        .map(|t| crate::secret::Secret::new(t.to_owned()))
        .ok_or_else(|| "token endpoint: no access_token in the response".into())
}

async fn whoami(args: TokenArgs) -> i32 {
    use crate::pb::flyteidl::service as v1;
    let token = match fetch_token(&args).await {
        Ok(t) => t,
        Err(e) => return fail(e, 69),
    };
    let endpoint = args.endpoint();
    let channel = match tonic::transport::Endpoint::from_shared(endpoint.clone()) {
        Ok(ep) => {
            let ep = if endpoint.starts_with("https://") {
                match ep.tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots()) {
                    Ok(ep) => ep,
                    Err(e) => return fail(e, 69),
                }
            } else {
                ep
            };
            match ep.connect().await {
                Ok(c) => c,
                Err(e) => return fail(format!("{endpoint}: {e}"), 69),
            }
        }
        Err(e) => return fail(e, 64),
    };
    let key = v1::auth_metadata_service_client::AuthMetadataServiceClient::new(channel.clone())
        .get_public_client_config(v1::PublicClientAuthConfigRequest {})
        .await
        .map(|r| r.into_inner().authorization_metadata_key)
        .ok()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "authorization".into());
    let mut req = tonic::Request::new(v1::UserInfoRequest {});
    let value = match format!("Bearer {}", token.expose()).parse() {
        Ok(v) => v,
        Err(_) => return fail("the token is not a valid header value", 69),
    };
    let key = match tonic::metadata::MetadataKey::from_bytes(key.as_bytes()) {
        Ok(k) => k,
        Err(_) => return fail("the advertised authorization_metadata_key is invalid", 69),
    };
    req.metadata_mut().insert(key, value);
    match v1::identity_service_client::IdentityServiceClient::new(channel)
        .user_info(req)
        .await
    {
        Ok(r) => {
            let u = r.into_inner();
            let out = serde_json::json!({
                "subject": u.subject, "name": u.name, "preferred_username": u.preferred_username,
                "email": u.email,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            0
        }
        Err(status) => fail(
            format!("UserInfo: {:?}: {}", status.code(), status.message()),
            69,
        ),
    }
}
