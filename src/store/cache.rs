//! The read-through cache of the hot paths (ResolveImage, GetCredentials,
//! GetDefaultRegistry): registries with their decrypted secret, and the
//! default's id, so those calls touch neither the database nor AES-GCM.
//!
//! Correctness across replicas: every entry is dropped when the change feed
//! reports a change of its registry (on every replica, within the feed's
//! poll interval) and, on the replica that made the change, right after the
//! write commits. A load that raced an invalidation is not stored: each
//! invalidation bumps a generation, and a load stores its result only if
//! the generation it started under is still current. Entries also expire
//! after a TTL, a bound on staleness should an invalidation ever be missed
//! (e.g. while this replica cannot read the feed).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::rows::RegistryRecord;
use crate::secret::Secret;

/// How long an entry may be served without being re-read.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Most registries kept; above this the cache is emptied and refills (a
/// platform has hundreds of registries, not hundreds of thousands).
const MAX_ENTRIES: usize = 10_000;

/// The decrypted secrets of one registry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Secrets {
    /// The registry secret.
    pub secret: Option<Secret>,
    /// The proxy password.
    pub proxy_password: Option<Secret>,
}

struct Entry {
    record: RegistryRecord,
    secrets: Secrets,
    at: Instant,
}

/// Registries and the default, as last read.
pub struct RegistryCache {
    ttl: Duration,
    generation: AtomicU64,
    entries: RwLock<HashMap<String, Entry>>,
    /// The default's id (`None`: no default), and when it was read.
    default: RwLock<Option<(Option<String>, Instant)>>,
}

impl Default for RegistryCache {
    fn default() -> Self {
        RegistryCache::new(DEFAULT_TTL)
    }
}

impl RegistryCache {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        RegistryCache {
            ttl,
            generation: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
            default: RwLock::new(None),
        }
    }

    /// The generation a load starts under (pass it to `put`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Registry `id`, if cached and fresh.
    pub fn get(&self, id: &str) -> Option<(RegistryRecord, Secrets)> {
        let entries = self.entries.read().ok()?;
        let e = entries.get(id)?;
        (e.at.elapsed() < self.ttl).then(|| (e.record.clone(), e.secrets.clone()))
    }

    /// Stores a registry loaded under `generation`, unless something was
    /// invalidated since.
    pub fn put(&self, generation: u64, record: &RegistryRecord, secrets: &Secrets) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        // Checked under the lock that invalidation also takes, so an
        // invalidation is either before (we skip) or after (it removes us).
        if self.generation() != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            record.id.clone(),
            Entry {
                record: record.clone(),
                secrets: secrets.clone(),
                at: Instant::now(),
            },
        );
    }

    /// The default's id (`Some(None)`: there is none), if cached and fresh.
    pub fn default_id(&self) -> Option<Option<String>> {
        let d = self.default.read().ok()?;
        let (id, at) = d.as_ref()?;
        (at.elapsed() < self.ttl).then(|| id.clone())
    }

    /// Stores the default's id, read under `generation`.
    pub fn put_default(&self, generation: u64, id: Option<String>) {
        let Ok(mut d) = self.default.write() else {
            return;
        };
        if self.generation() != generation {
            return;
        }
        *d = Some((id, Instant::now()));
    }

    /// Registry `id` changed: drop it. When the default may have moved too
    /// (`default_moved`), drop every registry (their `is_default`) and the
    /// default.
    pub fn invalidate(&self, id: &str, default_moved: bool) {
        let entries = self.entries.write();
        let default = self.default.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = entries {
            if default_moved {
                entries.clear();
            } else {
                entries.remove(id);
            }
        }
        if default_moved && let Ok(mut d) = default {
            *d = None;
        }
    }

    /// Drop everything (the feed had a gap this replica cannot replay).
    pub fn clear(&self) {
        let entries = self.entries.write();
        let default = self.default.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut e) = entries {
            e.clear();
        }
        if let Ok(mut d) = default {
            *d = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Provider, RegistryAddress, RegistrySpec, Scope, Tls};

    fn record(id: &str) -> RegistryRecord {
        RegistryRecord {
            id: id.into(),
            spec: RegistrySpec {
                provider: Provider::Harbor,
                address: RegistryAddress::parse("harbor.example.com").expect("address"),
                namespace: "team".into(),
                region: String::new(),
                repository: String::new(),
                username: "robot".into(),
                scope: Scope::AllProjects,
                tls: Tls::default(),
                credential_mode: crate::domain::CredentialMode::Static,
                instance_id: String::new(),
                proxy: None,
                budget: Default::default(),
            },
            has_secret: true,
            has_proxy_password: false,
            is_default: false,
            create_time_us: 1,
            update_time_us: 1,
            updated_by: "t".into(),
            revision: 1,
        }
    }

    #[test]
    fn a_load_that_raced_an_invalidation_is_not_kept() {
        let c = RegistryCache::default();
        let g = c.generation();
        c.invalidate("a", false);
        c.put(g, &record("a"), &Secrets::default());
        assert!(c.get("a").is_none());
        let g = c.generation();
        let secrets = Secrets {
            secret: Some(Secret::new("s")),
            proxy_password: Some(Secret::new("p")),
        };
        c.put(g, &record("a"), &secrets);
        let (r, s) = c.get("a").expect("cached");
        assert_eq!(r.id, "a");
        assert_eq!(s, secrets);
    }

    #[test]
    fn invalidation_drops_one_or_all() {
        let c = RegistryCache::default();
        let g = c.generation();
        c.put(g, &record("a"), &Secrets::default());
        c.put(g, &record("b"), &Secrets::default());
        c.put_default(g, Some("a".into()));
        c.invalidate("a", false);
        assert!(c.get("a").is_none());
        assert!(c.get("b").is_some());
        assert_eq!(c.default_id(), Some(Some("a".into())));
        c.invalidate("b", true);
        assert!(c.get("b").is_none());
        assert_eq!(c.default_id(), None);
        let g = c.generation();
        c.put_default(g, None);
        assert_eq!(c.default_id(), Some(None));
        c.clear();
        assert_eq!(c.default_id(), None);
    }

    #[test]
    fn entries_expire() {
        let c = RegistryCache::new(Duration::from_millis(1));
        let g = c.generation();
        c.put(g, &record("a"), &Secrets::default());
        c.put_default(g, None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.get("a").is_none());
        assert_eq!(c.default_id(), None);
    }
}
