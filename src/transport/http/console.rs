//! The console page (DESIGN §8): a static bundle built from `console/` (`make console`),
//! committed under `console/dist/` and embedded here, so `cargo build` needs no Node.

use axum::response::{IntoResponse, Response};
use http::header;

const INDEX_HTML: &str = include_str!("../../../console/dist/index.html");
const APP_JS: &str = include_str!("../../../console/dist/app.js");

const SECURITY_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-cache"),
];

pub(crate) async fn index() -> Response {
    (
        SECURITY_HEADERS,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

pub(crate) async fn app_js() -> Response {
    (
        SECURITY_HEADERS,
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}
