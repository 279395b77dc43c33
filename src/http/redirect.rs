//! One validator for every `redirect_url` (`/login`, `/logout`, callbacks): a relative path on
//! this server, or an absolute URL whose origin is one of `auth.authorizedUris`.

use url::Url;

use crate::public_url::PublicUrls;

/// The URL to redirect to, or `None` if it is not allowed.
pub fn validate(target: &str, public: &PublicUrls) -> Option<String> {
    let t = target.trim();
    if t.is_empty() || t.contains(['\r', '\n', '\\']) {
        return None;
    }
    // A path on this server: "/x", never "//host" (scheme-relative) or "/\host".
    if t.starts_with('/') {
        return (!t.starts_with("//")).then(|| t.to_owned());
    }
    let url = Url::parse(t).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    public
        .all()
        .any(|p| {
            Url::parse(p)
                .map(|u| u.origin().ascii_serialization() == origin)
                .unwrap_or(false)
        })
        .then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_or_listed_origins() {
        let p = PublicUrls::new(vec![Url::parse("https://flyte.example.com").unwrap()]);
        assert_eq!(validate("/console", &p).as_deref(), Some("/console"));
        assert!(validate("https://flyte.example.com/console/x", &p).is_some());
        for bad in [
            "https://evil.example",
            "//evil.example/x",
            "/\\evil.example",
            "javascript:alert(1)",
            "http://flyte.example.com/",
            "https://flyte.example.com.evil.example/",
            "",
        ] {
            assert_eq!(validate(bad, &p), None, "{bad}");
        }
    }
}
