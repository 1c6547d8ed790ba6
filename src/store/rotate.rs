//! Key rotation: which keys the stored secrets are sealed by, the startup
//! check, and `berth rotate-key`, which re-seals every secret under the
//! active key in one transaction.
//!
//! Rotation is not a registry change: it rewrites only `secret_ciphertext`
//! and `secret_key_id`, never `revision` (the etag) or `update_time`. Each
//! row is rewritten only if it still holds the ciphertext that was read, so
//! an UpdateRegistry committed meanwhile by a live replica is never
//! overwritten; that row is read again (a locking read) and what it holds
//! now is re-sealed instead.

use std::fmt;
use std::time::Duration;

use anyhow::bail;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entity::registry;
use super::{Store, TxError, is_transient};
use crate::error::Error;
use crate::secret::Sealed;

/// Attempts at the whole rotation transaction (deadlocks, serialization
/// failures, rows that kept changing).
const ROTATE_ATTEMPTS: usize = 5;
/// Attempts at one row whose ciphertext changed under us, inside one
/// transaction.
const ROW_ATTEMPTS: usize = 3;

/// A pair of columns holding a sealed value, and the context it is bound
/// to: the registry secret, and the proxy password.
#[derive(Clone, Copy)]
struct SealedColumns {
    ciphertext: registry::Column,
    key_id: registry::Column,
    context: fn(&str) -> String,
    what: &'static str,
}

const SEALED: [SealedColumns; 2] = [
    SealedColumns {
        ciphertext: registry::Column::SecretCiphertext,
        key_id: registry::Column::SecretKeyId,
        context: str::to_owned,
        what: "secret",
    },
    SealedColumns {
        ciphertext: registry::Column::ProxyPasswordCiphertext,
        key_id: registry::Column::ProxyPasswordKeyId,
        context: super::rows::proxy_password_context,
        what: "proxy password",
    },
];

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

/// What `berth rotate-key` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The active key id, which now seals every secret.
    pub key_id: String,
    /// Secrets re-sealed under it.
    pub rotated: u64,
    /// Secrets that were sealed by it already.
    pub already_current: u64,
}

impl fmt::Display for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rotated {} secrets to key {}; {} already current",
            self.rotated, self.key_id, self.already_current
        )
    }
}

impl Store {
    /// Counts the stored secrets by the key that sealed them.
    pub async fn key_status(&self) -> Result<KeyStatus, DbErr> {
        let mut counts: Vec<(String, i64)> = Vec::new();
        for sealed in SEALED {
            let more: Vec<(String, i64)> = registry::Entity::find()
                .select_only()
                .column(sealed.key_id)
                .column_as(Expr::col(registry::Column::Id).count(), "n")
                .filter(sealed.key_id.is_not_null())
                .group_by(sealed.key_id)
                .into_tuple()
                .all(&self.db)
                .await?;
            for (key_id, n) in more {
                match counts.iter_mut().find(|(k, _)| *k == key_id) {
                    Some((_, total)) => *total += n,
                    None => counts.push((key_id, n)),
                }
            }
        }
        counts.sort();
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

    /// Re-seals every secret not sealed by the active key under the active
    /// key, in one transaction (retried as a whole a few times if the
    /// database aborts it or rows keep changing). Idempotent.
    pub async fn rotate_keys(&self) -> anyhow::Result<Rotation> {
        if let Some(e) = self.key_status().await?.missing_error() {
            return Err(e);
        }
        let mut delay = Duration::from_millis(10);
        for attempt in 1..=ROTATE_ATTEMPTS {
            let outcome = match self.begin_write().await {
                Ok(txn) => self.rotate_in(txn).await,
                Err(e) => Err(TxError::Db(e)),
            };
            match outcome {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {
                    tracing::debug!(attempt, "secrets kept changing during rotation; retrying");
                }
                Err(TxError::Db(e)) if attempt < ROTATE_ATTEMPTS && is_transient(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying rotation");
                }
                Err(TxError::Db(e)) => return Err(e.into()),
                Err(TxError::Domain(e)) => return Err(e.into()),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 4).min(Duration::from_secs(1));
        }
        bail!(
            "registries kept changing during the rotation; nothing was rotated, run `berth rotate-key` again"
        )
    }

    /// One attempt: `None` (rolled back) if a row kept changing.
    async fn rotate_in(&self, txn: DatabaseTransaction) -> Result<Option<Rotation>, TxError> {
        let active = self.cipher.active_key_id().to_owned();
        let mut done = Rotation {
            key_id: active.clone(),
            rotated: 0,
            already_current: 0,
        };
        for cols in SEALED {
            done.already_current += registry::Entity::find()
                .filter(cols.key_id.eq(active.as_str()))
                .count(&txn)
                .await?;
            // In id order, so two rotations running at once lock rows in
            // the same order.
            let stale: Vec<(String, String, Vec<u8>)> = registry::Entity::find()
                .select_only()
                .column(registry::Column::Id)
                .column(cols.key_id)
                .column(cols.ciphertext)
                .filter(cols.key_id.is_not_null())
                .filter(cols.key_id.ne(active.as_str()))
                .filter(cols.ciphertext.is_not_null())
                .order_by_asc(registry::Column::Id)
                .into_tuple()
                .all(&txn)
                .await?;
            for (id, key_id, bytes) in stale {
                let mut seen = Some(Sealed { key_id, bytes });
                let mut settled = false;
                for _ in 0..ROW_ATTEMPTS {
                    let Some(sealed) = seen else {
                        // Deleted, or its secret cleared, meanwhile.
                        settled = true;
                        break;
                    };
                    if sealed.key_id == active {
                        // Re-sealed meanwhile by a replica with the new key.
                        done.already_current += 1;
                        settled = true;
                        break;
                    }
                    if self.reseal(&txn, cols, &id, &sealed).await? {
                        done.rotated += 1;
                        settled = true;
                        break;
                    }
                    // Changed since we read it: read what it holds now. A
                    // locking read, because MySQL's plain reads would
                    // return the transaction's snapshot rather than the
                    // latest row.
                    seen = registry::Entity::find_by_id(id.clone())
                        .select_only()
                        .column(cols.key_id)
                        .column(cols.ciphertext)
                        .lock_exclusive()
                        .into_tuple::<(Option<String>, Option<Vec<u8>>)>()
                        .one(&txn)
                        .await?
                        .and_then(|(key_id, bytes)| {
                            Some(Sealed {
                                key_id: key_id?,
                                bytes: bytes?,
                            })
                        });
                }
                if !settled {
                    txn.rollback().await?;
                    return Ok(None);
                }
            }
        }
        txn.commit().await?;
        Ok(Some(done))
    }

    /// Re-seals one row's secret under the active key if the row still
    /// holds `sealed`; `false` if it does not.
    async fn reseal(
        &self,
        txn: &DatabaseTransaction,
        cols: SealedColumns,
        id: &str,
        sealed: &Sealed,
    ) -> Result<bool, TxError> {
        let context = (cols.context)(id);
        let what = cols.what;
        let secret = self.cipher.open(sealed, &context).map_err(|e| {
            TxError::Domain(Error::FailedPrecondition(format!(
                "the stored {what} of registry {id} cannot be decrypted: {e}; nothing was rotated"
            )))
        })?;
        let fresh = self
            .cipher
            .seal(&secret, &context)
            .map_err(|e| TxError::Domain(Error::Internal(e.to_string())))?;
        let res = registry::Entity::update_many()
            .col_expr(cols.ciphertext, Expr::value(fresh.bytes))
            .col_expr(cols.key_id, Expr::value(fresh.key_id))
            .filter(registry::Column::Id.eq(id))
            .filter(cols.key_id.eq(sealed.key_id.as_str()))
            .filter(cols.ciphertext.eq(sealed.bytes.clone()))
            .exec(txn)
            .await?;
        Ok(res.rows_affected > 0)
    }
}
