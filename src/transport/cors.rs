//! CORS for browser callers from the allowed origins (`server.allowCors`).

use std::time::Duration;

use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::transport::state::AppState;

pub(crate) fn cors_layer(state: &AppState) -> Option<CorsLayer> {
    let s = &state.config.server;
    if !s.allow_cors || (s.allowed_origins.is_empty() && !s.allow_any_origin) {
        return None;
    }
    let origins: Vec<http::HeaderValue> = s
        .allowed_origins
        .iter()
        .filter_map(|o| o.trim_end_matches('/').parse().ok())
        .collect();
    // `allowedOrigins: ["*"]`: every origin gets CORS (Flyte's default), but credentials only
    // the origins the cookie is honoured from (listed ones and the public URLs).
    let (allow_origin, allow_credentials) = if s.allow_any_origin {
        let credentialed: Vec<String> = state.authenticator.allowed_origins.clone();
        (
            AllowOrigin::mirror_request(),
            tower_http::cors::AllowCredentials::predicate(move |origin, _| {
                origin
                    .to_str()
                    .is_ok_and(|o| credentialed.iter().any(|c| c == o.trim_end_matches('/')))
            }),
        )
    } else {
        (
            AllowOrigin::list(origins),
            tower_http::cors::AllowCredentials::yes(),
        )
    };
    let mut headers: Vec<http::HeaderName> = s
        .allowed_headers
        .iter()
        .filter_map(|h| h.to_ascii_lowercase().parse().ok())
        .collect();
    for h in [
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "x-csrf-token",
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
    ] {
        headers.push(http::HeaderName::from_static(h));
    }
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_credentials(allow_credentials)
            .allow_methods([
                http::Method::GET,
                http::Method::POST,
                http::Method::PUT,
                http::Method::DELETE,
                http::Method::OPTIONS,
            ])
            .allow_headers(headers)
            .expose_headers([
                http::HeaderName::from_static("grpc-status"),
                http::HeaderName::from_static("grpc-message"),
                http::HeaderName::from_static("grpc-status-details-bin"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
