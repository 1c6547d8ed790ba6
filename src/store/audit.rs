//! The audit log: entries written beside the change they record (same
//! transaction), and the listing behind ListAuditEvents.

use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::entity::audit_event;
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

/// `s` cut to at most `max` characters (columns are sized in characters).
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
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
        actor: Set(clip(&e.actor, 256)),
        action: Set(e.action.to_owned()),
        registry_id: Set(e.registry_id.as_deref().map(|s| clip(s, 36))),
        project: Set(e.project.as_deref().map(|s| clip(s, 64))),
        outcome: Set(e.outcome.to_owned()),
        request_id: Set(clip(&e.request_id, 128)),
        detail: Set(clip(&e.detail, 1024)),
    }
}

/// An entry waiting for the writer, and who waits for it.
pub(super) struct Pending {
    /// `None`: a flush marker (answered once everything before it is
    /// stored).
    entry: Option<AuditEntry>,
    time_us: i64,
    done: oneshot::Sender<Result<()>>,
}

fn gone() -> crate::error::Error {
    crate::error::Error::Unavailable("the audit writer stopped".into())
}

/// Most entries per INSERT (8 columns each: far below every backend's
/// limit on bound parameters). Larger batches measured worse on
/// PostgreSQL: a statement of several hundred rows spans TCP segments and
/// met 40 ms delayed-ACK stalls (see BENCHMARKS.md).
const BATCH: usize = 64;

/// Starts the writer of standalone entries (credential issuances, refused
/// changes): group commit. Callers queue their entry and wait until it is
/// stored, so no credentials leave without their record; entries that
/// arrive while a batch is being written go together in the next one, so
/// under load one INSERT serves many calls instead of one each.
pub(super) fn start_writer(db: DatabaseConnection) -> mpsc::Sender<Pending> {
    let (tx, mut rx) = mpsc::channel::<Pending>(4 * BATCH);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let rows: Vec<_> = batch
                .iter()
                .filter_map(|p| p.entry.as_ref().map(|e| row(e, p.time_us)))
                .collect();
            let result = if rows.is_empty() {
                Ok(())
            } else {
                audit_event::Entity::insert_many(rows)
                    .exec_without_returning(&db)
                    .await
                    .map(|_| ())
                    .map_err(crate::error::Error::from)
            };
            if let Err(e) = &result {
                // Callers that wait get the error too; queued ones only
                // have this line.
                tracing::error!(error = %e, entries = batch.len(), "audit records were not stored");
            }
            metrics::histogram!("berth_audit_batch_size").record(batch.len() as f64);
            for p in batch.drain(..) {
                let _ = p.done.send(result.clone());
            }
        }
    });
    tx
}

impl Store {
    /// Records an event that is not part of a change (a credential
    /// issuance, a refused change).
    /// Returns once the entry is stored (see [`start_writer`]).
    pub async fn record(&self, e: &AuditEntry) -> Result<()> {
        self.enqueue(Some(e.clone()))
            .await?
            .await
            .map_err(|_| gone())?
    }

    /// Queues an event without waiting for it to be stored (the writer
    /// logs a failure). Waits only while the queue is full.
    pub async fn record_queued(&self, e: &AuditEntry) -> Result<()> {
        self.enqueue(Some(e.clone())).await.map(drop)
    }

    /// Returns once every event queued before the call is stored.
    pub async fn flush_audit(&self) -> Result<()> {
        self.enqueue(None).await?.await.map_err(|_| gone())?
    }

    async fn enqueue(&self, entry: Option<AuditEntry>) -> Result<oneshot::Receiver<Result<()>>> {
        let (done, stored) = oneshot::channel();
        let pending = Pending {
            entry,
            time_us: super::now_us(),
            done,
        };
        self.audit.send(pending).await.map_err(|_| gone())?;
        Ok(stored)
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
