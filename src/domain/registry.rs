//! The registry resource: raw input as it arrives, the validated spec the
//! rest of berth uses, and the rules that turn one into the other.

use super::address::RegistryAddress;
use super::instance;
use super::network::{self, Budget, Proxy};
use super::provider::{CredentialMode, Need, Provider};
use crate::error::{Error, FieldViolation, Result};
use crate::secret::Secret;

/// Limits on what a registry may hold; generous, but bounded so that no
/// request can make berth store megabytes per row.
pub mod limits {
    /// Characters in a namespace.
    pub const NAMESPACE: usize = 255;
    /// Characters in a username.
    pub const USERNAME: usize = 256;
    /// Bytes in a secret (a GCP service-account key is about 2.3 KiB).
    pub const SECRET: usize = 64 * 1024;
    /// Bytes of CA certificate PEM.
    pub const CA_CERT: usize = 64 * 1024;
    /// Project keys in one scope.
    pub const PROJECTS: usize = 1000;
    /// Characters in a project key.
    pub const PROJECT_KEY: usize = 64;
}

/// Which projects may use a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every project, including those created later.
    AllProjects,
    /// Only these project keys (sorted, unique, non-empty).
    Projects(Vec<String>),
}

impl Scope {
    /// Whether `project` may use the registry.
    pub fn includes(&self, project: &str) -> bool {
        match self {
            Scope::AllProjects => true,
            Scope::Projects(keys) => keys.binary_search_by(|k| k.as_str().cmp(project)).is_ok(),
        }
    }
}

/// TLS settings for reaching a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Verify the registry's certificate.
    pub verify: bool,
    /// PEM of a private CA; empty for the system roots.
    pub ca_cert_pem: String,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            verify: true,
            ca_cert_pem: String::new(),
        }
    }
}

/// A registry as a caller describes it, before validation. Strings are as
/// received; `None` for scope/tls means "not given".
#[derive(Debug, Clone, Default)]
pub struct RegistryInput {
    /// Provider, `None` when unspecified or unknown.
    pub provider: Option<Provider>,
    /// Raw address.
    pub address: String,
    /// Namespace.
    pub namespace: String,
    /// Region.
    pub region: String,
    /// Nexus repository.
    pub repository: String,
    /// Username or access key.
    pub username: String,
    /// New secret; empty means "none given".
    pub secret: Option<Secret>,
    /// All projects flag.
    pub all_projects: bool,
    /// Project keys.
    pub projects: Vec<String>,
    /// `tls.verify`; `None` means the default (true).
    pub tls_verify: Option<bool>,
    /// `tls.ca_cert_pem`.
    pub ca_cert_pem: String,
    /// Credential mode; `None` means the provider's default.
    pub credential_mode: Option<CredentialMode>,
    /// Cloud instance id.
    pub instance_id: String,
    /// `proxy.url`; empty means no proxy.
    pub proxy_url: String,
    /// `proxy.username`.
    pub proxy_username: String,
    /// New proxy password; `None` means "none given".
    pub proxy_password: Option<Secret>,
    /// `proxy.no_proxy`.
    pub no_proxy: Vec<String>,
    /// `budget.requests_per_second` (0: unlimited).
    pub budget_rps: f64,
    /// `budget.max_concurrent` (0: unlimited).
    pub budget_max_concurrent: u32,
}

/// A validated registry (without its secret, which is stored sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySpec {
    /// Provider.
    pub provider: Provider,
    /// Normalised address.
    pub address: RegistryAddress,
    /// Namespace ("" when unused).
    pub namespace: String,
    /// Region ("" when unused).
    pub region: String,
    /// Nexus repository ("" when unused).
    pub repository: String,
    /// Username ("" for anonymous registries).
    pub username: String,
    /// Project scope.
    pub scope: Scope,
    /// TLS settings.
    pub tls: Tls,
    /// How the docker login is made (one of the provider's modes).
    pub credential_mode: CredentialMode,
    /// Cloud instance id ("" when unused or derived from the address).
    pub instance_id: String,
    /// The forward proxy berth reaches the registry through, if any.
    pub proxy: Option<Proxy>,
    /// The request budget (per replica).
    pub budget: Budget,
}

impl RegistrySpec {
    /// Back to input form, so an update can overlay masked fields and
    /// validate the whole result again.
    pub fn to_input(&self) -> RegistryInput {
        let (all_projects, projects) = match &self.scope {
            Scope::AllProjects => (true, Vec::new()),
            Scope::Projects(p) => (false, p.clone()),
        };
        RegistryInput {
            provider: Some(self.provider),
            address: self.address.to_string(),
            namespace: self.namespace.clone(),
            region: self.region.clone(),
            repository: self.repository.clone(),
            username: self.username.clone(),
            secret: None,
            all_projects,
            projects,
            tls_verify: Some(self.tls.verify),
            ca_cert_pem: self.tls.ca_cert_pem.clone(),
            // The provider's default stays "the default", so that changing
            // the provider alone moves the registry to the new provider's
            // default mode instead of failing on a mode it does not offer.
            credential_mode: (self.credential_mode != self.provider.default_credential_mode())
                .then_some(self.credential_mode),
            instance_id: self.instance_id.clone(),
            proxy_url: self
                .proxy
                .as_ref()
                .map(|p| p.url.clone())
                .unwrap_or_default(),
            proxy_username: self
                .proxy
                .as_ref()
                .map(|p| p.username.clone())
                .unwrap_or_default(),
            proxy_password: None,
            no_proxy: self
                .proxy
                .as_ref()
                .map(|p| p.no_proxy.clone())
                .unwrap_or_default(),
            budget_rps: self.budget.requests_per_second(),
            budget_max_concurrent: self.budget.max_concurrent,
        }
    }
}

/// Validates `input` under the provider's rules. `has_stored_secret` says
/// whether a secret already exists (updates keep it). `prefix` is the proto
/// path of the registry message (`registry`), so violations name fields as
/// the caller sent them. All violations are reported at once.
pub fn validate(
    input: &RegistryInput,
    has_stored_secret: bool,
    prefix: &str,
) -> Result<RegistrySpec> {
    validate_with(input, has_stored_secret, false, prefix)
}

/// [`validate`], also told whether a proxy password stays stored.
pub fn validate_with(
    input: &RegistryInput,
    has_stored_secret: bool,
    has_stored_proxy_password: bool,
    prefix: &str,
) -> Result<RegistrySpec> {
    let mut v = Vec::new();
    let f = |name: &str| format!("{prefix}.{name}");
    let Some(provider) = input.provider else {
        return Err(Error::invalid(
            f("provider"),
            "is required (e.g. HARBOR, ECR, OTHER)",
        ));
    };
    let mode = input
        .credential_mode
        .unwrap_or_else(|| provider.default_credential_mode());
    let rules = match provider.rules_for(mode) {
        Some(rules) => rules,
        None => {
            let offered: Vec<&str> = provider
                .credential_modes()
                .iter()
                .map(|m| m.as_str())
                .collect();
            // The other fields' rules depend on the mode: nothing more
            // can be judged.
            return Err(Error::invalid(
                f("credential_mode"),
                format!(
                    "{mode} is not a credential mode of {provider}; use one of {}",
                    offered.join(", ")
                ),
            ));
        }
    };

    let address_raw = match (input.address.trim(), rules.default_address) {
        ("", Some(d)) => d,
        (a, _) => a,
    };
    let address = match RegistryAddress::parse(address_raw) {
        Ok(a) => Some(a),
        Err(why) => {
            v.push(FieldViolation::new(f("address"), why));
            None
        }
    };

    let username = match (input.username.trim(), rules.default_username) {
        ("", Some(d)) => d.to_string(),
        (u, _) => u.to_string(),
    };
    let has_secret = input.secret.is_some() || has_stored_secret;

    check(
        &mut v,
        &f("namespace"),
        rules.namespace,
        provider,
        &input.namespace,
        check_namespace,
    );
    check(
        &mut v,
        &f("region"),
        rules.region,
        provider,
        &input.region,
        check_region,
    );
    check(
        &mut v,
        &f("repository"),
        rules.repository,
        provider,
        &input.repository,
        check_repository,
    );
    check(
        &mut v,
        &f("username"),
        rules.username,
        provider,
        &username,
        check_username,
    );
    let instance_id = input.instance_id.trim();
    match rules.instance_id {
        Need::Unused if !instance_id.is_empty() => v.push(FieldViolation::new(
            f("instance_id"),
            format!("is not used by {provider} in credential mode {mode}; leave it empty"),
        )),
        _ if !instance_id.is_empty() => {
            if let Err(why) = instance::check_instance_id(provider, instance_id) {
                v.push(FieldViolation::new(f("instance_id"), why));
            }
        }
        // Optional: the address may name the instance instead.
        Need::Optional | Need::Required => {
            let named = address
                .as_ref()
                .is_some_and(|a| instance::name_in_address(provider, a.host()).is_some());
            if address.is_some() && !named {
                let form = match provider {
                    Provider::TcrEnterprise => "`<instance>.tencentcloudcr.com`",
                    _ => "`<instance>-registry.<region>.cr.aliyuncs.com`",
                };
                v.push(FieldViolation::new(
                    f("instance_id"),
                    format!(
                        "is required when the address is not {form}: give the instance id (`{}…`)",
                        instance::id_prefix(provider)
                    ),
                ));
            }
        }
        Need::Unused => {}
    }

    match (rules.secret, has_secret) {
        (Need::Required, false) => v.push(FieldViolation::new(
            f("secret"),
            format!("is required for {provider}"),
        )),
        // Only a secret sent now: a stored one is simply not used.
        (Need::Unused, _) if input.secret.is_some() => v.push(FieldViolation::new(
            f("secret"),
            format!("is not used by {provider} in credential mode {mode}; leave it empty"),
        )),
        (Need::Optional, _) if has_secret == username.is_empty() => v.push(FieldViolation::new(
            if username.is_empty() {
                f("username")
            } else {
                f("secret")
            },
            "username and secret go together: give both, or neither for an anonymous registry",
        )),
        _ => {}
    }
    if let Some(s) = &input.secret
        && s.expose().len() > limits::SECRET
    {
        v.push(FieldViolation::new(
            f("secret"),
            format!("must be at most {} bytes", limits::SECRET),
        ));
    }

    let scope = match validate_scope(input, prefix) {
        Ok(s) => Some(s),
        Err(mut more) => {
            v.append(&mut more);
            None
        }
    };
    if let Err(why) = check_ca_pem(&input.ca_cert_pem) {
        v.push(FieldViolation::new(f("tls.ca_cert_pem"), why));
    }
    let proxy = network::validate_proxy(
        &input.proxy_url,
        &input.proxy_username,
        input.proxy_password.is_some() || has_stored_proxy_password,
        input
            .proxy_password
            .as_ref()
            .map_or(0, |p| p.expose().len()),
        &input.no_proxy,
        prefix,
        &mut v,
    );
    let budget = network::validate_budget(
        input.budget_rps,
        input.budget_max_concurrent,
        prefix,
        &mut v,
    );

    match (address, scope) {
        (Some(address), Some(scope)) if v.is_empty() => Ok(RegistrySpec {
            provider,
            address,
            namespace: input.namespace.trim().to_string(),
            region: input.region.trim().to_string(),
            repository: input.repository.trim().to_string(),
            username,
            scope,
            tls: Tls {
                verify: input.tls_verify.unwrap_or(true),
                ca_cert_pem: input.ca_cert_pem.trim().to_string(),
            },
            credential_mode: mode,
            instance_id: instance_id.to_string(),
            proxy,
            budget,
        }),
        _ => Err(Error::InvalidArgument(v)),
    }
}

/// Validates an unsaved registry for TestConnection: the fields a
/// connection needs (provider, address, region where the provider uses it,
/// credentials, TLS), not the namespace layout.
pub fn validate_for_connection(input: &RegistryInput, prefix: &str) -> Result<RegistrySpec> {
    let rules = input.provider.map(|p| p.rules());
    let mut relaxed = input.clone();
    if let Some(r) = rules {
        // Namespace and repository only shape image names; a connection
        // test does not need them, so stand in valid placeholders.
        if r.namespace == Need::Required && relaxed.namespace.trim().is_empty() {
            relaxed.namespace = "connection-test".into();
        }
        if r.repository == Need::Required && relaxed.repository.trim().is_empty() {
            relaxed.repository = "connection-test".into();
        }
    }
    relaxed.all_projects = true;
    relaxed.projects.clear();
    validate(&relaxed, false, prefix)
}

fn check(
    v: &mut Vec<FieldViolation>,
    field: &str,
    need: Need,
    provider: Provider,
    value: &str,
    format: fn(&str) -> std::result::Result<(), String>,
) {
    let value = value.trim();
    match need {
        Need::Required if value.is_empty() => v.push(FieldViolation::new(
            field,
            format!("is required for {provider}"),
        )),
        Need::Unused if !value.is_empty() => v.push(FieldViolation::new(
            field,
            format!("is not used by {provider}; leave it empty"),
        )),
        _ if !value.is_empty() => {
            if let Err(why) = format(value) {
                v.push(FieldViolation::new(field, why));
            }
        }
        _ => {}
    }
}

/// A namespace is one or more repository path components
/// (`[a-z0-9]+` joined by `.`, `_`, `__` or dashes), separated by `/`.
fn check_namespace(s: &str) -> std::result::Result<(), String> {
    if s.len() > limits::NAMESPACE {
        return Err(format!("must be at most {} characters", limits::NAMESPACE));
    }
    for comp in s.split('/') {
        if !is_path_component(comp) {
            return Err(format!(
                "component `{comp}` is not valid: use lowercase letters and digits, separated by `.`, `_`, `__` or `-`"
            ));
        }
    }
    Ok(())
}

/// The distribution grammar's path component.
pub fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn check_region(s: &str) -> std::result::Result<(), String> {
    let ok = s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err("must look like `cn-east-3` or `us-east-1`".into())
    }
}

fn check_repository(s: &str) -> std::result::Result<(), String> {
    let ok = s.len() <= 255
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err("must use letters, digits, `.`, `_` and `-` only".into())
    }
}

fn check_username(s: &str) -> std::result::Result<(), String> {
    if s.chars().count() > limits::USERNAME {
        return Err(format!("must be at most {} characters", limits::USERNAME));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    if s.contains(':') {
        return Err("must not contain `:` (it separates user and password in basic auth)".into());
    }
    Ok(())
}

/// A project key: 1–64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn check_project_key(s: &str) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= limits::PROJECT_KEY
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1 to {} letters, digits, `.`, `_` or `-`, starting with a letter or digit",
            limits::PROJECT_KEY
        ))
    }
}

fn validate_scope(
    input: &RegistryInput,
    prefix: &str,
) -> std::result::Result<Scope, Vec<FieldViolation>> {
    let field = format!("{prefix}.scope");
    if input.all_projects {
        if !input.projects.is_empty() {
            return Err(vec![FieldViolation::new(
                field,
                "set either all_projects or projects, not both",
            )]);
        }
        return Ok(Scope::AllProjects);
    }
    if input.projects.is_empty() {
        return Err(vec![FieldViolation::new(
            field,
            "is required: set all_projects = true or list project keys in projects",
        )]);
    }
    if input.projects.len() > limits::PROJECTS {
        return Err(vec![FieldViolation::new(
            format!("{field}.projects"),
            format!("must list at most {} projects", limits::PROJECTS),
        )]);
    }
    let mut v = Vec::new();
    for (i, p) in input.projects.iter().enumerate() {
        if let Err(why) = check_project_key(p) {
            v.push(FieldViolation::new(format!("{field}.projects[{i}]"), why));
        }
    }
    if !v.is_empty() {
        return Err(v);
    }
    let mut keys = input.projects.clone();
    keys.sort();
    keys.dedup();
    Ok(Scope::Projects(keys))
}

fn check_ca_pem(pem: &str) -> std::result::Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = pem.trim();
    if pem.is_empty() {
        return Ok(());
    }
    if pem.len() > limits::CA_CERT {
        return Err(format!("must be at most {} bytes", limits::CA_CERT));
    }
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        if cert.is_err() {
            return Err("is not valid PEM".into());
        }
        count += 1;
    }
    if count == 0 {
        return Err("holds no `-----BEGIN CERTIFICATE-----` block".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(provider: Provider) -> RegistryInput {
        RegistryInput {
            provider: Some(provider),
            address: "registry.example.com".into(),
            namespace: "team".into(),
            region: "cn-east-3".into(),
            repository: "docker-hosted".into(),
            username: "robot".into(),
            secret: Some(Secret::new("pw")),
            all_projects: true,
            ..Default::default()
        }
    }

    /// Clears the fields a provider does not use, so the input is valid.
    fn valid(provider: Provider) -> RegistryInput {
        let mut i = full(provider);
        let r = provider.rules();
        if r.region == Need::Unused {
            i.region.clear();
        }
        if r.repository == Need::Unused {
            i.repository.clear();
        }
        i
    }

    /// Edits an input in place (table-test rows).
    type Edit = fn(&mut RegistryInput);

    fn fields(e: Error) -> Vec<String> {
        match e {
            Error::InvalidArgument(v) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn every_provider_accepts_its_fields_and_names_each_missing_one() {
        for p in Provider::ALL {
            assert!(validate(&valid(p), false, "registry").is_ok(), "{p}");
            let r = p.rules();
            let needs: [(&str, Need, Edit); 5] = [
                ("namespace", r.namespace, |i| i.namespace.clear()),
                ("region", r.region, |i| i.region.clear()),
                ("repository", r.repository, |i| i.repository.clear()),
                ("username", r.username, |i| i.username.clear()),
                ("secret", r.secret, |i| i.secret = None),
            ];
            for (name, need, clear) in needs {
                let mut i = valid(p);
                clear(&mut i);
                let res = validate(&i, false, "registry");
                let required =
                    need == Need::Required && !(name == "username" && r.default_username.is_some());
                if required {
                    let f = fields(res.expect_err(name));
                    assert!(f.contains(&format!("registry.{name}")), "{p} {name}: {f:?}");
                } else if p != Provider::Other {
                    assert!(res.is_ok(), "{p} {name} is optional");
                }
            }
        }
    }

    #[test]
    fn defaults_apply() {
        let mut i = valid(Provider::DockerHub);
        i.address.clear();
        assert_eq!(
            validate(&i, false, "r").expect("valid").address.to_string(),
            "docker.io"
        );
        let mut i = valid(Provider::Gar);
        i.username.clear();
        assert_eq!(
            validate(&i, false, "r").expect("valid").username,
            "_json_key_base64"
        );
    }

    #[test]
    fn stored_secret_satisfies_requirement() {
        let mut i = valid(Provider::Harbor);
        i.secret = None;
        assert!(validate(&i, true, "r").is_ok());
    }

    #[test]
    fn other_allows_anonymous_but_not_half_credentials() {
        let mut i = valid(Provider::Other);
        i.username.clear();
        i.secret = None;
        assert!(validate(&i, false, "r").is_ok());
        i.username = "u".into();
        assert_eq!(
            fields(validate(&i, false, "r").expect_err("half")),
            ["r.secret"]
        );
    }

    #[test]
    fn unused_fields_are_rejected() {
        let mut i = valid(Provider::Harbor);
        i.region = "us-east-1".into();
        assert_eq!(
            fields(validate(&i, false, "r").expect_err("unused")),
            ["r.region"]
        );
    }

    #[test]
    fn scope_rules() {
        let mut i = valid(Provider::Harbor);
        i.all_projects = false;
        assert_eq!(
            fields(validate(&i, false, "r").expect_err("empty")),
            ["r.scope"]
        );
        i.projects = vec!["b".into(), "a".into(), "b".into()];
        let s = validate(&i, false, "r").expect("valid").scope;
        assert_eq!(s, Scope::Projects(vec!["a".into(), "b".into()]));
        assert!(s.includes("a") && !s.includes("c"));
        i.projects = vec!["ok".into(), "bad key".into()];
        assert_eq!(
            fields(validate(&i, false, "r").expect_err("bad")),
            ["r.scope.projects[1]"]
        );
        i.all_projects = true;
        i.projects = vec!["a".into()];
        assert_eq!(
            fields(validate(&i, false, "r").expect_err("both")),
            ["r.scope"]
        );
    }

    #[test]
    fn formats() {
        let rows: [(&str, Edit, &str); 6] = [
            (
                "uppercase namespace",
                |i| i.namespace = "Team".into(),
                "r.namespace",
            ),
            (
                "colon in username",
                |i| i.username = "a:b".into(),
                "r.username",
            ),
            (
                "address with path",
                |i| i.address = "r.example.com/team".into(),
                "r.address",
            ),
            (
                "bad pem",
                |i| i.ca_cert_pem = "hello".into(),
                "r.tls.ca_cert_pem",
            ),
            ("no provider", |i| i.provider = None, "r.provider"),
            (
                "huge secret",
                |i| i.secret = Some(Secret::new("x".repeat(70_000))),
                "r.secret",
            ),
        ];
        for (name, edit, field) in rows {
            let mut i = valid(Provider::Harbor);
            edit(&mut i);
            assert_eq!(
                fields(validate(&i, false, "r").expect_err(name)),
                [field],
                "{name}"
            );
        }
    }

    #[test]
    fn credential_modes_choose_the_fields() {
        let access_key = |p: Provider, address: &str| RegistryInput {
            provider: Some(p),
            credential_mode: Some(CredentialMode::AcrAccessKey),
            address: address.into(),
            namespace: "team".into(),
            region: "cn-hangzhou".into(),
            username: "LTAI5tExampleKeyId".into(),
            secret: Some(Secret::new("secret")),
            all_projects: true,
            ..Default::default()
        };
        // ACR personal: region required, no instance.
        let i = access_key(Provider::AcrPersonal, "registry.cn-hangzhou.aliyuncs.com");
        let spec = validate(&i, false, "r").expect("valid");
        assert_eq!(spec.credential_mode, CredentialMode::AcrAccessKey);
        assert_eq!(
            spec.to_input().credential_mode,
            Some(CredentialMode::AcrAccessKey)
        );
        let mut no_region = i.clone();
        no_region.region.clear();
        assert_eq!(
            fields(validate(&no_region, false, "r").expect_err("region")),
            ["r.region"]
        );
        let mut with_instance = i.clone();
        with_instance.instance_id = "cri-abc".into();
        assert_eq!(
            fields(validate(&with_instance, false, "r").expect_err("instance")),
            ["r.instance_id"]
        );

        // ACR enterprise: the instance comes from the address or the field.
        let host = "team-registry.cn-hangzhou.cr.aliyuncs.com";
        assert!(validate(&access_key(Provider::AcrEnterprise, host), false, "r").is_ok());
        let mut custom = access_key(Provider::AcrEnterprise, "images.example.com");
        assert_eq!(
            fields(validate(&custom, false, "r").expect_err("no instance")),
            ["r.instance_id"]
        );
        custom.instance_id = "cri-kmsiwlxxdcvaduwb".into();
        assert_eq!(
            validate(&custom, false, "r").expect("id given").instance_id,
            "cri-kmsiwlxxdcvaduwb"
        );
        custom.instance_id = "tcr-abc".into();
        assert_eq!(
            fields(validate(&custom, false, "r").expect_err("bad id")),
            ["r.instance_id"]
        );

        // TCR enterprise has its own mode; TCR personal has none.
        let mut tcr = access_key(Provider::TcrEnterprise, "team.tencentcloudcr.com");
        assert_eq!(
            fields(validate(&tcr, false, "r").expect_err("ACR mode")),
            ["r.credential_mode"]
        );
        tcr.credential_mode = Some(CredentialMode::TcrAccessKey);
        assert!(validate(&tcr, false, "r").is_ok());
        tcr.provider = Some(Provider::TcrPersonal);
        assert!(
            fields(validate(&tcr, false, "r").expect_err("personal"))
                .contains(&"r.credential_mode".to_string())
        );

        // The default stays static username/password: region unused.
        let mut static_acr = access_key(Provider::AcrEnterprise, host);
        static_acr.credential_mode = None;
        assert_eq!(
            fields(validate(&static_acr, false, "r").expect_err("region")),
            ["r.region"]
        );
        static_acr.region.clear();
        let spec = validate(&static_acr, false, "r").expect("static");
        assert_eq!(spec.credential_mode, CredentialMode::Static);
        assert_eq!(spec.to_input().credential_mode, None);

        // Anonymous: no username, no secret.
        let mut anon = valid(Provider::Other);
        anon.credential_mode = Some(CredentialMode::Anonymous);
        let mut f = fields(validate(&anon, false, "r").expect_err("credentials"));
        f.sort();
        assert_eq!(f, ["r.secret", "r.username"]);
        anon.username.clear();
        anon.secret = None;
        assert!(validate(&anon, false, "r").is_ok());
        assert!(
            validate(&anon, true, "r").is_ok(),
            "a stored secret is ignored"
        );
    }

    #[test]
    fn path_components() {
        for ok in ["a", "a.b", "a_b", "a__b", "a-b", "a---b", "0"] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a___b", "a..b", "a_.b", "a b"] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }
}
