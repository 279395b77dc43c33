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
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    /// Bearer tokens are checked synchronously (no allocation); session cookies need a store
    /// lookup and take the boxed path.
    type Future = Either<S::Future, BoxFuture<'static, Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let auth = &self.layer.auth;
        if auth.credential_kind(req.headers(), &auth.custom_header)
            == super::CredentialKind::Session
        {
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let auth = auth.clone();
            let allow_anonymous = self.layer.allow_anonymous;
            return Either::Right(Box::pin(async move {
                match auth.authenticate_session(req.headers()).await {
                    Ok(identity) => {
                        tracing::debug!(target: "flyteauth::audit", rpc = req.uri().path(), subject = %identity.subject, credential = "session", outcome = "allow");
                        req.extensions_mut().insert(identity);
                        inner.call(req).await
                    }
                    Err(_) if allow_anonymous => inner.call(req).await,
                    Err(e) => {
                        tracing::info!(target: "flyteauth::audit", rpc = req.uri().path(), reason = e.kind(), credential = "session", outcome = "deny");
                        let status: tonic::Status = e.into();
                        Ok(status.into_http())
                    }
                }
            }));
        }
        let first = self.layer.auth.authenticate(req.headers());
        if matches!(first, Err(super::AuthError::UnknownKey))
            && auth.verifier.remote_jwks().is_some()
        {
            // An external AS may have rotated its keys: refetch (rate-limited) and retry.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let auth = auth.clone();
            let allow_anonymous = self.layer.allow_anonymous;
            return Either::Right(Box::pin(async move {
                match auth
                    .authenticate_refreshing(req.headers(), &auth.custom_header)
                    .await
                {
                    Ok(identity) => {
                        req.extensions_mut().insert(identity);
                        inner.call(req).await
                    }
                    Err(_) if allow_anonymous => inner.call(req).await,
                    Err(e) => {
                        tracing::info!(target: "flyteauth::audit", rpc = req.uri().path(), reason = e.kind(), outcome = "deny");
                        let status: tonic::Status = e.into();
                        Ok(status.into_http())
                    }
                }
            }));
        }
        match first {
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
                Either::Right(Box::pin(futures_util::future::ready(
                    Ok(status.into_http()),
                )))
            }
        }
    }
}
