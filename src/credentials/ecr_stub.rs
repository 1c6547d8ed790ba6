//! A loopback HTTP/1.1 stand-in for ECR's `GetAuthorizationToken` that
//! checks SigV4 by hand (HMAC chain written here, not aws-sigv4), as ECR
//! would.
//!
//! Test code only, compiled twice: as `stub`, a child module of the unit
//! tests of `ecr.rs` (`ecr_tests.rs`), and as `ecr_stub` in the integration
//! test `tests/ecr_api.rs`, both through `#[path]`. So it depends on nothing
//! of berth, only on std, tokio, sha2, hmac, hex, base64, serde_json and
//! chrono, and keeps its own copies of the protocol constants: a wrong
//! constant in `ecr.rs` must fail here, not be agreed with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{NaiveDateTime, TimeDelta, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The region a stub serves unless [`Setup::region`] says otherwise.
pub const REGION: &str = "eu-west-1";
/// The password of the tokens a stub issues unless [`Setup::password`]
/// says otherwise.
pub const PASSWORD: &str = "ecr-stub-token-7Hq2";

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// How the stub answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Like ECR: 400 for a malformed call, 403 for an unknown key id or a
    /// wrong signature, else 200 with a token.
    Verify,
    /// 500 `ServerException` to everything.
    Status500,
    /// 200 with a body that is not JSON.
    Garbage,
    /// Reads the request, then says nothing for 30 seconds.
    Hang,
}

/// What a stub does; start from [`Setup::new`] and override fields.
#[derive(Debug, Clone)]
pub struct Setup {
    /// How it answers.
    pub mode: Mode,
    /// Accepted `(access key id, secret access key)` pairs. One key id may
    /// appear with several secrets (a rotation in progress).
    pub keys: Vec<(String, String)>,
    /// The only region accepted in the credential scope.
    pub region: String,
    /// Issued tokens are `base64("AWS:" + password)`.
    pub password: String,
    /// `expiresAt` of issued tokens, epoch seconds; `None` means 12 hours
    /// after issue, like ECR.
    pub expires_at: Option<f64>,
    /// Issue a different token each time: the password followed by how
    /// many were issued before (`…0`, `…1`, …), to tell them apart.
    pub numbered: bool,
}

impl Setup {
    /// A verifying stub for [`REGION`] accepting `keys`, issuing
    /// [`PASSWORD`] for 12 hours.
    pub fn new(keys: &[(&str, &str)]) -> Setup {
        Setup {
            mode: Mode::Verify,
            keys: keys
                .iter()
                .map(|(id, secret)| (id.to_string(), secret.to_string()))
                .collect(),
            region: REGION.to_owned(),
            password: PASSWORD.to_owned(),
            expires_at: None,
            numbered: false,
        }
    }
}

/// A running stub. It serves until the tokio runtime that started it shuts
/// down (dropping this value does not stop it).
pub struct EcrStub {
    /// Where it listens, e.g. `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The password inside the tokens it issues.
    pub password: String,
    issued: Arc<AtomicUsize>,
}

impl EcrStub {
    /// A verifying stub accepting any of `keys` (`(access key id, secret
    /// access key)`), see [`Setup::new`]. Must be called within a tokio
    /// runtime.
    pub fn start(keys: &[(&str, &str)]) -> EcrStub {
        Self::launch(Setup::new(keys))
    }

    /// A stub doing what `setup` says. Must be called within a tokio
    /// runtime.
    pub fn launch(setup: Setup) -> EcrStub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the ECR stub");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let issued = Arc::new(AtomicUsize::new(0));
        let stub = EcrStub {
            endpoint: format!("http://{addr}"),
            password: setup.password.clone(),
            issued: issued.clone(),
        };
        let setup = Arc::new(setup);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (setup, issued) = (setup.clone(), issued.clone());
                tokio::spawn(async move { serve(stream, &setup, &issued).await });
            }
        });
        stub
    }

    /// How many tokens it has issued (answers 200 to a verified request).
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

/// Answers one request, then closes the connection.
async fn serve(stream: TcpStream, setup: &Setup, issued: &AtomicUsize) {
    let mut stream = BufReader::new(stream);
    let Some(seen) = read_request(&mut stream).await else {
        return;
    };
    let (status, body) = match setup.mode {
        Mode::Verify => verify(&seen, setup, issued),
        Mode::Status500 => (500, r#"{"__type":"ServerException"}"#.into()),
        Mode::Garbage => (200, r#"{"authorizationData": 7"#.into()),
        Mode::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {CONTENT_TYPE}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.get_mut().write_all(response.as_bytes()).await;
    let _ = stream.get_mut().shutdown().await;
}

/// A request as the stub saw it: headers lowercased, repeats joined by `,`.
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    stream.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await.ok()?;
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers
            .entry(name.trim().to_ascii_lowercase())
            .and_modify(|v| *v = format!("{v},{}", value.trim()))
            .or_insert_with(|| value.trim().to_owned());
    }
    let len = headers
        .get("content-length")
        .map_or(Ok(0), |v| v.parse())
        .ok()?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Checks the request like ECR: 400 for a malformed call, 403
/// `UnrecognizedClientException` for an unknown key id, 403
/// `InvalidSignatureException` for a wrong signature, 200 with a token
/// (counted in `issued`).
fn verify(seen: &Seen, setup: &Setup, issued: &AtomicUsize) -> (u16, String) {
    let error = |kind: &str, message: &str| {
        serde_json::json!({"__type": kind, "message": message}).to_string()
    };
    match check(seen, setup) {
        Ok(Verdict::Signed) => {
            let expires_at = setup.expires_at.unwrap_or_else(|| {
                (Utc::now() + TimeDelta::hours(12)).timestamp_millis() as f64 / 1000.0
            });
            let serial = issued.fetch_add(1, Ordering::SeqCst);
            let token = if setup.numbered {
                B64.encode(format!("AWS:{}{serial}", setup.password))
            } else {
                B64.encode(format!("AWS:{}", setup.password))
            };
            let body = serde_json::json!({"authorizationData": [{
                "authorizationToken": token,
                "expiresAt": expires_at,
                "proxyEndpoint": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            }]});
            (200, body.to_string())
        }
        Ok(Verdict::UnknownKey) => (
            403,
            error(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
        ),
        Ok(Verdict::BadSignature) => (
            403,
            error(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
            ),
        ),
        Err(problem) => (400, error("StubCheckFailed", &problem)),
    }
}

/// The outcome of a well-formed request.
enum Verdict {
    Signed,
    UnknownKey,
    BadSignature,
}

/// The verdict, or `Err` naming what is malformed.
fn check(seen: &Seen, setup: &Setup) -> Result<Verdict, String> {
    let header = |name: &str| seen.headers.get(name).ok_or(format!("no {name} header"));
    if (seen.method.as_str(), seen.path.as_str()) != ("POST", "/") {
        return Err(format!("request line {} {}", seen.method, seen.path));
    }
    if header("content-type")? != CONTENT_TYPE || header("x-amz-target")? != TARGET {
        return Err("wrong content-type or x-amz-target".into());
    }
    let sent_secret = |secret: &str| {
        seen.headers.values().any(|v| v.contains(secret))
            || seen.path.contains(secret)
            || String::from_utf8_lossy(&seen.body).contains(secret)
    };
    if setup.keys.iter().any(|(_, secret)| sent_secret(secret)) {
        return Err("the secret key was sent".into());
    }
    if seen.body != b"{}" {
        return Err("body is not {}".into());
    }
    let auth = header("authorization")?;
    let fields = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let mut parts = BTreeMap::new();
    for part in fields.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or("bad authorization field")?;
        parts.insert(k, v);
    }
    let get = |k: &str| parts.get(k).copied().ok_or(format!("no {k}"));
    let scope: Vec<&str> = get("Credential")?.split('/').collect();
    let [akid, date, region, service, terminator] = scope[..] else {
        return Err("credential scope has not 5 parts".into());
    };
    if (region, service, terminator) != (setup.region.as_str(), "ecr", "aws4_request") {
        return Err(format!("credential scope {scope:?}"));
    }
    let amz_date = header("x-amz-date")?;
    let signed_at = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| format!("x-amz-date {amz_date}"))?;
    let skew = Utc::now() - Utc.from_utc_datetime(&signed_at);
    if !amz_date.starts_with(date) || skew.num_minutes().abs() > 5 {
        return Err("x-amz-date does not match the scope or the clock".into());
    }
    let signed: Vec<&str> = get("SignedHeaders")?.split(';').collect();
    let mut sorted = signed.clone();
    sorted.sort_unstable();
    if sorted != signed {
        return Err("SignedHeaders not sorted".into());
    }
    for required in ["content-type", "host", "x-amz-date", "x-amz-target"] {
        if !signed.contains(&required) {
            return Err(format!("{required} is not signed"));
        }
    }
    let mut canonical = String::from("POST\n/\n\n");
    for name in &signed {
        let value = header(name)?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        canonical.push_str(&format!("{name}:{value}\n"));
    }
    canonical.push_str(&format!(
        "\n{}\n{}",
        signed.join(";"),
        sha256_hex(&seen.body)
    ));
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/ecr/aws4_request\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let signature = get("Signature")?;
    let mut secrets = setup
        .keys
        .iter()
        .filter(|(id, _)| id == akid)
        .map(|(_, secret)| secret)
        .peekable();
    if secrets.peek().is_none() {
        return Ok(Verdict::UnknownKey);
    }
    let signs = |secret: &str| {
        let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
        let k_region = hmac(&k_date, region);
        let k_service = hmac(&k_region, "ecr");
        let k_signing = hmac(&k_service, "aws4_request");
        hex::encode(hmac(&k_signing, &to_sign)) == signature
    };
    Ok(if secrets.any(|secret| signs(secret)) {
        Verdict::Signed
    } else {
        Verdict::BadSignature
    })
}
