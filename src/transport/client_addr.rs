//! The client's address (DESIGN.md §14): the TCP peer, unless the peer is one of
//! `server.trustedProxies` — then the right-most hop of `Forwarded` (RFC 7239) or, without it,
//! `X-Forwarded-For` that is not itself a trusted proxy. Limits, audit lines and logs use it.

use std::net::IpAddr;

use http::HeaderMap;

/// The client's address of a request, in its extensions (set by the server's dispatch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub IpAddr);

tokio::task_local! {
    /// The client's address of the request being served (set by the server's dispatch around
    /// every request), for code that has no request extensions at hand.
    static CURRENT: IpAddr;
}

/// Runs `fut` with `addr` as the current request's client address.
pub(crate) async fn scope<F: std::future::Future>(addr: IpAddr, fut: F) -> F::Output {
    CURRENT.scope(addr, fut).await
}

/// The current request's client address, if served through the dispatch.
pub(crate) fn current() -> Option<IpAddr> {
    CURRENT.try_with(|a| *a).ok()
}

pub(crate) use crate::config::TrustedProxies;

/// Which address a request comes from (the parsing and matching of `server.trustedProxies`
/// are the config's, [`crate::config::TrustedProxies`]).
impl TrustedProxies {
    /// The client's address of a request that arrived from `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.is_empty() || !self.contains(peer) {
            return peer;
        }
        let hops = forwarded_for(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.contains(*ip) => client = *ip,
                Some(ip) => return *ip,
                // An unreadable hop: nothing left of it can be believed.
                None => return client,
            }
        }
        client
    }
}

/// The hops (left to right) of `Forwarded: for=…` if present, else `X-Forwarded-For`; `None`
/// for a hop that is not an IP address (`unknown`, an obfuscated name, garbage).
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        let mut hops = Vec::new();
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            let for_ = element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
            });
            let Some(v) = for_ else { continue };
            let v = v.trim_matches('"');
            // `[2001:db8::1]:4711`, `192.0.2.1:4711`, `192.0.2.1`
            let host = if let Some(rest) = v.strip_prefix('[') {
                rest.split(']').next().unwrap_or("")
            } else {
                match v.rsplit_once(':') {
                    Some((h, _)) if !h.contains(':') => h,
                    _ => v,
                }
            };
            hops.push(host.parse().ok());
        }
        return hops;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|h| h.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn right_most_untrusted_hop() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let ingress: IpAddr = "10.1.2.3".parse().unwrap();
        let xff = h(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.9.9.9")]);
        assert_eq!(
            t.client(ingress, &xff),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's headers are ignored.
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(t.client(outsider, &xff), outsider);
        // Nothing trusted by default.
        assert_eq!(TrustedProxies::default().client(ingress, &xff), ingress);
        // Forwarded wins over X-Forwarded-For.
        let fwd = h(&[
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https",
            ),
            ("x-forwarded-for", "192.0.2.1"),
        ]);
        assert_eq!(
            t.client(ingress, &fwd),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        // Garbage stops the walk at the last trusted hop.
        let bad = h(&[("x-forwarded-for", "6.6.6.6, garbage, 10.0.0.5")]);
        assert_eq!(
            t.client(ingress, &bad),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nope".into()]).is_err());
    }
}
