//! The change feed: every committed registry change as a numbered event,
//! written in the change's own transaction (so a change and its event land
//! together or not at all), read back in revision order by WatchRegistries
//! and by each replica's cache invalidation.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};

use super::entity::{registry_event, registry_revision};
use super::rows::RegistryRecord;
use super::{Store, clip};
use crate::domain::{Budget, Provider, Proxy, RegistryAddress, RegistrySpec, Scope, Tls};
use crate::error::{Error, Result};

/// What happened to a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A registry was created.
    Created,
    /// Fields other than the TLS settings changed.
    Updated,
    /// An update that changed the TLS settings (verification or CA), maybe
    /// among other fields: runners must reconfigure their clients.
    TlsChanged,
    /// A registry was deleted; the event holds its last state.
    Deleted,
    /// Another registry became the default; the event holds the new one.
    DefaultChanged,
}

impl EventKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::TlsChanged => "tls_changed",
            EventKind::Deleted => "deleted",
            EventKind::DefaultChanged => "default_changed",
        }
    }

    fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "created" => EventKind::Created,
            "updated" => EventKind::Updated,
            "tls_changed" => EventKind::TlsChanged,
            "deleted" => EventKind::Deleted,
            "default_changed" => EventKind::DefaultChanged,
            _ => return None,
        })
    }
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEvent {
    /// Position in the feed; strictly increasing, without gaps.
    pub revision: i64,
    /// Commit time, µs since the epoch.
    pub time_us: i64,
    /// What happened.
    pub kind: EventKind,
    /// Who did it.
    pub actor: String,
    /// The fields an update changed (update-mask paths); empty otherwise.
    pub changed: Vec<String>,
    /// For DefaultChanged: the registry that was the default before.
    pub previous_default: Option<String>,
    /// For an update that changed the scope: the scope before, so a
    /// watcher that could see the registry only before learns it left.
    pub previous_scope: Option<Scope>,
    /// The registry after the change (before it, for Deleted). Never holds
    /// a secret: only `has_secret`.
    pub registry: RegistryRecord,
}

/// Newest revision and how far the feed was pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedPosition {
    /// The newest committed revision (0 before the first change).
    pub revision: i64,
    /// Events up to and including this revision were pruned; resuming
    /// needs a revision at or above it.
    pub compacted: i64,
}

/// Feed settings.
#[derive(Debug, Clone, Copy)]
pub struct FeedSettings {
    /// How many events are kept for resuming watchers.
    pub retention: i64,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings { retention: 10_000 }
    }
}

/// A change to record: built by the write paths inside their transaction.
pub(super) struct NewEvent<'a> {
    pub kind: EventKind,
    pub actor: &'a str,
    pub changed: Vec<String>,
    pub previous_default: Option<String>,
    pub previous_scope: Option<&'a Scope>,
    pub registry: &'a RegistryRecord,
}

/// The JSON form of a registry in an event: every field but the secret.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    id: String,
    provider: String,
    address: String,
    namespace: String,
    region: String,
    repository: String,
    username: String,
    all_projects: bool,
    projects: Vec<String>,
    tls_verify: bool,
    ca_cert_pem: String,
    has_secret: bool,
    is_default: bool,
    create_time_us: i64,
    update_time_us: i64,
    updated_by: String,
    revision: i64,
    /// Absent from events written before the field: the provider's
    /// default mode.
    #[serde(default)]
    credential_mode: String,
    #[serde(default)]
    instance_id: String,
    /// Proxy settings (never its password, only whether one is stored);
    /// absent from events written before the fields: no proxy.
    #[serde(default)]
    proxy_url: String,
    #[serde(default)]
    proxy_username: String,
    #[serde(default)]
    no_proxy: Vec<String>,
    #[serde(default)]
    has_proxy_password: bool,
    /// The request budget; absent: unlimited.
    #[serde(default)]
    budget_micro_rps: u64,
    #[serde(default)]
    budget_max_concurrent: u32,
    /// The scope before a scope-changing update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_scope: Option<StoredScope>,
}

#[derive(Serialize, Deserialize)]
struct StoredScope {
    all_projects: bool,
    projects: Vec<String>,
}

impl StoredScope {
    fn of(scope: &Scope) -> StoredScope {
        match scope {
            Scope::AllProjects => StoredScope {
                all_projects: true,
                projects: Vec::new(),
            },
            Scope::Projects(keys) => StoredScope {
                all_projects: false,
                projects: keys.clone(),
            },
        }
    }

    fn into_scope(self) -> Scope {
        if self.all_projects {
            Scope::AllProjects
        } else {
            Scope::Projects(self.projects)
        }
    }
}

impl Snapshot {
    fn of(r: &RegistryRecord, previous_scope: Option<&Scope>) -> Snapshot {
        let StoredScope {
            all_projects,
            projects,
        } = StoredScope::of(&r.spec.scope);
        Snapshot {
            previous_scope: previous_scope.map(StoredScope::of),
            id: r.id.clone(),
            provider: r.spec.provider.as_str().to_owned(),
            address: r.spec.address.to_string(),
            namespace: r.spec.namespace.clone(),
            region: r.spec.region.clone(),
            repository: r.spec.repository.clone(),
            username: r.spec.username.clone(),
            all_projects,
            projects,
            tls_verify: r.spec.tls.verify,
            ca_cert_pem: r.spec.tls.ca_cert_pem.clone(),
            has_secret: r.has_secret,
            is_default: r.is_default,
            create_time_us: r.create_time_us,
            update_time_us: r.update_time_us,
            updated_by: r.updated_by.clone(),
            revision: r.revision,
            credential_mode: r.spec.credential_mode.as_str().to_owned(),
            instance_id: r.spec.instance_id.clone(),
            proxy_url: r
                .spec
                .proxy
                .as_ref()
                .map(|p| p.url.clone())
                .unwrap_or_default(),
            proxy_username: r
                .spec
                .proxy
                .as_ref()
                .map(|p| p.username.clone())
                .unwrap_or_default(),
            no_proxy: r
                .spec
                .proxy
                .as_ref()
                .map(|p| p.no_proxy.clone())
                .unwrap_or_default(),
            has_proxy_password: r.has_proxy_password,
            budget_micro_rps: r.spec.budget.micro_rps,
            budget_max_concurrent: r.spec.budget.max_concurrent,
        }
    }

    fn into_record(self) -> Option<(RegistryRecord, Option<Scope>)> {
        let previous = self.previous_scope.map(StoredScope::into_scope);
        let provider = Provider::from_name(&self.provider)?;
        let record = RegistryRecord {
            spec: RegistrySpec {
                provider,
                credential_mode: super::rows::credential_mode_of(provider, &self.credential_mode)?,
                instance_id: self.instance_id,
                address: RegistryAddress::parse(&self.address).ok()?,
                namespace: self.namespace,
                region: self.region,
                repository: self.repository,
                username: self.username,
                scope: if self.all_projects {
                    Scope::AllProjects
                } else {
                    Scope::Projects(self.projects)
                },
                tls: Tls {
                    verify: self.tls_verify,
                    ca_cert_pem: self.ca_cert_pem,
                },
                proxy: (!self.proxy_url.is_empty()).then_some(Proxy {
                    url: self.proxy_url,
                    username: self.proxy_username,
                    no_proxy: self.no_proxy,
                }),
                budget: Budget {
                    micro_rps: self.budget_micro_rps,
                    max_concurrent: self.budget_max_concurrent,
                },
            },
            id: self.id,
            has_secret: self.has_secret,
            has_proxy_password: self.has_proxy_password,
            is_default: self.is_default,
            create_time_us: self.create_time_us,
            update_time_us: self.update_time_us,
            updated_by: self.updated_by,
            revision: self.revision,
        };
        Some((record, previous))
    }
}

/// Takes the feed's lock (the counter row) without taking a revision.
/// Writes that read or change the default (create, delete, set-default)
/// take it first thing, so the previous default they read stays true until
/// they commit, and DefaultChanged events chain without a gap. Updates,
/// which never touch the default, take it only when they append.
pub(super) async fn lock<C: ConnectionTrait>(c: &C) -> Result<(), DbErr> {
    c.execute_raw(Statement::from_string(
        c.get_database_backend(),
        "UPDATE registry_revision SET revision = revision WHERE id = 1",
    ))
    .await?;
    Ok(())
}

/// Takes the next revision and writes `e` under it, on `c` (the change's
/// transaction). The counter row stays locked until that transaction ends,
/// which is what makes revisions commit in order (see the migration).
/// Every `step` revisions, events older than `retention` are pruned.
/// On PostgreSQL the revision is taken, and pruning done, by a trigger at
/// COMMIT (migration 000007): the event goes in under a placeholder.
pub(super) async fn append<C: ConnectionTrait>(
    c: &C,
    e: NewEvent<'_>,
    now_us: i64,
    settings: FeedSettings,
) -> Result<(), DbErr> {
    let backend = c.get_database_backend();
    // Serialised before the counter row is locked: nothing but the
    // statements below runs under it.
    let snapshot = serde_json::to_string(&Snapshot::of(e.registry, e.previous_scope))
        .map_err(|err| DbErr::Custom(format!("event snapshot: {err}")))?;
    let kind = e.kind.as_str().to_owned();
    let actor = clip(e.actor, 256).to_owned();
    let changed = clip(&e.changed.join(","), 1024).to_owned();
    if backend == sea_orm::DatabaseBackend::Postgres {
        // Numbered at COMMIT by the deferred trigger of migration 000007,
        // which also prunes: no lock is taken here.
        c.execute_raw(Statement::from_sql_and_values(
            backend,
            "INSERT INTO registry_events \
             (revision, time_us, kind, registry_id, actor, changed, previous_default, snapshot) \
             VALUES (-nextval('registry_event_pending'), $1, $2, $3, $4, $5, $6, $7)",
            [
                now_us.into(),
                kind.into(),
                e.registry.id.clone().into(),
                actor.into(),
                changed.into(),
                e.previous_default.into(),
                snapshot.into(),
            ],
        ))
        .await?;
        return Ok(());
    }
    let revision = next_revision(c).await?;
    registry_event::Entity::insert(registry_event::ActiveModel {
        revision: Set(revision),
        time_us: Set(now_us),
        kind: Set(kind),
        registry_id: Set(e.registry.id.clone()),
        actor: Set(actor),
        changed: Set(changed),
        previous_default: Set(e.previous_default),
        snapshot: Set(snapshot),
    })
    .exec_without_returning(c)
    .await?;
    let retention = settings.retention.max(1);
    let step = (retention / 10).clamp(1, 100);
    if revision % step == 0 && revision > retention {
        let horizon = revision - retention;
        registry_event::Entity::delete_many()
            .filter(registry_event::Column::Revision.lte(horizon))
            .exec(c)
            .await?;
        c.execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE registry_revision SET compacted = ? WHERE id = 1 AND compacted < ?",
            [horizon.into(), horizon.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Bumps the counter row and returns the new revision, in one round trip
/// (SQLite and MySQL; PostgreSQL numbers events at COMMIT): the
/// row stays locked from here to the commit, so the fewer round trips
/// between this and the commit, the more writes per second the feed lets
/// through (BENCHMARKS.md). SQLite returns the new value with `RETURNING`;
/// MySQL has no `UPDATE … RETURNING`, but `LAST_INSERT_ID(expr)` puts the
/// value in the statement's OK packet.
async fn next_revision<C: ConnectionTrait>(c: &C) -> Result<i64, DbErr> {
    let backend = c.get_database_backend();
    let missing = || DbErr::RecordNotFound("registry_revision row 1".into());
    match backend {
        sea_orm::DatabaseBackend::MySql => {
            let res = c
                .execute_raw(Statement::from_string(
                    backend,
                    "UPDATE registry_revision SET revision = LAST_INSERT_ID(revision + 1) WHERE id = 1",
                ))
                .await?;
            if res.rows_affected() != 1 {
                return Err(missing());
            }
            i64::try_from(res.last_insert_id())
                .map_err(|_| DbErr::Custom("registry revision out of range".into()))
        }
        _ => {
            let row = c
                .query_one_raw(Statement::from_string(
                    backend,
                    "UPDATE registry_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
                ))
                .await?
                .ok_or_else(missing)?;
            row.try_get::<i64>("", "revision")
        }
    }
}

fn to_event(m: registry_event::Model) -> Result<RegistryEvent> {
    let corrupt = || Error::Internal(format!("change feed event {} is unreadable", m.revision));
    let kind = EventKind::parse(&m.kind).ok_or_else(corrupt)?;
    let (registry, previous_scope) = serde_json::from_str::<Snapshot>(&m.snapshot)
        .ok()
        .and_then(Snapshot::into_record)
        .ok_or_else(corrupt)?;
    Ok(RegistryEvent {
        revision: m.revision,
        time_us: m.time_us,
        kind,
        actor: m.actor,
        changed: if m.changed.is_empty() {
            Vec::new()
        } else {
            m.changed.split(',').map(str::to_owned).collect()
        },
        previous_default: m.previous_default,
        previous_scope,
        registry,
    })
}

impl Store {
    /// The feed's newest revision and pruning horizon.
    pub async fn feed_position(&self) -> Result<FeedPosition> {
        let row = registry_revision::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::Internal("the registry_revision row is missing".into()))?;
        Ok(FeedPosition {
            revision: row.revision,
            compacted: row.compacted,
        })
    }

    /// Up to `limit` events after `after`, oldest first.
    pub async fn events_after(&self, after: i64, limit: u64) -> Result<Vec<RegistryEvent>> {
        registry_event::Entity::find()
            .filter(registry_event::Column::Revision.gt(after))
            .order_by_asc(registry_event::Column::Revision)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_event)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in [
            EventKind::Created,
            EventKind::Updated,
            EventKind::TlsChanged,
            EventKind::Deleted,
            EventKind::DefaultChanged,
        ] {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("renamed"), None);
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("åäö", 2), "åä");
        assert_eq!(clip("ab", 5), "ab");
    }
}
