//! The embedded identity source: users from `auth.userAuth.localUsers`, a plain HTML login
//! form with CSRF protection, per-user and per-address failure limits, and logout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use http::{header, HeaderMap, StatusCode};
use serde_json::json;

use super::pages;
use crate::config::LocalUserFile;
use crate::http::{cookies, redirect};
use crate::keys::random_token;
use crate::secret::{Secret, SecretStore};
use crate::server::PeerAddr;
use crate::state::AppState;

/// How a user's password is checked.
enum PasswordCheck {
    /// A bcrypt or argon2 PHC string from the config.
    Hash(String),
    /// A password held in a secret (generated at first start), compared in constant time.
    Plain(Secret<String>),
}

struct LocalUser {
    check: PasswordCheck,
    profile: serde_json::Value,
}

/// The configured local users.
#[derive(Default)]
pub struct LocalUsers {
    users: HashMap<String, Arc<LocalUser>>,
}

/// A bcrypt hash of random bytes, verified against when the user does not exist so that
/// unknown and known users take about the same time.
static DUMMY_BCRYPT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    bcrypt::hash(random_token(), bcrypt::DEFAULT_COST).unwrap_or_default()
});

impl LocalUsers {
    pub fn load(
        users: &[LocalUserFile],
        secrets: &SecretStore,
    ) -> Result<Self, (String, crate::secret::SecretError)> {
        let mut map = HashMap::new();
        for (i, u) in users.iter().enumerate() {
            let check = if u.password_secret_name.is_empty() {
                PasswordCheck::Hash(u.password_hash.clone())
            } else {
                let s = secrets.get_text(&u.password_secret_name).map_err(|e| {
                    (
                        format!("auth.userAuth.localUsers[{i}].passwordSecretName"),
                        e,
                    )
                })?;
                PasswordCheck::Plain(s)
            };
            let name = if u.name.is_empty() {
                u.username.clone()
            } else {
                u.name.clone()
            };
            let profile = json!({
                "subject": u.username,
                "name": name,
                "preferred_username": u.username,
                "email": u.email,
                "groups": u.groups,
            });
            map.insert(u.username.clone(), Arc::new(LocalUser { check, profile }));
        }
        Ok(Self { users: map })
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password (CPU-bound hashing runs on the blocking pool). Returns the profile.
    async fn verify(&self, username: &str, password: String) -> Option<serde_json::Value> {
        let user = self.users.get(username).cloned();
        tokio::task::spawn_blocking(move || {
            let Some(user) = user else {
                let _ = bcrypt::verify(&password, &DUMMY_BCRYPT);
                return None;
            };
            let ok = match &user.check {
                PasswordCheck::Plain(s) => s.ct_eq(password.as_bytes()),
                PasswordCheck::Hash(h) if h.starts_with("$argon2") => {
                    use argon2::password_hash::{PasswordHash, PasswordVerifier};
                    PasswordHash::new(h)
                        .map(|parsed| {
                            argon2::Argon2::default()
                                .verify_password(password.as_bytes(), &parsed)
                                .is_ok()
                        })
                        .unwrap_or(false)
                }
                PasswordCheck::Hash(h) => bcrypt::verify(&password, h).unwrap_or(false),
            };
            ok.then(|| user.profile.clone())
        })
        .await
        .ok()
        .flatten()
    }
}

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
pub async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    origin: Option<axum::Extension<crate::grpc::RequestOrigin>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let dest = match target(&state, q.get("redirect_url").map(String::as_str)) {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    match state.sessions.from_headers(&headers).await {
        Ok(Some(_)) => return redirect_to(&dest),
        Ok(None) => {}
        Err(e) => return store_unavailable(e),
    }
    if state.oidc.is_some() {
        return crate::oidc::handlers::begin(&state, origin.as_ref().map(|o| &o.0), &dest, &q);
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
pub async fn login_submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Option<axum::Extension<PeerAddr>>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::error_page("Bad request", "The login form could not be read."),
        );
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let csrf_ok = cookies::get(&headers, cookies::LOGIN_CSRF).is_some_and(|c| {
        !c.is_empty() && Secret::new(c.as_bytes()).ct_eq(field("csrf_token").as_bytes())
    });
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
    let ip: Option<IpAddr> = peer.map(|axum::Extension(PeerAddr(a))| a.ip());
    let user_key = format!("user:{username}");
    let ip_key = ip.map(|ip| format!("ip:{ip}"));
    let locked = [Some(&user_key), ip_key.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|k| state.login_limiter.locked(k, now))
        .max();
    if let Some(retry) = locked {
        tracing::info!(target: "flyteauth::audit", route = "/login", outcome = "rate_limited");
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
            retry.to_string().parse().expect("number"),
        );
        return resp;
    }
    let Some(profile) = state
        .local_users
        .verify(&username, field("password").to_owned())
        .await
    else {
        state.login_limiter.record_failure(&user_key, now);
        if let Some(k) = &ip_key {
            state.login_limiter.record_failure(k, now);
        }
        tracing::info!(target: "flyteauth::audit", route = "/login", outcome = "deny", reason = "bad_credentials");
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
    };
    state.login_limiter.record_success(&user_key);
    let (cookie_value, session) = match state.sessions.create(&username, &profile).await {
        Ok(s) => s,
        Err(e) => return store_unavailable(e),
    };
    tracing::info!(target: "flyteauth::audit", route = "/login", subject = %session.subject, outcome = "allow");
    state.metrics.inc(
        "flyteauth_logins_total",
        &[("source", "local"), ("outcome", "allow")],
    );
    let mut resp = redirect_to(&dest);
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        state.cookies.http_only(cookies::SESSION, cookie_value),
    );
    h.append(
        header::SET_COOKIE,
        state.cookies.readable(cookies::CSRF, session.csrf_token),
    );
    h.append(
        header::SET_COOKIE,
        state.cookies.removal(cookies::LOGIN_CSRF),
    );
    resp
}

/// `GET|POST /logout[?redirect_url=…]`: deletes the session and its cookies.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
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
