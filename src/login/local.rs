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
use crate::keys::random_token;
use crate::secret::{Secret, SecretStore};
use crate::transport::client_addr::ClientAddr;
use crate::transport::http::{cookies, redirect};
use crate::transport::state::AppState;

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
    /// What an unknown user's password is checked against (§14: no user enumeration by
    /// timing): a hash of random bytes with the algorithm and cost of the configured hashes,
    /// or a random secret when every user's password is a plain secret. A plain-secret user
    /// among hashed ones checks against it too, so every attempt costs one hash.
    dummy: Option<Arc<PasswordCheck>>,
}

/// The label of a check: `(scheme, cost)`.
fn scheme_of(check: &PasswordCheck) -> (&'static str, String) {
    match check {
        PasswordCheck::Plain(_) => ("plain", "0".into()),
        PasswordCheck::Hash(h) if h.starts_with("$argon2") => (
            "argon2",
            argon2::password_hash::PasswordHash::new(h)
                .map(|p| p.params.to_string())
                .unwrap_or_default(),
        ),
        PasswordCheck::Hash(h) => ("bcrypt", h.split('$').nth(2).unwrap_or("").to_owned()),
    }
}

/// A hash of random bytes like `like` (same algorithm and parameters), or `None` if `like`
/// cannot be read (then it never verifies anyway).
fn dummy_hash_like(like: &str) -> Option<String> {
    let random = random_token();
    if like.starts_with("$argon2") {
        use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
        let parsed = PasswordHash::new(like).ok()?;
        let params = argon2::Params::try_from(&parsed).ok()?;
        let salt = SaltString::encode_b64(&random.as_bytes()[..16]).ok()?;
        let h = argon2::Argon2::default()
            .hash_password_customized(
                random.as_bytes(),
                Some(parsed.algorithm),
                parsed.version,
                params,
                salt.as_salt(),
            )
            .ok()?;
        return Some(h.to_string());
    }
    let cost: u32 = like.split('$').nth(2)?.parse().ok()?;
    bcrypt::hash(random, cost).ok()
}

/// Checks `password` against `check` (CPU-bound: call on the blocking pool).
fn check_password(check: &PasswordCheck, password: &str) -> bool {
    match check {
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
        PasswordCheck::Hash(h) => bcrypt::verify(password, h).unwrap_or(false),
    }
}

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
        let first_hash = users
            .iter()
            .find(|u| u.password_secret_name.is_empty() && !u.password_hash.is_empty())
            .map(|u| u.password_hash.as_str());
        let dummy = match first_hash {
            Some(h) => dummy_hash_like(h).map(PasswordCheck::Hash),
            None if !map.is_empty() => Some(PasswordCheck::Plain(Secret::new(random_token()))),
            None => None,
        };
        Ok(Self {
            users: map,
            dummy: dummy.map(Arc::new),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password (CPU-bound hashing runs on the blocking pool). Returns the profile,
    /// and the scheme and cost of the costliest check it performed (for
    /// `flyteauth_password_checks_total`: an unknown user costs what a known one does).
    async fn verify(
        &self,
        username: &str,
        password: String,
    ) -> (Option<serde_json::Value>, (&'static str, String)) {
        let user = self.users.get(username).cloned();
        let dummy = self.dummy.clone();
        tokio::task::spawn_blocking(move || {
            let Some(user) = user else {
                return match dummy {
                    Some(d) => {
                        let _ = check_password(&d, &password);
                        (None, scheme_of(&d))
                    }
                    None => (None, ("none", "0".into())),
                };
            };
            let ok = check_password(&user.check, &password);
            let mut scheme = scheme_of(&user.check);
            if let (PasswordCheck::Plain(_), Some(d)) = (&user.check, &dummy) {
                if matches!(**d, PasswordCheck::Hash(_)) {
                    let _ = check_password(d, &password);
                    scheme = scheme_of(d);
                }
            }
            (ok.then(|| user.profile.clone()), scheme)
        })
        .await
        .unwrap_or((None, ("none", "0".into())))
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
    origin: Option<axum::Extension<crate::transport::grpc::RequestOrigin>>,
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
        }) && crate::transport::http::fetch_site::site(
            &state,
            &headers,
            origin.as_ref().map(|o| &o.0),
        ) != crate::transport::http::fetch_site::Site::Cross;
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
    // §4, §14: a user is limited per address (wrong passwords from one address never lock
    // the user out at another), and an address over all users. The attempt is counted before
    // the password is checked, so a concurrent burst cannot exceed the limit.
    let ip_text = ip.map(|i| i.to_string()).unwrap_or_default();
    let user_key = format!("user:{username}@{ip_text}");
    let keys: Vec<String> = std::iter::once(user_key.clone())
        .chain(ip.map(|ip| format!("ip:{ip}")))
        .collect();
    if let Err(retry) = state.login_limiter.attempt(&keys, now).await {
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
            retry.to_string().parse().expect("number"),
        );
        return resp;
    }
    let (profile, (scheme, cost)) = state
        .local_users
        .verify(&username, field("password").to_owned())
        .await;
    state.metrics.inc(
        "flyteauth_password_checks_total",
        &[("scheme", scheme), ("cost", &cost)],
    );
    let Some(profile) = profile else {
        // The failure was counted by `begin_all`.
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
    };
    state.login_limiter.forget(&user_key).await;
    for k in &keys[1..] {
        state.login_limiter.give_back(k).await;
    }
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

/// `GET|POST /logout[?redirect_url=…]`: deletes the session and its cookies. A request from
/// another site (§14: `Sec-Fetch-Site: cross-site`, or a foreign `Origin` / `Referer`) that
/// does not carry the session's CSRF token (form field `csrf_token` or header
/// `x-csrf-token`) changes nothing: it gets a confirmation page whose POST form carries it.
pub async fn logout(
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
    let site =
        crate::transport::http::fetch_site::site(&state, &headers, origin.as_ref().map(|o| &o.0));
    if site == crate::transport::http::fetch_site::Site::Cross {
        let session = match state.sessions.from_headers(&headers).await {
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
            let token_ok = !presented.is_empty()
                && Secret::new(session.csrf_token.as_bytes()).ct_eq(presented.as_bytes());
            if !token_ok {
                tracing::info!(target: "flyteauth::audit", route = "/logout", outcome = "confirm", reason = "cross_site");
                return html(
                    StatusCode::OK,
                    pages::logout_confirm(&session.csrf_token, dest.as_deref().unwrap_or("")),
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
