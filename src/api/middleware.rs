//! The one place every RPC passes through before its handler (a tower
//! layer): it names the request (`x-request-id`), opens its tracing span,
//! authenticates the caller, bounds concurrency and time.
//!
//! - Authentication: with authentication on, the caller is the client
//!   certificate's identity (mutual TLS) when one was presented, else the
//!   identity of the `authorization: Bearer` token; neither is
//!   UNAUTHENTICATED. With it off, the caller is `x-berth-actor` (default
//!   `anonymous`) with every right. The [`Caller`] goes into the request's
//!   extensions, where handlers take it.
//! - Health and reflection need no identity: probes and grpcurl's schema
//!   lookup carry none, and neither reveals data.
//! - Overload: at most `max_concurrent` RPCs run; one more is refused at
//!   once with RESOURCE_EXHAUSTED (and a retry delay) rather than queued
//!   without bound. Health checks are never refused.
//! - Time: each RPC gets the caller's `grpc-timeout` or the configured
//!   limit, whichever is shorter, and ends with DEADLINE_EXCEEDED.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::Status;
use tracing::Instrument;

pub use crate::auth::Caller;
use crate::auth::policy::Policy;
use crate::auth::tokens::TokenTable;
use crate::auth::watch::Watched;
use crate::auth::{Access, Principal};
use crate::error::Error;

/// Metadata naming the caller when authentication is off.
pub const ACTOR_HEADER: &str = "x-berth-actor";
/// Metadata carrying the request id (echoed in the response).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How callers are authenticated.
pub enum Authn {
    /// Off: `x-berth-actor` names the caller, who may do everything.
    Off,
    /// On: client certificates and/or bearer tokens, roles from the policy.
    On {
        /// Bearer tokens, when a tokens file is configured.
        tokens: Option<Watched<TokenTable>>,
        /// The policy.
        policy: Watched<Policy>,
    },
}

/// Settings of [`GuardLayer`].
pub struct Guard {
    /// Authentication.
    pub authn: Authn,
    /// RPCs allowed to run at once.
    pub max_concurrent: usize,
    /// Longest an RPC may take.
    pub timeout: Duration,
}

/// The layer; see the module docs.
#[derive(Clone)]
pub struct GuardLayer {
    inner: Arc<GuardInner>,
}

struct GuardInner {
    guard: Guard,
    slots: Arc<Semaphore>,
}

impl GuardLayer {
    /// A layer enforcing `guard`.
    pub fn new(guard: Guard) -> Self {
        let slots = Arc::new(Semaphore::new(guard.max_concurrent));
        GuardLayer {
            inner: Arc::new(GuardInner { guard, slots }),
        }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            guard: self.inner.clone(),
        }
    }
}

/// See [`GuardLayer`].
#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    guard: Arc<GuardInner>,
}

impl<S, B, R> tower::Service<http::Request<B>> for GuardService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let path = req.uri().path().to_owned();
        let request_id = request_id(&req);
        let span = tracing::info_span!(
            "rpc",
            method = %path,
            request_id = %request_id,
            caller = tracing::field::Empty
        );
        let open = is_open(&path);
        Box::pin(
            async move {
                let echo = http::HeaderValue::from_str(&request_id).ok();
                let reply = |status: Status| {
                    let mut res = status.into_http::<R>();
                    if let Some(v) = &echo {
                        res.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
                    }
                    Ok(res)
                };
                if !open {
                    match authenticate(&guard.guard.authn, &req) {
                        Ok(principal) => {
                            tracing::Span::current().record("caller", principal.name.as_str());
                            req.extensions_mut().insert(Caller {
                                principal,
                                request_id: request_id.clone(),
                            });
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "refused: not authenticated");
                            return reply(e.into());
                        }
                    }
                }
                let _slot = if path.starts_with("/grpc.health.") {
                    None
                } else {
                    match guard.slots.clone().try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => {
                            metrics::counter!("berth_rpc_rejected_total", "reason" => "overload")
                                .increment(1);
                            tracing::warn!(
                                limit = guard.guard.max_concurrent,
                                "refused: too many concurrent RPCs"
                            );
                            return reply(
                                Error::ResourceExhausted(format!(
                                    "berth is at its limit of {} concurrent calls; retry shortly",
                                    guard.guard.max_concurrent
                                ))
                                .into(),
                            );
                        }
                    }
                };
                let limit =
                    grpc_timeout(&req).map_or(guard.guard.timeout, |t| t.min(guard.guard.timeout));
                match tokio::time::timeout(limit, inner.call(req)).await {
                    Ok(Ok(mut res)) => {
                        if let Some(v) = echo.clone() {
                            res.headers_mut().insert(REQUEST_ID_HEADER, v);
                        }
                        Ok(res)
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => {
                        tracing::warn!(limit_ms = limit.as_millis() as u64, "deadline exceeded");
                        reply(
                            Error::DeadlineExceeded(format!(
                                "the call did not finish within {} ms",
                                limit.as_millis()
                            ))
                            .into(),
                        )
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// Health and reflection answer without an identity.
fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

fn request_id<B>(req: &http::Request<B>) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The caller's deadline from `grpc-timeout` (e.g. `500m`, `2S`).
fn grpc_timeout<B>(req: &http::Request<B>) -> Option<Duration> {
    let v = req.headers().get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
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

fn authenticate<B>(authn: &Authn, req: &http::Request<B>) -> Result<Principal, Error> {
    match authn {
        Authn::Off => Ok(Principal::unrestricted(actor_header(req)?)),
        Authn::On { tokens, policy } => {
            let policy = policy.get();
            let identities = req
                .extensions()
                .get::<crate::transport::PeerInfo>()
                .map(|p| p.cert_identities.as_slice())
                .unwrap_or_default();
            let name = if !identities.is_empty() {
                // A certificate may carry several SANs (a SPIFFE URI and DNS
                // names): the first one the policy names is the caller.
                identities
                    .iter()
                    .find(|i| policy.names(i))
                    .unwrap_or(&identities[0])
                    .clone()
            } else {
                let token = bearer(req)?;
                let table = tokens.as_ref().map(|t| t.get());
                match table.as_ref().and_then(|t| t.identify(token)) {
                    Some(id) => id.to_owned(),
                    None => {
                        metrics::counter!("berth_rpc_rejected_total", "reason" => "bad_token")
                            .increment(1);
                        return Err(Error::Unauthenticated(
                            "the bearer token is not valid".into(),
                        ));
                    }
                }
            };
            let access = match policy.grants(&name) {
                Some(g) => Access::Granted(g),
                None => Access::Granted(Arc::default()),
            };
            Ok(Principal { name, access })
        }
    }
}

fn bearer<B>(req: &http::Request<B>) -> Result<&str, Error> {
    let Some(v) = req.headers().get(http::header::AUTHORIZATION) else {
        return Err(Error::Unauthenticated(
            "authentication required: present a client certificate or `authorization: Bearer <token>`"
                .into(),
        ));
    };
    let s = v
        .to_str()
        .map_err(|_| Error::Unauthenticated("the authorization metadata is not ASCII".into()))?;
    match s.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(Error::Unauthenticated(
            "the authorization metadata must be `Bearer <token>`".into(),
        )),
    }
}

fn actor_header<B>(req: &http::Request<B>) -> Result<String, Error> {
    let Some(v) = req.headers().get(ACTOR_HEADER) else {
        return Ok("anonymous".into());
    };
    let s = v
        .to_str()
        .map_err(|_| Error::invalid(ACTOR_HEADER, "must be printable ASCII"))?
        .trim();
    if s.is_empty() || s.len() > 256 {
        return Err(Error::invalid(ACTOR_HEADER, "must be 1 to 256 characters"));
    }
    Ok(s.to_string())
}

/// The caller the guard attached to `req`. Every berth RPC passes the
/// guard, so a missing caller is a wiring bug: refused, never let through.
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, Status> {
    req.extensions().get::<Caller>().cloned().ok_or_else(|| {
        tracing::error!("no caller attached: the guard layer is missing");
        Status::internal("internal error")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, value: &str) -> http::Request<()> {
        http::Request::builder()
            .header(name, value)
            .body(())
            .expect("request")
    }

    #[test]
    fn grpc_timeouts() {
        assert_eq!(
            grpc_timeout(&with("grpc-timeout", "500m")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            grpc_timeout(&with("grpc-timeout", "2S")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            grpc_timeout(&with("grpc-timeout", "1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(grpc_timeout(&with("grpc-timeout", "x")), None);
        assert_eq!(grpc_timeout(&with("grpc-timeout", "10q")), None);
        assert_eq!(grpc_timeout(&with("grpc-timeout", "1234567890S")), None);
    }

    #[test]
    fn bearer_tokens_and_actors() {
        assert_eq!(
            bearer(&with("authorization", "Bearer abc")).ok(),
            Some("abc")
        );
        assert_eq!(
            bearer(&with("authorization", "bearer  abc ")).ok(),
            Some("abc")
        );
        assert!(bearer(&with("authorization", "Basic abc")).is_err());
        assert!(bearer(&with("authorization", "Bearer ")).is_err());
        assert!(bearer(&with("x", "y")).is_err());
        assert_eq!(
            actor_header(&with("x", "y")).ok().as_deref(),
            Some("anonymous")
        );
        assert_eq!(
            actor_header(&with(ACTOR_HEADER, " ci ")).ok().as_deref(),
            Some("ci")
        );
        assert!(actor_header(&with(ACTOR_HEADER, " ")).is_err());
    }

    #[test]
    fn request_ids_are_taken_or_made() {
        assert_eq!(request_id(&with(REQUEST_ID_HEADER, "abc")), "abc");
        assert_eq!(request_id(&with("x", "y")).len(), 36);
        assert_eq!(
            request_id(&with(REQUEST_ID_HEADER, &"a".repeat(200))).len(),
            36
        );
    }
}
