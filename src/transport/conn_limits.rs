//! Connection caps and deadlines (DESIGN.md §14): at most `server.maxConnections` open
//! connections and `server.maxConnectionsPerAddress` per peer address (a trusted proxy is
//! exempt from the latter), a deadline for a connection's first bytes
//! (`server.timeouts.handshake`) and for a request's body (`server.timeouts.body`). The head
//! deadline (`server.timeouts.requestHead`) is hyper's HTTP/1 header read timeout.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::transport::client_addr::TrustedProxies;

/// Counts open connections, in total and per address.
pub(crate) struct ConnLimits {
    total: Arc<Semaphore>,
    per_address: DashMap<IpAddr, usize>,
    max_per_address: usize,
    exempt: TrustedProxies,
}

/// One open connection; dropping it frees its place.
pub(crate) struct ConnPermit {
    _total: OwnedSemaphorePermit,
    addr: Option<IpAddr>,
    limits: Arc<ConnLimits>,
}

impl ConnLimits {
    pub(crate) fn new(max: usize, max_per_address: usize, exempt: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(max)),
            per_address: DashMap::new(),
            max_per_address,
            exempt,
        })
    }

    /// A place for a connection from `addr`, or `None` when a cap is reached.
    pub(crate) fn try_acquire(self: &Arc<Self>, addr: IpAddr) -> Option<ConnPermit> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let addr = if self.exempt.contains(addr) {
            None
        } else {
            let mut n = self.per_address.entry(addr).or_insert(0);
            if *n >= self.max_per_address {
                return None;
            }
            *n += 1;
            Some(addr)
        };
        Some(ConnPermit {
            _total: total,
            addr,
            limits: self.clone(),
        })
    }

    /// Open connections now.
    #[cfg(test)]
    fn open(&self, max: usize) -> usize {
        max - self.total.available_permits()
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(addr) = self.addr {
            self.limits.per_address.remove_if_mut(&addr, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
    }
}

/// An I/O stream that fails with `TimedOut` when its first byte does not arrive in time: a
/// socket that never speaks cannot keep its connection (hyper's protocol detection and the
/// TLS handshake wait for it without a deadline of their own).
pub(crate) struct FirstByteDeadline<IO> {
    inner: IO,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<IO> FirstByteDeadline<IO> {
    pub(crate) fn new(inner: IO, within: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep_until(Instant::now() + within))),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = match this.deadline.as_mut() {
                    Some(d) => d.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no bytes in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that must arrive completely before a deadline; after it, reading fails (the
/// handler answers its protocol's error and the connection is freed).
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, within: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + within)),
        }
    }
}

/// The error of a body that did not arrive in time.
#[derive(Debug)]
pub(crate) struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(f.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_address_and_frees_on_drop() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let l = ConnLimits::new(3, 2, TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none(), "per address");
        let _p3 = l.try_acquire(proxy).unwrap();
        assert!(l.try_acquire(proxy).is_none(), "in total");
        drop(p1);
        assert!(l.try_acquire(a).is_some(), "freed on drop");
        assert_eq!(l.open(3), 2);
    }
}
