//! How a registry makes its docker login (`credential_mode`) and the cloud
//! instance it belongs to (`instance_id`). Existing rows get `''` for both:
//! the provider's default mode (static username and password for ACR and
//! TCR) and no instance, exactly what they did before.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Registries {
    Table,
    CredentialMode,
    InstanceId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds a single column per statement.
        let columns = [
            (Registries::CredentialMode, "credential_mode", 32),
            (Registries::InstanceId, "instance_id", 64),
        ];
        for (column, name, len) in columns {
            // Applying twice (replicas racing, a manual run) is a no-op.
            if m.has_column("registries", name).await? {
                continue;
            }
            m.alter_table(
                Table::alter()
                    .table(Registries::Table)
                    .add_column(
                        ColumnDef::new(column)
                            .string_len(len)
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [Registries::CredentialMode, Registries::InstanceId] {
            m.alter_table(
                Table::alter()
                    .table(Registries::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
