//! Picks how a registry's docker login is made, per credential mode: stored
//! username and password, a login computed from keys (SWR, GAR), or a
//! short-lived token from the cloud (ECR, ACR, TCR; cached).

use super::{
    AcrClient, CredentialError, Credentials, EcrClient, TcrClient, TokenCache, gar_password,
    swr_login,
};
use crate::domain::instance::instance_of;
use crate::domain::{CredentialMode, RegistrySpec, Tls};
use crate::secret::Secret;
use crate::store::RegistryRecord;

/// Mints credentials for registries.
pub struct Minter {
    ecr: EcrClient,
    acr: AcrClient,
    tcr: TcrClient,
    cache: TokenCache,
}

/// Cloud API endpoints that replace the public ones; `None` means the
/// cloud's own. Meant for tests (loopback stubs) and private endpoints.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Replaces `https://api.ecr.<region>.amazonaws.com`.
    pub ecr: Option<String>,
    /// Replaces `https://cr.<region>.aliyuncs.com`.
    pub acr: Option<String>,
    /// Replaces `https://tcr.tencentcloudapi.com`.
    pub tcr: Option<String>,
}

impl Minter {
    /// A minter; `ecr_endpoint` replaces the ECR API endpoint (tests).
    pub fn new(ecr_endpoint: Option<String>) -> Self {
        Self::with_endpoints(Endpoints {
            ecr: ecr_endpoint,
            ..Endpoints::default()
        })
    }

    /// A minter calling the cloud APIs at `endpoints`.
    pub fn with_endpoints(endpoints: Endpoints) -> Self {
        // Cloud APIs are reached with the public roots, verification on.
        let http = crate::registry_client::tls::client_config(&Tls::default())
            .ok()
            .and_then(|cfg| {
                reqwest::Client::builder()
                    .use_preconfigured_tls(cfg)
                    .build()
                    .ok()
            })
            .unwrap_or_default();
        Minter {
            ecr: EcrClient::new(http.clone(), endpoints.ecr),
            acr: AcrClient::new(http.clone(), endpoints.acr),
            tcr: TcrClient::new(http, endpoints.tcr),
            cache: TokenCache::default(),
        }
    }

    /// Drops the tokens cached for registry `id` (every revision).
    pub fn forget(&self, id: &str) {
        self.cache.invalidate_prefix(&format!("{id}:"));
    }

    /// The docker login for `record`.
    pub async fn mint(
        &self,
        record: &RegistryRecord,
        secret: Option<&Secret>,
    ) -> Result<Credentials, CredentialError> {
        let spec = &record.spec;
        let server_address = spec.address.host_port();
        let Some(secret) = secret else {
            if spec.username.is_empty() {
                // Anonymous registry: nothing to log in with.
                return Ok(Credentials {
                    username: String::new(),
                    password: Secret::new(""),
                    server_address,
                    expires_at: None,
                });
            }
            return Err(CredentialError::InvalidKey(
                "no secret is stored for this registry".into(),
            ));
        };
        match spec.credential_mode {
            CredentialMode::SwrAksk => {
                let (username, password) = swr_login(&spec.region, &spec.username, secret);
                Ok(Credentials {
                    username,
                    password,
                    server_address,
                    expires_at: None,
                })
            }
            CredentialMode::GarJsonKey => Ok(Credentials {
                username: spec.username.clone(),
                password: gar_password(secret)?,
                server_address,
                expires_at: None,
            }),
            CredentialMode::Anonymous => Ok(Credentials {
                username: String::new(),
                password: Secret::new(""),
                server_address,
                expires_at: None,
            }),
            CredentialMode::Static => Ok(static_login(spec, secret)),
            CredentialMode::EcrToken => {
                self.cached(record, "ECR", || {
                    self.ecr
                        .get_authorization_token(&spec.region, &spec.username, secret)
                })
                .await
            }
            CredentialMode::AcrAccessKey => {
                let instance = instance_of(spec);
                self.cached(record, "ACR", || {
                    self.acr.get_authorization_token(
                        &spec.region,
                        &instance,
                        &spec.username,
                        secret,
                    )
                })
                .await
            }
            CredentialMode::TcrAccessKey => {
                let instance = instance_of(spec);
                self.cached(record, "TCR", || {
                    self.tcr
                        .create_instance_token(&spec.region, &instance, &spec.username, secret)
                })
                .await
            }
        }
    }

    /// A cloud token for `record` from the cache, or from `mint` (one call
    /// in flight per registry); its server address is the registry's.
    async fn cached<F, Fut>(
        &self,
        record: &RegistryRecord,
        provider: &'static str,
        mint: F,
    ) -> Result<Credentials, CredentialError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Credentials, CredentialError>>,
    {
        // Keyed by revision: a changed secret (or any other change) is a
        // new key, on every replica, without any message between them.
        let key = format!("{}:{}", record.id, record.revision);
        let mut creds = self
            .cache
            .get_or_mint(&key, || {
                metrics::counter!("berth_token_refreshes_total", "provider" => provider)
                    .increment(1);
                mint()
            })
            .await?;
        creds.server_address = record.spec.address.host_port();
        Ok(creds)
    }
}

fn static_login(spec: &RegistrySpec, secret: &Secret) -> Credentials {
    Credentials {
        username: spec.username.clone(),
        password: secret.clone(),
        server_address: spec.address.host_port(),
        expires_at: None,
    }
}
