//! The audit log: one row per registry change and per credential issuance.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    TimeUs,
    Actor,
    Action,
    RegistryId,
    Project,
    Outcome,
    RequestId,
    Detail,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditEvents::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(AuditEvents::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(AuditEvents::TimeUs).big_integer().not_null())
                .col(
                    ColumnDef::new(AuditEvents::Actor)
                        .string_len(256)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditEvents::Action)
                        .string_len(64)
                        .not_null(),
                )
                // No foreign key: the log outlives deleted registries.
                .col(
                    ColumnDef::new(AuditEvents::RegistryId)
                        .string_len(36)
                        .null(),
                )
                .col(ColumnDef::new(AuditEvents::Project).string_len(64).null())
                .col(
                    ColumnDef::new(AuditEvents::Outcome)
                        .string_len(16)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditEvents::RequestId)
                        .string_len(128)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditEvents::Detail)
                        .string_len(1024)
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        // The filters of ListAuditEvents, newest first.
        for (name, col) in [
            ("ix_audit_events_registry", AuditEvents::RegistryId),
            ("ix_audit_events_actor", AuditEvents::Actor),
            ("ix_audit_events_time", AuditEvents::TimeUs),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(AuditEvents::Table)
                    .col(col)
                    .col(AuditEvents::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
