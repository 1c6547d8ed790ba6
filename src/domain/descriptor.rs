//! Provider descriptors for ListProviders: the rules table of
//! [`Provider::rules`] plus the words each provider uses for its fields.
//! Validation reads the same table, so the form and the server agree.

use super::provider::{Need, Provider};

/// How berth makes a provider's docker login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// One form field.
#[derive(Debug, Clone)]
pub struct Field {
    /// Registry field name.
    pub name: &'static str,
    /// Label in the provider's terms.
    pub label: &'static str,
    /// Must be set.
    pub required: bool,
    /// Write-only.
    pub secret: bool,
    /// Default when empty.
    pub default_value: &'static str,
    /// What a valid value matches.
    pub pattern: &'static str,
    /// Help text.
    pub help: &'static str,
}

/// A provider's descriptor.
#[derive(Debug, Clone)]
pub struct Descriptor {
    /// The provider.
    pub provider: Provider,
    /// Display name.
    pub display_name: &'static str,
    /// Fields it uses, in form order.
    pub fields: Vec<Field>,
    /// Credential modes.
    pub credential_modes: Vec<CredentialMode>,
}

/// Patterns matching what validation accepts (see `registry.rs`).
const NAMESPACE_PATTERN: &str =
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$";
const REGION_PATTERN: &str = r"^[a-z0-9][a-z0-9-]{0,63}$";
const REPOSITORY_PATTERN: &str = r"^[A-Za-z0-9._-]{1,255}$";
const USERNAME_PATTERN: &str = r"^[^:\x00-\x1f]{1,256}$";

impl Provider {
    /// Display name.
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::AcrPersonal => "Alibaba Cloud ACR (Personal Edition)",
            Provider::AcrEnterprise => "Alibaba Cloud ACR (Enterprise Edition)",
            Provider::TcrPersonal => "Tencent Cloud TCR (Personal Edition)",
            Provider::TcrEnterprise => "Tencent Cloud TCR (Enterprise Edition)",
            Provider::Swr => "Huawei Cloud SWR",
            Provider::Ecr => "Amazon ECR",
            Provider::Gar => "Google Artifact Registry",
            Provider::Harbor => "Harbor",
            Provider::DockerHub => "Docker Hub",
            Provider::Jfrog => "JFrog Artifactory",
            Provider::Nexus => "Sonatype Nexus",
            Provider::Other => "Other (Docker Registry v2 / OCI)",
        }
    }

    /// The form of this provider's registries.
    pub fn descriptor(self) -> Descriptor {
        let r = self.rules();
        let (ns_label, ns_help) = match self {
            Provider::Swr => ("Organization", "SWR organization the images live in."),
            Provider::Harbor => ("Project", "Harbor project the images live in."),
            Provider::Gar => (
                "Project / repository",
                "Google Cloud project and Artifact Registry repository, e.g. `my-project/images`.",
            ),
            Provider::Ecr => (
                "Namespace",
                "Optional repository prefix inside the ECR registry.",
            ),
            Provider::Jfrog => (
                "Repository key",
                "Artifactory Docker repository key (or organization).",
            ),
            _ => ("Namespace", "Namespace (organization) the images live in."),
        };
        let (user_label, user_help) = match self {
            Provider::Swr => (
                "Access Key",
                "Huawei Cloud access key (AK); berth derives the docker login.",
            ),
            Provider::Ecr => (
                "Access Key ID",
                "AWS access key id allowed to call ecr:GetAuthorizationToken.",
            ),
            Provider::Gar => (
                "Username",
                "Always `_json_key_base64` for service-account keys.",
            ),
            _ => ("Docker Username", "User for `docker login`."),
        };
        let (secret_label, secret_help) = match self {
            Provider::Swr => ("Secret Key", "Huawei Cloud secret key (SK)."),
            Provider::Ecr => ("Secret Access Key", "AWS secret access key."),
            Provider::Gar => (
                "Service Account Key",
                "The service-account key JSON (or its base64).",
            ),
            Provider::DockerHub | Provider::Jfrog => (
                "Password or Access Token",
                "Password or access token for `docker login`.",
            ),
            _ => ("Docker Password", "Password for `docker login`."),
        };
        let address_help = match self {
            Provider::Ecr => "Registry URI, e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com`.",
            Provider::DockerHub => "Leave empty for docker.io.",
            _ => "Registry host with optional port and scheme; `http://` means plain HTTP.",
        };
        let mut fields = Vec::new();
        let mut push = |name,
                        label,
                        need: Need,
                        secret,
                        default_value: Option<&'static str>,
                        pattern,
                        help| {
            if need != Need::Unused {
                fields.push(Field {
                    name,
                    label,
                    required: need == Need::Required && default_value.is_none(),
                    secret,
                    default_value: default_value.unwrap_or(""),
                    pattern,
                    help,
                });
            }
        };
        push(
            "region",
            "Region",
            r.region,
            false,
            None,
            REGION_PATTERN,
            "Cloud region, e.g. `cn-east-3` or `eu-west-1`.",
        );
        push(
            "address",
            "Address",
            r.address,
            false,
            r.default_address,
            "",
            address_help,
        );
        push(
            "namespace",
            ns_label,
            r.namespace,
            false,
            None,
            NAMESPACE_PATTERN,
            ns_help,
        );
        push(
            "repository",
            "Repository Name",
            r.repository,
            false,
            None,
            REPOSITORY_PATTERN,
            "Nexus Docker repository name.",
        );
        push(
            "username",
            user_label,
            r.username,
            false,
            r.default_username,
            USERNAME_PATTERN,
            user_help,
        );
        push(
            "secret",
            secret_label,
            r.secret,
            true,
            None,
            "",
            secret_help,
        );
        let credential_modes = match self {
            Provider::Swr => vec![CredentialMode::SwrAksk],
            Provider::Gar => vec![CredentialMode::GarJsonKey],
            Provider::Ecr => vec![CredentialMode::EcrToken],
            Provider::Other => vec![CredentialMode::Static, CredentialMode::Anonymous],
            _ => vec![CredentialMode::Static],
        };
        Descriptor {
            provider: self,
            display_name: self.display_name(),
            fields,
            credential_modes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RegistryInput;
    use crate::domain::registry::{is_path_component, validate};
    use crate::secret::Secret;

    /// The descriptor and validation agree: filling exactly the required
    /// fields gives a valid registry, and leaving out any one of them names
    /// that field.
    #[test]
    fn descriptors_match_validation() {
        for p in Provider::ALL {
            let d = p.descriptor();
            let fill = |skip: Option<&str>| {
                let mut i = RegistryInput {
                    provider: Some(p),
                    all_projects: true,
                    ..Default::default()
                };
                for f in d
                    .fields
                    .iter()
                    .filter(|f| f.required && Some(f.name) != skip)
                {
                    match f.name {
                        "region" => i.region = "eu-west-1".into(),
                        "address" => i.address = "r.example.com".into(),
                        "namespace" => i.namespace = "team".into(),
                        "repository" => i.repository = "docker-hosted".into(),
                        "username" => i.username = "u".into(),
                        "secret" => i.secret = Some(Secret::new("s")),
                        other => panic!("unknown field {other}"),
                    }
                }
                i
            };
            assert!(
                validate(&fill(None), false, "r").is_ok(),
                "{p}: required fields suffice"
            );
            for f in d.fields.iter().filter(|f| f.required) {
                let err = validate(&fill(Some(f.name)), false, "r").expect_err(f.name);
                assert!(
                    err.to_string().contains(&format!("r.{}", f.name)),
                    "{p} {}: {err}",
                    f.name
                );
            }
        }
    }

    #[test]
    fn patterns_agree_with_the_grammar() {
        let ns = regex::Regex::new(NAMESPACE_PATTERN).expect("pattern");
        for s in [
            "team", "a.b/c-d", "a__b", "x/y/z", "A", "-a", "a//b", "a___b", "a-",
        ] {
            let grammar = s.split('/').all(is_path_component);
            assert_eq!(ns.is_match(s), grammar, "{s}");
        }
        for p in [REGION_PATTERN, REPOSITORY_PATTERN, USERNAME_PATTERN] {
            assert!(regex::Regex::new(p).is_ok(), "{p}");
        }
    }
}
