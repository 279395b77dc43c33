//! The deployment's public URL(s) (`auth.authorizedUris`) and Flyte's rule for picking the
//! one a request came through (spec §5.7): same host and scheme first, then same host and
//! port, then same host, else the first configured URL.

use url::Url;

#[derive(Debug, Clone)]
pub struct PublicUrls {
    urls: Vec<(Url, String)>,
}

impl PublicUrls {
    /// `urls` must not be empty.
    pub fn new(urls: Vec<Url>) -> Self {
        assert!(!urls.is_empty(), "at least one public URL");
        let urls = urls
            .into_iter()
            .map(|u| {
                let s = u.as_str().trim_end_matches('/').to_owned();
                (u, s)
            })
            .collect();
        Self { urls }
    }

    /// Every public URL, as strings without a trailing slash.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.urls.iter().map(|(_, s)| s.as_str())
    }

    pub fn first(&self) -> &str {
        &self.urls[0].1
    }

    /// The public URL for a request that arrived with `authority` (Host / `:authority`)
    /// over `scheme`.
    pub fn resolve(&self, authority: Option<&str>, scheme: &str) -> &str {
        // With one URL every branch below ends at it: no need to parse the authority.
        let (Some(authority), [_, _, ..]) = (authority, self.urls.as_slice()) else {
            return self.first();
        };
        let Ok(candidate) = Url::parse(&format!("{scheme}://{authority}")) else {
            return self.first();
        };
        let mut host_match = None;
        let mut host_port_match = None;
        for (u, s) in &self.urls {
            if u.host_str() != candidate.host_str() {
                continue;
            }
            host_match.get_or_insert(s.as_str());
            if u.port_or_known_default() == candidate.port_or_known_default() {
                host_port_match.get_or_insert(s.as_str());
                if u.scheme() == candidate.scheme() {
                    return s;
                }
            }
        }
        host_port_match
            .or(host_match)
            .unwrap_or_else(|| self.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_by_host_then_first() {
        let p = PublicUrls::new(vec![
            Url::parse("https://flyte.example.com").unwrap(),
            Url::parse("http://flyteadmin:80").unwrap(),
        ]);
        assert_eq!(p.resolve(Some("flyteadmin"), "http"), "http://flyteadmin");
        assert_eq!(
            p.resolve(Some("flyte.example.com"), "http"),
            "https://flyte.example.com"
        );
        assert_eq!(
            p.resolve(Some("other:1"), "http"),
            "https://flyte.example.com"
        );
        assert_eq!(p.resolve(None, "http"), "https://flyte.example.com");

        let one = PublicUrls::new(vec![Url::parse("http://localhost:8088/").unwrap()]);
        for authority in [
            Some("localhost:8088"),
            Some("elsewhere"),
            Some("[bad"),
            None,
        ] {
            assert_eq!(one.resolve(authority, "https"), "http://localhost:8088");
        }
    }
}
