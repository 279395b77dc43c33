//! Every cookie flyteauth sets comes from this one factory: `HttpOnly` (unless it is meant to
//! be read by the page), `SameSite=Lax`, `Path=/`, and `Secure` unless
//! `server.security.insecureCookieHeader` is set for plain-http development.

use cookie::{Cookie, SameSite};
use http::{HeaderMap, HeaderValue};

/// The server-side session id.
pub const SESSION: &str = "flyte_session";
/// The readable double-submit CSRF token of the session (sent back as `x-csrf-token`).
pub const CSRF: &str = "flyte_csrf";
/// The login form's CSRF token.
pub const LOGIN_CSRF: &str = "flyte_login_csrf";
/// The sealed state of an OIDC login round trip.
pub const OIDC_LOGIN: &str = "flyte_oidc_login";

#[derive(Debug, Clone, Copy)]
pub struct CookieFactory {
    pub secure: bool,
}

impl CookieFactory {
    fn build(&self, name: &'static str, value: String, http_only: bool) -> Cookie<'static> {
        Cookie::build((name, value))
            .http_only(http_only)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.secure)
            .build()
    }

    /// An HttpOnly session-lifetime cookie.
    pub fn http_only(&self, name: &'static str, value: String) -> HeaderValue {
        header(self.build(name, value, true))
    }

    /// A cookie the page's script may read (the CSRF double-submit token).
    pub fn readable(&self, name: &'static str, value: String) -> HeaderValue {
        header(self.build(name, value, false))
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
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes() {
        let f = CookieFactory { secure: true };
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
        let v = CookieFactory { secure: false }.readable(CSRF, "x".into());
        let s = v.to_str().unwrap();
        assert!(!s.contains("HttpOnly") && !s.contains("Secure"), "{s}");
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; flyte_session=abc".parse().unwrap(),
        );
        assert_eq!(get(&h, SESSION), Some("abc"));
        assert_eq!(get(&h, "b"), None);
    }
}
