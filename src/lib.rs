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
//! Every module is `pub(crate)` and `unreachable_pub` is on: the compiler reports what no
//! production code uses. Outside the crate only [`cli`], the generated [`pb`] and the
//! [`testing`] re-exports are visible.
//!
//! The path of a protected gRPC call: `transport::server` accepts the connection and routes by
//! content-type → tonic-web (for gRPC-web) → the service's
//! [`transport::grpc::auth_layer::AuthLayer`] (the one decision of [`auth::Authenticator`]:
//! token → [`auth::Identity`] in the request extensions, or UNAUTHENTICATED) → the handler in
//! `transport::grpc` → `projects` → [`store`].

#![warn(unreachable_pub)]

pub(crate) mod app;
pub(crate) mod auth;
pub(crate) mod authz_server;
pub mod cli;
pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod external;
pub(crate) mod keys;
pub(crate) mod login;
pub(crate) mod metadata;
pub(crate) mod metrics;
pub(crate) mod oidc;
pub mod pb;
pub(crate) mod projects;
pub(crate) mod public_url;
pub(crate) mod ratelimit;
pub(crate) mod sealed;
pub(crate) mod secret;
pub(crate) mod session;
pub(crate) mod store;
pub(crate) mod transport;

/// What the integration tests (`tests/it`), the micro-benchmarks (`bench/micro`), the fuzz
/// targets (`fuzz/`) and the examples drive directly: a server started in-process with its
/// clock and keys, the token verifier and the roles engine, and the parsers the fuzz targets
/// feed. Not an API (nothing else is public but [`cli`] and the generated protobuf, [`pb`]);
/// every other item is `pub(crate)`, so the compiler reports what production code no longer
/// uses.
#[doc(hidden)]
pub mod testing {
    pub use crate::app::StartOptions;
    pub use crate::auth::keysource::KeySource;
    pub use crate::auth::roles::config::{compile, BindingFile};
    pub use crate::auth::roles::{Authorizer, RequestBody, Table};
    pub use crate::auth::verifier::DEFAULT_LEEWAY_SECS;
    pub use crate::auth::{bearer_token, Credential, Identity, UserInfo};
    pub use crate::auth::{TokenVerifier, VerifierSettings};
    pub use crate::authz_server::authorize::is_pkce_value;
    pub use crate::authz_server::clients::Client;
    pub use crate::authz_server::device::normalise_user_code;
    pub use crate::clock::{Clock, ManualClock, SharedClock, SystemClock};
    pub use crate::config::DatabaseTarget;
    pub use crate::config::{parse_duration, parse_file, AuthServerType, Config};
    pub use crate::keys::{generate_pem, generate_rsa_pem, public_key_from_jwk};
    pub use crate::keys::{random_bytes, random_token, SigningAlg, SigningKey};
    pub use crate::public_url::PublicUrls;
    pub use crate::sealed::Sealer;
    pub use crate::store::filters::{parse_filters, FilterOp, FilterValue};
    pub use crate::store::ProjectRecord;
    pub use crate::transport::http::oauth::form::read_form;
    pub use crate::transport::http::pages::escape;
    pub use crate::transport::http::{cookies, redirect};
    pub use crate::transport::server::{run, Listeners};
    pub use crate::transport::state::AppState;
}
