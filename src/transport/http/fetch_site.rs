//! Where a browser request came from (DESIGN.md §14: no state change on a cross-site GET,
//! no login from a foreign page): `Sec-Fetch-Site` when the browser sends it, else `Origin`,
//! else `Referer`, compared with this deployment's origins (the request's own, the public
//! URLs, `server.security.allowedOrigins`).

use http::HeaderMap;

use crate::transport::grpc::RequestOrigin;
use crate::transport::state::AppState;

/// What the request's headers say about where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// This deployment (or a user's own navigation: typed URL, bookmark).
    Same,
    /// Another site.
    Cross,
    /// Nothing to tell (no `Sec-Fetch-Site`, `Origin` or `Referer`: not a modern browser, or a
    /// `no-referrer` policy).
    Unknown,
}

/// Classifies the request.
pub(crate) fn site(state: &AppState, headers: &HeaderMap, origin: Option<&RequestOrigin>) -> Site {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("sec-fetch-site") {
        Some("same-origin") | Some("none") => return Site::Same,
        Some("cross-site") => return Site::Cross,
        // `same-site` (a sibling subdomain, maybe someone else's): the origin decides.
        _ => {}
    }
    let claimed = header("origin")
        .filter(|o| *o != "null")
        .map(str::to_owned)
        .or_else(|| {
            header("referer")
                .and_then(|r| url::Url::parse(r).ok())
                .map(|u| u.origin().ascii_serialization())
        });
    let Some(claimed) = claimed else {
        return if header("origin") == Some("null") {
            Site::Cross
        } else {
            Site::Unknown
        };
    };
    let claimed = claimed.trim_end_matches('/');
    let own = origin.and_then(|o| {
        o.authority
            .as_deref()
            .map(|a| format!("{}://{}", o.scheme, a))
    });
    let ours = own.as_deref() == Some(claimed)
        || state
            .authenticator
            .allowed_origins
            .iter()
            .any(|o| o == claimed);
    if ours {
        Site::Same
    } else {
        Site::Cross
    }
}
