//! Amazon ECR: a docker login is a 12-hour token from the
//! `GetAuthorizationToken` API, called with a SigV4-signed request.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::DateTime;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{CredentialError, Credentials, cloud};
use crate::secret::Secret;

pub use super::cloud::DEFAULT_TIMEOUT;

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Regions with a FIPS 140 validated ECR API endpoint
/// (`ecr-fips.<region>.amazonaws.com`): the US commercial regions and
/// AWS GovCloud (US).
pub const FIPS_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-east-1",
    "us-gov-west-1",
];

/// Which ECR API endpoint a registry's tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// `api.ecr.<region>.amazonaws.com` (`.com.cn` in China).
    #[default]
    Standard,
    /// `ecr-fips.<region>.amazonaws.com`, for registries reached through
    /// their FIPS host.
    Fips,
}

impl Flavor {
    /// The flavour a registry asks for by its host: ECR's FIPS registry
    /// hosts are `<account>.dkr.ecr-fips.<region>.amazonaws.com`, so a
    /// registry added with that address gets its tokens from the FIPS API
    /// endpoint too; any other host uses the standard one.
    pub fn of_registry_host(host: &str) -> Self {
        let host = host.to_ascii_lowercase();
        let host = host.split(':').next().unwrap_or_default();
        if host.contains(".dkr.ecr-fips.") {
            Flavor::Fips
        } else {
            Flavor::Standard
        }
    }
}

/// Calls ECR's `GetAuthorizationToken`.
#[derive(Debug, Clone)]
pub struct EcrClient {
    http: reqwest::Client,
    endpoint: Option<String>,
    timeout: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: String,
    expires_at: f64,
    proxy_endpoint: String,
}

/// AWS JSON 1.1 error body; the type may also come in `x-amzn-ErrorType`.
#[derive(Deserialize, Default)]
struct AwsError {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

impl EcrClient {
    /// A client using `http` (berth's shared client). `endpoint_override`
    /// (e.g. `http://127.0.0.1:4566` for a local emulator or a VPC endpoint
    /// URL) replaces the regional endpoint.
    pub fn new(http: reqwest::Client, endpoint_override: Option<String>) -> Self {
        EcrClient {
            http,
            endpoint: endpoint_override,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Replaces the total time allowed for one call ([`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL the token request goes to for `region`.
    pub fn endpoint_url(&self, region: &str) -> Result<String, CredentialError> {
        self.endpoint_url_with(Flavor::Standard, region)
    }

    /// The URL the token request goes to for `region` in `flavor`. An
    /// endpoint override wins over both flavours. FIPS is only offered in
    /// [`FIPS_REGIONS`]; asking for it elsewhere (China included) is an
    /// [`CredentialError::InvalidKey`] rather than a silent fallback.
    pub fn endpoint_url_with(
        &self,
        flavor: Flavor,
        region: &str,
    ) -> Result<String, CredentialError> {
        cloud::check_region(region, "AWS")?;
        Ok(match &self.endpoint {
            Some(endpoint) => format!("{}/", endpoint.trim_end_matches('/')),
            None if flavor == Flavor::Fips => {
                if !FIPS_REGIONS.contains(&region) {
                    return Err(CredentialError::InvalidKey(format!(
                        "ECR has no FIPS endpoint in {region:?} (only in {})",
                        FIPS_REGIONS.join(", ")
                    )));
                }
                format!("https://ecr-fips.{region}.amazonaws.com/")
            }
            // China regions live in their own partition and domain.
            None if region.starts_with("cn-") => {
                format!("https://api.ecr.{region}.amazonaws.com.cn/")
            }
            None => format!("https://api.ecr.{region}.amazonaws.com/"),
        })
    }

    /// Fetches a docker login for the account of `access_key_id` in
    /// `region`: user `AWS`, a token password, the registry host as
    /// `server_address` and the token's expiry. Surrounding whitespace in
    /// the keys (from pasting) is ignored.
    pub async fn get_authorization_token(
        &self,
        region: &str,
        access_key_id: &str,
        secret_access_key: &Secret,
    ) -> Result<Credentials, CredentialError> {
        self.get_authorization_token_with(
            Flavor::Standard,
            region,
            access_key_id,
            secret_access_key,
        )
        .await
    }

    /// [`EcrClient::get_authorization_token`] from the endpoint of `flavor`
    /// (the signature's region and service are the same for both).
    pub async fn get_authorization_token_with(
        &self,
        flavor: Flavor,
        region: &str,
        access_key_id: &str,
        secret_access_key: &Secret,
    ) -> Result<Credentials, CredentialError> {
        let url = self.endpoint_url_with(flavor, region)?;
        let access_key_id = access_key_id.trim();
        let secret = secret_access_key.expose().trim();
        // Key ids are alphanumeric; anything else (a `/` especially) would
        // corrupt the credential scope of the signature.
        cloud::check_key_id(access_key_id, "AWS access key id")?;
        if secret.is_empty() {
            return Err(CredentialError::InvalidKey(
                "the AWS secret access key is empty".into(),
            ));
        }
        let request = signed_request(&url, region, access_key_id, secret)?;
        let request = reqwest::Request::try_from(request).map_err(|_| {
            CredentialError::InvalidKey(format!("{url} is not a usable endpoint URL"))
        })?;

        tracing::debug!(region, endpoint = %url, "requesting an ECR authorization token");
        // Bounded read, timeout and transport errors as for the other
        // clouds' APIs.
        let answer = cloud::exchange(&self.http, request, self.timeout, "ECR").await?;
        if !(200..300).contains(&answer.status) {
            let error_type = answer
                .headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Err(classify_error(
                answer.status,
                error_type,
                &answer.body,
                secret,
            ));
        }
        parse_token(&answer.body)
    }
}

/// Builds the `GetAuthorizationToken` request and signs it with SigV4.
fn signed_request(
    url: &str,
    region: &str,
    access_key_id: &str,
    secret: &str,
) -> Result<http::Request<Vec<u8>>, CredentialError> {
    let bad_endpoint =
        || CredentialError::InvalidKey(format!("{url} is not a usable endpoint URL"));
    let uri: http::Uri = url.parse().map_err(|_| bad_endpoint())?;
    // aws-sigv4 panics on a URI without a host; refuse it first.
    if uri.host().is_none_or(str::is_empty) || uri.scheme().is_none() {
        return Err(bad_endpoint());
    }
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .header("x-amz-target", TARGET)
        .body(b"{}".to_vec())
        .map_err(|_| bad_endpoint())?;

    let identity =
        aws_credential_types::Credentials::new(access_key_id, secret, None, None, "berth").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecr")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(signing_failed)?
        .into();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    let signable = SignableRequest::new(
        request.method().as_str(),
        url,
        headers,
        SignableBody::Bytes(request.body()),
    )
    .map_err(signing_failed)?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(signing_failed)?
        .into_parts();
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

/// Signing only fails on inputs we build ourselves (never on key values),
/// so the error needs no detail.
fn signing_failed<E>(_: E) -> CredentialError {
    CredentialError::InvalidKey("the ECR request could not be signed".into())
}

/// Maps an error answer to a [`CredentialError`]: throttling and server
/// faults are transient, other refusals mean the key is wrong or lacks
/// `ecr:GetAuthorizationToken`.
fn classify_error(
    status: u16,
    header_type: Option<String>,
    body: &[u8],
    secret: &str,
) -> CredentialError {
    let parsed: AwsError = serde_json::from_slice(body).unwrap_or_default();
    // Types come as `com.amazon.coral.service#AccessDeniedException` or
    // `AccessDeniedException:http://internal.amazon.com/...`; keep the name.
    let kind = parsed.kind.or(header_type).map(|k| {
        let k = k.rsplit('#').next().unwrap_or_default();
        k.split(':').next().unwrap_or_default().to_owned()
    });
    let message = parsed.message.map(|m| clean_message(&m, secret));
    let detail = match (&kind, &message) {
        (Some(k), Some(m)) => format!("{k}: {m} (HTTP {status})"),
        (Some(k), None) => format!("{k} (HTTP {status})"),
        (None, Some(m)) => format!("{m} (HTTP {status})"),
        (None, None) => format!("HTTP {status}"),
    };
    let throttled = kind.as_deref().is_some_and(|k| {
        k.contains("Throttl") || k == "ServiceUnavailableException" || k == "RequestTimeout"
    });
    match status {
        429 | 500..=599 => CredentialError::Unavailable(detail),
        400..=499 if throttled => CredentialError::Unavailable(detail),
        400..=499 => CredentialError::Rejected(detail),
        _ => CredentialError::BadResponse(format!("unexpected {detail}")),
    }
}

/// Provider text goes into our errors and logs: keep it short, on one
/// line, and (defensively; AWS never does this) without the secret.
pub(super) fn clean_message(message: &str, secret: &str) -> String {
    let redacted = if secret.is_empty() {
        message.to_owned()
    } else {
        message.replace(secret, "***")
    };
    let one_line: String = redacted
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

fn parse_token(body: &[u8]) -> Result<Credentials, CredentialError> {
    let bad = |what: &str| CredentialError::BadResponse(format!("ECR token response: {what}"));
    // serde_json's messages can quote values from the body (the token), so
    // report only where parsing failed.
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        bad(&format!(
            "not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let data = parsed
        .authorization_data
        .into_iter()
        .next()
        .ok_or_else(|| bad("no authorizationData"))?;
    let token = Zeroizing::new(data.authorization_token);
    let decoded = Zeroizing::new(
        B64.decode(token.trim())
            .map_err(|_| bad("authorizationToken is not base64"))?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| bad("authorizationToken is not text"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| bad("authorizationToken is not user:password"))?;
    if !data.expires_at.is_finite() || data.expires_at < 0.0 {
        return Err(bad("expiresAt is not a timestamp"));
    }
    // Whole seconds plus nanoseconds; the float is far below i64's range
    // for any real date, and from_timestamp rejects the rest.
    let secs = data.expires_at.trunc();
    let nanos = ((data.expires_at - secs) * 1e9).round().min(999_999_999.0) as u32;
    let expires_at = DateTime::from_timestamp(secs as i64, nanos)
        .ok_or_else(|| bad("expiresAt is out of range"))?;
    // `https://123456789012.dkr.ecr.eu-west-1.amazonaws.com` → host.
    let server_address = data
        .proxy_endpoint
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    if server_address.is_empty() {
        return Err(bad("proxyEndpoint is empty"));
    }
    Ok(Credentials {
        username: username.to_owned(),
        password: Secret::new(password),
        server_address,
        expires_at: Some(expires_at),
    })
}

#[cfg(test)]
#[path = "ecr_tests.rs"]
mod tests;
