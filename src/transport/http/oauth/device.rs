//! The device flow's HTTP side (RFC 8628): `POST /oauth2/device_authorization` (§3.1–3.2)
//! and the user-code page at `/oauth2/device` (a signed-in user enters the code and confirms;
//! plain HTML forms, no JavaScript). The polling grant is at the token endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::form::{authenticate_client, read_form, Body};
use super::{json_no_store, public_url};
use crate::authz_server::device::{
    display, normalise_user_code, DeviceAuthorization, DeviceDecision,
};
use crate::authz_server::error::OAuthError;
use crate::store::StoreError;
use crate::transport::grpc::RequestOrigin;
use crate::transport::http::pages::{self, escape};
use crate::transport::state::AppState;

/// `POST /oauth2/device_authorization` (§3.1).
pub(crate) async fn device_authorization(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    origin: Option<axum::Extension<RequestOrigin>>,
    body: Body,
) -> Response {
    let public = public_url(&state, origin.as_ref().map(|o| &o.0));
    match start(&state, &headers, &public, body).await {
        Ok(v) => json_no_store(v),
        Err(e) => e.into_response(),
    }
}

async fn start(
    state: &AppState,
    headers: &HeaderMap,
    public: &str,
    body: Body,
) -> Result<DeviceAuthorization, OAuthError> {
    let form = read_form(headers, body)?;
    let client = authenticate_client(state, headers, &form).await?;
    state
        .authz
        .device_authorization(public, client, form.get("scope").map(String::as_str))
        .await
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn enter_code_page(csrf: &str, prefill: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    pages::raw_page(
        "Connect a device",
        &format!(
            r#"{error}<p>Enter the code shown on your device.</p>
<form method="post" action="/oauth2/device">
<input type="hidden" name="csrf_token" value="{csrf}">
<label for="user_code">Code</label><input id="user_code" name="user_code" value="{code}" autocomplete="off" autocapitalize="characters" required autofocus>
<button type="submit">Continue</button>
</form>"#,
            csrf = escape(csrf),
            code = escape(prefill),
        ),
    )
}

fn confirm_page(csrf: &str, code: &str, client: &str, scopes: &[String], who: &str) -> String {
    pages::raw_page(
        "Allow this device?",
        &format!(
            r#"<p>Signed in as <strong>{who}</strong>.</p>
<p>The device showing code <strong>{display}</strong> (application <strong>{client}</strong>) asks for access with scopes <code>{scopes}</code>.</p>
<form method="post" action="/oauth2/device">
<input type="hidden" name="csrf_token" value="{csrf}">
<input type="hidden" name="user_code" value="{code}">
<button type="submit" name="action" value="approve">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>"#,
            who = escape(who),
            display = escape(&display(code)),
            client = escape(client),
            scopes = escape(&scopes.join(" ")),
            csrf = escape(csrf),
            code = escape(code),
        ),
    )
}

/// `GET /oauth2/device[?user_code=…]`: the code-entry page (requires a session).
pub(crate) async fn device_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let prefill = q.get("user_code").cloned().unwrap_or_default();
    let session = match state.sessions.of_request(&headers).await {
        Ok(s) => s,
        Err(_) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::error_page("Temporarily unavailable", "Try again shortly."),
            )
        }
    };
    let Some(session) = session else {
        let back = format!(
            "/oauth2/device?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("user_code", &prefill)
                .finish()
        );
        let login = format!(
            "/login?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("redirect_url", &back)
                .finish()
        );
        return (StatusCode::SEE_OTHER, [(header::LOCATION, login)]).into_response();
    };
    html(
        StatusCode::OK,
        enter_code_page(session.csrf_token.expose(), &prefill, None),
    )
}

/// `POST /oauth2/device`: code entered → confirmation; confirmation → decision.
pub(crate) async fn device_submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Option<axum::Extension<crate::transport::client_addr::ClientAddr>>,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match form {
        Ok(axum::Form(f)) => f,
        Err(e) => {
            let (status, page) = pages::unreadable_form(&e);
            return html(status, page);
        }
    };
    let session = match state.sessions.of_request(&headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return html(
                StatusCode::UNAUTHORIZED,
                pages::info_page(
                    "Sign in first",
                    "Your session ended.",
                    Some(("/oauth2/device", "Start again")),
                ),
            )
        }
        Err(_) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::error_page("Temporarily unavailable", "Try again shortly."),
            )
        }
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if !bool::from(
        field("csrf_token")
            .as_bytes()
            .ct_eq(session.csrf_token.expose().as_bytes()),
    ) {
        return html(
            StatusCode::FORBIDDEN,
            pages::error_page("Form expired", "Reload the page and try again."),
        );
    }
    let now = state.clock.now();
    // Guessing user codes: failures are limited per user and per address.
    let keys: Vec<String> = std::iter::once(format!("device-user:{}", session.subject))
        .chain(peer.map(|axum::Extension(p)| format!("device-ip:{}", p.0)))
        .collect();
    // Counted before the code is looked up (§14: a burst cannot exceed the limit); a code
    // found gives its slots back.
    if let Err(retry) = state.login_limiter.attempt(&keys, now).await {
        let mut r = html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::error_page(
                "Too many attempts",
                "Too many wrong codes. Try again later.",
            ),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            retry.to_string().parse().expect("number"),
        );
        return r;
    }
    let code = normalise_user_code(field("user_code"));
    let record = match state.authz.pending_device_code(&code).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => {
            return html(
                StatusCode::BAD_REQUEST,
                enter_code_page(
                    session.csrf_token.expose(),
                    field("user_code"),
                    Some("That code is unknown or has expired."),
                ),
            );
        }
        Err(_) => {
            for k in &keys {
                state.login_limiter.give_back(k).await;
            }
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::error_page("Temporarily unavailable", "Try again shortly."),
            );
        }
    };
    for k in &keys {
        state.login_limiter.give_back(k).await;
    }
    let who = session.user_info().name;
    let who = if who.is_empty() {
        session.subject.clone()
    } else {
        who
    };
    let approve = match field("action") {
        "" => {
            return html(
                StatusCode::OK,
                confirm_page(
                    session.csrf_token.expose(),
                    &code,
                    &record.client_id,
                    &record.scopes,
                    &who,
                ),
            )
        }
        "approve" => true,
        _ => false,
    };
    let decision = DeviceDecision {
        subject: &session.subject,
        profile: &session.profile,
        approve,
    };
    match state
        .authz
        .decide_device_code(&code, &record.client_id, decision)
        .await
    {
        Ok(()) => {
            let (title, msg) = if approve {
                ("Device connected", "You can return to your device.")
            } else {
                ("Request denied", "The device was not given access.")
            };
            html(StatusCode::OK, pages::info_page(title, msg, None))
        }
        Err(StoreError::NotFound) => html(
            StatusCode::BAD_REQUEST,
            pages::error_page("Code expired", "That code is no longer pending."),
        ),
        Err(_) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::error_page("Temporarily unavailable", "Try again shortly."),
        ),
    }
}
