//! Forwarding: the upstream clients (h2c / TLS for gRPC, HTTP/1.1 or h2 for Connect and REST),
//! the rewriting of a call on its way out and back, and the mapping of every failure to the
//! caller's protocol (gRPC status, Connect error JSON, grpc-gateway JSON) — never UNKNOWN or
//! INTERNAL for an upstream that is down or slow.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::config::Upstream;
use super::{authorize, identity, CallInfo, Gateway, Route};
use crate::config::ConfigError;
use crate::transport::gzip::{self, GunzipError};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type UpstreamHttp = Client<Connector, Full<Bytes>>;

/// How long connecting to an upstream may take before the call is UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The protocol of a forwarded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    /// gRPC-web from a browser, forwarded as gRPC.
    GrpcWeb,
    Connect,
    /// A plain HTTP path under `httpPrefixes` (grpc-gateway REST).
    Http,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::Connect => "connect",
            Self::Http => "http",
        }
    }

    /// The protocol of a request the gateway routed as an RPC (by content type).
    pub fn of_rpc(headers: &HeaderMap) -> Self {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if ct.starts_with(b"application/grpc-web") {
            Self::GrpcWeb
        } else if ct.starts_with(b"application/grpc") {
            Self::Grpc
        } else {
            Self::Connect
        }
    }
}

/// One configured upstream and its clients.
pub(super) struct UpstreamClient {
    pub cfg: Upstream,
    /// `scheme://host:port` (no trailing slash).
    origin: String,
    /// HTTP/2 only (h2c or h2 by ALPN): gRPC.
    grpc: Arc<GrpcUpstream>,
    /// HTTP/1.1, or h2 when TLS negotiates it: Connect and REST.
    http: UpstreamHttp,
}

impl UpstreamClient {
    pub(super) fn new(index: usize, cfg: &Upstream) -> Result<Self, ConfigError> {
        let key = format!("gateway.upstreams[{index}].caCertFile");
        let mut roots = rustls::RootCertStore::empty();
        if cfg.tls {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if let Some(path) = &cfg.ca_cert_file {
                use rustls::pki_types::pem::PemObject;
                let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        ConfigError::new(&key, format!("cannot read {}: {e}", path.display()))
                    })?;
                if certs.is_empty() {
                    return Err(ConfigError::new(
                        &key,
                        format!("no certificate in {}", path.display()),
                    ));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| ConfigError::new(&key, format!("{}: {e}", path.display())))?;
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(&key, e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let h2 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http2()
            .wrap_connector(tcp.clone());
        let any = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp);
        let origin = cfg.base.origin().ascii_serialization();
        let dial: http::Uri = origin.parse().map_err(|_| {
            ConfigError::new(
                format!("gateway.upstreams[{index}].url"),
                format!("{origin} is not a URL"),
            )
        })?;
        let grpc = GrpcUpstream::new(h2, dial, CONNECT_TIMEOUT);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(any);
        Ok(Self {
            origin,
            cfg: cfg.clone(),
            grpc,
            http,
        })
    }

    pub(super) fn serves(&self, service: &str) -> bool {
        self.cfg.services.iter().any(|s| s == service)
            || self
                .cfg
                .service_prefixes
                .iter()
                .any(|p| service.starts_with(p.as_str()))
    }
}

mod errors;
use errors::{error_response, CallError};
mod grpc_client;
use grpc_client::GrpcUpstream;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and ones the gateway sets itself.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::HOST,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
}

/// flyteauth's own session and CSRF cookies (and the CSRF header) are credentials for
/// flyteauth, not for the upstream: they are not forwarded; other cookies are.
fn strip_own_cookies(h: &mut HeaderMap) {
    h.remove(crate::auth::CSRF_HEADER);
    let kept: Vec<String> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| {
            let name = c.split('=').next().unwrap_or("");
            let name = name.strip_prefix("__Host-").unwrap_or(name);
            !c.is_empty()
                && name != crate::transport::http::cookies::SESSION
                && name != crate::transport::http::cookies::CSRF
        })
        .map(String::from)
        .collect();
    h.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            h.insert(header::COOKIE, v);
        }
    }
}

/// `grpc-timeout` (gRPC over HTTP/2 §Requests) or `connect-timeout-ms`.
fn deadline(h: &HeaderMap, protocol: Protocol) -> Option<Duration> {
    match protocol {
        Protocol::Grpc | Protocol::GrpcWeb => {
            let v = h.get("grpc-timeout")?.to_str().ok()?;
            if v.len() < 2 || v.len() > 9 {
                return None;
            }
            let (n, unit) = v.split_at(v.len() - 1);
            let n: u64 = n.parse().ok()?;
            Some(match unit {
                "H" => Duration::from_secs(n.saturating_mul(3600)),
                "M" => Duration::from_secs(n.saturating_mul(60)),
                "S" => Duration::from_secs(n),
                "m" => Duration::from_millis(n),
                "u" => Duration::from_micros(n),
                "n" => Duration::from_nanos(n),
                _ => return None,
            })
        }
        Protocol::Connect => {
            let v = h.get("connect-timeout-ms")?.to_str().ok()?;
            v.parse().ok().map(Duration::from_millis)
        }
        Protocol::Http => None,
    }
}

/// Checks a gRPC request body's length-prefixed messages against the size limit; returns the
/// first message and whether its compressed flag is set.
fn grpc_messages(body: &Bytes, max: usize) -> Result<Option<(bool, &[u8])>, CallError> {
    let mut rest: &[u8] = body;
    let mut first = None;
    while !rest.is_empty() {
        if rest.len() < 5 {
            return Err(CallError::Malformed("truncated gRPC message"));
        }
        let compressed = rest[0] & 1 == 1;
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len > max {
            return Err(CallError::TooLarge);
        }
        if rest.len() < 5 + len {
            return Err(CallError::Malformed("truncated gRPC message"));
        }
        if first.is_none() {
            first = Some((compressed, &rest[5..5 + len]));
        }
        rest = &rest[5 + len..];
    }
    Ok(first)
}

/// The request message the decision reads: the first gRPC message, or a Connect / REST body;
/// gzip-compressed ones inflated (at most `max` bytes, for the decision only: the upstream
/// gets the body as sent), and only when `inflate` (per-project bindings read the message).
/// Another encoding leaves it `None`, decided as an empty message.
fn first_message<'a>(
    protocol: Protocol,
    headers: &HeaderMap,
    body: &'a Bytes,
    max: usize,
    inflate: bool,
) -> Result<Option<Cow<'a, [u8]>>, CallError> {
    let encoding = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
    };
    let (message, encoding) = match protocol {
        Protocol::Grpc | Protocol::GrpcWeb => match grpc_messages(body, max)? {
            None => return Ok(None),
            Some((false, m)) => (m, None),
            Some((true, m)) => (m, Some(encoding("grpc-encoding").unwrap_or("unknown"))),
        },
        Protocol::Connect | Protocol::Http if body.is_empty() => return Ok(None),
        Protocol::Connect | Protocol::Http => {
            (&body[..], encoding(header::CONTENT_ENCODING.as_str()))
        }
    };
    match encoding {
        None => Ok(Some(Cow::Borrowed(message))),
        Some(e) if inflate && e.eq_ignore_ascii_case("gzip") => match gzip::gunzip(message, max) {
            Ok(m) => Ok(Some(Cow::Owned(m))),
            Err(GunzipError::TooLarge) => Err(CallError::TooLarge),
            Err(GunzipError::Invalid) => Err(CallError::Malformed(
                "the request message is not valid gzip",
            )),
        },
        Some(_) => Ok(None),
    }
}

impl Gateway {
    fn count(&self, upstream: &str, protocol: Protocol, code: &str) {
        self.deps.metrics.inc(
            "flyteauth_gateway_calls_total",
            &[
                ("upstream", upstream),
                ("protocol", protocol.label()),
                ("code", code),
            ],
        );
    }

    /// Forwards a gRPC call (gRPC-web arrives here already translated by tonic-web).
    pub async fn forward_grpc(
        self: Arc<Self>,
        req: Request<tonic::body::Body>,
    ) -> Response<tonic::body::Body> {
        let web = req.headers().get("x-grpc-web").is_some()
            || req.extensions().get::<GrpcWebMark>().is_some();
        let protocol = if web {
            Protocol::GrpcWeb
        } else {
            Protocol::Grpc
        };
        match self.clone().forward(req, protocol).await {
            Ok(resp) => resp.map(tonic::body::Body::new),
            Err(e) => error_response(protocol, e).map(tonic::body::Body::new),
        }
    }

    /// Forwards a Connect call or an HTTP path.
    pub async fn forward_http(
        self: Arc<Self>,
        req: Request<axum::body::Body>,
        protocol: Protocol,
    ) -> Response<axum::body::Body> {
        match self.clone().forward(req, protocol).await {
            Ok(resp) => resp,
            Err(e) => error_response(protocol, e),
        }
    }

    async fn forward<B>(
        self: Arc<Self>,
        req: Request<B>,
        protocol: Protocol,
    ) -> Result<Response<axum::body::Body>, CallError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        let route = self.route(&path);
        let index = match (route, protocol) {
            (Some(Route::Rpc(i)), Protocol::Grpc | Protocol::GrpcWeb | Protocol::Connect) => i,
            (Some(Route::Http(i)), Protocol::Http) => i,
            _ => return Err(CallError::NoRoute),
        };
        let upstream = &self.upstreams[index];
        let name = upstream.cfg.name.as_str();
        let rpc = protocol != Protocol::Http;
        let method_name = if rpc {
            path.trim_start_matches('/').to_owned()
        } else {
            crate::auth::rules::rest_method(&parts.method, &path)
                .map(String::from)
                .unwrap_or_else(|| path.clone())
        };

        // 1. Authenticate: the same decision as flyteauth's own services.
        let d = &self.deps;
        let identity = if d.use_auth {
            let (token_header, anonymous_ok) = if rpc {
                (&d.grpc_token_header, d.disable_for_grpc)
            } else {
                (&d.http_token_header, d.disable_for_http)
            };
            let safe = !rpc && matches!(parts.method, http::Method::GET | http::Method::HEAD);
            match d
                .auth
                .authenticate_call(&parts.headers, token_header, !safe)
                .await
            {
                Ok(id) => Some(id),
                Err(e) if anonymous_ok => {
                    tracing::debug!(target: "flyteauth::audit", event = "forward", route = %method_name, upstream = name, reason = e.kind(), decision = "anonymous");
                    None
                }
                Err(e) => {
                    tracing::info!(target: "flyteauth::audit", event = "forward", route = %method_name, upstream = name, reason = e.kind(), decision = "deny");
                    self.count(name, protocol, "refused");
                    return Err(CallError::Auth(e));
                }
            }
        } else {
            None
        };

        // 2. The request message(s), bounded like flyteauth's own (unary and server-streaming
        //    calls send one message).
        let max = d.max_request_bytes;
        let limit = if rpc { max.saturating_add(5) } else { max };
        let body = match Limited::new(body, limit).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                let too_large = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                self.count(name, protocol, "refused");
                return Err(if too_large {
                    CallError::TooLarge
                } else {
                    CallError::Cancelled
                });
            }
        };
        let inflate = d.authorizer.is_some();
        let first_message = first_message(protocol, &parts.headers, &body, max, inflate)
            .inspect_err(|_| self.count(name, protocol, "refused"))?;
        let first_message = first_message.as_deref();

        // 3. Authorize.
        let subject = identity.as_ref().map(|i| i.subject.as_str()).unwrap_or("");
        if let Some(id) = &identity {
            let call = CallInfo {
                method: &method_name,
                protocol,
                first_message,
            };
            if let Err(denied) = authorize(&d.auth, d.authorizer.as_deref(), id, &call) {
                tracing::info!(target: "flyteauth::audit", event = "forward", route = %method_name, upstream = name, subject, decision = "forbidden", reason = %denied);
                self.count(name, protocol, "refused");
                return Err(CallError::Forbidden(denied));
            }
        }
        // Allowed calls at debug, as for own services (docs/DEPLOYMENT.md): a line per call at
        // info would cost every forwarded call a formatted write to stderr.
        tracing::debug!(target: "flyteauth::audit", event = "forward", route = %method_name, upstream = name, subject, decision = "allow");

        // 4. Rewrite and forward.
        let h = &mut parts.headers;
        let original_host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                h.get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            });
        strip_hop_by_hop(h);
        strip_own_cookies(h);
        identity::strip(h, &self.headers);
        if let Some(id) = &identity {
            let groups = d.auth.rules.groups(id);
            let jwt = self.minter.jwt(name, id, &groups);
            identity::set(h, &self.headers, id, &groups, jwt);
        }
        if let Some(peer) = parts.extensions.get::<crate::transport::server::PeerAddr>() {
            if let Ok(v) = HeaderValue::from_str(&peer.0.ip().to_string()) {
                h.append("x-forwarded-for", v);
            }
        }
        if let Some(host) = original_host.and_then(|o| HeaderValue::from_str(&o).ok()) {
            h.insert("x-forwarded-host", host);
        }
        if let Some(o) = parts
            .extensions
            .get::<crate::transport::grpc::RequestOrigin>()
        {
            h.insert("x-forwarded-proto", HeaderValue::from_static(o.scheme));
        }
        h.remove(header::CONTENT_LENGTH);
        let grpc = matches!(protocol, Protocol::Grpc | Protocol::GrpcWeb);
        if grpc {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.remove("x-grpc-web");
        }
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri: http::Uri = format!("{}{pq}", upstream.origin)
            .parse()
            .map_err(|_| CallError::Malformed("request path not forwardable"))?;
        let timeout = deadline(&parts.headers, protocol);
        let started = Instant::now();
        let deadline_exceeded = || {
            tracing::info!(upstream = name, route = %method_name, "upstream deadline exceeded");
            self.count(name, protocol, "deadline");
            CallError::Deadline(name.to_owned())
        };
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(upstream = name, route = %method_name, error = %e, "upstream unavailable");
            self.count(name, protocol, "unavailable");
            CallError::Unavailable(name.to_owned())
        };
        if !grpc {
            let out = outgoing(&mut parts, uri, Full::new(body))?;
            let resp = within(timeout, upstream.http.request(out))
                .await
                .ok_or_else(deadline_exceeded)?
                .map_err(|e| unavailable(&e))?;
            let (rparts, rbody) = self.received(name, started, resp);
            self.count(name, protocol, status_label(rparts.status));
            return Ok(Response::from_parts(rparts, axum::body::Body::new(rbody)));
        }
        let mut out = outgoing(&mut parts, uri, ())?;
        *out.version_mut() = http::Version::HTTP_2;
        let resp = within(timeout, upstream.grpc.call(out, body))
            .await
            .ok_or_else(deadline_exceeded)?
            .map_err(|e| unavailable(&e))?;
        let (rparts, rbody) = self.received(name, started, resp);
        // A trailers-only response carries the status in its headers.
        let code = rparts
            .headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(code_label);
        if let Some(code) = code {
            // Trailers-only: nothing may follow the headers (an empty body ends the stream
            // with the HEADERS frame, as gRPC requires).
            self.count(name, protocol, code);
            return Ok(Response::from_parts(rparts, axum::body::Body::empty()));
        }
        let body = GrpcBody {
            inner: rbody,
            data_done: false,
            deadline: timeout
                .map(|t| Box::pin(tokio::time::sleep(t.saturating_sub(started.elapsed())))),
            upstream: name.to_owned(),
            gateway: Some(self.clone()),
            protocol,
            done: false,
        };
        Ok(Response::from_parts(rparts, axum::body::Body::new(body)))
    }
}

impl Gateway {
    /// The upstream's response head, timed and without hop-by-hop headers.
    fn received<B>(
        &self,
        upstream: &str,
        started: Instant,
        resp: Response<B>,
    ) -> (http::response::Parts, B) {
        self.deps
            .metrics
            .observe(upstream, crate::metrics::Kind::Upstream, started.elapsed());
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        (parts, body)
    }
}

/// The request to the upstream: the caller's method and (rewritten) headers, the upstream's URI.
fn outgoing<B>(
    parts: &mut http::request::Parts,
    uri: http::Uri,
    body: B,
) -> Result<Request<B>, CallError> {
    let mut out = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .body(body)
        .map_err(|_| CallError::Malformed("request not forwardable"))?;
    *out.headers_mut() = std::mem::take(&mut parts.headers);
    Ok(out)
}

/// `call`'s result, or `None` when `timeout` passed first.
async fn within<T>(
    timeout: Option<Duration>,
    call: impl std::future::Future<Output = T>,
) -> Option<T> {
    match timeout {
        Some(t) => tokio::time::timeout(t, call).await.ok(),
        None => Some(call.await),
    }
}

/// Marks a request tonic-web translated from gRPC-web (set by the server's dispatch).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrpcWebMark;

mod body;
use body::{code_label, status_label, GrpcBody};

#[cfg(test)]
mod tests;
