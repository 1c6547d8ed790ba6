//! Tests for `ecr.rs` against a loopback HTTP/1.1 stub that checks SigV4 by
//! hand (HMAC chain written here, not aws-sigv4), as ECR would.

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;

const AKID: &str = "AKIDEXAMPLE12345";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "eu-west-1";
// $ printf %s 'AWS:pa:ss' | base64
const TOKEN: &str = "QVdTOnBhOnNz";

#[derive(Clone, Copy)]
enum Mode {
    Verify,
    Status500,
    Garbage,
    Hang,
}

/// A request as the stub saw it: headers lowercased, repeats joined by `,`.
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Starts the stub; returns its endpoint, e.g. `http://127.0.0.1:PORT`.
async fn stub(mode: Mode) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let Some(seen) = read_request(&mut stream).await else {
                    return;
                };
                let (status, body) = match mode {
                    Mode::Verify => verify(&seen),
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
            });
        }
    });
    format!("http://{addr}")
}

async fn read_request(stream: &mut BufReader<tokio::net::TcpStream>) -> Option<Seen> {
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
/// `InvalidSignatureException` for a wrong signature, 200 with a token.
fn verify(seen: &Seen) -> (u16, String) {
    match check(seen) {
        Ok(true) => {
            let body = serde_json::json!({"authorizationData": [{
                "authorizationToken": TOKEN,
                "expiresAt": 1767225600.5,
                "proxyEndpoint": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            }]});
            (200, body.to_string())
        }
        Ok(false) => (
            403,
            serde_json::json!({"__type": "InvalidSignatureException",
                "message": "The request signature we calculated does not match the signature you provided."})
            .to_string(),
        ),
        Err(problem) => (
            400,
            serde_json::json!({"__type": "StubCheckFailed", "message": problem}).to_string(),
        ),
    }
}

/// `Ok(signature matches)`, or `Err` naming what is malformed.
fn check(seen: &Seen) -> Result<bool, String> {
    let header = |name: &str| seen.headers.get(name).ok_or(format!("no {name} header"));
    if (seen.method.as_str(), seen.path.as_str()) != ("POST", "/") {
        return Err(format!("request line {} {}", seen.method, seen.path));
    }
    if header("content-type")? != CONTENT_TYPE || header("x-amz-target")? != TARGET {
        return Err("wrong content-type or x-amz-target".into());
    }
    if seen.headers.values().any(|v| v.contains(SECRET)) {
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
    if (akid, region, service, terminator) != (AKID, REGION, "ecr", "aws4_request") {
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
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{REGION}/ecr/aws4_request\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("AWS4{SECRET}").as_bytes(), date);
    let k_region = hmac(&k_date, REGION);
    let k_service = hmac(&k_region, "ecr");
    let k_signing = hmac(&k_service, "aws4_request");
    Ok(hex::encode(hmac(&k_signing, &to_sign)) == get("Signature")?)
}

fn client(endpoint: String) -> EcrClient {
    EcrClient::new(reqwest::Client::new(), Some(endpoint))
}

#[tokio::test]
async fn right_secret_gets_a_token() {
    let ecr = client(stub(Mode::Verify).await);
    let creds = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(format!("{SECRET}\n")))
        .await
        .expect("token");
    assert_eq!(creds.username, "AWS");
    assert_eq!(creds.password.expose(), "pa:ss", "split at the first ':'");
    assert_eq!(
        creds.server_address,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
    let expected = DateTime::from_timestamp(1_767_225_600, 500_000_000);
    assert_eq!(creds.expires_at, expected);
}

#[tokio::test]
async fn wrong_secret_is_rejected_without_leaking_it() {
    let ecr = client(stub(Mode::Verify).await);
    let wrong = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY0";
    let err = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(wrong))
        .await
        .expect_err("rejected");
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, CredentialError::Rejected(_)), "{shown}");
    assert!(shown.contains("InvalidSignatureException"), "{shown}");
    assert!(!shown.contains(wrong) && !shown.contains(SECRET), "{shown}");
}

#[tokio::test]
async fn server_errors_are_unavailable() {
    let ecr = client(stub(Mode::Status500).await);
    let err = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("500");
    assert!(matches!(err, CredentialError::Unavailable(_)), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn garbage_is_a_bad_response() {
    let ecr = client(stub(Mode::Garbage).await);
    let err = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("garbage");
    assert!(matches!(err, CredentialError::BadResponse(_)), "{err}");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_unavailable() {
    let ecr = client(stub(Mode::Hang).await).with_timeout(std::time::Duration::from_millis(300));
    let err = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, CredentialError::Unavailable(ref m) if m.contains("did not answer")),
        "{err}"
    );

    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let err = client(format!("http://{port}"))
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("refused");
    assert!(matches!(err, CredentialError::Unavailable(_)), "{err}");
}

#[test]
fn endpoints_follow_the_partition() {
    let ecr = EcrClient::new(reqwest::Client::new(), None);
    let url = |r| ecr.endpoint_url(r);
    assert_eq!(
        url("us-east-1"),
        Ok("https://api.ecr.us-east-1.amazonaws.com/".into())
    );
    assert_eq!(
        url("cn-north-1"),
        Ok("https://api.ecr.cn-north-1.amazonaws.com.cn/".into())
    );
    for bad in ["", "us-east-1/x", "US-EAST-1", "a b"] {
        assert!(
            matches!(url(bad), Err(CredentialError::InvalidKey(_))),
            "{bad:?}"
        );
    }
    let local = client("http://127.0.0.1:4566/".into());
    assert_eq!(
        local.endpoint_url("us-east-1"),
        Ok("http://127.0.0.1:4566/".into())
    );
}

#[tokio::test]
async fn invalid_inputs_fail_before_any_call() {
    let ecr = client("http://127.0.0.1:9".into());
    for (akid, secret) in [("", SECRET), ("AKID/X", SECRET), (AKID, " ")] {
        let err = ecr
            .get_authorization_token(REGION, akid, &Secret::new(secret))
            .await
            .expect_err("invalid");
        assert!(matches!(err, CredentialError::InvalidKey(_)), "{err}");
    }
    let err = client("not a url".into())
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("bad endpoint");
    assert!(matches!(err, CredentialError::InvalidKey(_)), "{err}");
}

#[test]
fn error_types_are_classified() {
    let body = br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"bad token s3cr3t"}"#;
    let err = classify_error(400, None, body, "s3cr3t");
    assert_eq!(
        err,
        CredentialError::Rejected("UnrecognizedClientException: bad token *** (HTTP 400)".into())
    );
    let err = classify_error(403, Some("AccessDeniedException:http://x".into()), b"", "k");
    assert_eq!(
        err,
        CredentialError::Rejected("AccessDeniedException (HTTP 403)".into())
    );
    let throttled = br#"{"__type":"ThrottlingException","Message":"Rate exceeded"}"#;
    assert!(classify_error(400, None, throttled, "k").is_transient());
    assert!(classify_error(429, None, b"", "k").is_transient());
    assert!(matches!(
        classify_error(302, None, b"", "k"),
        CredentialError::BadResponse(_)
    ));
}
