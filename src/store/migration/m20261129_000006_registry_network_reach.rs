//! How berth reaches a registry: an HTTP(S) forward proxy (url, username,
//! no-proxy list and the password, sealed like the registry secret in
//! columns of its own) and a request budget. Existing rows get no proxy and
//! an unlimited budget: exactly what they did before.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Registries {
    Table,
    ProxyUrl,
    ProxyUsername,
    ProxyNoProxy,
    ProxyPasswordCiphertext,
    ProxyPasswordKeyId,
    BudgetMicroRps,
    BudgetMaxConcurrent,
}

fn column(c: Registries) -> (&'static str, ColumnDef) {
    let mut def = ColumnDef::new(c);
    let name = match c {
        Registries::ProxyUrl => {
            def.string_len(512).not_null().default("");
            "proxy_url"
        }
        Registries::ProxyUsername => {
            def.string_len(256).not_null().default("");
            "proxy_username"
        }
        Registries::ProxyNoProxy => {
            // Comma-separated; at most 100 entries of at most 253.
            def.text().null();
            "proxy_no_proxy"
        }
        Registries::ProxyPasswordCiphertext => {
            def.blob().null();
            "proxy_password_ciphertext"
        }
        Registries::ProxyPasswordKeyId => {
            def.string_len(64).null();
            "proxy_password_key_id"
        }
        Registries::BudgetMicroRps => {
            def.big_integer().not_null().default(0);
            "budget_micro_rps"
        }
        Registries::BudgetMaxConcurrent => {
            def.integer().not_null().default(0);
            "budget_max_concurrent"
        }
        Registries::Table => unreachable!("not a column"),
    };
    (name, def)
}

const COLUMNS: [Registries; 7] = [
    Registries::ProxyUrl,
    Registries::ProxyUsername,
    Registries::ProxyNoProxy,
    Registries::ProxyPasswordCiphertext,
    Registries::ProxyPasswordKeyId,
    Registries::BudgetMicroRps,
    Registries::BudgetMaxConcurrent,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds a single column per statement.
        for c in COLUMNS {
            let (name, mut def) = column(c);
            // Applying twice (replicas racing, a manual run) is a no-op.
            if m.has_column("registries", name).await? {
                continue;
            }
            m.alter_table(
                Table::alter()
                    .table(Registries::Table)
                    .add_column(&mut def)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in COLUMNS {
            m.alter_table(
                Table::alter()
                    .table(Registries::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
