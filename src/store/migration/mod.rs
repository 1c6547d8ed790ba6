//! Schema migrations, one file per migration, named by date. The same code
//! runs on SQLite, PostgreSQL and MySQL/MariaDB; applying them twice is a
//! no-op.

use sea_orm_migration::prelude::*;

mod m20261129_000001_create_registries;
mod m20261129_000002_create_audit_events;
mod m20261129_000003_create_registry_events;
mod m20261129_000004_create_registry_usage;
mod m20261129_000005_registry_credential_mode;
mod m20261129_000006_registry_network_reach;
mod m20261129_000007_feed_revision_at_commit;
mod m20261129_000008_registries_all_projects_index;

/// All of berth's migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_registries::Migration),
            Box::new(m20261129_000002_create_audit_events::Migration),
            Box::new(m20261129_000003_create_registry_events::Migration),
            Box::new(m20261129_000004_create_registry_usage::Migration),
            Box::new(m20261129_000005_registry_credential_mode::Migration),
            Box::new(m20261129_000006_registry_network_reach::Migration),
            Box::new(m20261129_000007_feed_revision_at_commit::Migration),
            Box::new(m20261129_000008_registries_all_projects_index::Migration),
        ]
    }
}
