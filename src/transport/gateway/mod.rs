//! The gateway (DESIGN.md §11): flyteauth in front of Flyte's control plane. A gRPC, gRPC-web
//! or Connect call of a service an upstream names, and an HTTP path under an upstream's
//! `httpPrefixes`, is authenticated with the same decision as flyteauth's own services
//! ([`crate::auth::Authenticator::authenticate_call`]), authorized ([`authorize`]), and then
//! forwarded with the verified identity in headers ([`identity`]). A refused call never
//! reaches the upstream.
//!
//! - [`config`]: the `gateway:` section and its validation.
//! - [`identity`]: stripping forged identity headers, setting the verified ones, the JWT.
//! - [`forward`]: the upstream clients, the request/response rewriting, error mapping.

pub(crate) mod config;
mod forward;
pub(crate) mod identity;

use std::sync::Arc;

pub(crate) use config::GatewayConfig;
pub(crate) use forward::{GrpcWebMark, Protocol};

use crate::auth::rules::Denied;
use crate::auth::{Authenticator, Identity};
use crate::config::ConfigError;

/// What a forwarded call asks for, as the authorization decision sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallInfo<'a> {
    /// `pkg.Service/Method` for an RPC; for a forwarded HTTP path the RPC it mirrors when
    /// known (`flyteidl.service.AdminService/ListProjects`), else the path (`/api/v1/...`).
    pub method: &'a str,
    pub protocol: Protocol,
    /// The first (for unary: the only) request message, serialized as sent: protobuf for
    /// gRPC, gRPC-web and `application/proto`, JSON for `application/json` and REST; a gzip
    /// one inflated when bindings read it. `None` in another encoding or without a body.
    pub first_message: Option<&'a [u8]>,
}

/// The one authorization hook of forwarded calls: the `auth.authorization` rules (the
/// blanket scope rule was applied by authentication), then the per-project roles (DESIGN.md
/// §12) on the request message. The error is the refusal's text (PERMISSION_DENIED).
pub(crate) fn authorize(
    auth: &Authenticator,
    roles: Option<&crate::auth::roles::Authorizer>,
    identity: &Identity,
    call: &CallInfo<'_>,
) -> Result<(), String> {
    auth.rules
        .check(call.method, identity)
        .map_err(|d: Denied| d.to_string())?;
    let Some(roles) = roles else {
        return Ok(());
    };
    use crate::auth::roles::RequestBody;
    // Protobuf never starts with `{` (field 15, wire type "start group"): a Connect or REST
    // body that does is protojson. A message in an encoding flyteauth cannot read, or none,
    // is decided as empty (only `*` bindings pass).
    let body = match call.first_message {
        None => RequestBody::Empty,
        Some(b) if b.first() == Some(&b'{') => RequestBody::Json(b),
        Some(_) if call.protocol == Protocol::Http => RequestBody::Empty,
        Some(b) => RequestBody::Proto(b),
    };
    roles
        .decide(identity, call.method, body)
        .into_result()
        .map_err(|s| s.message().to_owned())
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An RPC of a service upstream `usize` serves.
    Rpc(usize),
    /// A path under upstream `usize`'s `httpPrefixes`.
    Http(usize),
}

/// What start-up hands the gateway.
pub struct GatewayDeps {
    pub auth: Arc<Authenticator>,
    pub keys: Arc<crate::keys::KeySet>,
    pub clock: crate::clock::SharedClock,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub issuer: String,
    pub grpc_token_header: String,
    pub http_token_header: String,
    pub use_auth: bool,
    pub disable_for_grpc: bool,
    pub disable_for_http: bool,
    pub max_request_bytes: usize,
    /// `auth.authorization.bindings` (DESIGN.md §12), decided on every forwarded call.
    pub authorizer: Option<Arc<crate::auth::roles::Authorizer>>,
}

/// The configured upstreams and everything a forwarded call needs.
pub struct Gateway {
    upstreams: Vec<forward::UpstreamClient>,
    headers: config::IdentityHeaders,
    minter: identity::IdentityMinter,
    deps: GatewayDeps,
}

impl Gateway {
    /// Builds the upstream clients (reads `caCertFile`s; connects to nothing).
    pub fn new(cfg: &GatewayConfig, deps: GatewayDeps) -> Result<Self, ConfigError> {
        let upstreams = cfg
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| forward::UpstreamClient::new(i, u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            upstreams,
            headers: cfg.identity_headers.clone(),
            minter: identity::IdentityMinter::new(
                deps.keys.clone(),
                deps.clock.clone(),
                deps.issuer.clone(),
            ),
            deps,
        })
    }

    /// The route of a request path, if the gateway takes it: `/pkg.Service/Method` of a
    /// service an upstream names (never one of [`config::OWN_SERVICES`]), else a path under
    /// an `httpPrefixes` entry.
    pub fn route(&self, path: &str) -> Option<Route> {
        if let Some(service) = rpc_service(path) {
            let own = config::OWN_SERVICES
                .iter()
                .any(|o| match o.strip_suffix('.') {
                    Some(pkg) => service.starts_with(pkg) && service[pkg.len()..].starts_with('.'),
                    None => *o == service,
                });
            if !own {
                if let Some(i) = self.upstreams.iter().position(|u| u.serves(service)) {
                    return Some(Route::Rpc(i));
                }
            }
        }
        self.upstreams
            .iter()
            .position(|u| {
                u.cfg
                    .http_prefixes
                    .iter()
                    .any(|p| path.starts_with(p.as_str()))
            })
            .map(Route::Http)
    }

    /// The upstreams' names, in configuration order.
    pub fn upstream_names(&self) -> impl Iterator<Item = &str> {
        self.upstreams.iter().map(|u| u.cfg.name.as_str())
    }
}

/// `pkg.Service` of a `/pkg.Service/Method` path.
fn rpc_service(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    (service.contains('.') && !method.is_empty() && !method.contains('/')).then_some(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_paths() {
        assert_eq!(
            rpc_service("/flyteidl.service.AdminService/ListProjects"),
            Some("flyteidl.service.AdminService")
        );
        assert_eq!(rpc_service("/api/v1/projects"), None);
        assert_eq!(rpc_service("/a.B/"), None);
        assert_eq!(rpc_service("/a.B/c/d"), None);
    }
}
