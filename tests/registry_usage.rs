//! RecordRegistryUsage / ListRegistryUsage, and DeleteRegistry refusing a
//! registry in use unless forced.

mod common;

use std::time::Duration;

use berth::pb::{self, Provider, Registry, Scope};
use common::{Backend, TestServer, violations};
use tonic::Code;

fn registry(address: &str, projects: &[&str]) -> Registry {
    Registry {
        provider: Provider::Harbor as i32,
        address: address.into(),
        namespace: "team".into(),
        username: "robot".into(),
        secret: "usage-secret".into(),
        scope: Some(Scope {
            all_projects: projects.is_empty(),
            projects: projects.iter().map(|p| p.to_string()).collect(),
        }),
        ..Default::default()
    }
}

fn use_of(
    id: &str,
    project: &str,
    user: &str,
    ttl_s: Option<i64>,
) -> pb::RecordRegistryUsageRequest {
    pb::RecordRegistryUsageRequest {
        registry_id: id.into(),
        project: project.into(),
        user: user.into(),
        ttl: ttl_s.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
    }
}

fn delete(id: &str, force: bool) -> pb::DeleteRegistryRequest {
    pb::DeleteRegistryRequest {
        id: id.into(),
        etag: String::new(),
        force,
    }
}

on_every_backend!(uses_block_deletion_until_they_lapse_or_force);

async fn uses_block_deletion_until_they_lapse_or_force(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.registries().await;
    let r = c
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(registry("used.example.com", &["web", "api"])),
        })
        .await
        .expect("create")
        .into_inner();

    // Two users; recording again refreshes rather than duplicates.
    let first = c
        .record_registry_usage(use_of(&r.id, "web", "workflow/build-web", None))
        .await
        .expect("record")
        .into_inner();
    let ttl = first.expire_time.expect("expire").seconds - first.record_time.expect("time").seconds;
    assert_eq!(ttl, 24 * 3600, "default ttl");
    c.record_registry_usage(use_of(&r.id, "api", "environment/staging", Some(3600)))
        .await
        .expect("record");
    let again = c
        .record_registry_usage(use_of(&r.id, "web", "workflow/build-web", Some(7200)))
        .await
        .expect("refresh")
        .into_inner();
    let uses = c
        .list_registry_usage(pb::ListRegistryUsageRequest {
            registry_id: r.id.clone(),
        })
        .await
        .expect("list")
        .into_inner()
        .usages;
    let names: Vec<(&str, &str)> = uses
        .iter()
        .map(|u| (u.project.as_str(), u.user.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("api", "environment/staging"),
            ("web", "workflow/build-web")
        ]
    );
    assert_eq!(uses[1].expire_time, again.expire_time, "refreshed in place");

    // In use: deletion is refused and names the users; nothing changes.
    let refused = c
        .delete_registry(delete(&r.id, false))
        .await
        .expect_err("in use");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    for user in ["workflow/build-web (web)", "environment/staging (api)"] {
        assert!(refused.message().contains(user), "{refused:?}");
    }
    c.get_registry(pb::GetRegistryRequest { id: r.id.clone() })
        .await
        .expect("still there");

    // A use that lapses stops blocking.
    let other = c
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(registry("brief.example.com", &[])),
        })
        .await
        .expect("create")
        .into_inner();
    // Three seconds: long enough that the refusal below cannot race the
    // expiry on a slow machine.
    c.record_registry_usage(use_of(&other.id, "web", "job/once", Some(3)))
        .await
        .expect("record");
    assert_eq!(
        c.delete_registry(delete(&other.id, false))
            .await
            .expect_err("in use")
            .code(),
        Code::FailedPrecondition
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let uses = c
            .list_registry_usage(pb::ListRegistryUsageRequest {
                registry_id: other.id.clone(),
            })
            .await
            .expect("list")
            .into_inner()
            .usages;
        if uses.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the use never lapsed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.delete_registry(delete(&other.id, false))
        .await
        .expect("lapsed use no longer blocks");

    // Force deletes, uses and all; recording against it is then refused.
    c.delete_registry(delete(&r.id, true))
        .await
        .expect("forced");
    let gone = c
        .record_registry_usage(use_of(&r.id, "web", "workflow/build-web", None))
        .await
        .expect_err("deleted");
    // (NOT_FOUND for a caller who sees every registry; others get the
    // PERMISSION_DENIED of a registry outside their reach.)
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    let gone = c
        .list_registry_usage(pb::ListRegistryUsageRequest {
            registry_id: r.id.clone(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);

    // Bad input names its field.
    let scoped = c
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(registry("scoped.example.com", &["web"])),
        })
        .await
        .expect("create")
        .into_inner();
    for (req, field) in [
        (use_of("", "web", "u", None), "registry_id"),
        (use_of("nope", "web", "u", None), "registry_id"),
        (use_of(&scoped.id, "", "u", None), "project"),
        (use_of(&scoped.id, "Web!", "u", None), "project"),
        (use_of(&scoped.id, "web", " ", None), "user"),
        (use_of(&scoped.id, "web", &"x".repeat(256), None), "user"),
        (use_of(&scoped.id, "web", "a\nb", None), "user"),
        (use_of(&scoped.id, "web", "u", Some(0)), "ttl"),
        (use_of(&scoped.id, "web", "u", Some(-5)), "ttl"),
        (use_of(&scoped.id, "web", "u", Some(31 * 24 * 3600)), "ttl"),
    ] {
        let err = c.record_registry_usage(req).await.expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(violations(&err), [field]);
    }
    // A project outside the registry's scope may not claim it.
    let outside = c
        .record_registry_usage(use_of(&scoped.id, "api", "u", None))
        .await
        .expect_err("outside scope");
    assert_eq!(outside.code(), Code::PermissionDenied);
    server.finish().await;
}
