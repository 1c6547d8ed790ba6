//! The audit log: entries written beside the change they record (same
//! transaction), and the listing behind ListAuditEvents.

use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, RuntimeErr, Statement, Value,
};

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use super::entity::audit_event;
use super::{Store, clip};
use crate::error::Result;

/// An event to record. Holds no secret: callers build it from ids, names
/// and outcomes only.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// Who acted.
    pub actor: String,
    /// What was done (`registry.create`, `credentials.issue`, …).
    pub action: &'static str,
    /// The registry acted on.
    pub registry_id: Option<String>,
    /// The project named by the caller.
    pub project: Option<String>,
    /// `ok`, `granted`, `denied` or `failed`.
    pub outcome: &'static str,
    /// The RPC's request id.
    pub request_id: String,
    /// Details without secrets.
    pub detail: String,
}

/// Who made a change and in which request: what the store needs to write
/// the audit entry of a change.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The caller's identity (also `updated_by`).
    pub name: String,
    /// The RPC's request id.
    pub request_id: String,
}

impl Actor {
    /// An entry of `action` on `registry_id` by this actor.
    pub fn entry(&self, action: &'static str, registry_id: &str, detail: String) -> AuditEntry {
        AuditEntry {
            actor: self.name.clone(),
            action,
            registry_id: Some(registry_id.to_owned()),
            project: None,
            outcome: "ok",
            request_id: self.request_id.clone(),
            detail,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Increasing id.
    pub id: i64,
    /// When (µs since the epoch).
    pub time_us: i64,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// The registry, if any.
    pub registry_id: Option<String>,
    /// The project, if any.
    pub project: Option<String>,
    /// The outcome.
    pub outcome: String,
    /// The request id.
    pub request_id: String,
    /// Details.
    pub detail: String,
}

/// Filters and paging of [`Store::list_audit`].
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this registry.
    pub registry_id: Option<String>,
    /// Only this project.
    pub project: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// At or after (µs).
    pub start_us: Option<i64>,
    /// Before (µs).
    pub end_us: Option<i64>,
    /// Only ids below this one (paging backwards in time).
    pub before_id: Option<i64>,
    /// Page size (already clamped).
    pub limit: u64,
}

/// Writes `e` on `c` (a transaction, when it records a change).
pub(super) async fn insert<C: ConnectionTrait>(
    c: &C,
    e: &AuditEntry,
    now_us: i64,
) -> Result<(), DbErr> {
    audit_event::Entity::insert(row(e, now_us))
        .exec_without_returning(c)
        .await?;
    Ok(())
}

fn row(e: &AuditEntry, now_us: i64) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: NotSet,
        time_us: Set(now_us),
        actor: Set(clip(&e.actor, 256).to_owned()),
        action: Set(e.action.to_owned()),
        registry_id: Set(e.registry_id.as_deref().map(|s| clip(s, 36).to_owned())),
        project: Set(e.project.as_deref().map(|s| clip(s, 64).to_owned())),
        outcome: Set(e.outcome.to_owned()),
        request_id: Set(clip(&e.request_id, 128).to_owned()),
        detail: Set(clip(&e.detail, 1024).to_owned()),
    }
}

/// The columns of one row, in the order of the batch statements below.
type JsonRow<'a> = (
    i64,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    &'a str,
    &'a str,
);

/// A batch as one JSON array of rows: one bound parameter for the whole
/// batch, expanded by the database (see [`insert_batch`]).
fn batch_json<'a>(entries: impl Iterator<Item = (&'a AuditEntry, i64)>) -> String {
    let rows: Vec<JsonRow<'a>> = entries
        .map(|(e, time_us)| {
            (
                time_us,
                clip(&e.actor, 256),
                e.action,
                e.registry_id.as_deref().map(|s| clip(s, 36)),
                e.project.as_deref().map(|s| clip(s, 64)),
                e.outcome,
                clip(&e.request_id, 128),
                clip(&e.detail, 1024),
            )
        })
        .collect();
    // Strings and integers only: serialising cannot fail.
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
}

/// The batch INSERT of SQLite and PostgreSQL: the rows arrive as one JSON
/// array and the database unpacks it, so the statement text is the same
/// for every batch (prepared once per connection) and binding is one
/// string, where a generated multi-row INSERT is rebuilt and bound value
/// by value for each batch (BENCHMARKS.md: building and binding it was
/// about 5% of berth's CPU under GetCredentials, now about 2%). Rows keep
/// the array's order, so ids follow it. Needs SQLite 3.45 (`jsonb_each`),
/// which sqlx bundles. MySQL keeps the generated INSERT: its JSON_TABLE needs MySQL 8 or
/// MariaDB 10.6.
const SQLITE_BATCH_INSERT: &str = "INSERT INTO audit_events \
    (time_us, actor, action, registry_id, project, outcome, request_id, detail) \
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
    value ->> 5, value ->> 6, value ->> 7 FROM jsonb_each(?) ORDER BY key";
/// See [`SQLITE_BATCH_INSERT`].
const POSTGRES_BATCH_INSERT: &str = "INSERT INTO audit_events \
    (time_us, actor, action, registry_id, project, outcome, request_id, detail) \
    SELECT (r ->> 0)::bigint, r ->> 1, r ->> 2, r ->> 3, r ->> 4, r ->> 5, r ->> 6, r ->> 7 \
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(r, n) ORDER BY n";

/// Where the writer writes.
enum Sink {
    /// Through the store's pool (PostgreSQL, MySQL, in-memory SQLite).
    Pool(DatabaseConnection),
    /// A SQLite file: a connection of the writer's own (rusqlite), opened
    /// on first use and again after an error.
    ///
    /// Through the store's pool every batch took two trips to the
    /// connection's sqlx worker thread (sqlx pings a connection on its way
    /// back) and queued behind every other use of the store. Through a sqlx
    /// connection of its own it still took one trip there and back: two
    /// thread hand-offs, and a wait for that thread's turn on cores the
    /// runtime and the clients keep busy, which under load was most of a
    /// batch's time (BENCHMARKS.md). So the batch is written right here, on
    /// the runtime thread running the writer: one INSERT in autocommit,
    /// tens of microseconds of CPU (`synchronous=NORMAL` in WAL: a commit
    /// writes the WAL, it does not fsync; checkpoints run on the
    /// checkpointer's connection). The connection never waits for a lock
    /// on this thread: its busy timeout is zero, and when a store
    /// transaction holds the write lock (`Store::begin_write`) the batch is
    /// retried on the blocking pool, waiting there as long as the store's
    /// connection would.
    Sqlite {
        path: std::path::PathBuf,
        conn: Option<rusqlite::Connection>,
    },
}

/// How long a batch waits for the write lock on SQLite, off the runtime
/// (the store's connection waits as long).
const SQLITE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn sqlite_error(e: rusqlite::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::Internal(format!("audit batch: {e}")))
}

/// Opens the audit writer's SQLite connection to `path` (the store's file,
/// already in WAL mode, which is a property of the file).
fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, DbErr> {
    use rusqlite::OpenFlags;
    let open = || {
        let c = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::ZERO)?;
        // Per-connection settings, as the store's connection has them.
        c.pragma_update(None, "synchronous", "NORMAL")?;
        c.pragma_update(None, "wal_autocheckpoint", super::SQLITE_AUTOCHECKPOINT)?;
        Ok(c)
    };
    open().map_err(|e: rusqlite::Error| {
        DbErr::Conn(RuntimeErr::Internal(format!("audit connection: {e}")))
    })
}

/// Inserts one JSON batch in autocommit (one transaction).
fn insert_json(c: &rusqlite::Connection, json: &str) -> rusqlite::Result<()> {
    c.prepare_cached(SQLITE_BATCH_INSERT)?
        .execute([json])
        .map(drop)
}

/// Most rows a batch may have to be written on the runtime thread; larger
/// ones (queued issuances with nobody waiting, `--audit-credentials
/// async`, up to [`JSON_BATCH`]) take a millisecond or more and go to the
/// blocking pool.
const SQLITE_INLINE_ROWS: usize = 64;

/// Inserts a batch on the blocking pool, waiting up to
/// [`SQLITE_LOCK_WAIT`] for the write lock. Gives the connection back,
/// unless its busy timeout could not be set back to zero.
async fn blocking_insert(
    c: rusqlite::Connection,
    json: String,
) -> Result<(Option<rusqlite::Connection>, rusqlite::Result<()>), DbErr> {
    tokio::task::spawn_blocking(move || {
        let written = c
            .busy_timeout(SQLITE_LOCK_WAIT)
            .and_then(|()| insert_json(&c, &json));
        let c = c
            .busy_timeout(std::time::Duration::ZERO)
            .is_ok()
            .then_some(c);
        (c, written)
    })
    .await
    .map_err(|e| DbErr::Custom(format!("audit batch: {e}")))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

impl Sink {
    /// `own_connection`: write a SQLite file through a connection of the
    /// writer's own.
    fn new(db: DatabaseConnection, own_connection: bool) -> Sink {
        if own_connection && db.get_database_backend() == DatabaseBackend::Sqlite {
            Sink::Sqlite {
                path: db
                    .get_sqlite_connection_pool()
                    .connect_options()
                    .get_filename()
                    .to_owned(),
                conn: None,
            }
        } else {
            Sink::Pool(db)
        }
    }

    /// Writes a batch of entries in one statement.
    async fn write(&mut self, batch: &[Pending]) -> Result<(), DbErr> {
        if entries(batch).next().is_none() {
            return Ok(());
        }
        match self {
            Sink::Pool(db) => insert_batch(db, batch).await,
            Sink::Sqlite { path, conn } => {
                let c = match conn.take() {
                    Some(c) => c,
                    None => open_sqlite(path)?,
                };
                let json = batch_json(entries(batch));
                let rows = entries(batch).count();
                let (c, written) = if rows > SQLITE_INLINE_ROWS {
                    blocking_insert(c, json).await?
                } else {
                    match insert_json(&c, &json) {
                        // A store transaction holds the write lock.
                        Err(e) if is_busy(&e) => blocking_insert(c, json).await?,
                        written => (Some(c), written),
                    }
                };
                match written {
                    Ok(()) => {
                        *conn = c;
                        Ok(())
                    }
                    // The connection is dropped: the next batch opens a
                    // fresh one.
                    Err(e) => Err(sqlite_error(e)),
                }
            }
        }
    }
}

/// A batch's entries (flush markers left out), each with its time.
fn entries(batch: &[Pending]) -> impl Iterator<Item = (&AuditEntry, i64)> {
    batch
        .iter()
        .filter_map(|p| p.entry.as_ref().map(|e| (e, p.time_us)))
}

/// Writes a batch of entries in one statement through `db`.
async fn insert_batch(db: &DatabaseConnection, batch: &[Pending]) -> Result<(), DbErr> {
    let entries = entries(batch);
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Sqlite => SQLITE_BATCH_INSERT,
        DatabaseBackend::Postgres => POSTGRES_BATCH_INSERT,
        _ => {
            let rows: Vec<_> = entries.map(|(e, t)| row(e, t)).collect();
            if rows.is_empty() {
                return Ok(());
            }
            return audit_event::Entity::insert_many(rows)
                .exec_without_returning(db)
                .await
                .map(drop);
        }
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [Value::from(batch_json(entries))],
    ))
    .await
    .map(drop)
}

/// An entry waiting for the writer, and who waits for it.
pub(super) struct Pending {
    /// `None`: a flush marker (answered once everything before it is
    /// stored).
    entry: Option<AuditEntry>,
    time_us: i64,
    /// Who waits until the entry is stored; `None` for a queued entry
    /// (nobody waits, a failure is only logged).
    done: Option<oneshot::Sender<Result<()>>>,
}

fn gone() -> crate::error::Error {
    crate::error::Error::Unavailable("the audit writer stopped".into())
}

/// Most entries per INSERT on MySQL, whose batches are a generated
/// multi-row INSERT (8 bound values a row). Such statements of several
/// hundred rows span TCP segments and met 40 ms delayed-ACK stalls on
/// PostgreSQL before its batches became one JSON value (BENCHMARKS.md).
pub(super) const BATCH: usize = 64;
/// Most entries per INSERT on SQLite and PostgreSQL, whose batches travel
/// as one JSON value: every commit rewrites the table's and each index's
/// last pages whatever the number of rows, and on PostgreSQL waits for a
/// log flush, so with nobody waiting (async audit) fewer, larger commits
/// are cheaper (on PostgreSQL 36k → 44k issuances/s).
pub(super) const JSON_BATCH: usize = 256;
/// How long the writer waits for more entries when nobody waits for the
/// ones it holds (`--audit-credentials async`): one commit then serves a
/// few milliseconds of issuances instead of whatever arrived during the
/// last one.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Most scheduling rounds a batch that callers wait for is held open.
const YIELDS: usize = 3;

/// How long the writer waits before it writes again after a failed batch
/// that still holds queued entries.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// Moves what is already queued into `batch`, up to `max` entries in all,
/// without waiting; how many were moved.
fn take_ready(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, max: usize) -> usize {
    let before = batch.len();
    while batch.len() < max {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
    batch.len() - before
}

/// The queue to the audit writer, and whether its last write succeeded.
#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<Pending>,
    healthy: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Starts the writer of standalone entries (credential issuances, refused
/// changes): group commit. Callers queue their entry and wait until it is
/// stored, so no credentials leave without their record; entries that
/// arrive while a batch is being written go together in the next one, so
/// under load one INSERT serves many calls instead of one each. A batch
/// of queued entries only (nobody waiting) is held up to [`LINGER`] to
/// grow towards `max` entries.
///
/// A failed write is answered to the callers waiting for it (their calls
/// fail, no credentials leave) and their entries are dropped with it.
/// Queued entries, whose calls have already been answered, are kept and
/// written again every [`RETRY_AFTER`] until the database takes them;
/// meanwhile the writer reports itself unhealthy and
/// [`Store::record_queued`] waits for its entry like [`Store::record`], so
/// while the log cannot be written no more credentials leave unrecorded.
pub(super) fn start_writer(db: DatabaseConnection, max: usize, own_connection: bool) -> Writer {
    use std::sync::atomic::Ordering;
    let (tx, mut rx) = mpsc::channel::<Pending>(4 * max);
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = Writer {
        tx,
        healthy: healthy.clone(),
    };
    tokio::spawn(async move {
        let mut sink = Sink::new(db, own_connection);
        let mut batch = Vec::with_capacity(max);
        // Queued entries of a failed batch, written first next time.
        let mut kept: Vec<Pending> = Vec::new();
        loop {
            if kept.is_empty() {
                if rx.recv_many(&mut batch, max).await == 0 {
                    break;
                }
            } else if rx.is_closed() && rx.is_empty() {
                // The store is gone: one last try.
                if let Err(e) = sink.write(&kept).await {
                    tracing::error!(
                        error = %e,
                        entries = kept.len(),
                        "queued audit records were lost: the store closed while the database refused them"
                    );
                }
                break;
            } else {
                tokio::time::sleep(RETRY_AFTER).await;
                batch.append(&mut kept);
                take_ready(&mut rx, &mut batch, max);
            }
            let mut waited = batch.iter().any(|p| p.done.is_some());
            if waited {
                // Someone waits: write soon, but first let the tasks that
                // are already runnable (calls on their way here) queue
                // their entries, a scheduling round at a time while more
                // arrive. Under load one commit then serves the calls of a
                // few rounds instead of the one or two that came during
                // the last commit, which on SQLite is now tens of
                // microseconds (BENCHMARKS.md); idle, a yield costs
                // nothing.
                for _ in 0..YIELDS {
                    if batch.len() >= max {
                        break;
                    }
                    tokio::task::yield_now().await;
                    if take_ready(&mut rx, &mut batch, max) == 0 {
                        break;
                    }
                }
            }
            let deadline = tokio::time::Instant::now() + LINGER;
            while !waited && batch.len() < max {
                let seen = batch.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, max - seen)).await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => waited = batch[seen..].iter().any(|p| p.done.is_some()),
                }
            }
            let started = std::time::Instant::now();
            let result = sink.write(&batch).await.map_err(crate::error::Error::from);
            metrics::histogram!("berth_audit_batch_size").record(batch.len() as f64);
            metrics::histogram!("berth_audit_write_seconds")
                .record(started.elapsed().as_secs_f64());
            healthy.store(result.is_ok(), Ordering::Relaxed);
            for p in batch.drain(..) {
                match p.done {
                    Some(done) => {
                        let _ = done.send(result.clone());
                    }
                    None if result.is_err() => kept.push(p),
                    None => {}
                }
            }
            if let Err(e) = &result {
                metrics::counter!("berth_audit_write_failures_total").increment(1);
                tracing::error!(
                    error = %e,
                    kept = kept.len(),
                    "audit records were not stored; queued ones will be written again"
                );
            }
        }
    });
    writer
}

impl Store {
    /// Records an event that is not part of a change (a credential
    /// issuance, a refused change).
    /// Returns once the entry is stored (see [`start_writer`]).
    pub async fn record(&self, e: AuditEntry) -> Result<()> {
        self.stored(Some(e)).await
    }

    /// Queues an event without waiting for it to be stored: the writer
    /// keeps it until the database takes it. Waits while the queue is full,
    /// and waits for the event to be stored (failing if it is not, as
    /// [`Store::record`] does) while the writer's last write failed.
    pub async fn record_queued(&self, e: AuditEntry) -> Result<()> {
        if !self
            .audit
            .healthy
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return self.stored(Some(e)).await;
        }
        let pending = Pending {
            entry: Some(e),
            time_us: super::now_us(),
            done: None,
        };
        self.audit.tx.send(pending).await.map_err(|_| gone())
    }

    /// Returns once every event queued before the call is stored.
    pub async fn flush_audit(&self) -> Result<()> {
        self.stored(None).await
    }

    /// Queues `entry` (or a flush marker) and waits until it is stored.
    async fn stored(&self, entry: Option<AuditEntry>) -> Result<()> {
        let (done, stored) = oneshot::channel();
        let pending = Pending {
            entry,
            time_us: super::now_us(),
            done: Some(done),
        };
        self.audit.tx.send(pending).await.map_err(|_| gone())?;
        stored.await.map_err(|_| gone())?
    }

    /// Lists events, newest first.
    pub async fn list_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        use audit_event::Column as C;
        let mut sel = audit_event::Entity::find().order_by_desc(C::Id);
        if let Some(v) = &q.actor {
            sel = sel.filter(C::Actor.eq(v.clone()));
        }
        if let Some(v) = &q.registry_id {
            sel = sel.filter(C::RegistryId.eq(v.clone()));
        }
        if let Some(v) = &q.project {
            sel = sel.filter(C::Project.eq(v.clone()));
        }
        if let Some(v) = &q.action {
            sel = sel.filter(C::Action.eq(v.clone()));
        }
        if let Some(v) = &q.outcome {
            sel = sel.filter(C::Outcome.eq(v.clone()));
        }
        if let Some(v) = q.start_us {
            sel = sel.filter(C::TimeUs.gte(v));
        }
        if let Some(v) = q.end_us {
            sel = sel.filter(C::TimeUs.lt(v));
        }
        if let Some(v) = q.before_id {
            sel = sel.filter(C::Id.lt(v));
        }
        let rows = sel.limit(q.limit).all(&self.db).await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditRecord {
                id: r.id,
                time_us: r.time_us,
                actor: r.actor,
                action: r.action,
                registry_id: r.registry_id,
                project: r.project,
                outcome: r.outcome,
                request_id: r.request_id,
                detail: r.detail,
            })
            .collect())
    }
}
