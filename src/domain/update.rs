//! UpdateRegistry's field mask: which fields of the stored registry the
//! request replaces.

use super::registry::{RegistryInput, RegistrySpec};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// What an update does to the stored secret.
#[derive(Debug)]
pub enum SecretChange {
    /// Leave it as it is.
    Keep,
    /// Remove it.
    Clear,
    /// Replace it.
    Set(Secret),
}

impl SecretChange {
    /// Whether a secret is stored after this change, given whether one was
    /// before.
    pub fn stored_after(&self, stored_before: bool) -> bool {
        match self {
            SecretChange::Keep => stored_before,
            SecretChange::Clear => false,
            SecretChange::Set(_) => true,
        }
    }
}

/// What an update does to the two stored secrets.
#[derive(Debug)]
pub struct Changes {
    /// The registry secret.
    pub secret: SecretChange,
    /// The proxy password.
    pub proxy_password: SecretChange,
}

/// Paths an update mask may name.
pub const MUTABLE_PATHS: [&str; 21] = [
    "provider",
    "address",
    "namespace",
    "region",
    "repository",
    "username",
    "secret",
    "scope",
    "tls",
    "tls.verify",
    "tls.ca_cert_pem",
    "credential_mode",
    "instance_id",
    "proxy",
    "proxy.url",
    "proxy.username",
    "proxy.password",
    "proxy.no_proxy",
    "budget",
    "budget.requests_per_second",
    "budget.max_concurrent",
];

const OUTPUT_ONLY: [&str; 8] = [
    "proxy.has_password",
    "id",
    "has_secret",
    "create_time",
    "update_time",
    "updated_by",
    "etag",
    "is_default",
];

/// Overlays the masked fields of `patch` on `current`. An empty mask means
/// every mutable field. The secret: named in the mask, an empty value
/// clears it; not named (or mask empty), an empty value keeps it.
pub fn apply_mask(
    current: &RegistrySpec,
    patch: RegistryInput,
    mask: &[String],
) -> Result<(RegistryInput, SecretChange)> {
    apply_mask_full(current, patch, mask).map(|(m, c)| (m, c.secret))
}

/// [`apply_mask`], with what happens to the proxy password too: like the
/// secret, an empty one keeps the stored one unless `proxy` or
/// `proxy.password` is named.
pub fn apply_mask_full(
    current: &RegistrySpec,
    patch: RegistryInput,
    mask: &[String],
) -> Result<(RegistryInput, Changes)> {
    let mut paths: Vec<&str> = Vec::new();
    for p in mask {
        let p = p.as_str();
        if MUTABLE_PATHS.contains(&p) {
            paths.push(p);
        } else if p == "is_default" {
            return Err(Error::invalid(
                "update_mask",
                "is_default is changed with SetDefaultRegistry",
            ));
        } else if OUTPUT_ONLY.contains(&p) {
            return Err(Error::invalid(
                "update_mask",
                format!("`{p}` is output only"),
            ));
        } else {
            return Err(Error::invalid(
                "update_mask",
                format!("unknown field `{p}`; allowed: {}", MUTABLE_PATHS.join(", ")),
            ));
        }
    }
    let explicit_secret = paths.contains(&"secret");
    let explicit_proxy_password = paths.contains(&"proxy") || paths.contains(&"proxy.password");
    if paths.is_empty() {
        paths = MUTABLE_PATHS.to_vec();
    }
    let mut merged = current.to_input();
    for p in &paths {
        match *p {
            "provider" => merged.provider = patch.provider,
            "address" => merged.address = patch.address.clone(),
            "namespace" => merged.namespace = patch.namespace.clone(),
            "region" => merged.region = patch.region.clone(),
            "repository" => merged.repository = patch.repository.clone(),
            "username" => merged.username = patch.username.clone(),
            "scope" => {
                merged.all_projects = patch.all_projects;
                merged.projects = patch.projects.clone();
            }
            "tls" => {
                merged.tls_verify = patch.tls_verify;
                merged.ca_cert_pem = patch.ca_cert_pem.clone();
            }
            "tls.verify" => merged.tls_verify = patch.tls_verify,
            "tls.ca_cert_pem" => merged.ca_cert_pem = patch.ca_cert_pem.clone(),
            "credential_mode" => merged.credential_mode = patch.credential_mode,
            "instance_id" => merged.instance_id = patch.instance_id.clone(),
            "proxy" => {
                merged.proxy_url = patch.proxy_url.clone();
                merged.proxy_username = patch.proxy_username.clone();
                merged.no_proxy = patch.no_proxy.clone();
            }
            "proxy.url" => merged.proxy_url = patch.proxy_url.clone(),
            "proxy.username" => merged.proxy_username = patch.proxy_username.clone(),
            "proxy.no_proxy" => merged.no_proxy = patch.no_proxy.clone(),
            "budget" => {
                merged.budget_rps = patch.budget_rps;
                merged.budget_max_concurrent = patch.budget_max_concurrent;
            }
            "budget.requests_per_second" => merged.budget_rps = patch.budget_rps,
            "budget.max_concurrent" => merged.budget_max_concurrent = patch.budget_max_concurrent,
            _ => {}
        }
    }
    let change = match patch.secret {
        Some(s) => SecretChange::Set(s),
        None if explicit_secret => SecretChange::Clear,
        None => SecretChange::Keep,
    };
    if let SecretChange::Set(s) = &change {
        merged.secret = Some(s.clone());
    }
    let proxy_password = match patch.proxy_password {
        Some(p) => SecretChange::Set(p),
        None if explicit_proxy_password => SecretChange::Clear,
        None => SecretChange::Keep,
    };
    if let SecretChange::Set(p) = &proxy_password {
        merged.proxy_password = Some(p.clone());
    }
    Ok((
        merged,
        Changes {
            secret: change,
            proxy_password,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_after_follows_the_change() {
        for before in [false, true] {
            assert_eq!(SecretChange::Keep.stored_after(before), before);
            assert!(!SecretChange::Clear.stored_after(before));
            assert!(SecretChange::Set(Secret::new("s")).stored_after(before));
        }
    }
    use crate::domain::{Provider, validate};

    fn current() -> RegistrySpec {
        let input = RegistryInput {
            provider: Some(Provider::Harbor),
            address: "harbor.example.com".into(),
            namespace: "team".into(),
            username: "robot".into(),
            secret: Some(Secret::new("pw")),
            projects: vec!["a".into()],
            ..Default::default()
        };
        validate(&input, false, "r").expect("valid")
    }

    #[test]
    fn mask_touches_only_named_fields() {
        let patch = RegistryInput {
            namespace: "other".into(),
            username: "ignored".into(),
            ..Default::default()
        };
        let (m, change) = apply_mask(&current(), patch, &["namespace".into()]).expect("ok");
        assert_eq!(m.namespace, "other");
        assert_eq!(m.username, "robot");
        assert_eq!(m.projects, ["a"]);
        assert!(matches!(change, SecretChange::Keep));
    }

    #[test]
    fn secret_rules() {
        let (_, c) =
            apply_mask(&current(), RegistryInput::default(), &["secret".into()]).expect("ok");
        assert!(matches!(c, SecretChange::Clear));
        let patch = RegistryInput {
            secret: Some(Secret::new("new")),
            ..Default::default()
        };
        let (_, c) = apply_mask(&current(), patch, &["secret".into()]).expect("ok");
        assert!(matches!(c, SecretChange::Set(_)));
    }

    #[test]
    fn proxy_password_rules() {
        let patch = || RegistryInput {
            proxy_url: "http://p:3128".into(),
            budget_rps: 2.0,
            ..Default::default()
        };
        let (m, c) = apply_mask_full(&current(), patch(), &["proxy.url".into()]).expect("ok");
        assert_eq!(m.proxy_url, "http://p:3128");
        assert_eq!(m.budget_rps, 0.0);
        assert!(matches!(c.proxy_password, SecretChange::Keep));
        let (_, c) = apply_mask_full(&current(), patch(), &["proxy".into()]).expect("ok");
        assert!(matches!(c.proxy_password, SecretChange::Clear));
        let (m, c) = apply_mask_full(&current(), patch(), &[]).expect("ok");
        assert_eq!(m.budget_rps, 2.0);
        assert!(matches!(c.proxy_password, SecretChange::Keep));
        let mut p = patch();
        p.proxy_password = Some(Secret::new("pw"));
        let (m, c) = apply_mask_full(&current(), p, &["budget".into()]).expect("ok");
        assert!(matches!(c.proxy_password, SecretChange::Set(_)));
        assert!(m.proxy_password.is_some());
    }

    #[test]
    fn bad_paths_name_update_mask() {
        for p in ["id", "is_default", "nope", "etag", "proxy.has_password"] {
            let e = apply_mask(&current(), RegistryInput::default(), &[p.into()]).expect_err(p);
            assert!(
                matches!(&e, Error::InvalidArgument(v) if v[0].field == "update_mask"),
                "{p}"
            );
        }
    }
}
