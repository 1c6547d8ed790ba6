//! The change feed behind WatchRegistries: one row per committed registry
//! change, numbered by a single counter row that every writer increments
//! inside its own transaction.
//!
//! Why a counter row and not an auto-increment key: an auto-increment value
//! is handed out when the row is inserted, not when its transaction commits,
//! so revision 6 can become visible before revision 5 and a reader that has
//! seen 6 would skip 5 for ever. Incrementing one row takes its row lock
//! until commit, so writers commit in revision order and "everything up to
//! the newest revision I can see" is always complete.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RegistryEvents {
    Table,
    Revision,
    TimeUs,
    Kind,
    RegistryId,
    Actor,
    Changed,
    PreviousDefault,
    Snapshot,
}

#[derive(DeriveIden)]
enum RegistryRevision {
    Table,
    Id,
    Revision,
    Compacted,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RegistryEvents::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(RegistryEvents::Revision)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(RegistryEvents::TimeUs)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryEvents::Kind)
                        .string_len(32)
                        .not_null(),
                )
                // No foreign key: a deletion's event outlives the registry.
                .col(
                    ColumnDef::new(RegistryEvents::RegistryId)
                        .string_len(36)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryEvents::Actor)
                        .string_len(256)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryEvents::Changed)
                        .string_len(1024)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryEvents::PreviousDefault)
                        .string_len(36)
                        .null(),
                )
                // The registry after the change (before it, for a deletion)
                // as JSON, without its secret.
                .col(ColumnDef::new(RegistryEvents::Snapshot).text().not_null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RegistryRevision::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(RegistryRevision::Id)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(RegistryRevision::Revision)
                        .big_integer()
                        .not_null(),
                )
                // Events up to and including this revision were pruned.
                .col(
                    ColumnDef::new(RegistryRevision::Compacted)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        // The one counter row. PostgreSQL and MySQL migrate under a lock
        // (see Store::migrate); SQLite processes may race here, so the
        // insert is idempotent and the migration one transaction.
        let sql = match m.get_database_backend() {
            sea_orm::DatabaseBackend::MySql => {
                "INSERT IGNORE INTO registry_revision (id, revision, compacted) VALUES (1, 0, 0)"
            }
            _ => {
                "INSERT INTO registry_revision (id, revision, compacted) VALUES (1, 0, 0) \
                 ON CONFLICT (id) DO NOTHING"
            }
        };
        m.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RegistryRevision::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(RegistryEvents::Table).to_owned())
            .await
    }
}
