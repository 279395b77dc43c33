//! `serve` once the ports are bound: the prepared start-up becomes the running service
//! (`AppState`, the start-up banner, then the listeners until the shutdown signal).

use std::future::Future;
use std::io::Write;

use super::{Prepared, StartOptions, StartupError};
use crate::transport::server::Listeners;
use crate::transport::state::AppState;

/// Why `serve` stopped: the state could not be built, or the server failed while running.
#[derive(Debug)]
pub(crate) enum ServeError {
    Startup(StartupError),
    Run(anyhow::Error),
}

impl ServeError {
    /// The process exit code: [`StartupError::exit_code`], or 70 for a failure while running.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Self::Startup(e) => e.exit_code(),
            Self::Run(_) => 70,
        }
    }
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Startup(e) => e.fmt(f),
            Self::Run(e) => e.fmt(f),
        }
    }
}

/// Builds the state from `prepared`, prints the start-up banner (generated secrets, local
/// users' password files, the listening and public URLs) and serves until `shutdown`.
pub(crate) async fn serve(
    prepared: Prepared,
    opts: StartOptions,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let http_addr = opts.http_addr;
    let state = AppState::from_prepared(prepared, opts)
        .await
        .map_err(ServeError::Startup)?;
    for name in &state.generated_secrets {
        println!(
            "generated secret {} in {}",
            name,
            state.secrets.dir.display()
        );
    }
    for u in &state.config.user_auth.local_users {
        if !u.password_secret_name.is_empty() {
            println!(
                "local user {}: password in {}",
                u.username,
                state.secrets.path_of(&u.password_secret_name).display()
            );
        }
    }
    let scheme = if state.tls { "https" } else { "http" };
    println!("flyteauth listening on {scheme}://{http_addr} (gRPC, gRPC-web, Connect and HTTP)");
    if let Some(g) = &listeners.grpc {
        println!("gRPC-only listener on {}", g.local_addr().expect("bound"));
    }
    println!("public URL: {}", state.public_urls.first());
    println!("console: {}/console", state.public_urls.first());
    let _ = std::io::stdout().flush();
    crate::transport::server::run(state, listeners, shutdown)
        .await
        .map_err(ServeError::Run)
}
