//! Tencent Cloud TCR Enterprise: a docker login is a temporary instance
//! token (about an hour) from `CreateInstanceToken` (API version
//! 2019-09-24, `TokenType` `temp`), called with a SecretId/SecretKey and the
//! `TC3-HMAC-SHA256` signature. An instance known only by the name in its
//! address (`<name>.tencentcloudcr.com`) is looked up first with
//! `DescribeInstances` (filter `RegistryName`).
//!
//! Calls go to `https://tcr.tencentcloudapi.com/`, or to the endpoint the
//! server was given (tests).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::cloud::{self, Answer};
use super::{CredentialError, Credentials};
use crate::domain::instance::Instance;
use crate::secret::Secret;

pub use super::cloud::DEFAULT_TIMEOUT;

const ALGORITHM: &str = "TC3-HMAC-SHA256";
const SERVICE: &str = "tcr";
const VERSION: &str = "2019-09-24";
const CONTENT_TYPE: &str = "application/json; charset=utf-8";
const DEFAULT_ENDPOINT: &str = "https://tcr.tencentcloudapi.com";

/// Calls TCR's `CreateInstanceToken` (and `DescribeInstances`).
#[derive(Debug, Clone)]
pub struct TcrClient {
    http: reqwest::Client,
    endpoint: Option<String>,
    timeout: Duration,
}

/// A SecretId/SecretKey pair, trimmed and checked.
struct Keys<'a> {
    id: &'a str,
    secret: &'a str,
}

/// Every answer is `{"Response": {...}}`; failures carry `Error`.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "Response")]
    response: Answered<T>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Answered<T> {
    Failed {
        #[serde(rename = "Error")]
        error: TcError,
    },
    Done(T),
}

#[derive(Deserialize)]
struct TcError {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceToken {
    username: Option<String>,
    token: Option<String>,
    exp_time: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Instances {
    #[serde(default)]
    registries: Option<Vec<Registry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Registry {
    registry_id: String,
    registry_name: String,
}

impl TcrClient {
    /// A client using `http` (berth's shared client). `endpoint_override`
    /// (`http://127.0.0.1:PORT` for a test stub) replaces
    /// `https://tcr.tencentcloudapi.com`.
    pub fn new(http: reqwest::Client, endpoint_override: Option<String>) -> Self {
        TcrClient {
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

    /// A docker login for `instance` in `region` from the SecretId and
    /// SecretKey: the user TCR names, the temporary token as password and
    /// its expiry. `server_address` is left empty for the caller to fill
    /// in. Surrounding whitespace in the keys is ignored.
    pub async fn create_instance_token(
        &self,
        region: &str,
        instance: &Instance,
        secret_id: &str,
        secret_key: &Secret,
    ) -> Result<Credentials, CredentialError> {
        cloud::check_region(region, "Tencent Cloud")?;
        let keys = Keys {
            id: secret_id.trim(),
            secret: secret_key.expose().trim(),
        };
        cloud::check_key_id(keys.id, "Tencent Cloud SecretId")?;
        if keys.secret.is_empty() {
            return Err(CredentialError::InvalidKey(
                "the Tencent Cloud SecretKey is empty".into(),
            ));
        }
        let registry_id = match instance {
            Instance::Id(id) => id.clone(),
            Instance::Name(name) => self.registry_id(&keys, region, name).await?,
            Instance::None => {
                return Err(CredentialError::InvalidKey(
                    "no TCR instance: give instance_id or a `<instance>.tencentcloudcr.com` address"
                        .into(),
                ));
            }
        };
        tracing::debug!(region, registry_id, "requesting a TCR instance token");
        let payload = serde_json::json!({"RegistryId": registry_id, "TokenType": "temp"});
        let token: InstanceToken = self
            .call(&keys, region, "CreateInstanceToken", &payload)
            .await?;
        let bad = |what: &str| CredentialError::BadResponse(format!("TCR token response: {what}"));
        let username = token.username.filter(|u| !u.trim().is_empty());
        let password = Zeroizing::new(token.token.unwrap_or_default());
        let (Some(username), false) = (username, password.trim().is_empty()) else {
            return Err(bad("no Username or Token"));
        };
        let expires_at = token
            .exp_time
            .and_then(cloud::expiry_from_millis)
            .ok_or_else(|| bad("ExpTime is not a timestamp"))?;
        Ok(Credentials {
            username: username.trim().to_owned(),
            password: Secret::new(password.trim()),
            server_address: String::new(),
            expires_at: Some(expires_at),
        })
    }

    /// The id of the instance called `name` (from the registry's address).
    async fn registry_id(
        &self,
        keys: &Keys<'_>,
        region: &str,
        name: &str,
    ) -> Result<String, CredentialError> {
        tracing::debug!(region, name, "looking up a TCR instance by name");
        let payload = serde_json::json!({
            "Filters": [{"Name": "RegistryName", "Values": [name]}],
            "Limit": 100,
        });
        let found: Instances = self
            .call(keys, region, "DescribeInstances", &payload)
            .await?;
        found
            .registries
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.registry_name == name)
            .map(|r| r.registry_id)
            .ok_or_else(|| {
                CredentialError::Rejected(format!(
                    "no TCR instance named {name:?} in {region}; give instance_id"
                ))
            })
    }

    /// Signs and sends `action` with `payload`; the answer's `Response`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        keys: &Keys<'_>,
        region: &str,
        action: &str,
        payload: &serde_json::Value,
    ) -> Result<T, CredentialError> {
        let endpoint = self.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        let (base, host) = cloud::base_and_host(endpoint.trim_end_matches('/'))?;
        let body = serde_json::to_vec(payload).map_err(|_| {
            CredentialError::InvalidKey("the TCR request could not be built".into())
        })?;
        let now = Utc::now();
        let authorization = authorization(keys.id, keys.secret, &host, action, now, &body);
        let url = format!("{base}/");
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("X-TC-Action", action)
            .header("X-TC-Version", VERSION)
            .header("X-TC-Timestamp", now.timestamp().to_string())
            .header("X-TC-Region", region)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .body(body)
            .build()
            .map_err(|_| CredentialError::InvalidKey(format!("{url} is not a usable URL")))?;
        let Answer { status, body, .. } =
            cloud::exchange(&self.http, request, self.timeout, "TCR API").await?;
        let what = format!("TCR {action}");
        match status {
            200..=299 => {}
            429 | 500..=599 => {
                return Err(CredentialError::Unavailable(format!(
                    "{what} answered HTTP {status}"
                )));
            }
            _ => {
                return Err(CredentialError::BadResponse(format!(
                    "{what} answered HTTP {status}"
                )));
            }
        }
        let envelope: Envelope<T> =
            serde_json::from_slice(&body).map_err(|e| cloud::not_json(&what, &e))?;
        match envelope.response {
            Answered::Done(answer) => Ok(answer),
            Answered::Failed { error } => Err(classify_error(&what, &error, keys.secret)),
        }
    }
}

/// Maps an API error: limits and internal errors are transient; every
/// other code (AuthFailure.*, UnauthorizedOperation, ResourceNotFound, …)
/// means the keys or the instance are wrong.
fn classify_error(what: &str, e: &TcError, secret: &str) -> CredentialError {
    let code = super::ecr::clean_message(&e.code, secret);
    let message = super::ecr::clean_message(&e.message, secret);
    let detail = if message.is_empty() {
        format!("{what}: {code}")
    } else {
        format!("{what}: {code}: {message}")
    };
    let transient = [
        "RequestLimitExceeded",
        "InternalError",
        "ResourceUnavailable",
    ]
    .iter()
    .any(|p| code.starts_with(p));
    if transient {
        CredentialError::Unavailable(detail)
    } else {
        CredentialError::Rejected(detail)
    }
}

/// The `Authorization` header of a TC3-signed `POST /` of `body` to
/// `host`, signing `content-type`, `host` and `x-tc-action`.
pub(super) fn authorization(
    secret_id: &str,
    secret_key: &str,
    host: &str,
    action: &str,
    at: DateTime<Utc>,
    body: &[u8],
) -> String {
    let headers = [
        ("content-type", CONTENT_TYPE.to_owned()),
        ("host", host.to_owned()),
        ("x-tc-action", action.to_ascii_lowercase()),
    ];
    sign(secret_id, secret_key, SERVICE, &headers, at, body)
}

/// TC3-HMAC-SHA256 over a `POST /` with `headers` (lowercase names, in
/// order; values lowercased as the scheme wants).
pub(super) fn sign(
    secret_id: &str,
    secret_key: &str,
    service: &str,
    headers: &[(&str, String)],
    at: DateTime<Utc>,
    body: &[u8],
) -> String {
    let mut canonical = String::from("POST\n/\n\n");
    for (name, value) in headers {
        canonical.push_str(&format!("{name}:{}\n", value.trim().to_ascii_lowercase()));
    }
    let signed: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    let signed = signed.join(";");
    canonical.push_str(&format!("\n{signed}\n{}", cloud::sha256_hex(body)));
    let date = at.format("%Y-%m-%d").to_string();
    let scope = format!("{date}/{service}/tc3_request");
    let to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        at.timestamp(),
        cloud::sha256_hex(canonical.as_bytes())
    );
    let k_date = cloud::hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = cloud::hmac_sha256(&k_date, service.as_bytes());
    let k_signing = cloud::hmac_sha256(&k_service, b"tc3_request");
    let signature = hex::encode(cloud::hmac_sha256(&k_signing, to_sign.as_bytes()));
    format!(
        "{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
}

#[cfg(test)]
#[path = "tcr_tests.rs"]
mod tests;
