//! Reading an OAuth request body (RFC 6749 §3.2) and the client credentials it carries
//! (§2.3.1: HTTP Basic, id and secret form-urlencoded inside, or form parameters).

use std::net::IpAddr;

use base64::Engine;
use http::{header, HeaderMap};

use crate::authz_server::client_auth::ClientCredentials;
use crate::authz_server::clients::Client;
use crate::authz_server::error::OAuthError;
use crate::authz_server::Form;
use crate::secret::Secret;
use crate::transport::state::AppState;

/// A request body as axum hands it over.
pub(crate) type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// Reads an `application/x-www-form-urlencoded` body whose parameters appear at most once.
pub fn read_form(headers: &HeaderMap, body: Body) -> Result<Form, OAuthError> {
    let body = body.map_err(|e| {
        if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
            OAuthError::too_large()
        } else {
            OAuthError::invalid_request("unreadable body")
        }
    })?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut form = Form::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        // §3.2: parameters MUST NOT be repeated.
        if form.insert(k.to_string(), v.to_string()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {k} is repeated"
            )));
        }
    }
    Ok(form)
}

/// §2.3.1: the credentials of HTTP Basic (id and secret form-urlencoded inside) or of the
/// form parameters.
pub(crate) fn client_credentials(
    headers: &HeaderMap,
    form: &Form,
) -> Result<ClientCredentials, OAuthError> {
    let basic = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if v.len() > 6 && v[..6].eq_ignore_ascii_case("basic ") => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v[6..].trim())
                .map_err(|_| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let raw = String::from_utf8(raw)
                .map_err(|_| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let (id, secret) = raw
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let decode = |s: &str| -> String {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Some((decode(id), decode(secret)))
        }
        _ => None,
    };
    let used_basic = basic.is_some();
    // §2.3: a client MUST NOT use more than one authentication method in a request.
    if used_basic && form.contains_key("client_secret") {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method (Basic and client_secret)",
        ));
    }
    let (client_id, secret) = match (basic, form.get("client_id")) {
        (Some((id, secret)), form_id) => {
            if form_id.is_some_and(|f| *f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the Basic credentials",
                ));
            }
            (id, Some(secret).filter(|s| !s.is_empty()))
        }
        (None, Some(id)) => (
            id.clone(),
            form.get("client_secret").cloned().filter(|s| !s.is_empty()),
        ),
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "client authentication is missing",
                false,
            ))
        }
    };
    Ok(ClientCredentials {
        client_id,
        secret: secret.map(Secret::new),
        used_basic,
    })
}

/// The client's address of the request being served.
pub(crate) fn client_addr() -> Option<IpAddr> {
    crate::transport::client_addr::current()
}

/// The client the request authenticates (Basic or form).
pub(crate) async fn authenticate_client<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    form: &Form,
) -> Result<&'a Client, OAuthError> {
    let credentials = client_credentials(headers, form)?;
    state
        .authz
        .authenticate_client(credentials, client_addr())
        .await
}
