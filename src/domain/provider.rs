//! Providers and the table of which fields each one needs.
//!
//! Every provider rule lives in `Provider::rules`; validation, defaults and
//! (later) provider descriptors read the same table instead of comparing
//! provider names in many places.

use std::fmt;

/// Whether a provider uses a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Must be set (after defaults are applied).
    Required,
    /// May be set.
    Optional,
    /// Not used by this provider; must be empty.
    Unused,
}

/// Field rules of one provider (after defaults).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Registry address.
    pub address: Need,
    /// Namespace / organization / project.
    pub namespace: Need,
    /// Cloud region.
    pub region: Need,
    /// Nexus repository name.
    pub repository: Need,
    /// Username or access key (id).
    pub username: Need,
    /// Password, token, secret key or service-account key.
    pub secret: Need,
    /// Cloud instance id (ACR Enterprise, TCR Enterprise in an access-key
    /// mode). `Optional` there because the address may name the instance.
    pub instance_id: Need,
    /// Address used when none is given.
    pub default_address: Option<&'static str>,
    /// Username used when none is given.
    pub default_username: Option<&'static str>,
}

/// A registry provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Alibaba Cloud ACR, personal edition.
    AcrPersonal,
    /// Alibaba Cloud ACR, enterprise edition.
    AcrEnterprise,
    /// Tencent Cloud TCR, personal edition.
    TcrPersonal,
    /// Tencent Cloud TCR, enterprise edition.
    TcrEnterprise,
    /// Huawei Cloud SWR.
    Swr,
    /// Amazon ECR.
    Ecr,
    /// Google Artifact Registry.
    Gar,
    /// Harbor.
    Harbor,
    /// Docker Hub.
    DockerHub,
    /// JFrog Artifactory.
    Jfrog,
    /// Sonatype Nexus.
    Nexus,
    /// Any other Docker Registry v2 / OCI registry.
    Other,
}

/// How berth makes a registry's docker login. A provider offers one or
/// more (the first is its default); the registry's `credential_mode` picks
/// one, and with it the fields the registry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialMode {
    /// Stored username and password.
    Static,
    /// No credentials.
    Anonymous,
    /// SWR login from AK/SK.
    SwrAksk,
    /// GAR `_json_key_base64`.
    GarJsonKey,
    /// ECR token.
    EcrToken,
    /// Alibaba ACR temporary login from an AccessKey pair.
    AcrAccessKey,
    /// Tencent TCR Enterprise temporary login from a SecretId/SecretKey.
    TcrAccessKey,
}

impl CredentialMode {
    /// Every mode, in proto enum order (value 1 first).
    pub const ALL: [CredentialMode; 7] = [
        CredentialMode::Static,
        CredentialMode::Anonymous,
        CredentialMode::SwrAksk,
        CredentialMode::GarJsonKey,
        CredentialMode::EcrToken,
        CredentialMode::AcrAccessKey,
        CredentialMode::TcrAccessKey,
    ];

    /// The name stored in the database (the proto name without its
    /// `CREDENTIAL_MODE_` prefix).
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialMode::Static => "STATIC",
            CredentialMode::Anonymous => "ANONYMOUS",
            CredentialMode::SwrAksk => "SWR_AKSK",
            CredentialMode::GarJsonKey => "GAR_JSON_KEY",
            CredentialMode::EcrToken => "ECR_TOKEN",
            CredentialMode::AcrAccessKey => "ACR_ACCESS_KEY",
            CredentialMode::TcrAccessKey => "TCR_ACCESS_KEY",
        }
    }

    /// Parses the stored name.
    pub fn from_name(name: &str) -> Option<CredentialMode> {
        CredentialMode::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether the login is a short-lived token minted from the cloud.
    pub fn mints_tokens(self) -> bool {
        matches!(
            self,
            CredentialMode::EcrToken | CredentialMode::AcrAccessKey | CredentialMode::TcrAccessKey
        )
    }
}

impl fmt::Display for CredentialMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Need::{Optional as O, Required as R, Unused as U};

/// Shorthand for a rules row.
const fn rules([address, namespace, region, repository, username, secret]: [Need; 6]) -> Rules {
    Rules {
        address,
        namespace,
        region,
        repository,
        username,
        secret,
        instance_id: Need::Unused,
        default_address: None,
        default_username: None,
    }
}

impl Provider {
    /// Every provider, in proto enum order.
    pub const ALL: [Provider; 12] = [
        Provider::AcrPersonal,
        Provider::AcrEnterprise,
        Provider::TcrPersonal,
        Provider::TcrEnterprise,
        Provider::Swr,
        Provider::Ecr,
        Provider::Gar,
        Provider::Harbor,
        Provider::DockerHub,
        Provider::Jfrog,
        Provider::Nexus,
        Provider::Other,
    ];

    /// The name used in the API enum and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::AcrPersonal => "ACR_PERSONAL",
            Provider::AcrEnterprise => "ACR_ENTERPRISE",
            Provider::TcrPersonal => "TCR_PERSONAL",
            Provider::TcrEnterprise => "TCR_ENTERPRISE",
            Provider::Swr => "SWR",
            Provider::Ecr => "ECR",
            Provider::Gar => "GAR",
            Provider::Harbor => "HARBOR",
            Provider::DockerHub => "DOCKER_HUB",
            Provider::Jfrog => "JFROG",
            Provider::Nexus => "NEXUS",
            Provider::Other => "OTHER",
        }
    }

    /// Parses the stored name.
    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The credential modes the provider offers; the first is the default.
    pub fn credential_modes(self) -> &'static [CredentialMode] {
        use CredentialMode as M;
        match self {
            Provider::AcrPersonal | Provider::AcrEnterprise => &[M::Static, M::AcrAccessKey],
            Provider::TcrEnterprise => &[M::Static, M::TcrAccessKey],
            Provider::Swr => &[M::SwrAksk],
            Provider::Gar => &[M::GarJsonKey],
            Provider::Ecr => &[M::EcrToken],
            Provider::Other => &[M::Static, M::Anonymous],
            _ => &[M::Static],
        }
    }

    /// The mode of a registry that does not choose one.
    pub fn default_credential_mode(self) -> CredentialMode {
        self.credential_modes()[0]
    }

    /// The field rules of a registry of this provider in `mode`; `None`
    /// when the provider does not offer the mode.
    pub fn rules_for(self, mode: CredentialMode) -> Option<Rules> {
        if !self.credential_modes().contains(&mode) {
            return None;
        }
        Some(match mode {
            // Alibaba ACR: address, namespace, region, AccessKey ID and
            // Secret; an enterprise instance may be named by id.
            CredentialMode::AcrAccessKey => Rules {
                instance_id: if self == Provider::AcrEnterprise {
                    O
                } else {
                    U
                },
                ..rules([R, R, R, U, R, R])
            },
            // Tencent TCR Enterprise: the same with SecretId/SecretKey.
            CredentialMode::TcrAccessKey => Rules {
                instance_id: O,
                ..rules([R, R, R, U, R, R])
            },
            // Anonymous pulls: no username, no secret.
            CredentialMode::Anonymous => rules([R, R, U, U, U, U]),
            _ => self.rules(),
        })
    }

    /// Which fields the provider needs in its default credential mode,
    /// following the integration guide (address, namespace, region,
    /// repository, username, secret).
    pub fn rules(self) -> Rules {
        match self {
            // Alibaba ACR, Tencent TCR, Harbor, JFrog: address, namespace,
            // docker username and password (or token).
            Provider::AcrPersonal
            | Provider::AcrEnterprise
            | Provider::TcrPersonal
            | Provider::TcrEnterprise
            | Provider::Harbor
            | Provider::Jfrog => rules([R, R, U, U, R, R]),
            // Huawei SWR: region, address, organization, access key and
            // secret key (the docker login is derived from them).
            Provider::Swr => rules([R, R, R, U, R, R]),
            // Amazon ECR: region, registry URI, access key id and secret
            // access key; the namespace is optional.
            Provider::Ecr => rules([R, O, R, U, R, R]),
            // Google Artifact Registry: address, `project/repository` and a
            // service-account key; the username is `_json_key_base64`.
            Provider::Gar => Rules {
                default_username: Some("_json_key_base64"),
                ..rules([R, R, U, U, R, R])
            },
            // Docker Hub: docker.io unless told otherwise.
            Provider::DockerHub => Rules {
                default_address: Some("docker.io"),
                ..rules([R, R, U, U, R, R])
            },
            // Nexus: the repository name is part of the layout.
            Provider::Nexus => rules([R, R, U, R, R, R]),
            // Anything else: credentials are optional (anonymous
            // registries), but come as a pair.
            Provider::Other => rules([R, R, U, U, O, O]),
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_name(p.as_str()), Some(p), "{p}");
        }
        assert_eq!(Provider::from_name("ecr"), None);
    }

    #[test]
    fn credential_modes_round_trip_and_defaults_keep_old_behaviour() {
        for m in CredentialMode::ALL {
            assert_eq!(CredentialMode::from_name(m.as_str()), Some(m), "{m}");
        }
        for p in Provider::ALL {
            let default = p.default_credential_mode();
            assert!(p.rules_for(default).is_some(), "{p}");
            // The default mode's rules are the provider's rules.
            assert_eq!(
                format!("{:?}", p.rules_for(default)),
                format!("{:?}", Some(p.rules())),
                "{p}"
            );
        }
        assert_eq!(
            Provider::AcrEnterprise.default_credential_mode(),
            CredentialMode::Static
        );
        assert!(
            Provider::TcrPersonal
                .rules_for(CredentialMode::TcrAccessKey)
                .is_none()
        );
        assert!(
            Provider::Harbor
                .rules_for(CredentialMode::AcrAccessKey)
                .is_none()
        );
        let acr = Provider::AcrPersonal.rules_for(CredentialMode::AcrAccessKey);
        assert_eq!(
            acr.map(|r| (r.region, r.instance_id)),
            Some((Need::Required, Need::Unused))
        );
        let tcr = Provider::TcrEnterprise.rules_for(CredentialMode::TcrAccessKey);
        assert_eq!(tcr.map(|r| r.instance_id), Some(Need::Optional));
    }

    #[test]
    fn every_provider_needs_an_address() {
        for p in Provider::ALL {
            assert_eq!(p.rules().address, Need::Required, "{p}");
        }
    }
}
