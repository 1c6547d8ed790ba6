//! Secret-key rotation end to end, on SQLite, PostgreSQL and MariaDB:
//! secrets sealed under key A stay readable with the keyring "B,A";
//! `rotate-key` re-seals them all under B in one transaction without
//! touching revisions, even while a live replica updates secrets; then B
//! alone works and A alone is a clear startup error. One SQLite test runs
//! the real binary (`berth rotate-key`, `--check`, `generate-key`).

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use berth::config::Config;
use berth::pb::image_service_client::ImageServiceClient;
use berth::pb::{self, Provider, Registry, Scope};
use berth::secret::Cipher;
use common::{Backend, TEST_KEY, TestDb, TestServer};
use sea_orm::{ConnectionTrait, Statement};

/// Key A: the one every test server uses by default.
const KEY_A: &str = TEST_KEY;

fn key_id(key: &str) -> String {
    Cipher::from_base64(key)
        .expect("valid key")
        .key_id()
        .to_owned()
}

fn new_key() -> String {
    Cipher::generate_base64().as_str().to_owned()
}

/// The test config on `db`, with BERTH_SECRET_KEY set to `keys`.
fn config_keys(db: &TestDb, keys: &str) -> Config {
    let mut cfg = common::config(&db.url);
    cfg.secret_key = Some(keys.to_owned());
    cfg
}

/// A registry with `secret` (anonymous when empty).
fn registry(n: usize, secret: &str) -> Registry {
    Registry {
        provider: Provider::Other as i32,
        address: format!("registry-{n}.example.com"),
        namespace: "team".into(),
        username: if secret.is_empty() {
            String::new()
        } else {
            format!("robot-{n}")
        },
        secret: secret.into(),
        scope: Some(Scope {
            all_projects: true,
            projects: vec![],
        }),
        ..Default::default()
    }
}

/// The error that stops a server starting with `cfg`.
async fn startup_error(cfg: &Config) -> String {
    match berth::server::open_store(cfg).await {
        Ok(_) => panic!("the store opened"),
        Err(e) => format!("{e:#}"),
    }
}

async fn create(server: &TestServer, r: Registry) -> Registry {
    server
        .registries()
        .await
        .create_registry(pb::CreateRegistryRequest { registry: Some(r) })
        .await
        .expect("create")
        .into_inner()
}

/// The password GetCredentials hands out for each registry.
async fn passwords(server: &TestServer, ids: &[String]) -> Vec<String> {
    let mut c = ImageServiceClient::new(server.channel().await);
    let mut out = Vec::new();
    for id in ids {
        let cr = c
            .get_credentials(pb::GetCredentialsRequest {
                registry_id: id.clone(),
                project: "web".into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("credentials of {id}: {e}"))
            .into_inner();
        out.push(cr.password);
    }
    out
}

/// One stored row, as rotation may and may not change it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    key_id: Option<String>,
    ciphertext: Option<Vec<u8>>,
    revision: i64,
    update_time_us: i64,
    updated_by: String,
}

async fn rows(db: &TestDb) -> BTreeMap<String, Row> {
    let conn = db.connect().await;
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT id, secret_key_id, secret_ciphertext, revision, update_time_us, updated_by \
             FROM registries",
        ))
        .await
        .expect("rows");
    let out = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").expect("id"),
                Row {
                    key_id: r.try_get("", "secret_key_id").expect("secret_key_id"),
                    ciphertext: r.try_get("", "secret_ciphertext").expect("ciphertext"),
                    revision: r.try_get("", "revision").expect("revision"),
                    update_time_us: r.try_get("", "update_time_us").expect("update_time_us"),
                    updated_by: r.try_get("", "updated_by").expect("updated_by"),
                },
            )
        })
        .collect();
    let _ = conn.close().await;
    out
}

on_every_backend!(
    secrets_survive_rotation,
    rotation_keeps_a_concurrent_update,
    rotation_races_live_updates,
);

async fn secrets_survive_rotation(backend: Backend) {
    let key_b = new_key();
    let (id_a, id_b) = (key_id(KEY_A), key_id(&key_b));
    let both = format!("{key_b},{KEY_A}");

    // Under key A alone: three secrets and an anonymous registry.
    let server = TestServer::start(backend).await;
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    for (n, secret) in ["pw-zero", "", "pw-two", "pw-three"]
        .into_iter()
        .enumerate()
    {
        ids.push(create(&server, registry(n, secret)).await.id);
        secrets.push(secret.to_owned());
    }
    let db = server.stop().await;

    // A configured key that is malformed is a startup error naming where.
    let msg = startup_error(&config_keys(&db, &format!("{key_b},not-a-key"))).await;
    assert!(msg.contains("BERTH_SECRET_KEY: entry 2"), "{msg}");

    // B active, A after it: old secrets still open (by key id), new ones
    // are sealed by B.
    let server = TestServer::start_on_with(db, |cfg| cfg.secret_key = Some(both.clone())).await;
    assert_eq!(passwords(&server, &ids).await, secrets);
    ids.push(create(&server, registry(9, "pw-nine")).await.id);
    secrets.push("pw-nine".into());
    let db = server.stop().await;
    let before = rows(&db).await;
    assert_eq!(before[&ids[4]].key_id.as_deref(), Some(id_b.as_str()));
    assert_eq!(before[&ids[1]].key_id, None, "anonymous: no secret");

    let status = berth::server::key_status(&config_keys(&db, &both))
        .await
        .expect("status");
    assert_eq!(
        (status.current, status.old.clone(), status.missing.len()),
        (1, vec![(id_a.clone(), 3)], 0),
        "{status}"
    );
    assert!(!status.is_current());

    // Rotate (the function `berth rotate-key` runs), twice: idempotent.
    let done = berth::server::rotate_keys(&config_keys(&db, &both))
        .await
        .expect("rotates");
    assert_eq!(
        done.to_string(),
        format!("rotated 3 secrets to key {id_b}; 1 already current")
    );
    let again = berth::server::rotate_keys(&config_keys(&db, &both))
        .await
        .expect("rotates again");
    assert_eq!(
        again.to_string(),
        format!("rotated 0 secrets to key {id_b}; 4 already current")
    );

    // Every secret is under B now; nothing else changed: no new revision
    // (etag), update time or author.
    let after = rows(&db).await;
    assert_eq!(after.len(), before.len());
    for (id, row) in &after {
        let old = &before[id];
        assert_eq!(
            (row.revision, row.update_time_us, &row.updated_by),
            (old.revision, old.update_time_us, &old.updated_by),
            "rotation is not a registry change"
        );
        match &old.key_id {
            None => assert_eq!(row, old, "no secret, nothing to rotate"),
            Some(k) if *k == id_b => assert_eq!(row, old, "already current: untouched"),
            Some(_) => {
                assert_eq!(row.key_id.as_deref(), Some(id_b.as_str()));
                assert_ne!(row.ciphertext, old.ciphertext, "re-sealed");
            }
        }
    }
    assert!(
        berth::server::key_status(&config_keys(&db, &key_b))
            .await
            .expect("status")
            .is_current()
    );

    // B alone: everything opens.
    let server = TestServer::start_on_with(db, |cfg| cfg.secret_key = Some(key_b.clone())).await;
    assert_eq!(passwords(&server, &ids).await, secrets);
    let db = server.stop().await;

    // A alone after the rotation: a startup error naming the missing key,
    // never garbage credentials.
    let msg = startup_error(&config_keys(&db, KEY_A)).await;
    assert!(msg.contains(&id_b), "{msg}");
    assert!(msg.contains("not configured"), "{msg}");
    assert!(msg.contains("4 stored secret(s)"), "{msg}");
    assert!(
        msg.contains("after the active key"),
        "says what to do: {msg}"
    );
    // Rotation refuses too, and changes nothing.
    let err = berth::server::rotate_keys(&config_keys(&db, KEY_A))
        .await
        .expect_err("cannot rotate without B");
    assert!(format!("{err:#}").contains(&id_b), "{err:#}");
    assert_eq!(rows(&db).await, after);
    db.drop_db().await;
}

/// A replica still on key A changes a secret in a transaction that is open
/// while the rotation reads: the rotation's conditional UPDATE of that row
/// waits for it, finds the row changed, re-reads it and re-seals the new
/// secret, rather than writing back the old one. (On SQLite the rotation
/// waits for the write lock before reading, with the same outcome.)
async fn rotation_keeps_a_concurrent_update(backend: Backend) {
    use berth::secret::{Keyring, Secret};
    use berth::store::entity::registry;
    use sea_orm::sea_query::{Expr, ExprTrait};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};

    let key_b = new_key();
    let id_b = key_id(&key_b);
    let both = format!("{key_b},{KEY_A}");
    let server = TestServer::start(backend).await;
    let ids = vec![
        create(&server, registry(0, "pw-old")).await.id,
        create(&server, registry(1, "pw-other")).await.id,
    ];
    let db = server.stop().await;

    let conn = db.connect().await;
    let txn = conn.begin().await.expect("begin");
    let sealed = Keyring::from_list(KEY_A)
        .expect("key A")
        .seal(&Secret::new("pw-new"), &ids[0])
        .expect("seal");
    let changed = registry::Entity::update_many()
        .col_expr(
            registry::Column::SecretCiphertext,
            Expr::value(sealed.bytes),
        )
        .col_expr(registry::Column::SecretKeyId, Expr::value(sealed.key_id))
        .col_expr(
            registry::Column::Revision,
            Expr::col(registry::Column::Revision).add(1),
        )
        .filter(registry::Column::Id.eq(ids[0].as_str()))
        .exec(&txn)
        .await
        .expect("concurrent update");
    assert_eq!(changed.rows_affected, 1);

    let cfg = config_keys(&db, &both);
    let rotation = tokio::spawn(async move { berth::server::rotate_keys(&cfg).await });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(!rotation.is_finished(), "the rotation waits for the row");
    txn.commit().await.expect("commit");
    let done = rotation.await.expect("join").expect("rotation succeeds");
    assert_eq!(
        done.to_string(),
        format!("rotated 2 secrets to key {id_b}; 0 already current")
    );
    let _ = conn.close().await;

    let after = rows(&db).await;
    assert_eq!(after[&ids[0]].revision, 2, "the replica's update stands");
    assert_eq!(after[&ids[1]].revision, 1);
    let server = TestServer::start_on_with(db, |cfg| cfg.secret_key = Some(key_b.clone())).await;
    assert_eq!(passwords(&server, &ids).await, ["pw-new", "pw-other"]);
    server.finish().await;
}

/// A replica with the new keyring keeps changing secrets while rotations
/// run: no update is lost (rotation rewrites a row only if it still holds
/// the ciphertext it read), and every secret ends under the new key.
async fn rotation_races_live_updates(backend: Backend) {
    const REGISTRIES: usize = 12;
    const ROUNDS: usize = 6;
    let key_b = new_key();
    let id_b = key_id(&key_b);
    let both = format!("{key_b},{KEY_A}");

    let server = TestServer::start(backend).await;
    let mut ids = Vec::new();
    for n in 0..REGISTRIES {
        ids.push(create(&server, registry(n, &format!("pw-{n}-0"))).await.id);
    }
    let db = server.stop().await;
    let server = TestServer::start_on_with(db, |cfg| cfg.secret_key = Some(both.clone())).await;

    let updater = {
        let mut c = server.registries().await;
        let ids = ids.clone();
        tokio::spawn(async move {
            for round in 1..=ROUNDS {
                for (n, id) in ids.iter().enumerate() {
                    c.update_registry(pb::UpdateRegistryRequest {
                        registry: Some(Registry {
                            id: id.clone(),
                            secret: format!("pw-{n}-{round}"),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["secret".into()],
                        }),
                    })
                    .await
                    .expect("update during rotation");
                }
            }
        })
    };
    let cfg = config_keys(&server.db, &both);
    let mut rotated = 0;
    for _ in 0..4 {
        let done = berth::server::rotate_keys(&cfg)
            .await
            .expect("rotation succeeds beside live updates");
        rotated += done.rotated;
    }
    updater.await.expect("updater");
    assert!(rotated <= REGISTRIES as u64);

    let want: Vec<String> = (0..REGISTRIES)
        .map(|n| format!("pw-{n}-{ROUNDS}"))
        .collect();
    assert_eq!(passwords(&server, &ids).await, want, "no update was lost");
    let db = server.stop().await;
    for (id, row) in rows(&db).await {
        assert_eq!(row.key_id.as_deref(), Some(id_b.as_str()), "{id}");
        assert_eq!(
            row.revision,
            1 + ROUNDS as i64,
            "{id}: only the updates count"
        );
    }
    db.drop_db().await;
}

fn berth_cmd(db: &TestDb, key_file: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_remove("BERTH_SECRET_KEY")
        .env("BERTH_SECRET_KEY_FILE", key_file)
        .env("BERTH_DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run berth")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The real binary on SQLite with a key file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_command() {
    // generate-key prints a fresh, valid key.
    let generated: Vec<String> = (0..2)
        .map(|_| {
            let out = Command::new(env!("CARGO_BIN_EXE_berth"))
                .arg("generate-key")
                .output()
                .expect("generate-key");
            assert!(out.status.success());
            stdout(&out)
        })
        .collect();
    assert_ne!(generated[0], generated[1]);
    let key_b = generated[0].clone();
    let (id_a, id_b) = (key_id(KEY_A), key_id(&key_b));

    let server = TestServer::start(Backend::Sqlite).await;
    let ids = vec![
        create(&server, registry(0, "pw-zero")).await.id,
        create(&server, registry(1, "pw-one")).await.id,
    ];
    let db = server.stop().await;
    let key_file = db.dir().join("berth-keys");
    std::fs::write(
        &key_file,
        format!("# active: new key\n{key_b}\n\n# old key, until rotate-key has run\n{KEY_A}\n"),
    )
    .expect("key file");

    // Starting with the keyring works, and warns that a rotation is due.
    let out = berth_cmd(&db, &key_file, &["migrate"]);
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("2 stored secret(s) are still encrypted with older keys")
            && log.contains("berth rotate-key"),
        "{log}"
    );

    // --check: not current yet, exit non-zero with the counts.
    let out = berth_cmd(&db, &key_file, &["rotate-key", "--check"]);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("0 secrets under the active key {id_b}; 2 under older keys ({id_a}: 2)")
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run `berth rotate-key`"),
        "{out:?}"
    );

    let out = berth_cmd(&db, &key_file, &["rotate-key"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("rotated 2 secrets to key {id_b}; 0 already current")
    );
    let out = berth_cmd(&db, &key_file, &["rotate-key"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("rotated 0 secrets to key {id_b}; 2 already current")
    );
    let out = berth_cmd(&db, &key_file, &["rotate-key", "--check"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("2 secrets under the active key {id_b}; 0 under older keys")
    );
    for row in rows(&db).await.values() {
        assert_eq!(row.key_id.as_deref(), Some(id_b.as_str()));
        assert_eq!(row.revision, 1);
    }

    // The old key removed from the file: serves with B alone.
    std::fs::write(&key_file, format!("{key_b}  # rotated\n")).expect("key file");
    let server = TestServer::start_on_with(db, |cfg| {
        cfg.secret_key = None;
        cfg.secret_key_file = Some(key_file.clone());
    })
    .await;
    assert_eq!(passwords(&server, &ids).await, ["pw-zero", "pw-one"]);
    let db = server.stop().await;

    // Only the old key: a clear startup error naming the missing key id.
    std::fs::write(&key_file, format!("{KEY_A}\n")).expect("key file");
    let out = berth_cmd(&db, &key_file, &["migrate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&id_b) && err.contains("not configured"),
        "{err}"
    );

    // A malformed line: the error names the file and the line.
    std::fs::write(&key_file, format!("{key_b}\n\n{KEY_A}x\n")).expect("key file");
    let out = berth_cmd(&db, &key_file, &["rotate-key", "--check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&key_file.display().to_string()) && err.contains("line 3"),
        "{err}"
    );
    assert!(!err.contains(&key_b), "the key is never printed: {err}");
    db.drop_db().await;
}
