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
    WatchRegistriesResponse, image_service_client::ImageServiceClient,
    registry_service_client::RegistryServiceClient,
};
use common::{Backend, TestDb};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// A berth process.
struct Replica {
    child: Child,
    addr: String,
    metrics: String,
    log: std::path::PathBuf,
    /// What it was spawned with, to spawn it again on other ports.
    spawned: (String, std::path::PathBuf, String),
}

/// Whether a process exited because a port picked by [`free_port`] was
/// taken before it could bind it (another test's connection got it).
fn lost_its_port(log: &str) -> bool {
    log.contains("Address already in use")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Replica {
    fn spawn(db_url: &str, dir: &Path, name: &str) -> Replica {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let metrics = format!("127.0.0.1:{}", free_port());
        let log = dir.join(format!("berth-{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BERTH_LISTEN", &addr)
            .env("BERTH_DATABASE_URL", db_url)
            .env("BERTH_SECRET_KEY", common::TEST_KEY)
            .env("BERTH_METRICS_LISTEN", &metrics)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn berth");
        Replica {
            child,
            addr,
            metrics,
            log,
            spawned: (db_url.to_owned(), dir.to_owned(), name.to_owned()),
        }
    }

    /// A counter's value from `/metrics` (0 when absent).
    async fn counter(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
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
                if lost_its_port(&self.logs()) && Instant::now() < deadline {
                    let (db_url, dir, name) = self.spawned.clone();
                    *self = Replica::spawn(&db_url, &dir, &name);
                    continue;
                }
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

    /// A channel through the leak guard.
    async fn channel(&self) -> Channel {
        let upstream = self.addr.parse().expect("addr");
        let guarded = common::leak::proxy(upstream).await;
        Channel::from_shared(format!("http://{guarded}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    async fn client(&self) -> RegistryServiceClient<Channel> {
        RegistryServiceClient::new(self.channel().await)
    }

    async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_follow_other_replicas_on_postgres() {
    caches_follow_other_replicas(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_follow_other_replicas_on_mariadb() {
    caches_follow_other_replicas(Backend::Mariadb).await
}

/// Polls `f` until it returns `Some`, for at most one second (the feed's
/// promise; its poll interval is 250 ms).
async fn within_a_second<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The hot paths (GetCredentials, GetDefaultRegistry) are served from each
/// replica's cache; a change through the other replica still shows within
/// a second, and at once on the replica that made it.
async fn caches_follow_other_replicas(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = Replica::spawn(&db.url, dir.path(), "a");
    let mut b = Replica::spawn(&db.url, dir.path(), "b");
    a.wait_serving().await;
    b.wait_serving().await;
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let (mut ia, mut ib) = (a.images().await, b.images().await);

    let x = ca
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(registry("x.example.com")),
        })
        .await
        .expect("create x")
        .into_inner();
    let y = ca
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(registry("y.example.com")),
        })
        .await
        .expect("create y")
        .into_inner();
    let creds = |id: &str| pb::GetCredentialsRequest {
        registry_id: id.into(),
        project: "web".into(),
        ..Default::default()
    };
    // Warm both replicas' caches, many times over.
    for _ in 0..20 {
        for c in [&mut ia, &mut ib] {
            let got = c.get_credentials(creds(&x.id)).await.expect("creds");
            assert_eq!(got.into_inner().password, "replica-secret-never-shown");
        }
        for c in [&mut ca, &mut cb] {
            let d = c
                .get_default_registry(pb::GetDefaultRegistryRequest {
                    project: "web".into(),
                })
                .await
                .expect("default")
                .into_inner();
            assert_eq!(d.id, x.id);
        }
    }

    // Served from the cache, not the database: one miss per registry.
    const HIT: &str = "berth_registry_cache_total{result=\"hit\"}";
    const MISS: &str = "berth_registry_cache_total{result=\"miss\"}";
    for r in [&a, &b] {
        let (hits, misses) = (r.counter(HIT).await, r.counter(MISS).await);
        assert!(
            hits >= 38.0 && misses <= 2.0,
            "hits {hits}, misses {misses}"
        );
    }

    // A new password through A: A answers with it at once, B within a
    // second.
    let mut rotated = x.clone();
    rotated.etag.clear();
    rotated.secret = "rotated-secret-never-shown".into();
    ca.update_registry(pb::UpdateRegistryRequest {
        registry: Some(rotated),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["secret".into()],
        }),
    })
    .await
    .expect("rotate");
    let got = ia.get_credentials(creds(&x.id)).await.expect("creds");
    assert_eq!(got.into_inner().password, "rotated-secret-never-shown");
    within_a_second("B serves the new password", || {
        let mut ib = ib.clone();
        let req = creds(&x.id);
        async move {
            let p = ib.get_credentials(req).await.ok()?.into_inner().password;
            (p == "rotated-secret-never-shown").then_some(())
        }
    })
    .await;

    // The default moves through B.
    cb.set_default_registry(pb::SetDefaultRegistryRequest { id: y.id.clone() })
        .await
        .expect("set default");
    let d = cb
        .get_default_registry(pb::GetDefaultRegistryRequest {
            project: "web".into(),
        })
        .await
        .expect("default")
        .into_inner();
    assert_eq!(d.id, y.id);
    within_a_second("A serves the new default", || {
        let mut ca = ca.clone();
        let want = y.id.clone();
        async move {
            let d = ca
                .get_default_registry(pb::GetDefaultRegistryRequest {
                    project: "web".into(),
                })
                .await
                .ok()?
                .into_inner();
            (d.id == want).then_some(())
        }
    })
    .await;

    // Deleted through A: B stops issuing its credentials.
    ca.delete_registry(pb::DeleteRegistryRequest {
        id: x.id.clone(),
        etag: String::new(),
        force: false,
    })
    .await
    .expect("delete");
    let gone = ia.get_credentials(creds(&x.id)).await.expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    within_a_second("B stops issuing for a deleted registry", || {
        let mut ib = ib.clone();
        let req = creds(&x.id);
        async move { ib.get_credentials(req).await.err() }
    })
    .await;

    drop((ca, cb, ia, ib));
    drop((a, b));
    db.drop_db().await;
    let leaks = common::leak::take_leaks();
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
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
