//! Registry usage: who says they use a registry, until when. Written by
//! RecordRegistryUsage, read by ListRegistryUsage and checked (under lock)
//! by DeleteRegistry.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};

use super::entity::{registry, registry_usage};
use super::{Store, not_found};
use crate::error::{Error, Result};

/// One current use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The registry.
    pub registry_id: String,
    /// The project using it.
    pub project: String,
    /// Who uses it.
    pub user: String,
    /// Who recorded it last.
    pub recorded_by: String,
    /// When it was last recorded (µs).
    pub record_time_us: i64,
    /// When it lapses (µs).
    pub expire_time_us: i64,
}

fn to_record(m: registry_usage::Model) -> UsageRecord {
    UsageRecord {
        registry_id: m.registry_id,
        project: m.project,
        user: m.user,
        recorded_by: m.recorded_by,
        record_time_us: m.record_time_us,
        expire_time_us: m.expire_time_us,
    }
}

/// Every use of `id`, lapsed or not (oldest project first), read with a
/// shared lock so that a use being recorded concurrently is either seen or
/// waits for the caller's transaction (DeleteRegistry, which drops them
/// all and refuses only for current ones).
pub(super) async fn all_locked<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Vec<UsageRecord>, DbErr> {
    Ok(registry_usage::Entity::find()
        .filter(registry_usage::Column::RegistryId.eq(id))
        .order_by_asc(registry_usage::Column::Project)
        .order_by_asc(registry_usage::Column::User)
        .lock_shared()
        .all(c)
        .await?
        .into_iter()
        .map(to_record)
        .collect())
}

/// Removes every use of `id` (its deletion).
pub(super) async fn delete_all<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    registry_usage::Entity::delete_many()
        .filter(registry_usage::Column::RegistryId.eq(id))
        .exec(c)
        .await?;
    Ok(())
}

/// The registry row of `id`, locked until the transaction ends.
pub(super) async fn lock_registry<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<registry::Model>, DbErr> {
    registry::Entity::find_by_id(id.to_owned())
        .lock_exclusive()
        .one(c)
        .await
}

impl Store {
    /// Records (or refreshes) a use; lapsed uses of the registry are
    /// dropped on the way. NOT_FOUND if the registry does not exist (or is
    /// being deleted).
    pub async fn record_usage(
        &self,
        registry_id: &str,
        project: &str,
        user: &str,
        recorded_by: &str,
        ttl_us: i64,
    ) -> Result<UsageRecord> {
        let now = super::now_us();
        let row = registry_usage::ActiveModel {
            registry_id: Set(registry_id.to_owned()),
            project: Set(project.to_owned()),
            user: Set(user.to_owned()),
            recorded_by: Set(recorded_by.chars().take(256).collect()),
            record_time_us: Set(now),
            expire_time_us: Set(now.saturating_add(ttl_us)),
        };
        let txn = self.begin_write().await?;
        registry_usage::Entity::delete_many()
            .filter(registry_usage::Column::RegistryId.eq(registry_id))
            .filter(registry_usage::Column::ExpireTimeUs.lte(now))
            .exec(&txn)
            .await?;
        let inserted = registry_usage::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    registry_usage::Column::RegistryId,
                    registry_usage::Column::Project,
                    registry_usage::Column::User,
                ])
                .update_columns([
                    registry_usage::Column::RecordedBy,
                    registry_usage::Column::RecordTimeUs,
                    registry_usage::Column::ExpireTimeUs,
                ])
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) => {
                return Err(not_found(registry_id));
            }
            Err(e) => return Err(e.into()),
        }
        txn.commit().await?;
        Ok(UsageRecord {
            registry_id: registry_id.to_owned(),
            project: project.to_owned(),
            user: user.to_owned(),
            recorded_by: recorded_by.chars().take(256).collect(),
            record_time_us: now,
            expire_time_us: now.saturating_add(ttl_us),
        })
    }

    /// The current uses of a registry, by project then user.
    pub async fn list_usage(&self, registry_id: &str) -> Result<Vec<UsageRecord>> {
        Ok(registry_usage::Entity::find()
            .filter(registry_usage::Column::RegistryId.eq(registry_id))
            .filter(registry_usage::Column::ExpireTimeUs.gt(super::now_us()))
            .order_by_asc(registry_usage::Column::Project)
            .order_by_asc(registry_usage::Column::User)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_record)
            .collect())
    }
}

/// FAILED_PRECONDITION naming (some of) the users of registry `id`.
pub(super) fn in_use(id: &str, uses: &[UsageRecord]) -> Error {
    const SHOWN: usize = 10;
    let mut names: Vec<String> = uses
        .iter()
        .take(SHOWN)
        .map(|u| format!("{} ({})", u.user, u.project))
        .collect();
    if uses.len() > SHOWN {
        names.push(format!("and {} more", uses.len() - SHOWN));
    }
    Error::FailedPrecondition(format!(
        "registry {id} is in use by {}; stop using it first or delete with force",
        names.join(", ")
    ))
}
