//! One process, one port: every connection on `server.httpPort` is served by hyper's
//! auto (HTTP/1.1 + HTTP/2) connection, over TLS when configured; each request goes to gRPC
//! (h2c/h2, and gRPC-web through tonic-web) when it is a `POST` whose content-type is
//! `application/grpc*` (a GET never is: nginx's `auth_request` subrequest to `/me` copies the
//! gRPC call's content type), to Connect ([`crate::transport::connect`]) when it is a Connect call, else
//! to the HTTP router. The optional `server.grpc.port` serves gRPC only. Shutdown stops
//! accepting, lets in-flight calls finish (bounded), and closes the store.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{header, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::cors::CorsLayer;

use crate::transport::grpc::RequestOrigin;
use crate::transport::state::AppState;

type HttpService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// How long shutdown waits for in-flight calls before closing connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The listeners the service runs on (bound by the caller, so tests can use port 0).
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: Option<TcpListener>,
}

/// The peer address of a request, in its extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

#[derive(Clone)]
struct Dispatch {
    http: HttpService,
    grpc: HttpService,
    /// The gateway's forwarding services, when `gateway:` is configured.
    gateway: Option<GatewayServices>,
    connect: HttpService,
    grpc_only: bool,
    scheme: &'static str,
    metrics: Arc<crate::metrics::Metrics>,
    /// `server.trustedProxies` (the client's address) and `server.timeouts.body`.
    trusted_proxies: crate::transport::client_addr::TrustedProxies,
    body_timeout: Duration,
}

impl Dispatch {
    fn call(
        &self,
        peer: SocketAddr,
        mut req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> {
        let is_grpc = req.method() == http::Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let is_connect = !is_grpc && !self.grpc_only && crate::transport::connect::is_connect(&req);
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(String::from)
            });
        let ext = req.extensions_mut();
        ext.insert(RequestOrigin {
            authority,
            scheme: self.scheme,
        });
        ext.insert(PeerAddr(peer));
        if req.version() <= http::Version::HTTP_11 {
            req.extensions_mut().insert(crate::transport::drain::Http1);
        }
        let client = self.trusted_proxies.client(peer.ip(), req.headers());
        req.extensions_mut()
            .insert(crate::transport::client_addr::ClientAddr(client));
        let grpc = is_grpc || self.grpc_only;
        // gRPC over HTTP/2 may stream for long; every other body has a deadline (§14).
        let streaming = req.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes().starts_with(b"application/grpc")
                && !v.as_bytes().starts_with(b"application/grpc-web")
        });
        let body_timeout = self.body_timeout;
        // The gateway routes first: a forwarded service's Connect call is the upstream's.
        let (svc, kind) = match self
            .gateway
            .as_ref()
            .and_then(|g| g.pick(&mut req, self.grpc_only))
        {
            Some(forward) if grpc => (forward, crate::metrics::Kind::Grpc),
            Some(forward) if is_connect => (forward, crate::metrics::Kind::Connect),
            Some(forward) => (forward, crate::metrics::Kind::Http),
            None if grpc => (self.grpc.clone(), crate::metrics::Kind::Grpc),
            None if is_connect => (self.connect.clone(), crate::metrics::Kind::Connect),
            None => (self.http.clone(), crate::metrics::Kind::Http),
        };
        let histogram = self
            .metrics
            .histogram(crate::metrics::route_label(req.uri().path()), kind);
        let started = std::time::Instant::now();
        // The request id: the caller's `x-request-id` (bounded, printable) or a new one; every
        // log line of the request (the audit events included) carries it and the peer.
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_safe_request_id(v))
            .map(String::from)
            .unwrap_or_else(next_request_id);
        let span = tracing::info_span!("request", request_id = %request_id, peer = %client);
        let req = if streaming {
            req.map(Body::new)
        } else {
            req.map(|b| {
                Body::new(crate::transport::conn_limits::DeadlineBody::new(
                    b,
                    body_timeout,
                ))
            })
        };
        let call = tracing::Instrument::instrument(
            crate::transport::client_addr::scope(client, svc.oneshot(req)),
            span,
        );
        async move {
            let mut resp = call.await;
            // Unary gRPC: the handler's work is done when the response head is ready.
            histogram.observe(started.elapsed());
            if let (Ok(r), Ok(v)) = (resp.as_mut(), http::HeaderValue::from_str(&request_id)) {
                r.headers_mut().insert("x-request-id", v);
            }
            resp
        }
    }
}

/// A caller's `x-request-id` is kept only when it cannot forge a log line: 1–128 characters
/// of `[A-Za-z0-9._:-]` (UUIDs, W3C trace ids, Envoy's ids); anything else gets a new id.
pub(crate) fn is_safe_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A process-unique request id: a random per-process prefix and a counter (cheap on the hot
/// path, unique across replicas).
fn next_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::LazyLock;
    static PREFIX: LazyLock<String> = LazyLock::new(|| crate::keys::random_token()[..8].to_owned());
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{}-{:x}", *PREFIX, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// tonic reports a request message over `max_decoding_message_size` as OUT_OF_RANGE; the gRPC
/// status-code guide (and grpc-go/grpc-java) use RESOURCE_EXHAUSTED for it. The status may be
/// in the headers (trailers-only response) or in the trailers.
fn resource_exhausted_for_oversize(
    mut r: Response<tonic::body::Body>,
) -> Response<tonic::body::Body> {
    fix_oversize_status(r.headers_mut());
    r.map(|b| tonic::body::Body::new(OversizeStatusBody(b)))
}

fn fix_oversize_status(h: &mut http::HeaderMap) {
    let oversize = h.get("grpc-status").is_some_and(|s| s == "11")
        && h.get("grpc-message").is_some_and(|m| {
            let m = m.to_str().unwrap_or("");
            m.contains("message length too large") || m.contains("message%20length%20too%20large")
        });
    if oversize {
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

/// Rewrites the status in the trailers (see [`resource_exhausted_for_oversize`]).
struct OversizeStatusBody(tonic::body::Body);

impl http_body::Body for OversizeStatusBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx).map(|f| {
            f.map(|r| {
                r.map(|frame| match frame.into_trailers() {
                    Ok(mut t) => {
                        fix_oversize_status(&mut t);
                        http_body::Frame::trailers(t)
                    }
                    Err(frame) => frame,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// The gateway's services (DESIGN.md §11): gRPC and gRPC-web (translated to gRPC by tonic-web
/// in front of the forwarder), Connect, and HTTP paths; CORS as for own services.
#[derive(Clone)]
struct GatewayServices {
    gateway: Arc<crate::transport::gateway::Gateway>,
    rpc: HttpService,
    connect: HttpService,
    http: HttpService,
}

impl GatewayServices {
    fn new(gateway: Arc<crate::transport::gateway::Gateway>, cors: Option<CorsLayer>) -> Self {
        use crate::transport::gateway::Protocol;
        let g = gateway.clone();
        let rpc = ServiceBuilder::new()
            .option_layer(cors.clone())
            .layer(tonic_web::GrpcWebLayer::new())
            .service(tower::service_fn(move |req: Request<tonic::body::Body>| {
                let g = g.clone();
                async move { Ok::<_, Infallible>(g.forward_grpc(req).await) }
            }))
            .map_request(|r: Request<Body>| r)
            .map_response(|r: Response<tonic::body::Body>| r.map(Body::new));
        let http_service = |protocol: Protocol| {
            let g = gateway.clone();
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .option_layer(cors.clone())
                    .service(tower::service_fn(move |req: Request<Body>| {
                        let g = g.clone();
                        async move { Ok::<_, Infallible>(g.forward_http(req, protocol).await) }
                    }))
                    .map_request(|r: Request<Body>| r)
                    .map_response(|r: Response<Body>| r),
            )
        };
        Self {
            connect: http_service(Protocol::Connect),
            http: http_service(Protocol::Http),
            rpc: BoxCloneSyncService::new(rpc),
            gateway,
        }
    }

    /// The forwarding service for a request the gateway routes, if any.
    fn pick<B>(&self, req: &mut Request<B>, grpc_only: bool) -> Option<HttpService> {
        use crate::transport::gateway::{Protocol, Route};
        match self.gateway.route(req.uri().path())? {
            Route::Rpc(_) => match Protocol::of_rpc(req.headers()) {
                Protocol::GrpcWeb => {
                    req.extensions_mut()
                        .insert(crate::transport::gateway::GrpcWebMark);
                    Some(self.rpc.clone())
                }
                Protocol::Grpc => Some(self.rpc.clone()),
                _ if grpc_only => None,
                _ => Some(self.connect.clone()),
            },
            Route::Http(_) if !grpc_only => Some(self.http.clone()),
            Route::Http(_) => None,
        }
    }
}

/// The (gRPC, HTTP, Connect) services.
fn build_services(state: &Arc<AppState>) -> (HttpService, HttpService, HttpService) {
    let cors = crate::transport::cors::cors_layer(state);
    let routes = crate::transport::grpc::routes(state);
    // Connect calls become gRPC calls on the same routes (one auth layer for all protocols).
    let connect = ServiceBuilder::new().option_layer(cors.clone()).service(
        crate::transport::connect::ConnectService::new(
            routes.clone(),
            state.config.server.max_request_bytes,
        ),
    );
    let grpc = ServiceBuilder::new()
        .option_layer(cors.clone())
        .layer(tonic_web::GrpcWebLayer::new())
        .service(routes)
        .map_request(|r: Request<Body>| r)
        .map_response(|r: Response<tonic::body::Body>| {
            resource_exhausted_for_oversize(r).map(Body::new)
        });
    let http = ServiceBuilder::new()
        .option_layer(cors)
        .service(crate::transport::http::router(state.clone()))
        .map_request(|r: Request<Body>| r)
        .map_response(|r: Response<Body>| r);
    (
        BoxCloneSyncService::new(grpc),
        BoxCloneSyncService::new(http),
        BoxCloneSyncService::new(connect),
    )
}

/// Serves until `shutdown` resolves, then drains.
pub async fn run(
    state: Arc<AppState>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = crate::transport::tls::tls_acceptor(&state)?;
    let background = crate::transport::background::spawn_background(&state);
    // One bounded first attempt before serving, so a reachable IdP / AS is known from the first
    // request on; an unreachable one is retried in the background (it never blocks start-up).
    let first_attempt = async {
        if let Some(o) = &state.oidc {
            let _ = o.discover().await;
        }
        if let Some(ext) = &state.external {
            if let Ok(m) = ext.refresh().await {
                state
                    .authenticator
                    .verifier
                    .set_issuers(vec![m.issuer.clone()]);
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), first_attempt).await;
    let discovery = state.oidc.as_ref().map(|o| o.spawn_discovery());
    let external = state.external.as_ref().map(|ext| {
        let st = state.clone();
        ext.spawn(move |m| {
            st.authenticator
                .verifier
                .set_issuers(vec![m.issuer.clone()])
        })
    });
    let (grpc, http, connect) = build_services(&state);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let gateway = state
        .gateway
        .clone()
        .map(|g| GatewayServices::new(g, crate::transport::cors::cors_layer(&state)));
    if let Some(g) = &gateway {
        let names: Vec<&str> = g.gateway.upstream_names().collect();
        tracing::info!(upstreams = ?names, "gateway: forwarding to upstreams");
    }
    let main = Dispatch {
        http: http.clone(),
        grpc: grpc.clone(),
        gateway,
        connect,
        grpc_only: false,
        scheme,
        metrics: state.metrics.clone(),
        trusted_proxies: state.config.server.trusted_proxies.clone(),
        body_timeout: state.config.server.timeouts.body,
    };
    let server_cfg = &state.config.server;
    let limits = Arc::new(ConnSettings {
        caps: crate::transport::conn_limits::ConnLimits::new(
            server_cfg.max_connections,
            server_cfg.max_connections_per_address,
            server_cfg.trusted_proxies.clone(),
        ),
        handshake: server_cfg.timeouts.handshake,
        request_head: server_cfg.timeouts.request_head,
        max_concurrent_streams: server_cfg.max_concurrent_streams,
    });
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(accept_loop(
        listeners.http,
        main.clone(),
        tls.clone(),
        graceful.clone(),
        stop_rx.clone(),
        limits.clone(),
    ));
    if let Some(l) = listeners.grpc {
        let d = Dispatch {
            grpc_only: true,
            ..main
        };
        tasks.spawn(accept_loop(
            l,
            d,
            tls,
            graceful.clone(),
            stop_rx.clone(),
            limits.clone(),
        ));
    }

    // `metrics.port`: `/metrics` on its own listener, off the public port (§14).
    if let Some(port) = state.config.server.metrics_port {
        let listener = match TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, port)).await {
            Ok(l) => l,
            Err(_) => TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port))
                .await
                .map_err(|e| anyhow::anyhow!("metrics.port: cannot listen on {port}: {e}"))?,
        };
        let app = crate::transport::http::metrics_router(state.clone());
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        });
    }

    shutdown.await;
    tracing::info!("shutting down: no new connections, draining in-flight calls");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| unreachable!("accept loops ended"));
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timed out; closing remaining connections"),
    }
    background.abort();
    for task in [discovery, external].into_iter().flatten() {
        task.abort();
    }
    // A database that went silent must not keep the process alive.
    if tokio::time::timeout(Duration::from_secs(5), state.store.close())
        .await
        .is_err()
    {
        tracing::warn!("closing the database pool timed out");
    }
    Ok(())
}

/// The connection caps and deadlines of the listeners (§14).
struct ConnSettings {
    caps: Arc<crate::transport::conn_limits::ConnLimits>,
    handshake: Duration,
    request_head: Duration,
    /// `server.grpc.maxConcurrentStreams` (HTTP/2), when set.
    max_concurrent_streams: Option<u32>,
}

async fn accept_loop(
    listener: TcpListener,
    dispatch: Dispatch,
    tls: Option<TlsAcceptor>,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    limits: Arc<ConnSettings>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // Over a cap: the connection is closed at once (its descriptor freed).
        let Some(permit) = limits.caps.try_acquire(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many open connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let dispatch = dispatch.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, dispatch, tls, watcher, &limits).await;
            drop(permit);
        });
    }
}

fn builder(limits: &ConnSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_head)
        .max_buf_size(64 * 1024);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20));
    if let Some(n) = limits.max_concurrent_streams {
        b.http2().max_concurrent_streams(n);
    }
    b
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    dispatch: Dispatch,
    tls: Option<TlsAcceptor>,
    watcher: Watcher,
    limits: &ConnSettings,
) {
    let b = builder(limits);
    let svc = hyper::service::service_fn(move |req| dispatch.call(peer, req));
    // A socket that never sends a byte is closed after `server.timeouts.handshake`.
    let stream = crate::transport::conn_limits::FirstByteDeadline::new(stream, limits.handshake);
    let result = match tls {
        None => {
            let conn = b.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            watcher.watch(conn).await
        }
        Some(acceptor) => {
            let handshake = tokio::time::timeout(limits.handshake, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // After the handshake, the first request's bytes have the same deadline.
            let stream =
                crate::transport::conn_limits::FirstByteDeadline::new(stream, limits.handshake);
            let conn = b.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            watcher.watch(conn).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
