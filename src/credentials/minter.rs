//! Picks how a registry's docker login is made, per credential mode: stored
//! username and password, a login computed from keys (SWR, GAR), or a
//! short-lived token from the cloud (ECR, ACR, TCR; cached).

use super::ecr::Flavor;
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
    /// Replaces `https://api.ecr.<region>.amazonaws.com` (and the FIPS
    /// endpoint `https://ecr-fips.<region>.amazonaws.com`).
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
                let (ecr, region, key_id, secret) = (
                    self.ecr.clone(),
                    spec.region.clone(),
                    spec.username.clone(),
                    secret.clone(),
                );
                let flavor = Flavor::of_registry_host(spec.address.host());
                self.cached(record, "ECR", move || async move {
                    ecr.get_authorization_token_with(flavor, &region, &key_id, &secret)
                        .await
                })
                .await
            }
            CredentialMode::AcrAccessKey => {
                let instance = instance_of(spec);
                let (acr, region, key_id, secret) = (
                    self.acr.clone(),
                    spec.region.clone(),
                    spec.username.clone(),
                    secret.clone(),
                );
                self.cached(record, "ACR", move || async move {
                    acr.get_authorization_token(&region, &instance, &key_id, &secret)
                        .await
                })
                .await
            }
            CredentialMode::TcrAccessKey => {
                let instance = instance_of(spec);
                let (tcr, region, key_id, secret) = (
                    self.tcr.clone(),
                    spec.region.clone(),
                    spec.username.clone(),
                    secret.clone(),
                );
                self.cached(record, "TCR", move || async move {
                    tcr.create_instance_token(&region, &instance, &key_id, &secret)
                        .await
                })
                .await
            }
        }
    }

    /// Whether [`Minter::mint`] serves `record`'s login from the token cache
    /// (a cloud token: ECR, ACR and TCR access-key modes, with a secret).
    pub fn uses_token_cache(record: &RegistryRecord, secret: Option<&Secret>) -> bool {
        secret.is_some() && record.spec.credential_mode.mints_tokens()
    }

    /// The registry refused `refused` (401/403, e.g. an ECR token that
    /// expired early or was revoked): drops it from the cache if it is still
    /// the cached one, so that the next [`Minter::mint`] gets a new token.
    /// Many callers refused at once cause one new mint, not one each, and a
    /// registry that keeps refusing causes at most one a minute. Returns
    /// whether the token was dropped.
    pub async fn forget_refused(&self, record: &RegistryRecord, refused: &Credentials) -> bool {
        self.cache
            .invalidate_if_current(&cache_key(record), &refused.password)
            .await
    }

    /// A cloud token for `record` from the cache, or from `mint` (one call
    /// in flight per registry); its server address is the registry's.
    /// `mint` may run in the background (refresh-ahead), hence `'static`.
    async fn cached<F, Fut>(
        &self,
        record: &RegistryRecord,
        provider: &'static str,
        mint: F,
    ) -> Result<Credentials, CredentialError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Credentials, CredentialError>> + Send + 'static,
    {
        let mut creds = self
            .cache
            .get_or_mint(&cache_key(record), move || {
                metrics::counter!("berth_token_refreshes_total", "provider" => provider)
                    .increment(1);
                mint()
            })
            .await?;
        creds.server_address = record.spec.address.host_port();
        Ok(creds)
    }
}

/// Keyed by revision: a changed secret (or any other change) is a new key,
/// on every replica, without any message between them.
fn cache_key(record: &RegistryRecord) -> String {
    format!("{}:{}", record.id, record.revision)
}

fn static_login(spec: &RegistrySpec, secret: &Secret) -> Credentials {
    Credentials {
        username: spec.username.clone(),
        password: secret.clone(),
        server_address: spec.address.host_port(),
        expires_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RegistryAddress, Scope};

    fn ecr_record(address: &str, region: &str, mode: CredentialMode) -> RegistryRecord {
        RegistryRecord {
            id: "reg-1".into(),
            spec: RegistrySpec {
                provider: crate::domain::Provider::Ecr,
                address: RegistryAddress::parse(address).expect("address"),
                namespace: String::new(),
                region: region.into(),
                repository: String::new(),
                username: "AKIDEXAMPLE12345".into(),
                scope: Scope::AllProjects,
                tls: Tls::default(),
                credential_mode: mode,
                instance_id: String::new(),
                proxy: None,
                budget: Default::default(),
            },
            has_secret: true,
            has_proxy_password: false,
            is_default: false,
            create_time_us: 1,
            update_time_us: 1,
            updated_by: "t".into(),
            revision: 1,
        }
    }

    #[tokio::test]
    async fn fips_is_chosen_by_the_registry_address() {
        // No endpoint override: the FIPS flavour is refused outside the
        // regions that have it, before any network call.
        let minter = Minter::new(None);
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let fips = ecr_record(
            "123456789012.dkr.ecr-fips.eu-west-1.amazonaws.com",
            "eu-west-1",
            CredentialMode::EcrToken,
        );
        let err = minter
            .mint(&fips, Some(&secret))
            .await
            .expect_err("no FIPS");
        assert!(
            matches!(&err, CredentialError::InvalidKey(m) if m.contains("no FIPS endpoint in \"eu-west-1\"")),
            "{err}"
        );
    }

    #[test]
    fn only_cloud_tokens_come_from_the_cache() {
        let secret = Secret::new("s");
        let address = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let ecr = ecr_record(address, "eu-west-1", CredentialMode::EcrToken);
        assert!(Minter::uses_token_cache(&ecr, Some(&secret)));
        assert!(!Minter::uses_token_cache(&ecr, None));
        for mode in [CredentialMode::AcrAccessKey, CredentialMode::TcrAccessKey] {
            let r = ecr_record(address, "eu-west-1", mode);
            assert!(Minter::uses_token_cache(&r, Some(&secret)), "{mode:?}");
        }
        for mode in [
            CredentialMode::Static,
            CredentialMode::SwrAksk,
            CredentialMode::GarJsonKey,
            CredentialMode::Anonymous,
        ] {
            let r = ecr_record(address, "eu-west-1", mode);
            assert!(!Minter::uses_token_cache(&r, Some(&secret)), "{mode:?}");
        }
    }
}
