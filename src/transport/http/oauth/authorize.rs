//! `/oauth2/authorize` and `/oauth2/authorize_callback` (RFC 6749 §4.1.1–4.1.2, RFC 9207):
//! the request's parameters, the user's session, then the code or the error. Errors before the
//! client and redirect URI are trusted are shown as a page (§4.1.2.1); after, they go back to
//! the client as `error=` on the redirect. A user without a session is sent to log in and
//! comes back to the same request through `/oauth2/authorize_callback`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, Method, StatusCode};
use url::Url;

use crate::authz_server::authorize::AuthorizeRefusal;
use crate::transport::grpc::RequestOrigin;
use crate::transport::http::pages;
use crate::transport::state::AppState;

/// The parameters of an authorization request, each present at most once (RFC 6749 §3.1).
fn parse_params(raw: &str) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("parameter {k} is repeated"));
        }
    }
    Ok(map)
}

fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location.to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

/// Redirect back to the client with `error` (after the redirect URI is trusted).
fn error_redirect(
    redirect_uri: &str,
    state_param: Option<&str>,
    iss: &str,
    error: &str,
    description: &str,
) -> Response {
    let mut url = Url::parse(redirect_uri).expect("validated redirect uri");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", error)
            .append_pair("error_description", description);
        if let Some(s) = state_param {
            q.append_pair("state", s);
        }
        q.append_pair("iss", iss);
    }
    see_other(url.as_str())
}

/// `GET|POST /oauth2/authorize`.
pub(crate) async fn authorize(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    origin: Option<axum::Extension<RequestOrigin>>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    handle(state, method, headers, origin, query, body).await
}

/// `GET /oauth2/authorize_callback`: the same request, replayed after login.
pub(crate) async fn authorize_callback(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    origin: Option<axum::Extension<RequestOrigin>>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    handle(state, method, headers, origin, query, body).await
}

async fn handle(
    state: Arc<AppState>,
    method: Method,
    headers: HeaderMap,
    origin: Option<axum::Extension<RequestOrigin>>,
    query: Option<String>,
    body: axum::body::Bytes,
) -> Response {
    let raw = if method == Method::POST {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        query.unwrap_or_default()
    };
    let params = match parse_params(&raw) {
        Ok(p) => p,
        Err(e) => {
            return pages::error_response(
                StatusCode::BAD_REQUEST,
                "Invalid authorization request",
                &e,
            )
        }
    };
    let public = super::public_url(&state, origin.as_ref().map(|o| &o.0));
    let iss = state.authz.issuer(&public);

    let v = match state.authz.validate_authorization(&params) {
        Ok(v) => v,
        Err(AuthorizeRefusal::Page { title, message }) => {
            return pages::error_response(StatusCode::BAD_REQUEST, title, message)
        }
        Err(AuthorizeRefusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        }) => return error_redirect(&redirect_uri, state.as_deref(), &iss, error, &description),
    };

    let session = match state.sessions.of_request(&headers).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "session store unavailable");
            return pages::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Try again shortly.",
            );
        }
    };
    let Some(session) = session else {
        // Log in, then come back to the same request.
        let back = format!("/oauth2/authorize_callback?{}", encode(&params));
        let login = format!(
            "/login?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("redirect_url", &back)
                .finish()
        );
        return see_other(&login);
    };

    let code = match state
        .authz
        .issue_code(&v, &session.subject, &session.profile)
        .await
    {
        Ok(code) => code,
        Err(_) => {
            return error_redirect(
                &v.redirect_uri,
                v.state.as_deref(),
                &iss,
                "temporarily_unavailable",
                "try again shortly",
            )
        }
    };
    let mut url = Url::parse(&v.redirect_uri).expect("validated redirect uri");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(s) = &v.state {
            q.append_pair("state", s);
        }
        q.append_pair("scope", &v.scopes.join(" "));
        // RFC 9207: tell the client who issued the code.
        q.append_pair("iss", &iss);
    }
    see_other(url.as_str())
}

fn encode(params: &HashMap<String, String>) -> String {
    let mut keys: Vec<_> = params.keys().collect();
    keys.sort();
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for k in keys {
        s.append_pair(k, &params[k]);
    }
    s.finish()
}
