//! Picks how a registry's docker login is made, per provider: stored
//! username and password, a login computed from keys (SWR, GAR), or a
//! short-lived token from the cloud (ECR, cached).

use super::{CredentialError, Credentials, EcrClient, TokenCache, gar_password, swr_login};
use crate::domain::{Provider, RegistrySpec, Tls};
use crate::secret::Secret;
use crate::store::RegistryRecord;

/// Mints credentials for registries.
pub struct Minter {
    ecr: EcrClient,
    cache: TokenCache,
}

impl Minter {
    /// A minter; `ecr_endpoint` replaces the ECR API endpoint (tests).
    pub fn new(ecr_endpoint: Option<String>) -> Self {
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
            ecr: EcrClient::new(http, ecr_endpoint),
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
        match spec.provider {
            Provider::Swr => {
                let (username, password) = swr_login(&spec.region, &spec.username, secret);
                Ok(Credentials {
                    username,
                    password,
                    server_address,
                    expires_at: None,
                })
            }
            Provider::Gar => Ok(Credentials {
                username: spec.username.clone(),
                password: gar_password(secret)?,
                server_address,
                expires_at: None,
            }),
            Provider::Ecr => {
                // Keyed by revision: a changed secret is a new key, on every
                // replica, without any message between them.
                let key = format!("{}:{}", record.id, record.revision);
                let mut creds = self
                    .cache
                    .get_or_mint(&key, || {
                        metrics::counter!("berth_token_refreshes_total", "provider" => "ECR")
                            .increment(1);
                        self.ecr
                            .get_authorization_token(&spec.region, &spec.username, secret)
                    })
                    .await?;
                creds.server_address = server_address;
                Ok(creds)
            }
            _ => Ok(static_login(spec, secret)),
        }
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
