//! CopyImage and DistributeImage end to end: a real berth, two real
//! `docker-registry` instances (TLS with their own CAs; htpasswd on one
//! side, token auth on the other), images pushed by skopeo, and the copies
//! checked with skopeo (an implementation independent of berth's).

mod common;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use berth::pb::{self, BlobState, Provider, Registry, Scope, TlsSettings, copy_progress::Event};
use common::{Backend, TestServer, violations};
use sha2::{Digest, Sha256};
use support::registry::{AuthMode, TestRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::{Code, Status};

type Images = pb::image_service_client::ImageServiceClient<Channel>;
type Registries = pb::registry_service_client::RegistryServiceClient<Channel>;
type Audit = pb::audit_service_client::AuditServiceClient<Channel>;

async fn clients(server: &TestServer) -> (Registries, Images) {
    let ch = server.channel().await;
    (Registries::new(ch.clone()), Images::new(ch))
}

/// A registry entry for `reg` (at `address`, normally `reg.host`), for
/// project `web`, trusting the registry's CA.
fn entry(reg: &TestRegistry, address: &str, namespace: &str, password: &str) -> Registry {
    Registry {
        provider: Provider::Other as i32,
        address: address.into(),
        namespace: namespace.into(),
        username: reg.username.clone(),
        secret: password.into(),
        scope: Some(Scope {
            all_projects: false,
            projects: vec!["web".into()],
        }),
        tls: Some(TlsSettings {
            verify: Some(true),
            ca_cert_pem: reg.ca_pem.clone(),
        }),
        ..Default::default()
    }
}

async fn create(c: &mut Registries, r: Registry) -> String {
    c.create_registry(pb::CreateRegistryRequest { registry: Some(r) })
        .await
        .expect("create registry")
        .into_inner()
        .id
}

fn source(registry_id: &str, image: &str, tag: &str) -> Option<pb::ImageSource> {
    Some(pb::ImageSource {
        registry_id: registry_id.into(),
        project: "web".into(),
        image: image.into(),
        tag: tag.into(),
        digest: String::new(),
    })
}

fn target(registry_id: &str, image: &str, tag: &str) -> pb::CopyTarget {
    pb::CopyTarget {
        registry_id: registry_id.into(),
        project: String::new(),
        image: image.into(),
        tag: tag.into(),
    }
}

/// Everything a copy's stream sent (with the target index), and how the
/// stream ended.
#[derive(Debug)]
struct Streamed {
    events: Vec<(i32, Event)>,
    end: Result<(), Status>,
}

impl Streamed {
    fn results(&self) -> Vec<(i32, &pb::CopyResult)> {
        self.events
            .iter()
            .filter_map(|(i, e)| match e {
                Event::Result(r) => Some((*i, r)),
                _ => None,
            })
            .collect()
    }

    /// The one result of a successful CopyImage.
    fn result(&self) -> &pb::CopyResult {
        assert!(self.end.is_ok(), "the copy failed: {:?}", self.end);
        let results = self.results();
        assert_eq!(results.len(), 1, "one result: {results:?}");
        let r = results[0].1;
        assert_eq!(r.code, 0, "{r:?}");
        r
    }

    fn plans(&self, target: i32) -> Vec<&pb::CopyPlan> {
        self.events
            .iter()
            .filter_map(|(i, e)| match e {
                Event::Plan(p) if *i == target => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The blob events of `target` in `state`.
    fn blobs(&self, target: i32, state: BlobState) -> Vec<&pb::BlobProgress> {
        self.events
            .iter()
            .filter_map(|(i, e)| match e {
                Event::Blob(b) if *i == target && b.state == state as i32 => Some(b),
                _ => None,
            })
            .collect()
    }

    fn manifests(&self) -> Vec<&pb::ManifestPushed> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Manifest(m) => Some(m),
                _ => None,
            })
            .collect()
    }
}

async fn copy(c: &mut Images, req: pb::CopyImageRequest) -> Result<Streamed, Status> {
    let mut stream = c.copy_image(req).await?.into_inner();
    let mut events = Vec::new();
    let end = loop {
        match stream.message().await {
            Ok(Some(m)) => {
                let event = m
                    .progress
                    .and_then(|p| p.event)
                    .expect("every message has an event");
                events.push((0, event));
            }
            Ok(None) => break Ok(()),
            Err(s) => break Err(s),
        }
    };
    Ok(Streamed { events, end })
}

async fn distribute(c: &mut Images, req: pb::DistributeImageRequest) -> Result<Streamed, Status> {
    let mut stream = c.distribute_image(req).await?.into_inner();
    let mut events = Vec::new();
    let end = loop {
        match stream.message().await {
            Ok(Some(m)) => {
                let event = m
                    .progress
                    .and_then(|p| p.event)
                    .expect("every message has an event");
                events.push((m.target_index, event));
            }
            Ok(None) => break Ok(()),
            Err(s) => break Err(s),
        }
    };
    Ok(Streamed { events, end })
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The manifest at `repo:reference` on `reg`, read by skopeo.
fn raw(reg: &TestRegistry, repo: &str, reference: &str) -> Vec<u8> {
    tokio::task::block_in_place(|| reg.skopeo_raw_manifest(repo, reference))
        .unwrap_or_else(|e| panic!("skopeo inspect {repo} {reference}: {e}"))
}

/// Whether the registry says `repo:reference` does not exist (any other
/// skopeo failure, e.g. bad credentials or TLS, is a test error, not
/// absence).
fn absent(reg: &TestRegistry, repo: &str, reference: &str) -> bool {
    match tokio::task::block_in_place(|| reg.skopeo_raw_manifest(repo, reference)) {
        Ok(_) => false,
        Err(e) if e.contains("manifest unknown") || e.contains("name unknown") => true,
        Err(e) => panic!("skopeo inspect {repo} {reference} failed for another reason: {e}"),
    }
}

/// The blob digests (config and layers) of an image manifest.
fn blob_digests(manifest: &[u8]) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(manifest).expect("manifest JSON");
    let mut out = vec![m["config"]["digest"].as_str().expect("config").to_string()];
    for l in m["layers"].as_array().expect("layers") {
        out.push(l["digest"].as_str().expect("layer digest").to_string());
    }
    out
}

async fn copy_events(server: &TestServer) -> Vec<pb::AuditEvent> {
    Audit::new(server.channel().await)
        .list_audit_events(pb::ListAuditEventsRequest {
            action: "image.copy".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_images_and_indexes_between_registries() {
    let (src, dst) = tokio::join!(
        TestRegistry::start(AuthMode::Htpasswd),
        TestRegistry::start(AuthMode::Token)
    );
    let pushed = tokio::task::block_in_place(|| src.push_test_images("berth/app"));
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    let from = create(&mut regs, entry(&src, &src.host, "berth", &src.password)).await;
    let to = create(&mut regs, entry(&dst, &dst.host, "mirror", &dst.password)).await;

    // One image; the target's tag defaults to the source's.
    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: source(&from, "app", "1.2.0"),
            target: Some(target(&to, "app", "")),
        },
    )
    .await
    .expect("copy starts");
    let digest = &pushed.digests["1.2.0"];
    let r = run.result();
    assert_eq!(&r.digest, digest, "the digest survives the copy");
    assert_eq!(
        r.reference,
        format!("{}/mirror/app:1.2.0@{digest}", dst.host)
    );
    assert_eq!(r.registry_id, to);
    let plan = run.plans(0);
    assert_eq!(plan.len(), 1);
    assert_eq!((plan[0].manifests, plan[0].blobs), (1, 2), "{plan:?}");
    assert_eq!(
        plan[0].source_reference,
        format!("{}/berth/app:1.2.0@{digest}", src.host)
    );
    assert_eq!(
        (r.blobs_copied, r.blobs_skipped, r.blobs_mounted),
        (2, 0, 0)
    );
    assert_eq!(r.bytes_copied, plan[0].total_bytes);
    let done = run.blobs(0, BlobState::Done);
    assert_eq!(done.len(), 2);
    assert!(
        done.iter()
            .all(|b| b.bytes_done == b.bytes_total && b.bytes_total > 0)
    );
    // skopeo reads byte-identical manifests, and every blob, on the target.
    let copied = raw(&dst, "mirror/app", "1.2.0");
    assert_eq!(&sha256(&copied), digest);
    assert_eq!(copied, raw(&src, "berth/app", "1.2.0"));
    for blob in blob_digests(&copied) {
        assert!(
            done.iter().any(|b| b.digest == blob),
            "{blob} was copied and reported"
        );
    }
    // Token auth: berth asked for push rights on the target repository.
    assert!(
        dst.token_requests().iter().any(|t| t.authorized
            && t.scopes
                .contains(&"repository:mirror/app:pull,push".to_string())),
        "{:?}",
        dst.token_requests()
    );

    // The multi-platform index, whole: every platform manifest, children
    // first, the tag last.
    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: source(&from, "app", "multi"),
            target: Some(target(&to, "app", "multi-copy")),
        },
    )
    .await
    .expect("copy starts");
    let index_digest = &pushed.digests["multi"];
    let r = run.result();
    assert_eq!(&r.digest, index_digest);
    assert_eq!(run.plans(0)[0].manifests, 3);
    let index = raw(&dst, "mirror/app", "multi-copy");
    assert_eq!(&sha256(&index), index_digest);
    assert_eq!(index, raw(&src, "berth/app", "multi"));
    for (platform, d) in &pushed.platform_digests {
        let m = raw(&dst, "mirror/app", d);
        assert_eq!(&sha256(&m), d, "{platform} is on the target");
        for blob in blob_digests(&m) {
            assert!(
                run.blobs(0, BlobState::Done)
                    .iter()
                    .any(|b| b.digest == blob)
                    || run
                        .blobs(0, BlobState::Skipped)
                        .iter()
                        .any(|b| b.digest == blob),
                "{platform}'s blob {blob} went through"
            );
        }
    }
    let order: Vec<&str> = run
        .manifests()
        .iter()
        .map(|m| m.reference.as_str())
        .collect();
    assert_eq!(order.len(), 3);
    assert_eq!(order[2], "multi-copy", "the tag is pushed last: {order:?}");
    for d in pushed.platform_digests.values() {
        assert!(order[..2].contains(&d.as_str()), "{order:?}");
    }

    // Again, under another tag: the target has every blob.
    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: source(&from, "app", "1.2.0"),
            target: Some(target(&to, "", "again")),
        },
    )
    .await
    .expect("copy starts");
    let r = run.result();
    assert_eq!((r.blobs_copied, r.blobs_skipped, r.bytes_copied), (0, 2, 0));
    assert_eq!(run.blobs(0, BlobState::Skipped).len(), 2);
    assert!(run.blobs(0, BlobState::Transferring).is_empty());
    assert_eq!(&sha256(&raw(&dst, "mirror/app", "again")), digest);

    // By digest alone: pushed by digest, no tag made up.
    let by_digest = &pushed.digests["1.0.0"];
    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: Some(pb::ImageSource {
                registry_id: from.clone(),
                project: "web".into(),
                image: "app".into(),
                digest: by_digest.clone(),
                ..Default::default()
            }),
            target: Some(target(&to, "", "")),
        },
    )
    .await
    .expect("copy starts");
    let r = run.result();
    assert_eq!(r.reference, format!("{}/mirror/app@{by_digest}", dst.host));
    assert_eq!(&sha256(&raw(&dst, "mirror/app", by_digest)), by_digest);
    assert!(absent(&dst, "mirror/app", "1.0.0"));

    let events = copy_events(&server).await;
    assert_eq!(events.len(), 4, "one audit event per copy: {events:?}");
    assert!(
        events
            .iter()
            .all(|e| e.outcome == "ok" && e.registry_id == to && e.project == "web"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.detail.contains("multi-copy")));
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_within_one_registry_mount_blobs() {
    let reg = TestRegistry::start(AuthMode::Token).await;
    let pushed = tokio::task::block_in_place(|| reg.push_test_images("berth/app"));
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    let id = create(&mut regs, entry(&reg, &reg.host, "berth", &reg.password)).await;

    // Same registry entry, another repository.
    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: source(&id, "app", "1.0.0"),
            target: Some(target(&id, "promoted", "stable")),
        },
    )
    .await
    .expect("copy starts");
    let digest = &pushed.digests["1.0.0"];
    let r = run.result();
    assert_eq!(&r.digest, digest);
    assert_eq!((r.blobs_mounted, r.blobs_copied, r.bytes_copied), (2, 0, 0));
    let mounted = run.blobs(0, BlobState::Mounted);
    assert_eq!(mounted.len(), 2);
    assert!(
        mounted
            .iter()
            .all(|b| b.message == "mounted from berth/app"),
        "{mounted:?}"
    );
    assert_eq!(&sha256(&raw(&reg, "berth/promoted", "stable")), digest);
    // One token for both repositories: push on the target, pull on the
    // source.
    assert!(
        reg.token_requests().iter().any(|t| t.authorized
            && t.scopes
                .contains(&"repository:berth/promoted:pull,push".to_string())
            && t.scopes.contains(&"repository:berth/app:pull".to_string())),
        "{:?}",
        reg.token_requests()
    );
    // The registry itself logged the mounts.
    assert!(
        reg.log().contains("mount="),
        "the registry log names the mount"
    );

    // Another entry for the same host counts as the same registry.
    let other = create(&mut regs, entry(&reg, &reg.host, "team", &reg.password)).await;
    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: source(&id, "app", "1.2.0"),
            target: Some(target(&other, "app", "")),
        },
    )
    .await
    .expect("copy starts");
    let r = run.result();
    assert_eq!(r.blobs_mounted, 2, "{:?}", run.events);
    assert_eq!(
        &sha256(&raw(&reg, "team/app", "1.2.0")),
        &pushed.digests["1.2.0"]
    );
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_copies_end_with_a_status_and_leave_no_tag() {
    let (src, dst) = tokio::join!(
        TestRegistry::start(AuthMode::Htpasswd),
        TestRegistry::start(AuthMode::Token)
    );
    let pushed = tokio::task::block_in_place(|| src.push_test_images("berth/app"));
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    let from = create(&mut regs, entry(&src, &src.host, "berth", &src.password)).await;
    let wrong = create(
        &mut regs,
        entry(&dst, &dst.host, "other", "wrong-password-for-the-target"),
    )
    .await;
    let good = create(&mut regs, entry(&dst, &dst.host, "mirror", &dst.password)).await;

    // Refused up front, before any stream.
    let ask = |src: Option<pb::ImageSource>, to: Option<pb::CopyTarget>| pb::CopyImageRequest {
        source: src,
        target: to,
    };
    let cases: Vec<(pb::CopyImageRequest, Code, &[&str])> = vec![
        (
            ask(source(&from, "", "1.0.0"), Some(target(&good, "", ""))),
            Code::InvalidArgument,
            &["source.image"],
        ),
        (
            ask(source(&from, "app", ""), Some(target(&good, "", ""))),
            Code::InvalidArgument,
            &["source.tag"],
        ),
        (
            ask(source(&from, "app", "1.0.0"), None),
            Code::InvalidArgument,
            &["target"],
        ),
        (
            ask(None, Some(target(&good, "", ""))),
            Code::InvalidArgument,
            &["source"],
        ),
        (
            ask(
                source(&from, "app", "1.0.0"),
                Some(target(&good, "App", "")),
            ),
            Code::InvalidArgument,
            &["target.image"],
        ),
        (
            ask(
                source("not-a-uuid", "app", "1.0.0"),
                Some(target(&good, "", "")),
            ),
            Code::InvalidArgument,
            &["source.registry_id"],
        ),
        (
            ask(
                source(&from, "app", "1.0.0"),
                Some(target("6f1c2a3e-0000-4000-8000-000000000000", "", "")),
            ),
            Code::NotFound,
            &[],
        ),
    ];
    for (req, code, fields) in cases {
        let err = copy(&mut c, req.clone())
            .await
            .expect_err("refused up front");
        assert_eq!(err.code(), code, "{req:?}: {err:?}");
        assert_eq!(violations(&err), fields, "{req:?}");
    }

    // A tag the source does not have: the stream ends with NOT_FOUND.
    let run = copy(
        &mut c,
        ask(source(&from, "app", "9.9.9"), Some(target(&good, "", ""))),
    )
    .await
    .expect("copy starts");
    assert_eq!(run.end.as_ref().map_err(Status::code), Err(Code::NotFound));
    assert!(run.results().is_empty());

    // The target refuses berth's credentials: FAILED_PRECONDITION, said so,
    // and nothing tagged.
    let run = copy(
        &mut c,
        ask(
            source(&from, "app", "1.2.0"),
            Some(target(&wrong, "app", "")),
        ),
    )
    .await
    .expect("copy starts");
    let err = run.end.as_ref().expect_err("the copy fails");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("rejected the credentials"),
        "{}",
        err.message()
    );
    assert!(run.results().is_empty(), "no result for a failed CopyImage");
    assert!(absent(&dst, "other/app", "1.2.0"));

    // A blob of one platform is gone from the source: the other platform's
    // blobs are copied, but no manifest, and no tag, reaches the target.
    let arm = &pushed.platform_digests["linux/arm64/v8"];
    let arm_layer = blob_digests(&raw(&src, "berth/app", arm))[1].clone();
    let deleted = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
            "--cacert",
        ])
        .arg(src.ca_dir.join("ca.crt"))
        .arg("-u")
        .arg(src.skopeo_creds())
        .arg(format!("{}/v2/berth/app/blobs/{arm_layer}", src.url()))
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout),
        "202",
        "blob deleted"
    );
    let run = copy(
        &mut c,
        ask(
            source(&from, "app", "multi"),
            Some(target(&good, "app", "")),
        ),
    )
    .await
    .expect("copy starts");
    let err = run.end.as_ref().expect_err("the copy fails");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains(&arm_layer), "{}", err.message());
    assert!(
        run.manifests().is_empty(),
        "no manifest pushed: {:?}",
        run.events
    );
    assert!(absent(&dst, "mirror/app", "multi"), "no tag on the target");
    assert!(absent(&dst, "mirror/app", arm));
    assert!(absent(
        &dst,
        "mirror/app",
        &pushed.platform_digests["linux/amd64"]
    ));

    let events = copy_events(&server).await;
    let outcomes: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.outcome.as_str(), e.registry_id.as_str()))
        .collect();
    // Newest first: the missing blob, the refused credentials, the missing
    // tag, then the requests refused up front.
    assert_eq!(
        &outcomes[..3],
        [
            ("failed", good.as_str()),
            ("failed", wrong.as_str()),
            ("failed", good.as_str())
        ]
    );
    assert!(
        events[1].detail.contains("rejected the credentials"),
        "{:?}",
        events[1]
    );
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributes_to_several_targets_each_with_its_result() {
    let (src, dst) = tokio::join!(
        TestRegistry::start(AuthMode::Htpasswd),
        TestRegistry::start(AuthMode::Token)
    );
    let pushed = tokio::task::block_in_place(|| src.push_test_images("berth/app"));
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    let from = create(&mut regs, entry(&src, &src.host, "berth", &src.password)).await;
    let good = create(&mut regs, entry(&dst, &dst.host, "mirror", &dst.password)).await;
    let bad = create(
        &mut regs,
        entry(&dst, &dst.host, "other", "wrong-password-for-the-target"),
    )
    .await;

    let err = distribute(
        &mut c,
        pb::DistributeImageRequest {
            source: source(&from, "app", "multi"),
            targets: vec![],
        },
    )
    .await
    .expect_err("no targets");
    assert_eq!(violations(&err), ["targets"]);
    let err = distribute(
        &mut c,
        pb::DistributeImageRequest {
            source: source(&from, "app", "multi"),
            targets: vec![target(&good, "", ""), target(&bad, "", "not a tag")],
        },
    )
    .await
    .expect_err("bad tag");
    assert_eq!(violations(&err), ["targets[1].tag"]);

    let run = distribute(
        &mut c,
        pb::DistributeImageRequest {
            source: source(&from, "app", "multi"),
            targets: vec![
                target(&good, "", "v1"),
                target(&bad, "", "v1"),
                // The source registry itself: blobs are mounted.
                target(&from, "mirror", "v1"),
            ],
        },
    )
    .await
    .expect("distribution starts");
    assert!(
        run.end.is_ok(),
        "one bad target does not fail the call: {:?}",
        run.end
    );
    let mut results = run.results();
    results.sort_by_key(|(i, _)| *i);
    assert_eq!(results.len(), 3, "{results:?}");
    let digest = &pushed.digests["multi"];
    let (ok, failed, mounted) = (results[0].1, results[1].1, results[2].1);
    assert_eq!((results[0].0, ok.code, &ok.digest), (0, 0, digest));
    assert_eq!(ok.reference, format!("{}/mirror/app:v1@{digest}", dst.host));
    assert_eq!(results[1].0, 1);
    assert_eq!(failed.code, Code::FailedPrecondition as i32, "{failed:?}");
    assert!(
        failed.error.contains("rejected the credentials"),
        "{failed:?}"
    );
    assert!(failed.digest.is_empty() && failed.reference.is_empty());
    assert_eq!((mounted.code, &mounted.digest), (0, digest));
    assert_eq!(mounted.blobs_mounted, 4, "{mounted:?}");
    // Progress is tagged by target: each target got its plan.
    for i in 0..3 {
        assert_eq!(run.plans(i).len(), 1, "target {i}");
    }
    assert_eq!(run.blobs(0, BlobState::Done).len(), 4);
    assert!(run.blobs(1, BlobState::Done).is_empty());
    assert_eq!(&sha256(&raw(&dst, "mirror/app", "v1")), digest);
    assert!(absent(&dst, "other/app", "v1"));
    assert_eq!(&sha256(&raw(&src, "berth/mirror", "v1")), digest);

    let events = copy_events(&server).await;
    let mut outcomes: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.registry_id.as_str(), e.outcome.as_str()))
        .collect();
    outcomes.sort();
    let mut want = vec![
        (good.as_str(), "ok"),
        (bad.as_str(), "failed"),
        (from.as_str(), "ok"),
    ];
    want.sort();
    // The two refused requests name no loadable registry for targets[1]
    // (bad tag) and the empty list; they are recorded as refusals.
    for w in &want {
        assert!(outcomes.contains(w), "{w:?} in {outcomes:?}");
    }
    server.finish().await;
}

/// Resident memory figures of this process (kB), from /proc/self/status.
fn memory_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_images_stream_with_bounded_memory() {
    const LAYERS: usize = 4;
    const LAYER: usize = 50 * 1024 * 1024;
    let (src, dst) = tokio::join!(
        TestRegistry::start(AuthMode::Htpasswd),
        TestRegistry::start(AuthMode::Token)
    );
    let image =
        tokio::task::block_in_place(|| src.push_large_image("berth/big", "1", LAYERS, LAYER));
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    let from = create(&mut regs, entry(&src, &src.host, "berth", &src.password)).await;
    let to = create(&mut regs, entry(&dst, &dst.host, "mirror", &dst.password)).await;

    // berth runs in this process: reset the peak resident size (the kernel's
    // VmHWM) and compare the peak during the copy with where it started.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM (clear_refs 5)");
    let before = memory_kb("VmRSS");
    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: source(&from, "big", "1"),
            target: Some(target(&to, "big", "")),
        },
    )
    .await
    .expect("copy starts");
    let peak = memory_kb("VmHWM");
    let r = run.result();
    let total: u64 = image.blobs.iter().map(|(_, s)| s).sum();
    assert_eq!(r.digest, image.digest);
    assert_eq!(r.bytes_copied as u64, total);
    assert!(total > (LAYERS * LAYER) as u64);
    let growth_mb = peak.saturating_sub(before) / 1024;
    eprintln!(
        "copy of {} MB: resident {before} kB before, peak {peak} kB ({growth_mb} MB more)",
        total >> 20
    );
    // One 50 MB layer held whole would show here.
    assert!(
        growth_mb < 32,
        "berth's memory grew by {growth_mb} MB copying {} MB",
        total >> 20
    );
    // Running transfers reported their bytes along the way.
    let moving = run.blobs(0, BlobState::Transferring);
    assert!(
        moving
            .iter()
            .any(|b| b.bytes_done > 0 && b.bytes_done < b.bytes_total),
        "progress while a layer was in flight"
    );
    let copied = raw(&dst, "mirror/big", "1");
    assert_eq!(sha256(&copied), image.digest);
    let want: Vec<String> = image.blobs.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(blob_digests(&copied), want);
    server.finish().await;
}

/// A TCP proxy to `upstream` that cuts, once, the first connection that
/// carries more than `cut_after` bytes towards the client (a blob in
/// flight), as a network failure would.
struct CuttingProxy {
    addr: SocketAddr,
    cuts: Arc<AtomicUsize>,
}

async fn cutting_proxy(upstream: String, cut_after: usize) -> CuttingProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    let armed = Arc::new(AtomicBool::new(true));
    let cuts = Arc::new(AtomicUsize::new(0));
    let counter = cuts.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let (upstream, armed, cuts) = (upstream.clone(), armed.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                let up = tokio::io::copy(&mut ri, &mut wo);
                let down = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut total = 0;
                    loop {
                        let n = ro.read(&mut buf).await?;
                        if n == 0 {
                            return wi.shutdown().await;
                        }
                        total += n;
                        if total > cut_after && armed.swap(false, Ordering::SeqCst) {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            return Err(std::io::Error::other("cut"));
                        }
                        wi.write_all(&buf[..n]).await?;
                    }
                };
                // Either direction ending ends the connection (both halves
                // drop), which is what cuts it.
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    CuttingProxy { addr, cuts }
}

/// The uploads [`RefusingProxy`] has yet to refuse, all of one blob.
struct Refusals {
    left: AtomicUsize,
    /// The blob: the first one uploaded.
    blob: std::sync::Mutex<Option<String>>,
}

impl Refusals {
    /// Whether this upload of `blob` is refused (and counted).
    fn take(&self, blob: &str) -> bool {
        let mut first = self.blob.lock().expect("proxy blob");
        first.get_or_insert_with(|| blob.to_string()) == blob
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    }
}

/// A request [`RefusingProxy`] saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Its `Authorization`, if any.
    authorization: Option<String>,
    /// It was sent on without it.
    refused: bool,
}

type Log = Arc<std::sync::Mutex<Vec<Seen>>>;

/// A plain HTTP/1.1 reverse proxy in front of `reg` (HTTPS, trusted through
/// its CA). The first `refusals` uploads of one blob (PUTs on an upload
/// session, the blob of the first PUT it sees) reach the registry without
/// their `Authorization`, so the registry itself
/// answers 401 with its own challenge, as it does for a token it no longer
/// accepts. `Location` answers are rewritten to come back through the proxy.
struct RefusingProxy {
    addr: SocketAddr,
    seen: Log,
}

impl RefusingProxy {
    async fn start(reg: &TestRegistry, refusals: usize) -> RefusingProxy {
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(reg.ca_pem.as_bytes()).expect("the registry CA"),
            )
            .build()
            .expect("proxy client");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let seen: Log = Arc::default();
        let left = Arc::new(Refusals {
            left: AtomicUsize::new(refusals),
            blob: std::sync::Mutex::new(None),
        });
        let upstream = reg.host.clone();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream, log, left) =
                    (client.clone(), upstream.clone(), log.clone(), left.clone());
                let service = hyper::service::service_fn(move |req| {
                    let (client, upstream, log, left) =
                        (client.clone(), upstream.clone(), log.clone(), left.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            RefusingProxy::forward(req, &client, &upstream, addr, &log, &left)
                                .await,
                        )
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        RefusingProxy { addr, seen }
    }

    async fn forward(
        req: hyper::Request<hyper::body::Incoming>,
        client: &reqwest::Client,
        upstream: &str,
        me: SocketAddr,
        log: &Log,
        left: &Refusals,
    ) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        use http_body_util::BodyExt;
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        // The blob of an upload is its `digest` parameter.
        let blob = path
            .split(['?', '&'])
            .find(|kv| kv.starts_with("digest="))
            .map(str::to_string);
        let refuse = parts.method == hyper::Method::PUT
            && path.contains("/blobs/uploads/")
            && blob.is_some_and(|b| left.take(&b));
        let authorization = parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        log.lock().expect("proxy log").push(Seen {
            method: parts.method.to_string(),
            path: path.clone(),
            authorization,
            refused: refuse,
        });
        let mut out = client.request(parts.method.clone(), format!("https://{upstream}{path}"));
        for (k, v) in &parts.headers {
            let skip = k == hyper::header::HOST || (refuse && k == hyper::header::AUTHORIZATION);
            if !skip {
                out = out.header(k, v);
            }
        }
        let resp = match out.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                let mut r = hyper::Response::new(http_body_util::Full::from(e.to_string()));
                *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                return r;
            }
        };
        let status = resp.status();
        let mut headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap_or_default();
        for h in [hyper::header::TRANSFER_ENCODING, hyper::header::CONNECTION] {
            headers.remove(h);
        }
        if parts.method != hyper::Method::HEAD {
            headers.remove(hyper::header::CONTENT_LENGTH);
        }
        if let Some(loc) = headers
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
        {
            let moved = loc.replace(&format!("https://{upstream}"), &format!("http://{me}"));
            headers.insert(
                hyper::header::LOCATION,
                moved.parse().expect("a rewritten Location"),
            );
        }
        let mut r = hyper::Response::new(http_body_util::Full::from(bytes));
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        r
    }

    /// Every request it saw, in order.
    fn log(&self) -> Vec<Seen> {
        self.seen.lock().expect("proxy log").clone()
    }
}

/// A registry that drops berth's token during an upload answers the blob's
/// PUT with 401: the copy forgets the token, starts a fresh upload session
/// that authenticates again, and finishes. A second 401 ends the copy (the
/// credentials themselves are refused), with no tag on the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_answered_401_is_retried_once_with_fresh_credentials() {
    let (src, dst) = tokio::join!(
        TestRegistry::start(AuthMode::Htpasswd),
        TestRegistry::start(AuthMode::Token)
    );
    let pushed = tokio::task::block_in_place(|| src.push_test_images("berth/app"));
    let (once, twice) = tokio::join!(RefusingProxy::start(&dst, 1), RefusingProxy::start(&dst, 2));
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    let from = create(&mut regs, entry(&src, &src.host, "berth", &src.password)).await;
    let via_once = create(
        &mut regs,
        entry(
            &dst,
            &format!("http://{}", once.addr),
            "mirror",
            &dst.password,
        ),
    )
    .await;
    let via_twice = create(
        &mut regs,
        entry(
            &dst,
            &format!("http://{}", twice.addr),
            "twice",
            &dst.password,
        ),
    )
    .await;

    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: source(&from, "app", "1.2.0"),
            target: Some(target(&via_once, "app", "")),
        },
    )
    .await
    .expect("copy starts");
    let digest = &pushed.digests["1.2.0"];
    let r = run.result();
    assert_eq!(&r.digest, digest);
    assert_eq!(r.blobs_copied, 2, "{r:?}");
    let retried = run.blobs(0, BlobState::Retrying);
    assert_eq!(retried.len(), 1, "one blob was retried: {retried:?}");
    assert!(retried[0].message.contains("401"), "{retried:?}");
    assert_eq!(sha256(&raw(&dst, "mirror/app", "1.2.0")), *digest);
    // After the refused PUT the token was forgotten: the blob's next PUT,
    // in a new session, carried a new token.
    let log = once.log();
    let refused = log
        .iter()
        .position(|s| s.refused)
        .expect("a refused upload");
    let blob = |s: &Seen| s.path.split("digest=").nth(1).map(str::to_string);
    let again = log[refused + 1..]
        .iter()
        .find(|s| s.method == "PUT" && blob(s).is_some() && blob(s) == blob(&log[refused]))
        .expect("the blob was uploaded again");
    assert_ne!(again.path, log[refused].path, "in a new session");
    assert!(
        again
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer "))
            && again.authorization != log[refused].authorization,
        "with a new token: {log:?}"
    );
    let push_tokens = dst
        .token_requests()
        .iter()
        .filter(|t| {
            t.authorized
                && t.scopes
                    .contains(&"repository:mirror/app:pull,push".to_string())
        })
        .count();
    assert!(push_tokens >= 2, "a second push token was asked for");

    // Refused twice: the copy ends with FAILED_PRECONDITION and no tag.
    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: source(&from, "app", "1.2.0"),
            target: Some(target(&via_twice, "app", "")),
        },
    )
    .await
    .expect("copy starts");
    let end = run.end.as_ref().expect_err("the copy fails");
    assert_eq!(end.code(), Code::FailedPrecondition, "{end:?}");
    assert!(end.message().contains("401"), "{end:?}");
    assert!(end.message().contains("after 2 attempts"), "{end:?}");
    assert!(absent(&dst, "twice/app", "1.2.0"), "no tag on the target");
    server.finish().await;
}

/// A budget of one request at a time on both registries, and two copies
/// of a multi-platform index (its blobs transferred at once) in
/// opposite directions at once. Each blob transfer holds a slot of both
/// registries from its GET to the end of its PUT; taken in a fixed order,
/// neither copy can hold the slot the other waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_both_ways_under_one_slot_budgets_finish() {
    let (a, b) = tokio::join!(
        TestRegistry::start(AuthMode::Htpasswd),
        TestRegistry::start(AuthMode::Htpasswd)
    );
    let (pushed_a, pushed_b) = tokio::task::block_in_place(|| {
        (
            a.push_test_images("berth/app"),
            b.push_test_images("berth/app"),
        )
    });
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, c) = clients(&server).await;
    let one_slot = Some(pb::RequestBudget {
        requests_per_second: 0.0,
        max_concurrent: 1,
    });
    let on_a = create(
        &mut regs,
        Registry {
            budget: one_slot,
            ..entry(&a, &a.host, "berth", &a.password)
        },
    )
    .await;
    let on_b = create(
        &mut regs,
        Registry {
            budget: one_slot,
            ..entry(&b, &b.host, "berth", &b.password)
        },
    )
    .await;
    let (mut c1, mut c2) = (c.clone(), c);
    let both = async {
        tokio::join!(
            copy(
                &mut c1,
                pb::CopyImageRequest {
                    source: source(&on_a, "app", "multi"),
                    target: Some(target(&on_b, "from-a", "")),
                },
            ),
            copy(
                &mut c2,
                pb::CopyImageRequest {
                    source: source(&on_b, "app", "multi"),
                    target: Some(target(&on_a, "from-b", "")),
                },
            )
        )
    };
    let (ab, ba) = tokio::time::timeout(std::time::Duration::from_secs(120), both)
        .await
        .expect("both copies end: neither waits forever for the other's slot");
    let (ab, ba) = (ab.expect("copy starts"), ba.expect("copy starts"));
    assert_eq!(ab.result().digest, pushed_a.digests["multi"]);
    assert_eq!(ba.result().digest, pushed_b.digests["multi"]);
    assert!(
        ab.result().blobs_copied >= 2,
        "several blobs, transferred at once, contend for the one slot"
    );
    assert_eq!(
        sha256(&raw(&b, "berth/from-a", "multi")),
        pushed_a.digests["multi"]
    );
    assert_eq!(
        sha256(&raw(&a, "berth/from-b", "multi")),
        pushed_b.digests["multi"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_transfer_is_retried_in_a_fresh_session() {
    let (src, dst) = tokio::join!(
        TestRegistry::start(AuthMode::Token),
        TestRegistry::start(AuthMode::Htpasswd)
    );
    let image = tokio::task::block_in_place(|| src.push_large_image("berth/app", "1", 2, 6 << 20));
    let proxy = cutting_proxy(src.host.clone(), 3 << 20).await;
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    // berth reaches the source through the proxy (the certificate names
    // 127.0.0.1, so TLS still verifies).
    let from = create(
        &mut regs,
        entry(&src, &proxy.addr.to_string(), "berth", &src.password),
    )
    .await;
    let to = create(&mut regs, entry(&dst, &dst.host, "mirror", &dst.password)).await;
    let run = copy(
        &mut c,
        pb::CopyImageRequest {
            source: source(&from, "app", "1"),
            target: Some(target(&to, "app", "")),
        },
    )
    .await
    .expect("copy starts");
    assert_eq!(
        proxy.cuts.load(Ordering::SeqCst),
        1,
        "the proxy cut a transfer"
    );
    let r = run.result();
    assert_eq!(r.digest, image.digest);
    let retried = run.blobs(0, BlobState::Retrying);
    assert_eq!(retried.len(), 1, "{:?}", run.events);
    assert_eq!(retried[0].attempt, 1);
    assert!(!retried[0].message.is_empty());
    let second = run
        .blobs(0, BlobState::Done)
        .into_iter()
        .find(|b| b.digest == retried[0].digest)
        .expect("the retried blob finished");
    assert_eq!(second.attempt, 2);
    assert_eq!(r.blobs_copied, 3);
    let copied = raw(&dst, "mirror/app", "1");
    assert_eq!(sha256(&copied), image.digest);
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_needs_credentials_on_both_projects() {
    use berth::auth::tokens;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = |who: &str| format!("berth_copy_test_token_of_{who}");
    let lines: Vec<String> = ["root", "copier", "half", "reader"]
        .iter()
        .map(|w| tokens::line_for(w, &token(w)))
        .collect();
    std::fs::write(dir.path().join("tokens"), lines.join("\n")).expect("tokens");
    std::fs::write(
        dir.path().join("policy.toml"),
        r#"
[[grant]]
identity = "root"
roles = ["admin", "reader"]
projects = ["*"]

[[grant]]
identity = "copier"
roles = ["credentials"]
projects = ["a", "b"]

[[grant]]
identity = "half"
roles = ["credentials"]
projects = ["a"]

[[grant]]
identity = "reader"
roles = ["reader"]
projects = ["a", "b"]
"#,
    )
    .expect("policy");
    let (t, p) = (dir.path().join("tokens"), dir.path().join("policy.toml"));
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.tokens_file = Some(t);
        cfg.policy_file = Some(p);
    })
    .await;
    let (mut regs, mut c) = clients(&server).await;
    let as_ = |who: &str, mut r: tonic::Request<pb::CopyImageRequest>| {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", token(who)).parse().expect("ascii"),
        );
        r
    };
    // Nothing listens on port 1 of the loopback.
    let registry = |projects: &[&str]| Registry {
        provider: Provider::Other as i32,
        address: "127.0.0.1:1".into(),
        namespace: projects.join("-"),
        username: "robot".into(),
        secret: "copy-test-S3CRET-never-shown".into(),
        scope: Some(Scope {
            all_projects: false,
            projects: projects.iter().map(|p| p.to_string()).collect(),
        }),
        ..Default::default()
    };
    let create_as_root = |r: Registry| {
        let mut req = tonic::Request::new(pb::CreateRegistryRequest { registry: Some(r) });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", token("root")).parse().expect("ascii"),
        );
        req
    };
    let a = regs
        .create_registry(create_as_root(registry(&["a"])))
        .await
        .expect("a")
        .into_inner()
        .id;
    let b = regs
        .create_registry(create_as_root(registry(&["b"])))
        .await
        .expect("b")
        .into_inner()
        .id;
    let req = || {
        tonic::Request::new(pb::CopyImageRequest {
            source: Some(pb::ImageSource {
                registry_id: a.clone(),
                project: "a".into(),
                image: "app".into(),
                tag: "1".into(),
                digest: String::new(),
            }),
            target: Some(pb::CopyTarget {
                registry_id: b.clone(),
                project: "b".into(),
                image: String::new(),
                tag: String::new(),
            }),
        })
    };
    for who in ["half", "reader"] {
        let err = c
            .copy_image(as_(who, req()))
            .await
            .expect_err("refused before the stream");
        assert_eq!(err.code(), Code::PermissionDenied, "{who}: {err:?}");
        assert!(err.message().contains("credentials"), "{}", err.message());
    }
    // With the role on both projects the copy starts, and the unreachable
    // source ends it with UNAVAILABLE.
    let mut stream = c
        .copy_image(as_("copier", req()))
        .await
        .expect("allowed")
        .into_inner();
    let err = match stream.message().await {
        Ok(Some(m)) => panic!("no progress from an unreachable registry: {m:?}"),
        Ok(None) => panic!("the stream ended without a status"),
        Err(e) => e,
    };
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    let mut audit = Audit::new(server.channel().await);
    let mut list = tonic::Request::new(pb::ListAuditEventsRequest {
        action: "image.copy".into(),
        ..Default::default()
    });
    list.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token("root")).parse().expect("ascii"),
    );
    let events = audit
        .list_audit_events(list)
        .await
        .expect("audit")
        .into_inner()
        .events;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.actor.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("copier", "failed"),
            ("reader", "denied"),
            ("half", "denied")
        ]
    );
    server.finish().await;
}
