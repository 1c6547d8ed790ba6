//! Several replicas starting at once on one empty database: every one of
//! them comes up, and the schema is migrated exactly once.

mod common;

use std::sync::Arc;

use berth::secret::Keyring;
use berth::store::Store;
use common::{Backend, TestDb};
use sea_orm::{ConnectionTrait, Statement};

on_every_backend!(concurrent_migrations);

async fn concurrent_migrations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cipher = Arc::new(Keyring::from_list(common::TEST_KEY).expect("key"));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        let cipher = cipher.clone();
        tasks.push(tokio::spawn(async move {
            let store = Store::connect(&url, cipher).await.expect("connect");
            store.migrate().await
        }));
    }
    for t in tasks {
        t.await
            .expect("join")
            .expect("every replica migrates cleanly");
    }
    let conn = db.connect().await;
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) - COUNT(DISTINCT version) AS n FROM seaql_migrations",
        ))
        .await
        .expect("count")
        .expect("row");
    let n: i64 = row.try_get("", "n").expect("n");
    assert_eq!(n, 0, "each migration is recorded once");
    db.drop_db().await;
}
