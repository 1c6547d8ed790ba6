//! PostgreSQL only: change-feed revisions are taken at COMMIT.
//!
//! Revisions must commit in order (see the registry_events migration), which
//! is why a writer takes the counter row's lock and keeps it to its commit.
//! Taken by a statement of the transaction, the lock is held across the
//! round trips that follow it (the rest of the statement's reply, COMMIT
//! and its WAL flush): on PostgreSQL that serial section capped writes at
//! about 1,800 per second (BENCHMARKS.md). Here the event goes in with a
//! negative placeholder revision, and a deferred constraint trigger, which
//! PostgreSQL runs inside COMMIT just before the commit record, takes the
//! next revision and renumbers the event. The lock is then held for the
//! commit's own work only, with no network round trip inside it. Commit
//! order is still revision order: the lock is released after the commit is
//! visible, and events of one transaction are numbered in insertion order.
//!
//! The trigger also prunes old events, as the application does on SQLite
//! and MySQL: every `step` revisions it drops those older than the
//! retention, which each connection passes as the `berth.feed_retention`
//! setting (see `Store::connect_with`).
//!
//! SQLite and MySQL have no deferred triggers; on them this migration does
//! nothing and writers number their events themselves.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE SEQUENCE IF NOT EXISTS registry_event_pending;

CREATE OR REPLACE FUNCTION berth_number_registry_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next bigint;
    retention bigint := greatest(coalesce(
        nullif(current_setting('berth.feed_retention', true), '')::bigint, 10000), 1);
    step bigint := least(greatest(retention / 10, 1), 100);
BEGIN
    UPDATE registry_revision SET revision = revision + 1 WHERE id = 1
        RETURNING revision INTO next;
    IF next IS NULL THEN
        RAISE EXCEPTION 'registry_revision row 1 is missing';
    END IF;
    UPDATE registry_events SET revision = next WHERE revision = NEW.revision;
    IF next % step = 0 AND next > retention THEN
        DELETE FROM registry_events WHERE revision > 0 AND revision <= next - retention;
        UPDATE registry_revision SET compacted = next - retention
            WHERE id = 1 AND compacted < next - retention;
    END IF;
    RETURN NULL;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'registry_events_number_at_commit'
          AND tgrelid = 'registry_events'::regclass
    ) THEN
        CREATE CONSTRAINT TRIGGER registry_events_number_at_commit
            AFTER INSERT ON registry_events
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW WHEN (NEW.revision < 0)
            EXECUTE FUNCTION berth_number_registry_event();
    END IF;
END
$$;
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS registry_events_number_at_commit ON registry_events;
DROP FUNCTION IF EXISTS berth_number_registry_event();
DROP SEQUENCE IF EXISTS registry_event_pending;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == DatabaseBackend::Postgres {
            m.get_connection().execute_unprepared(UP).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == DatabaseBackend::Postgres {
            m.get_connection().execute_unprepared(DOWN).await?;
        }
        Ok(())
    }
}
