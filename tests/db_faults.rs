//! The database goes away while berth serves: calls answer UNAVAILABLE
//! (never INTERNAL, never a hang), health turns NOT_SERVING, and when the
//! database is back berth serves again by itself, with every record whole.
//!
//! The outage is a TCP proxy between berth and the test's own database that
//! the test cuts and restores: stopping the shared PostgreSQL or MariaDB
//! would break every other test running in parallel.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth::pb::{self, Provider, Registry, Scope};
use common::{Backend, TestDb, TestServer};
use sea_orm::{ConnectionTrait, Statement};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A TCP proxy that can be cut (every connection closed, new ones refused)
/// and restored.
struct Proxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let down = Arc::new(AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (d, c) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut_rx = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, down, cut }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

fn upstream(backend: Backend) -> (SocketAddr, String) {
    let base = match backend {
        Backend::Postgres => common::postgres_base(),
        Backend::Mariadb => common::mysql_base(),
        Backend::Sqlite => unreachable!("SQLite is a file"),
    };
    let url = url::Url::parse(&base).expect("base url");
    let host = url.host_str().expect("host").to_string();
    let port = url.port().expect("port");
    (
        format!("{host}:{port}").parse().expect("ip:port"),
        format!("{host}:{port}"),
    )
}

async fn health(server: &TestServer) -> Option<i32> {
    let ch = tonic::transport::Channel::from_shared(server.endpoint())
        .ok()?
        .connect()
        .await
        .ok()?;
    HealthClient::new(ch)
        .check(HealthCheckRequest::default())
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

async fn wait_health(server: &TestServer, want: i32, within: Duration) {
    let start = Instant::now();
    while start.elapsed() < within {
        if health(server).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health did not become {want} within {within:?}");
}

fn registry(n: usize) -> Registry {
    Registry {
        provider: Provider::Harbor as i32,
        address: format!("r{n}.example.com"),
        namespace: "team".into(),
        username: "robot".into(),
        secret: "pw".into(),
        scope: Some(Scope {
            all_projects: false,
            projects: vec!["a".into(), "b".into()],
        }),
        ..Default::default()
    }
}

async fn database_outage(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (up, hostport) = upstream(backend);
    let proxy = Proxy::start(up).await;
    let proxied = db.url.replacen(&hostport, &proxy.addr.to_string(), 1);
    assert_ne!(proxied, db.url);
    let server = TestServer::start_on_with(db, |cfg| cfg.database_url = proxied).await;
    let regs = pb::registry_service_client::RegistryServiceClient::new(server.channel().await);

    // Writers run through the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (mut c, stop) = (regs.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut outcomes: Vec<(usize, Result<String, Code>)> = Vec::new();
            let mut n = w * 100_000;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let r = c
                    .create_registry(pb::CreateRegistryRequest {
                        registry: Some(registry(n)),
                    })
                    .await;
                outcomes.push((n, r.map(|r| r.into_inner().id).map_err(|s| s.code())));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    wait_health(&server, 2, Duration::from_secs(10)).await; // NOT_SERVING
    // A read during the outage: UNAVAILABLE, promptly.
    let start = Instant::now();
    let err = regs
        .clone()
        .list_registries(pb::ListRegistriesRequest::default())
        .await
        .expect_err("database is down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore();
    wait_health(&server, 1, Duration::from_secs(15)).await; // SERVING
    // Serving again without a restart.
    let mut ok_after = false;
    for _ in 0..50 {
        if regs
            .clone()
            .list_registries(pb::ListRegistriesRequest::default())
            .await
            .is_ok()
        {
            ok_after = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok_after, "berth serves again once the database is back");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.extend(w.await.expect("writer"));
    }

    // Every failure was UNAVAILABLE; some calls failed and some succeeded
    // on each side of the outage.
    let mut codes: HashMap<Code, usize> = HashMap::new();
    for (_, r) in &outcomes {
        *codes
            .entry(r.as_ref().err().copied().unwrap_or(Code::Ok))
            .or_default() += 1;
    }
    assert!(
        codes
            .keys()
            .all(|c| matches!(c, Code::Ok | Code::Unavailable)),
        "{codes:?}"
    );
    assert!(
        codes.get(&Code::Unavailable).copied().unwrap_or(0) > 0,
        "{codes:?}"
    );
    let last_ok = outcomes
        .iter()
        .rev()
        .take(4)
        .filter(|(_, r)| r.is_ok())
        .count();
    assert!(last_ok > 0, "writes succeed again: {codes:?}");

    // No half-written record: every registry has both scope rows and its
    // audit event, and every acknowledged create is there.
    let conn = server.db.connect().await;
    let backend_kind = conn.get_database_backend();
    let count = |sql: &str| {
        let conn = &conn;
        let sql = sql.to_string();
        async move {
            let row = conn
                .query_one_raw(Statement::from_string(backend_kind, sql))
                .await
                .expect("query")
                .expect("row");
            row.try_get_by_index::<i64>(0).expect("count")
        }
    };
    let registries = count("SELECT COUNT(*) FROM registries").await;
    let scope_rows = count("SELECT COUNT(*) FROM registry_projects").await;
    let audited = count("SELECT COUNT(*) FROM audit_events WHERE action = 'registry.create'").await;
    assert_eq!(scope_rows, registries * 2, "scope rows of every registry");
    assert_eq!(audited, registries, "one audit event per registry");
    let acknowledged = outcomes.iter().filter(|(_, r)| r.is_ok()).count() as i64;
    assert!(
        registries >= acknowledged && registries <= outcomes.len() as i64,
        "{registries} stored, {acknowledged} acknowledged"
    );
    drop(conn);
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage() {
    database_outage(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_outage() {
    database_outage(Backend::Mariadb).await
}
