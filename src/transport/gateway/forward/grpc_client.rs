//! The client for gRPC upstreams: one HTTP/2 connection per upstream (h2c, or h2 over TLS by
//! ALPN), driven by the `h2` crate itself rather than hyper's pooled client.
//!
//! Why: hyper's client sends a request's HEADERS and DATA frames in two writes. Its body pipe
//! waits for flow-control capacity, which h2 assigns only once the HEADERS are out, so the
//! upstream is woken twice for every unary call (and, on a shared core, flyteauth is switched
//! out twice). Here the whole unary request (headers, message, end of stream) is queued before
//! the connection task runs, and leaves in one write.
//!
//! The connection is opened on the first call and shared by all calls; when it ends (the
//! upstream closed it, a ping went unanswered) the next call opens a new one. A call whose
//! connection cannot be opened, or fails under it, is the caller's UNAVAILABLE.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::RecvStream;
use http::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tower::Service as _;

use super::Connector;

/// How often a connection in use is pinged, and how long the answer may take before the
/// connection is dropped (its calls fail, the next call reconnects). A connection that carried
/// no call since the last ping is not pinged: grpc-go servers (FlyteAdmin) answer pings on an
/// idle connection with GOAWAY `too_many_pings`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Flow-control windows, as hyper's client sets them (h2's defaults of 64 KiB would cost a
/// round trip per 64 KiB of a large response).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// Why a call did not get a response (no credential or header value in either).
#[derive(Debug)]
pub(super) enum SendError {
    Connect(String),
    Stream(h2::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Stream(e) => write!(f, "{e}"),
        }
    }
}

/// One gRPC upstream's connection.
pub(super) struct GrpcUpstream {
    connector: Connector,
    /// What the connector dials (`scheme://host:port`).
    origin: Uri,
    connect_timeout: Duration,
    /// The open connection's handle and its number (so a connection that ended forgets only
    /// itself, never its successor).
    open: Mutex<Option<(u64, SendRequest<Bytes>)>>,
    /// One connect at a time: calls that find no connection wait for the one being opened.
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    /// Calls since the keepalive last looked.
    calls: Arc<AtomicU64>,
}

impl GrpcUpstream {
    pub(super) fn new(connector: Connector, origin: Uri, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            connector,
            origin,
            connect_timeout,
            open: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(0),
            calls: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sends a call whose request message(s) are all in `body`, and waits for the response's
    /// headers. `request` carries the method, URI (with scheme and authority) and headers.
    pub(super) async fn call(
        self: &Arc<Self>,
        request: Request<()>,
        body: Bytes,
    ) -> Result<Response<RecvStream>, SendError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut request = Some(request);
        // A connection found dead before the call was sent on it is replaced once.
        for attempt in 0..2 {
            let (id, handle) = self.handle().await?;
            let mut handle = match handle.ready().await {
                Ok(h) => h,
                Err(e) => {
                    self.forget(id);
                    if attempt == 0 {
                        continue;
                    }
                    return Err(SendError::Stream(e));
                }
            };
            let request = request.take().expect("sent once");
            let end = body.is_empty();
            let (response, mut stream) = handle.send_request(request, end).map_err(|e| {
                self.forget(id);
                SendError::Stream(e)
            })?;
            if !end {
                // Queued without waiting for capacity: h2 sends it as the upstream's window
                // allows, so a message within the initial 64 KiB leaves with the HEADERS in the
                // connection task's next write.
                stream.send_data(body, true).map_err(SendError::Stream)?;
            }
            return response.await.map_err(SendError::Stream);
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The open connection's handle, or a new connection's.
    async fn handle(self: &Arc<Self>) -> Result<(u64, SendRequest<Bytes>), SendError> {
        if let Some(open) = self.current() {
            return Ok(open);
        }
        let _one = self.connecting.lock().await;
        if let Some(open) = self.current() {
            return Ok(open);
        }
        let (send, conn) = tokio::time::timeout(self.connect_timeout, self.connect())
            .await
            .map_err(|_| SendError::Connect("timed out".into()))??;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, send.clone()));
        tokio::spawn(drive(conn, Arc::downgrade(self), id, self.calls.clone()));
        Ok((id, send))
    }

    fn current(&self) -> Option<(u64, SendRequest<Bytes>)> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets connection `id` (if it is still the open one): the next call reconnects.
    fn forget(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.as_ref().is_some_and(|(open, _)| *open == id) {
            *open = None;
        }
    }

    async fn connect(&self) -> Result<(SendRequest<Bytes>, Connection), SendError> {
        let io = self
            .connector
            .clone()
            .call(self.origin.clone())
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))
    }
}

type Connection =
    h2::client::Connection<TokioIo<<Connector as tower::Service<Uri>>::Response>, Bytes>;

/// Drives one connection until it ends (the upstream closed it, or it failed), or a ping goes
/// unanswered (dropping it fails its calls); then the upstream forgets it.
async fn drive(mut conn: Connection, upstream: Weak<GrpcUpstream>, id: u64, calls: Arc<AtomicU64>) {
    let ping = conn.ping_pong();
    let keepalive = async move {
        let Some(mut ping) = ping else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(KEEPALIVE_INTERVAL).await;
            if calls.swap(0, Ordering::Relaxed) == 0 {
                continue;
            }
            match tokio::time::timeout(KEEPALIVE_TIMEOUT, ping.ping(h2::Ping::opaque())).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    };
    tokio::select! {
        ended = &mut conn => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        }
        () = keepalive => {
            tracing::warn!("upstream connection closed: a ping went unanswered for 10 s");
        }
    }
    if let Some(upstream) = upstream.upgrade() {
        upstream.forget(id);
    }
}
