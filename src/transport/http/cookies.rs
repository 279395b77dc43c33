//! Every cookie flyteauth sets comes from this one factory: `HttpOnly` (unless it is meant to
//! be read by the page), `SameSite=Lax` (or Flyte's `auth.userAuth.cookieSetting.
//! sameSitePolicy`), `Path=/`, the `cookieSetting.domain` when set, and `Secure` unless
//! `server.security.insecureCookieHeader` is set for plain-http development.

use cookie::{Cookie, SameSite};
use http::{HeaderMap, HeaderValue};

use crate::secret::Secret;

/// The server-side session id.
pub const SESSION: &str = crate::session::COOKIE;
/// The readable double-submit CSRF token of the session (sent back as `x-csrf-token`).
pub const CSRF: &str = "flyte_csrf";
/// The login form's CSRF token.
pub const LOGIN_CSRF: &str = "flyte_login_csrf";
/// The sealed state of an OIDC login round trip.
pub const OIDC_LOGIN: &str = "flyte_oidc_login";

#[derive(Debug, Clone)]
pub struct CookieFactory {
    pub secure: bool,
    /// (§14) Over TLS every name carries the `__Host-` prefix: the browser then accepts the
    /// cookie only from this host over https with `Path=/` and no `Domain`, so neither a
    /// sibling subdomain nor a plain-http response can plant one.
    pub host_prefix: bool,
    pub same_site: SameSite,
    /// `Domain=` attribute (Flyte's `cookieSetting.domain`); host-only when `None`.
    pub domain: Option<String>,
}

/// The `__Host-` name of a cookie (the names are few and fixed).
pub fn host_name(base: &'static str) -> &'static str {
    match base {
        SESSION => "__Host-flyte_session",
        CSRF => "__Host-flyte_csrf",
        LOGIN_CSRF => "__Host-flyte_login_csrf",
        OIDC_LOGIN => "__Host-flyte_oidc_login",
        other => other,
    }
}

impl Default for CookieFactory {
    fn default() -> Self {
        Self {
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            host_prefix: false,
        }
    }
}

impl CookieFactory {
    /// The name cookie `base` is set and read under.
    pub fn name(&self, base: &'static str) -> &'static str {
        if self.host_prefix {
            host_name(base)
        } else {
            base
        }
    }

    fn build(&self, name: &'static str, value: String, http_only: bool) -> Cookie<'static> {
        // The IdP sends the browser back cross-site: a Strict login-state cookie would not
        // come back with it, so that one cookie stays Lax.
        let same_site = match (name, self.same_site) {
            (OIDC_LOGIN, SameSite::Strict) => SameSite::Lax,
            (_, s) => s,
        };
        let mut c = Cookie::build((self.name(name), value))
            .http_only(http_only)
            .same_site(same_site)
            .path("/")
            .secure(self.secure);
        if let Some(d) = &self.domain {
            c = c.domain(d.clone());
        }
        c.build()
    }

    /// An HttpOnly session-lifetime cookie.
    pub fn http_only(&self, name: &'static str, value: String) -> HeaderValue {
        header(self.build(name, value, true))
    }

    /// A cookie the page's script may read (the CSRF double-submit token).
    pub fn readable(&self, name: &'static str, value: String) -> HeaderValue {
        header(self.build(name, value, false))
    }

    /// A new session's two cookies on an answer: the HttpOnly session id and the readable
    /// CSRF token.
    pub fn start_session(
        &self,
        headers: &mut HeaderMap,
        session_id: &Secret<String>,
        csrf_token: &Secret<String>,
    ) {
        headers.append(
            http::header::SET_COOKIE,
            self.http_only(SESSION, session_id.expose().clone()),
        );
        headers.append(
            http::header::SET_COOKIE,
            self.readable(CSRF, csrf_token.expose().clone()),
        );
    }

    /// Expires a cookie.
    pub fn removal(&self, name: &'static str) -> HeaderValue {
        let mut c = self.build(name, String::new(), true);
        c.make_removal();
        header(c)
    }
}

fn header(c: Cookie<'static>) -> HeaderValue {
    HeaderValue::from_str(&c.to_string()).expect("cookie values are header-safe tokens")
}

/// The value of cookie `name` in the request, if any.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    crate::session::request_cookie(headers, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_same_site;

    #[test]
    fn attributes() {
        let f = CookieFactory::default();
        let v = f.http_only(SESSION, "abc".into());
        let s = v.to_str().unwrap();
        for attr in [
            "flyte_session=abc",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Secure",
        ] {
            assert!(s.contains(attr), "{s}");
        }
        let v = CookieFactory {
            secure: false,
            ..Default::default()
        }
        .readable(CSRF, "x".into());
        let s = v.to_str().unwrap();
        assert!(!s.contains("HttpOnly") && !s.contains("Secure"), "{s}");
        // Flyte's cookieSetting.
        let f = CookieFactory {
            same_site: parse_same_site("StrictMode").unwrap(),
            domain: Some("flyte.example.com".into()),
            ..Default::default()
        };
        let s = f
            .http_only(SESSION, "abc".into())
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            s.contains("SameSite=Strict") && s.contains("Domain=flyte.example.com"),
            "{s}"
        );
        let s = f
            .http_only(OIDC_LOGIN, "x".into())
            .to_str()
            .unwrap()
            .to_owned();
        assert!(s.contains("SameSite=Lax"), "{s}");
        assert!(parse_same_site("Lax").is_err());
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; flyte_session=abc".parse().unwrap(),
        );
        assert_eq!(get(&h, SESSION), Some("abc"));
        assert_eq!(get(&h, "b"), None);
        let tls = CookieFactory {
            secure: true,
            host_prefix: true,
            ..Default::default()
        };
        let s = tls.http_only(SESSION, "abc".into());
        let s = s.to_str().unwrap();
        assert!(
            s.starts_with("__Host-flyte_session=abc")
                && s.contains("Path=/")
                && s.contains("Secure")
                && !s.contains("Domain"),
            "{s}"
        );
        assert_eq!(
            get(&h, tls.name(SESSION)),
            None,
            "a plain-named cookie is not read over TLS"
        );
    }
}
