//! The registry use cases: what each RegistryService RPC does, in domain
//! terms. Handlers in `api/` convert protobuf to these calls and back.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Caller, Principal, Role};
use crate::domain::{self, Provider, RegistryInput, SecretChange, registry::check_project_key};
use crate::error::{Error, Result};
use crate::feed::Feed;
use crate::store::usage::UsageRecord;
use crate::store::{AuditEntry, ListQuery, RegistryRecord, Store};

/// Default and maximum page sizes of ListRegistries.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// See [`DEFAULT_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Registry management on top of the store.
#[derive(Clone)]
pub struct Registries {
    store: Store,
    feed: Arc<Feed>,
}

/// One page of ListRegistries.
#[derive(Debug)]
pub struct Page {
    /// The registries.
    pub registries: Vec<RegistryRecord>,
    /// Token for the next page, if there is one.
    pub next_page_token: Option<String>,
}

impl Registries {
    /// Wraps a store; writes nudge `feed` so this replica's watchers see
    /// them at once.
    pub fn new(store: Store, feed: Arc<Feed>) -> Self {
        Registries { store, feed }
    }

    /// CreateRegistry.
    pub async fn create(
        &self,
        input: RegistryInput,
        make_default: bool,
        caller: &Caller,
    ) -> Result<RegistryRecord> {
        let spec = domain::validate(&input, false, "registry")?;
        let who = &caller.principal;
        let allowed = who.require_manage(&spec.scope).and_then(|()| {
            if make_default {
                who.require_all(Role::Admin, "make a registry the default")
            } else {
                Ok(())
            }
        });
        if let Err(e) = allowed {
            return Err(self.denied(caller, "registry.create", None, e).await);
        }
        let rec = self
            .store
            .create(
                &spec,
                input.secret.as_ref(),
                input.proxy_password.as_ref(),
                make_default,
                &caller.actor(),
            )
            .await?;
        self.feed.nudge();
        tracing::info!(id = %rec.id, provider = %spec.provider, address = %spec.address, is_default = rec.is_default, "registry created");
        Ok(rec)
    }

    /// GetRegistry. A registry the caller may not see is NOT_FOUND, as if
    /// it did not exist.
    pub async fn get(&self, id: &str, caller: &Caller) -> Result<RegistryRecord> {
        let id = check_id(id, "id")?;
        let rec = self.store.get(&id).await?;
        if !caller.principal.may_see(&rec.spec.scope) {
            return Err(crate::store::not_found(&id));
        }
        Ok(rec)
    }

    /// Records a refused change in the audit log and returns the refusal.
    async fn denied(
        &self,
        caller: &Caller,
        action: &'static str,
        registry_id: Option<&str>,
        e: Error,
    ) -> Error {
        let entry = AuditEntry {
            actor: caller.principal.name.clone(),
            action,
            registry_id: registry_id.map(str::to_owned),
            project: None,
            outcome: "denied",
            request_id: caller.request_id.clone(),
            detail: e.to_string(),
        };
        if let Err(err) = self.store.record(entry).await {
            tracing::error!(error = %err, "could not record a refused change in the audit log");
        }
        e
    }

    /// ListRegistries.
    pub async fn list(
        &self,
        project: &str,
        provider: Option<Provider>,
        page_size: i32,
        page_token: &str,
        caller: &Caller,
    ) -> Result<Page> {
        let project = match project.trim() {
            "" => None,
            p => {
                check_project_key(p).map_err(|why| Error::invalid("project", why))?;
                Some(p.to_string())
            }
        };
        let visible = caller.principal.visible_projects();
        match (&visible, &project) {
            (Some(v), _) if v.is_empty() => {
                return Err(Error::PermissionDenied(format!(
                    "`{}` may not list registries (needs the `reader` role)",
                    caller.principal.name
                )));
            }
            (Some(v), Some(p)) if !v.contains(p) => {
                return Err(Error::PermissionDenied(format!(
                    "`{}` may not read project `{p}` (needs the `reader` role on it)",
                    caller.principal.name
                )));
            }
            _ => {}
        }
        let limit = match page_size {
            n if n < 0 => return Err(Error::invalid("page_size", "must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n => (n as u64).min(MAX_PAGE_SIZE),
        };
        let filter = filter_key(project.as_deref(), provider);
        let after_id = match page_token {
            "" => None,
            t => Some(decode_token(t, &filter)?),
        };
        let mut registries = self
            .store
            .list(&ListQuery {
                project,
                provider,
                limit: limit + 1,
                after_id,
                visible_to: visible.map(|v| v.into_iter().collect()),
            })
            .await?;
        let next_page_token = if registries.len() as u64 > limit {
            registries.truncate(limit as usize);
            registries.last().map(|r| encode_token(&r.id, &filter))
        } else {
            None
        };
        Ok(Page {
            registries,
            next_page_token,
        })
    }

    /// UpdateRegistry.
    pub async fn update(
        &self,
        id: &str,
        patch: RegistryInput,
        mask: &[String],
        etag: &str,
        caller: &Caller,
    ) -> Result<RegistryRecord> {
        let id = check_id(id, "registry.id")?;
        let expected = parse_etag(etag, "registry.etag")?;
        let who = &caller.principal;
        let result = self
            .store
            .update(&id, expected, &caller.actor(), |current| {
                if !who.may_see(&current.spec.scope) {
                    return Err(crate::store::not_found(&id));
                }
                who.require_manage(&current.spec.scope)?;
                let (merged, mut changes) =
                    domain::apply_mask_full(&current.spec, patch.clone(), mask)?;
                let keeps_secret =
                    matches!(changes.secret, SecretChange::Keep) && current.has_secret;
                let keeps_proxy_password = matches!(changes.proxy_password, SecretChange::Keep)
                    && current.has_proxy_password;
                let spec =
                    domain::validate_with(&merged, keeps_secret, keeps_proxy_password, "registry")?;
                // No proxy left: its password goes with it.
                if spec.proxy.is_none() && current.has_proxy_password {
                    changes.proxy_password = SecretChange::Clear;
                }
                who.require_manage(&spec.scope)?;
                Ok((spec, changes))
            })
            .await;
        let rec = match result {
            Err(e @ Error::PermissionDenied(_)) => {
                return Err(self.denied(caller, "registry.update", Some(&id), e).await);
            }
            other => other?,
        };
        self.feed.nudge();
        tracing::info!(id = %rec.id, revision = rec.revision, "registry updated");
        Ok(rec)
    }

    /// DeleteRegistry.
    pub async fn delete(&self, id: &str, etag: &str, force: bool, caller: &Caller) -> Result<()> {
        let id = check_id(id, "id")?;
        let expected = parse_etag(etag, "etag")?;
        let who = &caller.principal;
        // The rights depend on the registry's scope: checked on the row as
        // it is locked for the deletion, so a concurrent scope change cannot
        // slip between the check and the delete.
        let result = self
            .store
            .delete(&id, expected, force, &caller.actor(), |current| {
                if !who.may_see(&current.spec.scope) {
                    return Err(crate::store::not_found(&id));
                }
                who.require_manage(&current.spec.scope)
            })
            .await;
        match result {
            Err(e @ Error::PermissionDenied(_)) => {
                return Err(self.denied(caller, "registry.delete", Some(&id), e).await);
            }
            other => other?,
        }
        self.feed.nudge();
        tracing::info!(id, "registry deleted");
        Ok(())
    }

    /// SetDefaultRegistry.
    pub async fn set_default(&self, id: &str, caller: &Caller) -> Result<RegistryRecord> {
        let id = check_id(id, "id")?;
        if let Err(e) = caller
            .principal
            .require_all(Role::Admin, "set the default registry")
        {
            return Err(self
                .denied(caller, "registry.set_default", Some(&id), e)
                .await);
        }
        let rec = self.store.set_default(&id, &caller.actor()).await?;
        self.feed.nudge();
        tracing::info!(id = %rec.id, "default registry set");
        Ok(rec)
    }

    /// GetDefaultRegistry: the default, if the project may use it.
    pub async fn get_default(&self, project: &str, who: &Principal) -> Result<RegistryRecord> {
        let project = project.trim();
        if project.is_empty() {
            return Err(Error::invalid("project", "is required"));
        }
        check_project_key(project).map_err(|why| Error::invalid("project", why))?;
        who.require(Role::Reader, project)?;
        let Some(rec) = self.store.get_default().await? else {
            return Err(Error::NotFound("no default registry is set".into()));
        };
        if !rec.spec.scope.includes(project) {
            return Err(Error::NotFound(format!(
                "the default registry {} is not available to project `{project}`: its scope does not include it",
                rec.id
            )));
        }
        Ok(rec)
    }
}

/// How long a recorded use lasts when the caller does not say.
pub const DEFAULT_USAGE_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a use may be recorded for.
pub const MAX_USAGE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl Registries {
    /// RecordRegistryUsage. A caller who cannot list every registry learns
    /// nothing from the answer: a missing registry and one outside the
    /// project's scope give the same PERMISSION_DENIED.
    pub async fn record_usage(
        &self,
        registry_id: &str,
        project: &str,
        user: &str,
        ttl: Option<Duration>,
        caller: &Caller,
    ) -> Result<UsageRecord> {
        let id = check_id(registry_id, "registry_id")?;
        let project = project.trim();
        if project.is_empty() {
            return Err(Error::invalid("project", "is required"));
        }
        check_project_key(project).map_err(|why| Error::invalid("project", why))?;
        let user = user.trim();
        match user.chars().count() {
            0 => return Err(Error::invalid("user", "is required")),
            n if n > 255 => return Err(Error::invalid("user", "is longer than 255 characters")),
            _ if user.chars().any(char::is_control) => {
                return Err(Error::invalid(
                    "user",
                    "must not contain control characters",
                ));
            }
            _ => {}
        }
        let ttl = match ttl {
            None => DEFAULT_USAGE_TTL,
            Some(t) if t < Duration::from_secs(1) => {
                return Err(Error::invalid("ttl", "must be at least 1 second"));
            }
            Some(t) if t > MAX_USAGE_TTL => {
                return Err(Error::invalid("ttl", "must be at most 30 days"));
            }
            Some(t) => t,
        };
        let who = &caller.principal;
        who.require(Role::Reader, project)?;
        let hidden = || {
            Error::PermissionDenied(format!(
                "registry {id} is not available to project `{project}`"
            ))
        };
        let rec = match self.store.get(&id).await {
            Err(Error::NotFound(_)) if !who.sees_everything() => return Err(hidden()),
            other => other?,
        };
        if !rec.spec.scope.includes(project) {
            return Err(hidden());
        }
        let used = self
            .store
            .record_usage(&id, project, user, &who.name, ttl.as_micros() as i64)
            .await?;
        tracing::info!(
            id,
            project,
            user,
            ttl_s = ttl.as_secs(),
            "registry use recorded"
        );
        Ok(used)
    }

    /// ListRegistryUsage: the current uses of a registry the caller may
    /// see, limited to the projects the caller may read.
    pub async fn list_usage(&self, registry_id: &str, caller: &Caller) -> Result<Vec<UsageRecord>> {
        let id = check_id(registry_id, "registry_id")?;
        self.get(&id, caller).await?;
        let visible = caller.principal.visible_projects();
        let mut uses = self.store.list_usage(&id).await?;
        if let Some(projects) = visible {
            uses.retain(|u| projects.contains(&u.project));
        }
        Ok(uses)
    }
}

/// Ids are UUIDs; anything else cannot exist, and saying so early keeps
/// junk out of queries. Returned in the form berth stores (lowercase,
/// hyphenated): UUIDs are case-insensitive, the database compares strings.
fn check_id(id: &str, field: &str) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| Error::invalid(field, "is not a registry id (a UUID)"))
}

fn parse_etag(etag: &str, field: &str) -> Result<Option<i64>> {
    if etag.is_empty() {
        return Ok(None);
    }
    RegistryRecord::parse_etag(etag)
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "is not an etag returned by berth"))
}

fn filter_key(project: Option<&str>, provider: Option<Provider>) -> String {
    format!(
        "{}|{}",
        project.unwrap_or(""),
        provider.map(|p| p.as_str()).unwrap_or("")
    )
}

fn encode_token(last_id: &str, filter: &str) -> String {
    crate::paging::encode(last_id, filter)
}

fn decode_token(token: &str, filter: &str) -> Result<String> {
    let id = crate::paging::decode(token, filter, "project/provider")?;
    uuid::Uuid::parse_str(&id)
        .map_err(|_| Error::invalid("page_token", "is not a token returned by a previous call"))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bind_filters() {
        let id = uuid::Uuid::now_v7().to_string();
        let t = encode_token(&id, "p|HARBOR");
        assert_eq!(decode_token(&t, "p|HARBOR").expect("valid"), id);
        assert!(decode_token(&t, "q|HARBOR").is_err());
        assert!(decode_token("garbage!", "").is_err());
    }

    #[test]
    fn ids_and_etags() {
        assert!(check_id("", "id").is_err());
        assert!(check_id("'; drop table", "id").is_err());
        assert_eq!(parse_etag("r3", "etag").expect("ok"), Some(3));
        assert_eq!(parse_etag("", "etag").expect("ok"), None);
        assert!(parse_etag("3", "etag").is_err());
        assert!(parse_etag("r0", "etag").is_err());
    }
}
