//! What the ACR and TCR token clients share: one signed HTTP exchange with
//! its timeout, transport errors that never carry a header (so never a
//! signature), the HMAC/SHA-256 helpers of both signature schemes, and the
//! checks on key ids, regions and token expiries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::CredentialError;

/// The whole call, connect to last body byte, must finish within this.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of an answer berth reads (token answers are about 2 KiB).
const MAX_BODY: usize = 1024 * 1024;

/// HMAC-SHA256 of `msg` under `key`.
pub(super) fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Lowercase hex SHA-256 of `data`.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An HTTP answer: status, headers and (bounded) body.
pub(super) struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

/// Sends `request` (already signed) with `timeout`; `service` names the API
/// in errors (`ACR API at https://…`).
pub(super) async fn exchange(
    http: &reqwest::Client,
    mut request: reqwest::Request,
    timeout: Duration,
    service: &str,
) -> Result<Answer, CredentialError> {
    *request.timeout_mut() = Some(timeout);
    let mut url = request.url().clone();
    url.set_query(None);
    let at = format!("{service} at {url}");
    let transport = |e: reqwest::Error| transport_error(&at, timeout, e);
    let mut response = http.execute(request).await.map_err(transport)?;
    let status = response.status().as_u16();
    let headers = std::mem::take(response.headers_mut());
    let too_big = |n: u64| CredentialError::BadResponse(format!("{at} answered with {n} bytes"));
    if let Some(n) = response.content_length()
        && n > MAX_BODY as u64
    {
        return Err(too_big(n));
    }
    // Read chunk by chunk, so a body without a length cannot grow past the
    // limit in memory either.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(too_big(body.len() as u64));
        }
    }
    let body = bytes::Bytes::from(body);
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A network failure as [`CredentialError::Unavailable`]. reqwest's
/// top-level message is generic; the cause (refused, DNS, TLS) is in the
/// source chain. None of it holds the request's headers, so no signature or
/// key can leak here.
fn transport_error(at: &str, timeout: Duration, e: reqwest::Error) -> CredentialError {
    if e.is_timeout() {
        return CredentialError::Unavailable(format!("{at} did not answer within {timeout:?}"));
    }
    let e = e.without_url(); // `at` names it, without the query
    let mut message = format!("{at}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    CredentialError::Unavailable(message)
}

/// Checks an access key id / SecretId: non-empty ASCII letters and digits
/// (anything else would corrupt a credential scope or header).
pub(super) fn check_key_id(id: &str, what: &str) -> Result<(), CredentialError> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CredentialError::InvalidKey(format!(
            "the {what} must be a non-empty string of letters and digits"
        )));
    }
    Ok(())
}

/// Checks a region name before it goes into a host name or header.
pub(super) fn check_region(region: &str, cloud: &str) -> Result<(), CredentialError> {
    let valid = !region.is_empty()
        && region.len() <= 64
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(CredentialError::InvalidKey(format!(
            "{region:?} is not a region name of {cloud}"
        )))
    }
}

/// A token expiry given in milliseconds since the epoch.
pub(super) fn expiry_from_millis(ms: i64) -> Option<DateTime<Utc>> {
    if ms <= 0 {
        return None;
    }
    DateTime::from_timestamp_millis(ms)
}

/// serde_json's messages can quote values from the body (a token), so a
/// parse failure reports only where it happened.
pub(super) fn not_json(what: &str, e: &serde_json::Error) -> CredentialError {
    CredentialError::BadResponse(format!(
        "{what}: not the expected JSON (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// The base URL (`scheme://host[:port]`, no trailing `/`) and the `Host`
/// header value the HTTP client will send for it, which both signature
/// schemes sign.
pub(super) fn base_and_host(base: &str) -> Result<(String, String), CredentialError> {
    // The text is not echoed: a URL with user info would carry a password.
    let bad = || CredentialError::InvalidKey("the endpoint is not a usable URL".into());
    let url = url::Url::parse(base).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.path() != "/"
        || url.query().is_some()
        || !url.username().is_empty()
    {
        return Err(bad());
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    // `url` drops the scheme's default port, as the HTTP client does when
    // it writes `Host`.
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok((format!("{}://{host}", url.scheme()), host))
}

/// A random nonce: 32 lowercase hex digits.
pub(super) fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_what_the_client_sends() {
        let b = |s: &str| base_and_host(s).map(|(_, h)| h);
        assert_eq!(
            b("https://cr.cn-hangzhou.aliyuncs.com"),
            Ok("cr.cn-hangzhou.aliyuncs.com".into())
        );
        assert_eq!(b("https://x.example.com:443/"), Ok("x.example.com".into()));
        assert_eq!(b("http://127.0.0.1:8080"), Ok("127.0.0.1:8080".into()));
        assert_eq!(
            base_and_host("http://127.0.0.1:8080/").map(|(u, _)| u),
            Ok("http://127.0.0.1:8080".into())
        );
        for bad in [
            "not a url",
            "ftp://x",
            "https://x/path",
            "https://u:p@x",
            "https://x/?q",
        ] {
            assert!(
                matches!(base_and_host(bad), Err(CredentialError::InvalidKey(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_ids_regions_and_expiries() {
        assert!(check_key_id("LTAI5tExample01", "AccessKey ID").is_ok());
        for bad in ["", "AKID/x", "a b", "é"] {
            assert!(check_key_id(bad, "x").is_err(), "{bad:?}");
        }
        assert!(check_region("cn-hangzhou", "x").is_ok());
        assert!(check_region("cn.hangzhou", "x").is_err());
        assert_eq!(
            expiry_from_millis(1_571_242_083_000),
            DateTime::from_timestamp(1_571_242_083, 0)
        );
        assert_eq!(expiry_from_millis(0), None);
        assert_eq!(expiry_from_millis(i64::MAX), None);
    }
}
