//! Two berth processes on one PostgreSQL or MariaDB database: concurrent
//! updates and default switches through both keep every invariant (one
//! default, no lost update, every change in both feeds once and in order),
//! and a change made through one replica reaches a watcher of the other
//! within a second.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::pb::{
    self, Provider, Registry, RegistryEventKind as Kind, Scope, WatchRegistriesRequest,
    WatchRegistriesResponse, registry_service_client::RegistryServiceClient,
};
use common::{Backend, TestDb};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// A berth process.
struct Replica {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Replica {
    fn spawn(db_url: &str, dir: &Path, name: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = dir.join(format!("berth-{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BERTH_LISTEN", &addr)
            .env("BERTH_DATABASE_URL", db_url)
            .env("BERTH_SECRET_KEY", common::TEST_KEY)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn berth");
        Replica { child, addr, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_serving(&mut self) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(ch) = Channel::from_shared(format!("http://{}", self.addr))
                .expect("uri")
                .connect()
                .await
                && let Ok(r) = HealthClient::new(ch)
                    .check(HealthCheckRequest {
                        service: "berth.v1.RegistryService".into(),
                    })
                    .await
                && r.into_inner().status == 1
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("berth exited early ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "berth did not become SERVING:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A client through the leak guard.
    async fn client(&self) -> RegistryServiceClient<Channel> {
        let upstream = self.addr.parse().expect("addr");
        let guarded = common::leak::proxy(upstream).await;
        RegistryServiceClient::new(
            Channel::from_shared(format!("http://{guarded}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect"),
        )
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry(address: &str) -> Registry {
    Registry {
        provider: Provider::Harbor as i32,
        address: address.into(),
        namespace: "team".into(),
        username: "robot".into(),
        secret: "replica-secret-never-shown".into(),
        scope: Some(Scope {
            all_projects: true,
            projects: Vec::new(),
        }),
        ..Default::default()
    }
}

async fn watch(
    c: &mut RegistryServiceClient<Channel>,
    from: Option<i64>,
) -> (Streaming<WatchRegistriesResponse>, i64) {
    let mut s = c
        .watch_registries(WatchRegistriesRequest {
            from_revision: from,
            initial_state: false,
            project: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut s, Duration::from_secs(5)).await;
    assert_eq!(first.kind(), Kind::Synced, "{first:?}");
    (s, first.revision)
}

async fn next(
    s: &mut Streaming<WatchRegistriesResponse>,
    wait: Duration,
) -> WatchRegistriesResponse {
    match tokio::time::timeout(wait, s.message()).await {
        Ok(Ok(Some(m))) => m,
        other => panic!("no watch message within {wait:?}: {other:?}"),
    }
}

/// (revision, kind, registry id, previous default) until `last`.
async fn drain(
    s: &mut Streaming<WatchRegistriesResponse>,
    last: i64,
) -> Vec<(i64, Kind, String, String)> {
    let mut out = Vec::new();
    loop {
        let m = next(s, Duration::from_secs(10)).await;
        if m.kind() == Kind::Progress {
            continue;
        }
        let id = m
            .registry
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        out.push((m.revision, m.kind(), id, m.previous_default_id.clone()));
        if m.revision >= last {
            return out;
        }
    }
}

const TASKS: usize = 4;
const OPS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres() {
    two_replicas(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_mariadb() {
    two_replicas(Backend::Mariadb).await
}

async fn two_replicas(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = Replica::spawn(&db.url, dir.path(), "a");
    let mut b = Replica::spawn(&db.url, dir.path(), "b");
    a.wait_serving().await;
    b.wait_serving().await;
    let mut ca = a.client().await;
    let mut cb = b.client().await;

    let mut ids = Vec::new();
    for i in 0..3 {
        let r = ca
            .create_registry(pb::CreateRegistryRequest {
                registry: Some(registry(&format!("r{i}.example.com"))),
            })
            .await
            .expect("create")
            .into_inner();
        ids.push(r.id);
    }
    // The first registry became the default.
    let (mut wa, r0) = watch(&mut ca, None).await;
    let (mut wb, r0b) = watch(&mut cb, Some(r0)).await;
    assert_eq!(r0, r0b);

    // Writers through both replicas at once.
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (ca, cb, ids) = (ca.clone(), cb.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut updates = HashMap::<String, i64>::new();
            for i in 0..OPS {
                let mut c = if (t + i) % 2 == 0 {
                    ca.clone()
                } else {
                    cb.clone()
                };
                let id = ids[(t * 7 + i) % ids.len()].clone();
                if i % 3 == 2 {
                    c.set_default_registry(pb::SetDefaultRegistryRequest { id })
                        .await
                        .expect("set default");
                    continue;
                }
                // Read-modify-write with the etag: a conflict is retried,
                // never lost.
                let mut tries = 0;
                loop {
                    tries += 1;
                    assert!(tries < 50, "update of {id} kept conflicting");
                    let mut r = c
                        .get_registry(pb::GetRegistryRequest { id: id.clone() })
                        .await
                        .expect("get")
                        .into_inner();
                    r.namespace = format!("t{t}/op{i}");
                    match c
                        .update_registry(pb::UpdateRegistryRequest {
                            registry: Some(r),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["namespace".into()],
                            }),
                        })
                        .await
                    {
                        Ok(_) => {
                            *updates.entry(id.clone()).or_default() += 1;
                            break;
                        }
                        Err(s) if s.code() == Code::Aborted => continue,
                        Err(s) => panic!("update failed: {s:?}"),
                    }
                }
            }
            updates
        }));
    }
    let mut updates = HashMap::<String, i64>::new();
    for t in tasks {
        for (id, n) in t.await.expect("writer") {
            *updates.entry(id).or_default() += n;
        }
    }
    let total_updates: i64 = updates.values().sum();
    assert_eq!(total_updates, (TASKS * (OPS - OPS / 3)) as i64);

    // Both feeds hold every change once, in order, with no gap.
    let (_, last) = watch(&mut cb, None).await;
    let seen_a = drain(&mut wa, last).await;
    let seen_b = drain(&mut wb, last).await;
    assert_eq!(seen_a, seen_b, "both replicas show the same feed");
    let revisions: Vec<i64> = seen_a.iter().map(|e| e.0).collect();
    assert_eq!(revisions, ((r0 + 1)..=last).collect::<Vec<_>>());

    // No lost update: each registry's revision counts its updates, and the
    // feed shows each of them once.
    for id in &ids {
        let n = updates.get(id).copied().unwrap_or(0);
        let r = ca
            .get_registry(pb::GetRegistryRequest { id: id.clone() })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(r.etag, format!("r{}", 1 + n), "registry {id}");
        let in_feed = seen_a
            .iter()
            .filter(|e| e.1 == Kind::Updated && &e.2 == id)
            .count() as i64;
        assert_eq!(in_feed, n, "updates of {id} in the feed");
    }

    // One default at any time: every switch names the one before it.
    let mut current = ids[0].clone();
    for (_, kind, id, previous) in &seen_a {
        if *kind == Kind::DefaultChanged {
            assert_eq!(previous, &current, "default switch chain");
            current = id.clone();
        }
    }
    for c in [&mut ca, &mut cb] {
        let all = c
            .list_registries(pb::ListRegistriesRequest::default())
            .await
            .expect("list")
            .into_inner()
            .registries;
        let defaults: Vec<_> = all.iter().filter(|r| r.is_default).map(|r| &r.id).collect();
        assert_eq!(defaults, [&current]);
    }

    // A change through one replica reaches a watcher of the other within a
    // second.
    let made = Instant::now();
    let created = ca
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(registry("late.example.com")),
        })
        .await
        .expect("create")
        .into_inner();
    let m = next(&mut wb, Duration::from_secs(1)).await;
    assert_eq!(
        (m.kind(), m.revision, m.registry.map(|r| r.id)),
        (Kind::Created, last + 1, Some(created.id))
    );
    eprintln!("cross-replica delivery took {:?}", made.elapsed());

    drop((wa, wb, ca, cb));
    drop((a, b));
    db.drop_db().await;
    let leaks = common::leak::take_leaks();
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
