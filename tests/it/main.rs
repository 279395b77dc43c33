//! One integration-test crate (one link step): the server started in-process on
//! 127.0.0.1:0 and driven by generated tonic clients and reqwest.

mod support;

mod authz;
mod cli;
mod config_parity;
mod connect;
mod device;
mod docs;
mod exchange;
mod external;
mod flyte_config;
mod gateway;
mod grpc_auth;
mod hostile;
mod oidc;
mod projects;
mod rest;
mod roles;
mod tls;
