//! WatchRegistries: the change feed through the gRPC API. Every kind of
//! change arrives once, in order, with consecutive revisions; a watcher
//! resumes where it left off; a revision too old to resume is OUT_OF_RANGE;
//! a caller only sees what it may read; shutdown ends watches cleanly.

mod common;

use std::time::Duration;

use berth::auth::tokens;
use berth::pb::{
    self, Provider, Registry, RegistryEventKind as Kind, Scope, WatchRegistriesRequest,
    WatchRegistriesResponse, registry_service_client::RegistryServiceClient,
};
use common::{Backend, TestServer, violations};
use sea_orm::{ConnectionTrait, Statement};
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

const SECRET: &str = "watch-secret-never-in-events";

fn registry(address: &str, projects: &[&str]) -> Registry {
    Registry {
        provider: Provider::Harbor as i32,
        address: address.into(),
        namespace: "team".into(),
        username: "robot".into(),
        secret: SECRET.into(),
        scope: Some(Scope {
            all_projects: projects.is_empty(),
            projects: projects.iter().map(|p| p.to_string()).collect(),
        }),
        ..Default::default()
    }
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// An open watch.
struct Watch {
    stream: Streaming<WatchRegistriesResponse>,
}

impl Watch {
    async fn open(
        client: &mut RegistryServiceClient<Channel>,
        req: Request<WatchRegistriesRequest>,
    ) -> Result<Watch, tonic::Status> {
        let stream = client.watch_registries(req).await?.into_inner();
        Ok(Watch { stream })
    }

    /// The next message; panics after 5 s without one.
    async fn next(&mut self) -> WatchRegistriesResponse {
        match tokio::time::timeout(Duration::from_secs(5), self.stream.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => panic!("the watch ended"),
            Ok(Err(s)) => panic!("the watch failed: {s:?}"),
            Err(_) => panic!("no watch message within 5 s"),
        }
    }

    /// The next message must be of `kind` at `revision`.
    async fn expect(&mut self, kind: Kind, revision: i64) -> WatchRegistriesResponse {
        let m = self.next().await;
        assert_eq!(
            (m.kind(), m.revision),
            (kind, revision),
            "unexpected message {m:?}"
        );
        m
    }

    /// Nothing arrives within `wait`.
    async fn quiet(&mut self, wait: Duration) {
        if let Ok(m) = tokio::time::timeout(wait, self.stream.message()).await {
            panic!("expected no message, got {m:?}");
        }
    }

    /// How the stream ends.
    async fn end(&mut self) -> tonic::Status {
        match tokio::time::timeout(Duration::from_secs(10), self.stream.message()).await {
            Ok(Err(s)) => s,
            other => panic!("expected the watch to end with an error, got {other:?}"),
        }
    }
}

fn watch_req(from: Option<i64>, initial_state: bool, project: &str) -> WatchRegistriesRequest {
    WatchRegistriesRequest {
        from_revision: from,
        initial_state,
        project: project.into(),
    }
}

fn as_actor<T>(msg: T, actor: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("x-berth-actor", actor.parse().expect("ascii"));
    r
}

on_every_backend!(feed_follows_every_change, old_revisions_are_out_of_range);

async fn feed_follows_every_change(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.registries().await;

    let mut live = Watch::open(&mut c, Request::new(watch_req(None, false, "")))
        .await
        .expect("watch");
    live.expect(Kind::Synced, 0).await;

    // Created; the first registry also becomes the default.
    let a = c
        .create_registry(as_actor(
            pb::CreateRegistryRequest {
                registry: Some(registry("a.example.com", &["p1"])),
            },
            "alice",
        ))
        .await
        .expect("create a")
        .into_inner();
    // Updates below send no etag (except the stale one).
    let mut a_any = a.clone();
    a_any.etag.clear();
    let m = live.expect(Kind::Created, 1).await;
    let snap = m.registry.expect("registry");
    assert_eq!(snap.id, a.id);
    assert!(snap.has_secret);
    assert!(snap.secret.is_empty(), "events never carry the secret");
    assert_eq!(m.actor, "alice");
    assert!(m.time.is_some());
    let m = live.expect(Kind::DefaultChanged, 2).await;
    assert_eq!(m.registry.expect("registry").id, a.id);
    assert_eq!(m.previous_default_id, "");

    // TLS settings changed: its own kind, so runners reconfigure.
    let mut tls_off = a_any.clone();
    tls_off.tls = Some(pb::TlsSettings {
        verify: Some(false),
        ca_cert_pem: String::new(),
    });
    c.update_registry(pb::UpdateRegistryRequest {
        registry: Some(tls_off),
        update_mask: mask(&["tls.verify"]),
    })
    .await
    .expect("tls off");
    let m = live.expect(Kind::TlsChanged, 3).await;
    assert_eq!(m.changed_fields, ["tls.verify"]);
    assert_eq!(
        m.registry.and_then(|r| r.tls).and_then(|t| t.verify),
        Some(false)
    );

    // Other fields, and a new secret (named, never shown).
    let mut renamed = a_any.clone();
    renamed.username = "robot2".into();
    c.update_registry(pb::UpdateRegistryRequest {
        registry: Some(renamed),
        update_mask: mask(&["username"]),
    })
    .await
    .expect("username");
    let m = live.expect(Kind::Updated, 4).await;
    assert_eq!(m.changed_fields, ["username"]);
    let mut rekey = a_any.clone();
    rekey.secret = "another-secret-never-in-events".into();
    let a_now = c
        .update_registry(pb::UpdateRegistryRequest {
            registry: Some(rekey),
            update_mask: mask(&["secret"]),
        })
        .await
        .expect("secret")
        .into_inner();
    let m = live.expect(Kind::Updated, 5).await;
    assert_eq!(m.changed_fields, ["secret"]);
    assert_eq!(m.registry.expect("registry").etag, a_now.etag);

    // Refused writes leave no trace in the feed.
    let dup = c
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(registry("a.example.com", &["p1"])),
        })
        .await
        .expect_err("duplicate");
    assert_eq!(dup.code(), Code::AlreadyExists);
    let mut stale = a.clone();
    stale.username = "late".into();
    let stale = c
        .update_registry(pb::UpdateRegistryRequest {
            registry: Some(stale),
            update_mask: mask(&["username"]),
        })
        .await
        .expect_err("stale etag");
    assert_eq!(stale.code(), Code::Aborted);

    // A second registry, then the default moves to it (once: setting it
    // again changes nothing and says nothing).
    let b = c
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(registry("b.example.com", &[])),
        })
        .await
        .expect("create b")
        .into_inner();
    let m = live.expect(Kind::Created, 6).await;
    assert_eq!(m.registry.expect("registry").id, b.id);
    for _ in 0..2 {
        c.set_default_registry(pb::SetDefaultRegistryRequest { id: b.id.clone() })
            .await
            .expect("set default");
    }
    let m = live.expect(Kind::DefaultChanged, 7).await;
    assert_eq!(m.registry.expect("registry").id, b.id);
    assert_eq!(m.previous_default_id, a.id);

    c.delete_registry(pb::DeleteRegistryRequest {
        id: a.id.clone(),
        etag: String::new(),
        force: false,
    })
    .await
    .expect("delete a");
    let m = live.expect(Kind::Deleted, 8).await;
    assert_eq!(m.registry.expect("registry").id, a.id);
    live.quiet(Duration::from_millis(300)).await;

    // Resume after revision 3: exactly 4..=8, in order, then SYNCED.
    let mut resumed = Watch::open(&mut c, Request::new(watch_req(Some(3), false, "")))
        .await
        .expect("resume");
    for (rev, kind) in [
        (4, Kind::Updated),
        (5, Kind::Updated),
        (6, Kind::Created),
        (7, Kind::DefaultChanged),
        (8, Kind::Deleted),
    ] {
        resumed.expect(kind, rev).await;
    }
    resumed.expect(Kind::Synced, 8).await;
    // Resuming at the head is just SYNCED; 0 replays everything.
    Watch::open(&mut c, Request::new(watch_req(Some(8), false, "")))
        .await
        .expect("at head")
        .expect(Kind::Synced, 8)
        .await;
    let mut all = Watch::open(&mut c, Request::new(watch_req(Some(0), false, "")))
        .await
        .expect("from 0");
    for rev in 1..=8 {
        assert_eq!(all.next().await.revision, rev);
    }
    all.expect(Kind::Synced, 8).await;

    // The initial state: what exists now, then SYNCED, then live changes.
    let mut fresh = Watch::open(&mut c, Request::new(watch_req(None, true, "p1")))
        .await
        .expect("initial state");
    let m = fresh.expect(Kind::Existing, 8).await;
    let existing = m.registry.expect("registry");
    assert_eq!(existing.id, b.id);
    assert!(existing.is_default);
    fresh.expect(Kind::Synced, 8).await;
    let mut b2 = b.clone();
    b2.etag.clear();
    b2.namespace = "other".into();
    c.update_registry(pb::UpdateRegistryRequest {
        registry: Some(b2),
        update_mask: mask(&["namespace"]),
    })
    .await
    .expect("update b");
    for w in [&mut live, &mut fresh, &mut resumed] {
        let m = w.expect(Kind::Updated, 9).await;
        assert_eq!(m.changed_fields, ["namespace"]);
    }

    // Bad requests name their field.
    for (req, field) in [
        (watch_req(Some(10), false, ""), "from_revision"),
        (watch_req(Some(-1), false, ""), "from_revision"),
        (watch_req(Some(1), true, ""), "initial_state"),
        (watch_req(None, false, "Not A Project!"), "project"),
    ] {
        let err = Watch::open(&mut c, Request::new(req))
            .await
            .err()
            .expect("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(violations(&err), [field]);
    }

    // Shutdown ends open watches with UNAVAILABLE and where to resume.
    let db = server.stop().await;
    let end = live.end().await;
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(end.message().contains("resume from revision 9"), "{end:?}");
    db.drop_db().await;
    let leaks = common::leak::take_leaks();
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

async fn old_revisions_are_out_of_range(backend: Backend) {
    let server = TestServer::start_with(backend, |cfg| cfg.feed_retention = 5).await;
    let mut c = server.registries().await;
    let r = c
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(registry("r.example.com", &["p1"])),
        })
        .await
        .expect("create")
        .into_inner();
    // created + default_changed + 20 updates = revision 22.
    for i in 0..20 {
        let mut u = r.clone();
        u.etag.clear();
        u.namespace = format!("ns{i}");
        c.update_registry(pb::UpdateRegistryRequest {
            registry: Some(u),
            update_mask: mask(&["namespace"]),
        })
        .await
        .expect("update");
    }
    let err = Watch::open(&mut c, Request::new(watch_req(Some(1), false, "")))
        .await
        .err()
        .expect("too old");
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(
        err.message().contains("list the registries again"),
        "{err:?}"
    );
    {
        use tonic_types::StatusExt;
        assert_eq!(
            err.get_details_error_info().map(|i| i.reason),
            Some("REVISION_COMPACTED".to_string())
        );
    }
    // Recent revisions still resume.
    let mut w = Watch::open(&mut c, Request::new(watch_req(Some(19), false, "")))
        .await
        .expect("recent");
    for rev in 20..=22 {
        let m = w.expect(Kind::Updated, rev).await;
        assert_eq!(m.changed_fields, ["namespace"]);
    }
    w.expect(Kind::Synced, 22).await;
    // The table holds about `retention` events, not every change ever made.
    let conn = server.db.connect().await;
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM registry_events",
        ))
        .await
        .expect("count")
        .expect("row");
    let n: i64 = row.try_get("", "n").expect("n");
    assert!((5..=6).contains(&n), "{n} events kept");
    drop(conn);
    server.finish().await;
}

// --- visibility -------------------------------------------------------------

const POLICY: &str = r#"
[[grant]]
identity = "root"
roles = ["admin", "reader"]
projects = ["*"]

[[grant]]
identity = "reader-a"
roles = ["reader"]
projects = ["a"]
"#;

fn token_of(identity: &str) -> String {
    format!("berth_watch_token_of_{identity}")
}

fn as_<T>(identity: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token_of(identity))
            .parse()
            .expect("ascii"),
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_only_what_they_may_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<String> = ["root", "reader-a", "stranger"]
        .iter()
        .map(|i| tokens::line_for(i, &token_of(i)))
        .collect();
    let (t, p) = (dir.path().join("tokens"), dir.path().join("policy.toml"));
    std::fs::write(&t, lines.join("\n")).expect("tokens");
    std::fs::write(&p, POLICY).expect("policy");
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.tokens_file = Some(t);
        cfg.policy_file = Some(p);
        cfg.feed_progress_ms = 200;
    })
    .await;
    let mut c = server.registries().await;
    let create = |address: &str, projects: &[&str]| {
        as_(
            "root",
            pb::CreateRegistryRequest {
                registry: Some(registry(address, projects)),
            },
        )
    };
    let seen_a = c
        .create_registry(create("seen.example.com", &["a"]))
        .await
        .expect("create")
        .into_inner();
    c.create_registry(create("hidden.example.com", &["b"]))
        .await
        .expect("create");
    // Revisions so far: 1 created, 2 default changed, 3 created.

    // Initial state: only the registry serving project a.
    let mut w = Watch::open(&mut c, as_("reader-a", watch_req(None, true, "")))
        .await
        .expect("watch");
    let m = w.expect(Kind::Existing, 3).await;
    assert_eq!(m.registry.expect("registry").id, seen_a.id);
    w.expect(Kind::Synced, 3).await;

    // An invisible change: no event, but PROGRESS moves the resume point.
    c.create_registry(create("hidden2.example.com", &["b"]))
        .await
        .expect("create");
    w.expect(Kind::Progress, 4).await;

    // A visible registry, then its scope moves away: LEFT_SCOPE.
    let moving = c
        .create_registry(create("moving.example.com", &["a"]))
        .await
        .expect("create")
        .into_inner();
    let m = w.expect(Kind::Created, 5).await;
    assert_eq!(m.registry.expect("registry").id, moving.id);
    let mut away = moving.clone();
    away.scope = Some(Scope {
        all_projects: false,
        projects: vec!["b".into()],
    });
    c.update_registry(as_(
        "root",
        pb::UpdateRegistryRequest {
            registry: Some(away),
            update_mask: mask(&["scope"]),
        },
    ))
    .await
    .expect("move away");
    let m = w.expect(Kind::LeftScope, 6).await;
    assert_eq!(m.changed_fields, ["scope"]);
    assert_eq!(m.registry.expect("registry").id, moving.id);
    // While out of view, its changes are not shown.
    let mut renamed = moving.clone();
    renamed.etag.clear();
    renamed.scope = None;
    renamed.namespace = "elsewhere".into();
    c.update_registry(as_(
        "root",
        pb::UpdateRegistryRequest {
            registry: Some(renamed),
            update_mask: mask(&["namespace"]),
        },
    ))
    .await
    .expect("rename");
    w.expect(Kind::Progress, 7).await;

    // Refusals.
    let denied = Watch::open(&mut c, as_("reader-a", watch_req(None, false, "b")))
        .await
        .err()
        .expect("project b");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = Watch::open(&mut c, as_("stranger", watch_req(None, false, "")))
        .await
        .err()
        .expect("no grants");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = Watch::open(&mut c, Request::new(watch_req(None, false, "")))
        .await
        .err()
        .expect("anonymous");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    drop(w);
    server.finish().await;
}
