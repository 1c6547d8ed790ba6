//! The registry use cases: what each RegistryService RPC does, in domain
//! terms. Handlers in `api/` convert protobuf to these calls and back.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::domain::{self, Provider, RegistryInput, SecretChange, registry::check_project_key};
use crate::error::{Error, Result};
use crate::store::{ListQuery, RegistryRecord, Store};

/// Default and maximum page sizes of ListRegistries.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// See [`DEFAULT_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Registry management on top of the store.
#[derive(Clone)]
pub struct Registries {
    store: Store,
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
    /// Wraps a store.
    pub fn new(store: Store) -> Self {
        Registries { store }
    }

    /// CreateRegistry.
    pub async fn create(
        &self,
        input: RegistryInput,
        make_default: bool,
        actor: &str,
    ) -> Result<RegistryRecord> {
        let spec = domain::validate(&input, false, "registry")?;
        let rec = self
            .store
            .create(&spec, input.secret.as_ref(), make_default, actor)
            .await?;
        tracing::info!(id = %rec.id, provider = %spec.provider, address = %spec.address, is_default = rec.is_default, "registry created");
        Ok(rec)
    }

    /// GetRegistry.
    pub async fn get(&self, id: &str) -> Result<RegistryRecord> {
        self.store.get(&check_id(id, "id")?).await
    }

    /// ListRegistries.
    pub async fn list(
        &self,
        project: &str,
        provider: Option<Provider>,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page> {
        let project = match project.trim() {
            "" => None,
            p => {
                check_project_key(p).map_err(|why| Error::invalid("project", why))?;
                Some(p.to_string())
            }
        };
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
        actor: &str,
    ) -> Result<RegistryRecord> {
        let id = check_id(id, "registry.id")?;
        let expected = parse_etag(etag, "registry.etag")?;
        let rec = self
            .store
            .update(&id, expected, actor, |current| {
                let (merged, change) = domain::apply_mask(&current.spec, patch.clone(), mask)?;
                let keeps_secret = matches!(change, SecretChange::Keep) && current.has_secret;
                let spec = domain::validate(&merged, keeps_secret, "registry")?;
                Ok((spec, change))
            })
            .await?;
        tracing::info!(id = %rec.id, revision = rec.revision, "registry updated");
        Ok(rec)
    }

    /// DeleteRegistry.
    pub async fn delete(&self, id: &str, etag: &str) -> Result<()> {
        let id = check_id(id, "id")?;
        self.store.delete(&id, parse_etag(etag, "etag")?).await?;
        tracing::info!(id, "registry deleted");
        Ok(())
    }

    /// SetDefaultRegistry.
    pub async fn set_default(&self, id: &str, actor: &str) -> Result<RegistryRecord> {
        let rec = self.store.set_default(&check_id(id, "id")?, actor).await?;
        tracing::info!(id = %rec.id, "default registry set");
        Ok(rec)
    }

    /// GetDefaultRegistry: the default, if the project may use it.
    pub async fn get_default(&self, project: &str) -> Result<RegistryRecord> {
        let project = project.trim();
        if project.is_empty() {
            return Err(Error::invalid("project", "is required"));
        }
        check_project_key(project).map_err(|why| Error::invalid("project", why))?;
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

/// Page tokens are opaque to callers: the last id seen plus the filters, so
/// that a token reused with other filters is refused instead of silently
/// returning a wrong page.
fn encode_token(last_id: &str, filter: &str) -> String {
    B64.encode(format!("v1|{last_id}|{filter}"))
}

fn decode_token(token: &str, filter: &str) -> Result<String> {
    let bad = || Error::invalid("page_token", "is not a token returned by a previous call");
    let raw = B64.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let rest = text.strip_prefix("v1|").ok_or_else(bad)?;
    let (id, f) = rest.split_once('|').ok_or_else(bad)?;
    uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    if f != filter {
        return Err(Error::invalid(
            "page_token",
            "was issued for different filters (project/provider)",
        ));
    }
    Ok(id.to_string())
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
