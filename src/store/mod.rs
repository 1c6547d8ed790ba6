//! Storage: the only module that talks to the database. The rest of berth
//! calls the methods of [`Store`] with domain values and gets domain values
//! back; secrets are sealed here, on their way in.
//!
//! Writes run in explicit transactions and are retried a few times when the
//! database reports a deadlock or serialization failure (InnoDB can pick a
//! victim under concurrent upserts), so callers never see those.

pub mod audit;
pub mod cache;
pub mod entity;
pub mod events;
pub mod migration;
mod rotate;
mod rows;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseBackend,
    DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    SqlErr, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::domain::{Changes, RegistrySpec, Scope, SecretChange};
use crate::error::{Error, Result};
use crate::secret::{KeyError, Keyring, Secret};
pub use audit::{Actor, AuditEntry, AuditQuery, AuditRecord};
pub use cache::Secrets;
use entity::{default_registry, registry, registry_project};
pub use events::{EventKind, FeedPosition, FeedSettings, RegistryEvent};
pub use rotate::{KeyStatus, Rotation};
pub use rows::RegistryRecord;

/// Filters and paging for [`Store::list`].
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    /// Only registries whose scope includes this project.
    pub project: Option<String>,
    /// Only this provider.
    pub provider: Option<crate::domain::Provider>,
    /// Page size (already clamped by the caller).
    pub limit: u64,
    /// Return registries with ids after this one.
    pub after_id: Option<String>,
    /// Only registries visible to these projects (all-projects
    /// registries, or those listing one of them); `None` for all.
    pub visible_to: Option<Vec<String>>,
}

/// The database, plus the keyring that seals secrets for it.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Seals with the active key, opens with the key a row names.
    cipher: Arc<Keyring>,
    feed: FeedSettings,
    cache: Arc<cache::RegistryCache>,
    audit: audit::Writer,
}

const WRITE_ATTEMPTS: usize = 8;

/// Switches a SQLite file to WAL (a property of the file, kept across
/// restarts). The switch needs an exclusive lock that SQLite does not wait
/// for with `busy_timeout`, so processes opening one new file together
/// (replicas in a test, `berth migrate` beside a starting server) can get
/// SQLITE_BUSY here; they retry for up to ten seconds.
/// Returns whether the database is now in WAL mode (an in-memory database
/// keeps its memory journal).
async fn sqlite_wal(db: &DatabaseConnection) -> Result<bool, DbErr> {
    use sea_orm::Statement;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_millis(10);
    loop {
        let attempt = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA journal_mode = WAL",
            ))
            .await;
        match attempt {
            Ok(row) => {
                let mode = match row {
                    Some(r) => r.try_get_by_index::<String>(0)?,
                    None => String::new(),
                };
                return Ok(mode.eq_ignore_ascii_case("wal"));
            }
            Err(e) if sqlite_busy(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

/// How often the SQLite WAL is checkpointed in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL frames (pages) after which a commit checkpoints by itself: only a
/// fallback for when the background checkpointer cannot keep up (at
/// 4 KiB pages, about 40 MiB of WAL).
const SQLITE_AUTOCHECKPOINT: &str = "10000";

/// Checkpoints a SQLite database's WAL from a connection of its own.
///
/// By default SQLite checkpoints inside the commit that grows the WAL past
/// 1,000 pages, and with `synchronous=NORMAL` a checkpoint is the one place
/// that fsyncs: twice (the WAL, then the database). On berth's single
/// connection that stalled every transaction and every waiting audit
/// record behind the fsyncs, about 35 times a second under GetCredentials
/// load (BENCHMARKS.md). A PASSIVE checkpoint takes no write lock, so run
/// from a second connection it copies the WAL back while the first one
/// keeps committing; the commits' own threshold is raised to
/// [`SQLITE_AUTOCHECKPOINT`] so they only checkpoint if this one falls
/// behind. The task ends when the pool is closed or the runtime stops.
fn start_sqlite_checkpointer(db: &DatabaseConnection) {
    use sea_orm::sqlx::{Connection as _, sqlite::SqliteConnection};
    let pool = db.get_sqlite_connection_pool().clone();
    tokio::spawn(async move {
        let mut conn: Option<SqliteConnection> = None;
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !pool.is_closed() {
            tick.tick().await;
            if conn.is_none() {
                match SqliteConnection::connect_with(&pool.connect_options()).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "SQLite checkpointer: cannot connect");
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            if let Err(e) = sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut *c)
                .await
            {
                // Reconnect at the next tick; meanwhile commits fall back
                // to checkpointing by themselves.
                tracing::warn!(error = %e, "SQLite checkpoint failed");
                conn = None;
            }
        }
    });
}

/// `s` cut to at most `max` characters (columns are sized in characters).
fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn sqlite_busy(e: &DbErr) -> bool {
    e.to_string().contains("database is locked")
}

impl Store {
    /// Connects to `url` (`sqlite://…`, `postgres://…`, `mysql://…`)
    /// with the default feed settings.
    pub async fn connect(url: &str, cipher: Arc<Keyring>) -> Result<Store, DbErr> {
        Store::connect_with(url, cipher, FeedSettings::default()).await
    }

    /// Connects to `url`, keeping `feed.retention` change-feed events for
    /// resuming watchers.
    pub async fn connect_with(
        url: &str,
        cipher: Arc<Keyring>,
        feed: FeedSettings,
    ) -> Result<Store, DbErr> {
        let mut opts = ConnectOptions::new(url.to_owned());
        // sqlx logs every statement at INFO; berth logs its own spans.
        opts.sqlx_logging(false)
            // While the database is away, calls fail fast with UNAVAILABLE
            // instead of piling up behind the pool.
            .connect_timeout(Duration::from_secs(3))
            .acquire_timeout(Duration::from_secs(3));
        if url.starts_with("sqlite:") {
            // One connection: SQLite has one writer anyway, and a single
            // connection means no SQLITE_BUSY between our own transactions.
            opts.max_connections(1).min_connections(1);
            // The connection is in this process: nothing to test before
            // handing it out (sqlx pings on every acquire by default, one
            // extra trip to its worker thread per statement or transaction).
            opts.test_before_acquire(false);
            // Per-connection settings go in the connect options, so a
            // connection the pool re-opens later has them too.
            //
            // synchronous=NORMAL: in WAL mode a commit is written to the WAL
            // but not fsynced; a process crash loses nothing, a power loss
            // may lose the last commits, the database stays consistent.
            // SQLite's own advice for WAL, and what keeps a commit (the
            // audit record of every GetCredentials) off the disk's fsync
            // latency. Production runs PostgreSQL or MySQL, whose own
            // settings decide their durability.
            opts.map_sqlx_sqlite_opts(|o| {
                o.foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    // See start_sqlite_checkpointer.
                    .pragma("wal_autocheckpoint", SQLITE_AUTOCHECKPOINT)
            });
        } else {
            opts.max_connections(16).min_connections(1);
            // sqlx pings a connection every time it leaves the pool: one
            // round trip more per transaction, and per audit batch (about
            // a third of the statements of a write, BENCHMARKS.md). Only
            // connections idle for a while are tested now (a server restart
            // or a firewall may have dropped them); a busy connection that
            // broke fails its statement, which is UNAVAILABLE, and is closed.
            opts.test_before_acquire_if_idle_for(Duration::from_secs(5));
            // PostgreSQL prunes the feed in its commit trigger (migration
            // 000007), which reads the retention from this setting.
            let retention = feed.retention.max(1).to_string();
            opts.map_sqlx_postgres_opts(move |o| {
                o.options([("berth.feed_retention", retention.as_str())])
            });
        }
        let db = Database::connect(opts).await?;
        // A SQLite file in WAL mode gets its background checkpointer and
        // an audit connection of its own; an in-memory database (shared
        // cache, no WAL, where a second connection would meet table locks
        // that busy_timeout does not wait for) keeps everything on the
        // pool's one connection.
        let sqlite_file =
            db.get_database_backend() == DatabaseBackend::Sqlite && sqlite_wal(&db).await?;
        if sqlite_file {
            start_sqlite_checkpointer(&db);
        }
        Ok(Store {
            cipher,
            feed,
            cache: Arc::new(cache::RegistryCache::default()),
            audit: audit::start_writer(
                db.clone(),
                if db.get_database_backend() == DatabaseBackend::MySql {
                    audit::BATCH
                } else {
                    audit::JSON_BATCH
                },
                sqlite_file,
            ),
            db,
        })
    }

    /// Applies pending migrations (idempotent).
    ///
    /// Replicas starting together on one PostgreSQL or MySQL database take
    /// turns: a database-wide lock is held (on a connection of its own,
    /// inside a transaction that only holds it) while one replica migrates,
    /// and the others then find nothing to do. SQLite has no such lock: a
    /// process that loses a race on the same file retries instead.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        use sea_orm::Statement;
        let backend = self.db.get_database_backend();
        let lock = match backend {
            DatabaseBackend::Postgres => {
                let txn = self.db.begin().await?;
                // Any constant works; this one spells "berth".
                txn.execute_raw(Statement::from_string(
                    backend,
                    "SELECT pg_advisory_xact_lock(6451154260)",
                ))
                .await?;
                Some(txn)
            }
            DatabaseBackend::MySql => {
                let txn = self.db.begin().await?;
                txn.execute_raw(Statement::from_string(
                    backend,
                    "SELECT GET_LOCK('berth_migrations', 300)",
                ))
                .await?;
                Some(txn)
            }
            _ => None,
        };
        let mut result = migration::Migrator::up(&self.db, None).await;
        let mut attempts = 1;
        while result.is_err() && backend == DatabaseBackend::Sqlite && attempts < 8 {
            // Another process on the same file won a race (SQLite has no
            // cross-process lock to take first; each step is idempotent):
            // its work is ours now, look again for what is left.
            tracing::debug!(attempts, "migration raced another process; retrying");
            tokio::time::sleep(Duration::from_millis(20 * attempts)).await;
            result = migration::Migrator::up(&self.db, None).await;
            attempts += 1;
        }
        if let Some(txn) = lock {
            if backend == DatabaseBackend::MySql {
                txn.execute_raw(Statement::from_string(
                    backend,
                    "SELECT RELEASE_LOCK('berth_migrations')",
                ))
                .await?;
            }
            txn.commit().await?;
        }
        result
    }

    /// Pool size and idle connections, for metrics.
    pub fn pool_stats(&self) -> Option<(u32, usize)> {
        match self.db.get_database_backend() {
            DatabaseBackend::Postgres => {
                let p = self.db.get_postgres_connection_pool();
                Some((p.size(), p.num_idle()))
            }
            DatabaseBackend::MySql => {
                let p = self.db.get_mysql_connection_pool();
                Some((p.size(), p.num_idle()))
            }
            DatabaseBackend::Sqlite => {
                let p = self.db.get_sqlite_connection_pool();
                Some((p.size(), p.num_idle()))
            }
            _ => None,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    /// Starts a transaction that will write. On SQLite it is IMMEDIATE: it
    /// takes the write lock at BEGIN (waiting for it under
    /// `busy_timeout`), because another connection may write to the same
    /// file (the audit writer's own connection, `berth rotate-key`), and a
    /// deferred transaction that read first and then wants to write after
    /// such a write fails at once instead of waiting. Other databases
    /// ignore the mode.
    pub(crate) async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, DbErr> {
        self.db
            .begin_with_options(sea_orm::TransactionOptions {
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                ..sea_orm::TransactionOptions::default()
            })
            .await
    }

    /// The underlying connection (tests read rows directly through it).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Creates a registry. It becomes the default when `make_default` is
    /// set or when no default exists yet.
    pub async fn create(
        &self,
        spec: &RegistrySpec,
        secret: Option<&Secret>,
        proxy_password: Option<&Secret>,
        make_default: bool,
        actor: &Actor,
    ) -> Result<RegistryRecord> {
        let id = uuid::Uuid::now_v7().to_string();
        let audit = actor.entry(
            "registry.create",
            &id,
            format!(
                "provider={} address={} namespace={} scope={}{}{}{}",
                spec.provider,
                spec.address,
                spec.namespace,
                describe_scope(&spec.scope),
                if make_default { " default" } else { "" },
                spec.proxy
                    .as_ref()
                    .map(|p| format!(" proxy={}", p.url))
                    .unwrap_or_default(),
                if spec.budget.is_unlimited() {
                    String::new()
                } else {
                    format!(
                        " budget={}rps/{}",
                        spec.budget.requests_per_second(),
                        spec.budget.max_concurrent
                    )
                }
            ),
        );
        let actor = actor.name.as_str();
        let now = now_us();
        let sealed = match secret {
            Some(s) => Some(self.cipher.seal(s, &id).map_err(internal)?),
            None => None,
        };
        let sealed_proxy_password = match proxy_password {
            Some(p) => Some(
                self.cipher
                    .seal(p, &rows::proxy_password_context(&id))
                    .map_err(internal)?,
            ),
            None => None,
        };
        let row = rows::to_active(
            &id,
            spec,
            sealed.as_ref(),
            sealed_proxy_password.as_ref(),
            now,
            now,
            actor,
            1,
        );
        retry(|| async {
            // Only a create that replaces the default needs the previous
            // default, read under the feed lock (see events::lock); the
            // others stay concurrent until they append their event.
            let txn = self.begin_write().await?;
            if make_default {
                events::lock(&txn).await?;
            }
            registry::Entity::insert(row.clone())
                .exec_without_returning(&txn)
                .await
                .map_err(|e| conflict(e, spec))?;
            insert_projects(&txn, &id, &spec.scope).await?;
            audit::insert(&txn, &audit, now).await?;
            let (is_default, previous_default) = if make_default {
                let previous = default_id(&txn).await?;
                upsert_default(&txn, &id, actor, now).await?;
                (true, previous)
            } else {
                // The first registry becomes the default; later ones leave
                // the existing default alone. If ours went in, there was
                // none before.
                let inserted = default_registry::Entity::insert(default_row(&id, actor, now))
                    .on_conflict_do_nothing_on([default_registry::Column::Id])
                    .exec_without_returning(&txn)
                    .await?;
                let ours = if txn.get_database_backend() == sea_orm::DatabaseBackend::MySql {
                    // MySQL's "do nothing" is an update to the same value,
                    // and sqlx connects with CLIENT_FOUND_ROWS: a conflict
                    // also counts one row. Read the row instead.
                    default_id(&txn).await?.as_deref() == Some(id.as_str())
                } else {
                    matches!(inserted, sea_orm::TryInsertResult::Inserted(1))
                };
                (ours, None)
            };
            // What a read would return, without reading it back.
            let rec = RegistryRecord {
                id: id.clone(),
                spec: spec.clone(),
                has_secret: sealed.is_some(),
                has_proxy_password: sealed_proxy_password.is_some(),
                is_default,
                create_time_us: now,
                update_time_us: now,
                updated_by: actor.to_owned(),
                revision: 1,
            };
            self.event(&txn, EventKind::Created, actor, Vec::new(), None, &rec, now)
                .await?;
            if rec.is_default && previous_default.as_deref() != Some(id.as_str()) {
                self.event(
                    &txn,
                    EventKind::DefaultChanged,
                    actor,
                    Vec::new(),
                    previous_default,
                    &rec,
                    now,
                )
                .await?;
            }
            txn.commit().await?;
            Ok(rec)
        })
        .await
        .inspect(|rec| self.cache.invalidate(&rec.id, rec.is_default))
    }

    /// Reads one registry with its secrets (registry secret and proxy
    /// password), decrypted. Only the credential and image paths call
    /// this; it is served from the cache (see `cache.rs`) when it can be.
    pub async fn get_with_secret(&self, id: &str) -> Result<(RegistryRecord, Secrets)> {
        if let Some(hit) = self.cache.get(id) {
            metrics::counter!("berth_registry_cache_total", "result" => "hit").increment(1);
            return Ok(hit);
        }
        metrics::counter!("berth_registry_cache_total", "result" => "miss").increment(1);
        let generation = self.cache.generation();
        let (record, secrets) = self.load_with_secret(id).await?;
        self.cache.put(generation, &record, &secrets);
        Ok((record, secrets))
    }

    /// A registry changed (reported by the change feed): drop what the
    /// cache holds of it, and of the default when that may have moved.
    pub fn invalidate_cached(&self, id: &str, default_moved: bool) {
        self.cache.invalidate(id, default_moved);
    }

    /// Drops the whole cache.
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    async fn load_with_secret(&self, id: &str) -> Result<(RegistryRecord, Secrets)> {
        let row = registry::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| not_found(id))?;
        let secret =
            self.open_column(&row.secret_ciphertext, &row.secret_key_id, id, id, "secret")?;
        let proxy_password = self.open_column(
            &row.proxy_password_ciphertext,
            &row.proxy_password_key_id,
            &rows::proxy_password_context(id),
            id,
            "proxy password",
        )?;
        let mut recs = self.assemble(&self.db, vec![row]).await?;
        let rec = recs.pop().ok_or_else(|| not_found(id))?;
        Ok((
            rec,
            Secrets {
                secret,
                proxy_password,
            },
        ))
    }

    /// Opens one sealed column of registry `id` (`what` names it in the
    /// error), bound to `context`; `None` when nothing is stored.
    fn open_column(
        &self,
        ciphertext: &Option<Vec<u8>>,
        key_id: &Option<String>,
        context: &str,
        id: &str,
        what: &str,
    ) -> Result<Option<Secret>> {
        let (Some(bytes), Some(key_id)) = (ciphertext, key_id) else {
            return Ok(None);
        };
        let sealed = crate::secret::Sealed {
            key_id: key_id.clone(),
            bytes: bytes.clone(),
        };
        self.cipher.open(&sealed, context).map(Some).map_err(|e| {
            tracing::error!(id, error = %e, "stored {what} cannot be opened");
            Error::FailedPrecondition(format!(
                "the stored {what} of registry {id} cannot be decrypted: {e}"
            ))
        })
    }

    /// Reads one registry.
    pub async fn get(&self, id: &str) -> Result<RegistryRecord> {
        self.find(&self.db, id).await?.ok_or_else(|| not_found(id))
    }

    async fn find<C: ConnectionTrait>(&self, c: &C, id: &str) -> Result<Option<RegistryRecord>> {
        // The default's id comes along as a column, and on PostgreSQL and
        // SQLite the scope's project keys too (aggregated; keys cannot hold
        // a comma): one statement where assemble needs three. MySQL's
        // GROUP_CONCAT is cut at 1 KB by default, so there the keys are a
        // second query. For reads without a lock only: a locking read would
        // lock the default row on MySQL too.
        let aggregate = match c.get_database_backend() {
            DatabaseBackend::Postgres => Some("string_agg"),
            DatabaseBackend::Sqlite => Some("group_concat"),
            _ => None,
        };
        let mut select = registry::Entity::find_by_id(id.to_owned()).expr_as(
            Expr::cust("(SELECT registry_id FROM default_registry WHERE id = 1)"),
            "berth_default_id",
        );
        select = select.expr_as(
            Expr::cust(match aggregate {
                Some(f) => format!(
                    "(SELECT {f}(project, ',') FROM registry_projects \
                     WHERE registry_id = registries.id)"
                ),
                None => "CAST(NULL AS CHAR)".to_owned(),
            }),
            "berth_projects",
        );
        let Some(found) = select.into_model::<WithDefault>().one(c).await? else {
            return Ok(None);
        };
        let projects = if found.row.all_projects {
            Vec::new()
        } else {
            let mut keys: Vec<String> = match (aggregate, found.projects) {
                (Some(_), Some(joined)) => joined.split(',').map(str::to_owned).collect(),
                (Some(_), None) => Vec::new(),
                (None, _) => registry_project::Entity::find()
                    .filter(registry_project::Column::RegistryId.eq(id))
                    .all(c)
                    .await?
                    .into_iter()
                    .map(|p| p.project)
                    .collect(),
            };
            // Byte order, whatever the database's collation (as assemble).
            keys.sort();
            keys
        };
        let is_default = found.default_id.as_deref() == Some(id);
        rows::to_record(found.row, projects, is_default).map(Some)
    }

    /// Lists registries in id (= creation) order.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<RegistryRecord>> {
        let mut sel = registry::Entity::find().order_by_asc(registry::Column::Id);
        if let Some(after) = &q.after_id {
            sel = sel.filter(registry::Column::Id.gt(after.clone()));
        }
        if let Some(p) = q.provider {
            sel = sel.filter(registry::Column::Provider.eq(p.as_str()));
        }
        if let Some(project) = &q.project {
            sel = sel.filter(serving([project.clone()]));
        }
        if let Some(projects) = &q.visible_to {
            sel = sel.filter(serving(projects.clone()));
        }
        let rows = sel.limit(q.limit).all(&self.db).await?;
        self.assemble(&self.db, rows).await
    }

    /// Applies `apply` to the current registry and writes the result,
    /// atomically: the write only lands if the revision read is still
    /// current. With `expected_revision` (from an etag) a mismatch is
    /// ABORTED; without, a concurrent change makes us re-read and re-apply.
    pub async fn update<F>(
        &self,
        id: &str,
        expected_revision: Option<i64>,
        actor: &Actor,
        apply: F,
    ) -> Result<RegistryRecord>
    where
        F: Fn(&RegistryRecord) -> Result<(RegistrySpec, Changes)>,
    {
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.get(id).await?;
            if let Some(want) = expected_revision
                && want != current.revision
            {
                return Err(stale(id));
            }
            let (spec, changes) = apply(&current)?;
            let change = &changes.secret;
            let audit = actor.entry(
                "registry.update",
                id,
                describe_update(&current.spec, &spec, &changes),
            );
            let sealed = match change {
                SecretChange::Set(s) => Some(self.cipher.seal(s, id).map_err(internal)?),
                _ => None,
            };
            let sealed_proxy_password = match &changes.proxy_password {
                SecretChange::Set(p) => Some(
                    self.cipher
                        .seal(p, &rows::proxy_password_context(id))
                        .map_err(internal)?,
                ),
                _ => None,
            };
            let update_time_us = now_us().max(current.update_time_us);
            let mut row = rows::to_active(
                id,
                &spec,
                sealed.as_ref(),
                sealed_proxy_password.as_ref(),
                current.create_time_us,
                update_time_us,
                &actor.name,
                current.revision + 1,
            );
            // What a read would return after the write, without reading it
            // back (the write only lands on the revision `current` was read
            // at, so everything not written here is as read).
            let rec = RegistryRecord {
                id: id.to_owned(),
                spec: spec.clone(),
                has_secret: change.stored_after(current.has_secret),
                has_proxy_password: changes
                    .proxy_password
                    .stored_after(current.has_proxy_password),
                is_default: current.is_default,
                create_time_us: current.create_time_us,
                update_time_us,
                updated_by: actor.name.clone(),
                revision: current.revision + 1,
            };
            if matches!(change, SecretChange::Keep) {
                row.secret_ciphertext = sea_orm::ActiveValue::NotSet;
                row.secret_key_id = sea_orm::ActiveValue::NotSet;
            }
            if matches!(changes.proxy_password, SecretChange::Keep) {
                row.proxy_password_ciphertext = sea_orm::ActiveValue::NotSet;
                row.proxy_password_key_id = sea_orm::ActiveValue::NotSet;
            }
            let done = retry(|| async {
                let txn = self.begin_write().await?;
                let res = registry::Entity::update_many()
                    .set(row.clone())
                    .filter(registry::Column::Id.eq(id))
                    .filter(registry::Column::Revision.eq(current.revision))
                    .exec(&txn)
                    .await
                    .map_err(|e| conflict(e, &spec))?;
                if res.rows_affected == 0 {
                    return Ok(None);
                }
                if spec.scope != current.spec.scope {
                    registry_project::Entity::delete_many()
                        .filter(registry_project::Column::RegistryId.eq(id))
                        .exec(&txn)
                        .await?;
                    insert_projects(&txn, id, &spec.scope).await?;
                }
                let now = now_us();
                audit::insert(&txn, &audit, now).await?;
                let changed = changed_fields(&current.spec, &spec, &changes);
                let kind = if changed.iter().any(|f| f.starts_with("tls")) {
                    EventKind::TlsChanged
                } else {
                    EventKind::Updated
                };
                let previous_scope =
                    (spec.scope != current.spec.scope).then_some(&current.spec.scope);
                events::append(
                    &txn,
                    events::NewEvent {
                        kind,
                        actor: &actor.name,
                        changed,
                        previous_default: None,
                        previous_scope,
                        registry: &rec,
                    },
                    now,
                    self.feed,
                )
                .await?;
                txn.commit().await?;
                Ok(Some(rec.clone()))
            })
            .await?;
            if let Some(rec) = done {
                self.cache.invalidate(id, false);
                return Ok(rec);
            }
            if expected_revision.is_some() {
                return Err(stale(id));
            }
        }
        Err(Error::Aborted(format!(
            "registry {id} is being changed concurrently; retry"
        )))
    }

    /// Deletes a registry (and its scope rows and default mark).
    /// A registry with current uses (RecordRegistryUsage) is
    /// FAILED_PRECONDITION unless `force`.
    /// `check` sees the registry as locked for the deletion and may refuse
    /// it (NOT_FOUND for a registry the caller may not see,
    /// PERMISSION_DENIED), so the caller need not read it first.
    pub async fn delete<F>(
        &self,
        id: &str,
        expected_revision: Option<i64>,
        force: bool,
        actor: &Actor,
        check: F,
    ) -> Result<()>
    where
        F: Fn(&RegistryRecord) -> Result<()>,
    {
        let audit = actor.entry("registry.delete", id, String::new());
        retry(|| async {
            // Removing the default takes the feed lock before the row, in
            // the order set-default takes them. Whether this is the default
            // is known only once the row is read: when it is, start again
            // with the feed lock first (deleting the default is rare; the
            // others save the extra statement).
            let mut feed_first = false;
            loop {
                let txn = self.begin_write().await?;
                if feed_first {
                    events::lock(&txn).await?;
                }
                // Lock the row, then read its uses: a use recorded
                // concurrently has either committed (and is seen) or waits
                // on the row and fails once it is gone. The row read is the
                // last state, for the deletion's event.
                let Some(row) = usage::lock_registry(&txn, id).await? else {
                    txn.rollback().await?;
                    return Err(TxError::Domain(not_found(id)));
                };
                let Some(last) = self.assemble(&txn, vec![row]).await?.pop() else {
                    txn.rollback().await?;
                    return Err(TxError::Domain(not_found(id)));
                };
                if last.is_default && !feed_first {
                    txn.rollback().await?;
                    feed_first = true;
                    continue;
                }
                check(&last)?;
                if let Some(rev) = expected_revision
                    && rev != last.revision
                {
                    txn.rollback().await?;
                    return Err(TxError::Domain(stale(id)));
                }
                let recorded = usage::all_locked(&txn, id).await?;
                let now = now_us();
                let uses: Vec<_> = recorded
                    .iter()
                    .filter(|u| u.expire_time_us > now)
                    .cloned()
                    .collect();
                let mut entry = audit.clone();
                if !uses.is_empty() {
                    if !force {
                        return Err(TxError::Domain(usage::in_use(id, &uses)));
                    }
                    entry.detail = format!("force: was in use by {} user(s)", uses.len());
                }
                if !recorded.is_empty() {
                    usage::delete_all(&txn, id).await?;
                }
                if last.is_default {
                    default_registry::Entity::delete_many()
                        .filter(default_registry::Column::RegistryId.eq(id))
                        .exec(&txn)
                        .await?;
                }
                if !matches!(last.spec.scope, Scope::AllProjects) {
                    registry_project::Entity::delete_many()
                        .filter(registry_project::Column::RegistryId.eq(id))
                        .exec(&txn)
                        .await?;
                }
                // The row is locked and its revision checked: this deletes it.
                registry::Entity::delete_many()
                    .filter(registry::Column::Id.eq(id))
                    .exec(&txn)
                    .await?;
                audit::insert(&txn, &entry, now).await?;
                self.event(
                    &txn,
                    EventKind::Deleted,
                    &actor.name,
                    Vec::new(),
                    None,
                    &last,
                    now,
                )
                .await?;
                txn.commit().await?;
                return Ok(());
            }
        })
        .await?;
        self.cache.invalidate(id, true);
        Ok(())
    }

    /// Makes `id` the default, replacing the previous default in the same
    /// statement (the single row of `default_registry`).
    pub async fn set_default(&self, id: &str, actor: &Actor) -> Result<RegistryRecord> {
        let audit = actor.entry("registry.set_default", id, String::new());
        retry(|| async {
            let txn = self.begin_write().await?;
            events::lock(&txn).await?;
            if registry::Entity::find_by_id(id.to_owned())
                .one(&txn)
                .await?
                .is_none()
            {
                return Err(TxError::Domain(not_found(id)));
            }
            let previous = default_id(&txn).await?;
            upsert_default(&txn, id, &actor.name, now_us())
                .await
                .map_err(|e| match e.sql_err() {
                    // Deleted between our check and the upsert.
                    Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                        TxError::Domain(not_found(id))
                    }
                    _ => TxError::Db(e),
                })?;
            let now = now_us();
            audit::insert(&txn, &audit, now).await?;
            let rec = self.find(&txn, id).await?.ok_or_else(|| not_found(id))?;
            if previous.as_deref() != Some(id) {
                self.event(
                    &txn,
                    EventKind::DefaultChanged,
                    &actor.name,
                    Vec::new(),
                    previous,
                    &rec,
                    now,
                )
                .await?;
            }
            txn.commit().await?;
            Ok(rec)
        })
        .await
        .inspect(|_| self.cache.invalidate(id, true))
    }

    /// The default registry, if any.
    /// Served from the cache when it can be.
    pub async fn get_default(&self) -> Result<Option<RegistryRecord>> {
        let id = match self.cache.default_id() {
            Some(id) => id,
            None => {
                let generation = self.cache.generation();
                let id = default_id(&self.db).await?;
                self.cache.put_default(generation, id.clone());
                id
            }
        };
        let Some(id) = id else {
            return Ok(None);
        };
        match self.get_with_secret(&id).await {
            Ok((record, _)) => Ok(Some(record)),
            // Deleted since the default was read.
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Turns rows into records: loads scope rows and the default mark for
    /// the whole batch in two queries.
    async fn assemble<C: ConnectionTrait>(
        &self,
        c: &C,
        rows: Vec<registry::Model>,
    ) -> Result<Vec<RegistryRecord>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let listed: Vec<String> = rows
            .iter()
            .filter(|r| !r.all_projects)
            .map(|r| r.id.clone())
            .collect();
        let projects = if listed.is_empty() {
            Vec::new()
        } else {
            registry_project::Entity::find()
                .filter(registry_project::Column::RegistryId.is_in(listed))
                .order_by_asc(registry_project::Column::Project)
                .all(c)
                .await?
        };
        let default_id = default_registry::Entity::find_by_id(1)
            .one(c)
            .await?
            .map(|d| d.registry_id);
        rows.into_iter()
            .map(|r| {
                let mut keys: Vec<String> = projects
                    .iter()
                    .filter(|p| p.registry_id == r.id)
                    .map(|p| p.project.clone())
                    .collect();
                // Byte order, whatever the database's collation: scope
                // lookups binary-search the keys.
                keys.sort();
                let is_default = default_id.as_deref() == Some(r.id.as_str());
                rows::to_record(r, keys, is_default)
            })
            .collect()
    }
}

impl Store {
    /// Appends a change-feed event inside the change's transaction.
    #[allow(clippy::too_many_arguments)]
    async fn event<C: ConnectionTrait>(
        &self,
        c: &C,
        kind: EventKind,
        actor: &str,
        changed: Vec<String>,
        previous_default: Option<String>,
        registry: &RegistryRecord,
        now: i64,
    ) -> Result<(), DbErr> {
        events::append(
            c,
            events::NewEvent {
                kind,
                actor,
                changed,
                previous_default,
                previous_scope: None,
                registry,
            },
            now,
            self.feed,
        )
        .await
    }
}

/// A registry row with the default's id and (where aggregated) its
/// project keys, read in one statement.
struct WithDefault {
    row: registry::Model,
    default_id: Option<String>,
    projects: Option<String>,
}

impl sea_orm::FromQueryResult for WithDefault {
    fn from_query_result(res: &sea_orm::QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(WithDefault {
            row: registry::Model::from_query_result(res, pre)?,
            default_id: res.try_get(pre, "berth_default_id")?,
            // NULL on MySQL, which reads the keys separately.
            projects: res.try_get(pre, "berth_projects")?,
        })
    }
}

/// Registries serving any of `projects`: all-projects ones, or those
/// listing one of them (an indexed lookup in registry_projects).
fn serving(projects: impl IntoIterator<Item = String>) -> sea_orm::Condition {
    let listed = registry_project::Entity::find()
        .select_only()
        .column(registry_project::Column::RegistryId)
        .filter(registry_project::Column::Project.is_in(projects))
        .as_query()
        .to_owned();
    sea_orm::Condition::any()
        .add(registry::Column::AllProjects.eq(true))
        .add(registry::Column::Id.in_subquery(listed))
}

/// The current default's id, read inside a transaction.
async fn default_id<C: ConnectionTrait>(c: &C) -> Result<Option<String>, DbErr> {
    Ok(default_registry::Entity::find_by_id(1)
        .one(c)
        .await?
        .map(|d| d.registry_id))
}

async fn insert_projects<C: ConnectionTrait>(c: &C, id: &str, scope: &Scope) -> Result<(), DbErr> {
    if let Scope::Projects(keys) = scope {
        // Chunked: some backends cap bound parameters per statement.
        for chunk in keys.chunks(200) {
            let rows = chunk.iter().map(|k| registry_project::ActiveModel {
                registry_id: Set(id.to_owned()),
                project: Set(k.clone()),
            });
            registry_project::Entity::insert_many(rows)
                .exec_without_returning(c)
                .await?;
        }
    }
    Ok(())
}

/// Makes `id` the default: one upsert of the single `default_registry`
/// row, so concurrent calls serialise on that row and the last one wins.
async fn upsert_default<C: ConnectionTrait>(
    c: &C,
    id: &str,
    actor: &str,
    now: i64,
) -> Result<u64, DbErr> {
    default_registry::Entity::insert(default_row(id, actor, now))
        .on_conflict(
            OnConflict::column(default_registry::Column::Id)
                .update_columns([
                    default_registry::Column::RegistryId,
                    default_registry::Column::SetBy,
                    default_registry::Column::SetTimeUs,
                ])
                .to_owned(),
        )
        .exec_without_returning(c)
        .await
}

fn default_row(id: &str, actor: &str, now: i64) -> default_registry::ActiveModel {
    default_registry::ActiveModel {
        id: Set(1),
        registry_id: Set(id.to_owned()),
        set_by: Set(actor.to_owned()),
        set_time_us: Set(now),
    }
}

/// Runs a write transaction, retrying when the database aborted it to
/// resolve a deadlock or a serialization conflict.
async fn retry<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, TxError>>,
{
    let mut delay = Duration::from_millis(2);
    for attempt in 1..=WRITE_ATTEMPTS {
        match f().await {
            Ok(v) => return Ok(v),
            Err(TxError::Db(e)) if attempt < WRITE_ATTEMPTS && is_transient(&e) => {
                tracing::debug!(attempt, error = %e, "retrying transaction");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(TxError::Db(e)) => return Err(e.into()),
            Err(TxError::Domain(e)) => return Err(e),
        }
    }
    Err(Error::Unavailable("the database stayed busy; retry".into()))
}

/// Inside a transaction: a database error (maybe retryable) or a decided
/// domain error.
enum TxError {
    Db(DbErr),
    Domain(Error),
}

impl From<DbErr> for TxError {
    fn from(e: DbErr) -> Self {
        TxError::Db(e)
    }
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Domain(e)
    }
}

fn is_transient(e: &DbErr) -> bool {
    let s = e.to_string().to_ascii_lowercase();
    [
        "deadlock",
        "40001",
        "40p01",
        "could not serialize",
        "database is locked",
        "lock wait timeout",
    ]
    .iter()
    .any(|p| s.contains(p))
}

fn conflict(e: DbErr, spec: &RegistrySpec) -> TxError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            TxError::Domain(Error::AlreadyExists(format!(
                "a registry with address {} and namespace `{}` already exists",
                spec.address, spec.namespace
            )))
        }
        _ => TxError::Db(e),
    }
}

/// NOT_FOUND for registry `id`.
pub fn not_found(id: &str) -> Error {
    Error::NotFound(format!("registry {id} not found"))
}

fn stale(id: &str) -> Error {
    Error::Aborted(format!(
        "registry {id} was changed by someone else (etag mismatch); read it again and retry"
    ))
}

fn internal(e: KeyError) -> Error {
    Error::Internal(e.to_string())
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn describe_scope(scope: &Scope) -> String {
    match scope {
        Scope::AllProjects => "all-projects".into(),
        Scope::Projects(keys) => keys.join(","),
    }
}

/// The update-mask paths an update changed, for the change feed.
fn changed_fields(old: &RegistrySpec, new: &RegistrySpec, changes: &Changes) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |changed: bool, path: &str| {
        if changed {
            out.push(path.to_owned());
        }
    };
    note(old.provider != new.provider, "provider");
    note(old.address != new.address, "address");
    note(old.namespace != new.namespace, "namespace");
    note(old.region != new.region, "region");
    note(old.repository != new.repository, "repository");
    note(old.username != new.username, "username");
    note(!matches!(changes.secret, SecretChange::Keep), "secret");
    note(old.scope != new.scope, "scope");
    note(old.tls.verify != new.tls.verify, "tls.verify");
    note(
        old.tls.ca_cert_pem != new.tls.ca_cert_pem,
        "tls.ca_cert_pem",
    );
    note(
        old.credential_mode != new.credential_mode,
        "credential_mode",
    );
    note(old.instance_id != new.instance_id, "instance_id");
    let (op, np) = (old.proxy.as_ref(), new.proxy.as_ref());
    note(op.map(|p| &p.url) != np.map(|p| &p.url), "proxy.url");
    note(
        op.map(|p| &p.username) != np.map(|p| &p.username),
        "proxy.username",
    );
    note(
        !matches!(changes.proxy_password, SecretChange::Keep),
        "proxy.password",
    );
    note(
        op.map(|p| &p.no_proxy) != np.map(|p| &p.no_proxy),
        "proxy.no_proxy",
    );
    note(
        old.budget.micro_rps != new.budget.micro_rps,
        "budget.requests_per_second",
    );
    note(
        old.budget.max_concurrent != new.budget.max_concurrent,
        "budget.max_concurrent",
    );
    out
}

/// The fields an update changed, for the audit log (no values of secrets).
fn describe_update(old: &RegistrySpec, new: &RegistrySpec, changes: &Changes) -> String {
    let mut parts = Vec::new();
    if old.provider != new.provider {
        parts.push(format!("provider={}", new.provider));
    }
    if old.address != new.address {
        parts.push(format!("address={}", new.address));
    }
    if old.namespace != new.namespace {
        parts.push(format!("namespace={}", new.namespace));
    }
    if old.region != new.region {
        parts.push(format!("region={}", new.region));
    }
    if old.repository != new.repository {
        parts.push(format!("repository={}", new.repository));
    }
    if old.username != new.username {
        parts.push("username".into());
    }
    if old.scope != new.scope {
        parts.push(format!("scope={}", describe_scope(&new.scope)));
    }
    if old.tls.verify != new.tls.verify {
        parts.push(format!("tls.verify={}", new.tls.verify));
    }
    if old.tls.ca_cert_pem != new.tls.ca_cert_pem {
        parts.push("tls.ca_cert_pem".into());
    }
    if old.credential_mode != new.credential_mode {
        parts.push(format!("credential_mode={}", new.credential_mode));
    }
    if old.instance_id != new.instance_id {
        parts.push(format!("instance_id={}", new.instance_id));
    }
    if old.proxy != new.proxy {
        // The url only: the username and no-proxy list are not secret,
        // but the audit line names what changed, not every value.
        match &new.proxy {
            Some(p) => parts.push(format!("proxy={}", p.url)),
            None => parts.push("proxy removed".into()),
        }
    }
    if old.budget != new.budget {
        parts.push(format!(
            "budget={}rps/{}",
            new.budget.requests_per_second(),
            new.budget.max_concurrent
        ));
    }
    match &changes.secret {
        SecretChange::Keep => {}
        SecretChange::Clear => parts.push("secret cleared".into()),
        SecretChange::Set(_) => parts.push("secret replaced".into()),
    }
    match &changes.proxy_password {
        SecretChange::Keep => {}
        SecretChange::Clear => parts.push("proxy password cleared".into()),
        SecretChange::Set(_) => parts.push("proxy password replaced".into()),
    }
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join(" ")
    }
}
