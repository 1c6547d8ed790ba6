//! SQLite's WAL is checkpointed in the background, on a connection of its
//! own (`start_sqlite_checkpointer`), not by the commits: records written
//! through the store reach the main database file without any commit
//! having grown the WAL to SQLite's own checkpoint threshold.

mod common;

use std::sync::Arc;
use std::time::Duration;

use berth::secret::Keyring;
use berth::store::{AuditEntry, Store};
use common::{Backend, TestDb};
use sea_orm::{ConnectionTrait, Database, Statement};

/// A granted issuance by `actor`, request `i`.
fn issued(actor: &str, i: usize) -> AuditEntry {
    AuditEntry {
        actor: actor.into(),
        action: "credentials.issue",
        outcome: "granted",
        request_id: format!("{actor}-{i}"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_in_the_background() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cipher = Arc::new(Keyring::from_list(common::TEST_KEY).expect("key"));
    let store = Store::connect(&db.url, cipher).await.expect("connect");
    store.migrate().await.expect("migrate");
    for i in 0..20 {
        store
            .record(&issued("checkpoint-test", i))
            .await
            .expect("record");
    }
    // `immutable=1` reads the main file only, ignoring the WAL: the rows
    // are there once a checkpoint has copied them back. Twenty small
    // commits are a few dozen WAL pages, far below the 1,000 (SQLite's
    // default) or 10,000 (berth's fallback) at which a commit would
    // checkpoint by itself.
    let file = db.dir().join("berth.db");
    let mut seen = 0;
    for _ in 0..50 {
        let reader = Database::connect(format!("sqlite://{}?immutable=1", file.display()))
            .await
            .expect("open the main file");
        // Before the first checkpoint even the table may be in the WAL
        // only: an error here means "not yet".
        let count = reader
            .query_one_raw(Statement::from_string(
                reader.get_database_backend(),
                "SELECT COUNT(*) AS n FROM audit_events WHERE actor = 'checkpoint-test'",
            ))
            .await;
        if let Ok(Some(row)) = count {
            seen = row.try_get::<i64>("", "n").expect("n");
        }
        reader.close().await.expect("close");
        if seen == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 20, "the checkpointer copied the WAL into the file");
}

/// An in-memory database has no WAL: no checkpointer, and the audit writer
/// stays on the store's own connection (a second connection to a shared
/// in-memory cache meets table locks that `busy_timeout` does not wait
/// for). Its records are stored and listed like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_database_keeps_its_audit_records() {
    let cipher = Arc::new(Keyring::from_list(common::TEST_KEY).expect("key"));
    let store = Store::connect("sqlite::memory:", cipher)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let writes = (0..30).map(|i| {
        let store = store.clone();
        async move { store.record(&issued("memory-test", i)).await }
    });
    for r in futures::future::join_all(writes).await {
        r.expect("record");
    }
    let listed = store
        .list_audit(&berth::store::AuditQuery {
            actor: Some("memory-test".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 30);
}
