//! The leak guard every test server runs behind: a transparent gRPC proxy
//! that learns each secret callers send (CreateRegistry's and
//! UpdateRegistry's `secret` and `proxy.password`, TestConnection's
//! `secret` and `proxy.password`) and fails the test if any later
//! response other than GetCredentials carries one — in a message, an error
//! message or error details — and a trace-level log capture that fails the
//! test if any log line does. So every test in the suite checks that
//! secrets leave berth only through the credential calls.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Mutex, Once};

use base64::Engine as _;
use berth::pb;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tower::Service as _;

/// Secrets shorter than this are not tracked (they would match by chance).
const MIN_TRACKED: usize = 8;

static SECRETS: Mutex<Option<HashSet<String>>> = Mutex::new(None);
static LEAKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn learn(secret: &str) {
    if secret.len() >= MIN_TRACKED
        && let Ok(mut s) = SECRETS.lock()
    {
        s.get_or_insert_with(HashSet::new)
            .insert(secret.to_string());
    }
}

/// The tracked secrets found in `bytes`.
fn found_in(bytes: &[u8]) -> Vec<String> {
    let Ok(s) = SECRETS.lock() else {
        return Vec::new();
    };
    s.iter()
        .flatten()
        .filter(|secret| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()))
        .cloned()
        .collect()
}

fn report(place: &str, bytes: &[u8]) {
    for secret in found_in(bytes) {
        let shown: String = secret.chars().take(12).collect();
        if let Ok(mut l) = LEAKS.lock() {
            l.push(format!("{place} carries the secret `{shown}…`"));
        }
    }
}

/// Leaks seen so far in this process (each test is its own process under
/// nextest), emptied by the call.
pub fn take_leaks() -> Vec<String> {
    LEAKS
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default()
}

/// The message of a unary gRPC request body.
fn grpc_message(body: &[u8]) -> Option<&[u8]> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    body.get(5..5 + len)
}

fn learn_from_request(path: &str, body: &[u8]) {
    let Some(msg) = grpc_message(body) else {
        return;
    };
    // The registry secret and the proxy password.
    let secrets = |r: pb::Registry| {
        let proxy_password = r.proxy.map(|p| p.password).unwrap_or_default();
        [r.secret, proxy_password]
    };
    let registry = match path {
        "/berth.v1.RegistryService/CreateRegistry" => pb::CreateRegistryRequest::decode(msg)
            .ok()
            .and_then(|r| r.registry),
        "/berth.v1.RegistryService/UpdateRegistry" => pb::UpdateRegistryRequest::decode(msg)
            .ok()
            .and_then(|r| r.registry),
        _ => None,
    };
    for s in registry.map(secrets).into_iter().flatten() {
        learn(&s);
    }
    let secret = match path {
        "/berth.v1.ImageService/TestConnection" => {
            let spec = pb::TestConnectionRequest::decode(msg)
                .ok()
                .and_then(|r| r.spec);
            if let Some(p) = spec.as_ref().and_then(|s| s.proxy.as_ref()) {
                learn(&p.password);
            }
            spec.map(|s| s.secret)
        }
        _ => None,
    };
    if let Some(s) = secret {
        learn(&s);
    }
}

/// Checks response headers or trailers, decoding what gRPC encodes there.
fn check_headers(path: &str, h: &http::HeaderMap) {
    for (name, value) in h {
        let raw = value.as_bytes();
        report(&format!("{path} header {name}"), raw);
        if name == "grpc-message" {
            report(&format!("{path} grpc-message"), &percent_decode(raw));
        }
        if name.as_str().ends_with("-bin")
            && let Ok(d) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(
                raw.strip_suffix(b"==")
                    .or(raw.strip_suffix(b"="))
                    .unwrap_or(raw),
            )
        {
            report(&format!("{path} {name}"), &d);
        }
    }
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&b[i + 1..i + 3]), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Starts the proxy in front of berth at `upstream`; returns its address.
pub async fn proxy(upstream: SocketAddr) -> SocketAddr {
    capture_logs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the leak guard");
    let addr = listener.local_addr().expect("addr");
    let channel = tonic::transport::Channel::from_shared(format!("http://{upstream}"))
        .expect("uri")
        .connect_lazy();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let channel = channel.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let mut channel = channel.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let (parts, body) = req.into_parts();
                            let bytes = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            learn_from_request(&path, &bytes);
                            let fwd = http::Request::from_parts(
                                parts,
                                tonic::body::Body::new(
                                    http_body_util::Full::new(bytes).map_err(|e| match e {}),
                                ),
                            );
                            let res = tower::ServiceExt::ready(&mut channel)
                                .await?
                                .call(fwd)
                                .await?;
                            let exempt = path == "/berth.v1.ImageService/GetCredentials";
                            if !exempt {
                                check_headers(&path, res.headers());
                            }
                            let res = res.map(move |b| {
                                let path = path.clone();
                                tonic::body::Body::new(b.map_frame(
                                    move |f: http_body::Frame<Bytes>| {
                                        if !exempt {
                                            if let Some(d) = f.data_ref() {
                                                report(&format!("{path} response"), d);
                                            }
                                            if let Some(t) = f.trailers_ref() {
                                                check_headers(&path, t);
                                            }
                                        }
                                        f
                                    },
                                ))
                            });
                            Ok::<_, tonic::transport::Error>(res)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Captures every log line of this process at trace level (berth's own
/// crates; dependencies at debug) and checks it for tracked secrets.
fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::new(
            "trace,h2=debug,hyper=debug,hyper_util=debug,tower=debug,rustls=debug,sqlx=debug,sea_orm=debug,reqwest=debug,tonic=debug",
        );
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(|| LineScanner)
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

struct LineScanner;

impl std::io::Write for LineScanner {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        report("a log line", buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
