//! The token-checking tower layer wrapped around each protected gRPC service (with
//! `named_layer`, so the service keeps its name). On success the caller's [`Identity`] goes
//! into the request extensions; on failure the call ends with UNAUTHENTICATED and a short
//! reason. Anonymous services (auth metadata, health, reflection) are not wrapped.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, Either};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::auth::{AuthError, Authenticator, Identity};

/// Wraps a service so that every call must carry a valid token.
#[derive(Clone)]
pub(crate) struct AuthLayer {
    auth: Arc<Authenticator>,
    /// Flyte's `disableForGrpc`: failures continue anonymously instead of failing.
    allow_anonymous: bool,
    /// How much of a refused HTTP/1.1 request's body is read before answering (§14).
    drain_limit: usize,
}

impl AuthLayer {
    pub(crate) fn new(auth: Arc<Authenticator>, allow_anonymous: bool) -> Self {
        Self {
            auth,
            allow_anonymous,
            drain_limit: 1 << 20,
        }
    }

    /// `server.maxRequestBytes`: a refused request's body is drained up to it.
    pub(crate) fn with_drain_limit(mut self, limit: usize) -> Self {
        self.drain_limit = limit;
        self
    }
}

/// Answers a refused request: over HTTP/1.1 its body is drained first (up to `limit`), so a
/// client still streaming it reads the status instead of a reset connection.
fn refuse(
    req: http::Request<Body>,
    resp: http::Response<Body>,
    limit: usize,
) -> BoxFuture<'static, Result<http::Response<Body>, Infallible>> {
    if !crate::transport::drain::request_needs_drain(&req) {
        return Box::pin(futures_util::future::ready(Ok(resp)));
    }
    Box::pin(async move {
        let mut body = req.into_body();
        crate::transport::drain::drain(&mut body, limit).await;
        Ok(resp)
    })
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
pub(crate) struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> Service<http::Request<Body>> for AuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    /// Bearer tokens are checked synchronously (no allocation); session cookies and JWKS
    /// refetches need I/O and take the boxed path.
    type Future = Either<S::Future, BoxFuture<'static, Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let auth = self.layer.auth.clone();
        let allow_anonymous = self.layer.allow_anonymous;
        // The one decision (`Authenticator`): synchronously when it needs no I/O.
        if let Some(result) = auth.authenticate_now(req.headers(), &auth.custom_header) {
            return match decide(&auth, allow_anonymous, &mut req, result) {
                Ok(()) => Either::Left(self.inner.call(req)),
                Err(resp) => Either::Right(refuse(req, *resp, self.layer.drain_limit)),
            };
        }
        // Session cookie (store lookup) or an unknown key of an external AS (JWKS refetch).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let drain_limit = self.layer.drain_limit;
        Either::Right(Box::pin(async move {
            let result = auth
                .authenticate_call(req.headers(), &auth.custom_header, true)
                .await;
            match decide(&auth, allow_anonymous, &mut req, result) {
                Ok(()) => inner.call(req).await,
                Err(resp) => refuse(req, *resp, drain_limit).await,
            }
        }))
    }
}

/// Applies the (already counted) authentication result and the authorization rules to the
/// request: the identity goes into its extensions, or the call is answered here.
fn decide(
    auth: &Authenticator,
    allow_anonymous: bool,
    req: &mut http::Request<Body>,
    result: Result<Arc<Identity>, AuthError>,
) -> Result<(), Box<http::Response<Body>>> {
    let rpc = req.uri().path();
    match result {
        Ok(identity) => {
            if let Err(denied) = auth.rules.check(rpc, &identity) {
                tracing::info!(target: "flyteauth::audit", rpc, subject = %identity.subject, client_id = identity.client_id.as_deref().unwrap_or(""), outcome = "forbidden", rule = denied.index);
                return Err(Box::new(
                    tonic::Status::permission_denied(denied.to_string()).into_http(),
                ));
            }
            tracing::debug!(target: "flyteauth::audit", rpc, subject = %identity.subject, client_id = identity.client_id.as_deref().unwrap_or(""), outcome = "allow");
            req.extensions_mut().insert(identity);
            Ok(())
        }
        Err(e) if allow_anonymous => {
            tracing::debug!(target: "flyteauth::audit", rpc, reason = e.kind(), outcome = "anonymous");
            Ok(())
        }
        Err(e) => {
            tracing::info!(target: "flyteauth::audit", rpc, reason = e.kind(), outcome = "deny");
            let status: tonic::Status = e.into();
            Err(Box::new(status.into_http()))
        }
    }
}
