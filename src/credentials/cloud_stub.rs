//! Loopback HTTP/1.1 stand-ins for the Alibaba Cloud Container Registry API
//! (`GetAuthorizationToken` for both editions, `ListInstance`) and the
//! Tencent Cloud TCR API (`CreateInstanceToken`, `DescribeInstances`). Each
//! checks the request signature the way its cloud documents it — ACR the
//! V3 scheme `ACS3-HMAC-SHA256`, TCR `TC3-HMAC-SHA256` — with its own
//! canonicalisation and HMAC code written here, not berth's.
//!
//! Test code only, compiled as `credentials::cloud_stub` for the unit tests
//! of `acr.rs` and `tcr.rs` and, through `#[path]`, as `cloud_stub` in the
//! integration test `tests/cloud_tokens.rs`. So it depends on nothing
//! of berth, only on std, tokio, sha2, hmac, hex, serde_json and chrono,
//! and keeps its own copies of the protocol constants: a wrong constant in
//! berth must fail here, not be agreed with.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The region a TCR stub serves unless [`Setup::region`] says otherwise.
pub const TCR_REGION: &str = "ap-guangzhou";
/// The region ACR tests use (the ACR stub does not see it: the region only
/// picks the endpoint, which the tests replace).
pub const ACR_REGION: &str = "cn-hangzhou";
/// The password of the tokens a stub issues unless [`Setup::password`]
/// says otherwise.
pub const PASSWORD: &str = "cloud-stub-token-Zq81vA";
/// The user of the tokens a stub issues unless [`Setup::username`] says
/// otherwise.
pub const USERNAME: &str = "cr_temp_user";

/// Which cloud a stub plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Alibaba Cloud Container Registry API (`cr.<region>.aliyuncs.com`).
    Acr,
    /// Tencent Cloud TCR API (`tcr.tencentcloudapi.com`).
    Tcr,
}

/// How the stub answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Like the cloud: checks the signature, refuses unknown keys, wrong
    /// signatures and malformed calls, else answers.
    Verify,
    /// HTTP 500 to everything.
    Status500,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// Reads the request, then says nothing for 30 seconds.
    Hang,
}

/// What a stub does; start from [`Setup::new`] and override fields.
#[derive(Debug, Clone)]
pub struct Setup {
    /// How it answers.
    pub mode: Mode,
    /// Accepted `(key id, secret)` pairs.
    pub keys: Vec<(String, String)>,
    /// TCR: the only `X-TC-Region` accepted.
    pub region: String,
    /// Enterprise instances, `(name, id)`.
    pub instances: Vec<(String, String)>,
    /// User of issued tokens.
    pub username: String,
    /// Password (token) of issued tokens.
    pub password: String,
    /// Expiry of issued tokens, epoch milliseconds; `None` means one hour
    /// after issue, like both clouds.
    pub expires_ms: Option<i64>,
}

impl Setup {
    /// A verifying stub accepting `keys`, knowing `instances` (`(name,
    /// id)`), issuing [`USERNAME`]/[`PASSWORD`] for an hour.
    pub fn new(keys: &[(&str, &str)], instances: &[(&str, &str)]) -> Setup {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        Setup {
            mode: Mode::Verify,
            keys: pairs(keys),
            region: TCR_REGION.to_owned(),
            instances: pairs(instances),
            username: USERNAME.to_owned(),
            password: PASSWORD.to_owned(),
            expires_ms: None,
        }
    }
}

#[derive(Default)]
struct Counters {
    issued: AtomicUsize,
    lookups: AtomicUsize,
    refused: AtomicUsize,
    nonces: Mutex<HashSet<String>>,
}

/// A running stub. It serves until the tokio runtime that started it shuts
/// down (dropping this value does not stop it).
pub struct CloudStub {
    /// Where it listens, e.g. `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// User of the tokens it issues.
    pub username: String,
    /// Password of the tokens it issues.
    pub password: String,
    counters: Arc<Counters>,
}

impl CloudStub {
    /// A stub playing `cloud` as `setup` says. Must be called within a
    /// tokio runtime.
    pub fn launch(cloud: Cloud, setup: Setup) -> CloudStub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the cloud stub");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let counters = Arc::new(Counters::default());
        let stub = CloudStub {
            endpoint: format!("http://{addr}"),
            username: setup.username.clone(),
            password: setup.password.clone(),
            counters: counters.clone(),
        };
        let setup = Arc::new(setup);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (setup, counters) = (setup.clone(), counters.clone());
                tokio::spawn(async move { serve(stream, cloud, &setup, &counters).await });
            }
        });
        stub
    }

    /// How many tokens it has issued.
    pub fn issued(&self) -> usize {
        self.counters.issued.load(Ordering::SeqCst)
    }

    /// How many instance lookups (by name) it has answered.
    pub fn lookups(&self) -> usize {
        self.counters.lookups.load(Ordering::SeqCst)
    }

    /// How many requests it refused (unknown key, bad signature, malformed).
    pub fn refused(&self) -> usize {
        self.counters.refused.load(Ordering::SeqCst)
    }
}

/// A request as the stub saw it: headers lowercased, repeats joined by `,`.
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// An answer: HTTP status and JSON body.
type Answer = (u16, String);

/// Answers one request, then closes the connection.
async fn serve(stream: TcpStream, cloud: Cloud, setup: &Setup, counters: &Counters) {
    let mut stream = BufReader::new(stream);
    let Some(seen) = read_request(&mut stream).await else {
        return;
    };
    let (status, body) = match setup.mode {
        Mode::Verify => match cloud {
            Cloud::Acr => acr(&seen, setup, counters),
            Cloud::Tcr => tcr(&seen, setup, counters),
        },
        Mode::Status500 => (500, r#"{"Code":"InternalError","Message":"stub"}"#.into()),
        Mode::Garbage => (200, r#"{"Response": 7"#.into()),
        Mode::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.get_mut().write_all(response.as_bytes()).await;
    let _ = stream.get_mut().shutdown().await;
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    stream.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.to_owned(), String::new()),
    };
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
        query,
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

/// Whether any of the stub's secrets travelled in the request.
fn secret_sent(seen: &Seen, setup: &Setup) -> bool {
    setup.keys.iter().any(|(_, secret)| {
        seen.headers.values().any(|v| v.contains(secret.as_str()))
            || seen.path.contains(secret.as_str())
            || seen.query.contains(secret.as_str())
            || String::from_utf8_lossy(&seen.body).contains(secret.as_str())
    })
}

/// Percent-decoding of one query component (`+` is a plus, as RFC 3986
/// has it).
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The RFC 3986 encoding the V3 signature canonicalises with.
fn rfc3986(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------- Alibaba

/// An Alibaba error answer.
fn ali_error(status: u16, code: &str, message: &str) -> Answer {
    let body = json!({"RequestId": "stub-request", "Code": code, "Message": message});
    (status, body.to_string())
}

/// The Container Registry API: checks the V3 signature, then answers
/// `GetAuthorizationToken` (2016-06-07 `GET /tokens`, 2018-12-01 with
/// `InstanceId`) and `ListInstance`.
fn acr(seen: &Seen, setup: &Setup, counters: &Counters) -> Answer {
    let params = match acr_check(seen, setup, counters) {
        Ok(params) => params,
        Err(answer) => {
            counters.refused.fetch_add(1, Ordering::SeqCst);
            return answer;
        }
    };
    let header = |name: &str| seen.headers.get(name).map(String::as_str).unwrap_or("");
    let expires = setup
        .expires_ms
        .unwrap_or_else(|| (Utc::now() + TimeDelta::hours(1)).timestamp_millis());
    let call = (
        seen.method.as_str(),
        seen.path.as_str(),
        header("x-acs-action"),
        header("x-acs-version"),
    );
    match call {
        ("GET", "/tokens", "GetAuthorizationToken", "2016-06-07") => {
            counters.issued.fetch_add(1, Ordering::SeqCst);
            let body = json!({"data": {
                "authorizationToken": setup.password,
                "tempUserName": setup.username,
                "expireDate": expires,
            }});
            (200, body.to_string())
        }
        ("POST", "/", "GetAuthorizationToken", "2018-12-01") => {
            let id = params.get("InstanceId").map(String::as_str).unwrap_or("");
            if !setup.instances.iter().any(|(_, known)| known == id) {
                let body = json!({"IsSuccess": false, "Code": "INSTANCE_NOT_EXIST",
                    "RequestId": "stub-request"});
                return (200, body.to_string());
            }
            counters.issued.fetch_add(1, Ordering::SeqCst);
            let body = json!({
                "RequestId": "stub-request",
                "IsSuccess": true,
                "Code": "success",
                "TempUsername": setup.username,
                "AuthorizationToken": setup.password,
                "ExpireTime": expires,
            });
            (200, body.to_string())
        }
        ("POST", "/", "ListInstance", "2018-12-01") => {
            counters.lookups.fetch_add(1, Ordering::SeqCst);
            let wanted = params.get("InstanceName").map(String::as_str).unwrap_or("");
            // Like the API: the name filter matches by substring.
            let instances: Vec<Value> = setup
                .instances
                .iter()
                .filter(|(name, _)| name.contains(wanted))
                .map(|(name, id)| {
                    json!({"InstanceId": id, "InstanceName": name,
                        "InstanceStatus": "RUNNING", "RegionId": ACR_REGION})
                })
                .collect();
            let body = json!({"IsSuccess": true, "Code": "success",
                "TotalCount": instances.len(), "Instances": instances});
            (200, body.to_string())
        }
        _ => ali_error(
            400,
            "InvalidAction.NotFound",
            "unknown method, path, action or version",
        ),
    }
}

/// Verifies an ACS3-HMAC-SHA256 request; the decoded query parameters, or
/// the error answer.
fn acr_check(
    seen: &Seen,
    setup: &Setup,
    counters: &Counters,
) -> Result<BTreeMap<String, String>, Answer> {
    let malformed = |why: &str| ali_error(400, "IncompleteSignature", why);
    if secret_sent(seen, setup) {
        return Err(malformed("the AccessKey Secret was sent"));
    }
    let header = |name: &str| {
        seen.headers
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| malformed(&format!("no {name} header")))
    };
    let auth = header("authorization")?;
    let fields = auth
        .strip_prefix("ACS3-HMAC-SHA256 ")
        .ok_or_else(|| malformed("not ACS3-HMAC-SHA256"))?;
    let mut parts = BTreeMap::new();
    for part in fields.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("bad authorization field"))?;
        parts.insert(k, v);
    }
    let get = |k: &str| {
        parts
            .get(k)
            .copied()
            .ok_or_else(|| malformed(&format!("no {k} in authorization")))
    };
    let key_id = get("Credential")?;
    let signed: Vec<&str> = get("SignedHeaders")?.split(';').collect();
    let mut sorted = signed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != signed {
        return Err(malformed("SignedHeaders are not sorted and unique"));
    }
    // Every x-acs-* header sent, and host, must be signed.
    for name in seen.headers.keys() {
        if (name.starts_with("x-acs-") || name == "host") && !signed.contains(&name.as_str()) {
            return Err(malformed(&format!("{name} is not signed")));
        }
    }
    for required in [
        "host",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    ] {
        header(required)?;
    }
    if header("x-acs-content-sha256")? != sha256_hex(&seen.body) {
        return Err(malformed("x-acs-content-sha256 is not the body's hash"));
    }
    let date = header("x-acs-date")?;
    let at = NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|_| malformed("x-acs-date is not yyyy-MM-ddTHH:mm:ssZ"))?;
    if (Utc::now() - Utc.from_utc_datetime(&at))
        .num_minutes()
        .abs()
        > 15
    {
        return Err(ali_error(
            400,
            "InvalidTimeStamp.Expired",
            "x-acs-date is too far off",
        ));
    }
    let nonce = header("x-acs-signature-nonce")?;
    let fresh = counters
        .nonces
        .lock()
        .map(|mut n| n.insert(nonce.to_owned()))
        .unwrap_or(false);
    if !fresh {
        return Err(ali_error(
            400,
            "SignatureNonceUsed",
            "the nonce was used before",
        ));
    }
    let mut params = BTreeMap::new();
    let mut canonical_params = Vec::new();
    for pair in seen.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (
            decode(k).ok_or_else(|| malformed("bad query encoding"))?,
            decode(v).ok_or_else(|| malformed("bad query encoding"))?,
        );
        canonical_params.push((rfc3986(&k), rfc3986(&v)));
        params.insert(k, v);
    }
    canonical_params.sort();
    let query: Vec<String> = canonical_params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let path: Vec<String> = seen
        .path
        .split('/')
        .map(|segment| decode(segment).map(|s| rfc3986(&s)))
        .collect::<Option<_>>()
        .ok_or_else(|| malformed("bad path encoding"))?;
    let mut canonical = format!("{}\n{}\n{}\n", seen.method, path.join("/"), query.join("&"));
    for name in &signed {
        canonical.push_str(&format!("{name}:{}\n", header(name)?.trim()));
    }
    canonical.push_str(&format!(
        "\n{}\n{}",
        signed.join(";"),
        header("x-acs-content-sha256")?
    ));
    let to_sign = format!("ACS3-HMAC-SHA256\n{}", sha256_hex(canonical.as_bytes()));
    let mut secrets = setup
        .keys
        .iter()
        .filter(|(id, _)| id == key_id)
        .map(|(_, secret)| secret)
        .peekable();
    if secrets.peek().is_none() {
        return Err(ali_error(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    }
    let signature = get("Signature")?;
    if !secrets.any(|secret| hex::encode(hmac(secret.as_bytes(), &to_sign)) == signature) {
        return Err(ali_error(
            400,
            "SignatureDoesNotMatch",
            "Specified signature does not match our calculation.",
        ));
    }
    Ok(params)
}

// ---------------------------------------------------------------- Tencent

/// A Tencent error answer (HTTP 200, like the API).
fn tc_error(code: &str, message: &str) -> Answer {
    let body = json!({"Response": {"Error": {"Code": code, "Message": message},
        "RequestId": "stub-request"}});
    (200, body.to_string())
}

/// The TCR API: checks the TC3 signature, then answers
/// `CreateInstanceToken` and `DescribeInstances`.
fn tcr(seen: &Seen, setup: &Setup, counters: &Counters) -> Answer {
    let (action, body) = match tcr_check(seen, setup) {
        Ok(checked) => checked,
        Err(answer) => {
            counters.refused.fetch_add(1, Ordering::SeqCst);
            return answer;
        }
    };
    match action.as_str() {
        "CreateInstanceToken" => {
            let id = body["RegistryId"].as_str().unwrap_or("");
            if body["TokenType"] != "temp" {
                return tc_error("InvalidParameter", "the stub issues temp tokens only");
            }
            if !setup.instances.iter().any(|(_, known)| known == id) {
                return tc_error("ResourceNotFound", "the instance does not exist");
            }
            counters.issued.fetch_add(1, Ordering::SeqCst);
            let expires = setup
                .expires_ms
                .unwrap_or_else(|| (Utc::now() + TimeDelta::hours(1)).timestamp_millis());
            let answer = json!({"Response": {
                "Username": setup.username,
                "Token": setup.password,
                "ExpTime": expires,
                "TokenId": null,
                "RequestId": "stub-request",
            }});
            (200, answer.to_string())
        }
        "DescribeInstances" => {
            counters.lookups.fetch_add(1, Ordering::SeqCst);
            let filters = body["Filters"].as_array().cloned().unwrap_or_default();
            let wanted: Vec<String> = filters
                .iter()
                .filter(|f| f["Name"] == "RegistryName")
                .flat_map(|f| f["Values"].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let registries: Vec<Value> = setup
                .instances
                .iter()
                .filter(|(name, _)| wanted.is_empty() || wanted.contains(name))
                .map(|(name, id)| {
                    json!({"RegistryId": id, "RegistryName": name, "RegistryType": "basic",
                        "Status": "Running", "PublicDomain": format!("{name}.tencentcloudcr.com"),
                        "RegionName": setup.region})
                })
                .collect();
            let answer = json!({"Response": {"TotalCount": registries.len(),
                "Registries": registries, "RequestId": "stub-request"}});
            (200, answer.to_string())
        }
        other => tc_error("InvalidAction", &format!("the stub does not know {other}")),
    }
}

/// Verifies a TC3-HMAC-SHA256 request; the action and the JSON body, or
/// the error answer.
fn tcr_check(seen: &Seen, setup: &Setup) -> Result<(String, Value), Answer> {
    let malformed = |why: &str| tc_error("AuthFailure.InvalidAuthorization", why);
    if secret_sent(seen, setup) {
        return Err(malformed("the SecretKey was sent"));
    }
    if (
        seen.method.as_str(),
        seen.path.as_str(),
        seen.query.as_str(),
    ) != ("POST", "/", "")
    {
        return Err(malformed("not POST /"));
    }
    let header = |name: &str| {
        seen.headers
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| malformed(&format!("no {name} header")))
    };
    if !header("content-type")?.starts_with("application/json") {
        return Err(malformed("content-type is not JSON"));
    }
    if header("x-tc-version")? != "2019-09-24" {
        return Err(tc_error(
            "InvalidParameter",
            "X-TC-Version is not 2019-09-24",
        ));
    }
    if header("x-tc-region")? != setup.region {
        return Err(tc_error(
            "InvalidParameterValue",
            "X-TC-Region is not the instance's",
        ));
    }
    let action = header("x-tc-action")?.to_owned();
    let timestamp: i64 = header("x-tc-timestamp")?
        .parse()
        .map_err(|_| malformed("X-TC-Timestamp is not a number"))?;
    let at = DateTime::from_timestamp(timestamp, 0).ok_or_else(|| malformed("bad timestamp"))?;
    if (Utc::now() - at).num_minutes().abs() > 5 {
        return Err(tc_error(
            "AuthFailure.SignatureExpire",
            "the signature expired",
        ));
    }
    let auth = header("authorization")?;
    let fields = auth
        .strip_prefix("TC3-HMAC-SHA256 ")
        .ok_or_else(|| malformed("not TC3-HMAC-SHA256"))?;
    let mut parts = BTreeMap::new();
    for part in fields.split(", ") {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| malformed("bad authorization field"))?;
        parts.insert(k, v);
    }
    let get = |k: &str| {
        parts
            .get(k)
            .copied()
            .ok_or_else(|| malformed(&format!("no {k} in authorization")))
    };
    let scope: Vec<&str> = get("Credential")?.split('/').collect();
    let [secret_id, date, service, terminator] = scope[..] else {
        return Err(malformed("credential scope has not 4 parts"));
    };
    if (service, terminator) != ("tcr", "tc3_request") {
        return Err(malformed("credential scope is not <date>/tcr/tc3_request"));
    }
    if date != at.format("%Y-%m-%d").to_string() {
        return Err(malformed(
            "the scope's date is not the timestamp's UTC date",
        ));
    }
    let signed: Vec<&str> = get("SignedHeaders")?.split(';').collect();
    let mut sorted = signed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != signed {
        return Err(malformed("SignedHeaders are not sorted and unique"));
    }
    for required in ["content-type", "host"] {
        if !signed.contains(&required) {
            return Err(malformed(&format!("{required} is not signed")));
        }
    }
    let mut canonical = String::from("POST\n/\n\n");
    for name in &signed {
        let value = header(name)?.trim().to_ascii_lowercase();
        canonical.push_str(&format!("{name}:{value}\n"));
    }
    canonical.push_str(&format!(
        "\n{}\n{}",
        signed.join(";"),
        sha256_hex(&seen.body)
    ));
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/tcr/tc3_request\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut secrets = setup
        .keys
        .iter()
        .filter(|(id, _)| id == secret_id)
        .map(|(_, secret)| secret)
        .peekable();
    if secrets.peek().is_none() {
        return Err(tc_error(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        ));
    }
    let signature = get("Signature")?;
    let signs = |secret: &str| {
        let k_date = hmac(format!("TC3{secret}").as_bytes(), date);
        let k_service = hmac(&k_date, "tcr");
        let k_signing = hmac(&k_service, "tc3_request");
        hex::encode(hmac(&k_signing, &to_sign)) == signature
    };
    if !secrets.any(|secret| signs(secret)) {
        return Err(tc_error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        ));
    }
    let body: Value = serde_json::from_slice(&seen.body)
        .map_err(|_| tc_error("InvalidParameter", "the body is not JSON"))?;
    Ok((action, body))
}
