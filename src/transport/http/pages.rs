//! Plain HTML pages (no JavaScript needed): the login form and error pages.

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An error page as an answer (`Cache-Control: no-store`).
pub(crate) fn error_response(
    status: http::StatusCode,
    title: &str,
    message: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(http::header::CACHE_CONTROL, "no-store")],
        axum::response::Html(error_page(title, message)),
    )
        .into_response()
}

/// A page around trusted `body` HTML (callers escape what they interpolate).
pub(crate) fn raw_page(title: &str, body: &str) -> String {
    page(title, body)
}

fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · flyteauth</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
label{{display:block;margin:.75rem 0 .25rem}}input{{width:100%;padding:.4rem;box-sizing:border-box}}
button{{margin-top:1rem;padding:.5rem 1rem}}.error{{color:#a00}}</style></head>
<body><h1>{title}</h1>
{body}
</body></html>"#,
        title = escape(title),
    )
}

/// The login form. `error` is shown above it.
pub(crate) fn login_form(
    csrf_token: &str,
    redirect_url: &str,
    error: Option<&str>,
    username: &str,
) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    page(
        "Sign in to Flyte",
        &format!(
            r#"{error}<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{csrf}">
<input type="hidden" name="redirect_url" value="{redirect}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" value="{user}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>"#,
            csrf = escape(csrf_token),
            redirect = escape(redirect_url),
            user = escape(username),
        ),
    )
}

/// An error page with a short, non-secret explanation.
pub(crate) fn error_page(title: &str, message: &str) -> String {
    page(title, &format!("<p>{}</p>", escape(message)))
}

/// A simple informational page.
pub(crate) fn info_page(title: &str, message: &str, link: Option<(&str, &str)>) -> String {
    let link = link
        .map(|(href, text)| format!(r#"<p><a href="{}">{}</a></p>"#, escape(href), escape(text)))
        .unwrap_or_default();
    page(title, &format!("<p>{}</p>{link}", escape(message)))
}

/// The page for a form body that could not be read: 413 when it is over
/// `server.maxRequestBytes` (its reading stopped at the limit), else 400.
pub(crate) fn unreadable_form(
    rejection: &axum::extract::rejection::FormRejection,
) -> (http::StatusCode, String) {
    if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        (
            http::StatusCode::PAYLOAD_TOO_LARGE,
            error_page(
                "Request too large",
                "The form is larger than this server accepts.",
            ),
        )
    } else {
        (
            http::StatusCode::BAD_REQUEST,
            error_page("Bad request", "The form could not be read."),
        )
    }
}

/// The confirmation asked for a logout that did not come from this site (§14: a cross-site
/// GET changes nothing): a POST form carrying the session's CSRF token.
pub(crate) fn logout_confirm(csrf_token: &str, redirect_url: &str) -> String {
    page(
        "Sign out?",
        &format!(
            r#"<p>Do you want to sign out of Flyte?</p><form method="post" action="/logout?redirect_url={redirect_q}">
<input type="hidden" name="csrf_token" value="{csrf}">
<button type="submit">Sign out</button>
</form>"#,
            csrf = escape(csrf_token),
            redirect_q = escape(
                &url::form_urlencoded::byte_serialize(redirect_url.as_bytes()).collect::<String>()
            ),
        ),
    )
}
