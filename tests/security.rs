//! Who may call berth and what they may do: bearer tokens, the policy and
//! its roles per project, the audit log, and the startup rules that keep an
//! unauthenticated berth on loopback.

mod common;

use std::path::Path;
use std::time::Duration;

use berth::auth::tokens;
use berth::pb::{
    self, Provider, Registry, Scope, audit_service_client::AuditServiceClient,
    image_service_client::ImageServiceClient, registry_service_client::RegistryServiceClient,
};
use common::{Backend, TestServer};
use tonic::{Code, Request};

const PASSWORD: &str = "s3cr3t-audit-never-holds-this";

/// Identities, their tokens and the policy of these tests.
struct People {
    dir: tempfile::TempDir,
}

const POLICY: &str = r#"
[[grant]]
identity = "root"
roles = ["admin", "reader"]
projects = ["*"]

[[grant]]
identity = "team-admin"
roles = ["admin", "reader"]
projects = ["a", "b"]

[[grant]]
identity = "runner"
roles = ["reader", "credentials"]
projects = ["a"]

[[grant]]
identity = "reader-b"
roles = ["reader"]
projects = ["b"]
"#;

fn token_of(identity: &str) -> String {
    format!("berth_test_token_of_{identity}")
}

impl People {
    fn new() -> People {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines: Vec<String> = ["root", "team-admin", "runner", "reader-b", "stranger"]
            .iter()
            .map(|i| tokens::line_for(i, &token_of(i)))
            .collect();
        std::fs::write(dir.path().join("tokens"), lines.join("\n")).expect("tokens");
        std::fs::write(dir.path().join("policy.toml"), POLICY).expect("policy");
        People { dir }
    }

    fn tokens(&self) -> std::path::PathBuf {
        self.dir.path().join("tokens")
    }

    fn policy(&self) -> std::path::PathBuf {
        self.dir.path().join("policy.toml")
    }
}

/// `msg` sent as `identity` (its bearer token), with a request id.
fn as_<T>(identity: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token_of(identity))
            .parse()
            .expect("ascii"),
    );
    r.metadata_mut().insert(
        "x-request-id",
        format!("req-{identity}").parse().expect("ascii"),
    );
    r
}

fn registry(address: &str, projects: &[&str]) -> Registry {
    Registry {
        provider: Provider::Harbor as i32,
        address: address.into(),
        namespace: "team".into(),
        username: "robot".into(),
        secret: PASSWORD.into(),
        scope: Some(Scope {
            all_projects: projects.is_empty(),
            projects: projects.iter().map(|p| p.to_string()).collect(),
        }),
        ..Default::default()
    }
}

async fn start(backend: Backend, people: &People) -> TestServer {
    let (t, p) = (people.tokens(), people.policy());
    TestServer::start_with(backend, |cfg| {
        cfg.tokens_file = Some(t);
        cfg.policy_file = Some(p);
    })
    .await
}

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

async fn authorization_rules(backend: Backend) {
    let people = People::new();
    let server = start(backend, &people).await;
    let ch = server.channel().await;
    let mut regs = RegistryServiceClient::new(ch.clone());
    let mut images = ImageServiceClient::new(ch.clone());
    let mut audit = AuditServiceClient::new(ch);

    // No token, a wrong token: UNAUTHENTICATED. Health needs none.
    let err = regs
        .list_registries(pb::ListRegistriesRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let mut bad = Request::new(pb::ListRegistriesRequest::default());
    bad.metadata_mut()
        .insert("authorization", "Bearer nope".parse().expect("ascii"));
    assert_eq!(code(regs.list_registries(bad).await), Code::Unauthenticated);
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health needs no identity");

    // A valid token the policy does not name: only data-free calls.
    assert_eq!(
        code(
            regs.list_registries(as_("stranger", pb::ListRegistriesRequest::default()))
                .await
        ),
        Code::PermissionDenied
    );
    images
        .parse_image_reference(as_(
            "stranger",
            pb::ParseImageReferenceRequest {
                reference: "nginx".into(),
            },
        ))
        .await
        .expect("parse needs no role");

    // root creates one registry per scope.
    let create = |who: &'static str, r: Registry| {
        let mut c = regs.clone();
        async move {
            c.create_registry(as_(who, pb::CreateRegistryRequest { registry: Some(r) }))
                .await
                .map(|r| r.into_inner())
        }
    };
    let reg_a = create("root", registry("a.example.com", &["a"]))
        .await
        .expect("a");
    let reg_b = create("root", registry("b.example.com", &["b"]))
        .await
        .expect("b");
    let reg_all = create("root", registry("all.example.com", &[]))
        .await
        .expect("all");
    assert_eq!(
        reg_a.updated_by, "root",
        "the identity replaces x-berth-actor"
    );

    // team-admin manages registries inside its projects only.
    let team = create("team-admin", registry("t.example.com", &["a", "b"]))
        .await
        .expect("inside a, b");
    assert_eq!(team.updated_by, "team-admin");
    for (r, why) in [
        (registry("c.example.com", &["a", "c"]), "outside"),
        (registry("d.example.com", &[]), "all projects"),
    ] {
        let e = create("team-admin", r).await.expect_err(why);
        assert_eq!(e.code(), Code::PermissionDenied, "{why}: {e:?}");
        assert!(e.message().contains("team-admin"), "{}", e.message());
    }
    let mut default_req = as_(
        "team-admin",
        pb::SetDefaultRegistryRequest {
            id: team.id.clone(),
        },
    );
    default_req.metadata_mut().remove("x-request-id");
    assert_eq!(
        code(regs.set_default_registry(default_req).await),
        Code::PermissionDenied
    );
    let widen = pb::UpdateRegistryRequest {
        registry: Some(Registry {
            id: team.id.clone(),
            scope: Some(Scope {
                all_projects: false,
                projects: vec!["a".into(), "z".into()],
            }),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["scope".into()],
        }),
    };
    assert_eq!(
        code(regs.update_registry(as_("team-admin", widen.clone())).await),
        Code::PermissionDenied,
        "may not widen a scope beyond its projects"
    );
    assert_eq!(
        code(regs.update_registry(as_("root", widen)).await),
        Code::Ok
    );
    assert_eq!(
        code(
            regs.delete_registry(as_(
                "team-admin",
                pb::DeleteRegistryRequest {
                    id: team.id.clone(),
                    etag: String::new(),
                    force: false,
                }
            ))
            .await
        ),
        Code::PermissionDenied,
        "now reaches project z"
    );

    // runner reads what project a may use, and nothing else.
    let seen: Vec<String> = regs
        .list_registries(as_("runner", pb::ListRegistriesRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .registries
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(seen.contains(&reg_a.id) && seen.contains(&reg_all.id) && seen.contains(&team.id));
    assert!(
        !seen.contains(&reg_b.id),
        "runner does not see b's registry"
    );
    assert!(seen.iter().all(|id| !id.is_empty()));
    assert_eq!(
        code(
            regs.get_registry(as_(
                "runner",
                pb::GetRegistryRequest {
                    id: reg_b.id.clone()
                }
            ))
            .await
        ),
        Code::NotFound,
        "an invisible registry looks missing"
    );
    assert_eq!(
        code(
            regs.list_registries(as_(
                "runner",
                pb::ListRegistriesRequest {
                    project: "b".into(),
                    ..Default::default()
                }
            ))
            .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            regs.update_registry(as_(
                "runner",
                pb::UpdateRegistryRequest {
                    registry: Some(Registry {
                        id: reg_a.id.clone(),
                        namespace: "x".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["namespace".into()]
                    }),
                }
            ))
            .await
        ),
        Code::PermissionDenied,
        "a reader may not change what it sees"
    );

    // Credentials: granted for project a from a's registry.
    let creds = |who: &'static str, id: &str, project: &str| {
        let mut c = images.clone();
        let req = pb::GetCredentialsRequest {
            registry_id: id.to_string(),
            project: project.into(),
            ..Default::default()
        };
        async move {
            c.get_credentials(as_(who, req))
                .await
                .map(|r| r.into_inner())
        }
    };
    let got = creds("runner", &reg_a.id, "a").await.expect("granted");
    assert_eq!(got.password, PASSWORD);
    // b's registry, a missing registry: the same denial, nothing revealed.
    let missing = uuid::Uuid::now_v7().to_string();
    let e1 = creds("runner", &reg_b.id, "a")
        .await
        .expect_err("b's registry");
    let e2 = creds("runner", &missing, "a").await.expect_err("missing");
    assert_eq!(e1.code(), Code::PermissionDenied);
    assert_eq!(e2.code(), Code::PermissionDenied);
    assert_eq!(
        e1.message().replace(&reg_b.id, "ID"),
        e2.message().replace(&missing, "ID"),
        "a missing registry and a hidden one are told apart by nothing"
    );
    // A project the runner holds no credentials role on; a reader.
    assert_eq!(
        creds("runner", &reg_all.id, "b")
            .await
            .expect_err("b")
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        creds("reader-b", &reg_b.id, "b")
            .await
            .expect_err("reader")
            .code(),
        Code::PermissionDenied
    );
    // root sees everything, so "missing" is NOT_FOUND for it... but root
    // holds no credentials role, which is checked first.
    assert_eq!(
        creds("root", &missing, "a").await.expect_err("root").code(),
        Code::PermissionDenied
    );

    // The audit log: root only.
    assert_eq!(
        code(
            audit
                .list_audit_events(as_("team-admin", pb::ListAuditEventsRequest::default()))
                .await
        ),
        Code::PermissionDenied
    );
    let events = audit
        .list_audit_events(as_(
            "root",
            pb::ListAuditEventsRequest {
                action: "credentials.issue".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("audit")
        .into_inner()
        .events;
    let outcomes: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e.actor.as_str(), e.outcome.as_str(), e.registry_id.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("root", "denied", missing.as_str()),
            ("reader-b", "denied", reg_b.id.as_str()),
            ("runner", "denied", reg_all.id.as_str()),
            ("runner", "denied", missing.as_str()),
            ("runner", "denied", reg_b.id.as_str()),
            ("runner", "granted", reg_a.id.as_str()),
        ],
        "every issuance, newest first"
    );
    let granted = events.last().expect("granted");
    assert_eq!(granted.project, "a");
    assert_eq!(granted.request_id, "req-runner");
    assert!(granted.detail.contains("HARBOR"), "{}", granted.detail);
    let denied = audit
        .list_audit_events(as_(
            "root",
            pb::ListAuditEventsRequest {
                outcome: "denied".into(),
                actor: "team-admin".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("denied changes")
        .into_inner()
        .events;
    let actions: Vec<&str> = denied.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "registry.delete",
            "registry.update",
            "registry.set_default",
            "registry.create",
            "registry.create"
        ]
    );
    // The set_default call carried no x-request-id: berth made one up.
    assert_eq!(denied[2].request_id.len(), 36, "{:?}", denied[2]);
    let all = audit
        .list_audit_events(as_(
            "root",
            pb::ListAuditEventsRequest {
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .expect("all")
        .into_inner()
        .events;
    for e in &all {
        assert!(
            !format!("{e:?}").contains(PASSWORD),
            "audit holds no secret: {e:?}"
        );
    }
    server.finish().await;
}

async fn audit_log_follows_changes(backend: Backend) {
    let people = People::new();
    let server = start(backend, &people).await;
    let ch = server.channel().await;
    let mut regs = RegistryServiceClient::new(ch.clone());
    let mut audit = AuditServiceClient::new(ch);
    let before = audit
        .list_audit_events(as_("root", pb::ListAuditEventsRequest::default()))
        .await
        .expect("empty log")
        .into_inner();
    assert!(before.events.is_empty() && before.next_page_token.is_empty());

    let r1 = create(&mut regs, "one.example.com", &["a"]).await;
    // A refused duplicate writes nothing: the event is in the change's
    // transaction.
    let dup = regs
        .create_registry(as_(
            "root",
            pb::CreateRegistryRequest {
                registry: Some(registry("one.example.com", &["a"])),
            },
        ))
        .await
        .expect_err("duplicate");
    assert_eq!(dup.code(), Code::AlreadyExists);
    let r2 = regs
        .create_registry(as_(
            "team-admin",
            pb::CreateRegistryRequest {
                registry: Some(registry("two.example.com", &["b"])),
            },
        ))
        .await
        .expect("create 2")
        .into_inner();
    regs.update_registry(as_(
        "team-admin",
        pb::UpdateRegistryRequest {
            registry: Some(Registry {
                id: r2.id.clone(),
                secret: "rotated-password".into(),
                namespace: "other".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["secret".into(), "namespace".into()],
            }),
        },
    ))
    .await
    .expect("update");
    regs.set_default_registry(as_(
        "root",
        pb::SetDefaultRegistryRequest { id: r2.id.clone() },
    ))
    .await
    .expect("default");
    regs.delete_registry(as_(
        "root",
        pb::DeleteRegistryRequest {
            id: r1.id.clone(),
            etag: String::new(),
            force: false,
        },
    ))
    .await
    .expect("delete");

    // Newest first, in pages of two.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = audit
            .list_audit_events(as_(
                "root",
                pb::ListAuditEventsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.events.len() <= 2);
        seen.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let got: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.registry_id.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("registry.delete", "root", r1.id.as_str()),
            ("registry.set_default", "root", r2.id.as_str()),
            ("registry.update", "team-admin", r2.id.as_str()),
            ("registry.create", "team-admin", r2.id.as_str()),
            ("registry.create", "root", r1.id.as_str()),
        ]
    );
    assert!(seen.windows(2).all(|w| w[0].id > w[1].id));
    let update = &seen[2];
    assert!(
        update.detail.contains("namespace=other") && update.detail.contains("secret replaced"),
        "{}",
        update.detail
    );
    assert!(!update.detail.contains("rotated-password"));
    assert!(seen.iter().all(|e| e.outcome == "ok" && e.time.is_some()));

    // Filters, and tokens bound to them.
    let only = |f: pb::ListAuditEventsRequest| {
        let mut a = audit.clone();
        async move {
            a.list_audit_events(as_("root", f))
                .await
                .map(|r| r.into_inner())
        }
    };
    let by_registry = only(pb::ListAuditEventsRequest {
        registry_id: r2.id.to_uppercase(),
        ..Default::default()
    })
    .await
    .expect("by registry");
    assert_eq!(by_registry.events.len(), 3);
    let first_page = only(pb::ListAuditEventsRequest {
        page_size: 1,
        ..Default::default()
    })
    .await
    .expect("page");
    let e = only(pb::ListAuditEventsRequest {
        actor: "root".into(),
        page_token: first_page.next_page_token,
        ..Default::default()
    })
    .await
    .expect_err("token for other filters");
    assert_eq!(e.code(), Code::InvalidArgument);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let future = only(pb::ListAuditEventsRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: now + 3600,
            nanos: 0,
        }),
        ..Default::default()
    })
    .await
    .expect("time filter");
    assert!(future.events.is_empty());
    for (req, field) in [
        (
            pb::ListAuditEventsRequest {
                action: "registry.explode".into(),
                ..Default::default()
            },
            "action",
        ),
        (
            pb::ListAuditEventsRequest {
                outcome: "maybe".into(),
                ..Default::default()
            },
            "outcome",
        ),
        (
            pb::ListAuditEventsRequest {
                registry_id: "nope".into(),
                ..Default::default()
            },
            "registry_id",
        ),
        (
            pb::ListAuditEventsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListAuditEventsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: now,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: now - 1,
                    nanos: 0,
                }),
                ..Default::default()
            },
            "end_time",
        ),
    ] {
        let e = only(req).await.expect_err(field);
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        assert_eq!(common::violations(&e), [field.to_string()], "{field}");
    }
    server.finish().await;
}

on_every_backend!(
    authorization_rules,
    audit_log_follows_changes,
    every_concurrent_issuance_is_audited,
    issuances_and_changes_at_once_are_all_stored
);

/// With `--audit-credentials async`, GetCredentials answers before its
/// record is stored; a clean shutdown still stores every queued record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_audit_records_survive_a_clean_shutdown() {
    let people = People::new();
    let (t, p) = (people.tokens(), people.policy());
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.tokens_file = Some(t.clone());
        cfg.policy_file = Some(p.clone());
        cfg.audit_credentials = berth::config::AuditMode::Async;
    })
    .await;
    let mut regs = RegistryServiceClient::new(server.channel().await);
    let reg = create(&mut regs, "queued.example.com", &["a"]).await;
    let images = ImageServiceClient::new(server.channel().await);
    let mut calls = Vec::new();
    for _ in 0..50 {
        let mut images = images.clone();
        let req = as_(
            "runner",
            pb::GetCredentialsRequest {
                registry_id: reg.id.clone(),
                project: "a".into(),
                ..Default::default()
            },
        );
        calls.push(tokio::spawn(
            async move { images.get_credentials(req).await },
        ));
    }
    for c in calls {
        c.await.expect("call").expect("granted");
    }
    drop((regs, images));
    let db = server.stop().await;
    let server = TestServer::start_on_with(db, |cfg| {
        cfg.tokens_file = Some(t);
        cfg.policy_file = Some(p);
    })
    .await;
    let mut audit = AuditServiceClient::new(server.channel().await);
    let events = audit
        .list_audit_events(as_(
            "root",
            pb::ListAuditEventsRequest {
                action: "credentials.issue".into(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("audit")
        .into_inner()
        .events;
    assert_eq!(events.len(), 50, "every queued record was stored");
    server.finish().await;
}

/// Issuances are audited through a group-commit writer: many concurrent
/// calls share an INSERT, and still every one of them, granted or denied,
/// has its own event, with its own fields, before its answer leaves. The
/// request ids carry quotes and backslashes: the batch travels to the
/// database as one JSON document.
async fn every_concurrent_issuance_is_audited(backend: Backend) {
    let people = People::new();
    let server = start(backend, &people).await;
    let mut regs = RegistryServiceClient::new(server.channel().await);
    let reg = create(&mut regs, "busy.example.com", &["a"]).await;
    let images = ImageServiceClient::new(server.channel().await);
    let mut calls = Vec::new();
    for i in 0..80 {
        let mut images = images.clone();
        let who = if i % 5 == 4 { "reader-b" } else { "runner" };
        let mut req = as_(
            who,
            pb::GetCredentialsRequest {
                registry_id: reg.id.clone(),
                project: "a".into(),
                ..Default::default()
            },
        );
        req.metadata_mut()
            .insert("x-request-id", burst_id(i).parse().expect("visible ascii"));
        calls.push(tokio::spawn(async move {
            images
                .get_credentials(req)
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }));
    }
    let mut granted = 0;
    for c in calls {
        match c.await.expect("call") {
            Ok(()) => granted += 1,
            Err(code) => assert_eq!(code, Code::PermissionDenied),
        }
    }
    assert_eq!(granted, 64);
    let mut audit = AuditServiceClient::new(server.channel().await);
    let mut seen = std::collections::HashMap::new();
    let mut token = String::new();
    loop {
        let page = audit
            .list_audit_events(as_(
                "root",
                pb::ListAuditEventsRequest {
                    action: "credentials.issue".into(),
                    page_size: 50,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("audit")
            .into_inner();
        for e in page.events {
            assert_eq!(e.project, "a");
            assert_eq!(e.registry_id, reg.id);
            let want_actor = if e.outcome == "granted" {
                "runner"
            } else {
                "reader-b"
            };
            assert_eq!(e.actor, want_actor, "{e:?}");
            if e.outcome == "granted" {
                assert_eq!(e.detail, "provider=HARBOR", "{e:?}");
            }
            assert!(e.time.is_some_and(|t| t.seconds > 1_700_000_000));
            assert!(
                seen.insert(e.request_id.clone(), e.outcome.clone())
                    .is_none()
            );
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 80, "one event per call");
    for i in 0..80 {
        let want = if i % 5 == 4 { "denied" } else { "granted" };
        assert_eq!(seen[&burst_id(i)], want, "call {i}");
    }
    server.finish().await;
}

/// Issuance records and registry changes written at the same moment: on
/// SQLite they come from two connections to one file (the audit writer's
/// own, and the store's, whose write transactions take the lock at BEGIN),
/// elsewhere from one pool. None may fail, none may be lost.
async fn issuances_and_changes_at_once_are_all_stored(backend: Backend) {
    let people = People::new();
    let server = start(backend, &people).await;
    let mut regs = RegistryServiceClient::new(server.channel().await);
    let reg = create(&mut regs, "both.example.com", &["a"]).await;
    // Changes go to registries of their own: concurrent changes of one
    // registry may be ABORTED by design.
    let mut others = Vec::new();
    for i in 0..20 {
        others.push(create(&mut regs, &format!("other-{i}.example.com"), &["b"]).await);
    }
    let images = ImageServiceClient::new(server.channel().await);
    let mut calls = Vec::new();
    for i in 0..60 {
        let (mut images, mut regs) = (images.clone(), regs.clone());
        let id = if i % 3 == 0 {
            others[i / 3].id.clone()
        } else {
            reg.id.clone()
        };
        let address = format!("other-{}.example.com", i / 3);
        calls.push(tokio::spawn(async move {
            if i % 3 == 0 {
                let mut patch = registry(&address, &["b"]);
                patch.id = id;
                patch.username = format!("robot-{i}");
                regs.update_registry(as_(
                    "root",
                    pb::UpdateRegistryRequest {
                        registry: Some(patch),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["username".into()],
                        }),
                    },
                ))
                .await
                .map(drop)
            } else {
                images
                    .get_credentials(as_(
                        "runner",
                        pb::GetCredentialsRequest {
                            registry_id: id,
                            project: "a".into(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(drop)
            }
        }));
    }
    for c in calls {
        c.await.expect("call").expect("every call succeeds");
    }
    let audit = AuditServiceClient::new(server.channel().await);
    let count = |action: &'static str| {
        let mut audit = audit.clone();
        async move {
            audit
                .list_audit_events(as_(
                    "root",
                    pb::ListAuditEventsRequest {
                        action: action.into(),
                        page_size: 1000,
                        ..Default::default()
                    },
                ))
                .await
                .expect("audit")
                .into_inner()
                .events
                .len()
        }
    };
    assert_eq!(count("credentials.issue").await, 40);
    assert_eq!(count("registry.update").await, 20);
    server.finish().await;
}

/// Creates a registry as `root` (see [`registry`]).
async fn create(
    regs: &mut RegistryServiceClient<tonic::transport::Channel>,
    address: &str,
    projects: &[&str],
) -> Registry {
    regs.create_registry(as_(
        "root",
        pb::CreateRegistryRequest {
            registry: Some(registry(address, projects)),
        },
    ))
    .await
    .expect("create")
    .into_inner()
}

fn burst_id(i: usize) -> String {
    format!(r#"burst-{i} "q" \ 'x'"#)
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_policy_reload_without_restart() {
    let people = People::new();
    let server = start(Backend::Sqlite, &people).await;
    let regs = RegistryServiceClient::new(server.channel().await);
    let list = |who: &'static str| {
        let mut c = regs.clone();
        async move {
            code(
                c.list_registries(as_(who, pb::ListRegistriesRequest::default()))
                    .await,
            )
        }
    };
    assert_eq!(list("newcomer").await, Code::Unauthenticated);
    // A new token; then a grant for it.
    let mut text = std::fs::read_to_string(people.tokens()).expect("tokens");
    text.push('\n');
    text.push_str(&tokens::line_for("newcomer", &token_of("newcomer")));
    write_atomically(&people.tokens(), &text);
    wait_until("the new token is accepted", || {
        let f = list("newcomer");
        async move { f.await == Code::PermissionDenied }
    })
    .await;
    write_atomically(
        &people.policy(),
        &format!(
            "{POLICY}\n[[grant]]\nidentity = \"newcomer\"\nroles = [\"reader\"]\nprojects = [\"*\"]\n"
        ),
    );
    wait_until("the new grant applies", || {
        let f = list("newcomer");
        async move { f.await == Code::Ok }
    })
    .await;
    // A broken policy is ignored: the last good one stays.
    write_atomically(
        &people.policy(),
        "[[grant]]\nidentity = 'x'\nroles = ['superuser']\nprojects = ['*']\n",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(list("newcomer").await, Code::Ok);
    // Revoking a token takes effect too.
    write_atomically(
        &people.tokens(),
        &tokens::line_for("root", &token_of("root")),
    );
    wait_until("the revoked token is refused", || {
        let f = list("newcomer");
        async move { f.await == Code::Unauthenticated }
    })
    .await;
    assert_eq!(list("root").await, Code::Ok);
    server.finish().await;
}

#[tokio::test]
async fn unauthenticated_berth_stays_on_loopback() {
    let people = People::new();
    let base = common::config("sqlite::memory:");
    let public: std::net::SocketAddr = "0.0.0.0:50051".parse().expect("addr");
    let loopback: std::net::SocketAddr = "127.0.0.1:50051".parse().expect("addr");
    let v6_loopback: std::net::SocketAddr = "[::1]:50051".parse().expect("addr");
    let err = |cfg: &berth::config::Config, addr| {
        berth::server::authn(cfg, addr)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    };
    assert!(err(&base, public).contains("--allow-unauthenticated"));
    assert_eq!(err(&base, loopback), "");
    assert_eq!(err(&base, v6_loopback), "");
    let mut allowed = base.clone();
    allowed.allow_unauthenticated = true;
    assert_eq!(err(&allowed, public), "");
    let mut policy_only = base.clone();
    policy_only.policy_file = Some(people.policy());
    assert!(err(&policy_only, loopback).contains("authentication is off"));
    let mut tokens_only = base.clone();
    tokens_only.tokens_file = Some(people.tokens());
    assert!(err(&tokens_only, public).contains("BERTH_POLICY_FILE"));
    let mut both = tokens_only.clone();
    both.policy_file = Some(people.policy());
    assert_eq!(err(&both, public), "");
    let mut broken = both.clone();
    std::fs::write(
        people.dir.path().join("bad.toml"),
        "[[grant]]\nidentity = 'x'\n",
    )
    .expect("write");
    broken.policy_file = Some(people.dir.path().join("bad.toml"));
    assert!(
        err(&broken, public).contains("bad.toml"),
        "{}",
        err(&broken, public)
    );
}

/// The leak guard itself: a secret echoed in an error is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leak_guard_catches_an_echoed_secret() {
    let server = TestServer::start(Backend::Sqlite).await;
    let ch = server.channel().await;
    let secret = "leak-guard-canary-secret";
    RegistryServiceClient::new(ch.clone())
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                secret: secret.into(),
                ..registry("canary.example.com", &[])
            }),
        })
        .await
        .expect("create");
    // ParseImageReference answers with the reference it was given: here the
    // caller itself put the secret there, and the guard must notice.
    ImageServiceClient::new(ch)
        .parse_image_reference(pb::ParseImageReferenceRequest {
            reference: format!("example.com/{secret}"),
        })
        .await
        .expect("parsed");
    let leaks = common::leak::take_leaks();
    assert!(
        leaks.iter().any(|l| l.contains("ParseImageReference")),
        "the guard saw the echo: {leaks:?}"
    );
    server.finish().await;
}
