//! Transports: how requests reach the domain services. The one-port listener ([`server`]) with
//! its connection limits, the gRPC services ([`grpc`]), the HTTP side for browsers and OAuth
//! clients ([`http`]), the Connect protocol ([`connect`]) and the gateway to Flyte's upstreams
//! ([`gateway`]). Nothing below this layer imports from it.

pub mod background;
pub mod client_addr;
pub mod conn_limits;
pub mod connect;
pub mod cors;
pub mod drain;
pub mod gateway;
pub mod grpc;
pub mod gzip;
pub mod http;
pub mod server;
pub mod state;
pub mod store_errors;
pub mod tls;
