//! `/login` and `/logout`: the local-users login form with its CSRF cookie, the OIDC
//! branch (`transport/http/oidc.rs`), and logout. The sign-in decision is
//! [`crate::login::local::LocalLogin`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use http::{header, HeaderMap, StatusCode};

use super::{cookies, pages, redirect};
use crate::keys::random_token;
use crate::login::local::{LocalLogin, SignInError};
use crate::secret::Secret;
use crate::transport::client_addr::ClientAddr;
use crate::transport::state::AppState;

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn redirect_to(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}

/// The end-of-login target: a validated `redirect_url`, else `userAuth.redirectUrl`.
fn target(state: &AppState, requested: Option<&str>) -> Result<String, Response> {
    match requested.filter(|r| !r.is_empty()) {
        None => Ok(state.config.user_auth.redirect_url.clone()),
        Some(r) => redirect::validate(r, &state.public_urls).ok_or_else(|| {
            html(
                StatusCode::BAD_REQUEST,
                pages::error_page(
                    "Redirect not allowed",
                    "The redirect_url is not a path on this server or an authorized origin.",
                ),
            )
        }),
    }
}

/// Renders the form; a re-render after a failed attempt keeps the form's CSRF token.
fn show_form(
    state: &AppState,
    status: StatusCode,
    redirect_url: &str,
    error: Option<&str>,
    username: &str,
    existing_csrf: Option<&str>,
) -> Response {
    let csrf = existing_csrf.map(String::from).unwrap_or_else(random_token);
    let mut resp = html(
        status,
        pages::login_form(&csrf, redirect_url, error, username),
    );
    if existing_csrf.is_none() {
        resp.headers_mut().append(
            header::SET_COOKIE,
            state.cookies.http_only(cookies::LOGIN_CSRF, csrf),
        );
    }
    resp
}

/// `GET /login[?redirect_url=…]`: straight on when a session exists; else the IdP (when
/// `openId` is configured) or the local-users form.
pub(crate) async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    origin: Option<axum::Extension<crate::transport::grpc::RequestOrigin>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let dest = match target(&state, q.get("redirect_url").map(String::as_str)) {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    match state.sessions.of_request(&headers).await {
        Ok(Some(_)) => return redirect_to(&dest),
        Ok(None) => {}
        Err(e) => return store_unavailable(e),
    }
    if state.oidc.is_some() {
        return super::oidc::begin(&state, origin.as_ref().map(|o| &o.0), &dest, &q);
    }
    if state.local_users.is_empty() {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::error_page(
                "Sign-in unavailable",
                "No identity source is configured (auth.userAuth.localUsers).",
            ),
        );
    }
    show_form(&state, StatusCode::OK, &dest, None, "", None)
}

fn store_unavailable(e: crate::store::StoreError) -> Response {
    tracing::warn!(error = %e, "session store unavailable");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::error_page(
            "Temporarily unavailable",
            "The session store cannot be reached; try again shortly.",
        ),
    )
}

/// `POST /login`: checks CSRF, limits, credentials; creates the session.
pub(crate) async fn login_submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    origin: Option<axum::Extension<crate::transport::grpc::RequestOrigin>>,
    peer: Option<axum::Extension<ClientAddr>>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => {
            let (status, page) = pages::unreadable_form(&e);
            return html(status, page);
        }
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    // Login CSRF (§14): the form's token must equal its cookie (`__Host-` over TLS, so no
    // other host can plant it), and a browser that says the form came from another site is
    // refused even with a matching pair.
    let csrf_ok =
        cookies::get(&headers, state.cookies.name(cookies::LOGIN_CSRF)).is_some_and(|c| {
            !c.is_empty() && Secret::new(c.as_bytes()).ct_eq(field("csrf_token").as_bytes())
        }) && super::fetch_site::site(&state, &headers, origin.as_ref().map(|o| &o.0))
            != super::fetch_site::Site::Cross;
    if !csrf_ok {
        return html(
            StatusCode::FORBIDDEN,
            pages::error_page("Form expired", "The sign-in form was not submitted from this site or has expired. Reload the page and try again."),
        );
    }
    let dest = match target(&state, Some(field("redirect_url"))) {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let username = field("username").trim().to_owned();
    let now = state.clock.now();
    let ip: Option<IpAddr> = peer.map(|axum::Extension(ClientAddr(a))| a);
    let ip_text = ip.map(|i| i.to_string()).unwrap_or_default();
    let login = LocalLogin {
        users: &state.local_users,
        limiter: &state.login_limiter,
        sessions: &state.sessions,
        metrics: &state.metrics,
    };
    let signed_in = login
        .sign_in(
            &username,
            Secret::new(field("password").to_owned()),
            ip,
            now,
        )
        .await;
    let (cookie_value, session) = match signed_in {
        Ok(s) => s,
        Err(SignInError::RateLimited { retry_after }) => {
            tracing::info!(target: "flyteauth::audit", route = "/login", outcome = "rate_limited", peer = %ip_text);
            state.metrics.inc(
                "flyteauth_logins_total",
                &[("source", "local"), ("outcome", "rate_limited")],
            );
            let mut resp = html(
                StatusCode::TOO_MANY_REQUESTS,
                pages::error_page(
                    "Too many attempts",
                    "Too many failed sign-in attempts. Try again later.",
                ),
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                retry_after.to_string().parse().expect("number"),
            );
            return resp;
        }
        Err(SignInError::BadCredentials) => {
            tracing::info!(target: "flyteauth::audit", route = "/login", outcome = "deny", reason = "bad_credentials", peer = %ip_text);
            state.metrics.inc(
                "flyteauth_logins_total",
                &[("source", "local"), ("outcome", "deny")],
            );
            return show_form(
                &state,
                StatusCode::UNAUTHORIZED,
                &dest,
                Some("Invalid username or password."),
                &username,
                Some(field("csrf_token")),
            );
        }
        Err(SignInError::Store(e)) => return store_unavailable(e),
    };
    tracing::info!(target: "flyteauth::audit", route = "/login", subject = %session.subject, outcome = "allow");
    state.metrics.inc(
        "flyteauth_logins_total",
        &[("source", "local"), ("outcome", "allow")],
    );
    let mut resp = redirect_to(&dest);
    let h = resp.headers_mut();
    state
        .cookies
        .start_session(h, &cookie_value, &session.csrf_token);
    h.append(
        header::SET_COOKIE,
        state.cookies.removal(cookies::LOGIN_CSRF),
    );
    resp
}

/// `GET|POST /logout[?redirect_url=…]`: deletes the session and its cookies. A request from
/// another site (§14: `Sec-Fetch-Site: cross-site`, or a foreign `Origin` / `Referer`) that
/// does not carry the session's CSRF token (form field `csrf_token` or header
/// `x-csrf-token`) changes nothing: it gets a confirmation page whose POST form carries it.
pub(crate) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    origin: Option<axum::Extension<crate::transport::grpc::RequestOrigin>>,
    Query(q): Query<HashMap<String, String>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let dest =
        match q.get("redirect_url").filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => match redirect::validate(r, &state.public_urls) {
                Some(d) => Some(d),
                None => return html(
                    StatusCode::BAD_REQUEST,
                    pages::error_page(
                        "Redirect not allowed",
                        "The redirect_url is not a path on this server or an authorized origin.",
                    ),
                ),
            },
        };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return html(
                StatusCode::PAYLOAD_TOO_LARGE,
                pages::error_page(
                    "Request too large",
                    "The form is larger than this server accepts.",
                ),
            )
        }
        Err(_) => axum::body::Bytes::new(),
    };
    let site = super::fetch_site::site(&state, &headers, origin.as_ref().map(|o| &o.0));
    if site == super::fetch_site::Site::Cross {
        let session = match state.sessions.of_request(&headers).await {
            Ok(s) => s,
            Err(e) => return store_unavailable(e),
        };
        if let Some(session) = session {
            let presented = url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "csrf_token")
                .map(|(_, v)| v.into_owned())
                .or_else(|| {
                    headers
                        .get("x-csrf-token")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from)
                })
                .unwrap_or_default();
            let token_ok = !presented.is_empty() && session.csrf_token.ct_eq(presented.as_bytes());
            if !token_ok {
                tracing::info!(target: "flyteauth::audit", route = "/logout", outcome = "confirm", reason = "cross_site");
                return html(
                    StatusCode::OK,
                    pages::logout_confirm(
                        session.csrf_token.expose(),
                        dest.as_deref().unwrap_or(""),
                    ),
                );
            }
        }
    }
    if let Err(e) = state.sessions.end(&headers).await {
        return store_unavailable(e);
    }
    // RP-initiated logout: when the IdP advertises `end_session_endpoint`, offer it.
    let idp_logout = state
        .oidc
        .as_ref()
        .and_then(|o| o.discovered())
        .and_then(|d| d.end_session_endpoint.clone());
    let mut resp = match (dest, idp_logout) {
        (Some(d), _) => redirect_to(&d),
        (None, Some(end)) => html(
            StatusCode::OK,
            pages::info_page(
                "Signed out",
                "You are signed out of Flyte. You may still be signed in at your identity provider.",
                Some((end.as_str(), "Sign out at the identity provider too")),
            ),
        ),
        (None, None) => html(
            StatusCode::OK,
            pages::info_page(
                "Signed out",
                "You are signed out.",
                Some(("/login", "Sign in again")),
            ),
        ),
    };
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, state.cookies.removal(cookies::SESSION));
    h.append(header::SET_COOKIE, state.cookies.removal(cookies::CSRF));
    resp
}
