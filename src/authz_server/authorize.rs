//! `/oauth2/authorize` and `/oauth2/authorize_callback` (RFC 6749 §4.1.1–4.1.2, RFC 7636,
//! RFC 8252 §7.3, RFC 9207). Errors before the client and redirect URI are trusted are shown
//! as a page (§4.1.2.1: never redirect to an unverified URI); after, they go back to the
//! client as `error=` on the redirect. A user without a session is sent to log in and comes
//! back to the same request through `/oauth2/authorize_callback`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse, Response};
use http::{header, HeaderMap, Method, StatusCode};
use url::Url;

use super::bound_digest;
use super::clients::Client;
use super::issue::issuer;
use crate::keys::random_token;
use crate::store::AuthCodeRecord;
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

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(pages::error_page(title, message)),
    )
        .into_response()
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

/// RFC 7636 §4.1/4.2: 43–128 characters of the unreserved set.
pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

struct Validated<'a> {
    client: &'a Client,
    redirect_uri: String,
    state_param: Option<String>,
    scopes: Vec<String>,
    code_challenge: String,
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
pub async fn authorize(
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
pub async fn authorize_callback(
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
        Err(e) => return page(StatusCode::BAD_REQUEST, "Invalid authorization request", &e),
    };
    let (authority, scheme) = match &origin {
        Some(axum::Extension(o)) => (o.authority.as_deref(), o.scheme),
        None => (None, "http"),
    };
    let public = state.public_urls.resolve(authority, scheme).to_owned();
    let iss = issuer(&state, &public);

    let v = match validate(&state, &params, &iss) {
        Ok(v) => v,
        Err(resp) => return resp,
    };

    let session = match state.sessions.from_headers(&headers).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "session store unavailable");
            return page(
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

    let code = random_token();
    let now = state.clock.now();
    let lifespan = state
        .config
        .app_auth
        .self_auth_server
        .authorization_code_lifespan
        .as_secs() as i64;
    let record = AuthCodeRecord {
        code_hash: bound_digest(&v.client.id, &code),
        client_id: v.client.id.clone(),
        redirect_uri: v.redirect_uri.clone(),
        subject: session.subject.clone(),
        user_info: session.profile.to_string(),
        scopes: v.scopes.clone(),
        code_challenge: v.code_challenge.clone(),
        family_id: random_token(),
        auth_time: now,
        expires_at: now + lifespan,
    };
    if let Err(e) = state.store.insert_auth_code(&record).await {
        tracing::warn!(error = %e, "cannot store authorization code");
        return error_redirect(
            &v.redirect_uri,
            v.state_param.as_deref(),
            &iss,
            "temporarily_unavailable",
            "try again shortly",
        );
    }
    tracing::info!(target: "flyteauth::audit", event = "code_issued", subject = %session.subject, client_id = %v.client.id);
    state
        .authz
        .recent
        .codes
        .put(record.code_hash.clone(), record);
    let mut url = Url::parse(&v.redirect_uri).expect("validated redirect uri");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(s) = &v.state_param {
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

fn validate<'a>(
    state: &'a AppState,
    p: &HashMap<String, String>,
    iss: &str,
) -> Result<Validated<'a>, Response> {
    // §4.1.2.1: client and redirect URI first; their errors are never redirected.
    let Some(client_id) = p.get("client_id").filter(|c| !c.is_empty()) else {
        return Err(page(
            StatusCode::BAD_REQUEST,
            "Invalid authorization request",
            "client_id is missing.",
        ));
    };
    let Some(client) = state.authz.clients.get(client_id) else {
        return Err(page(
            StatusCode::BAD_REQUEST,
            "Unknown client",
            "This application is not registered.",
        ));
    };
    let redirect_uri = match p.get("redirect_uri").filter(|r| !r.is_empty()) {
        Some(r) => r.clone(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Invalid authorization request",
                "redirect_uri is missing.",
            ))
        }
    };
    if Url::parse(&redirect_uri).is_err()
        || redirect_uri.contains('#')
        || !client.redirect_uri_matches(&redirect_uri)
    {
        return Err(page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The redirect_uri is not registered for this application.",
        ));
    }
    let state_param = p.get("state").cloned();
    let fail = |error: &str, description: &str| {
        Err(error_redirect(
            &redirect_uri,
            state_param.as_deref(),
            iss,
            error,
            description,
        ))
    };

    // Never issue a code the client may not redeem.
    if !client.allows_grant("authorization_code") {
        return fail(
            "unauthorized_client",
            "this client may not use the authorization_code grant",
        );
    }
    match p.get("response_type").map(String::as_str) {
        Some("code") => {}
        None | Some("") => return fail("invalid_request", "response_type is missing"),
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            )
        }
    }
    let requested: Vec<String> = p
        .get("scope")
        .map(|s| {
            s.split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let scopes = if requested.is_empty() {
        client
            .scopes
            .iter()
            .filter(|s| *s != "access_token" && !s.contains('*'))
            .cloned()
            .collect()
    } else {
        if let Some(bad) = requested.iter().find(|s| !client.allows_scope(s)) {
            return fail(
                "invalid_scope",
                &format!("scope {bad:?} is not allowed for this client"),
            );
        }
        let mut dedup = Vec::new();
        for s in requested {
            if !dedup.contains(&s) {
                dedup.push(s);
            }
        }
        dedup
    };
    // RFC 7636 / RFC 9700 §2.1.1: PKCE S256 required for public clients; `plain` refused.
    let challenge = p.get("code_challenge").filter(|c| !c.is_empty()).cloned();
    let method = p
        .get("code_challenge_method")
        .map(String::as_str)
        .unwrap_or("");
    let code_challenge = match (challenge, method) {
        (None, _) if client.requires_pkce() => {
            return fail(
                "invalid_request",
                "code_challenge (PKCE, S256) is required for this client",
            )
        }
        (None, "") => String::new(),
        (None, _) => {
            return fail(
                "invalid_request",
                "code_challenge_method without code_challenge",
            )
        }
        (Some(_), "plain") => {
            return fail(
                "invalid_request",
                "code_challenge_method plain is not supported; use S256",
            )
        }
        (Some(_), m) if m != "S256" => {
            return fail("invalid_request", "code_challenge_method must be S256")
        }
        (Some(c), _) if !is_pkce_value(&c) => {
            return fail("invalid_request", "malformed code_challenge")
        }
        (Some(c), _) => c,
    };
    Ok(Validated {
        client,
        redirect_uri,
        state_param,
        scopes,
        code_challenge,
    })
}
