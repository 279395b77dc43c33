//! `/login` (OIDC branch), `/callback` and `/.well-known/openid-configuration`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::{cookies, pages};
use crate::oidc::PendingLogin;
use crate::transport::grpc::RequestOrigin;
use crate::transport::state::AppState;

const SEAL_PURPOSE: &str = "oidc-login";

fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}

/// Sends the browser to the IdP; `next` is the validated end-of-login target.
pub(crate) fn begin(
    state: &AppState,
    origin: Option<&RequestOrigin>,
    next: &str,
    query: &HashMap<String, String>,
) -> Response {
    let Some(oidc) = &state.oidc else {
        return pages::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in unavailable",
            "No identity provider is configured.",
        );
    };
    let public = state.public_urls.resolve(
        origin.and_then(|o| o.authority.as_deref()),
        origin.map(|o| o.scheme).unwrap_or("http"),
    );
    let redirect_uri = format!("{public}/callback");
    let idp_param = &state.config.user_auth.idp_query_parameter;
    let hint = (!idp_param.is_empty())
        .then(|| {
            query
                .get(idp_param)
                .map(|v| (idp_param.as_str(), v.as_str()))
        })
        .flatten();
    match oidc.begin(&redirect_uri, next, state.clock.now(), hint) {
        Ok((url, pending)) => {
            let sealed = state.sealer.seal(
                SEAL_PURPOSE,
                &serde_json::to_vec(&pending).expect("serializable"),
            );
            let mut resp = see_other(&url);
            resp.headers_mut().append(
                header::SET_COOKIE,
                state.cookies.http_only(cookies::OIDC_LOGIN, sealed),
            );
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot start OIDC login");
            pages::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Identity provider unavailable",
                "The identity provider cannot be reached right now. Try again in a moment.",
            )
        }
    }
}

/// `GET|POST /callback?code=…&state=…` (or `?error=…`).
pub(crate) async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let clear = |mut resp: Response| {
        resp.headers_mut().append(
            header::SET_COOKIE,
            state.cookies.removal(cookies::OIDC_LOGIN),
        );
        resp
    };
    if let Some(err) = q.get("error") {
        let desc: String = q
            .get("error_description")
            .map(String::as_str)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let code: String = err.chars().take(64).collect();
        tracing::info!(target: "flyteauth::audit", route = "/callback", outcome = "deny", reason = "idp_error", error = %code);
        return clear(pages::error_response(
            StatusCode::UNAUTHORIZED,
            "Sign-in was not completed",
            &format!("The identity provider answered: {code}. {desc}"),
        ));
    }
    let Some(sealed) = cookies::get(&headers, state.cookies.name(cookies::OIDC_LOGIN)) else {
        return pages::error_response(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "The sign-in state is missing (cookies blocked, or the sign-in took too long). Start again.",
        );
    };
    let pending: Option<PendingLogin> = state
        .sealer
        .open(SEAL_PURPOSE, sealed)
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(pending) = pending.filter(|p| p.expires_at > state.clock.now()) else {
        return clear(pages::error_response(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "The sign-in state is invalid or expired. Start again.",
        ));
    };
    let given_state = q.get("state").map(String::as_str).unwrap_or("");
    // Constant-time comparison of the CSRF state.
    if given_state.is_empty()
        || !bool::from(
            given_state
                .as_bytes()
                .ct_eq(pending.state.expose().as_bytes()),
        )
    {
        tracing::info!(target: "flyteauth::audit", route = "/callback", outcome = "deny", reason = "state");
        return clear(pages::error_response(
            StatusCode::BAD_REQUEST,
            "Sign-in rejected",
            "The sign-in state does not match. Start again.",
        ));
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        return clear(pages::error_response(
            StatusCode::BAD_REQUEST,
            "Sign-in rejected",
            "The identity provider sent no code.",
        ));
    };
    let Some(oidc) = &state.oidc else {
        return pages::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in unavailable",
            "No identity provider is configured.",
        );
    };
    let logged_in = match oidc.finish(&pending, code).await {
        Ok(l) => l,
        Err(e) => {
            tracing::info!(target: "flyteauth::audit", route = "/callback", outcome = "deny", reason = %e);
            state.metrics.inc(
                "flyteauth_logins_total",
                &[("source", "oidc"), ("outcome", "deny")],
            );
            return clear(pages::error_response(
                StatusCode::UNAUTHORIZED,
                "Sign-in rejected",
                &e.to_string(),
            ));
        }
    };
    let (cookie_value, session) = match state
        .sessions
        .create(&logged_in.subject, &logged_in.profile)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "session store unavailable");
            return clear(pages::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Try again shortly.",
            ));
        }
    };
    if let Some(rt) = logged_in.refresh_token {
        // Kept encrypted at rest with the cookie block key.
        let sealed = state
            .sealer
            .seal("idp-refresh-token", rt.expose().as_bytes());
        if let Err(e) = state
            .store
            .update_session_idp_refresh_token(&session.id_hash, Some(sealed.as_bytes()))
            .await
        {
            tracing::warn!(error = %e, "cannot store the IdP refresh token");
        }
    }
    tracing::info!(target: "flyteauth::audit", route = "/callback", subject = %session.subject, outcome = "allow");
    state.metrics.inc(
        "flyteauth_logins_total",
        &[("source", "oidc"), ("outcome", "allow")],
    );
    let mut resp = clear(see_other(&pending.next));
    let h = resp.headers_mut();
    state
        .cookies
        .start_session(h, &cookie_value, &session.csrf_token);
    resp
}

/// `GET /.well-known/openid-configuration`: 303 to the IdP's discovery document (spec §3.4).
pub(crate) async fn openid_configuration(State(state): State<Arc<AppState>>) -> Response {
    match &state.oidc {
        Some(o) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, o.discovery_url())],
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no OpenID Connect identity provider is configured",
        )
            .into_response(),
    }
}
