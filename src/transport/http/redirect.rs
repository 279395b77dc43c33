//! One validator for every `redirect_url` (`/login`, `/logout`, callbacks): a relative path on
//! this server, or an absolute URL whose origin is one of `auth.authorizedUris`.

use url::Url;

use crate::public_url::PublicUrls;

/// The URL to redirect to, or `None` if it is not allowed.
pub fn validate(target: &str, public: &PublicUrls) -> Option<String> {
    let t = target.trim();
    // Browsers drop TAB/CR/LF and treat `\` as `/`: any control character, space or
    // backslash could turn "/x" into "//evil.example" on the way, so none is accepted.
    if t.is_empty()
        || t.chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    // A path on this server: "/x", never "//host" (scheme-relative). Resolved the way a browser
    // would, it must stay on the public origin.
    if t.starts_with('/') {
        if t.starts_with("//") {
            return None;
        }
        let base = Url::parse(public.first()).ok()?;
        let resolved = base.join(t).ok()?;
        return (resolved.origin() == base.origin()).then(|| t.to_owned());
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
            "/\t/evil.example/",
            "/ /evil.example/",
            "/\u{0}/x",
            "",
        ] {
            assert_eq!(validate(bad, &p), None, "{bad}");
        }
    }
}
