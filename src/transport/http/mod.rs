//! The HTTP side of the one port: metadata documents, JWKS, the REST mirrors, health.
//! (gRPC and gRPC-web requests are routed away before they reach this router.)

pub(crate) mod console;
pub mod cookies;
pub(crate) mod error;
pub(crate) mod fetch_site;
pub(crate) mod login;
pub(crate) mod oauth;
pub(crate) mod oidc;
pub(crate) mod pages;
pub mod redirect;
pub(crate) mod rest;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header;

use crate::transport::state::AppState;
use oauth::metadata::{flyte_client, jwks, oauth_metadata};
use oauth::{authorize, device, revoke, token};

/// The router of the `metrics.port` listener: `/metrics` and `/healthcheck`.
pub(crate) fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthcheck", get(healthcheck))
        .with_state(state)
}

/// Builds the HTTP router.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let max = state.config.server.max_request_bytes;
    let mut router = Router::new().route("/healthcheck", get(healthcheck));
    // With `metrics.port`, `/metrics` is served on that listener only (§14).
    if state.config.server.metrics_port.is_none() {
        router = router.route("/metrics", get(metrics));
    }
    let mut router = router
        .route("/console", get(console::index))
        .route("/console/", get(console::index))
        .route("/console/app.js", get(console::app_js))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth_metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(oidc::openid_configuration),
        )
        .route("/config/v1/flyte_client", get(flyte_client))
        .route("/me", get(rest::me))
        .route(
            "/api/v1/projects",
            get(rest::list_projects).post(rest::register_project),
        )
        .route(
            "/api/v1/projects/{id}",
            get(rest::get_project).put(rest::update_project),
        )
        .route("/api/v1/domains", get(rest::get_domains))
        .route("/login", get(login::login_page).post(login::login_submit))
        .route("/logout", get(login::logout).post(login::logout))
        .route("/callback", get(oidc::callback).post(oidc::callback));
    // The built-in authorization server's endpoints exist only in Self mode.
    if state.external.is_none() {
        router = router
            .route("/oauth2/jwks", get(jwks))
            .route(
                "/oauth2/authorize",
                get(authorize::authorize).post(authorize::authorize),
            )
            .route(
                "/oauth2/authorize_callback",
                get(authorize::authorize_callback).post(authorize::authorize_callback),
            )
            .route("/oauth2/token", post(token::token))
            .route("/oauth2/revoke", post(revoke::revoke))
            .route(
                "/oauth2/device_authorization",
                post(device::device_authorization),
            )
            .route(
                "/oauth2/device",
                get(device::device_page).post(device::device_submit),
            )
            .route("/oauth2/introspect", post(revoke::introspect));
    }
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max))
        .layer(axum::middleware::map_response(protective_headers))
        .layer(axum::middleware::from_fn(close_if_body_unread))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let verifier = &state.authenticator.verifier;
    let (hits, misses) = verifier.cache().stats();
    let mut gauges = vec![
        (
            "flyteauth_token_cache_entries",
            "verified tokens cached",
            verifier.cache().len() as f64,
        ),
        (
            "flyteauth_token_cache_hits",
            "token cache hits since start",
            hits as f64,
        ),
        (
            "flyteauth_token_cache_misses",
            "token cache misses since start",
            misses as f64,
        ),
        (
            "flyteauth_revoked_tokens",
            "access tokens on the revocation list",
            verifier.revocations().len() as f64,
        ),
    ];
    if let Some(jwks) = verifier.remote_jwks() {
        gauges.push((
            "flyteauth_jwks_fetches",
            "remote JWKS fetches since start",
            jwks.fetch_count() as f64,
        ));
    }
    let up = if state.store.ping().await.is_ok() {
        1.0
    } else {
        0.0
    };
    gauges.push(("flyteauth_store_up", "1 when the database answers", up));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    )
        .into_response()
}

/// No page of flyteauth may be framed (clickjacking of the login, consent and device pages),
/// and no response is content-sniffed.
async fn protective_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(http::HeaderValue::from_static("DENY"));
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(http::HeaderValue::from_static("nosniff"));
    resp
}

/// An HTTP/1.1 request refused before its body was read (401, 413, …) leaves that body on the
/// connection: hyper then closes it after the response, and a client reusing the keep-alive
/// connection would find it gone. Saying `Connection: close` makes clients open a new one.
async fn close_if_body_unread(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let h1 = req.version() <= http::Version::HTTP_11;
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut resp = next.run(req).await;
    if h1 && has_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp
}

async fn healthcheck() -> &'static str {
    ""
}

async fn not_found() -> Response {
    (
        http::StatusCode::NOT_FOUND,
        Json(serde_json::json!({"code": 5, "message": "not found", "details": []})),
    )
        .into_response()
}
