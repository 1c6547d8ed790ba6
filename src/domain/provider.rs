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

    /// Which fields the provider needs, following the integration guide
    /// (address, namespace, region, repository, username, secret).
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
    fn every_provider_needs_an_address() {
        for p in Provider::ALL {
            assert_eq!(p.rules().address, Need::Required, "{p}");
        }
    }
}
