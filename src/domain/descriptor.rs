//! Provider descriptors for ListProviders: the rules table of
//! [`Provider::rules`] plus the words each provider uses for its fields.
//! Validation reads the same table, so the form and the server agree.

pub use super::provider::CredentialMode;
use super::provider::{Need, Provider, Rules};

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
    /// Credential modes; the first is the default.
    pub credential_modes: Vec<CredentialMode>,
    /// The form of each mode, in the order of `credential_modes`.
    pub modes: Vec<ModeDescriptor>,
}

/// The form of one credential mode.
#[derive(Debug, Clone)]
pub struct ModeDescriptor {
    /// The mode.
    pub mode: CredentialMode,
    /// Display name.
    pub display_name: &'static str,
    /// How berth makes the login in this mode.
    pub help: &'static str,
    /// Fields a registry in this mode uses, in form order.
    pub fields: Vec<Field>,
}

/// Patterns matching what validation accepts (see `registry.rs`).
const NAMESPACE_PATTERN: &str =
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$";
const REGION_PATTERN: &str = r"^[a-z0-9][a-z0-9-]{0,63}$";
const REPOSITORY_PATTERN: &str = r"^[A-Za-z0-9._-]{1,255}$";
const USERNAME_PATTERN: &str = r"^[^:\x00-\x1f]{1,256}$";
const ACR_INSTANCE_PATTERN: &str = r"^cri-[a-z0-9]{1,60}$";
const TCR_INSTANCE_PATTERN: &str = r"^tcr-[a-z0-9]{1,60}$";

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

    /// The form of this provider's registries: the fields of its default
    /// credential mode, and the form of every mode.
    pub fn descriptor(self) -> Descriptor {
        let modes: Vec<ModeDescriptor> = self
            .credential_modes()
            .iter()
            .filter_map(|&mode| {
                let (display_name, help) = mode_text(self, mode);
                Some(ModeDescriptor {
                    mode,
                    display_name,
                    help,
                    fields: self.fields(mode, self.rules_for(mode)?),
                })
            })
            .collect();
        Descriptor {
            provider: self,
            display_name: self.display_name(),
            fields: modes.first().map(|m| m.fields.clone()).unwrap_or_default(),
            credential_modes: self.credential_modes().to_vec(),
            modes,
        }
    }

    /// The fields of a registry of this provider in `mode` (under `r`).
    fn fields(self, mode: CredentialMode, r: Rules) -> Vec<Field> {
        let acr = mode == CredentialMode::AcrAccessKey;
        let tcr = mode == CredentialMode::TcrAccessKey;
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
            _ if acr => (
                "AccessKey ID",
                "Alibaba Cloud AccessKey ID allowed to call cr:GetAuthorizationToken (and cr:ListInstance to find an instance by name).",
            ),
            _ if tcr => (
                "SecretId",
                "Tencent Cloud SecretId allowed to call tcr:CreateInstanceToken (and tcr:DescribeInstances to find an instance by name).",
            ),
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
            _ if acr => ("AccessKey Secret", "Alibaba Cloud AccessKey Secret."),
            _ if tcr => ("SecretKey", "Tencent Cloud SecretKey."),
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
        let region_help = match self {
            _ if acr => "Alibaba Cloud region of the registry, e.g. `cn-hangzhou`.",
            _ if tcr => "Tencent Cloud region of the instance, e.g. `ap-guangzhou`.",
            _ => "Cloud region, e.g. `cn-east-3` or `eu-west-1`.",
        };
        let (instance_pattern, instance_help) = match self {
            Provider::TcrEnterprise => (
                TCR_INSTANCE_PATTERN,
                "TCR Enterprise instance id (`tcr-…`); leave empty when the address is `<instance>.tencentcloudcr.com` and berth looks it up by name.",
            ),
            _ => (
                ACR_INSTANCE_PATTERN,
                "ACR Enterprise Edition instance id (`cri-…`); leave empty when the address is `<instance>-registry.<region>.cr.aliyuncs.com` and berth looks it up by name.",
            ),
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
            region_help,
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
        push(
            "instance_id",
            "Instance ID",
            r.instance_id,
            false,
            None,
            instance_pattern,
            instance_help,
        );
        fields
    }
}

/// Display name and help of a credential mode of `provider`.
fn mode_text(provider: Provider, mode: CredentialMode) -> (&'static str, &'static str) {
    match mode {
        CredentialMode::Static if provider == Provider::Other => (
            "Username and password",
            "The stored username and password as they are; leave both empty for anonymous pulls.",
        ),
        CredentialMode::Static => (
            "Username and password",
            "The stored username and password (or access token) as they are.",
        ),
        CredentialMode::Anonymous => ("Anonymous", "No credentials: anonymous pulls."),
        CredentialMode::SwrAksk => (
            "Access key",
            "A long-term login derived from the access key and secret key.",
        ),
        CredentialMode::GarJsonKey => (
            "Service-account key",
            "`_json_key_base64` and the base64 of the service-account key.",
        ),
        CredentialMode::EcrToken => (
            "Access key (temporary token)",
            "A 12-hour token from GetAuthorizationToken, cached until shortly before it expires.",
        ),
        CredentialMode::AcrAccessKey => (
            "AccessKey (temporary token)",
            "A temporary login from the Container Registry API's GetAuthorizationToken, valid for about an hour and cached until shortly before it expires.",
        ),
        CredentialMode::TcrAccessKey => (
            "SecretId/SecretKey (temporary token)",
            "A temporary login from CreateInstanceToken, valid for about an hour and cached until shortly before it expires.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RegistryInput;
    use crate::domain::registry::{is_path_component, validate};
    use crate::secret::Secret;

    /// The descriptor and validation agree, in every credential mode:
    /// filling exactly the required fields gives a valid registry, leaving
    /// out any one of them names that field, and a field the mode does not
    /// list is refused.
    #[test]
    fn descriptors_match_validation() {
        for p in Provider::ALL {
            let d = p.descriptor();
            assert_eq!(d.modes.len(), d.credential_modes.len(), "{p}");
            assert_eq!(
                format!("{:?}", d.fields),
                format!("{:?}", d.modes[0].fields),
                "{p}: the top-level fields are the default mode's"
            );
            for m in &d.modes {
                let fill = |skip: Option<&str>| {
                    let mut i = RegistryInput {
                        provider: Some(p),
                        credential_mode: Some(m.mode),
                        all_projects: true,
                        ..Default::default()
                    };
                    for f in m
                        .fields
                        .iter()
                        .filter(|f| f.required && Some(f.name) != skip)
                    {
                        match f.name {
                            "region" => i.region = "eu-west-1".into(),
                            // An address that names its instance, so that
                            // the optional instance_id may stay empty.
                            "address" => {
                                i.address = match p {
                                    Provider::AcrEnterprise => {
                                        "team-registry.cn-hangzhou.cr.aliyuncs.com".into()
                                    }
                                    Provider::TcrEnterprise => "team.tencentcloudcr.com".into(),
                                    _ => "r.example.com".into(),
                                }
                            }
                            "namespace" => i.namespace = "team".into(),
                            "repository" => i.repository = "docker-hosted".into(),
                            "username" => i.username = "u".into(),
                            "secret" => i.secret = Some(Secret::new("s")),
                            other => panic!("unknown field {other}"),
                        }
                    }
                    i
                };
                let what = format!("{p} {}", m.mode);
                assert!(
                    validate(&fill(None), false, "r").is_ok(),
                    "{what}: required fields suffice"
                );
                for f in m.fields.iter().filter(|f| f.required) {
                    let err = validate(&fill(Some(f.name)), false, "r").expect_err(f.name);
                    assert!(
                        err.to_string().contains(&format!("r.{}", f.name)),
                        "{what} {}: {err}",
                        f.name
                    );
                }
                let listed = |name: &str| m.fields.iter().any(|f| f.name == name);
                if !listed("region") {
                    let mut i = fill(None);
                    i.region = "eu-west-1".into();
                    assert!(validate(&i, false, "r").is_err(), "{what}: region unused");
                }
                if !listed("instance_id") {
                    let mut i = fill(None);
                    i.instance_id = "cri-abc".into();
                    assert!(
                        validate(&i, false, "r").is_err(),
                        "{what}: instance_id unused"
                    );
                }
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
        for p in [
            REGION_PATTERN,
            REPOSITORY_PATTERN,
            USERNAME_PATTERN,
            ACR_INSTANCE_PATTERN,
            TCR_INSTANCE_PATTERN,
        ] {
            assert!(regex::Regex::new(p).is_ok(), "{p}");
        }
    }
}
