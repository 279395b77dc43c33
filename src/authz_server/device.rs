//! The device authorization grant (RFC 8628) for headless machines: the device endpoint
//! (§3.1–3.2), the user-code page at `/oauth2/device` (a signed-in user enters the code and
//! confirms; plain HTML forms, no JavaScript), and the polling grant (§3.4–3.5) used by
//! `token.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use http::{header, HeaderMap, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::bound_digest;
use super::clients::Client;
use super::error::{no_store, OAuthError};
use super::issue::{issue, Family, Grant, TokenResponse};
use super::token::{authenticate_client, read_form};
use crate::keys::{random_bytes, random_token};
use crate::store::{DeviceApproval, DeviceCodeRecord, DevicePoll, Spend, StoreError};
use crate::transport::grpc::RequestOrigin;
use crate::transport::http::pages::{self, escape};
use crate::transport::state::AppState;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Minimum polling interval (always sent: flytekit needs it).
const INTERVAL: i64 = 5;
/// §6.1: 20 consonants, no vowels (no words), no look-alikes: 8 characters ≈ 34.6 bits.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A new user code, normalised (no dash).
fn new_user_code() -> String {
    random_bytes(8)
        .iter()
        .map(|b| USER_CODE_ALPHABET[(*b as usize) % USER_CODE_ALPHABET.len()] as char)
        .collect()
}

/// Upper case, dashes and spaces removed.
pub fn normalise_user_code(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_uppercase)
        .collect()
}

fn display(code: &str) -> String {
    if code.len() == 8 && code.is_char_boundary(4) {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

fn public_url(state: &AppState, origin: Option<&RequestOrigin>) -> String {
    state
        .public_urls
        .resolve(
            origin.and_then(|o| o.authority.as_deref()),
            origin.map(|o| o.scheme).unwrap_or("http"),
        )
        .to_owned()
}

/// `POST /oauth2/device_authorization` (§3.1).
pub async fn device_authorization(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    origin: Option<axum::Extension<RequestOrigin>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let public = public_url(&state, origin.as_ref().map(|o| &o.0));
    match start(&state, &headers, &public, body).await {
        Ok(v) => {
            let mut r = Json(v).into_response();
            no_store(&mut r);
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn start(
    state: &AppState,
    headers: &HeaderMap,
    public: &str,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<serde_json::Value, OAuthError> {
    let form = read_form(headers, body)?;
    let client = authenticate_client(state, headers, &form).await?;
    if !client.allows_grant(GRANT_TYPE) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the device flow",
        ));
    }
    let scopes = requested_scopes(client, form.get("scope").map(String::as_str))?;
    let device_code = random_token();
    let now = state.clock.now();
    // `auth.appAuth.selfAuthServer.deviceCodeLifespan` (default 10m).
    let expires_in = state
        .config
        .app_auth
        .self_auth_server
        .device_code_lifespan
        .as_secs() as i64;
    let mut user_code = new_user_code();
    for attempt in 0.. {
        let record = DeviceCodeRecord {
            device_code_hash: bound_digest(&client.id, &device_code),
            user_code: user_code.clone(),
            client_id: client.id.clone(),
            scopes: scopes.clone(),
            interval_secs: INTERVAL,
            expires_at: now + expires_in,
        };
        match state.store.insert_device_code(&record).await {
            Ok(()) => break,
            Err(StoreError::AlreadyExists) if attempt < 3 => user_code = new_user_code(),
            Err(e) => return Err(e.into()),
        }
    }
    let verification_uri = format!("{public}/oauth2/device");
    Ok(json!({
        "device_code": device_code,
        "user_code": display(&user_code),
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={}", display(&user_code)),
        "expires_in": expires_in,
        "interval": INTERVAL,
    }))
}

fn requested_scopes(client: &Client, scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let requested: Vec<String> = scope
        .unwrap_or("")
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if requested.is_empty() {
        return Ok(client
            .scopes
            .iter()
            .filter(|s| *s != "access_token" && !s.contains('*'))
            .cloned()
            .collect());
    }
    if let Some(bad) = requested.iter().find(|s| !client.allows_scope(s)) {
        return Err(OAuthError::invalid_scope(format!(
            "scope {bad:?} is not allowed for this client"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for s in requested {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The device grant at the token endpoint (§3.4, §3.5).
pub async fn poll(
    state: &AppState,
    public: &str,
    client: &Client,
    form: &HashMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    if !client.allows_grant(GRANT_TYPE) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the device flow",
        ));
    }
    let device_code = form
        .get("device_code")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
    let now = state.clock.now();
    let (record, approval) = match state
        .store
        .poll_device_code(&bound_digest(&client.id, device_code), now)
        .await
    {
        Ok(DevicePoll::Approved(r, a)) => (r, a),
        Ok(DevicePoll::Pending) => {
            return Err(OAuthError::device(
                "authorization_pending",
                "the user has not answered yet",
            ))
        }
        Ok(DevicePoll::SlowDown) => {
            return Err(OAuthError::device(
                "slow_down",
                "polling too fast; add 5 seconds to the interval",
            ))
        }
        Ok(DevicePoll::Denied) => {
            return Err(OAuthError::device(
                "access_denied",
                "the user denied the request",
            ))
        }
        Ok(DevicePoll::Expired) => {
            return Err(OAuthError::device(
                "expired_token",
                "the device code expired; start again",
            ))
        }
        Ok(DevicePoll::AlreadyUsed) => {
            return Err(OAuthError::invalid_grant(
                "the device code was already used",
            ))
        }
        Err(StoreError::NotFound) => return Err(OAuthError::invalid_grant("unknown device code")),
        Err(e) => return Err(e.into()),
    };
    if record.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the device code was issued to another client",
        ));
    }
    let profile: serde_json::Value = serde_json::from_str(&approval.user_info).unwrap_or_default();
    let with_refresh =
        record.scopes.iter().any(|s| s == "offline") && client.allows_grant("refresh_token");
    issue(
        state,
        public,
        Grant {
            subject: &approval.subject,
            client_id: &client.id,
            scopes: &record.scopes,
            profile: Some(&profile),
            auth_time: approval.auth_time,
            family: Some(Family {
                id: &approval.family_id,
                spend: Spend::Nothing,
                user_info: &approval.user_info,
                refresh_scopes: with_refresh.then_some(record.scopes.as_slice()),
            }),
            grant_type: "device_code",
        },
    )
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
pub async fn device_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let prefill = q.get("user_code").cloned().unwrap_or_default();
    let session = match state.sessions.from_headers(&headers).await {
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
pub async fn device_submit(
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
    let session = match state.sessions.from_headers(&headers).await {
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
    let record = match state.store.find_device_by_user_code(&code, now).await {
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
    let approval = match field("action") {
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
        "approve" => Some(DeviceApproval {
            subject: session.subject.clone(),
            user_info: session.profile.to_string(),
            family_id: random_token(),
            auth_time: now,
        }),
        _ => None,
    };
    let approved = approval.is_some();
    match state
        .store
        .decide_device_code(&code, approval.as_ref(), now)
        .await
    {
        Ok(()) => {
            tracing::info!(target: "flyteauth::audit", event = "device_decision", subject = %session.subject, client_id = %record.client_id, approved);
            let (title, msg) = if approved {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes() {
        let c = new_user_code();
        assert_eq!(c.len(), 8);
        assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        assert_eq!(normalise_user_code("bcdf-ghjk"), "BCDFGHJK");
        assert_eq!(display("BCDFGHJK"), "BCDF-GHJK");
    }
}
