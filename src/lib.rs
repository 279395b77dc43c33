//! flyteauth: the authentication and authorization layer of Flyte's control plane.
//!
//! # Layout
//!
//! | module | responsibility |
//! |---|---|
//! | [`config`] | the YAML file (Flyte's shapes) → validated [`config::Config`] |
//! | [`config::files`] | several files / folders merged as Flyte does; other components' keys triaged |
//! | [`secret`] | `Secret<T>` that cannot print; Flyte's secret lookup (env, then files) |
//! | [`keys`] | signing keys, JWKS, key generation (`secret init`) |
//! | [`clock`] | time as a parameter |
//! | [`auth`] | resource server: token extraction, JWT verification, the tower auth layer |
//! | [`authz_server`] | the built-in OAuth2 AS: authorize, token, clients, minting, token exchange |
//! | [`login`] | identity sources: the local-users login form, logout, HTML pages |
//! | [`external`] | `authServerType: External`: proxied metadata, remote JWKS |
//! | [`oidc`] | relying party: browser login at an external OpenID Connect IdP |
//! | [`sealed`] | AES-GCM with the cookie block key (pending logins, IdP refresh tokens) |
//! | [`session`] | server-side browser sessions (cookie holds only a random id) |
//! | [`ratelimit`] | failure counting for login |
//! | [`client_addr`] | the client's address behind `server.trustedProxies` |
//! | [`conn_limits`] | connection caps and deadlines (DESIGN.md §14) |
//! | [`grpc`] | one file per gRPC service (AuthMetadata, Identity, Admin projects) |
//! | [`connect`] | the Connect protocol (unary) on the own services, translated to gRPC calls |
//! | [`drain`] | reading a request body up to a limit, draining the rest before a refusal |
//! | [`http`] | HTTP routes: metadata documents, JWKS, REST mirrors, `/me`, health |
//! | [`projects`] | project/domain semantics shared by gRPC and REST |
//! | [`metrics`] | Prometheus counters and latency histograms (`/metrics`) |
//! | [`metadata`] | RFC 8414 metadata and Flyte's public client config |
//! | [`store`] | persistent state behind one trait: SQLite and PostgreSQL |
//! | [`state`] | start-up: config → secrets, keys, store, verifier ([`state::AppState`]) |
//! | [`gateway`] | forwarding to Flyte's upstreams: routing by service, identity headers |
//! | [`server`] | the one-port listener (gRPC, gRPC-web, HTTP; TLS) and graceful shutdown |
//! | [`cli`] | the `flyteauth` command line |
//!
//! The path of a protected gRPC call: [`server`] accepts the connection and routes by
//! content-type → tonic-web (for gRPC-web) → the service's [`transport::grpc::auth_layer::AuthLayer`]
//! (token → [`auth::Identity`] in the request extensions, or UNAUTHENTICATED) → the handler in
//! [`grpc`] → [`projects`] → [`store`].

#![warn(unreachable_pub)]

pub mod app;
pub mod auth;
pub mod authz_server;
pub mod cli;
pub mod clock;
pub mod config;
pub(crate) mod external;
pub mod keys;
pub(crate) mod login;
pub(crate) mod metadata;
pub(crate) mod metrics;
pub(crate) mod oidc;
pub mod pb;
pub(crate) mod projects;
pub mod public_url;
pub(crate) mod ratelimit;
pub mod sealed;
pub(crate) mod secret;
pub(crate) mod session;

pub mod store;
pub mod transport;
