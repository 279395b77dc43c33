//! flyteauth: the authentication and authorization layer of Flyte's control plane.
//!
//! # Layout
//!
//! Six layers, top to bottom. A module imports its own layer or the ones under it, never one
//! above, and no two files import each other in a circle (`scripts/check_layers.py`, run by
//! `make lint`). docs/ARCHITECTURE.md follows requests through them.
//!
//! | layer | module | responsibility |
//! |---|---|---|
//! | command line | [`cli`] | the `flyteauth` command line, signals, exit codes |
//! | composition | [`app`] | config → secrets, keys, store, services → `AppState` → listeners |
//! | transports | [`transport`] | the one port: gRPC (`grpc`, its auth layer), gRPC-web, Connect (`connect`), HTTP and the browser (`http`, `http::oauth`), the gateway (`gateway`); TLS, CORS, connection limits, body draining; `AppState` lives here only |
//! | domain services | [`auth`] | one authentication decision (token or session → [`auth::Identity`]), JWT verification, roles |
//! | | [`authz_server`] | the built-in OAuth2 AS: one method per grant, taking its store, keys and clock |
//! | | `login`, `oidc`, `session`, `ratelimit` | local users, the IdP relying party, server-side sessions, failure limits |
//! | | `projects`, `metadata`, `external` | project/domain rules; RFC 8414 documents; `authServerType: External` |
//! | store | [`store`] | persistent state behind one trait: `sqlite/`, `postgres/`; one deadline helper |
//! | core | [`config`] | YAML files (Flyte's shapes) → one validation → typed [`config::Config`] |
//! | | [`keys`], [`clock`], `secret`, [`sealed`], `metrics`, [`public_url`], [`pb`] | signing keys and randomness, time as a parameter, values that cannot print, AES-GCM, Prometheus, public URLs, generated protobuf |
//!
//! The path of a protected gRPC call: `transport::server` accepts the connection and routes by
//! content-type → tonic-web (for gRPC-web) → the service's
//! [`transport::grpc::auth_layer::AuthLayer`] (the one decision of [`auth::Authenticator`]:
//! token → [`auth::Identity`] in the request extensions, or UNAUTHENTICATED) → the handler in
//! `transport::grpc` → `projects` → [`store`].

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
