//! Transports: how requests reach the domain services. The one-port listener ([`server`]) with
//! its connection limits, the gRPC services ([`grpc`]), the HTTP side for browsers and OAuth
//! clients ([`http`]), the Connect protocol ([`connect`]) and the gateway to Flyte's upstreams
//! ([`gateway`]). Nothing below this layer imports from it.

pub(crate) mod background;
pub(crate) mod client_addr;
pub(crate) mod conn_limits;
pub(crate) mod connect;
pub(crate) mod cors;
pub(crate) mod drain;
pub(crate) mod gateway;
pub(crate) mod grpc;
pub(crate) mod gzip;
pub(crate) mod http;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod store_errors;
pub(crate) mod tls;
