//! Authentication and authorization of every request, when `TASK_AUTH_TOKENS_FILE` is set: the
//! caller is identified by its bearer token or its client certificate ([`crate::auth`]), must
//! have the scope its method needs, and is then known to the layers below (the rate limiter keys
//! on it) and to the request's span (`enduser.id`). Health stays open for probes; reflection
//! follows `TASK_REFLECTION`. The token itself is removed from the request once checked.

use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use middleware::ClientIdentity;
use tower::{Layer, Service};

use crate::{
    auth::{Authenticator, Caller, Credential, Scope},
    config::Reflection,
    error::{AuthError, BoxError},
    transport::PeerInfo,
};

/// Wraps services in [`Auth`].
#[derive(Clone, Debug)]
pub struct AuthLayer {
    authenticator: Authenticator,
    reflection: Reflection,
}

impl AuthLayer {
    /// Checks requests against `authenticator`'s callers; reflection as `reflection` says.
    pub fn new(authenticator: Authenticator, reflection: Reflection) -> Self {
        Self {
            authenticator,
            reflection,
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module.
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

/// What a path needs.
enum Needs {
    /// Nothing (health, and reflection when open).
    Nothing,
    /// An authenticated caller with at least this scope.
    Scope(Scope),
}

/// The scope each path needs.
fn needs(path: &str, reflection: Reflection) -> Needs {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Needs::Nothing;
    }
    if path.starts_with("/grpc.reflection.") {
        return match reflection {
            Reflection::On => Needs::Nothing,
            Reflection::Authenticated | Reflection::Off => Needs::Scope(Scope::Read),
        };
    }
    match path.strip_prefix("/task.Task/") {
        Some("CreateTask") => Needs::Scope(Scope::Write),
        Some("CancelTask") => Needs::Scope(Scope::Admin),
        // GetTaskStatus, WatchTask, ListTasks, and any other path: an authenticated caller.
        _ => Needs::Scope(Scope::Read),
    }
}

impl<S, B> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<
        futures::future::MapErr<S::Future, fn(S::Error) -> BoxError>,
        Ready<Result<S::Response, BoxError>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        use futures::TryFutureExt;
        let path = request.uri().path().to_owned();
        if let Needs::Scope(needed) = needs(&path, self.layer.reflection) {
            match self.caller(&request) {
                Ok(caller) if caller.scope >= needed => {
                    tracing::Span::current().record("enduser.id", &*caller.name);
                    request.headers_mut().remove(http::header::AUTHORIZATION);
                    request
                        .extensions_mut()
                        .insert(ClientIdentity(caller.name.clone()));
                    request.extensions_mut().insert(caller);
                }
                Ok(caller) => {
                    return Either::Right(ready(Err(Box::new(AuthError::Scope {
                        method: path.trim_start_matches('/').to_owned(),
                        needed: needed.as_str(),
                        caller: caller.name.to_string(),
                        has: caller.scope.as_str(),
                    }))));
                }
                Err(e) => return Either::Right(ready(Err(Box::new(e)))),
            }
        }
        Either::Left(self.inner.call(request).map_err(Into::into as fn(_) -> _))
    }
}

impl<S> Auth<S> {
    /// Who sent `request`: its bearer token, else its client certificate's name.
    fn caller<B>(&self, request: &http::Request<B>) -> Result<Caller, AuthError> {
        let callers = self.layer.authenticator.callers();
        if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
            let token = crate::auth::bearer_token(value).ok_or(AuthError::Malformed)?;
            return callers
                .identify(Credential::Token(token))
                .ok_or(AuthError::UnknownToken);
        }
        let certificate = request
            .extensions()
            .get::<PeerInfo>()
            .and_then(|peer| peer.certificate_name.clone());
        match certificate {
            Some(name) => callers
                .identify(Credential::Certificate(&name))
                .ok_or_else(|| AuthError::UnknownCertificate(name.to_string())),
            None => Err(AuthError::NoCredentials),
        }
    }
}
