//! Alibaba Cloud ACR: a docker login is a temporary token (about an hour)
//! from the Container Registry API's `GetAuthorizationToken`, called with
//! an AccessKey pair and the V3 signature (`ACS3-HMAC-SHA256`).
//!
//! - Personal Edition: `GET /tokens`, API version 2016-06-07 (ROA style).
//! - Enterprise Edition: `GetAuthorizationToken` with `InstanceId=cri-…`,
//!   API version 2018-12-01 (RPC style, parameters in the query). An
//!   instance known only by the name in its address is looked up first with
//!   `ListInstance` (`InstanceName=…`).
//!
//! Both go to `https://cr.<region>.aliyuncs.com`, or to the endpoint the
//! server was given (tests).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::cloud::{self, Answer};
use super::{CredentialError, Credentials};
use crate::domain::instance::Instance;
use crate::secret::Secret;

pub use super::cloud::DEFAULT_TIMEOUT;

const ALGORITHM: &str = "ACS3-HMAC-SHA256";
const ACTION_TOKEN: &str = "GetAuthorizationToken";
const ACTION_LIST: &str = "ListInstance";
const PERSONAL_VERSION: &str = "2016-06-07";
const ENTERPRISE_VERSION: &str = "2018-12-01";
/// Hex SHA-256 of the empty body every call here sends.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Calls the ACR API's `GetAuthorizationToken` (and `ListInstance`).
#[derive(Debug, Clone)]
pub struct AcrClient {
    http: reqwest::Client,
    endpoint: Option<String>,
    timeout: Duration,
}

/// An AccessKey pair, trimmed and checked.
struct Keys<'a> {
    id: &'a str,
    secret: &'a str,
}

/// One API call: everything the signature covers.
struct Call<'a> {
    method: reqwest::Method,
    path: &'a str,
    action: &'a str,
    version: &'a str,
    query: Vec<(&'a str, &'a str)>,
}

#[derive(Deserialize)]
struct PersonalAnswer {
    data: PersonalToken,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersonalToken {
    authorization_token: String,
    temp_user_name: String,
    expire_date: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnterpriseToken {
    authorization_token: Option<String>,
    temp_username: Option<String>,
    expire_time: Option<i64>,
    is_success: Option<bool>,
    code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceList {
    #[serde(default)]
    instances: Vec<InstanceItem>,
    is_success: Option<bool>,
    code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceItem {
    instance_id: String,
    instance_name: String,
}

/// Error body; RPC answers capitalise, ROA answers do not.
#[derive(Deserialize, Default)]
struct AliError {
    #[serde(rename = "Code", alias = "code")]
    code: Option<String>,
    #[serde(rename = "Message", alias = "message")]
    message: Option<String>,
}

impl AcrClient {
    /// A client using `http` (berth's shared client). `endpoint_override`
    /// (`http://127.0.0.1:PORT` for a test stub) replaces
    /// `https://cr.<region>.aliyuncs.com`.
    pub fn new(http: reqwest::Client, endpoint_override: Option<String>) -> Self {
        AcrClient {
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

    /// The base URL of the API for `region`, without a trailing `/`.
    pub fn endpoint_url(&self, region: &str) -> Result<String, CredentialError> {
        cloud::check_region(region, "Alibaba Cloud")?;
        Ok(match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://cr.{region}.aliyuncs.com"),
        })
    }

    /// A docker login for the registry of `instance` (none: Personal
    /// Edition) in `region`, from the AccessKey pair: the temporary user,
    /// the token as password and its expiry. `server_address` is left empty
    /// for the caller to fill in. Surrounding whitespace in the keys (from
    /// pasting) is ignored.
    pub async fn get_authorization_token(
        &self,
        region: &str,
        instance: &Instance,
        access_key_id: &str,
        access_key_secret: &Secret,
    ) -> Result<Credentials, CredentialError> {
        let base = self.endpoint_url(region)?;
        let keys = Keys {
            id: access_key_id.trim(),
            secret: access_key_secret.expose().trim(),
        };
        cloud::check_key_id(keys.id, "Alibaba Cloud AccessKey ID")?;
        if keys.secret.is_empty() {
            return Err(CredentialError::InvalidKey(
                "the Alibaba Cloud AccessKey Secret is empty".into(),
            ));
        }
        let instance_id = match instance {
            Instance::None => return self.personal(&base, &keys).await,
            Instance::Id(id) => id.clone(),
            Instance::Name(name) => self.instance_id(&base, &keys, region, name).await?,
        };
        self.enterprise(&base, &keys, &instance_id).await
    }

    async fn personal(&self, base: &str, keys: &Keys<'_>) -> Result<Credentials, CredentialError> {
        tracing::debug!(endpoint = %base, "requesting an ACR Personal Edition token");
        let call = Call {
            method: reqwest::Method::GET,
            path: "/tokens",
            action: ACTION_TOKEN,
            version: PERSONAL_VERSION,
            query: Vec::new(),
        };
        let body = self.call(base, keys, &call).await?;
        let answer: PersonalAnswer =
            serde_json::from_slice(&body).map_err(|e| cloud::not_json("ACR token", &e))?;
        let token = answer.data;
        credentials(
            token.temp_user_name,
            Zeroizing::new(token.authorization_token),
            token.expire_date,
        )
    }

    async fn enterprise(
        &self,
        base: &str,
        keys: &Keys<'_>,
        instance_id: &str,
    ) -> Result<Credentials, CredentialError> {
        tracing::debug!(endpoint = %base, instance_id, "requesting an ACR Enterprise Edition token");
        let call = Call {
            method: reqwest::Method::POST,
            path: "/",
            action: ACTION_TOKEN,
            version: ENTERPRISE_VERSION,
            query: vec![("InstanceId", instance_id)],
        };
        let body = self.call(base, keys, &call).await?;
        let token: EnterpriseToken =
            serde_json::from_slice(&body).map_err(|e| cloud::not_json("ACR token", &e))?;
        if token.is_success == Some(false) {
            return Err(CredentialError::Rejected(format!(
                "GetAuthorizationToken for {instance_id} failed: {}",
                super::ecr::clean_message(token.code.as_deref().unwrap_or("no code"), keys.secret)
            )));
        }
        let bad =
            |what: &str| CredentialError::BadResponse(format!("ACR token response: no {what}"));
        credentials(
            token.temp_username.ok_or_else(|| bad("TempUsername"))?,
            Zeroizing::new(
                token
                    .authorization_token
                    .ok_or_else(|| bad("AuthorizationToken"))?,
            ),
            token.expire_time.ok_or_else(|| bad("ExpireTime"))?,
        )
    }

    /// The id of the instance called `name` (from the registry's address).
    async fn instance_id(
        &self,
        base: &str,
        keys: &Keys<'_>,
        region: &str,
        name: &str,
    ) -> Result<String, CredentialError> {
        tracing::debug!(endpoint = %base, name, "looking up an ACR instance by name");
        let call = Call {
            method: reqwest::Method::POST,
            path: "/",
            action: ACTION_LIST,
            version: ENTERPRISE_VERSION,
            query: vec![("InstanceName", name), ("PageSize", "100")],
        };
        let body = self.call(base, keys, &call).await?;
        let list: InstanceList =
            serde_json::from_slice(&body).map_err(|e| cloud::not_json("ACR ListInstance", &e))?;
        if list.is_success == Some(false) {
            return Err(CredentialError::Rejected(format!(
                "ListInstance failed: {}",
                super::ecr::clean_message(list.code.as_deref().unwrap_or("no code"), keys.secret)
            )));
        }
        // The name filter may match by substring: take the exact one.
        list.instances
            .into_iter()
            .find(|i| i.instance_name == name)
            .map(|i| i.instance_id)
            .ok_or_else(|| {
                CredentialError::Rejected(format!(
                    "no ACR Enterprise Edition instance named {name:?} in {region}; give instance_id"
                ))
            })
    }

    /// Signs and sends `call`; the body of a 2xx answer, else the error.
    async fn call(
        &self,
        base: &str,
        keys: &Keys<'_>,
        call: &Call<'_>,
    ) -> Result<bytes::Bytes, CredentialError> {
        let (base, host) = cloud::base_and_host(base)?;
        let query = canonical_query(&call.query);
        let mut headers = BTreeMap::new();
        headers.insert("host".to_owned(), host);
        headers.insert("x-acs-action".to_owned(), call.action.to_owned());
        headers.insert("x-acs-content-sha256".to_owned(), EMPTY_SHA256.to_owned());
        headers.insert(
            "x-acs-date".to_owned(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        headers.insert("x-acs-signature-nonce".to_owned(), cloud::nonce());
        headers.insert("x-acs-version".to_owned(), call.version.to_owned());
        let authorization = authorization(
            keys.id,
            keys.secret,
            call.method.as_str(),
            call.path,
            &query,
            &headers,
            EMPTY_SHA256,
        );
        let url = if query.is_empty() {
            format!("{base}{}", canonical_uri(call.path))
        } else {
            format!("{base}{}?{query}", canonical_uri(call.path))
        };
        let mut request = self.http.request(call.method.clone(), &url);
        for (name, value) in headers.iter().filter(|(n, _)| *n != "host") {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .header(reqwest::header::AUTHORIZATION, authorization)
            .build()
            .map_err(|_| CredentialError::InvalidKey(format!("{url} is not a usable URL")))?;
        let Answer { status, body, .. } =
            cloud::exchange(&self.http, request, self.timeout, "ACR API").await?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(classify_error(status, &body, keys.secret))
        }
    }
}

/// The login from a token answer; the password travels as a [`Secret`].
fn credentials(
    username: String,
    token: Zeroizing<String>,
    expire_ms: i64,
) -> Result<Credentials, CredentialError> {
    let bad = |what: &str| CredentialError::BadResponse(format!("ACR token response: {what}"));
    if username.trim().is_empty() || token.trim().is_empty() {
        return Err(bad("empty username or token"));
    }
    let expires_at =
        cloud::expiry_from_millis(expire_ms).ok_or_else(|| bad("the expiry is not a timestamp"))?;
    Ok(Credentials {
        username: username.trim().to_owned(),
        password: Secret::new(token.trim()),
        server_address: String::new(),
        expires_at: Some(expires_at),
    })
}

/// Maps an error answer to a [`CredentialError`]: throttling and server
/// faults are transient; other refusals mean the key is wrong, lacks the
/// permission, or names no instance.
fn classify_error(status: u16, body: &[u8], secret: &str) -> CredentialError {
    let parsed: AliError = serde_json::from_slice(body).unwrap_or_default();
    let code = parsed.code.map(|c| super::ecr::clean_message(&c, secret));
    let message = parsed
        .message
        .map(|m| super::ecr::clean_message(&m, secret));
    let detail = match (&code, &message) {
        (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
        (Some(c), None) => format!("{c} (HTTP {status})"),
        (None, Some(m)) => format!("{m} (HTTP {status})"),
        (None, None) => format!("HTTP {status}"),
    };
    let transient = code.as_deref().is_some_and(|c| {
        c.starts_with("Throttling") || c.starts_with("ServiceUnavailable") || c == "InternalError"
    });
    match status {
        429 | 500..=599 => CredentialError::Unavailable(detail),
        400..=499 if transient => CredentialError::Unavailable(detail),
        400..=499 => CredentialError::Rejected(detail),
        _ => CredentialError::BadResponse(format!("unexpected {detail}")),
    }
}

/// RFC 3986 encoding: letters, digits and `-_.~` stay, every other byte
/// becomes `%XX` (space is `%20`, `*` is `%2A`).
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path with each `/`-separated segment encoded.
fn canonical_uri(path: &str) -> String {
    path.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Parameters sorted by name, `name=value` encoded, joined by `&`.
pub(super) fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Authorization` header of a V3-signed request. `headers` are the
/// headers to sign (lowercase names: `host`, the `x-acs-*` ones and
/// `content-type` if sent); `query` is already canonical.
pub(super) fn authorization(
    key_id: &str,
    secret: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &BTreeMap<String, String>,
    payload_sha256: &str,
) -> String {
    let mut canonical = format!("{method}\n{}\n{query}\n", canonical_uri(path));
    for (name, value) in headers {
        canonical.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let signed: Vec<&str> = headers.keys().map(String::as_str).collect();
    let signed = signed.join(";");
    canonical.push_str(&format!("\n{signed}\n{payload_sha256}"));
    let to_sign = format!("{ALGORITHM}\n{}", cloud::sha256_hex(canonical.as_bytes()));
    let signature = hex::encode(cloud::hmac_sha256(secret.as_bytes(), to_sign.as_bytes()));
    format!("{ALGORITHM} Credential={key_id},SignedHeaders={signed},Signature={signature}")
}

#[cfg(test)]
#[path = "acr_tests.rs"]
mod tests;
