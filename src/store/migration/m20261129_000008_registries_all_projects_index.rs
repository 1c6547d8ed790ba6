//! An index on `registries (all_projects, id)`. Listing by project asks for
//! "all-projects registries, or those listing the project": with the
//! project side already indexed (`ix_registry_projects_project`), this one
//! lets the database answer both halves from indexes instead of scanning
//! every registry (SQLite plans it as a multi-index OR; BENCHMARKS.md).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Registries {
    Table,
    Id,
    AllProjects,
}

const NAME: &str = "ix_registries_all_projects";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(NAME)
                .table(Registries::Table)
                .col(Registries::AllProjects)
                .col(Registries::Id)
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(NAME).table(Registries::Table).to_owned())
            .await
    }
}
