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

/// A migrated store on `url`.
async fn store_at(url: &str) -> Store {
    let cipher = Arc::new(Keyring::from_list(common::TEST_KEY).expect("key"));
    let store = Store::connect(url, cipher).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// The request ids of `actor`'s stored events, newest first.
async fn request_ids(store: &Store, actor: &str) -> Vec<String> {
    store
        .list_audit(&berth::store::AuditQuery {
            actor: Some(actor.into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.request_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_in_the_background() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = store_at(&db.url).await;
    for i in 0..20 {
        store
            .record(issued("checkpoint-test", i))
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
    let store = store_at("sqlite::memory:").await;
    let writes = (0..30).map(|i| {
        let store = store.clone();
        async move { store.record(issued("memory-test", i)).await }
    });
    for r in futures::future::join_all(writes).await {
        r.expect("record");
    }
    assert_eq!(request_ids(&store, "memory-test").await.len(), 30);
}

/// The audit writer writes a SQLite batch on the runtime thread and never
/// waits for a lock there: while another connection holds the write lock
/// (as a store transaction does, `BEGIN IMMEDIATE`), the issuance waits on
/// the blocking pool, the runtime's one thread keeps running other tasks,
/// and the record is stored once the lock is released.
#[tokio::test(flavor = "current_thread")]
async fn an_issuance_waits_for_the_write_lock_off_the_runtime() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = store_at(&db.url).await;
    // Opens the writer's connection.
    store.record(issued("lock-test", 0)).await.expect("record");

    let holder = rusqlite::Connection::open(db.dir().join("berth.db")).expect("open");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.record(issued("lock-test", 1)).await }
    });
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the runtime thread was blocked for {:?}",
        started.elapsed()
    );
    assert!(!waiting.is_finished(), "the record waits for the lock");
    holder
        .execute_batch("COMMIT")
        .expect("release the write lock");
    waiting.await.expect("join").expect("stored after the lock");

    assert_eq!(
        request_ids(&store, "lock-test").await,
        ["lock-test-1", "lock-test-0"]
    );
}

/// Batches larger than the writer writes on the runtime thread (queued
/// issuances, nobody waiting) are stored too, every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_queued_batch_is_stored_whole() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = store_at(&db.url).await;
    for i in 0..300 {
        store
            .record_queued(issued("batch-test", i))
            .await
            .expect("queue");
    }
    store.flush_audit().await.expect("flush");
    let mut ids = request_ids(&store, "batch-test").await;
    ids.sort();
    let mut expected: Vec<_> = (0..300).map(|i| format!("batch-test-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
}

/// With queued issuances (`--audit-credentials async`) a failed write
/// loses nothing: the entries already answered are kept and written again
/// once the database takes them, and while it does not, queued calls wait
/// for their entry and fail with it instead of leaving unrecorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_records_are_kept_while_the_log_cannot_be_written() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = store_at(&db.url).await;
    let admin = rusqlite::Connection::open(db.dir().join("berth.db")).expect("open");
    admin.busy_timeout(Duration::from_secs(5)).expect("busy");
    admin
        .execute_batch(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'audit log down'); END",
        )
        .expect("break the log");

    // Until the writer has met the failure, queued entries are answered at
    // once; after it, the next one waits for the log and is refused.
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..500 {
        match store.record_queued(issued("outage", i)).await {
            Ok(()) => accepted.push(format!("outage-{i}")),
            Err(_) => {
                refused = Some(i);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("a queued record was refused while the log was down");
    assert!(!accepted.is_empty());

    admin
        .execute_batch("DROP TRIGGER audit_down")
        .expect("mend the log");
    store
        .flush_audit()
        .await
        .expect("stored once the log is back");
    // Healthy again: queued at once.
    store
        .record_queued(issued("outage", 1000))
        .await
        .expect("queued");
    store.flush_audit().await.expect("flushed");
    accepted.push("outage-1000".into());

    let mut stored = request_ids(&store, "outage").await;
    stored.sort();
    accepted.sort();
    assert_eq!(
        stored, accepted,
        "every answered entry once, the refused one ({refused}) not"
    );
}
