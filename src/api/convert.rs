//! Protobuf ⇄ domain conversions. Protobuf types stop here.

use std::fmt;

use prost_types::Timestamp;

use crate::feed::WatchItem;
use crate::store::EventKind;

use crate::domain::{CredentialMode, Provider, RegistryInput, Scope};
use crate::error::{Error, Result};
use crate::pb;
use crate::secret::Secret;
use crate::store::RegistryRecord;

/// Proto enum value → provider. 0 is "not given"; other unknown numbers
/// (a newer client) are named.
pub fn provider(v: i32, field: &str) -> Result<Option<Provider>> {
    match v {
        0 => Ok(None),
        // `n - 1` would overflow (a panic in debug builds) for i32::MIN.
        n => usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| Provider::ALL.get(i).copied())
            .map(Some)
            .ok_or_else(|| Error::invalid(field, format!("unknown provider value {n}"))),
    }
}

/// Provider → proto enum value (enum order matches `Provider::ALL`).
pub fn provider_to_pb(p: Provider) -> i32 {
    Provider::ALL
        .iter()
        .position(|x| *x == p)
        .map_or(0, |i| i as i32 + 1)
}

/// Proto enum value → credential mode. 0 is "not given" (the provider's
/// default); other unknown numbers are named.
pub fn credential_mode(v: i32, field: &str) -> Result<Option<CredentialMode>> {
    match v {
        0 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| CredentialMode::ALL.get(i).copied())
            .map(Some)
            .ok_or_else(|| Error::invalid(field, format!("unknown credential mode value {n}"))),
    }
}

/// Credential mode → proto enum value (enum order matches
/// `CredentialMode::ALL`).
pub fn credential_mode_to_pb(m: CredentialMode) -> i32 {
    CredentialMode::ALL
        .iter()
        .position(|x| *x == m)
        .map_or(0, |i| i as i32 + 1)
}

/// A Registry message as input.
pub fn registry_input(r: pb::Registry) -> Result<RegistryInput> {
    let provider = provider(r.provider, "registry.provider")?;
    let credential_mode = credential_mode(r.credential_mode, "registry.credential_mode")?;
    let (all_projects, projects) = match r.scope {
        Some(s) => (s.all_projects, s.projects),
        None => (false, Vec::new()),
    };
    let (tls_verify, ca_cert_pem) = match r.tls {
        Some(t) => (t.verify, t.ca_cert_pem),
        None => (None, String::new()),
    };
    let proxy = r.proxy.unwrap_or_default();
    let budget = r.budget.unwrap_or_default();
    Ok(RegistryInput {
        provider,
        address: r.address,
        namespace: r.namespace,
        region: r.region,
        repository: r.repository,
        username: r.username,
        secret: (!r.secret.is_empty()).then(|| Secret::new(r.secret)),
        all_projects,
        projects,
        tls_verify,
        ca_cert_pem,
        credential_mode,
        instance_id: r.instance_id,
        proxy_url: proxy.url,
        proxy_username: proxy.username,
        proxy_password: (!proxy.password.is_empty()).then(|| Secret::new(proxy.password)),
        no_proxy: proxy.no_proxy,
        budget_rps: budget.requests_per_second,
        budget_max_concurrent: budget.max_concurrent,
    })
}

/// A record as a Registry message. The secret and the proxy password are
/// never set.
pub fn registry_to_pb(r: RegistryRecord) -> pb::Registry {
    let etag = r.etag();
    let proxy = r.spec.proxy.map(|p| pb::ProxySettings {
        url: p.url,
        username: p.username,
        password: String::new(),
        has_password: r.has_proxy_password,
        no_proxy: p.no_proxy,
    });
    let budget = (!r.spec.budget.is_unlimited()).then(|| pb::RequestBudget {
        requests_per_second: r.spec.budget.requests_per_second(),
        max_concurrent: r.spec.budget.max_concurrent,
    });
    let (all_projects, projects) = match r.spec.scope {
        Scope::AllProjects => (true, Vec::new()),
        Scope::Projects(p) => (false, p),
    };
    pb::Registry {
        etag,
        id: r.id,
        provider: provider_to_pb(r.spec.provider),
        address: r.spec.address.to_string(),
        namespace: r.spec.namespace,
        region: r.spec.region,
        repository: r.spec.repository,
        username: r.spec.username,
        secret: String::new(),
        has_secret: r.has_secret,
        is_default: r.is_default,
        scope: Some(pb::Scope {
            all_projects,
            projects,
        }),
        tls: Some(pb::TlsSettings {
            verify: Some(r.spec.tls.verify),
            ca_cert_pem: r.spec.tls.ca_cert_pem,
        }),
        create_time: Some(timestamp(r.create_time_us)),
        update_time: Some(timestamp(r.update_time_us)),
        updated_by: r.updated_by,
        credential_mode: credential_mode_to_pb(r.spec.credential_mode),
        instance_id: r.spec.instance_id,
        proxy,
        budget,
    }
}

/// A provider descriptor as a message.
pub fn descriptor_to_pb(d: crate::domain::descriptor::Descriptor) -> pb::ProviderDescriptor {
    use crate::domain::descriptor::Field;
    let fields = |fields: Vec<Field>| -> Vec<pb::FieldDescriptor> {
        fields
            .into_iter()
            .map(|f| pb::FieldDescriptor {
                name: f.name.into(),
                label: f.label.into(),
                required: f.required,
                secret: f.secret,
                default_value: f.default_value.into(),
                pattern: f.pattern.into(),
                help: f.help.into(),
            })
            .collect()
    };
    pb::ProviderDescriptor {
        provider: provider_to_pb(d.provider),
        display_name: d.display_name.to_string(),
        fields: fields(d.fields),
        credential_modes: d
            .credential_modes
            .into_iter()
            .map(credential_mode_to_pb)
            .collect(),
        modes: d
            .modes
            .into_iter()
            .map(|m| pb::CredentialModeDescriptor {
                mode: credential_mode_to_pb(m.mode),
                display_name: m.display_name.into(),
                help: m.help.into(),
                fields: fields(m.fields),
            })
            .collect(),
    }
}

/// A chrono time as a protobuf Timestamp.
pub fn timestamp_of(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf timestamp from microseconds since the epoch.
pub fn timestamp(us: i64) -> Timestamp {
    Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
    }
}

// Written by hand (build.rs skips the derive) so that no `{:?}` of a
// request can print the secret.
impl fmt::Debug for pb::Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("region", &self.region)
            .field("repository", &self.repository)
            .field("username", &self.username)
            .field("secret", &if self.secret.is_empty() { "" } else { "***" })
            .field("has_secret", &self.has_secret)
            .field("is_default", &self.is_default)
            .field("scope", &self.scope)
            .field("tls", &self.tls)
            .field("credential_mode", &self.credential_mode)
            .field("instance_id", &self.instance_id)
            .field("proxy", &self.proxy)
            .field("budget", &self.budget)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

// By hand too: the proxy password is as secret as `Registry.secret`.
impl fmt::Debug for pb::ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxySettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("has_password", &self.has_password)
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// One watch message as protobuf.
pub fn watch_item_to_pb(item: WatchItem) -> pb::WatchRegistriesResponse {
    use pb::RegistryEventKind as K;
    match item {
        WatchItem::Existing { revision, registry } => pb::WatchRegistriesResponse {
            revision,
            kind: K::Existing as i32,
            registry: Some(registry_to_pb(*registry)),
            ..Default::default()
        },
        WatchItem::Synced(revision) => pb::WatchRegistriesResponse {
            revision,
            kind: K::Synced as i32,
            ..Default::default()
        },
        WatchItem::Progress(revision) => pb::WatchRegistriesResponse {
            revision,
            kind: K::Progress as i32,
            ..Default::default()
        },
        WatchItem::Change { event, left_scope } => {
            let kind = if left_scope {
                K::LeftScope
            } else {
                match event.kind {
                    EventKind::Created => K::Created,
                    EventKind::Updated => K::Updated,
                    EventKind::TlsChanged => K::TlsChanged,
                    EventKind::Deleted => K::Deleted,
                    EventKind::DefaultChanged => K::DefaultChanged,
                }
            };
            pb::WatchRegistriesResponse {
                revision: event.revision,
                kind: kind as i32,
                registry: Some(registry_to_pb(event.registry.clone())),
                changed_fields: event.changed.clone(),
                previous_default_id: event.previous_default.clone().unwrap_or_default(),
                time: Some(timestamp(event.time_us)),
                actor: event.actor.clone(),
            }
        }
    }
}

/// A registry use as protobuf.
pub fn usage_to_pb(u: crate::store::usage::UsageRecord) -> pb::RegistryUsage {
    pb::RegistryUsage {
        registry_id: u.registry_id,
        project: u.project,
        user: u.user,
        recorded_by: u.recorded_by,
        record_time: Some(timestamp(u.record_time_us)),
        expire_time: Some(timestamp(u.expire_time_us)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_numbers_match_the_proto() {
        assert_eq!(provider(1, "f").expect("ok"), Some(Provider::AcrPersonal));
        assert_eq!(provider(12, "f").expect("ok"), Some(Provider::Other));
        assert_eq!(
            provider(pb::Provider::Ecr as i32, "f").expect("ok"),
            Some(Provider::Ecr)
        );
        assert!(provider(13, "f").is_err());
        assert!(provider(-1, "f").is_err());
        assert!(provider(i32::MIN, "f").is_err());
        for p in Provider::ALL {
            assert_eq!(
                pb::Provider::try_from(provider_to_pb(p)).map(|x| x.as_str_name()),
                Ok(p.as_str())
            );
        }
    }

    #[test]
    fn credential_mode_numbers_match_the_proto() {
        assert_eq!(credential_mode(0, "f").expect("ok"), None);
        for m in CredentialMode::ALL {
            let n = credential_mode_to_pb(m);
            assert_eq!(
                pb::CredentialMode::try_from(n).map(|x| x.as_str_name()),
                Ok(format!("CREDENTIAL_MODE_{}", m.as_str()).as_str())
            );
            assert_eq!(credential_mode(n, "f").expect("ok"), Some(m));
        }
        assert!(credential_mode(8, "f").is_err());
        assert!(credential_mode(-1, "f").is_err());
        assert!(credential_mode(i32::MIN, "f").is_err());
    }

    #[test]
    fn registry_debug_hides_secret() {
        let r = pb::Registry {
            secret: "hunter2".into(),
            proxy: Some(pb::ProxySettings {
                url: "http://p:3128".into(),
                password: "swordfish".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("swordfish"));
        assert!(shown.contains("http://p:3128"));
    }

    #[test]
    fn timestamps_split_micros() {
        assert_eq!(
            timestamp(1_500_000),
            Timestamp {
                seconds: 1,
                nanos: 500_000_000
            }
        );
    }
}
