//! Who uses which registry: rows written by RecordRegistryUsage, read by
//! ListRegistryUsage and by DeleteRegistry's in-use check.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RegistryUsage {
    Table,
    RegistryId,
    Project,
    User,
    RecordedBy,
    RecordTimeUs,
    ExpireTimeUs,
}

#[derive(DeriveIden)]
enum Registries {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RegistryUsage::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(RegistryUsage::RegistryId)
                        .string_len(36)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryUsage::Project)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryUsage::User)
                        .string_len(255)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryUsage::RecordedBy)
                        .string_len(256)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryUsage::RecordTimeUs)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryUsage::ExpireTimeUs)
                        .big_integer()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(RegistryUsage::RegistryId)
                        .col(RegistryUsage::Project)
                        .col(RegistryUsage::User),
                )
                // No cascade: DeleteRegistry removes the rows itself, after
                // checking them; the key makes a use recorded against a
                // registry being deleted wait for that deletion and fail.
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_registry_usage_registry")
                        .from(RegistryUsage::Table, RegistryUsage::RegistryId)
                        .to(Registries::Table, Registries::Id),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RegistryUsage::Table).to_owned())
            .await
    }
}
