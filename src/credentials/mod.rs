//! Credential minting: turns a registry's stored secret into a working
//! `docker login`, and packages it as a docker config or Kubernetes secret.
//!
//! - [`static_creds`]: providers whose login is computed locally (Huawei SWR,
//!   Google Artifact Registry JSON keys).
//! - [`ecr`]: Amazon ECR, whose login is a 12-hour token fetched with SigV4.
//! - [`acr`]: Alibaba ACR in its access-key mode: a temporary token from
//!   `GetAuthorizationToken`, signed with ACS3-HMAC-SHA256.
//! - [`tcr`]: Tencent TCR Enterprise in its access-key mode: a temporary
//!   token from `CreateInstanceToken`, signed with TC3-HMAC-SHA256.
//! - [`cache`]: keeps minted tokens until shortly before they expire, with one
//!   in-flight mint per key.
//! - [`docker_config`]: `config.json` / `kubernetes.io/dockerconfigjson`.
//!
//! Secrets never appear in errors, logs or `Debug` output: they travel as
//! [`Secret`] and every error message is built from provider error codes and
//! our own words, never from the key material.

pub mod acr;
pub mod cache;
mod cloud;
// The signature-checking ACR/TCR stand-ins, for the unit tests of acr.rs
// and tcr.rs (tests/cloud_tokens.rs loads the same file).
#[cfg(test)]
mod cloud_stub;
pub mod docker_config;
pub mod ecr;
pub mod minter;
pub mod render;
pub mod static_creds;
pub mod tcr;

use std::fmt;

use chrono::{DateTime, Utc};

use crate::secret::Secret;

pub use acr::AcrClient;
pub use cache::TokenCache;
pub use docker_config::{docker_config_json, kubernetes_secret_yaml, secret_name};
pub use ecr::EcrClient;
pub use minter::{Endpoints, Minter};
pub use static_creds::{gar_password, swr_login};
pub use tcr::TcrClient;

/// A working docker login.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name for `docker login -u`.
    pub username: String,
    /// Password or token for `docker login --password-stdin`.
    pub password: Secret,
    /// What `docker login` takes as its server: `host[:port]`, no scheme.
    pub server_address: String,
    /// When the password stops working; `None` for long-term credentials.
    pub expires_at: Option<DateTime<Utc>>,
}

// Manual so that the password can never leak through `{:?}`, even if
// `Secret`'s own Debug were to change.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .field("server_address", &self.server_address)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why credentials could not be minted. Messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The configured key material is unusable (malformed GAR key, invalid
    /// region or endpoint, empty access key): fix the registry's settings.
    #[error("invalid credentials configuration: {0}")]
    InvalidKey(String),
    /// The provider refused the credentials (e.g. AWS 403 with its error
    /// code): the key is wrong, revoked or lacks permission.
    #[error("the provider rejected the credentials: {0}")]
    Rejected(String),
    /// The provider could not be reached or failed (network error, timeout,
    /// 5xx, throttling): worth retrying later.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered with something we could not understand.
    #[error("unexpected response from the provider: {0}")]
    BadResponse(String),
}

impl CredentialError {
    /// True when retrying later may succeed without changing the settings.
    pub fn is_transient(&self) -> bool {
        matches!(self, CredentialError::Unavailable(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_password() {
        let c = Credentials {
            username: "AWS".into(),
            password: Secret::new("hunter2"),
            server_address: "example.com:5000".into(),
            expires_at: None,
        };
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("example.com:5000"));
    }
}
