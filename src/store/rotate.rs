//! Key rotation: which keys the stored secrets are sealed by, and the
//! startup check.

use std::fmt;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Store;
use super::entity::registry;

/// How many stored secrets each key sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The id of the active key.
    pub active_key_id: String,
    /// Secrets sealed by the active key.
    pub current: u64,
    /// Secrets sealed by configured older keys: key id and count.
    pub old: Vec<(String, u64)>,
    /// Secrets sealed by keys that are not configured: key id and count.
    pub missing: Vec<(String, u64)>,
}

impl KeyStatus {
    /// Secrets not sealed by the active key.
    pub fn stale(&self) -> u64 {
        self.old.iter().chain(&self.missing).map(|(_, n)| n).sum()
    }

    /// Whether every stored secret is sealed by the active key.
    pub fn is_current(&self) -> bool {
        self.stale() == 0
    }

    /// The startup error when some secrets were sealed by keys berth does
    /// not have.
    fn missing_error(&self) -> Option<anyhow::Error> {
        if self.missing.is_empty() {
            return None;
        }
        let n: u64 = self.missing.iter().map(|(_, n)| n).sum();
        let ids = list(&self.missing);
        let verb = if self.missing.len() == 1 { "is" } else { "are" };
        Some(anyhow::anyhow!(
            "{n} stored secret(s) were encrypted with key id {ids}, which {verb} not configured \
             (the active key is {active}). Add the old key to the key file on a line after the \
             active key (or to BERTH_SECRET_KEY after it, comma-separated), restart, and run \
             `berth rotate-key` to re-encrypt those secrets under the active key",
            active = self.active_key_id,
        ))
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} secrets under the active key {}; {} under older keys",
            self.current,
            self.active_key_id,
            self.old.iter().map(|(_, n)| n).sum::<u64>()
        )?;
        if !self.old.is_empty() {
            write!(f, " ({})", list(&self.old))?;
        }
        if !self.missing.is_empty() {
            write!(
                f,
                "; {} under keys that are not configured ({})",
                self.missing.iter().map(|(_, n)| n).sum::<u64>(),
                list(&self.missing)
            )?;
        }
        Ok(())
    }
}

fn list(ids: &[(String, u64)]) -> String {
    ids.iter()
        .map(|(id, n)| format!("{id}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Counts the stored secrets by the key that sealed them.
    pub async fn key_status(&self) -> Result<KeyStatus, DbErr> {
        let counts: Vec<(String, i64)> = registry::Entity::find()
            .select_only()
            .column(registry::Column::SecretKeyId)
            .column_as(Expr::col(registry::Column::Id).count(), "n")
            .filter(registry::Column::SecretKeyId.is_not_null())
            .group_by(registry::Column::SecretKeyId)
            .order_by_asc(registry::Column::SecretKeyId)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut status = KeyStatus {
            active_key_id: self.cipher.active_key_id().to_owned(),
            current: 0,
            old: Vec::new(),
            missing: Vec::new(),
        };
        for (key_id, n) in counts {
            let n = u64::try_from(n).unwrap_or(0);
            if key_id == status.active_key_id {
                status.current = n;
            } else if self.cipher.contains(&key_id) {
                status.old.push((key_id, n));
            } else {
                status.missing.push((key_id, n));
            }
        }
        Ok(status)
    }

    /// Fails if any stored secret was sealed by a key berth does not have:
    /// better a clear startup error than garbage credentials later. Warns
    /// when secrets are still sealed by older keys.
    pub async fn check_keys(&self) -> Result<(), anyhow::Error> {
        let status = self.key_status().await?;
        if let Some(e) = status.missing_error() {
            return Err(e);
        }
        let stale = status.stale();
        if stale > 0 {
            tracing::warn!(
                count = stale,
                active_key_id = %status.active_key_id,
                "{stale} stored secret(s) are still encrypted with older keys; run `berth rotate-key` \
                 to re-encrypt them under the active key before removing the old keys"
            );
        }
        Ok(())
    }
}
