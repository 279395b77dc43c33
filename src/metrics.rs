//! Prometheus metrics in text exposition format, without a metrics framework: counters and
//! histograms keyed by a small, bounded label set (never a token, never a user-controlled
//! unbounded value: paths are mapped to known routes, clients to configured ids).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

/// Distinct `route` labels kept per kind (the served RPCs and HTTP routes are far fewer).
const MAX_ROUTES: usize = 256;

/// Latency buckets in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// A latency histogram of one route and kind.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// A handle on one counter (name and labels resolved once), for hot paths.
#[derive(Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a request was served as (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Grpc,
    Http,
    /// A call forwarded by the gateway, timed to the upstream's response head; the route is
    /// the upstream's configured name.
    Upstream,
    /// Connect unary calls (translated to gRPC on the same routes).
    Connect,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
            Self::Upstream => "upstream",
            Self::Connect => "connect",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    counters: DashMap<(&'static str, String), Arc<AtomicU64>>,
    /// By route, one map per [`Kind`] (looked up by `&str`: no allocation per request).
    histograms: [DashMap<Box<str>, Arc<Histogram>>; 4],
}

/// Formats `k="v",…` label pairs, each value escaped for the text format, into one string
/// (it is built for every counted event, so without intermediate allocations).
pub(crate) fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

impl Metrics {
    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1);
    }

    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], n: u64) {
        self.counter(name, pairs).0.fetch_add(n, Ordering::Relaxed);
    }

    /// The counter `name{pairs}`, registered (at zero) if new.
    pub fn counter(&self, name: &'static str, pairs: &[(&str, &str)]) -> Counter {
        let key = (name, labels(pairs));
        if let Some(c) = self.counters.get(&key) {
            return Counter(c.clone());
        }
        Counter(self.counters.entry(key).or_default().clone())
    }

    /// The latency histogram of `route` (a known route or RPC, or "other") and `kind`.
    /// A gRPC route is any method name under a served service, so a caller could invent
    /// routes without end: past [`MAX_ROUTES`] per kind, new ones count as "other".
    pub fn histogram(&self, route: &str, kind: Kind) -> Arc<Histogram> {
        let map = &self.histograms[kind as usize];
        if let Some(h) = map.get(route) {
            return h.clone();
        }
        let route = if map.len() < MAX_ROUTES {
            route
        } else {
            "other"
        };
        map.entry(route.into()).or_default().clone()
    }

    /// Records a request's latency for `route` and `kind`.
    pub fn observe(&self, route: &str, kind: Kind, elapsed: Duration) {
        self.histogram(route, kind).observe(elapsed);
    }

    /// The text exposition; `gauges` are computed by the caller at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let mut counters: Vec<_> = self
            .counters
            .iter()
            .map(|e| {
                (
                    e.key().0,
                    e.key().1.clone(),
                    e.value().load(Ordering::Relaxed),
                )
            })
            .collect();
        counters.sort();
        let mut last = "";
        for (name, labels, v) in &counters {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
        let _ = writeln!(out, "# TYPE flyteauth_request_duration_seconds histogram");
        let mut hs: Vec<(String, Arc<Histogram>)> =
            [Kind::Grpc, Kind::Http, Kind::Upstream, Kind::Connect]
                .into_iter()
                .flat_map(|kind| {
                    self.histograms[kind as usize].iter().map(move |e| {
                        let key = labels(&[("route", e.key()), ("kind", kind.label())]);
                        (key, e.value().clone())
                    })
                })
                .collect();
        hs.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, h) in hs {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "flyteauth_request_duration_seconds_bucket{{{key},le=\"{b}\"}} {}",
                    h.buckets[i].load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "flyteauth_request_duration_seconds_bucket{{{key},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "flyteauth_request_duration_seconds_sum{{{key}}} {}",
                h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "flyteauth_request_duration_seconds_count{{{key}}} {count}"
            );
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

/// The gRPC methods the protos compiled into this binary declare (`/pkg.Service/Method`),
/// plus health and reflection: only these get a route label of their own (§14).
static GRPC_METHODS: std::sync::LazyLock<std::collections::HashSet<String>> =
    std::sync::LazyLock::new(|| {
        use prost::Message;
        let mut set: std::collections::HashSet<String> = [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        if let Ok(fds) = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET) {
            for file in &fds.file {
                let package = file.package();
                for service in &file.service {
                    for method in &service.method {
                        set.insert(format!("/{package}.{}/{}", service.name(), method.name()));
                    }
                }
            }
        }
        set
    });

/// The label for a request path: the gRPC methods declared by the protos served here and the
/// HTTP routes are kept; anything else is "other" (paths are user-controlled, and an invented
/// method name must not create a label).
pub(crate) fn route_label(path: &str) -> &str {
    const HTTP: [&str; 22] = [
        "/healthcheck",
        "/metrics",
        "/me",
        "/login",
        "/logout",
        "/callback",
        "/console",
        "/console/app.js",
        "/oauth2/authorize",
        "/oauth2/authorize_callback",
        "/oauth2/token",
        "/oauth2/jwks",
        "/oauth2/revoke",
        "/oauth2/introspect",
        "/oauth2/device",
        "/oauth2/device_authorization",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/config/v1/flyte_client",
        "/api/v1/projects",
        "/api/v1/domains",
        "/console/",
    ];
    if path.len() < 160 && GRPC_METHODS.contains(path) {
        return path;
    }
    if HTTP.contains(&path) {
        return path;
    }
    if path.starts_with("/api/v1/projects/") {
        return "/api/v1/projects/{id}";
    }
    "other"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.inc(
            "flyteauth_authn_total",
            &[("outcome", "deny"), ("reason", "expired")],
        );
        m.inc(
            "flyteauth_authn_total",
            &[("outcome", "deny"), ("reason", "expired")],
        );
        m.observe("/oauth2/token", Kind::Http, Duration::from_millis(3));
        m.counter("flyteauth_authn_total", &[("outcome", "allow")])
            .inc();
        let text = m.render(&[("flyteauth_up", "1 when serving", 1.0)]);
        assert!(
            text.contains("flyteauth_authn_total{outcome=\"deny\",reason=\"expired\"} 2"),
            "{text}"
        );
        assert!(text.contains("flyteauth_authn_total{outcome=\"allow\"} 1"));
        assert!(text.contains(
            "flyteauth_request_duration_seconds_count{route=\"/oauth2/token\",kind=\"http\"} 1"
        ));
        assert_eq!(route_label("/api/v1/projects/abc"), "/api/v1/projects/{id}");
        // Invented method names under a served service do not grow the label set without end.
        for i in 0..2 * MAX_ROUTES {
            let path = format!("/flyteidl.service.AdminService/Nope{i}");
            m.observe(route_label(&path), Kind::Grpc, Duration::from_millis(1));
        }
        assert!(m.histograms[Kind::Grpc as usize].len() <= MAX_ROUTES + 1);
        assert_eq!(route_label("/random/123"), "other");
        // §14: an invented method of a served service, or of an invented service, is "other".
        assert_eq!(route_label("/flyteidl.service.AdminService/Nope1"), "other");
        assert_eq!(route_label("/flyteidl2.auth.Invented/Call"), "other");
        assert_eq!(route_label("/grpc.reflection.v9/X"), "other");
        assert_eq!(route_label("/login/extra"), "other");
        assert_eq!(
            route_label("/flyteidl.service.IdentityService/UserInfo"),
            "/flyteidl.service.IdentityService/UserInfo"
        );
        assert_eq!(
            route_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(
            route_label("/flyteidl.service.AdminService/ListProjects"),
            "/flyteidl.service.AdminService/ListProjects"
        );
    }

    /// A label value can never end its quotes or its line in the exposition.
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("client", "a\"b\\c\nd"), ("grant", "refresh_token")]),
            r#"client="a\"b\\c\nd",grant="refresh_token""#
        );
        assert_eq!(labels(&[]), "");
    }
}
