//! A client for the Docker Registry HTTP API v2 / OCI distribution spec.
//!
//! Why not a crate: berth needs, per registry, its own rustls config (a
//! private CA or verification off), TLS failures named for TestConnection,
//! retries honouring `Retry-After`, `Link`-header paging of the catalog and
//! HEAD for digests. `oci-client` covers pulls and pushes well but hides the
//! TLS errors and owns its auth state; what berth needs of the protocol is
//! small, so it lives here, on reqwest + rustls.
//!
//! Auth: the first request goes out bare; a 401 carries a challenge —
//! `Basic` (send the credentials from then on) or `Bearer` (fetch a token
//! from the realm for the scope, cache it until shortly before it expires,
//! retry once). A second 401 means the credentials were rejected.

pub mod budget;
pub mod challenge;
mod ops;
pub mod push;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};

use crate::domain::{Budget, Proxy, RegistryAddress, RegistrySpec, Scheme, Tls};
use crate::secret::Secret;
pub use budget::{Admission, Limiter};
use challenge::Challenge;
pub use ops::{ImageInfo, MANIFEST_TYPES, ManifestKind, PlatformInfo, sha256_digest};
pub use push::{
    BlobFault, BlobTransfer, Mount, TransferProgress, UploadSession, digest_like, valid_digest,
};

/// Why a registry call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The TLS handshake failed; the text names why (unknown authority, …).
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The registry could not be reached or kept failing.
    #[error("registry unreachable: {0}")]
    Unreachable(String),
    /// The registry did not answer in time.
    #[error("registry did not answer in time: {0}")]
    Timeout(String),
    /// The registry rejected the credentials.
    #[error("the registry rejected the credentials: {0}")]
    Unauthorized(String),
    /// The repository, tag or manifest does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The registry answered something berth cannot use.
    #[error("unexpected answer from the registry: {0}")]
    Protocol(String),
}

/// Timeouts and retries; tests shorten them.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Attempts for 429/5xx/transport errors.
    pub attempts: u32,
    /// Longest `Retry-After` berth honours before giving up.
    pub max_retry_after: Duration,
}

impl ClientOptions {
    /// Options with a whole-request timeout of `secs` seconds.
    pub fn with_timeout_secs(secs: u64) -> Self {
        let request_timeout = Duration::from_secs(secs.max(1));
        ClientOptions {
            connect_timeout: request_timeout.min(Duration::from_secs(5)),
            request_timeout,
            ..Default::default()
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            attempts: 3,
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// What a request carries beyond method, URL, `Accept` and auth, added to
/// every attempt: a body that can be sent again (a manifest), its
/// `Content-Type`, and a longer deadline than the client's (a blob).
#[derive(Debug, Clone, Default)]
struct Extra {
    body: Option<bytes::Bytes>,
    content_type: Option<String>,
    timeout: Option<Duration>,
}

impl Extra {
    fn apply(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(t) = &self.content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, t.as_str());
        }
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        req
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthScheme {
    Unknown,
    Basic,
    Bearer,
}

/// A connection to one registry (connections are pooled by reqwest and
/// reused across calls).
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    options: ClientOptions,
    creds: Mutex<Option<(String, Secret)>>,
    scheme: Mutex<AuthScheme>,
    /// Bearer tokens per scope, with the instant they stop being used.
    tokens: Mutex<HashMap<String, (Secret, Instant)>>,
    /// The token service of the last Bearer challenge: realm and service.
    token_service: Mutex<Option<(String, Option<String>)>>,
    /// The registry's request budget on this replica, if it has one.
    limiter: Option<Arc<Limiter>>,
}

/// How berth reaches a registry beyond its address and TLS settings.
#[derive(Default, Clone)]
pub struct Reach<'a> {
    /// The forward proxy, if any.
    pub proxy: Option<&'a Proxy>,
    /// Its password, if one is stored.
    pub proxy_password: Option<&'a Secret>,
    /// The registry's shared request budget.
    pub limiter: Option<Arc<Limiter>>,
}

/// A reqwest proxy for `proxy`: every scheme goes through it (CONNECT for
/// https), except the no-proxy hosts.
fn reqwest_proxy(proxy: &Proxy, password: Option<&Secret>) -> Result<reqwest::Proxy, ClientError> {
    let mut p = reqwest::Proxy::all(proxy.url.as_str())
        .map_err(|e| ClientError::Unreachable(format!("proxy {}: {e}", proxy.url)))?;
    if !proxy.username.is_empty() {
        p = p.basic_auth(
            &proxy.username,
            password.map(Secret::expose).unwrap_or_default(),
        );
    }
    if !proxy.no_proxy.is_empty() {
        p = p.no_proxy(reqwest::NoProxy::from_string(&proxy.no_proxy.join(",")));
    }
    Ok(p)
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for `address` with the registry's TLS settings.
    pub fn new(
        address: &RegistryAddress,
        tls: &Tls,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        Self::with_reach(address, tls, Reach::default(), options)
    }

    /// A client for `address` with the registry's TLS settings, proxy and
    /// request budget.
    pub fn with_reach(
        address: &RegistryAddress,
        tls: &Tls,
        reach: Reach<'_>,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let (scheme, host) = match address.scheme() {
            Scheme::Https => ("https", address.host_port()),
            Scheme::Http => ("http", address.host_port()),
        };
        // Docker Hub's API lives on another host than its image names.
        let host = if host == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            host
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            // Redirects to blob storage are followed; auth is re-sent only
            // to the same host by reqwest's policy.
            .redirect(reqwest::redirect::Policy::limited(5));
        if scheme == "https" {
            let cfg = tls::client_config(tls).map_err(ClientError::Tls)?;
            builder = builder.use_preconfigured_tls(cfg);
        }
        // A registry's own proxy replaces the environment's (HTTPS_PROXY
        // and friends, which reqwest reads otherwise).
        if let Some(proxy) = reach.proxy {
            builder = builder.proxy(reqwest_proxy(proxy, reach.proxy_password)?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        Ok(RegistryClient {
            http,
            base: format!("{scheme}://{host}"),
            options,
            creds: Mutex::new(None),
            scheme: Mutex::new(AuthScheme::Unknown),
            tokens: Mutex::new(HashMap::new()),
            token_service: Mutex::new(None),
            limiter: reach.limiter,
        })
    }

    /// The registry's budget on this replica, if it has one.
    pub(crate) fn limiter(&self) -> Option<Arc<Limiter>> {
        self.limiter.clone()
    }

    /// Waits until the registry's budget lets one more request go; hold
    /// the admission while the request is in flight.
    pub(crate) async fn admit(&self) -> Option<Admission> {
        match &self.limiter {
            Some(l) => Some(l.admit().await),
            None => None,
        }
    }

    /// Sets (or replaces) the credentials; cached tokens are dropped when
    /// they change.
    pub fn set_credentials(&self, creds: Option<(String, Secret)>) {
        if let Ok(mut c) = self.creds.lock()
            && *c != creds
        {
            *c = creds;
            if let Ok(mut t) = self.tokens.lock() {
                t.clear();
            }
        }
    }

    /// Base URL, e.g. `https://registry.example.com:5000`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request with auth, retries and error mapping. `scope` is
    /// the token scope (`repository:NAME:pull`, `registry:catalog:*`, or
    /// empty). Returns successful and 404 responses; other statuses are
    /// errors.
    async fn send(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        accept: &[&str],
    ) -> Result<Response, ClientError> {
        let resp = self
            .send_with(method, url, scope, accept, &Extra::default())
            .await?;
        check_status(resp).await
    }

    /// [`RegistryClient::send`] with `extra` added to every attempt, and
    /// without the status check: any answer but a 401 is returned (a 401
    /// after fresh credentials is [`ClientError::Unauthorized`]). `scope`
    /// may name several scopes separated by spaces.
    async fn send_with(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        accept: &[&str],
        extra: &Extra,
    ) -> Result<Response, ClientError> {
        let mut refreshed = false;
        loop {
            let auth = self.auth_header(scope);
            let resp = self
                .send_with_retries(method.clone(), url, accept, auth.as_ref(), extra)
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if refreshed {
                return Err(ClientError::Unauthorized(format!(
                    "{} answered 401",
                    self.base
                )));
            }
            refreshed = true;
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(challenge::parse);
            match challenge {
                Some(Challenge::Basic) => {
                    if self.current_creds().is_none() {
                        return Err(ClientError::Unauthorized(
                            "the registry needs credentials and none are stored".into(),
                        ));
                    }
                    self.set_scheme(AuthScheme::Basic);
                }
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: challenged,
                }) => {
                    self.set_scheme(AuthScheme::Bearer);
                    if let Ok(mut ts) = self.token_service.lock() {
                        *ts = Some((realm.clone(), service.clone()));
                    }
                    let want = if scope.is_empty() {
                        challenged.unwrap_or_default()
                    } else {
                        scope.to_string()
                    };
                    self.renew_token(&realm, service.as_deref(), &want, scope)
                        .await?;
                }
                None => {
                    return Err(ClientError::Unauthorized(format!(
                        "{} answered 401 without a usable WWW-Authenticate challenge",
                        self.base
                    )));
                }
            }
        }
    }

    /// The `Authorization` for `scope`, fetching a Bearer token first when
    /// none is held (expired, or forgotten after a 401) and the registry's
    /// token service is known. For a request that cannot meet a challenge
    /// and be sent again, such as a blob upload whose body streams from the
    /// source: without it, it would go out without a token and fail.
    pub(crate) async fn fresh_auth_header(&self, scope: &str) -> Option<HeaderValue> {
        if let Some(h) = self.auth_header(scope) {
            return Some(h);
        }
        let bearer = self.scheme.lock().is_ok_and(|s| *s == AuthScheme::Bearer);
        let service = self.token_service.lock().ok().and_then(|s| s.clone());
        if let (true, Some((realm, service))) = (bearer, service) {
            // Failing here, the request goes without a token and meets the
            // registry's 401, as it would have.
            let _ = self
                .renew_token(&realm, service.as_deref(), scope, scope)
                .await;
        }
        self.auth_header(scope)
    }

    /// Fetches a token for `want` from the token service and keeps it as
    /// the token of `scope`.
    async fn renew_token(
        &self,
        realm: &str,
        service: Option<&str>,
        want: &str,
        scope: &str,
    ) -> Result<(), ClientError> {
        let token = self.fetch_token(realm, service, want).await?;
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(scope.to_string(), token);
        }
        Ok(())
    }

    fn current_creds(&self) -> Option<(String, Secret)> {
        self.creds.lock().ok().and_then(|c| c.clone())
    }

    fn set_scheme(&self, s: AuthScheme) {
        if let Ok(mut cur) = self.scheme.lock() {
            *cur = s;
        }
    }

    fn auth_header(&self, scope: &str) -> Option<HeaderValue> {
        let scheme = self
            .scheme
            .lock()
            .map(|s| *s)
            .unwrap_or(AuthScheme::Unknown);
        let value = match scheme {
            AuthScheme::Basic => {
                let (u, p) = self.current_creds()?;
                format!("Basic {}", basic(&u, &p))
            }
            AuthScheme::Bearer => {
                let tokens = self.tokens.lock().ok()?;
                let (token, until) = tokens.get(scope)?;
                if Instant::now() >= *until {
                    return None;
                }
                format!("Bearer {}", token.expose())
            }
            AuthScheme::Unknown => return None,
        };
        let mut v = HeaderValue::from_str(&value).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(Secret, Instant), ClientError> {
        let mut url = reqwest::Url::parse(realm)
            .map_err(|_| ClientError::Protocol(format!("token realm `{realm}` is not a URL")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            // Several scopes (a cross-repository mount pulls from one
            // repository and pushes to another) go as one parameter each.
            for one in scope.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", one);
            }
        }
        let mut headers = HeaderMap::new();
        if let Some((u, p)) = self.current_creds()
            && let Ok(mut v) = HeaderValue::from_str(&format!("Basic {}", basic(&u, &p)))
        {
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let admission = self.admit().await;
        let resp = self
            .http
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        drop(admission);
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(ClientError::Unauthorized(
                    "the token service refused the credentials".into(),
                ));
            }
            s => {
                return Err(ClientError::Unreachable(format!(
                    "token service answered {s}"
                )));
            }
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body: TokenResponse = resp.json().await.map_err(|_| {
            ClientError::Protocol("token service answered something that is not a token".into())
        })?;
        let token = body
            .token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ClientError::Protocol("token service answered without a token".into())
            })?;
        // The spec's default lifetime is 60 s; keep a margin.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(60).max(10));
        Ok((
            Secret::new(token),
            Instant::now() + lifetime - Duration::from_secs(5),
        ))
    }

    async fn send_with_retries(
        &self,
        method: Method,
        url: &str,
        accept: &[&str],
        auth: Option<&HeaderValue>,
        extra: &Extra,
    ) -> Result<Response, ClientError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url);
            for a in accept {
                req = req.header(ACCEPT, *a);
            }
            if let Some(a) = auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            req = extra.apply(req);
            let last = attempt >= self.options.attempts;
            let admission = self.admit().await;
            let sent = req.send().await;
            drop(admission);
            self.count(&sent);
            match sent {
                Ok(resp)
                    if resp.status() == StatusCode::TOO_MANY_REQUESTS
                        || resp.status().is_server_error() =>
                {
                    if last {
                        return Err(ClientError::Unreachable(format!(
                            "{} answered {} {attempt} times",
                            self.base,
                            resp.status()
                        )));
                    }
                    let wait = retry_after(resp.headers()).unwrap_or(delay);
                    if wait > self.options.max_retry_after {
                        return Err(ClientError::Unreachable(format!(
                            "{} asked to retry after {} s",
                            self.base,
                            wait.as_secs()
                        )));
                    }
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    let err = transport_error(&e);
                    // TLS failures and timeouts do not get better by retrying.
                    if last || matches!(err, ClientError::Tls(_) | ClientError::Timeout(_)) {
                        return Err(err);
                    }
                    tokio::time::sleep(delay).await;
                }
            }
            delay *= 2;
        }
    }
}

impl RegistryClient {
    /// `berth_registry_requests_total{registry, outcome}`.
    fn count(&self, sent: &Result<Response, reqwest::Error>) {
        let outcome = match sent {
            Ok(r) => match r.status() {
                s if s.is_success() || s.is_redirection() => "ok",
                StatusCode::UNAUTHORIZED => "unauthorized",
                StatusCode::FORBIDDEN => "forbidden",
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::TOO_MANY_REQUESTS => "throttled",
                s if s.is_server_error() => "server_error",
                _ => "client_error",
            },
            Err(e) => match transport_error(e) {
                ClientError::Tls(_) => "tls_error",
                ClientError::Timeout(_) => "timeout",
                _ => "unreachable",
            },
        };
        let registry = self
            .base
            .split("://")
            .nth(1)
            .unwrap_or(&self.base)
            .to_string();
        metrics::counter!("berth_registry_requests_total", "registry" => registry, "outcome" => outcome).increment(1);
    }
}

fn basic(user: &str, password: &Secret) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()))
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    h.get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

async fn check_status(resp: Response) -> Result<Response, ClientError> {
    let s = resp.status();
    if s.is_success() || s == StatusCode::NOT_FOUND || s.is_redirection() {
        return Ok(resp);
    }
    if s == StatusCode::FORBIDDEN {
        return Err(ClientError::Unauthorized(
            "the registry denied access (403)".into(),
        ));
    }
    Err(ClientError::Protocol(format!("HTTP {s}")))
}

fn transport_error(e: &reqwest::Error) -> ClientError {
    if let Some(why) = tls::classify(e) {
        return ClientError::Tls(why);
    }
    // reqwest names the URL; upload sessions and pre-signed blob redirects
    // carry signatures in the query, which must not reach logs, progress
    // messages or audit details.
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        let mut bare = url.clone();
        bare.set_query(None);
        bare.set_fragment(None);
        msg = msg.replace(url.as_str(), bare.as_str());
    }
    if e.is_timeout() {
        return ClientError::Timeout(msg);
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    ClientError::Unreachable(msg)
}

/// Clients per stored registry, rebuilt when the registry changes (its
/// revision), so connections and tokens are reused across calls.
#[derive(Default)]
pub struct ClientPool {
    options: ClientOptions,
    clients: Mutex<HashMap<String, (i64, Arc<RegistryClient>)>>,
    /// Budgets per registry id, kept across client rebuilds so that a
    /// registry has one budget on this replica whatever else changes.
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
}

impl ClientPool {
    /// A pool whose clients use `options`.
    pub fn new(options: ClientOptions) -> Self {
        ClientPool {
            options,
            clients: Mutex::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// The options new clients get.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Drops the client of registry `id`.
    pub fn remove(&self, id: &str) {
        if let Ok(mut map) = self.clients.lock() {
            map.remove(id);
        }
    }

    /// The shared limiter of registry `id` for `budget` (replaced when the
    /// budget changed); `None` when the budget limits nothing.
    pub fn limiter(&self, id: &str, budget: Budget) -> Option<Arc<Limiter>> {
        let mut map = self.limiters.lock().ok()?;
        if budget.is_unlimited() {
            map.remove(id);
            return None;
        }
        match map.get(id) {
            Some(l) if l.budget() == budget => Some(l.clone()),
            _ => {
                let l = Limiter::new(budget)?;
                map.insert(id.to_string(), l.clone());
                Some(l)
            }
        }
    }

    /// The client for registry `id` at `revision`, reaching it through its
    /// proxy (with `proxy_password`) within its budget.
    pub fn get(
        &self,
        id: &str,
        revision: i64,
        spec: &RegistrySpec,
        proxy_password: Option<&Secret>,
    ) -> Result<Arc<RegistryClient>, ClientError> {
        if let Ok(map) = self.clients.lock()
            && let Some((rev, c)) = map.get(id)
            && *rev == revision
        {
            return Ok(c.clone());
        }
        let reach = Reach {
            proxy: spec.proxy.as_ref(),
            proxy_password,
            limiter: self.limiter(id, spec.budget),
        };
        let client = Arc::new(RegistryClient::with_reach(
            &spec.address,
            &spec.tls,
            reach,
            self.options.clone(),
        )?);
        if let Ok(mut map) = self.clients.lock() {
            map.insert(id.to_string(), (revision, client.clone()));
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transport_errors_drop_the_query_of_signed_urls() {
        // Nothing listens on port 1: the request fails to connect.
        let url = "http://127.0.0.1:1/v2/app/blobs/uploads/x?_state=SIGNED&X-Amz-Signature=abc";
        let err = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .expect_err("nothing listens");
        let text = transport_error(&err).to_string();
        assert!(!text.contains("SIGNED"), "{text}");
        assert!(!text.contains("X-Amz-Signature"), "{text}");
        assert!(
            text.contains("127.0.0.1:1/v2/app/blobs/uploads/x"),
            "{text}"
        );
    }
}
