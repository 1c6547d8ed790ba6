//! Test harness: a real berth server on an ephemeral loopback port, backed
//! by a fresh database per test on SQLite, PostgreSQL or MariaDB.
#![allow(dead_code)]

pub mod leak;

use std::net::SocketAddr;

use berth::config::{Config, LogFormat};
use berth::pb::registry_service_client::RegistryServiceClient;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tonic::transport::Channel;

/// PostgreSQL server used by tests (trust auth). Override with
/// BERTH_TEST_POSTGRES.
pub fn postgres_base() -> String {
    std::env::var("BERTH_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// MariaDB/MySQL server used by tests. Override with BERTH_TEST_MYSQL.
pub fn mysql_base() -> String {
    std::env::var("BERTH_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A database backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

/// A fresh, empty database; dropped by [`TestDb::drop_db`].
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    name: String,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!("berth_t_{}", uuid::Uuid::new_v4().simple());
        let url = match backend {
            Backend::Sqlite => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("berth.db").display()
            ),
            Backend::Postgres => {
                admin(
                    &format!("{}/postgres", postgres_base()),
                    &format!("CREATE DATABASE {name}"),
                )
                .await;
                format!("{}/{name}", postgres_base())
            }
            Backend::Mariadb => {
                admin(
                    &mysql_base(),
                    &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
                )
                .await;
                format!("{}/{name}", mysql_base())
            }
        };
        TestDb {
            backend,
            url,
            name,
            _dir: dir,
        }
    }

    /// Connects straight to the database (to inspect rows).
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url)
            .await
            .expect("connect to test database")
    }

    /// Drops the database (best effort; scripts/test also sweeps leftovers).
    pub async fn drop_db(&self) {
        match self.backend {
            Backend::Sqlite => {}
            Backend::Postgres => {
                admin(
                    &format!("{}/postgres", postgres_base()),
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
                )
                .await
            }
            Backend::Mariadb => {
                admin(
                    &mysql_base(),
                    &format!("DROP DATABASE IF EXISTS {}", self.name),
                )
                .await
            }
        }
    }

    /// A dedicated temp directory for this test.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

async fn admin(url: &str, sql: &str) {
    let db = Database::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = db.close().await;
}

/// A running in-process berth server.
pub struct TestServer {
    /// Where tests talk to berth: the leak guard in front of it.
    pub addr: SocketAddr,
    /// berth's own listener.
    pub berth_addr: SocketAddr,
    pub db: TestDb,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The key every test server uses.
pub const TEST_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub fn config(db_url: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: db_url.to_string(),
        secret_key: Some(TEST_KEY.to_string()),
        secret_key_file: None,
        // Tests that mint ECR tokens point this at a stub with
        // `TestServer::start_with`; no test may reach the real AWS.
        ecr_endpoint: None,
        // Likewise for ACR and TCR access-key registries (tests/cloud_tokens.rs).
        acr_endpoint: None,
        tcr_endpoint: None,
        registry_timeout: 30,
        metrics_listen: None,
        log_format: LogFormat::Pretty,
        tls_cert: None,
        tls_key: None,
        tls_client_ca: None,
        tokens_file: None,
        policy_file: None,
        allow_unauthenticated: false,
        max_concurrent_rpcs: 512,
        rpc_timeout: 60,
        reload_interval_ms: 100,
        feed_retention: 10_000,
        feed_poll_ms: 100,
        feed_progress_ms: 10_000,
        audit_credentials: berth::config::AuditMode::Sync,
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Like [`TestServer::start`], with `configure` changing the
    /// [`config`] first, e.g. `cfg.ecr_endpoint = Some(stub.endpoint.clone())`.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestServer {
        let db = TestDb::new(backend).await;
        Self::start_on_with(db, configure).await
    }

    pub async fn start_on(db: TestDb) -> TestServer {
        Self::start_on_with(db, |_| {}).await
    }

    /// Starts a server on `db` with the [`config`] changed by `configure`.
    pub async fn start_on_with(db: TestDb, configure: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = config(&db.url);
        configure(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(berth::server::run(cfg, listener, async {
            let _ = rx.await;
        }));
        let guarded = leak::proxy(addr).await;
        let server = TestServer {
            addr: guarded,
            berth_addr: addr,
            db,
            stop: Some(tx),
            task: Some(task),
        };
        server.wait_serving().await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint())
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn registries(&self) -> RegistryServiceClient<Channel> {
        RegistryServiceClient::new(self.channel().await)
    }

    async fn wait_serving(&self) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(ch) = Channel::from_shared(self.endpoint())
                .expect("uri")
                .connect()
                .await
            {
                let mut h = HealthClient::new(ch);
                if let Ok(r) = h
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    && r.into_inner().status == 1
                {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not become SERVING"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully and hands back its database, to start
    /// another server on it.
    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server ran cleanly");
        }
        self.db
    }

    /// Stops the server gracefully and drops its database.
    pub async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server ran cleanly");
        }
        self.db.drop_db().await;
        let leaks = leak::take_leaks();
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    }
}

/// Runs `$test(backend)` as three tests: sqlite, postgres and mariadb.
#[macro_export]
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$test(common::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$test(common::Backend::Postgres).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() { super::$test(common::Backend::Mariadb).await }
        }
    )*};
}

/// The field names of a status's BadRequest violations.
pub fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
