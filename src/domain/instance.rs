//! Which cloud instance an ACR Enterprise or TCR Enterprise registry in an
//! access-key mode belongs to: the `instance_id` field when given, else the
//! instance name its address carries
//! (`<name>-registry.<region>.cr.aliyuncs.com`, `<name>.tencentcloudcr.com`),
//! which berth turns into an id with the cloud's own lookup.

use super::provider::Provider;
use super::registry::RegistrySpec;

/// The instance to mint a token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instance {
    /// No instance: ACR Personal Edition.
    None,
    /// A known instance id (`cri-…`, `tcr-…`).
    Id(String),
    /// An instance name from the address, to look up.
    Name(String),
}

/// Most characters of an instance id or name.
const MAX_LEN: usize = 64;

/// The instance of `spec` (validated: an enterprise registry in an
/// access-key mode has an id or an address that names its instance).
pub fn instance_of(spec: &RegistrySpec) -> Instance {
    if !spec.instance_id.is_empty() {
        return Instance::Id(spec.instance_id.clone());
    }
    match name_in_address(spec.provider, spec.address.host()) {
        Some(name) => Instance::Name(name.to_owned()),
        None => Instance::None,
    }
}

/// The instance name `host` carries for `provider`, if any.
pub fn name_in_address(provider: Provider, host: &str) -> Option<&str> {
    let name = match provider {
        Provider::AcrEnterprise => acr_instance_name(host)?,
        Provider::TcrEnterprise => host.strip_suffix(".tencentcloudcr.com")?,
        _ => return None,
    };
    is_instance_name(name).then_some(name)
}

/// `<name>-registry[-vpc|-intl|-internal…].<region>.cr.aliyuncs.com` →
/// `<name>`.
fn acr_instance_name(host: &str) -> Option<&str> {
    let rest = host.strip_suffix(".cr.aliyuncs.com")?;
    let (label, region) = rest.split_once('.')?;
    if region.is_empty() || region.contains('.') {
        return None;
    }
    let at = label.rfind("-registry")?;
    let mut tail = &label[at + "-registry".len()..];
    while !tail.is_empty() {
        tail = ["-vpc", "-intl", "-internal"]
            .iter()
            .find_map(|s| tail.strip_prefix(s))?;
    }
    Some(&label[..at])
}

/// Instance names: lowercase letters, digits and `-`, not at the ends.
fn is_instance_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The prefix of `provider`'s instance ids.
pub fn id_prefix(provider: Provider) -> &'static str {
    match provider {
        Provider::TcrEnterprise => "tcr-",
        _ => "cri-",
    }
}

/// Checks an instance id given for `provider`.
pub fn check_instance_id(provider: Provider, s: &str) -> Result<(), String> {
    let prefix = id_prefix(provider);
    let ok = s.len() <= MAX_LEN
        && s.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be the instance id, `{prefix}` and lowercase letters or digits (e.g. `{prefix}a1b2c3d4`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_enterprise_hosts_name_their_instance() {
        let name = |h| name_in_address(Provider::AcrEnterprise, h);
        assert_eq!(
            name("team-registry.cn-hangzhou.cr.aliyuncs.com"),
            Some("team")
        );
        assert_eq!(
            name("my-team-registry-vpc.cn-shanghai.cr.aliyuncs.com"),
            Some("my-team")
        );
        assert_eq!(
            name("a-registry-intl-vpc.ap-southeast-1.cr.aliyuncs.com"),
            Some("a")
        );
        for host in [
            "registry.cn-hangzhou.aliyuncs.com",
            "-registry.cn-hangzhou.cr.aliyuncs.com",
            "team-registry-x.cn-hangzhou.cr.aliyuncs.com",
            "team-registry.cr.aliyuncs.com",
            "team-registry.a.b.cr.aliyuncs.com",
            "registry.example.com",
        ] {
            assert_eq!(name(host), None, "{host}");
        }
        assert_eq!(
            name_in_address(
                Provider::AcrPersonal,
                "team-registry.cn-hangzhou.cr.aliyuncs.com"
            ),
            None
        );
    }

    #[test]
    fn tcr_hosts_name_their_instance() {
        let name = |h| name_in_address(Provider::TcrEnterprise, h);
        assert_eq!(name("team.tencentcloudcr.com"), Some("team"));
        assert_eq!(name("a.b.tencentcloudcr.com"), None);
        assert_eq!(name("tencentcloudcr.com"), None);
        assert_eq!(name("ccr.ccs.tencentyun.com"), None);
    }

    #[test]
    fn instance_ids() {
        assert!(check_instance_id(Provider::AcrEnterprise, "cri-kmsiwlxxdcvaduwb").is_ok());
        assert!(check_instance_id(Provider::TcrEnterprise, "tcr-dg284imq").is_ok());
        for bad in ["tcr-x", "cri-", "cri-A1", "cri-a b", "cri-a&b=c"] {
            assert!(
                check_instance_id(Provider::AcrEnterprise, bad).is_err(),
                "{bad}"
            );
        }
        assert!(check_instance_id(Provider::TcrEnterprise, "cri-abc").is_err());
    }
}
