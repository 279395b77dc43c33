//! gRPC services, one file each, and the routes that serve them (auth layer around the
//! protected ones; metadata, health and reflection anonymous).

mod admin;
pub(crate) mod auth_layer;
mod auth_metadata;
mod identity;

use std::sync::Arc;

use tonic::service::{LayerExt, Routes};

use crate::pb::flyteidl::service as v1;
use crate::pb::flyteidl2::auth as v2;
use crate::transport::state::AppState;
use auth_layer::AuthLayer;

pub(crate) use admin::AdminApi;
pub(crate) use auth_metadata::AuthMetadataApi;
pub(crate) use identity::IdentityApi;

/// The public URL of the call, derived from `:authority`/Host by the transport.
#[derive(Debug, Clone)]
pub(crate) struct RequestOrigin {
    pub authority: Option<String>,
    pub scheme: &'static str,
}

/// Builds every gRPC service into one set of routes.
pub(crate) fn routes(state: &Arc<AppState>) -> Routes {
    let max = state.config.server.max_grpc_message_bytes;
    let use_auth = state.config.server.use_auth;
    let auth = AuthLayer::new(
        state.authenticator.clone(),
        state.config.auth.disable_for_grpc,
    )
    .with_drain_limit(max);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    let mut builder = Routes::builder();
    builder
        .add_service(health)
        .add_service(
            v1::auth_metadata_service_server::AuthMetadataServiceServer::new(AuthMetadataApi::new(
                state.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            v2::auth_metadata_service_server::AuthMetadataServiceServer::new(AuthMetadataApi::new(
                state.clone(),
            ))
            .max_decoding_message_size(max),
        );

    let admin = v1::admin_service_server::AdminServiceServer::new(AdminApi::new(state.clone()))
        .max_decoding_message_size(max);
    let identity_v1 =
        v1::identity_service_server::IdentityServiceServer::new(IdentityApi::new(state.clone()))
            .max_decoding_message_size(max);
    let identity_v2 =
        v2::identity_service_server::IdentityServiceServer::new(IdentityApi::new(state.clone()))
            .max_decoding_message_size(max);
    if use_auth {
        builder
            .add_service(auth.named_layer(admin))
            .add_service(auth.named_layer(identity_v1))
            .add_service(auth.named_layer(identity_v2));
    } else {
        builder
            .add_service(admin)
            .add_service(identity_v1)
            .add_service(identity_v2);
    }

    if state.config.server.reflection {
        // Both reflection versions list every service, both reflection services included.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
        };
        let v1_reflection = reflection()
            .build_v1()
            .expect("the embedded descriptor set is valid");
        let v1alpha_reflection = reflection()
            .build_v1alpha()
            .expect("the embedded descriptor set is valid");
        builder
            .add_service(v1_reflection)
            .add_service(v1alpha_reflection);
    }

    tokio::spawn(async move {
        use tonic::server::NamedService;
        for name in [
            <v1::admin_service_server::AdminServiceServer<AdminApi> as NamedService>::NAME,
            <v1::identity_service_server::IdentityServiceServer<IdentityApi> as NamedService>::NAME,
            <v1::auth_metadata_service_server::AuthMetadataServiceServer<AuthMetadataApi> as NamedService>::NAME,
            <v2::identity_service_server::IdentityServiceServer<IdentityApi> as NamedService>::NAME,
            <v2::auth_metadata_service_server::AuthMetadataServiceServer<AuthMetadataApi> as NamedService>::NAME,
        ] {
            health_reporter
                .set_service_status(name, tonic_health::ServingStatus::Serving)
                .await;
        }
    });
    builder.routes()
}

/// The caller's identity as put in place by the auth layer.
pub(crate) fn identity<T>(req: &tonic::Request<T>) -> Option<Arc<crate::auth::Identity>> {
    req.extensions()
        .get::<Arc<crate::auth::Identity>>()
        .cloned()
}
