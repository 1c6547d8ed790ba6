//! Conversions between table rows and domain records.

use sea_orm::ActiveValue::Set;

use super::entity::registry;
use crate::domain::{
    Budget, CredentialMode, Provider, Proxy, RegistryAddress, RegistrySpec, Scope, Tls,
};
use crate::error::{Error, Result};
use crate::secret::Sealed;

/// A stored registry as the rest of berth sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRecord {
    /// Server-generated id.
    pub id: String,
    /// The validated fields.
    pub spec: RegistrySpec,
    /// Whether a secret is stored.
    pub has_secret: bool,
    /// Whether a proxy password is stored.
    pub has_proxy_password: bool,
    /// Whether this is the default registry.
    pub is_default: bool,
    /// Creation time, µs since the epoch.
    pub create_time_us: i64,
    /// Last change, µs since the epoch.
    pub update_time_us: i64,
    /// Who made the last change.
    pub updated_by: String,
    /// Revision, incremented by each update.
    pub revision: i64,
}

impl RegistryRecord {
    /// The etag callers send back for optimistic concurrency.
    pub fn etag(&self) -> String {
        format!("r{}", self.revision)
    }

    /// Parses an etag; `None` if it is not one of ours.
    pub fn parse_etag(etag: &str) -> Option<i64> {
        etag.strip_prefix('r')?.parse().ok().filter(|r| *r > 0)
    }
}

/// The context a proxy password is sealed to: bound to the registry, and
/// distinct from the registry secret's, so neither ciphertext opens in the
/// other's column.
pub(crate) fn proxy_password_context(id: &str) -> String {
    format!("{id}#proxy-password")
}

#[allow(clippy::too_many_arguments)]
pub(super) fn to_active(
    id: &str,
    spec: &RegistrySpec,
    sealed: Option<&Sealed>,
    sealed_proxy_password: Option<&Sealed>,
    create_time_us: i64,
    update_time_us: i64,
    actor: &str,
    revision: i64,
) -> registry::ActiveModel {
    registry::ActiveModel {
        id: Set(id.to_owned()),
        provider: Set(spec.provider.as_str().to_owned()),
        address: Set(spec.address.to_string()),
        namespace: Set(spec.namespace.clone()),
        region: Set(spec.region.clone()),
        repository: Set(spec.repository.clone()),
        username: Set(spec.username.clone()),
        secret_ciphertext: Set(sealed.map(|s| s.bytes.clone())),
        secret_key_id: Set(sealed.map(|s| s.key_id.clone())),
        all_projects: Set(spec.scope == Scope::AllProjects),
        tls_verify: Set(spec.tls.verify),
        ca_cert_pem: Set(spec.tls.ca_cert_pem.clone()),
        create_time_us: Set(create_time_us),
        update_time_us: Set(update_time_us),
        updated_by: Set(actor.to_owned()),
        revision: Set(revision),
        credential_mode: Set(spec.credential_mode.as_str().to_owned()),
        instance_id: Set(spec.instance_id.clone()),
        proxy_url: Set(spec
            .proxy
            .as_ref()
            .map(|p| p.url.clone())
            .unwrap_or_default()),
        proxy_username: Set(spec
            .proxy
            .as_ref()
            .map(|p| p.username.clone())
            .unwrap_or_default()),
        proxy_no_proxy: Set(spec
            .proxy
            .as_ref()
            .filter(|p| !p.no_proxy.is_empty())
            .map(|p| p.no_proxy.join(","))),
        proxy_password_ciphertext: Set(sealed_proxy_password.map(|s| s.bytes.clone())),
        proxy_password_key_id: Set(sealed_proxy_password.map(|s| s.key_id.clone())),
        budget_micro_rps: Set(i64::try_from(spec.budget.micro_rps).unwrap_or(i64::MAX)),
        budget_max_concurrent: Set(i32::try_from(spec.budget.max_concurrent).unwrap_or(i32::MAX)),
    }
}

/// The stored mode name of a `provider` registry (`""` from rows written
/// before the column: the provider's default).
pub(super) fn credential_mode_of(provider: Provider, stored: &str) -> Option<CredentialMode> {
    if stored.is_empty() {
        Some(provider.default_credential_mode())
    } else {
        CredentialMode::from_name(stored)
    }
}

pub(super) fn to_record(
    r: registry::Model,
    projects: Vec<String>,
    is_default: bool,
) -> Result<RegistryRecord> {
    // Rows are written only from validated specs; a row that does not parse
    // was edited by hand, and is reported rather than half-shown.
    let corrupt = |what: &str| Error::Internal(format!("registry {} has an invalid {what}", r.id));
    let provider = Provider::from_name(&r.provider).ok_or_else(|| corrupt("provider"))?;
    let address = RegistryAddress::parse(&r.address).map_err(|_| corrupt("address"))?;
    let credential_mode = credential_mode_of(provider, &r.credential_mode)
        .ok_or_else(|| corrupt("credential mode"))?;
    let scope = if r.all_projects {
        Scope::AllProjects
    } else {
        Scope::Projects(projects)
    };
    let proxy = (!r.proxy_url.is_empty()).then(|| Proxy {
        url: r.proxy_url.clone(),
        username: r.proxy_username.clone(),
        no_proxy: r
            .proxy_no_proxy
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
    });
    let budget = Budget {
        micro_rps: u64::try_from(r.budget_micro_rps).map_err(|_| corrupt("budget"))?,
        max_concurrent: u32::try_from(r.budget_max_concurrent).map_err(|_| corrupt("budget"))?,
    };
    Ok(RegistryRecord {
        has_secret: r.secret_ciphertext.is_some(),
        has_proxy_password: r.proxy_password_ciphertext.is_some(),
        spec: RegistrySpec {
            provider,
            address,
            namespace: r.namespace,
            region: r.region,
            repository: r.repository,
            username: r.username,
            scope,
            tls: Tls {
                verify: r.tls_verify,
                ca_cert_pem: r.ca_cert_pem,
            },
            credential_mode,
            instance_id: r.instance_id,
            proxy,
            budget,
        },
        id: r.id,
        is_default,
        create_time_us: r.create_time_us,
        update_time_us: r.update_time_us,
        updated_by: r.updated_by,
        revision: r.revision,
    })
}
