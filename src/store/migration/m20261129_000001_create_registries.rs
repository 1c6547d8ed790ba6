//! Registries, their project scope and the default-registry row.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Registries {
    Table,
    Id,
    Provider,
    Address,
    Namespace,
    Region,
    Repository,
    Username,
    SecretCiphertext,
    SecretKeyId,
    AllProjects,
    TlsVerify,
    CaCertPem,
    CreateTimeUs,
    UpdateTimeUs,
    UpdatedBy,
    Revision,
}

#[derive(DeriveIden)]
enum RegistryProjects {
    Table,
    RegistryId,
    Project,
}

#[derive(DeriveIden)]
enum DefaultRegistry {
    Table,
    Id,
    RegistryId,
    SetBy,
    SetTimeUs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Registries::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(Registries::Id)
                        .string_len(36)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(Registries::Provider)
                        .string_len(32)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Registries::Address)
                        .string_len(300)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Registries::Namespace)
                        .string_len(255)
                        .not_null(),
                )
                .col(ColumnDef::new(Registries::Region).string_len(64).not_null())
                .col(
                    ColumnDef::new(Registries::Repository)
                        .string_len(255)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Registries::Username)
                        .string_len(256)
                        .not_null(),
                )
                .col(ColumnDef::new(Registries::SecretCiphertext).blob().null())
                .col(
                    ColumnDef::new(Registries::SecretKeyId)
                        .string_len(32)
                        .null(),
                )
                .col(ColumnDef::new(Registries::AllProjects).boolean().not_null())
                .col(ColumnDef::new(Registries::TlsVerify).boolean().not_null())
                .col(ColumnDef::new(Registries::CaCertPem).text().not_null())
                .col(
                    ColumnDef::new(Registries::CreateTimeUs)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Registries::UpdateTimeUs)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Registries::UpdatedBy)
                        .string_len(256)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Registries::Revision)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        // Two integrations of one registry namespace would make "which
        // credentials push here?" ambiguous.
        m.create_index(
            Index::create()
                .name("ux_registries_address_namespace")
                .table(Registries::Table)
                .col(Registries::Address)
                .col(Registries::Namespace)
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RegistryProjects::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(RegistryProjects::RegistryId)
                        .string_len(36)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RegistryProjects::Project)
                        .string_len(64)
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(RegistryProjects::RegistryId)
                        .col(RegistryProjects::Project),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_registry_projects_registry")
                        .from(RegistryProjects::Table, RegistryProjects::RegistryId)
                        .to(Registries::Table, Registries::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_registry_projects_project")
                .table(RegistryProjects::Table)
                .col(RegistryProjects::Project)
                .col(RegistryProjects::RegistryId)
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(DefaultRegistry::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(DefaultRegistry::Id)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(DefaultRegistry::RegistryId)
                        .string_len(36)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(DefaultRegistry::SetBy)
                        .string_len(256)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(DefaultRegistry::SetTimeUs)
                        .big_integer()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_default_registry_registry")
                        .from(DefaultRegistry::Table, DefaultRegistry::RegistryId)
                        .to(Registries::Table, Registries::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(DefaultRegistry::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(RegistryProjects::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Registries::Table).to_owned())
            .await
    }
}
