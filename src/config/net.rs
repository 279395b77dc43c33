//! Typed values the configuration hands to the transports: the trusted proxies' address
//! ranges, the cookies' SameSite policy.

use std::net::IpAddr;

use cookie::SameSite;

/// Addresses and CIDR ranges whose forwarding headers are believed. Empty by default.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `192.168.1.7`, `fd00::/8`, …
    pub fn parse(entries: &[String]) -> Result<Self, (usize, String)> {
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let e = e.trim();
            let (addr, len) = match e.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (e, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| (i, format!("{e:?} is not an IP address or CIDR")))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len =
                match len {
                    None => max,
                    Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| {
                        (i, format!("{e:?}: the prefix length must be 0..={max}"))
                    })?,
                };
            out.push((ip, len));
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|(net, len)| in_net(ip, canonical(*net), *len))
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Flyte's `sameSitePolicy` names (`DefaultMode` is flyteauth's default, Lax).
pub(crate) fn parse_same_site(policy: &str) -> Result<SameSite, String> {
    match policy {
        "" | "DefaultMode" | "LaxMode" => Ok(SameSite::Lax),
        "StrictMode" => Ok(SameSite::Strict),
        "NoneMode" => Ok(SameSite::None),
        other => Err(format!(
            "unknown policy {other:?}: use DefaultMode, LaxMode, StrictMode or NoneMode"
        )),
    }
}
