//! What the transports' handlers share: [`AppState`], built once at start-up by
//! [`crate::app`] and handed to the gRPC services, the HTTP routes, Connect and the gateway.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::authz_server::AuthorizationServer;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::keys::KeySet;
use crate::login::local::LocalUsers;
use crate::public_url::PublicUrls;
use crate::ratelimit::FailureLimiter;
use crate::secret::SecretStore;
use crate::session::Sessions;
use crate::store::Store;
use crate::transport::http::cookies::CookieFactory;

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    pub clock: SharedClock,
    pub secrets: SecretStore,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeySet>,
    pub authenticator: Arc<Authenticator>,
    pub public_urls: PublicUrls,
    /// The `iss` of tokens the built-in AS issues (configured issuer, else first public URL).
    pub issuer: String,
    /// Secrets created by this start (names only), for the start-up banner.
    pub generated_secrets: Vec<String>,
    pub tls: bool,
    pub sessions: Arc<Sessions>,
    pub local_users: LocalUsers,
    /// Failed logins per user and per client address.
    pub login_limiter: FailureLimiter,
    pub cookies: CookieFactory,
    pub authz: AuthorizationServer,
    /// The external IdP, when `auth.userAuth.openId` is configured.
    pub oidc: Option<Arc<crate::oidc::OidcProvider>>,
    pub sealer: crate::sealed::Sealer,
    /// The external authorization server (`authServerType: External`).
    pub external: Option<Arc<crate::external::ExternalAuthServer>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The gateway's upstreams (`gateway:`, DESIGN.md §11), when configured.
    pub gateway: Option<Arc<crate::transport::gateway::Gateway>>,
    /// `auth.authorization.bindings` (DESIGN.md §12); `None` without bindings.
    pub authorizer: Option<Arc<crate::auth::roles::Authorizer>>,
}
