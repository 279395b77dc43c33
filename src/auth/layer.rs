//! The token-checking tower layer wrapped around each protected gRPC service (with
//! `named_layer`, so the service keeps its name). On success the caller's [`Identity`] goes
//! into the request extensions; on failure the call ends with UNAUTHENTICATED and a short
//! reason. Anonymous services (auth metadata, health, reflection) are not wrapped.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready};
use tonic::body::Body;
use tower::{Layer, Service};

use super::Authenticator;

/// Wraps a service so that every call must carry a valid token.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
    /// Flyte's `disableForGrpc`: failures continue anonymously instead of failing.
    allow_anonymous: bool,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>, allow_anonymous: bool) -> Self {
        Self {
            auth,
            allow_anonymous,
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> Service<http::Request<Body>> for AuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        match self.layer.auth.authenticate(req.headers()) {
            Ok(identity) => {
                tracing::debug!(
                    target: "flyteauth::audit",
                    rpc = req.uri().path(),
                    subject = %identity.subject,
                    client_id = identity.client_id.as_deref().unwrap_or(""),
                    outcome = "allow",
                );
                req.extensions_mut().insert(identity);
                Either::Left(self.inner.call(req))
            }
            Err(e) if self.layer.allow_anonymous => {
                tracing::debug!(target: "flyteauth::audit", rpc = req.uri().path(), reason = e.kind(), outcome = "anonymous");
                Either::Left(self.inner.call(req))
            }
            Err(e) => {
                tracing::info!(target: "flyteauth::audit", rpc = req.uri().path(), reason = e.kind(), outcome = "deny");
                let status: tonic::Status = e.into();
                Either::Right(futures_util::future::ready(Ok(status.into_http())))
            }
        }
    }
}
